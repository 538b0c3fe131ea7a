"""The Celery app. `celery -A workers.app worker -Q render` and `celery -A workers.app flower` use it."""

from __future__ import annotations

from celery import Celery
from kombu import Queue

from hitline.config import Settings, get_settings

QUEUES = ("embed", "index", "retrieve", "analyze", "render")

ROUTES = {
    "hitline.embed_hits": {"queue": "embed"},
    "hitline.embed": {"queue": "embed"},
    "hitline.index_hits": {"queue": "index"},
    "hitline.index": {"queue": "index"},
    "hitline.retrieve": {"queue": "retrieve"},
    "hitline.analyze": {"queue": "analyze"},
    "hitline.render": {"queue": "render"},
    "hitline.jobs.report": {"queue": "render"},
}


def _transport_options(broker_url: str) -> dict[str, float]:
    if not broker_url or broker_url.startswith("memory"):
        # the in-memory broker polls its queues once a second by default: a 1 s stall between stages
        # (bench/bench_pipeline.py); 50 ms costs nothing in-process
        return {"polling_interval": 0.05}
    # Redis: an unacked message of a dead worker comes back after this; longer than any render.
    # Sooner than that, `hitline resume` finds the job from the table.
    return {"visibility_timeout": 3600}


def make_app(settings: Settings) -> Celery:
    app = Celery("hitline", broker=settings.broker_url or "memory://", include=["tasks.stages", "workers.reconciler"])
    app.conf.update(
        # the job table is the source of truth for results and state: no result backend
        result_backend=None,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        task_queues=[Queue(q) for q in QUEUES],
        task_routes=ROUTES,
        task_default_queue="embed",
        # tasks are idempotent (claims in the job table), so a lost worker's task may run again
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # long model calls: take one message at a time so a slow render does not hoard a queue
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        worker_send_task_events=True,  # Flower
        task_send_sent_event=True,
        broker_transport_options=_transport_options(settings.broker_url),
        worker_hijack_root_logger=False,
    )
    return app


app = make_app(get_settings())
