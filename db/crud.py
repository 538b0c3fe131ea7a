"""Plain query functions over the job table. State changes are conditional updates, so a redelivered
task or a second worker never runs a stage twice."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

from sqlalchemy import Exists, Table, bindparam, case, delete, func, insert, select, text, update
from sqlalchemy.engine import Connection, Row
from sqlalchemy.orm import Session

from db.models import Attempt, Base, Batch, CacheEntry, Charge, Job, Tenant, result_digest, utcnow
from db.session import rowcount

# what the line's hot functions run on: a Session, or a plain Connection (db.session.connection_scope)
Db = Session | Connection
OPEN = ("pending", "running", "retrying")
CANCELLED = "cancelled"


def create_batch(
    s: Session,
    batch_id: str,
    *,
    catalog_dir: str,
    new_dir: str,
    out_dir: str,
    options: dict[str, Any],
    budget_usd: float | None,
    notes: list[Any],
) -> Batch:
    b = Batch(
        id=batch_id,
        catalog_dir=catalog_dir,
        new_dir=new_dir,
        out_dir=out_dir,
        options=options,
        budget_usd=budget_usd,
        notes=notes,
    )
    s.add(b)
    s.flush()
    return b


def add_job(
    s: Session,
    batch_id: str,
    kind: str,
    item_id: str,
    row_no: int,
    row: dict[str, Any],
    stage: str,
    state: str = "pending",
    error: str | None = None,
) -> Job:
    j = Job(
        batch_id=batch_id,
        kind=kind,
        item_id=item_id,
        row_no=row_no,
        row=row,
        stage=stage,
        state=state,
        error=error,
        result={},
    )
    s.add(j)
    return j


def add_jobs(s: Session, batch_id: str, kind: str, rows: list[tuple[str, dict[str, Any]]], stage: str) -> list[int]:
    """Insert pending jobs for (item_id, row) pairs (row_no = position) and return their ids in the same
    order. For bulk submission: ORM objects cost ~10x more per row. PostgreSQL: the ids are taken from the
    column's sequence first and the rows go in as one pipelined executemany; an INSERT .. RETURNING of
    10,000 rows cost 3x the client CPU (psycopg re-parses each 1,000-row statement, too long for its
    cache). SQLite: one INSERT .. RETURNING."""
    if not rows:
        return []
    params = [
        {
            "batch_id": batch_id,
            "kind": kind,
            "item_id": item_id,
            "row_no": i,
            "row": row,
            "stage": stage,
            "state": "pending",
            "result": {},
        }
        for i, (item_id, row) in enumerate(rows)
    ]
    if s.get_bind().dialect.name != "postgresql":
        return list(s.scalars(insert(Job).returning(Job.id, sort_by_parameter_order=True), params))
    ids = sorted(
        s.scalars(
            text("SELECT nextval(pg_get_serial_sequence(:table, 'id')) FROM generate_series(1, :n)"),
            {"table": Job.__tablename__, "n": len(params)},
        )
    )
    for job_id, p in zip(ids, params):
        p["id"] = job_id
    s.execute(insert(Job), params)
    return ids


@dataclass(frozen=True)
class Claim:
    """A claimed (job, stage): the job's row as it was claimed and the attempt opened for this run. The
    stage's outcome is recorded against it (advance): the job's result was read here, the attempt's
    start is known, so recording needs no second read."""

    id: int
    batch_id: str
    kind: str
    item_id: str
    stage: str
    row: dict[str, Any]
    result: dict[str, Any]
    attempts: int
    attempt_id: int
    started_at: datetime
    # the batch's id, options, out_dir, budget_usd and vocab_version, read in the claim's own statement
    # (PostgreSQL); None where the caller reads the batch itself
    batch: BatchRow | None = None


def _table(model: type[Base]) -> Table:
    """A model's table, typed as one (DeclarativeBase declares __table__ as a FromClause)."""
    t = model.__table__
    if not isinstance(t, Table):
        raise TypeError(f"{model.__name__} is not mapped to a Table")
    return t


