"""Run one stage of one job: claim (job, stage) in the job table, hand the stage a JobContext loaded once,
record the outcome. No Celery here: tasks/ maps the outcomes and exceptions to Celery's states."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from collections.abc import Mapping
from typing import Any, Callable, Sequence

from sqlalchemy import select

from db import crud
from db.models import Job
from db.session import connection_scope, session_scope
from hitline.errors import BudgetExceeded, HitlineError, NotReady, RetryableProviderError, TransientError
from hitline.jobs.context import JobContext, Runtime, claimed_batch, load_batch
from hitline.jobs.heartbeat import held_claims
from hitline.jobs.results import RenderResult, StageResult

__all__ = ["Outcome", "run_step", "run_chunk", "fail_jobs", "is_transient", "next_stage"]

log = logging.getLogger(__name__)

Work = Callable[[JobContext], "Mapping[str, Any] | StageResult"]
# a chunk's work: each job's result, or the HitlineError that fails that job alone
ChunkWork = Callable[[list[JobContext]], dict[int, "Mapping[str, Any] | StageResult | HitlineError"]]


def checked(model: type[StageResult], result: Mapping[str, Any] | StageResult) -> dict[str, Any]:
    """A stage's result validated against the model its Stage declares, as stored in the job table
    (what the stage set, nothing added: a row reads the same before and after a model gains a field).
    A result that does not fit raises pydantic's ValidationError: the job fails with it (a bug)."""
    valid = (
        result
        if isinstance(result, model)
        else model.model_validate(result.model_dump() if isinstance(result, StageResult) else result)
    )
    return valid.model_dump(mode="json", exclude_unset=True)


@dataclass(frozen=True)
class Outcome:
    """done | skipped | failed | held. `moved_on` (skipped only): an earlier delivery already finished
    this stage, so the chain may go on; otherwise the job is failed, held or running elsewhere."""

    status: str
    reason: str | None = None
    moved_on: bool = False


def is_transient(exc: BaseException) -> bool:
    """Unreachable infrastructure (job table, Milvus, Redis, a reset connection): worth retrying for as
    long as it takes, never a reason to fail a SKU. Decided by type only, each boundary mapping its own:
    Milvus raises TransientError (IndexUnavailable, from hitline.store.index); SQLAlchemy's connection
    errors (OperationalError, a DBAPIError that invalidated its connection, pool timeout) and redis'
    ConnectionError/TimeoutError are recognised by their classes."""
    import redis.exceptions
    from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    if isinstance(
        exc,
        (
            TransientError,
            OperationalError,
            InterfaceError,
            DisconnectionError,
            PoolTimeout,
            redis.exceptions.ConnectionError,
            redis.exceptions.TimeoutError,
            ConnectionError,
            TimeoutError,
        ),
    ):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def run_step(
    rt: Runtime,
    job_id: int,
    stage: str,
    work: Work,
    line: Sequence[str],
    token: str | None = None,
    attempt: int = 0,
    result: type[StageResult] = StageResult,
) -> Outcome:
    """Claim (job, stage), run work(JobContext), record the outcome; `line` is the order of the job's
    stages (from the stage registry), so the job moves on to the stage after this one.

    RetryableProviderError is recorded as `retrying` and re-raised (the task retries, bounded);
    NotReady gives the claim back uncounted and is re-raised; a transient infrastructure error is
    re-raised with the claim kept for this task id (`token`), so its retry takes it back. `attempt`: how
    many retryable provider errors this stage has had (the work may give up gracefully on the last)."""
    with connection_scope(rt.db_url) as c:  # one transaction: the claim and what the stage works with
        claimed = crud.claim(c, job_id, stage, token)
        if claimed is None:
            return Outcome("skipped", moved_on=_moved_on(c, job_id, stage, line))
        jc = JobContext.of(rt, claimed, claimed_batch(c, claimed), attempt)
    try:
        with held_claims(rt.db_url, [job_id], stage, rt.settings.heartbeat_s):  # a dead worker's claim goes stale
            written = checked(result, work(jc))
    except NotReady:
        with connection_scope(rt.db_url) as c:
            crud.release(c, claimed)
        raise
    except RetryableProviderError as e:
        _record(rt, job_id, stage, "retrying", str(e))
        raise
    except BudgetExceeded as e:
        _record(rt, job_id, stage, "budget_exceeded", str(e))
        return Outcome("held", str(e))
    except Exception as e:
        if is_transient(e):
            try:  # visible in `hitline status`; if the job table is the thing that is down, the claim stays ours
                _record(rt, job_id, stage, "retrying", f"{type(e).__name__}: {_first_line(e)}")
            except Exception:  # noqa: BLE001
                pass
            raise
        if isinstance(e, HitlineError):  # bad input, terminal provider answer, unusable config: this SKU fails alone
            _record(rt, job_id, stage, "failed", str(e))
            return Outcome("failed", str(e))
        log.exception("job %s stage %s crashed", job_id, stage)  # a bug or an unreadable file: this SKU fails
        reason = f"{type(e).__name__}: {e}"
        _record(rt, job_id, stage, "failed", reason)
        return Outcome("failed", reason)
    nxt = next_stage(line, stage)
    with connection_scope(rt.db_url) as c:
        crud.advance(c, claimed, nxt, written)
        if nxt == "done":  # the SKU's last stage: its outputs wait for review, the batch may be finished
            _finished(c, jc, written)
    return Outcome("done")


