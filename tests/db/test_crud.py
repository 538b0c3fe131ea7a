"""The job table on PostgreSQL: migrations match the models; claims and budget reservations hold
under concurrent workers."""

from __future__ import annotations

import os
import threading

import pytest
import sqlalchemy

from db import crud
from db.models import Base
from db.session import engine_for, init_db, session_scope

PG = os.environ.get("HITLINE_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
pytestmark = pytest.mark.distributed


def test_migrations_match_the_models(pg_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    init_db(pg_url)
    init_db(pg_url)  # a second worker starting: nothing to do
    with engine_for(pg_url)[0].connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def _batch_with_job(url: str, budget: float | None) -> tuple[str, int]:
    init_db(url)
    with session_scope(url) as s:
        crud.create_batch(s, "b1", catalog_dir="c", new_dir="n", out_dir="o", options={}, budget_usd=budget, notes=[])
        j = crud.add_job(s, "b1", "sku", "X", 1, {}, "render")
        s.flush()
        return "b1", j.id


def test_only_one_of_many_concurrent_claims_wins(pg_url: str) -> None:
    _, job_id = _batch_with_job(pg_url, None)
    wins: list[bool] = []
    barrier = threading.Barrier(8)

    def claim() -> None:
        barrier.wait()
        with session_scope(pg_url) as s:
            wins.append(crud.claim(s, job_id, "render") is not None)

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(wins) == [False] * 7 + [True]


def test_concurrent_reservations_never_pass_the_budget(pg_url: str) -> None:
    batch, job_id = _batch_with_job(pg_url, 1.00)
    verdicts: list[str] = []
    barrier = threading.Barrier(10)

    def reserve(i: int) -> None:
        barrier.wait()
        with session_scope(pg_url) as s:
            verdicts.append(crud.reserve(s, batch, job_id, "render", f"k{i}", "m", 0.30, 1.00))

    threads = [threading.Thread(target=reserve, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert verdicts.count("ok") == 3 and verdicts.count("over") == 7
    with session_scope(pg_url) as s:
        assert crud.spent(s, batch) == pytest.approx(0.90)
        keys = _keys(s, batch)
        crud.settle(s, batch, keys[0], 0.30)
        other = crud.add_job(s, batch, "sku", "OTHER", 2, {}, "render")
        s.flush()
        other_id = other.id
    with session_scope(pg_url) as s:
        # the job that paid for a key gets it back on a redelivery (no second charge row)...
        assert crud.reserve(s, batch, job_id, "render", keys[0], "m", 0.30, 1.00) == "ok"
        # ...another job with the same inputs reuses it: "paid", never a second call
        assert crud.reserve(s, batch, other_id, "render", keys[0], "m", 0.30, 1.00) == "paid"
        # and waits while the call of the job holding an unsettled reservation is in flight
        assert crud.reserve(s, batch, other_id, "render", keys[1], "m", 0.30, 1.00) == "busy"
        assert crud.spent(s, batch) == pytest.approx(0.90)


def _keys(s, batch: str) -> list[str]:  # noqa: ANN001
    from sqlalchemy import select

    from db.models import Charge

    return list(s.scalars(select(Charge.key).where(Charge.batch_id == batch).order_by(Charge.id)))


def test_a_redelivered_message_takes_its_own_claim_back_at_once(pg_url: str) -> None:
    """kill -9 of a worker: the same task id (redelivery, or a retry after a lost connection) reclaims the
    job without waiting for the claim to go stale; another message cannot."""
    _, job_id = _batch_with_job(pg_url, None)
    with session_scope(pg_url) as s:
        assert crud.claim(s, job_id, "render", token="task-1") is not None
    with session_scope(pg_url) as s:
        assert crud.claim(s, job_id, "render", token="task-2") is None  # a second message: running elsewhere
        assert crud.claim(s, job_id, "render") is None
    with session_scope(pg_url) as s:
        job = crud.claim(s, job_id, "render", token="task-1")
        assert job is not None and job.attempts == 2
    with session_scope(pg_url) as s:
        from sqlalchemy import select

        from db.models import Attempt

        outcomes = list(s.scalars(select(Attempt.outcome).where(Attempt.job_id == job_id).order_by(Attempt.id)))
    assert outcomes == ["lost", "running"]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_bulk_job_insert_returns_ids_in_row_order(backend: str, tmp_path, request) -> None:  # noqa: ANN001
    """crud.add_jobs: one INSERT .. RETURNING for thousands of rows (past the driver's batch of 1000);
    submit pairs ids with rows by position, so the order must hold."""
    url = f"sqlite:///{tmp_path / 'jobs.sqlite'}" if backend == "sqlite" else request.getfixturevalue("pg_url")
    init_db(url)
    rows = [(f"SKU{i:05d}", {"new_id": f"SKU{i:05d}", "n": i}) for i in reversed(range(2500))]
    with session_scope(url) as s:
        crud.create_batch(s, "b1", catalog_dir="c", new_dir="n", out_dir="o", options={}, budget_usd=None, notes=[])
        ids = crud.add_jobs(s, "b1", "sku", rows, "embed")
    assert len(set(ids)) == 2500
    with session_scope(url) as s:
        by_id = {j.id: j for j in crud.jobs(s, "b1", "sku")}
    assert [by_id[i].item_id for i in ids] == [item for item, _ in rows]
    assert [by_id[i].row["n"] for i in ids] == [row["n"] for _, row in rows]
    first = by_id[ids[0]]
    assert (first.state, first.stage, first.attempts, first.result, first.row_no) == ("pending", "embed", 0, {}, 0)


@pytest.mark.parametrize("db", ["postgresql", "sqlite"])
def test_a_paid_call_is_recorded_once_per_key(db: str, request: pytest.FixtureRequest, tmp_path) -> None:  # noqa: ANN001
    url = request.getfixturevalue("pg_url") if db == "postgresql" else f"sqlite:///{tmp_path}/jobs.db"
    batch, job_id = _batch_with_job(url, None)
    for _ in range(2):  # the same call recorded again (a redelivered stage): no second charge
        with session_scope(url) as s:
            new = crud.record_charge(s, batch, job_id, "embed", "embed:1", "m", 0.25)
        assert new is (_ == 0)
    with session_scope(url) as s:
        assert crud.spent(s, batch) == pytest.approx(0.25)
        assert crud.charged(s, batch, "embed:1") == pytest.approx(0.25)
        assert crud.job(s, job_id).cost_usd == pytest.approx(0.25)
    if db == "sqlite":
        engine_for(url)[0].dispose()


def _sum_of_charges(s, batch: str) -> float:  # noqa: ANN001
    from sqlalchemy import func, select

    from db.models import Charge

    return float(s.scalar(select(func.coalesce(func.sum(Charge.cost_usd), 0.0)).where(Charge.batch_id == batch)))


@pytest.mark.parametrize("db", ["postgresql", "sqlite"])
def test_the_running_total_is_the_sum_of_the_charges_and_the_budget_reads_only_it(
    db: str, request: pytest.FixtureRequest, tmp_path
) -> None:  # noqa: ANN001
    """batch.spent_usd follows every charge write (a reservation, its settlement at another price, a
    dropped one, a recorded call, the same key again), and a reservation reads it instead of summing the
    batch's charges (a SUM grew with every SKU: 6.4 ms under the batch lock at 30,000 charges)."""
    url = request.getfixturevalue("pg_url") if db == "postgresql" else f"sqlite:///{tmp_path}/jobs.db"
    batch, job_id = _batch_with_job(url, 1.00)
    steps = [
        lambda s: crud.reserve(s, batch, job_id, "render", "r1", "m", 0.30, 1.00),
        lambda s: crud.settle(s, batch, "r1", 0.27),  # the provider's actual price
        lambda s: crud.reserve(s, batch, job_id, "render", "r2", "m", 0.30, 1.00),
        lambda s: crud.settle(s, batch, "r2", keep=False),  # the call failed
        lambda s: crud.record_charge(s, batch, job_id, "embed", "e1", "m", 0.05),
        lambda s: crud.record_charge(s, batch, job_id, "embed", "e1", "m", 0.05),  # redelivered: once
        lambda s: crud.reserve(s, batch, job_id, "render", "r1", "m", 0.30, 1.00),  # its own key again
        lambda s: crud.settle(s, batch, "r1"),  # settled twice: no change
        lambda s: crud.reserve(s, batch, job_id, "render", "r3", "m", 0.30, 1.00),
    ]
    for step in steps:
        with session_scope(url) as s:
            step(s)
        with session_scope(url) as s:
            assert crud.spent(s, batch) == pytest.approx(_sum_of_charges(s, batch))
    with session_scope(url) as s:
        assert crud.spent(s, batch) == pytest.approx(0.27 + 0.05 + 0.30)
        # 0.62 spent: a 0.30 reservation would pass 1.00 only if the total were wrong
        assert crud.reserve(s, batch, job_id, "render", "r4", "m", 0.30, 1.00) == "ok"
        assert crud.reserve(s, batch, job_id, "render", "r5", "m", 0.30, 1.00) == "over"
    statements: list[str] = []
    eng = engine_for(url)[0]
    listen = lambda conn, cur, stmt, *a: statements.append(stmt.lower())  # noqa: E731
    sqlalchemy.event.listen(eng, "before_cursor_execute", listen)
    try:
        with session_scope(url) as s:
            crud.reserve(s, batch, job_id, "render", "r6", "m", 0.01, 1.00)
    finally:
        sqlalchemy.event.remove(eng, "before_cursor_execute", listen)
    assert statements and not any("sum(" in st for st in statements), statements
    if db == "sqlite":
        eng.dispose()


def test_the_migration_fills_the_running_total_of_existing_batches(pg_url: str) -> None:
    """A job table made before 0004: each batch's spent_usd starts at what its charges add up to."""
    from pathlib import Path

    from alembic import command
    from alembic.config import Config

    import db.session

    cfg = Config(str(Path(db.session.__file__).with_name("alembic.ini")))
    cfg.attributes["url"] = pg_url
    command.upgrade(cfg, "0003")
    eng = engine_for(pg_url)[0]
    with eng.begin() as c:
        for bid in ("old", "none"):
            c.execute(
                sqlalchemy.text(
                    "INSERT INTO batch (id, created_at, catalog_dir, new_dir, out_dir, options, notes) "
                    "VALUES (:b, now(), 'c', 'n', 'o', '{}', '[]')"
                ),
                {"b": bid},
            )
        for i, cost in enumerate((0.25, 0.039, 0.5)):
            c.execute(
                sqlalchemy.text(
                    "INSERT INTO charge (batch_id, stage, key, model, cost_usd, state, created_at) "
                    "VALUES ('old', 'render', :k, 'm', :c, 'charged', now())"
                ),
                {"k": f"k{i}", "c": cost},
            )
    command.upgrade(cfg, "head")
    with session_scope(pg_url) as s:
        assert crud.spent(s, "old") == pytest.approx(0.789)
        assert crud.spent(s, "none") == 0.0


def test_an_embedded_job_table_from_before_gets_the_new_columns(tmp_path) -> None:  # noqa: ANN001
    """SQLite (embedded mode) is made by create_all, which adds no column to an existing table: a file an
    earlier version made gets them at start-up, spent_usd filled from its charges."""
    url = f"sqlite:///{tmp_path}/jobs.db"
    batch, job_id = _batch_with_job(url, 1.00)
    with session_scope(url) as s:
        crud.record_charge(s, batch, job_id, "embed", "e1", "m", 0.25)
    eng = engine_for(url)[0]
    with eng.begin() as c:
        c.exec_driver_sql("ALTER TABLE batch DROP COLUMN spent_usd")  # the file as 0003 left it
        c.exec_driver_sql("ALTER TABLE batch DROP COLUMN cancelled_at")
    init_db(url)
    with session_scope(url) as s:
        assert crud.spent(s, batch) == pytest.approx(0.25)
        assert crud.reserve(s, batch, job_id, "render", "r1", "m", 0.80, 1.00) == "over"
        assert crud.reserve(s, batch, job_id, "render", "r1", "m", 0.70, 1.00) == "ok"
    eng.dispose()


@pytest.mark.parametrize("db", ["postgresql", "sqlite"])
def test_a_tenants_monthly_budget_holds_across_its_batches_and_resets_with_the_month(
    db: str, request: pytest.FixtureRequest, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:  # noqa: ANN001
    from datetime import datetime, timezone

    from hitline.jobs import control

    url = request.getfixturevalue("pg_url") if db == "postgresql" else f"sqlite:///{tmp_path}/jobs.db"
    init_db(url)
    clock = [datetime(2026, 11, 30, 23, 0, tzinfo=timezone.utc)]
    monkeypatch.setattr(crud, "utcnow", lambda: clock[0])
    with session_scope(url) as s:
        for t in ("acme", "other"):
            control.ensure_tenant(s, t)
        crud.set_monthly_budget(s, "acme", 1.00)
        jobs = {}
        for bid, tenant in (("a1", "acme"), ("a2", "acme"), ("o1", "other")):
            b = crud.create_batch(
                s, bid, catalog_dir="c", new_dir="n", out_dir="o", options={}, budget_usd=5.0, notes=[]
            )
            b.tenant_id = tenant
            s.flush()
            jobs[bid] = crud.add_job(s, bid, "sku", "X", 1, {}, "render")
            s.flush()
        ids = {bid: j.id for bid, j in jobs.items()}

    def reserve(bid: str, key: str, cost: float) -> str:
        with session_scope(url) as s:
            return crud.reserve(s, bid, ids[bid], "render", key, "m", cost, 5.0)

    # two batches of acme, each well under its own $5 budget, together stop at acme's $1 a month
    assert reserve("a1", "k1", 0.40) == "ok"
    assert reserve("a2", "k1", 0.40) == "ok"
    assert reserve("a2", "k2", 0.40) == "over_month"
    assert reserve("a1", "k3", 0.40) == "over_month"
    # another tenant (no monthly budget) is unaffected
    assert reserve("o1", "k1", 2.00) == "ok"
    # a dropped reservation gives its amount back; a settled one counts its actual cost
    with session_scope(url) as s:
        crud.settle(s, "a2", "k1", keep=False)
        crud.settle(s, "a1", "k1", 0.50)
        assert crud.tenant_month(s, "acme") == (1.00, pytest.approx(0.50))
        assert crud.tenant_month(s, "other") == (None, pytest.approx(2.00))
    assert reserve("a2", "k4", 0.40) == "ok"
    assert reserve("a2", "k5", 0.20) == "over_month"
    # a new month (UTC) starts from nothing; last month's reservation settled now leaves it alone
    clock[0] = datetime(2026, 12, 1, 0, 5, tzinfo=timezone.utc)
    with session_scope(url) as s:
        assert crud.tenant_month(s, "acme") == (1.00, 0.0)
    assert reserve("a2", "k5", 0.90) == "ok"
    with session_scope(url) as s:
        crud.settle(s, "a2", "k4", 0.10)
        assert crud.tenant_month(s, "acme") == (1.00, pytest.approx(0.90))
        assert crud.set_monthly_budget(s, "acme", 1.00) == pytest.approx(0.90)  # recounted from the charges
    assert reserve("a1", "k6", 0.20) == "over_month"
    assert reserve("a1", "k6", 0.10) == "ok"
    # the render stage holds the SKU with a sentence naming the tenant's monthly budget
    from pathlib import Path
    from types import SimpleNamespace

    from hitline.errors import BudgetExceeded
    from hitline.jobs.stages import RenderBudget

    jc = SimpleNamespace(
        batch=SimpleNamespace(id="a1", budget_usd=5.0), job_id=ids["a1"], stage="render", rt=SimpleNamespace(db_url=url)
    )
    with pytest.raises(BudgetExceeded, match=r"tenant acme's monthly budget \$1\.00 reached before square"):
        RenderBudget(jc, "m").reserve("k7", 0.20, "square", Path(tmp_path) / "x.png")