_JOB, _ATTEMPT, _CHARGE = _table(Job), _table(Attempt), _table(Charge)
# built once: the claim and the record of every stage of every job run these (Core, bound parameters)
_CLAIM = (
    update(_JOB)
    .where(_JOB.c.id == bindparam("jid"), _JOB.c.stage == bindparam("stg"))
    # claimed_by = NULL is never true: without a token only a stale claim is taken back
    .where(
        _JOB.c.state.in_(("pending", "retrying"))
        | (
            (_JOB.c.state == "running")
            & ((_JOB.c.claimed_at < bindparam("stale")) | (_JOB.c.claimed_by == bindparam("token")))
        )
    )
    .where(~select(Batch.id).where(Batch.id == _JOB.c.batch_id, Batch.cancelled_at.is_not(None)).exists())
    .values(state="running", claimed_at=bindparam("now"), claimed_by=bindparam("token"), attempts=_JOB.c.attempts + 1)
    .returning(
        _JOB.c.id,
        _JOB.c.batch_id,
        _JOB.c.kind,
        _JOB.c.item_id,
        _JOB.c.stage,
        _JOB.c.row,
        _JOB.c.result,
        _JOB.c.attempts,
    )
)
_LOSE_ATTEMPTS = (
    update(_ATTEMPT)
    .where(_ATTEMPT.c.job_id == bindparam("jid"), _ATTEMPT.c.stage == bindparam("stg"), _ATTEMPT.c.outcome == "running")
    .values(outcome="lost", error="the worker running it stopped")
    .returning(_ATTEMPT.c.id, _ATTEMPT.c.started_at)
)
_OPEN_ATTEMPT = insert(_ATTEMPT).returning(_ATTEMPT.c.id)
# PostgreSQL: the same claim in one statement and one round trip (it runs five times per SKU): the
# conditional UPDATE, closing a dead worker's attempt and opening this one are data-modifying CTEs on one
# snapshot (so `lost` cannot see the attempt `opened` inserts), and the batch comes back with the job.
# Joining the batch (UPDATE .. FROM) does not lock its row.
_CLAIM_PG = (
    text("""
WITH claimed AS (
    UPDATE job SET state = 'running', claimed_at = :now, claimed_by = :token, attempts = job.attempts + 1,
                   updated_at = :now
    FROM batch
    WHERE job.id = :jid AND job.stage = :stg AND batch.id = job.batch_id AND batch.cancelled_at IS NULL
      AND (job.state IN ('pending', 'retrying')
           OR (job.state = 'running' AND (job.claimed_at < :stale OR job.claimed_by = :token)))
    RETURNING job.id, job.batch_id, job.kind, job.item_id, job.stage, job.row, job.result, job.attempts,
              batch.options, batch.out_dir, batch.budget_usd, batch.vocab_version
), lost AS (
    UPDATE attempt SET outcome = 'lost', error = 'the worker running it stopped',
                       seconds = EXTRACT(EPOCH FROM (:now - attempt.started_at))
    WHERE attempt.job_id IN (SELECT id FROM claimed) AND attempt.stage = :stg AND attempt.outcome = 'running'
), opened AS (
    INSERT INTO attempt (job_id, stage, started_at, outcome)
    SELECT id, :stg, :now, 'running' FROM claimed
    RETURNING id
)
SELECT claimed.*, opened.id AS attempt_id FROM claimed, opened
""")
    .bindparams(bindparam("now", type_=_JOB.c.claimed_at.type), bindparam("stale", type_=_JOB.c.claimed_at.type))
    .columns(
        id=_JOB.c.id.type,
        batch_id=_JOB.c.batch_id.type,
        kind=_JOB.c.kind.type,
        item_id=_JOB.c.item_id.type,
        stage=_JOB.c.stage.type,
        row=_JOB.c.row.type,
        result=_JOB.c.result.type,
        attempts=_JOB.c.attempts.type,
        options=Batch.__table__.c.options.type,
        out_dir=Batch.__table__.c.out_dir.type,
        budget_usd=Batch.__table__.c.budget_usd.type,
        vocab_version=Batch.__table__.c.vocab_version.type,
        attempt_id=_ATTEMPT.c.id.type,
    )
)


