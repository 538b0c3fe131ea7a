"""The engine's pool on PostgreSQL: a connection the server cut while it sat idle is replaced at checkout;
one used moments ago is not pinged (a round trip per transaction)."""

from __future__ import annotations

import pytest
import sqlalchemy

from db import session as db_session
from db.session import engine_for, session_scope

pytestmark = pytest.mark.distributed


def _backend_pid(url: str) -> int:
    with session_scope(url) as s:
        return s.scalar(sqlalchemy.text("SELECT pg_backend_pid()"))


def _cut(url: str, pid: int) -> None:
    admin = sqlalchemy.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sqlalchemy.NullPool)
    with admin.connect() as c:
        assert c.scalar(sqlalchemy.text("SELECT pg_terminate_backend(:p)"), {"p": pid})
    admin.dispose()


def test_a_connection_cut_while_idle_is_replaced_at_checkout(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    first = _backend_pid(pg_url)
    _cut(pg_url, first)
    monkeypatch.setattr(db_session, "PING_IDLE_S", 0.0)  # every pooled connection counts as idle
    assert _backend_pid(pg_url) != first  # pinged, found dead, replaced: no error for the caller


def test_a_connection_used_moments_ago_is_not_pinged(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    first = _backend_pid(pg_url)
    pings: list[object] = []
    dialect = engine_for(pg_url)[0].dialect
    monkeypatch.setattr(dialect, "do_ping", lambda conn: pings.append(conn) or True)
    assert _backend_pid(pg_url) == first
    assert pings == []
    monkeypatch.setattr(db_session, "PING_IDLE_S", 0.0)
    assert _backend_pid(pg_url) == first
    assert len(pings) == 1


# the embedded file as hitline made it before tenants (issue 21): idempotency keys unique on their own
_OLD_SCHEMA = """
CREATE TABLE batch (
    id VARCHAR(32) NOT NULL PRIMARY KEY, created_at DATETIME, catalog_dir TEXT, new_dir TEXT, out_dir TEXT,
    options JSON, budget_usd FLOAT, vocab_version VARCHAR(64), notes JSON, cancelled_at DATETIME,
    idempotency_key VARCHAR(200), request_hash VARCHAR(64),
    CONSTRAINT uq_batch_idempotency_key UNIQUE (idempotency_key)
);
CREATE TABLE job (
    id INTEGER NOT NULL PRIMARY KEY, batch_id VARCHAR(32) REFERENCES batch (id) ON DELETE CASCADE,
    kind VARCHAR(8), item_id VARCHAR(128), row_no INTEGER, row JSON, stage VARCHAR(16), state VARCHAR(16),
    attempts INTEGER, error TEXT, result JSON, cost_usd FLOAT, claimed_at DATETIME, updated_at DATETIME,
    UNIQUE (batch_id, kind, item_id)
);
INSERT INTO batch (id, created_at, catalog_dir, new_dir, out_dir, options, notes, idempotency_key)
    VALUES ('b-old', '2026-12-01 09:00:00', 'c', 'n', 'o', '{}', '[]', 'order-1');
INSERT INTO job (batch_id, kind, item_id, row_no, row, stage, state, attempts, result, cost_usd, updated_at)
    VALUES ('b-old', 'sku', 'S1', 2, '{}', 'done', 'done', 1,
            '{"render": {"digest": {"gate": {"passed": 2}}}}', 0.0, '2026-12-01 10:00:00');
"""


def test_an_old_embedded_file_gets_idempotency_keys_per_tenant(tmp_path) -> None:  # noqa: ANN001
    import sqlite3

    from db import crud
    from db.models import Batch, Job
    from db.session import init_db

    path = tmp_path / "jobs.sqlite"
    old = sqlite3.connect(path)
    old.executescript(_OLD_SCHEMA)
    old.close()
    url = f"sqlite:///{path}"
    init_db(url)  # start-up: missing columns added, the batch table rebuilt with the per-tenant key
    init_db(url)  # a second start finds nothing to do

    def add(batch_id: str, tenant: str) -> None:
        with session_scope(url) as s:
            crud.create_batch(
                s, batch_id, catalog_dir="c", new_dir="n", out_dir="o", options={}, budget_usd=None, notes=[]
            )
            b = s.get(Batch, batch_id)
            b.tenant_id, b.idempotency_key = tenant, "order-1"

    add("b-acme", "acme")  # the same key in another tenant: its own batch
    with pytest.raises(sqlalchemy.exc.IntegrityError):
        add("b-again", "default")  # the same key in the same tenant is still one batch
    with session_scope(url) as s:
        old_batch, job = s.get(Batch, "b-old"), s.scalars(sqlalchemy.select(Job)).one()
        assert (old_batch.tenant_id, old_batch.idempotency_key, old_batch.catalog_dir) == ("default", "order-1", "c")
        assert job.batch_id == "b-old" and job.digest == '{"gate":{"passed":2}}'  # kept, not cascaded away
        assert {b.id for b in s.scalars(sqlalchemy.select(Batch))} == {"b-old", "b-acme"}
    names = {i["name"] for i in sqlalchemy.inspect(engine_for(url)[0]).get_indexes("job")}
    assert {"ix_job_batch_counts", "ix_job_batch_digest"} <= names  # new indexes on an existing table


def test_pooled_sqlite_connections_never_switch_the_journal_mode(tmp_path) -> None:  # noqa: ANN001
    """Issue 21: 15 of 20 concurrent submissions failed in embedded mode while every new pooled connection
    ran PRAGMA journal_mode=WAL (switching the journal needs the file to itself; 20 connections switching
    a fresh file at once get "database is locked" - seen once in 20 tries with plain sqlite3 here - or a
    disk I/O error). WAL is set once per file before the pool connects (db.session._wal)."""
    import sqlite3
    from concurrent.futures import ThreadPoolExecutor

    from sqlalchemy import event, text

    path = tmp_path / "jobs.sqlite"
    fresh = sqlite3.connect(path)
    fresh.execute("CREATE TABLE t (n INTEGER)")  # a file in the default rollback-journal mode
    fresh.close()
    eng, _ = engine_for(f"sqlite:///{path}")
    seen: list[str] = []  # list.append is atomic: the connections' threads share it

    def trace(dbapi_conn, _record) -> None:  # noqa: ANN001 - first of the connect hooks: sees what they run
        dbapi_conn.set_trace_callback(seen.append)

    event.listen(eng, "connect", trace, insert=True)

    def write(i: int) -> None:
        with eng.connect() as conn:  # new pooled connections at once (the pool + its overflow: 15)
            conn.execute(text("INSERT INTO t VALUES (:n)"), {"n": i})
            conn.commit()

    with ThreadPoolExecutor(20) as pool:
        list(pool.map(write, range(20)))
    ran = list(seen)
    assert ran and not [sql for sql in ran if "journal_mode" in sql.lower()], ran
    with eng.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM t")).scalar() == 20
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"  # set once, by _wal
