"""The operator verbs, one function each: submit, retry, cancel, resume. A verb owns its transaction, the
send of the chains it made (after the commit) and the answer a person or a service is shown. The CLI, the
HTTP routes and the Celery contract call these and nothing else, so the three doors cannot drift apart.

The job layer does not import Celery: the doors pass the sender (tasks.chains.send), as httpx clients
are given their transport.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from db.models import DEFAULT_TENANT
from db.session import session_scope
from hitline.jobs import control
from hitline.jobs.context import Runtime
from hitline.jobs.resume import lost_jobs
from hitline.jobs.submit import Dispatch, Submitted, batch_options, submit_batch

__all__ = ["Send", "Answer", "submit", "retry", "cancel", "resume", "NO_RETRY"]

NO_RETRY = "no retryable failed job matches (rows rejected at validation need a new CSV)"


class Send(Protocol):
    """Sends the chains of some dispatches once their jobs are committed; returns how many chains."""

    def __call__(self, rt: Runtime, dispatches: list[Dispatch], /) -> int: ...


@dataclass(frozen=True)
class Answer:
    """What a verb did, the same through every door: the HTTP body, the CLI line, the contract's result."""

    batch_id: str
    jobs: int  # jobs re-enqueued (retry, resume) or stopped (cancel)
    message: str
    job_ids: tuple[int, ...] = ()
    chains: int = 0


def submit(
    rt: Runtime,
    catalog_dir: Path | str,
    new_dir: Path | str,
    out_dir: Path | str,
    *,
    send: Send,
    top_k: int | None = None,
    min_sales: int | None = None,
    presets: list[str] | None = None,
    budget_usd: float | None = None,
    idempotency_key: str | None = None,
    tenant: str = DEFAULT_TENANT,
    review: str | None = None,
    draft: str | None = None,
    locales: str | list[str] | None = None,
    text_mode: str | None = None,
    missing_translation: str | None = None,
    mode: str | None = None,
    escalate: str | None = None,
) -> Submitted:
    """Check the options, validate both CSVs, create every job (one transaction), then send the chains.
    The same idempotency key with the same request returns the same batch and sends nothing twice.
    review="all": every output waits for a person (hitline.jobs.review)."""
    options = batch_options(
        rt.settings,
        top_k=top_k,
        min_sales=min_sales,
        presets=presets,
        review=review,
        draft=draft,
        locales=locales,
        text_mode=text_mode,
        missing_translation=missing_translation,
        mode=mode,
        escalate=escalate,
    )
    sub = submit_batch(
        rt,
        Path(catalog_dir),
        Path(new_dir),
        Path(out_dir),
        options=options,
        budget_usd=budget_usd,
        idempotency_key=idempotency_key,
        tenant=tenant,
    )
    send(rt, sub.dispatches)
    return sub


def retry(
    rt: Runtime,
    batch_id: str,
    flt: control.JobFilter = control.JobFilter(),
    *,
    send: Send,
    job_refs: Iterable[str] | None = None,
) -> Answer:
    """Put the matching failed jobs back to pending (`job_refs`: job ids or SKU ids, as typed), commit,
    send their chains from the stage each failed in."""
    with session_scope(rt.db_url) as s:
        if job_refs:
            flt = replace(flt, job_ids=control.resolve_job_refs(s, batch_id, job_refs))
        todo = control.retry_failed(s, batch_id, flt)
    chains = send(rt, todo) if todo else 0
    ids = tuple(i for d in todo for i in d.job_ids)
    return Answer(batch_id, len(ids), f"re-enqueued {len(ids)} failed jobs" if ids else NO_RETRY, ids, chains)


def cancel(rt: Runtime, batch_id: str) -> Answer:
    """Waiting jobs stop now; running ones finish (and keep) their stage and stop before the next."""
    with session_scope(rt.db_url) as s:
        n = control.cancel(s, batch_id)
    return Answer(
        batch_id,
        n,
        f"cancelled {batch_id}: {n} waiting jobs stopped; running ones stop after their "
        f"current stage, what was paid for is kept (resume undoes it: `hitline resume "
        f"{batch_id}`, POST /batches/{batch_id}/resume)",
    )


def resume(
    rt: Runtime, batch_id: str, *, send: Send, budget_usd: float | None = None, stale_after_s: float = 900.0
) -> Answer:
    """Reopen a cancelled batch (its cancelled jobs go on from where they stopped), release renders held
    by the budget, take back what a dead worker or a lost message left, commit, and send it all."""
    with session_scope(rt.db_url) as s:
        control.reopen(s, batch_id)  # NotFound for an unknown id
        todo = lost_jobs(s, batch_id, budget_usd=budget_usd, stale_after_s=stale_after_s)
    chains = send(rt, todo) if todo else 0
    ids = tuple(i for d in todo for i in d.job_ids)
    return Answer(batch_id, len(ids), f"re-enqueued {chains} chains ({len(ids)} jobs)", ids, chains)
