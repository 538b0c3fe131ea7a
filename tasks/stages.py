"""One Celery task per stage. Each takes ids, calls hitline.jobs.stages, and maps errors to retries."""

from __future__ import annotations

import random

from celery import Task
from celery.exceptions import Ignore

from db import crud
from db.session import session_scope
from hitline.jobs import stages as steps
from hitline.errors import RetryableProviderError
from hitline.jobs.context import SKU_STAGES, CatalogNotReady, get_context
from workers.app import app

MAX_RETRIES = 6


def _retry(task: Task, exc: RetryableProviderError, job_ids: list[int], stage: str):  # noqa: ANN201
    """Retry with Retry-After when the provider gave one, else exponential backoff with jitter;
    after MAX_RETRIES the jobs fail with the last reason."""
    if task.request.retries >= MAX_RETRIES:
        ctx = get_context()
        with session_scope(ctx.db_url) as s:
            for j in job_ids:
                crud.set_state(s, j, stage, "failed", f"gave up after {MAX_RETRIES + 1} attempts: {exc}")
        raise Ignore()
    backoff = min(300.0, 2.0 ** task.request.retries) * (0.5 + random.random())
    countdown = max(exc.retry_after or 0.0, backoff)
    raise task.retry(exc=exc, countdown=countdown)


def _continue_or_stop(job_id: int, stage: str, outcome: str) -> None:
    """Keep the chain going when this stage is done (now or by an earlier delivery); stop it otherwise."""
    if outcome == "done":
        return
    if outcome == "skipped":
        with session_scope(get_context().db_url) as s:
            job = crud.jobs(s, crud.job_batch(s, job_id), ids=[job_id])[0]
        order = SKU_STAGES + ("done",)
        if job.state not in ("failed", "budget_exceeded") and order.index(job.stage) > order.index(stage):
            return
    raise Ignore()


def _sku_task(stage: str, fn):  # noqa: ANN001, ANN202
    # max_retries=None: waiting for the catalog is unbounded; provider retries are capped in _retry
    @app.task(name=f"hitline.{stage}", bind=True, max_retries=None)
    def run(self: Task, job_id: int) -> None:
        try:
            outcome = fn(get_context(), job_id)
        except CatalogNotReady:
            # not an attempt: the catalog chains are still running. Back off (0.5 s .. 10 s) so that
            # thousands of waiting SKUs do not flood the broker while a large catalog is indexed.
            raise self.retry(countdown=min(0.5 * 1.5 ** self.request.retries, 10.0))
        except RetryableProviderError as e:
            _retry(self, e, [job_id], stage)
        _continue_or_stop(job_id, stage, outcome)

    return run


embed = _sku_task("embed", steps.embed_sku)
index = _sku_task("index", steps.index_sku)
retrieve = _sku_task("retrieve", steps.retrieve)
analyze = _sku_task("analyze", steps.analyze)
render = _sku_task("render", steps.render)


@app.task(name="hitline.embed_hits", bind=True, max_retries=None)
def embed_hits(self: Task, batch_id: str, job_ids: list[int]) -> None:
    try:
        steps.embed_hits(get_context(), job_ids)
    except RetryableProviderError as e:
        _retry(self, e, job_ids, "embed")


@app.task(name="hitline.index_hits", bind=True)
def index_hits(self: Task, batch_id: str, job_ids: list[int]) -> None:
    steps.index_hits(get_context(), batch_id, job_ids)
