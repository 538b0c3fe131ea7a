"""Automatic reconciliation: find, from the job table, the work that nobody will do any more, and hand
it back to be enqueued again. No Celery here; the worker side (tasks/reconciler.py) runs it every
`reconcile_every_s` seconds and sends the chains.

Two kinds of lost work:

* **dead claims**: a job `running` whose heartbeat (`claimed_at`, renewed by
  `hitline.jobs.heartbeat` while the stage runs) is older than the claim lease. Its worker died
  (kill -9, OOM, a lost host) or lost the job table for longer than the lease. The job goes back to
  `pending` at the same stage.
* **lost messages**: a job `pending`/`retrying` untouched for `grace_s` whose id is in no message the
  broker holds (`in_flight()`, read from the broker by the caller; Redis without persistence loses every
  queued and unacked message on a restart). The broker is read before and after the table query and
  both readings count: a message a worker has popped but not yet recorded as unacked (it sits in the
  worker's socket while its event loop is busy) shows up in one of them. When the broker cannot be
  inspected (`in_flight()` is None, RabbitMQ: durable queues, unacked messages come back on their own)
  this rule is off.

Every stage claims `(job, stage)` with a conditional update, so a job sent twice (a message the broker
did still hold after all) runs once; the worst case of a wrong guess is a message that finds nothing
to do.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Callable

from sqlalchemy import or_, select, update

from db.models import Attempt, Job, utcnow
from db.session import rowcount, session_scope

__all__ = ["LostJob", "reconcile"]


@dataclass(frozen=True)
class LostJob:
    batch_id: str
    kind: str  # "hit" | "sku"
    job_id: int
    stage: str
    why: str  # "dead claim" | "no message"


def reconcile(
    db_url: str, *, lease_s: float, grace_s: float, in_flight: Callable[[], set[int] | None], limit: int = 5000
) -> list[LostJob]:
    """Reset lost jobs to `pending` (marking them touched now, so the next pass waits `grace_s` before
    looking at them again) and return them; the caller enqueues one chain per job from its stage."""
    sent_before = in_flight()
    now = utcnow()
    lost: list[LostJob] = []
    with session_scope(db_url) as s:
        dead = s.execute(
            select(Job.id, Job.batch_id, Job.kind, Job.stage, Job.claimed_at)
            .where(Job.state == "running", Job.claimed_at < now - timedelta(seconds=lease_s))
            .limit(limit)
        ).all()
        for job_id, batch_id, kind, stage, claimed_at in dead:
            # conditional on the claim we saw: a heartbeat that lands in between keeps the job
            moved = rowcount(
                s.execute(
                    update(Job)
                    .where(Job.id == job_id, Job.state == "running", Job.claimed_at == claimed_at)
                    .values(state="pending", claimed_at=None, claimed_by=None, updated_at=now)
                )
            )
            if moved:
                s.execute(
                    update(Attempt)
                    .where(Attempt.job_id == job_id, Attempt.stage == stage, Attempt.outcome == "running")
                    .values(outcome="lost", error=f"worker lost: no heartbeat for {lease_s:g} s")
                )
                lost.append(LostJob(batch_id, kind, job_id, stage, "dead claim"))
        if sent_before is not None:
            # quiet: not touched and no message sent (enqueued_at) within the grace period
            quiet = [
                Job.updated_at < now - timedelta(seconds=grace_s),
                or_(Job.enqueued_at.is_(None), Job.enqueued_at < now - timedelta(seconds=grace_s)),
            ]
            idle = s.execute(
                select(Job.id, Job.batch_id, Job.kind, Job.stage)
                .where(Job.state.in_(("pending", "retrying")), *quiet)
                .order_by(Job.id)
                .limit(limit)
            ).all()
            sent = sent_before | (in_flight() or set()) if idle else sent_before
            orphans = [row for row in idle if row[0] not in sent]
            if orphans:
                s.execute(
                    update(Job)
                    .where(Job.id.in_([r[0] for r in orphans]), Job.state.in_(("pending", "retrying")))
                    .values(state="pending", updated_at=now)
                )
            lost += [LostJob(b, k, j, st, "no message") for j, b, k, st in orphans]
    return lost
