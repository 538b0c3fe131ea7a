"""The job table on PostgreSQL: migrations match the models; claims and budget reservations hold
under concurrent workers."""

from __future__ import annotations

import os
import threading
import uuid

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
        ids = crud.add_jobs(s, "b1", "sku", rows)
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
