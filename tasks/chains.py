"""Sending work: a Dispatch from the job layer becomes a Celery chain of the registered stages from the
job's current stage on. Called only after the transaction that created or reset the jobs has committed."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from celery import Signature, chain

from db import crud
from db.session import session_scope
from hitline.domain import fairness
from hitline.errors import EnqueueFailed
from hitline.jobs.context import Runtime, get_runtime
from hitline.jobs import verbs
from hitline.jobs.stages import line_of
from hitline.jobs.submit import Dispatch, Submitted
from tasks.sheets import SHEET_PRIORITY, SHEET_QUEUE, contact_sheet
from tasks.publish import GROUP, ChainSender, apply_chain, batched_producer
from tasks.stages import TASKS
from workers.app import app

__all__ = ["chain_for", "publish", "publish_all", "send", "submit", "EnqueueFailed"]


def chain_for(d: Dispatch, priority: int | None = None) -> chain:
    return chain(*steps_for(d, priority))


def steps_for(d: Dispatch, priority: int | None = None) -> list[Signature]:
    """The signatures of a dispatch's chain: the registered stages from its stage on, each at `priority`
    when given (a SKU's fair-sharing priority, hitline/domain/fairness.py: the whole chain keeps the SKU's
    place), and for a SKU its contact sheet at the lowest priority (off the critical path)."""
    names = [st.name for st in line_of(d.kind)]
    steps = names[names.index(d.stage) :]
    args = (d.job_ids[0],) if d.kind == "sku" else (d.batch_id, list(d.job_ids))
    tail = [contact_sheet.si(*args).set(priority=SHEET_PRIORITY, queue=SHEET_QUEUE)] if d.kind == "sku" else []
    sigs = [TASKS[(d.kind, name)].si(*args) for name in steps]
    if priority is not None:
        sigs = [s.set(priority=priority) for s in sigs]
    return [*sigs, *tail]


def publish(sender: ChainSender, d: Dispatch, priority: int | None = None) -> None:
    """Send one dispatch's chain. A one-job chain (every SKU) repeats the template of its kind of chain
    and priority (tasks/publish.py); a catalog chunk's arguments hold a list of ids, so Celery sends it
    as it is."""
    if len(d.job_ids) == 1:
        sender.send(
            (d.batch_id, d.kind, d.stage, priority),
            d.job_ids[0],
            lambda job_id: steps_for(replace(d, job_ids=(job_id,)), priority),
        )
    else:
        apply_chain(steps_for(d, priority), sender.producer)


def priorities(dispatches: list[Dispatch], fair: bool = True) -> list[int | None]:
    """Each dispatch's priority: a SKU's from its position among its batch's SKUs in this send (fair
    sharing, hitline/domain/fairness.py); None (the stage's routed priority) for catalog chunks, and for
    every chain when fair sharing is off (HITLINE_FAIR_SHARING=0: first come, first served)."""
    if not fair:
        return [None] * len(dispatches)
    return fairness.tag(d.batch_id if d.kind == "sku" else None for d in dispatches)


def publish_all(dispatches: list[Dispatch], sent: list[int], fair: bool = True) -> None:
    """Send the chains, one broker pipeline per group; `sent` gets the job ids the broker accepted (also
    when this raises part-way)."""
    prios = priorities(dispatches, fair)
    for n in range(0, len(dispatches), GROUP):  # one pipeline per group (tasks/publish.py)
        group = dispatches[n : n + GROUP]
        with batched_producer(app, len(group)) as producer:
            # RabbitMQ, memory: each message is out when published; Redis: the group goes out at the end
            immediate = not producer.supports_batch_publish
            sender = ChainSender(app, producer)
            for d, prio in zip(group, prios[n : n + GROUP]):
                publish(sender, d, prio)
                if immediate:
                    sent += d.job_ids
        if not immediate:
            sent += [j for d in group for j in d.job_ids]


def send(rt: Runtime, dispatches: list[Dispatch]) -> int:
    """Send each chain; the jobs whose message the broker accepted are stamped as enqueued."""
    sent: list[int] = []
    try:
        publish_all(dispatches, sent, rt.settings.fair_sharing)
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