def claim(s: Db, job_id: int, stage: str, token: str | None = None, stale_after_s: float = 900.0) -> Claim | None:
    """Mark (job, stage) running if it is ours to run; None when it is done, failed or running elsewhere.

    `token` is the Celery task id: the same message redelivered (its worker died) or retried after a
    lost connection takes its own claim back at once instead of waiting for the claim to go stale.
    The conditional claim (returning the job), closing an attempt a dead worker left open, opening this
    one: one statement on PostgreSQL (which also returns the batch), three on SQLite."""
    now = utcnow()
    params = {"jid": job_id, "stg": stage, "stale": now - timedelta(seconds=stale_after_s), "token": token, "now": now}
    if _dialect(s) == "postgresql":
        row = s.execute(_CLAIM_PG, params).first()
        if row is None:
            stop_if_cancelled(s, job_id)
            return None
        batch = BatchRow(row.batch_id, row.options, row.out_dir, row.budget_usd, row.vocab_version)
        return _claimed(row, row.attempt_id, now, batch)
    row = s.execute(_CLAIM, params).first()
    if row is None:
        stop_if_cancelled(s, job_id)
        return None
    # a reclaimed attempt (redelivery) closes the one its dead worker left open
    for lost_id, started in s.execute(_LOSE_ATTEMPTS, {"jid": job_id, "stg": stage}).all():
        s.execute(update(_ATTEMPT).where(_ATTEMPT.c.id == lost_id).values(seconds=_seconds_since(started, now)))
    attempt_id = s.execute(
        _OPEN_ATTEMPT, {"job_id": job_id, "stage": stage, "started_at": now, "outcome": "running"}
    ).scalar_one()
    return _claimed(row, attempt_id, now)


def _claimed(row: Row[Any], attempt_id: int, now: datetime, batch: BatchRow | None = None) -> Claim:
    """The Claim of a claimed job row (the claim statement's RETURNING, PostgreSQL or SQLite)."""
    return Claim(
        row.id,
        row.batch_id,
        row.kind,
        row.item_id,
        row.stage,
        dict(row.row or {}),
        dict(row.result or {}),
        row.attempts,
        attempt_id,
        now,
        batch=batch,
    )


@dataclass(frozen=True)
class BatchRow:
    """The batch columns a claim reads (what a SELECT of them returns)."""

    id: str
    options: object  # the JSON as stored; hitline.jobs.options.BatchOptions.read types it
    out_dir: str
    budget_usd: float | None
    vocab_version: str | None


def _seconds_since(started: datetime, now: datetime) -> float:
    started = started if started.tzinfo else started.replace(tzinfo=timezone.utc)
    return (now - started).total_seconds()


def _close_attempt(s: Session, job_id: int, stage: str, outcome: str, error: str | None) -> float:
    a = s.scalars(
        select(Attempt)
        .where(Attempt.job_id == job_id, Attempt.stage == stage, Attempt.outcome == "running")
        .order_by(Attempt.id.desc())
    ).first()
    if a is None:
        return 0.0
    a.seconds = _seconds_since(a.started_at, utcnow())
    a.outcome, a.error = outcome, error
    return a.seconds


def advance(s: Db, claimed: Claim, next_stage: str, result: dict[str, Any] | None = None) -> None:
    """Stage finished: store its result and move the job on (only if it is still at that stage). A cancel
    during the stage keeps the work and stops the job before the next stage (the same UPDATE).

    Close the claim's attempt, move the job: one statement on PostgreSQL (the attempt's UPDATE as a
    data-modifying CTE), two on SQLite. The job's result is the claimed one plus this stage's: only
    advance writes results, and only while the job is at the stage it claimed."""
    now = utcnow()
    merged = dict(claimed.result)
    if result is not None:
        merged[claimed.stage] = result
    params = {
        "jid": claimed.id,
        "stg": claimed.stage,
        "res": merged,
        # the summary's GROUP BY reads this column (an index), not the results
        "digest": result_digest(merged),
        "nxt": next_stage,
        "now": now,
        "aid": claimed.attempt_id,
        "secs": _seconds_since(claimed.started_at, now),
    }
    if _dialect(s) == "postgresql":
        finish, move_on = _ADVANCE_PG
    else:
        s.execute(_CLOSE_OK, params)
        finish, move_on = _FINISH, _MOVE_ON
    s.execute(finish if next_stage == "done" else move_on, params)


