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
