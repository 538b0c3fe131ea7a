"""The Celery contract for services that do not speak HTTP: tasks any Celery client sends by name.

    app.send_task("hitline.submit_batch", args=[{"catalog": "/shared/hits", "new": "/shared/new", "tenant": "acme"}])
        -> the batch id (docs/contract/submit_batch.schema.json; tenant defaults to "default" and must
        exist; the folders must be under HITLINE_API_SHARED_DIRS, as over HTTP: hitline.jobs.shared)
    app.send_task("hitline.retry_jobs", args=[{"batch_id": "...", "reason": "402", "tenant": "acme"}])
        -> how many failed jobs were re-enqueued (docs/contract/retry_jobs.schema.json)
    app.send_task("hitline.cancel_batch", args=[{"batch_id": "..."}]) -> how many waiting jobs stopped
    app.send_task("hitline.resume_batch", args=[{"batch_id": "..."}]) -> how many jobs were re-enqueued

retry, cancel and resume act for a tenant too ("tenant", default "default"): another tenant's batch is
"no batch ... in tenant ...", as the HTTP API answers 404.

Each task is one call of hitline.jobs.verbs (the same verbs the CLI and the HTTP API call).

Payloads are validated on receipt against the models the schemas are generated from
(hitline.jobs.requests); a payload that does not fit fails the task with the validation message, so the
sender's AsyncResult.get() raises it. The return value needs a result backend on the sender's side
(the broker's Redis: workers.app stores results of these tasks only).
"""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ValidationError

from hitline.errors import InputError
from db.session import session_scope
from hitline.jobs import control, verbs
from db.models import Batch
from hitline.jobs.context import Runtime, get_runtime
from hitline.jobs.requests import BatchRef, ResumeRequest, RetryRequest, SubmitBatchRequest
from hitline.jobs.shared import check_shared
from tasks.chains import send
from workers.app import app

M = TypeVar("M", bound=BaseModel)

SUBMIT_BATCH = "hitline.submit_batch"
RETRY_JOBS = "hitline.retry_jobs"
CANCEL_BATCH = "hitline.cancel_batch"
RESUME_BATCH = "hitline.resume_batch"


def _parse(model: type[M], payload: object) -> M:
    try:
        return model.model_validate(payload)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'payload'}: {err['msg']}" for err in e.errors())
        raise InputError(
            f"{model.model_config.get('title')} payload rejected ({problems}); see docs/contract/ for the schema"
        ) from None


@app.task(name=SUBMIT_BATCH, ignore_result=False)
def submit_batch(payload: dict[str, object], idempotency_key: str | None = None) -> str:
    """A redelivered message (acks_late) with a key creates no second batch; send one key per request."""
    req = _parse(SubmitBatchRequest, payload)
    rt = get_runtime()
    with session_scope(rt.db_url) as s:
        control.require_tenant(s, req.tenant)
    # the HTTP API's rule: only folders under HITLINE_API_SHARED_DIRS or the tenant's uploads, or its catalog
    check_shared(rt.settings, req.tenant, catalog=req.catalog, new=req.new)
    return verbs.submit(
        rt,
        req.catalog,
        req.new,
        rt.settings.out_dir_for_api(),
        send=send,
        top_k=req.top_k,
        min_sales=req.min_sales,
        presets=req.presets,
        budget_usd=req.budget_usd,
        idempotency_key=idempotency_key,
        tenant=req.tenant,
        review=req.review,
        draft=req.draft,
        locales=req.locales,
        text_mode=req.text_mode,
        missing_translation=req.missing_translation,
        mode=req.mode,
        escalate=req.escalate,
    ).batch_id


def _own(batch_id: str, tenant: str) -> Runtime:
    """The runtime, once the batch is the tenant's: another tenant's batch is not found, as over HTTP."""
    rt = get_runtime()
    with session_scope(rt.db_url) as s:
        control.require_tenant(s, tenant)
        batch = s.get(Batch, batch_id)
        if batch is None or batch.tenant_id != tenant:
            raise InputError(f"no batch {batch_id[:64]!r} in tenant {tenant!r}")
    return rt


@app.task(name=RETRY_JOBS, ignore_result=False)
def retry_jobs(payload: dict[str, object]) -> int:
    """How many failed jobs were re-enqueued."""
    req = _parse(RetryRequest, payload)
    return verbs.retry(_own(req.batch_id, req.tenant), req.batch_id, req.to_filter(), send=send).jobs


@app.task(name=CANCEL_BATCH, ignore_result=False)
def cancel_batch(payload: dict[str, object]) -> int:
    """How many waiting jobs were stopped."""
    req = _parse(BatchRef, payload)
    return verbs.cancel(_own(req.batch_id, req.tenant), req.batch_id).jobs


@app.task(name=RESUME_BATCH, ignore_result=False)
def resume_batch(payload: dict[str, object]) -> int:
    """How many jobs were re-enqueued (a cancelled batch is reopened first)."""
    req = _parse(ResumeRequest, payload)
    return verbs.resume(_own(req.batch_id, req.tenant), req.batch_id, send=send, budget_usd=req.budget_usd).jobs