# --- cancel ----------------------------------------------------------------------------------------


def _batch_cancelled() -> Exists:  # correlated to the job table in a Core UPDATE
    return select(Batch.id).where(Batch.id == _JOB.c.batch_id, Batch.cancelled_at.is_not(None)).exists()


# advance's two statements, built once (building one per call cost more client CPU than running it)
_ADVANCE = (
    update(_JOB)
    .where(_JOB.c.id == bindparam("jid"), _JOB.c.stage == bindparam("stg"))
    .values(
        result=bindparam("res", type_=_JOB.c.result.type),
        digest=bindparam("digest", type_=_JOB.c.digest.type),
        stage=bindparam("nxt"),
        claimed_at=None,
        claimed_by=None,
        # set here: the column's onupdate is not applied to an UPDATE that carries a CTE
        updated_at=bindparam("now", type_=_JOB.c.updated_at.type),
    )
)
_FINISH = _ADVANCE.values(state="done", error=None, enqueued_at=None)
# the chain sends the next stage's message as soon as this task returns, unless the batch was cancelled
_MOVE_ON = _ADVANCE.values(
    state=case((_batch_cancelled(), CANCELLED), else_="pending"),
    error=case((_batch_cancelled(), "cancelled"), else_=None),
    enqueued_at=case((_batch_cancelled(), None), else_=bindparam("now")),
)
_CLOSE_OK = (
    update(_ATTEMPT)
    .where(_ATTEMPT.c.id == bindparam("aid"), _ATTEMPT.c.outcome == "running")
    .values(outcome="ok", error=None, seconds=bindparam("secs", type_=_ATTEMPT.c.seconds.type))
)
_ADVANCE_PG = (_FINISH.add_cte(_CLOSE_OK.cte("closed")), _MOVE_ON.add_cte(_CLOSE_OK.cte("closed")))


_STOP_IF_CANCELLED = (
    update(_JOB)
    .where(_JOB.c.id == bindparam("jid"), _JOB.c.state.in_(("pending", "retrying", "budget_exceeded")))
    .where(_batch_cancelled())
    .values(state=CANCELLED, error="cancelled", claimed_at=None, claimed_by=None, enqueued_at=None)
)


def stop_if_cancelled(s: Db, job_id: int) -> bool:
    """A waiting job of a cancelled batch becomes `cancelled` (conditional: a running one finishes its stage)."""
    return rowcount(s.execute(_STOP_IF_CANCELLED, {"jid": job_id})) == 1


def set_state(s: Session, job_id: int, stage: str, state: str, reason: str | None) -> None:
    """retrying | failed | budget_exceeded, with the reason the user will read."""
    outcome = {"retrying": "retry", "failed": "failed", "budget_exceeded": "held"}[state]
    _close_attempt(s, job_id, stage, outcome, reason)
    s.execute(
        update(Job)
        .where(Job.id == job_id, Job.stage == stage)
        .values(
            state=state,
            error=reason,
            claimed_at=None,
            claimed_by=None,
            # a retry is a new message (Celery re-sends the task); the others have none
            enqueued_at=utcnow() if state == "retrying" else None,
        )
    )


def release(s: Db, claimed: Claim) -> None:
    """Give a claim back without counting it (e.g. waiting for the catalog): its attempt is dropped."""
    s.execute(delete(_ATTEMPT).where(_ATTEMPT.c.id == claimed.attempt_id, _ATTEMPT.c.outcome == "running"))
    s.execute(
        update(_JOB)
        .where(_JOB.c.id == claimed.id, _JOB.c.stage == claimed.stage, _JOB.c.state == "running")
        .values(state="pending", claimed_at=None, claimed_by=None, attempts=_JOB.c.attempts - 1, enqueued_at=utcnow())
    )


def job(s: Session, job_id: int) -> Job | None:
    return s.get(Job, job_id, populate_existing=True)


