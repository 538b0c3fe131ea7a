"""The webhook delivery task: one attempt per run, backing off with the task's retry countdown; and
kick(), which sends a task for every delivery that is due (called after a commit that may have written
events, and by each reconciliation pass, so an event whose message was lost is sent again)."""

from __future__ import annotations

from celery import Task

from hitline.jobs import webhooks
from hitline.jobs.context import get_runtime
from workers.app import app

__all__ = ["deliver", "kick", "WEBHOOK_QUEUE"]

WEBHOOK_QUEUE = "celery"  # the contract's queue: every default `hitline worker` consumes it


@app.task(name="hitline.deliver_webhook", bind=True, max_retries=None)
def deliver(self: Task, delivery_id: int) -> str:
    rt = get_runtime()
    done = webhooks.deliver_one(rt.db_url, rt.settings, delivery_id)
    if done.state == "pending":
        raise self.retry(countdown=done.retry_in, exc=RuntimeError(done.error))
    return done.state


def kick() -> int:
    """Send a delivery task for each due delivery; never raises (the next kick or sweep sends them)."""
    rt = get_runtime()
    try:
        ids = webhooks.dispatch_due(rt.db_url, rt.settings)
        for i in ids:
            deliver.apply_async((i,), queue=WEBHOOK_QUEUE)
        return len(ids)
    except Exception:  # noqa: BLE001 - the leases run out and the reconciler's pass sends them
        return 0
