"""Automatic reconciliation (hitline/jobs/reconcile.py) and claim heartbeats (hitline/jobs/heartbeat.py)
on a SQLite job table: which jobs count as lost, and which never do."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from db import crud
from db.models import Attempt, Job, utcnow
from db.session import init_db, session_scope
from hitline.jobs.heartbeat import held_claims
from hitline.jobs.reconcile import reconcile


@pytest.fixture
def db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'jobs.sqlite'}"
    init_db(url)
    with session_scope(url) as s:
        crud.create_batch(s, "b1", catalog_dir="c", new_dir="n", out_dir="o", options={}, budget_usd=None, notes=[])
        for i in range(6):
            crud.add_job(s, "b1", "sku", f"S{i}", i, {}, "render")
    return url


def _age(url: str, job_id: int, seconds: float, **values: object) -> None:
    """Make job `job_id` look as if it was last touched `seconds` ago."""
    past = utcnow() - timedelta(seconds=seconds)
    with session_scope(url) as s:
        s.execute(update(Job).where(Job.id == job_id).values(updated_at=past, **values))


def _claim(url: str, job_id: int, age_s: float) -> None:
    with session_scope(url) as s:
        assert crud.claim(s, job_id, "render") is not None
    _age(url, job_id, age_s, claimed_at=utcnow() - timedelta(seconds=age_s))


def test_dead_claim_is_taken_back_and_live_one_is_not(db: str) -> None:
    _claim(db, 1, age_s=120)  # a worker that stopped beating two minutes ago
    _claim(db, 2, age_s=5)  # a live one
    lost = reconcile(db, lease_s=60, grace_s=30, in_flight=lambda: None)
    assert [(j.job_id, j.why) for j in lost] == [(1, "dead claim")]
    with session_scope(db) as s:
        assert s.get(Job, 1).state == "pending" and s.get(Job, 2).state == "running"
        outcomes = [a.outcome for a in s.query(Attempt).filter(Attempt.job_id == 1)]
    assert outcomes == ["lost"]
    assert reconcile(db, lease_s=60, grace_s=30, in_flight=lambda: None) == []  # once only


def test_pending_job_without_message_is_resent_only_when_broker_is_readable(db: str) -> None:
    for j in (1, 2, 3):
        _age(db, j, 300)
    _age(db, 4, 1)  # just enqueued: inside the grace period
    # the broker cannot be read (RabbitMQ): nothing is guessed
    assert reconcile(db, lease_s=60, grace_s=30, in_flight=lambda: None) == []
    # job 2 has a message queued; job 3's message was popped by a worker between the two readings
    readings = iter([{2, 5, 6}, {2, 3, 5, 6}])
    lost = reconcile(db, lease_s=60, grace_s=30, in_flight=lambda: next(readings))
    assert sorted(j.job_id for j in lost) == [1]
    assert lost[0].why == "no message" and lost[0].stage == "render"
    # re-sent now: the next pass leaves it alone for the grace period
    assert reconcile(db, lease_s=60, grace_s=30, in_flight=lambda: {2, 3}) == []


def test_heartbeat_keeps_a_long_stage_alive(db: str) -> None:
    _claim(db, 1, age_s=0)
    with held_claims(db, [1], "render", every_s=0.2):
        time.sleep(1.5)  # longer than the lease below: only the heartbeat keeps the claim fresh
        assert reconcile(db, lease_s=1.0, grace_s=30, in_flight=lambda: None) == []
    time.sleep(1.2)  # the stage's process is gone (no more beats): the claim goes stale
    assert [j.job_id for j in reconcile(db, lease_s=1.0, grace_s=30, in_flight=lambda: None)] == [1]