_JOB_STATE = select(_JOB.c.stage, _JOB.c.state).where(_JOB.c.id == bindparam("jid"))


def job_state(s: Db, job_id: int) -> tuple[str, str] | None:
    """(stage, state) of a job, or None if there is no such job."""
    row = s.execute(_JOB_STATE, {"jid": job_id}).first()
    return None if row is None else (row.stage, row.state)


def mark_enqueued(s: Session, job_ids: Iterable[int]) -> None:
    """The messages for these jobs were sent (after the broker accepted them)."""
    ids = sorted(job_ids)
    for n in range(0, len(ids), 1000):
        part = ids[n : n + 1000]
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


_CATALOG_OPEN = (
    select(func.count())
    .select_from(_JOB)
    .where(_JOB.c.batch_id == bindparam("bid"), _JOB.c.kind == "hit", _JOB.c.state.in_(OPEN))
)


def catalog_open(s: Db, batch_id: str) -> int:
    """How many catalog (hit) jobs of the batch are still being embedded/indexed."""
    return s.execute(_CATALOG_OPEN, {"bid": batch_id}).scalar() or 0


def progress(s: Session, batch_id: str) -> dict[tuple[str, str], int]:
    """(kind, state) -> count: cheap enough to poll for a batch of thousands of SKUs."""
    rows = s.execute(
        select(Job.kind, Job.state, func.count()).where(Job.batch_id == batch_id).group_by(Job.kind, Job.state)
    )
    return {(k, st): n for k, st, n in rows}


def latest_batch_id(s: Session) -> str | None:
    return s.scalar(select(Batch.id).order_by(Batch.created_at.desc()).limit(1))


# --- cost ------------------------------------------------------------------------------------

# the statements of every paid call, built once (a statement built per call cost more client CPU than it
# took to run: SQLAlchemy memoizes a statement object's cache key, not a new one's)
_BATCH_T = _table(Batch)
_SPENT = select(func.coalesce(func.sum(_CHARGE.c.cost_usd), 0.0)).where(_CHARGE.c.batch_id == bindparam("bid"))
# the batch row, locked: concurrent reservations of a batch take turns; its running total comes with it
_LOCK_BATCH = (
    select(_BATCH_T.c.spent_usd, _BATCH_T.c.tenant_id).where(_BATCH_T.c.id == bindparam("bid")).with_for_update()
)
# the batch's tenant, locked after the batch row (always in that order): its monthly budget and running month total
_TENANT_T = _table(Tenant)
_LOCK_TENANT = (
    select(_TENANT_T.c.monthly_budget_usd, _TENANT_T.c.month, _TENANT_T.c.month_spent_usd)
    .where(_TENANT_T.c.id == bindparam("tid"))
    .with_for_update()
)
_BATCH_TENANT = select(_BATCH_T.c.tenant_id).where(_BATCH_T.c.id == bindparam("bid"))
# a charge made now: added to this month's total, which starts from 0 when the month is a new one
_ADD_MONTH = (
    update(_TENANT_T)
    .where(_TENANT_T.c.id == bindparam("tid"))
    .values(
        month=bindparam("m1", type_=_TENANT_T.c.month.type),
        month_spent_usd=case(
            (_TENANT_T.c.month == bindparam("m2", type_=_TENANT_T.c.month.type), _TENANT_T.c.month_spent_usd), else_=0.0
        )
        + bindparam("delta", type_=_TENANT_T.c.month_spent_usd.type),
    )
)
# a reservation settled or dropped: changes its own month's total only (a month gone by is left as it was)
_ADJ_MONTH = (
    update(_TENANT_T)
    .where(_TENANT_T.c.id == bindparam("tid"), _TENANT_T.c.month == bindparam("m1"))
    .values(month_spent_usd=_TENANT_T.c.month_spent_usd + bindparam("delta", type_=_TENANT_T.c.month_spent_usd.type))
)
_BATCH_SPENT = select(_BATCH_T.c.spent_usd).where(_BATCH_T.c.id == bindparam("bid"))
_ADD_SPENT = (
    update(_BATCH_T)
    .where(_BATCH_T.c.id == bindparam("bid"))
    .values(spent_usd=_BATCH_T.c.spent_usd + bindparam("delta", type_=_BATCH_T.c.spent_usd.type))
)
_CHARGE_OF_KEY = select(
    _CHARGE.c.id, _CHARGE.c.job_id, _CHARGE.c.state, _CHARGE.c.cost_usd, _CHARGE.c.created_at
).where(_CHARGE.c.batch_id == bindparam("bid"), _CHARGE.c.key == bindparam("key"))
_ADD_JOB_COST = (
    update(_JOB)
    .where(_JOB.c.id == bindparam("jid"))
    .values(cost_usd=_JOB.c.cost_usd + bindparam("cost", type_=_JOB.c.cost_usd.type))
)
_CHARGED = (
    update(_CHARGE)
    .where(_CHARGE.c.id == bindparam("cid"))
    .values(state="charged", cost_usd=bindparam("cost", type_=_CHARGE.c.cost_usd.type))
)
_DROP_CHARGE = delete(_CHARGE).where(_CHARGE.c.id == bindparam("cid"))


