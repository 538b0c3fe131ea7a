"""The baseline of bench/overhead.py: five no-op Celery tasks chained like a SKU, on the hitline app's own
configuration (workers.app.make_app: acks_late, prefetch 1, JSON, events, same five queues), so the only
difference from the line is the work inside the tasks. The last task records when the chain finished.

    HITLINE_BROKER_URL=redis://... celery -A overhead_noop worker -Q embed,index,retrieve,analyze,render -c 2
"""

from __future__ import annotations

import time

import redis
from celery import chain

from hitline.config import Settings
from workers.app import QUEUES, make_app

app = make_app(Settings())
app.conf.update(include=[], task_routes={f"noop.{q}": {"queue": q} for q in QUEUES})
DONE_KEY = "overhead:noop:done"
_client: list[redis.Redis] = []  # one per process (redis-py resets its pool after a fork)


def _redis() -> redis.Redis:
    if not _client:
        _client.append(redis.Redis.from_url(app.conf.broker_url))
    return _client[0]


def _noop(stage: str):  # noqa: ANN202
    @app.task(name=f"noop.{stage}", bind=True)
    def run(self, job_id: int) -> None:  # noqa: ANN001
        if stage == QUEUES[-1]:
            # one Redis round trip per chain, so the parent can time completions (the line writes a row)
            _redis().rpush(DONE_KEY, f"{job_id} {time.time()}")

    return run


TASKS = [_noop(q) for q in QUEUES]


def sku_chain(job_id: int) -> chain:
    return chain(*(t.si(job_id) for t in TASKS))
