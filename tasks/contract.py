"""The Celery contract for services that do not speak HTTP: tasks any Celery client sends by name.

    app.send_task("hitline.submit_batch", args=[{"catalog": "/shared/hits", "new": "/shared/new"}])
        -> the batch id (docs/contract/submit_batch.schema.json)
    app.send_task("hitline.retry_jobs", args=[{"batch_id": "...", "reason": "402"}])
        -> how many failed jobs were re-enqueued (docs/contract/retry_jobs.schema.json)

Payloads are validated on receipt against the models the schemas are generated from
(hitline.jobs.requests); a payload that does not fit fails the task with the validation message, so the
sender's AsyncResult.get() raises it. The return value needs a result backend on the sender's side
(the broker's Redis: workers.app stores results of these two tasks only).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from db.session import session_scope
from hitline.errors import InputError
from hitline.jobs import control
from hitline.jobs.context import get_runtime
from hitline.jobs.submit import Submitted
from hitline.jobs.requests import BatchRequest, RetryRequest
from workers.app import app

SUBMIT_BATCH = "hitline.submit_batch"
RETRY_JOBS = "hitline.retry_jobs"


def submit_request(req: BatchRequest, out_dir: Path, *, idempotency_key: str | None = None) -> Submitted:
    """Submit a validated request (HTTP API and the Celery task): create the jobs, commit, enqueue."""
    from tasks.chains import submit

    return submit(Path(req.catalog), Path(req.new), out_dir, top_k=req.top_k, min_sales=req.min_sales,
                  presets=req.presets, budget_usd=req.budget_usd, idempotency_key=idempotency_key,
                  rt=get_runtime())


def retry_request(req: RetryRequest) -> int:
    """Reset the matching failed jobs, commit, send their chains; returns how many jobs."""
    from tasks.chains import send

    rt = get_runtime()
    with session_scope(rt.db_url) as s:
        todo = control.retry_failed(s, req.batch_id, req.to_filter())
    send(rt, todo)
    return sum(len(d.job_ids) for d in todo)


def _parse(model: type, payload: Any):  # noqa: ANN202
    try:
        return model.model_validate(payload)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'payload'}: {err['msg']}" for err in e.errors())
        raise InputError(f"{model.model_config.get('title')} payload rejected ({problems}); "
                         "see docs/contract/ for the schema") from None


@app.task(name=SUBMIT_BATCH, ignore_result=False)
def submit_batch(payload: dict[str, Any], idempotency_key: str | None = None) -> str:
    """A redelivered message (acks_late) with a key creates no second batch; send one key per request."""
    req = _parse(BatchRequest, payload)
    return submit_request(req, get_runtime().settings.out_dir_for_api(), idempotency_key=idempotency_key).batch_id


@app.task(name=RETRY_JOBS, ignore_result=False)
def retry_jobs(payload: dict[str, Any]) -> int:
    return retry_request(_parse(RetryRequest, payload))