def spent(s: Db, batch_id: str, stage: str | None = None) -> float:
    """What the batch's calls cost (reservations in flight included), all of them or one stage's.
    All of them: the batch's running total (`batch.spent_usd`, kept by every charge write below)."""
    if stage is None:
        return float(s.execute(_BATCH_SPENT, {"bid": batch_id}).scalar() or 0.0)
    return float(s.scalar(_SPENT.where(_CHARGE.c.stage == stage), {"bid": batch_id}) or 0.0)


def _add_spent(s: Db, batch_id: str, delta: float) -> None:
    if delta:
        s.execute(_ADD_SPENT, {"bid": batch_id, "delta": delta})


def _month(at: datetime) -> str:
    """The calendar month (UTC) of a moment, as tenant.month keeps it."""
    if at.tzinfo is not None:
        at = at.astimezone(timezone.utc)
    return at.strftime("%Y-%m")


def _add_month(s: Db, tenant_id: str, delta: float, month: str) -> None:
    """A new charge (of this month) on the tenant's running month total."""
    s.execute(_ADD_MONTH, {"tid": tenant_id, "m1": month, "m2": month, "delta": delta})


def tenant_month(s: Db, tenant_id: str) -> tuple[float | None, float]:
    """The tenant's monthly budget (None: no limit) and what it spent this calendar month (UTC)."""
    row = s.execute(
        select(_TENANT_T.c.monthly_budget_usd, _TENANT_T.c.month, _TENANT_T.c.month_spent_usd).where(
            _TENANT_T.c.id == tenant_id
        )
    ).first()
    if row is None:
        return None, 0.0
    return row.monthly_budget_usd, float(row.month_spent_usd) if row.month == _month(utcnow()) else 0.0


def tenant_of(s: Db, batch_id: str) -> str | None:
    return s.execute(_BATCH_TENANT, {"bid": batch_id}).scalar()


def set_monthly_budget(s: Db, tenant_id: str, budget: float | None) -> float:
    """Set (None: remove) the tenant's monthly budget; its month total is counted afresh from this month's
    charges (a tenant row made after its first charges starts right). Returns this month's spend."""
    now = utcnow()
    start = now.astimezone(timezone.utc).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    total = float(
        s.scalar(
            select(func.coalesce(func.sum(_CHARGE.c.cost_usd), 0.0))
            .select_from(_CHARGE.join(_BATCH_T, _BATCH_T.c.id == _CHARGE.c.batch_id))
            .where(_BATCH_T.c.tenant_id == tenant_id, _CHARGE.c.created_at >= start)
        )
        or 0.0
    )
    s.execute(
        update(_TENANT_T)
        .where(_TENANT_T.c.id == tenant_id)
        .values(monthly_budget_usd=budget, month=_month(now), month_spent_usd=total)
    )
    return total


