"""Shared fixtures: an isolated data dir per test, demo data generated once per session."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest


from testkit.shared import SHARED_CATALOG  # noqa: F401 - tests import it from here

# the longest files first: tests/test_distributed.py (several clusters one after the other), the fault
# tests, then the other slow ones
_LONG = ("distributed", "reliability", "slow")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files with long tests first: pytest-xdist (`--dist loadfile`) hands files out in this order, so
    the suite's tail is short files, not a 5-minute one started last."""
    rank: dict[Path, int] = {}
    for item in items:
        mine = min((i for i, m in enumerate(_LONG) if item.get_closest_marker(m)), default=len(_LONG))
        rank[item.path] = min(rank.get(item.path, mine), mine)
    items.sort(key=lambda item: rank[item.path])  # stable: each file keeps its own order


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):  # noqa: ANN201
    """In CI (CI=true) a skipped test is a failure: a missing service or tool must be installed by .ci/run."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI", "").lower() in ("1", "true", "yes") and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.longrepr = f"skipped in CI, which counts as a failure: {reason}"


def shared_dirs_env(tmp_path_factory: pytest.TempPathFactory) -> str:
    """HITLINE_API_SHARED_DIRS for tests that name folders over HTTP or the Celery contract: this run's
    temporary folders (demo data, each test's tmp_path). Unset, a server shares nothing but uploads."""
    import json

    return json.dumps([str(tmp_path_factory.getbasetemp().resolve())])


@pytest.fixture
def hitline_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Embedded mode in a fresh data dir: SQLite job table + Milvus Lite file under tmp_path. The API may
    be handed this run's temporary folders (HITLINE_API_SHARED_DIRS; a test of the default deletes it)."""
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
    monkeypatch.setenv("HITLINE_API_SHARED_DIRS", shared_dirs_env(tmp_path_factory))
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


@contextlib.contextmanager
def api_test_client():  # noqa: ANN201
    """The API in process (FastAPI's TestClient) on the embedded runtime of `hitline_env`, with a fresh
    token in its Authorization header (also as `client.token`): the tests' one way to build it."""
    from fastapi.testclient import TestClient

    from db.session import session_scope
    from hitline.api import create_app
    from hitline.jobs import control
    from hitline.jobs.context import get_runtime, reset_runtime

    reset_runtime()
    ctx = get_runtime()
    with session_scope(ctx.db_url) as s:
        token = control.create_token(s, "tests")
    with TestClient(create_app(ctx.settings)) as c:
        c.headers["Authorization"] = f"Bearer {token}"
        c.token = token  # type: ignore[attr-defined]
        yield c


@pytest.fixture(scope="session")
def api_cluster(tmp_path_factory: pytest.TempPathFactory, demo_data: tuple[Path, Path]):  # noqa: ANN201
    """PostgreSQL + Redis + milvus-lite server + fake OpenRouter + `hitline worker` + `hitline serve`,
    shared by tests/api, tests/browser and tests/test_contract.py (see tests/hitline_cluster.py)."""
    import hitline_cluster

    problem = hitline_cluster.services_reachable()
    if problem:
        pytest.skip(problem)
    catalog, new = demo_data
    cluster = hitline_cluster.start(
        tmp_path_factory.mktemp("api-cluster"), catalog, new, shared_dirs=shared_dirs_env(tmp_path_factory)
    )
    try:
        yield cluster
    finally:
        hitline_cluster.stop(cluster)


@pytest.fixture
def fake_fault(api_cluster):  # noqa: ANN001, ANN201
    """Set fake OpenRouter knobs for one test; the fake is put back to normal service afterwards."""
    yield api_cluster.fake.configure
    api_cluster.fake.configure(fail={}, latency={"image": (0.2, 0.3)})


def render_result(
    *,
    out: Path = Path("/nowhere"),
    downsized: dict[str, str] | None = None,
    failed: dict[str, str] | None = None,
    background: tuple[str, ...] = (),
    touches: bool = False,
    statuses: tuple[str, ...] = ("passed", "passed", "passed", "passed"),
) -> dict:
    """A SKU's render result as the render stage records it (default presets, thumbnail resized from
    amazon_main), with the input-check findings and gate outcomes asked for: for tests of what the
    summary, `hitline status` and the API make of it without rendering anything."""
    from hitline.jobs.quality import digest

    names = ["amazon_main", "shopify", "thumbnail", "banner"]
    checks = {
        p: [
            {
                "name": "resolution",
                "passed": p not in (downsized or {}) and p not in (failed or {}),
                "measured": 3.1,
                "threshold": 2.0,
                "message": f"{p} needs a bigger photo",
                "action": "",
            },
            {
                "name": "background",
                "passed": p not in background,
                "measured": 20.0,
                "threshold": 8.0,
                "message": "flat-lay background is not white",
                "action": "",
            },
            {
                "name": "touches_frame",
                "passed": not touches,
                "measured": ["left"] if touches else [],
                "threshold": [],
                "message": "the product touches the photo's left edge(s)",
                "action": "",
            },
        ]
        for p in names
    }
    outputs = [
        {
            "preset": p,
            "path": str(out / f"{p}.png"),
            "width": 512,
            "height": 512,
            "cost_usd": 0.0 if p == "thumbnail" else 0.101,
            "key": p,
            "reused_from": None,
            "derived_from": "amazon_main" if p == "thumbnail" else None,
            "quality": {
                "status": st,
                "checks": [],
                **({"reasons": ["colour differs"]} if st == "needs_review" else {}),
            },
        }
        for p, st in zip(names, statuses)
        if p not in (failed or {})
    ]
    result = {
        "outputs": outputs,
        "plan": {
            "renders": ["amazon_main", "shopify", "banner"],
            "derived": {"thumbnail": "amazon_main"},
            "cost_usd": 0.303,
            "naive_cost_usd": 0.348,
            "saving_usd": 0.045,
        },
        "inputs": {
            "checks": checks,
            "failed_presets": dict(failed or {}),
            "downsized": dict(downsized or {}),
            "warnings": [],
        },
    }
    return {**result, "digest": digest(result)}


@pytest.fixture
def rendered_batch(hitline_env: Path) -> str:
    """Batch "Q" in the embedded job table: 8 rendered SKUs (6 downsized to 1K, one of them touching the
    frame, one on coloured paper, one with a preset failed; gate outcomes mixed) and one still pending."""
    from db import crud
    from db.session import init_db, session_scope
    from hitline.jobs.context import get_runtime

    url = get_runtime().db_url
    init_db(url)
    out = hitline_env / "out" / "Q"
    low = {"downsized": {"amazon_main": "1K"}, "out": out}
    mixed = ("passed", "passed_after_rerender", "passed", "needs_review")
    results = [render_result(**low, touches=True, statuses=mixed)]
    results += [render_result(**low) for _ in range(5)]
    results += [
        render_result(out=out, background=("amazon_main",)),
        render_result(out=out, failed={"banner": "product is 160 px, banner at 2K needs 1229 px (7.7x upscale)"}),
    ]
    with session_scope(url) as s:
        crud.create_batch(
            s,
            "Q",
            catalog_dir="c",
            new_dir="n",
            out_dir=str(hitline_env / "out"),
            options={"presets": ["amazon_main", "shopify", "thumbnail", "banner"]},
            budget_usd=None,
            notes=[],
        )
        for i, r in enumerate(results):
            j = crud.add_job(s, "Q", "sku", f"SKU{i}", i, {}, "done", "done")
            j.result = {"render": r}
        crud.add_job(s, "Q", "sku", "WAITING", 99, {}, "embed")
    return "Q"


# the job-table tests (tests/db) run on a fresh PostgreSQL database per test, dropped after. Here, not in
# tests/db/conftest.py: a second module named conftest would shadow this one for `from conftest import`
_PG = os.environ.get("HITLINE_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture
def pg_url():  # noqa: ANN201
    import uuid

    import sqlalchemy

    from db.session import engine_for

    try:
        admin = sqlalchemy.create_engine(_PG, isolation_level="AUTOCOMMIT")
        admin.connect().close()
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"PostgreSQL not reachable ({e}); .ci/run starts it")
    name = "hitline_db_" + uuid.uuid4().hex[:8]
    with admin.connect() as c:
        c.execute(sqlalchemy.text(f"CREATE DATABASE {name}"))
    url = _PG.rsplit("/", 1)[0] + "/" + name
    yield url
    engine_for(url)[0].dispose()
    with admin.connect() as c:
        c.execute(sqlalchemy.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
