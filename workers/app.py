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
    "hitline.retrieve": {"queue": "retrieve"},
    "hitline.analyze": {"queue": "analyze"},
    "hitline.render": {"queue": "render"},
    "hitline.report": {"queue": "render"},
}


def make_app(settings: Settings) -> Celery:
    app = Celery("hitline", broker=settings.broker_url or "memory://", include=["tasks.stages"])
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
        # a redelivered message after a dead worker: 1 h is longer than any render
        broker_transport_options={"visibility_timeout": 3600},
        worker_hijack_root_logger=False,
    )
    return app


app = make_app(get_settings())