def reserve(
    s: Db, batch_id: str, job_id: int | None, stage: str, key: str, model: str, cost: float, budget: float | None
) -> str:
    """Reserve the cost of one paid call before making it.

    Returns "ok" (go ahead: reserved now, or this job's own reservation from an earlier delivery),
    "paid" (another job of the batch already paid for this key: reuse its result, do not call again),
    "busy" (another job holds the reservation: its call is in flight) or "over" (it would pass the
    budget). The batch row is locked so concurrent workers cannot both squeeze under the budget
    (FOR UPDATE on PostgreSQL; SQLite serialises writers), and the budget is checked against its running
    total: one row, however many charges the batch has (a SUM over them grew with every SKU).
    """
    locked = s.execute(_LOCK_BATCH, {"bid": batch_id}).first()
    spent_now = float(locked.spent_usd or 0.0) if locked is not None else 0.0
    existing = s.execute(_CHARGE_OF_KEY, {"bid": batch_id, "key": key}).first()
    if existing is not None:
        if existing.job_id == job_id:
            return "ok"
        return "paid" if existing.state == "charged" else "busy"
    if budget is not None and spent_now + cost > budget + 1e-9:
        return "over"
    now = utcnow()
    month = _month(now)
    if locked is not None:
        # the tenant's row, locked after the batch's: two batches of a tenant take turns on its month total
        t = s.execute(_LOCK_TENANT, {"tid": locked.tenant_id}).first()
        if t is not None and t.monthly_budget_usd is not None:
            month_now = float(t.month_spent_usd or 0.0) if t.month == month else 0.0
            if month_now + cost > t.monthly_budget_usd + 1e-9:
                return "over_month"
    # the batch row is locked (SQLite: one writer at a time), so a conflict is no race lost; as before it is no error
    new = s.execute(
        _statements(s).add_charge_returning,
        {
            "bid": batch_id,
            "jid": job_id,
            "stg": stage,
            "key": key,
            "model": model,
            "cost": cost,
            "state": "reserved",
            "now": now,
        },
    ).first()
    if new is not None:
        _add_spent(s, batch_id, cost)
        if locked is not None and cost:
            _add_month(s, locked.tenant_id, cost, month)
    return "ok"


def settle(s: Db, batch_id: str, key: str, cost: float | None = None, *, keep: bool = True) -> float:
    """After the call: keep the reservation as a charge (with the actual cost) or drop it (call failed).
    Returns what the call under key is charged now (0.0 if dropped or never reserved)."""
    c = s.execute(_CHARGE_OF_KEY, {"bid": batch_id, "key": key}).first()
    if c is None:
        return 0.0
    tenant_id = s.execute(_BATCH_TENANT, {"bid": batch_id}).scalar()
    if not keep:
        _add_spent(s, batch_id, -c.cost_usd)  # the batch row first, then the tenant's, then the job's: reserve's order
        if c.cost_usd and tenant_id is not None:
            s.execute(_ADJ_MONTH, {"tid": tenant_id, "m1": _month(c.created_at), "delta": -c.cost_usd})
        s.execute(_DROP_CHARGE, {"cid": c.id})
        return 0.0
    final = cost if cost is not None else c.cost_usd
    _add_spent(s, batch_id, final - c.cost_usd)  # the reservation was counted at its list price
    if final != c.cost_usd and tenant_id is not None:
        s.execute(_ADJ_MONTH, {"tid": tenant_id, "m1": _month(c.created_at), "delta": final - c.cost_usd})
    if c.state != "charged" and c.job_id is not None:  # charged once: a settled key adds nothing to the job
        s.execute(_ADD_JOB_COST, {"jid": c.job_id, "cost": final})
    s.execute(_CHARGED, {"cid": c.id, "cost": final})
    return float(final)


def record_charge(s: Db, batch_id: str, job_id: int | None, stage: str, key: str, model: str, cost: float) -> bool:
    """Record a call already made and paid (embed, analyze, a judge), once per key: what reserve + settle
    do for a call without a budget. False if the key was recorded before. Under the batch lock like
    reserve, so a render's budget check counts it."""
    locked = s.execute(_LOCK_BATCH, {"bid": batch_id}).first()
    now = utcnow()
    new = s.execute(
        _statements(s).add_charge_returning,
        {
            "bid": batch_id,
            "jid": job_id,
            "stg": stage,
            "key": key,
            "model": model,
            "cost": cost,
            "state": "charged",
            "now": now,
        },
    ).first()
    if new is None:
        return False
    _add_spent(s, batch_id, cost)
    if locked is not None and cost:
        _add_month(s, locked.tenant_id, cost, _month(now))
    if job_id is not None:
        s.execute(_ADD_JOB_COST, {"jid": job_id, "cost": cost})
    return True


