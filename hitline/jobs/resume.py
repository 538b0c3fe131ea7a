"""What to send again for an unfinished batch: jobs whose message was never sent or is lost, jobs a dead
worker left running, renders held by the budget. A job with a message in flight is left alone."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from db import crud
from db.models import Batch
from db.session import session_scope
from hitline.errors import InputError
from hitline.jobs.context import Runtime
from hitline.jobs.control import dispatches_for
from hitline.jobs.submit import Dispatch

__all__ = ["plan_resume", "lost_jobs"]


def _aware(t: datetime | None, like: datetime) -> datetime | None:
    return t if t is None or t.tzinfo else t.replace(tzinfo=like.tzinfo)


def plan_resume(
    rt: Runtime, batch_id: str, *, budget_usd: float | None = None, stale_after_s: float = 900.0
) -> list[Dispatch]:
    """lost_jobs in a transaction of its own (hitline.jobs.verbs.resume runs it with the reopen)."""
    with session_scope(rt.db_url) as s:
        return lost_jobs(s, batch_id, budget_usd=budget_usd, stale_after_s=stale_after_s)


def lost_jobs(
    s: Session, batch_id: str, *, budget_usd: float | None = None, stale_after_s: float = 900.0
) -> list[Dispatch]:
    """Reset what is lost to pending and return the chains to send (from the stage each job stands at).

    Lost means: `running` with a claim older than stale_after_s (its worker died), or `pending`/`retrying`
    whose message was never sent or was sent more than stale_after_s ago (lost with a broker). Renders held
    by the budget are released when a budget is given (or was raised)."""
    stale = crud.now() - timedelta(seconds=stale_after_s)
    todo: list[tuple[str, int, str]] = []
    b = s.get(Batch, batch_id)
    if b is None:
        raise InputError(f"no batch {batch_id!r} (`hitline status` shows the latest)")
    if budget_usd is not None:
        b.budget_usd = budget_usd
    for j in crud.jobs(s, batch_id):
        claimed, sent = _aware(j.claimed_at, stale), _aware(j.enqueued_at, stale)
        if j.state == "budget_exceeded":
            j.state, j.error = "pending", None
        elif j.state == "running" and claimed is not None and claimed < stale:
            j.state, j.claimed_at, j.claimed_by = "pending", None, None
        elif j.state in ("pending", "retrying") and (sent is None or sent < stale):
            pass
        else:
            continue
        todo.append((j.kind, j.id, j.stage))
    return dispatches_for(batch_id, todo)