def _finished(c: Any, jc: JobContext, result: dict[str, Any]) -> None:
    from hitline.jobs import review, webhooks
    from hitline.jobs.stages import result_stage

    if jc.kind == "sku":  # its outputs: the render stage's result, written now (the last stage) or before
        render_stage = result_stage(RenderResult)
        render = result if jc.stage == render_stage else jc.result.get(render_stage)
        if render is not None:
            review.record_outputs(c, jc.batch.id, jc.job_id, jc.item_id, render, jc.options)
    webhooks.batch_finished_if_done(c, jc.batch.id)


def run_chunk(
    rt: Runtime,
    batch_id: str,
    job_ids: list[int],
    stage: str,
    work: ChunkWork,
    line: Sequence[str],
    token: str | None = None,
    result: type[StageResult] = StageResult,
) -> dict[int, Outcome]:
    """run_step for a chunk of catalog jobs that share one provider call or one upsert."""
    with connection_scope(rt.db_url) as conn:
        batch = load_batch(conn, batch_id)
        claims = {c.id: c for c in (crud.claim(conn, i, stage, token) for i in job_ids) if c is not None}
    outcomes = {i: Outcome("skipped") for i in job_ids}
    if not claims:
        return outcomes
    ids = list(claims)
    try:
        with held_claims(rt.db_url, ids, stage, rt.settings.heartbeat_s):
            results = {
                i: r if isinstance(r, HitlineError) else checked(result, r)
                for i, r in work([JobContext.of(rt, c, batch) for c in claims.values()]).items()
            }
    except RetryableProviderError as e:
        _record_many(rt, ids, stage, "retrying", str(e))
        raise
    except Exception as e:
        if is_transient(e):
            raise
        if isinstance(e, HitlineError):
            _record_many(rt, ids, stage, "failed", str(e))
            return {**outcomes, **{i: Outcome("failed", str(e)) for i in ids}}
        log.exception("catalog chunk of batch %s stage %s crashed", batch_id, stage)
        reason = f"{type(e).__name__}: {e}"
        _record_many(rt, ids, stage, "failed", reason)
        return {**outcomes, **{i: Outcome("failed", reason) for i in ids}}
    with session_scope(rt.db_url) as s:
        for i in ids:
            r = results.get(i) or HitlineError("no result for this product")
            if isinstance(r, HitlineError):
                crud.set_state(s, i, stage, "failed", str(r))
                outcomes[i] = Outcome("failed", str(r))
            else:
                crud.advance(s, claims[i], next_stage(line, stage), r)
                outcomes[i] = Outcome("done")
    return outcomes


def _record_many(rt: Runtime, job_ids: list[int], stage: str, state: str, reason: str) -> None:
    with session_scope(rt.db_url) as s:
        for j in job_ids:
            crud.set_state(s, j, stage, state, reason)
        if state == "failed" and job_ids:  # in the same transaction: the events are in the outbox with it
            _failed_events(s, job_ids, stage, reason)


def _failed_events(s: Any, job_ids: list[int], stage: str, reason: str) -> None:
    from hitline.jobs import webhooks

    batch_id = crud.job_batch(s, job_ids[0])
    for j in job_ids:
        attempts = s.scalar(select(Job.attempts).where(Job.id == j))
        webhooks.emit(
            s,
            batch_id,
            "job.failed",
            f"{j}:{stage}:{attempts}",
            {"job_id": j, "stage": stage, "reason": reason, "attempts": attempts},
        )
    webhooks.batch_finished_if_done(s, batch_id)


def next_stage(line: Sequence[str], stage: str) -> str:
    i = list(line).index(stage)
    return line[i + 1] if i + 1 < len(line) else "done"


def _moved_on(s: Any, job_id: int, stage: str, line: Sequence[str]) -> bool:
    now = crud.job_state(s, job_id)
    if now is None or now[1] in ("failed", "budget_exceeded", "cancelled"):
        return False
    order = list(line) + ["done"]
    return now[0] in order and order.index(now[0]) > order.index(stage)


def _record(rt: Runtime, job_id: int, stage: str, state: str, reason: str) -> None:
    _record_many(rt, [job_id], stage, state, reason)


def fail_jobs(rt: Runtime, job_ids: list[int], stage: str, reason: str) -> None:
    """The retry budget is spent: these jobs fail with the last reason."""
    _record_many(rt, job_ids, stage, "failed", reason)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:300] if text else ""