def charged(s: Db, batch_id: str, key: str) -> float:
    """What the call under key was charged (0.0 if it was free or never reserved)."""
    return float(
        s.scalar(
            select(Charge.cost_usd).where(Charge.batch_id == batch_id, Charge.key == key, Charge.state == "charged")
        )
        or 0.0
    )


# --- cache -----------------------------------------------------------------------------------


def _dialect_insert(dialect: str) -> Any:
    """INSERT with ON CONFLICT clauses, for the job table's two dialects."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert
    raise NotImplementedError(f"upsert on {dialect}")  # pragma: no cover - the job table is PostgreSQL or SQLite


@dataclass(frozen=True)
class _Upserts:
    """The line's INSERT .. ON CONFLICT statements for one dialect, built once."""

    add_charge_returning: Any  # a charge row unless the batch has one under the key (DO NOTHING); its id
    cache_put: Any  # a cache value, replacing an older one


@functools.cache
def _upserts(dialect: str) -> _Upserts:
    insert_ = _dialect_insert(dialect)
    charge = (
        insert_(_CHARGE)
        .values(
            batch_id=bindparam("bid"),
            job_id=bindparam("jid"),
            stage=bindparam("stg"),
            key=bindparam("key"),
            model=bindparam("model"),
            cost_usd=bindparam("cost", type_=_CHARGE.c.cost_usd.type),
            state=bindparam("state"),
            created_at=bindparam("now", type_=_CHARGE.c.created_at.type),
        )
        .on_conflict_do_nothing(index_elements=[_CHARGE.c.batch_id, _CHARGE.c.key])
    )
    cache = insert_(_CACHE).values(
        key=bindparam("k"),
        value=bindparam("v", type_=_CACHE.c.value.type),
        created_at=bindparam("now", type_=_CACHE.c.created_at.type),
    )
    return _Upserts(
        charge.returning(_CHARGE.c.id),
        cache.on_conflict_do_update(index_elements=[_CACHE.c.key], set_={"value": cache.excluded.value}),
    )


def _dialect(s: Db) -> str:
    return (s.dialect if isinstance(s, Connection) else s.get_bind().dialect).name


def _statements(s: Db) -> _Upserts:
    return _upserts(_dialect(s))


_CACHE = _table(CacheEntry)
_CACHE_GET = select(_CACHE.c.value).where(_CACHE.c.key == bindparam("k"))


def cache_get(s: Db, key: str) -> Any | None:
    return s.execute(_CACHE_GET, {"k": key}).scalar()


def cache_put(s: Db, key: str, value: Any) -> None:
    """Store value under key, replacing an older one (a concurrent writer of the same content-keyed value
    is no error): one INSERT .. ON CONFLICT DO UPDATE, on PostgreSQL and SQLite alike."""
    s.execute(_statements(s).cache_put, {"k": key, "v": value, "now": utcnow()})


def now() -> datetime:
    return utcnow()


def job_batch(s: Session, job_id: int) -> str:
    return s.scalar(select(Job.batch_id).where(Job.id == job_id)) or ""


def stage_seconds(s: Session, job_ids: list[int]) -> dict[int, dict[str, float]]:
    """Seconds spent per job and stage (all attempts)."""
    out: dict[int, dict[str, float]] = {}
    if not job_ids:
        return out
    rows = s.execute(
        select(Attempt.job_id, Attempt.stage, func.sum(Attempt.seconds))
        .where(Attempt.job_id.in_(job_ids))
        .group_by(Attempt.job_id, Attempt.stage)
        .order_by(Attempt.job_id)
    )
    for job_id, stage, secs in rows:
        out.setdefault(job_id, {})[stage] = float(secs or 0.0)
    return out
