"""Sending work: a Dispatch from the job layer becomes a Celery chain of the registered stages from the
job's current stage on. Called only after the transaction that created or reset the jobs has committed."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from celery import Signature, chain

from db import crud
from db.session import session_scope
from hitline.errors import EnqueueFailed
from hitline.jobs.context import Runtime, get_runtime
from hitline.jobs import verbs
from hitline.jobs.stages import line_of
from hitline.jobs.submit import Dispatch, Submitted
from tasks.sheets import SHEET_PRIORITY, SHEET_QUEUE, contact_sheet
from tasks.publish import GROUP, ChainSender, apply_chain, batched_producer
from tasks.stages import TASKS
from workers.app import app

__all__ = ["chain_for", "publish", "send", "submit", "EnqueueFailed"]


def chain_for(d: Dispatch) -> chain:
    return chain(*steps_for(d))


def steps_for(d: Dispatch) -> list[Signature]:
    """The signatures of a dispatch's chain: the registered stages from its stage on, and for a SKU its
    contact sheet at the lowest priority (off the critical path)."""
    names = [st.name for st in line_of(d.kind)]
    steps = names[names.index(d.stage) :]
    args = (d.job_ids[0],) if d.kind == "sku" else (d.batch_id, list(d.job_ids))
    tail = [contact_sheet.si(*args).set(priority=SHEET_PRIORITY, queue=SHEET_QUEUE)] if d.kind == "sku" else []
    return [*(TASKS[(d.kind, name)].si(*args) for name in steps), *tail]


def publish(sender: ChainSender, d: Dispatch) -> None:
    """Send one dispatch's chain. A one-job chain (every SKU) repeats the template of its kind of chain
    (tasks/publish.py); a catalog chunk's arguments hold a list of ids, so Celery sends it as it is."""
    if len(d.job_ids) == 1:
        sender.send(
            (d.batch_id, d.kind, d.stage), d.job_ids[0], lambda job_id: steps_for(replace(d, job_ids=(job_id,)))
        )
    else:
        apply_chain(steps_for(d), sender.producer)


def send(rt: Runtime, dispatches: list[Dispatch]) -> int:
    """Send each chain; the jobs whose message the broker accepted are stamped as enqueued."""
    sent: list[int] = []
    try:
        for n in range(0, len(dispatches), GROUP):  # one pipeline per group (tasks/publish.py)
            group = dispatches[n : n + GROUP]
            with batched_producer(app, len(group)) as producer:
                # RabbitMQ, memory: each message is out when published; Redis: the group goes out at the end
                immediate = not producer.supports_batch_publish
                sender = ChainSender(app, producer)
                for d in group:
                    publish(sender, d)
                    if immediate:
                        sent += d.job_ids
            if not immediate:
                sent += [j for d in group for j in d.job_ids]
    except Exception as e:  # kombu OperationalError, a refused connection, ...
        batch = dispatches[0].batch_id if dispatches else "?"
        raise EnqueueFailed(
            f"batch {batch}: the broker did not take the work ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}); {len(sent)} of "
            f"{sum(len(d.job_ids) for d in dispatches)} jobs queued. When the broker is "
            f"back: hitline resume {batch}"
        ) from None
    finally:
        if sent:
            with session_scope(rt.db_url) as s:
                crud.mark_enqueued(s, sent)
    # a submission's rejected rows are failed jobs: their job.failed events wait in the outbox
    from tasks.webhooks import kick

    kick()
    return len(dispatches)


def submit(
    catalog_dir: Path | str,
    new_dir: Path | str,
    out_dir: Path | str,
    *,
    top_k: int | None = None,
    min_sales: int | None = None,
    presets: list[str] | None = None,
    budget_usd: float | None = None,
    idempotency_key: str | None = None,
    rt: Runtime | None = None,
    review: str | None = None,
    draft: str | None = None,
    locales: list[str] | None = None,
    text_mode: str | None = None,
    missing_translation: str | None = None,
    mode: str | None = None,
    escalate: str | None = None,
) -> Submitted:
    """The Python entry point for other services: hitline.jobs.verbs.submit with this module's sender.
    Returns at once; progress is in the job table (`hitline status BATCH`)."""
    return verbs.submit(
        rt or get_runtime(),
        catalog_dir,
        new_dir,
        out_dir,
        send=send,
        top_k=top_k,
        min_sales=min_sales,
        presets=presets,
        budget_usd=budget_usd,
        idempotency_key=idempotency_key,
        review=review,
        draft=draft,
        locales=locales,
        text_mode=text_mode,
        missing_translation=missing_translation,
        mode=mode,
        escalate=escalate,
    )
