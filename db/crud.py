"""Plain query functions over the job table. State changes are conditional updates, so a redelivered
task or a second worker never runs a stage twice."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

from sqlalchemy import false, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.models import Attempt, Batch, CacheEntry, Charge, Job, utcnow

OPEN = ("pending", "running", "retrying")
CANCELLED = "cancelled"


def create_batch(s: Session, batch_id: str, *, catalog_dir: str, new_dir: str, out_dir: str,
                 options: dict[str, Any], budget_usd: float | None, notes: list[Any]) -> Batch:
    b = Batch(id=batch_id, catalog_dir=catalog_dir, new_dir=new_dir, out_dir=out_dir,
              options=options, budget_usd=budget_usd, notes=notes)
    s.add(b)
    s.flush()
    return b


def add_job(s: Session, batch_id: str, kind: str, item_id: str, row_no: int, row: dict[str, Any],
            stage: str, state: str = "pending", error: str | None = None) -> Job:
    j = Job(batch_id=batch_id, kind=kind, item_id=item_id, row_no=row_no, row=row, stage=stage,
            state=state, error=error, result={})
    s.add(j)
    return j


def add_jobs(s: Session, batch_id: str, kind: str, rows: list[tuple[str, dict[str, Any]]],
             stage: str = "embed") -> list[int]:
    """Insert pending jobs for (item_id, row) pairs (row_no = position) and return their ids in the same
    order. For bulk submission: ORM objects cost ~10x more per row. PostgreSQL: the ids are taken from the
    column's sequence first and the rows go in as one pipelined executemany; an INSERT .. RETURNING of
    10,000 rows cost 3x the client CPU (psycopg re-parses each 1,000-row statement, too long for its
    cache). SQLite: one INSERT .. RETURNING."""
    if not rows:
        return []
    params = [{"batch_id": batch_id, "kind": kind, "item_id": item_id, "row_no": i, "row": row, "stage": stage,
               "state": "pending", "result": {}} for i, (item_id, row) in enumerate(rows)]
    if s.get_bind().dialect.name != "postgresql":
        return list(s.scalars(insert(Job).returning(Job.id, sort_by_parameter_order=True), params))
    ids = sorted(s.scalars(text("SELECT nextval(pg_get_serial_sequence(:table, 'id')) FROM generate_series(1, :n)"),
                           {"table": Job.__tablename__, "n": len(params)}))
    for job_id, p in zip(ids, params):
        p["id"] = job_id
    s.execute(insert(Job), params)
    return ids


def claim(s: Session, job_id: int, stage: str, token: str | None = None,
          stale_after_s: float = 900.0) -> Job | None:
    """Mark (job, stage) running if it is ours to run; None when it is done, failed or running elsewhere.

    `token` is the Celery task id: the same message redelivered (its worker died) or retried after a
    lost connection takes its own claim back at once instead of waiting for the claim to go stale."""
    now = utcnow()
    stale = now - timedelta(seconds=stale_after_s)
    running_ours = (Job.state == "running") & ((Job.claimed_at < stale) | (
        (Job.claimed_by == token) if token else false()))
    res = s.execute(
        update(Job)
        .where(Job.id == job_id, Job.stage == stage)
        .where(Job.state.in_(("pending", "retrying")) | running_ours)
        .where(~_batch_cancelled())
        .values(state="running", claimed_at=now, claimed_by=token, attempts=Job.attempts + 1)
    )
    if res.rowcount != 1:
        stop_if_cancelled(s, job_id)
        return None
    # a reclaimed attempt (redelivery) closes the one its dead worker left open
    _close_attempt(s, job_id, stage, "lost", "the worker running it stopped")
    s.add(Attempt(job_id=job_id, stage=stage, started_at=now))
    s.flush()
    return s.get(Job, job_id, populate_existing=True)


def _close_attempt(s: Session, job_id: int, stage: str, outcome: str, error: str | None) -> float:
    a = s.scalars(select(Attempt).where(Attempt.job_id == job_id, Attempt.stage == stage,
                                        Attempt.outcome == "running").order_by(Attempt.id.desc())).first()
    if a is None:
        return 0.0
    started = a.started_at if a.started_at.tzinfo else a.started_at.replace(tzinfo=timezone.utc)
    a.seconds = (utcnow() - started).total_seconds()
    a.outcome, a.error = outcome, error
    return a.seconds


def advance(s: Session, job_id: int, stage: str, next_stage: str, result: dict[str, Any] | None = None) -> None:
    """Stage finished: store its result and move the job on (only if it is still at that stage)."""
    _close_attempt(s, job_id, stage, "ok", None)
    job = s.get(Job, job_id, populate_existing=True)
    if job is None or job.stage != stage:
        return
    merged = dict(job.result or {})
    if result is not None:
        merged[stage] = result
    job.result = merged
    job.stage = next_stage
    job.state = "done" if next_stage == "done" else "pending"
    job.error = None
    job.claimed_at = job.claimed_by = None
    # the chain sends the next stage's message as soon as this task returns
    job.enqueued_at = utcnow() if next_stage != "done" else None
    if next_stage != "done":
        s.flush()
        stop_if_cancelled(s, job_id)  # a cancel during this stage: the work is kept, the next stage not run


# --- cancel ----------------------------------------------------------------------------------------

def _batch_cancelled():  # noqa: ANN202
    return select(Batch.id).where(Batch.id == Job.batch_id, Batch.cancelled_at.is_not(None)).exists()


def stop_if_cancelled(s: Session, job_id: int) -> bool:
    """A waiting job of a cancelled batch becomes `cancelled` (conditional: a running one finishes its stage)."""
    res = s.execute(update(Job).where(Job.id == job_id, Job.state.in_(("pending", "retrying", "budget_exceeded")))
                    .where(_batch_cancelled())
                    .values(state=CANCELLED, error="cancelled", claimed_at=None, claimed_by=None, enqueued_at=None)
                    .execution_options(synchronize_session=False))
    return res.rowcount == 1


def set_state(s: Session, job_id: int, stage: str, state: str, reason: str | None) -> None:
    """retrying | failed | budget_exceeded, with the reason the user will read."""
    outcome = {"retrying": "retry", "failed": "failed", "budget_exceeded": "held"}[state]
    _close_attempt(s, job_id, stage, outcome, reason)
    s.execute(update(Job).where(Job.id == job_id, Job.stage == stage)
              .values(state=state, error=reason, claimed_at=None, claimed_by=None,
                      # a retry is a new message (Celery re-sends the task); the others have none
                      enqueued_at=utcnow() if state == "retrying" else None))


def release(s: Session, job_id: int, stage: str) -> None:
    """Give a claim back without counting it (e.g. waiting for the catalog)."""
    a = s.scalars(select(Attempt).where(Attempt.job_id == job_id, Attempt.stage == stage,
                                        Attempt.outcome == "running").order_by(Attempt.id.desc())).first()
    if a is not None:
        s.delete(a)
    s.execute(update(Job).where(Job.id == job_id, Job.stage == stage, Job.state == "running")
              .values(state="pending", claimed_at=None, claimed_by=None, attempts=Job.attempts - 1,
                      enqueued_at=utcnow()))


def job(s: Session, job_id: int) -> Job | None:
    return s.get(Job, job_id, populate_existing=True)


def mark_enqueued(s: Session, job_ids: Iterable[int]) -> None:
    """The messages for these jobs were sent (after the broker accepted them)."""
    ids = sorted(job_ids)
    for n in range(0, len(ids), 1000):
        part = ids[n:n + 1000]
        # lock the rows in id order first, the order workers claim a chunk in: a plain UPDATE ... IN locks
        # them in heap order, which deadlocked against a worker already claiming the same chunk (PostgreSQL)
        s.execute(select(Job.id).where(Job.id.in_(part)).order_by(Job.id).with_for_update())
        s.execute(update(Job).where(Job.id.in_(part)).values(enqueued_at=utcnow()))


def jobs(s: Session, batch_id: str, kind: str | None = None, ids: Iterable[int] | None = None) -> list[Job]:
    q = select(Job).where(Job.batch_id == batch_id)
    if kind:
        q = q.where(Job.kind == kind)
    if ids is not None:
        q = q.where(Job.id.in_(list(ids)))
    return list(s.scalars(q.order_by(Job.id)))


def catalog_open(s: Session, batch_id: str) -> int:
    """How many catalog (hit) jobs of the batch are still being embedded/indexed."""
    return s.scalar(select(func.count()).select_from(Job).where(
        Job.batch_id == batch_id, Job.kind == "hit", Job.state.in_(OPEN))) or 0


def progress(s: Session, batch_id: str) -> dict[tuple[str, str], int]:
    """(kind, state) -> count: cheap enough to poll for a batch of thousands of SKUs."""
    rows = s.execute(select(Job.kind, Job.state, func.count()).where(Job.batch_id == batch_id)
                     .group_by(Job.kind, Job.state))
    return {(k, st): n for k, st, n in rows}


def latest_batch_id(s: Session) -> str | None:
    return s.scalar(select(Batch.id).order_by(Batch.created_at.desc()).limit(1))


# --- cost ------------------------------------------------------------------------------------

def spent(s: Session, batch_id: str, stage: str | None = None) -> float:
    """What the batch's calls cost (reservations in flight included), all of them or one stage's."""
    q = select(func.coalesce(func.sum(Charge.cost_usd), 0.0)).where(Charge.batch_id == batch_id)
    if stage is not None:
        q = q.where(Charge.stage == stage)
    return float(s.scalar(q) or 0.0)


def reserve(s: Session, batch_id: str, job_id: int | None, stage: str, key: str, model: str,
            cost: float, budget: float | None) -> str:
    """Reserve the cost of one paid call before making it.

    Returns "ok" (go ahead: reserved now, or this job's own reservation from an earlier delivery),
    "paid" (another job of the batch already paid for this key: reuse its result, do not call again),
    "busy" (another job holds the reservation: its call is in flight) or "over" (it would pass the
    budget). The batch row is locked so concurrent workers cannot both squeeze under the budget
    (FOR UPDATE on PostgreSQL; SQLite serialises writers).
    """
    s.execute(select(Batch.id).where(Batch.id == batch_id).with_for_update())
    existing = s.scalar(select(Charge).where(Charge.batch_id == batch_id, Charge.key == key))
    if existing is not None:
        if existing.job_id == job_id:
            return "ok"
        return "paid" if existing.state == "charged" else "busy"
    if budget is not None and spent(s, batch_id) + cost > budget + 1e-9:
        return "over"
    try:
        with s.begin_nested():
            s.add(Charge(batch_id=batch_id, job_id=job_id, stage=stage, key=key, model=model, cost_usd=cost))
    except IntegrityError:
        return "ok"
    return "ok"


def settle(s: Session, batch_id: str, key: str, cost: float | None = None, *, keep: bool = True) -> None:
    """After the call: keep the reservation as a charge (with the actual cost) or drop it (call failed)."""
    c = s.scalar(select(Charge).where(Charge.batch_id == batch_id, Charge.key == key))
    if c is None:
        return
    if not keep:
        s.delete(c)
        return
    if c.state != "charged" and c.job_id is not None:
        s.execute(update(Job).where(Job.id == c.job_id).values(cost_usd=Job.cost_usd + (cost if cost is not None else c.cost_usd)))
    if cost is not None:
        c.cost_usd = cost
    c.state = "charged"


def charged(s: Session, batch_id: str, key: str) -> float:
    """What the call under key was charged (0.0 if it was free or never reserved)."""
    return float(s.scalar(select(Charge.cost_usd).where(Charge.batch_id == batch_id, Charge.key == key,
                                                        Charge.state == "charged")) or 0.0)


# --- cache -----------------------------------------------------------------------------------

def cache_get(s: Session, key: str) -> Any | None:
    e = s.get(CacheEntry, key)
    return None if e is None else e.value


def cache_put(s: Session, key: str, value: Any) -> None:
    try:
        with s.begin_nested():
            s.merge(CacheEntry(key=key, value=value))
    except IntegrityError:  # a concurrent writer stored the same content-keyed value
        pass


def now() -> datetime:
    return utcnow()


def job_batch(s: Session, job_id: int) -> str:
    return s.scalar(select(Job.batch_id).where(Job.id == job_id)) or ""


def stage_seconds(s: Session, job_ids: list[int]) -> dict[int, dict[str, float]]:
    """Seconds spent per job and stage (all attempts)."""
    out: dict[int, dict[str, float]] = {}
    if not job_ids:
        return out
    rows = s.execute(select(Attempt.job_id, Attempt.stage, func.sum(Attempt.seconds))
                     .where(Attempt.job_id.in_(job_ids)).group_by(Attempt.job_id, Attempt.stage).order_by(Attempt.job_id))
    for job_id, stage, secs in rows:
        out.setdefault(job_id, {})[stage] = float(secs or 0.0)
    return out
