"""Sending work: a Dispatch from the job layer becomes a Celery chain of the registered stages from the
job's current stage on. Called only after the transaction that created or reset the jobs has committed."""

from __future__ import annotations

from pathlib import Path

from celery import chain

from db import crud
from db.session import session_scope
from hitline.errors import HitlineError
from hitline.jobs.context import Runtime, get_runtime
from hitline.jobs.resume import plan_resume
from hitline.jobs.stages import line_of
from hitline.jobs.submit import Dispatch, Submitted, batch_options, submit_batch
from tasks.stages import TASKS

__all__ = ["chain_for", "send", "submit", "resume", "EnqueueFailed"]


class EnqueueFailed(HitlineError):
    """The broker refused the messages: the batch exists in the job table and `hitline resume` finishes it."""


def chain_for(d: Dispatch) -> chain:
    names = [st.name for st in line_of(d.kind)]
    steps = names[names.index(d.stage):]
    args = (d.job_ids[0],) if d.kind == "sku" else (d.batch_id, list(d.job_ids))
    return chain(*(TASKS[(d.kind, name)].si(*args) for name in steps))


def send(rt: Runtime, dispatches: list[Dispatch]) -> int:
    """Send each chain; the jobs whose message the broker accepted are stamped as enqueued."""
    sent: list[int] = []
    try:
        for d in dispatches:
            chain_for(d).apply_async()
            sent += d.job_ids
    except Exception as e:  # kombu OperationalError, a refused connection, ...
        batch = dispatches[0].batch_id if dispatches else "?"
        raise EnqueueFailed(f"batch {batch}: the broker did not take the work ({type(e).__name__}: "
                            f"{str(e).splitlines()[0] if str(e) else ''}); {len(sent)} of "
                            f"{sum(len(d.job_ids) for d in dispatches)} jobs queued. When the broker is "
                            f"back: hitline resume {batch}") from None
    finally:
        if sent:
            with session_scope(rt.db_url) as s:
                crud.mark_enqueued(s, sent)
    return len(dispatches)


def submit(catalog_dir: Path | str, new_dir: Path | str, out_dir: Path | str, *, top_k: int | None = None,
           min_sales: int | None = None, presets: list[str] | None = None, budget_usd: float | None = None,
           idempotency_key: str | None = None, rt: Runtime | None = None) -> Submitted:
    """The entry point for other services: validate, create the jobs, commit, then send the chains.
    Returns at once; progress is in the job table (`hitline status BATCH`). The same idempotency key with
    the same request returns the same batch and sends nothing twice."""
    rt = rt or get_runtime()
    options = batch_options(rt.settings, top_k=top_k, min_sales=min_sales, presets=presets)
    sub = submit_batch(rt, Path(catalog_dir), Path(new_dir), Path(out_dir), options=options,
                       budget_usd=budget_usd, idempotency_key=idempotency_key)
    send(rt, sub.dispatches)
    return sub


def resume(rt: Runtime, batch_id: str, *, budget_usd: float | None = None, stale_after_s: float = 900.0) -> int:
    """Re-send every unfinished job of a batch that has no message in flight. Returns chains sent."""
    return send(rt, plan_resume(rt, batch_id, budget_usd=budget_usd, stale_after_s=stale_after_s))
