"""Engine and session factory, one per process (created lazily, so after a worker fork)."""

from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from pathlib import Path

from sqlalchemy import create_engine, event, exc, text
from sqlalchemy.engine import Connection, CursorResult, Engine, Result
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

from db.models import Base

_lock = threading.Lock()
_engines: dict[tuple[int, str], tuple[Engine, sessionmaker[Session]]] = {}


def _sqlite_pragmas(dbapi_conn: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    # we issue BEGIN ourselves (below): pysqlite's deferred BEGIN lets a reader upgrade to a writer,
    # which SQLite answers with an immediate "database is locked" when another thread writes.
    # No journal_mode here: WAL is a property of the file, set once by _wal (a pooled connection that
    # switched it while others held the file open got "disk I/O error", 15 of 20 concurrent submissions)
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _wal(path: str) -> None:
    """Put the SQLite file in WAL mode once, before this process pools any connection to it (WAL persists
    in the file; a file already in WAL answers at once). Another process switching it at the same moment
    makes this one wait on the busy timeout, not fail."""
    import sqlite3

    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout=30000")
        if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            conn.execute("PRAGMA journal_mode=WAL")
    finally:
        conn.close()


# a pooled connection that sat idle this long is pinged before use (a server restart cuts it); one
# given back moments ago is not: a ping per checkout was a round trip per transaction, ~20 per SKU.
# A connection cut within that window fails its statement, SQLAlchemy drops the pool's connections,
# and the task layer retries (hitline.jobs.runner.is_transient).
PING_IDLE_S = 5.0


def _checked_in(_dbapi_conn: DBAPIConnection, record: ConnectionPoolEntry) -> None:
    record.info["idle_since"] = time.monotonic()


def _ping_if_idle(
    eng: Engine,
) -> Callable[[DBAPIConnection, ConnectionPoolEntry, PoolProxiedConnection], None]:
    def checkout(dbapi_conn: DBAPIConnection, record: ConnectionPoolEntry, _proxy: PoolProxiedConnection) -> None:
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since < PING_IDLE_S:
            return
        try:
            eng.dialect.do_ping(dbapi_conn)
        except Exception as e:  # the pool retries the checkout on a fresh connection
            raise exc.DisconnectionError(str(e)) from e

    return checkout


def engine_for(url: str) -> tuple[Engine, sessionmaker[Session]]:
    """The engine for url in this process; a forked child gets its own."""
    key = (os.getpid(), url)
    with _lock:
        if key not in _engines:
            if url.startswith("sqlite"):
                path = url.split("///", 1)[-1]
                if path and path != ":memory:":
                    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
                if path and path != ":memory:":
                    _wal(path)
                eng = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
                event.listen(eng, "connect", _sqlite_pragmas)
                event.listen(eng, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
            else:
                eng = create_engine(url, pool_size=5, max_overflow=5)
                event.listen(eng, "checkin", _checked_in)
                event.listen(eng, "checkout", _ping_if_idle(eng))
            _engines[key] = (eng, sessionmaker(eng, expire_on_commit=False))
        return _engines[key]


def init_db(url: str) -> None:
    """Bring the schema up to date: Alembic migrations on a server database (under an advisory lock,
    so workers starting together migrate once), create_all on the embedded SQLite file."""
    eng, _ = engine_for(url)
    if eng.dialect.name != "postgresql":
        Base.metadata.create_all(eng)
        _add_missing_columns(eng)
        _per_tenant_idempotency(eng)
        return
    from alembic import command
    from alembic.config import Config

    cfg = Config(str(Path(__file__).with_name("alembic.ini")))
    cfg.attributes["url"] = url
    with eng.connect() as conn:
        conn.execute(text("SELECT pg_advisory_lock(727274)"))
        try:
            command.upgrade(cfg, "head")
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(727274)"))
            conn.commit()


def _add_missing_columns(eng: Engine) -> None:
    """An embedded job table made by an earlier version: create_all makes missing tables, not the columns
    later migrations added to existing ones (e.g. 0004's batch.spent_usd), nor their new indexes. Those
    columns are all nullable or have a server default, so SQLite can add them in place; a table's charges
    are summed into spent_usd, the render results' digests copied into job.digest."""
    from sqlalchemy import inspect
    from sqlalchemy.schema import CreateColumn

    with eng.begin() as conn:
        have = inspect(conn)
        for table in Base.metadata.sorted_tables:
            present = {c["name"] for c in have.get_columns(table.name)}
            for col in table.columns:
                if col.name not in present:
                    conn.exec_driver_sql(f"ALTER TABLE {table.name} ADD COLUMN {CreateColumn(col).compile(conn)}")
                    if (table.name, col.name) == ("batch", "spent_usd"):
                        conn.exec_driver_sql(
                            "UPDATE batch SET spent_usd = COALESCE((SELECT SUM(charge.cost_usd) "
                            "FROM charge WHERE charge.batch_id = batch.id), 0)"
                        )
                    if (table.name, col.name) == ("job", "digest"):  # as migration i21_job_digest
                        conn.exec_driver_sql(
                            "UPDATE job SET digest = json_extract(result, '$.render.digest') "
                            "WHERE kind = 'sku' AND json_extract(result, '$.render.digest') IS NOT NULL"
                        )
            for index in table.indexes:  # create_all makes an existing table's new indexes no more than columns
                index.create(conn, checkfirst=True)


def _per_tenant_idempotency(eng: Engine) -> None:
    """An embedded file made before tenants has UNIQUE (idempotency_key) on batch, so a second tenant's
    batch with a key another tenant used fails to insert. SQLite cannot drop a table constraint: the
    table is rebuilt with the current definition (UNIQUE (tenant_id, idempotency_key)), rows copied, in
    one transaction with foreign keys off (dropping batch must not cascade to its jobs), as
    https://sqlite.org/lang_altertable.html#otheralter describes; migration i21_tenants on PostgreSQL."""
    from sqlalchemy import MetaData, inspect
    from sqlalchemy.schema import CreateIndex, CreateTable

    with eng.connect() as conn:
        uniques = inspect(conn).get_unique_constraints("batch")
    if not any(u["column_names"] == ["idempotency_key"] for u in uniques):
        return
    table = Base.metadata.tables["batch"]
    new = table.to_metadata(MetaData(), name="batch_rebuilt")
    cols = ", ".join(f'"{c.name}"' for c in table.columns)
    raw = eng.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("PRAGMA foreign_keys=OFF")  # outside a transaction, or it does nothing
        try:
            cur.execute("BEGIN IMMEDIATE")
            cur.execute(str(CreateTable(new).compile(eng)))  # the table alone: its indexes after the rename
            cur.execute(f"INSERT INTO batch_rebuilt ({cols}) SELECT {cols} FROM batch")
            cur.execute("DROP TABLE batch")
            cur.execute("ALTER TABLE batch_rebuilt RENAME TO batch")
            for index in table.indexes:
                cur.execute(str(CreateIndex(index).compile(eng)))
            problems = cur.execute("PRAGMA foreign_key_check").fetchall()
            if problems:
                raise RuntimeError(f"rebuilding batch left foreign keys that point nowhere: {problems[:5]}")
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        finally:
            cur.execute("PRAGMA foreign_keys=ON")
    finally:
        raw.close()


def rowcount(result: Result[Any]) -> int:
    """The rows an UPDATE/DELETE matched. Session.execute is typed as returning a Result; for a DML
    statement it is a CursorResult (the one kind that has a rowcount), on a Session as on a Connection."""
    if not isinstance(result, CursorResult):
        raise TypeError(f"no row count on a {type(result).__name__} (not an UPDATE/DELETE result)")
    return result.rowcount


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    _, factory = engine_for(url)
    s = factory()
    try:
        yield s
        s.commit()
    except BaseException:
        s.rollback()
        raise
    finally:
        s.close()


@contextmanager
def connection_scope(url: str) -> Iterator[Connection]:
    """One transaction on a plain Connection, for the line's per-stage statements (all Core, no ORM
    objects): a Session's unit of work costs about twice the client CPU per statement."""
    eng, _ = engine_for(url)
    with eng.begin() as conn:
        yield conn
