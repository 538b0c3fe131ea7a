"""Chains and enqueueing: a catalog chunk is embed_hits -> index_hits; a SKU is embed -> index -> retrieve ->
analyze -> render. Called after the transaction that created the jobs has committed."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from celery import chain

from db import crud
from db.session import session_scope
from hitline.errors import InputError
from hitline.jobs.context import SKU_STAGES, Context, Submitted, batch_options, get_context, submit_batch
from tasks import stages as t

SKU_TASKS = {"embed": t.embed, "index": t.index, "retrieve": t.retrieve, "analyze": t.analyze, "render": t.render}


def sku_chain(job_id: int, start: str = "embed") -> chain:
    return chain(*(SKU_TASKS[st].si(job_id) for st in SKU_STAGES[SKU_STAGES.index(start):]))


def hit_chain(batch_id: str, job_ids: list[int], start: str = "embed") -> chain:
    steps = [t.embed_hits.si(batch_id, job_ids)] if start == "embed" else []
    return chain(*steps, t.index_hits.si(batch_id, job_ids))


def submit(catalog_dir: Path, new_dir: Path, out_dir: Path, *, top_k: int | None = None,
           min_sales: int | None = None, presets: list[str] | None = None, budget_usd: float | None = None,
           ctx: Context | None = None) -> Submitted:
    """The entry point for other services: validate, create the jobs, commit, then enqueue the chains.
    Returns at once; progress is in the job table (`hitline status BATCH`)."""
    ctx = ctx or get_context()
    options = batch_options(ctx.settings, top_k=top_k, min_sales=min_sales, presets=presets)
    sub = submit_batch(ctx, Path(catalog_dir), Path(new_dir), Path(out_dir), options=options, budget_usd=budget_usd)
    enqueue(sub)
    return sub


def enqueue(sub: Submitted) -> int:
    for ids in sub.hit_chunks:
        hit_chain(sub.batch_id, ids).apply_async()
    for j in sub.sku_jobs:
        sku_chain(j).apply_async()
    return len(sub.hit_chunks) + len(sub.sku_jobs)


def resume(ctx: Context, batch_id: str, *, budget_usd: float | None = None, stale_after_s: float = 900.0,
           chunk_size: int = 64) -> int:
    """Re-enqueue every unfinished job of a batch from the stage it stands at (lost messages, a crash,
    or renders held by the budget). Returns the number of chains sent."""
    stale = crud.now() - timedelta(seconds=stale_after_s)
    with session_scope(ctx.db_url) as s:
        from db.models import Batch

        b = s.get(Batch, batch_id)
        if b is None:
            raise InputError(f"no batch {batch_id!r} (`hitline status` shows the latest)")
        if budget_usd is not None:
            b.budget_usd = budget_usd
        todo = []
        for j in crud.jobs(s, batch_id):
            claimed = j.claimed_at if j.claimed_at is None or j.claimed_at.tzinfo else j.claimed_at.replace(tzinfo=stale.tzinfo)
            if j.state == "budget_exceeded":
                j.state, j.error = "pending", None
            elif j.state == "running" and claimed is not None and claimed < stale:
                j.claimed_at = None
                j.state = "pending"
            elif j.state not in ("pending", "retrying"):
                continue
            todo.append((j.kind, j.id, j.stage))
    sent = 0
    for stage in ("embed", "index"):
        ids = [i for k, i, st in todo if k == "hit" and st == stage]
        for n in range(0, len(ids), chunk_size):
            hit_chain(batch_id, ids[n:n + chunk_size], stage).apply_async()
            sent += 1
    for k, i, st in todo:
        if k == "sku":
            sku_chain(i, st).apply_async()
            sent += 1
    return sent


def enqueue_todo(batch_id: str, todo: list, chunk_size: int = 64) -> int:  # list[control.Todo]
    """Send the chains the job layer asked for (retry, reopen): catalog jobs in chunks per stage, one
    chain per SKU from its stage on. Call after the session that reset the jobs has committed."""
    sent = 0
    for stage in ("embed", "index"):
        ids = [t.job_id for t in todo if t.kind == "hit" and t.stage == stage]
        for n in range(0, len(ids), chunk_size):
            hit_chain(batch_id, ids[n:n + chunk_size], stage).apply_async()
            sent += 1
    for t in todo:
        if t.kind == "sku":
            sku_chain(t.job_id, t.stage).apply_async()
            sent += 1
    return sent
