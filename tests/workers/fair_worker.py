"""A worker for tests/workers/test_fairness.py: the hitline app's own Celery configuration (workers.app.make_app:
queues, routes, priority steps, acks_late, prefetch 1) with every line task a no-op that records the order in
which it ran, so the test sees the broker's and the worker's scheduling and nothing else.

    HITLINE_BROKER_URL=redis://... celery -A fair_worker worker -P solo -Q embed,index,retrieve,analyze,render
"""

from __future__ import annotations

from typing import Any

import redis
from celery import Task

from hitline.config import Settings
from workers.app import ROUTES, make_app

app = make_app(Settings())
app.conf.update(include=[])
RAN_KEY = "fairness:ran"
_client: list[redis.Redis] = []


def _redis() -> redis.Redis:
    if not _client:
        _client.append(redis.Redis.from_url(app.conf.broker_url))
    return _client[0]


def _noop(name: str) -> Task:
    @app.task(name=name, bind=True)
    def run(self: Task, *args: Any, **kwargs: Any) -> None:
        _redis().rpush(RAN_KEY, f"{name} {args[0]}")

    return run


TASKS = [_noop(name) for name in ROUTES if name.startswith("hitline.")]
