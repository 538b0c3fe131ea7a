"""Shared fixtures: an isolated data dir per test, demo data generated once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest




def _shared_catalog() -> Path:
    """The real product photos of the hit catalog in ../shared beside the checkout (a CI clone may sit one
    or two folders deeper, so the folders above the repo are searched too; never an absolute path)."""
    repo = Path(__file__).resolve().parents[1]
    for up in repo.parents[:3]:
        candidate = up / "shared" / "data" / "hit-catalog"
        if candidate.is_dir():
            return candidate
    return repo.parent / "shared" / "data" / "hit-catalog"


SHARED_CATALOG = _shared_catalog()


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
    # the quality gate (OCR + u2netp per output) would add seconds to every run; tests/test_quality_gate.py
    # turns it on where it is under test
    monkeypatch.setenv("HITLINE_QUALITY_GATE", "0")
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


@pytest.fixture(scope="session")
def api_cluster(tmp_path_factory: pytest.TempPathFactory, demo_data: tuple[Path, Path]):  # noqa: ANN201
    """PostgreSQL + Redis + milvus-lite server + fake OpenRouter + `hitline worker` + `hitline serve`,
    shared by tests/api, tests/browser and tests/test_contract.py (see tests/hitline_cluster.py)."""
    import hitline_cluster

    problem = hitline_cluster.services_reachable()
    if problem:
        pytest.skip(problem)
    catalog, new = demo_data
    cluster = hitline_cluster.start(tmp_path_factory.mktemp("api-cluster"), catalog, new)
    try:
        yield cluster
    finally:
        hitline_cluster.stop(cluster)


@pytest.fixture
def fake_fault(api_cluster):  # noqa: ANN001, ANN201
    """Set fake OpenRouter knobs for one test; the fake is put back to normal service afterwards."""
    yield api_cluster.fake.configure
    api_cluster.fake.configure(fail={}, latency={"image": (0.2, 0.3)})
