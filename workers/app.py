"""The Celery app. `celery -A workers.app worker -Q render` and `celery -A workers.app flower` use it.
Queues and routes come from the stage registry (hitline.jobs.stages); nothing is routed by default."""

from __future__ import annotations

from typing import Any

from celery import Celery, signals
from kombu import Queue

from hitline.config import Settings, get_settings
from hitline.domain.fairness import PRIORITY_STEPS
from hitline.errors import UnroutedTask
from hitline.jobs.stages import OUTPUT_QUEUE, QUEUES, STAGES

ROUTES: dict[str, dict[str, Any]] = {st.task_name: {"queue": st.queue, "priority": st.priority} for st in STAGES}
# not a stage: the review picture drawn after a SKU is done, at the lowest priority (tasks/sheets.py)
ROUTES["hitline.contact_sheet"] = {"queue": OUTPUT_QUEUE}
# the Celery contract for other services (tasks/contract.py) on Celery's default queue name: a client
# that knows nothing of hitline's routes sends `send_task("hitline.submit_batch")` there. A default
# `hitline worker` consumes it beside the line's queues (workers/run.py).
CONTRACT_QUEUE = "celery"
CONTRACT_TASKS = ("hitline.submit_batch", "hitline.retry_jobs", "hitline.cancel_batch", "hitline.resume_batch")
ROUTES.update({name: {"queue": CONTRACT_QUEUE} for name in CONTRACT_TASKS})
# a reviewer's redo renders where renders run; webhook deliveries go where every default worker reads
ROUTES["hitline.redo_output"] = {"queue": OUTPUT_QUEUE}
ROUTES["hitline.deliver_webhook"] = {"queue": CONTRACT_QUEUE}


def _transport_options(broker_url: str) -> dict[str, Any]:
    if not broker_url or broker_url.startswith("memory"):
        # the in-memory broker polls its queues once a second by default: a 1 s stall between stages
        # (bench/bench_pipeline.py); 50 ms costs nothing in-process
        return {"polling_interval": 0.05}
    # Redis: an unacked message of a dead worker comes back after this; longer than any render.
    # Sooner than that, `hitline resume` finds the job from the table. Every priority a message may have
    # is a level of its own (kombu's default [0, 3, 6, 9] would merge fair sharing's levels,
    # hitline/domain/fairness.py); senders and workers must agree on these steps.
    return {"visibility_timeout": 3600, "priority_steps": list(PRIORITY_STEPS)}


def survive_redis_restarts() -> None:
    """A worker must outlive a Redis restart. When Celery's consumer loses the broker it detaches the
    connection's transport and then closes its channels; a Redis channel holding unacked messages then
    tries to restore them through the detached transport and raises AttributeError (kombu reads
    `connection.client.hostname`, now None; kombu issues #582, #970), which no connection-error handler
    catches: the worker exits with "Unrecoverable error" (seen in bench/soak.py: one worker in three).
    Raised as the connection error it is, it is ignored like any other and the consumer reconnects; the
    unrestored messages come back through the visibility timeout or the reconciler (tasks/reconciler.py)."""
    from kombu.transport import redis as kombu_redis

    if getattr(kombu_redis.Channel._connparams, "hitline", False):
        return
    connparams = kombu_redis.Channel._connparams

    def _connparams(self, asynchronous: bool = False):  # noqa: ANN001, ANN202 - kombu's signature
        if getattr(self.connection, "client", None) is None:
            raise kombu_redis.get_redis_ConnectionError()("the broker connection was closed (Redis lost)")
        return connparams(self, asynchronous=asynchronous)

    _connparams.hitline = True  # type: ignore[attr-defined]
    kombu_redis.Channel._connparams = _connparams


def _result_backend(broker_url: str) -> str | None:
    return broker_url if broker_url.startswith(("redis://", "rediss://")) else None


def check_routes(app: Celery) -> None:
    """Every hitline task has a queue: an unknown or unrouted task is an error at start-up."""
    missing = sorted(n for n in app.tasks if n.startswith("hitline.") and n not in app.conf.task_routes)
    if missing:
        raise UnroutedTask(
            f"tasks without a queue: {', '.join(missing)}; add them to the stage registry "
            "(hitline/jobs/stages.py) or to workers/app.py ROUTES"
        )


def make_app(settings: Settings) -> Celery:
    app = Celery(
        "hitline",
        broker=settings.broker_url or "memory://",
        include=[
            "tasks.stages",
            "tasks.sheets",
            "tasks.contract",
            "tasks.reconciler",
            "tasks.review",
            "tasks.webhooks",
        ],
    )
    app.conf.update(
        # the job table is the source of truth for results and state; the only results stored are the
        # return values of the contract tasks (batch id, jobs retried), for senders that .get() them
        result_backend=_result_backend(settings.broker_url),
        task_ignore_result=True,
        result_expires=86400,
        task_serializer="json",
        accept_content=["json"],
        task_queues=[Queue(q) for q in (*QUEUES, CONTRACT_QUEUE)],
        task_routes=ROUTES,
        # a task sent to a queue that is not declared is an error, not a new queue nobody reads
        task_create_missing_queues=False,
        task_default_queue=QUEUES[0],
        # tasks are idempotent (claims in the job table), so a lost worker's task may run again
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # long model calls: take one message at a time so a slow render does not hoard a queue
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        worker_send_task_events=True,  # Flower
        task_send_sent_event=True,
        task_track_started=True,
        broker_transport_options=_transport_options(settings.broker_url),
        worker_hijack_root_logger=False,
    )
    return app


app = make_app(get_settings())
survive_redis_restarts()


@app.on_after_finalize.connect
def _routes_are_complete(sender: Celery, **_: Any) -> None:
    check_routes(sender)


def install_limiter() -> None:
    """One rate limiter per worker process, shared by its threads (Redis-backed when a Redis is set)."""
    from hitline.jobs.context import get_runtime
    from hitline.providers.ratelimit import build_limiter

    rt = get_runtime()
    if rt.limiter is None:
        rt.limiter = build_limiter(rt.settings)


def one_blas_thread() -> None:
    """A worker's parallelism is its processes (one per core by default): numpy's OpenBLAS would start a
    thread per core in every one of them, and after each small product (an embedding's norm, a
    descriptor) those threads spin waiting for more work, on the cores the other processes need."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


@signals.worker_process_init.connect  # each prefork child
def _child_starts(**_: Any) -> None:
    one_blas_thread()
    install_limiter()


@signals.worker_init.connect  # the worker's own process (threads/solo pools run tasks there)
def _worker_starts(**_: Any) -> None:
    one_blas_thread()
    install_limiter()
