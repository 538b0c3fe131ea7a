"""The PostgreSQL database the job-table tests run on: a fresh one per test, dropped after."""

from __future__ import annotations

import os
import uuid

import pytest
import sqlalchemy

from db.session import engine_for

PG = os.environ.get("HITLINE_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture
def pg_url():
    try:
        admin = sqlalchemy.create_engine(PG, isolation_level="AUTOCOMMIT")
        admin.connect().close()
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"PostgreSQL not reachable ({e}); .ci/run starts it")
    name = "hitline_db_" + uuid.uuid4().hex[:8]
    with admin.connect() as c:
        c.execute(sqlalchemy.text(f"CREATE DATABASE {name}"))
    url = PG.rsplit("/", 1)[0] + "/" + name
    yield url
    engine_for(url)[0].dispose()
    with admin.connect() as c:
        c.execute(sqlalchemy.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
