"""Shared fixtures: an isolated data dir per test, demo data generated once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


# ../shared beside the checkout (never an absolute path): the real product photos of the hit catalog
SHARED_CATALOG = Path(__file__).resolve().parents[2] / "shared" / "data" / "hit-catalog"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):  # noqa: ANN201
    """In CI (CI=true) a skipped test is a failure: a missing service or tool must be installed by .ci/run."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI", "").lower() in ("1", "true", "yes") and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.longrepr = f"skipped in CI, which counts as a failure: {reason}"


@pytest.fixture
def hitline_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Embedded mode in a fresh data dir: SQLite job table + Milvus Lite file under tmp_path."""
    from hitline.jobs.context import reset_runtime

    for k in list(os.environ):
        if k.startswith("HITLINE_") and not k.startswith("HITLINE_TEST_"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("HITLINE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HITLINE_PROVIDER", "local")
    monkeypatch.setenv("HITLINE_COLLECTION", "hits_" + tmp_path.name.replace("-", "_")[:40])
    reset_runtime()
    yield tmp_path
    # the CLI writes its flags into os.environ (as a user's shell would): keep them out of later tests
    for k in [k for k in os.environ if k.startswith("HITLINE_") and not k.startswith("HITLINE_TEST_")]:
        os.environ.pop(k)  # not via monkeypatch: it would restore the CLI's value on undo
    reset_runtime()


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from hitline.demo.sampledata import generate_demo

    return generate_demo(tmp_path_factory.mktemp("demo"))
