"""`hitline worker`: check everything a worker depends on, then run the Celery worker. A worker that says
ready can do its work; otherwise it refuses with one line (and takes no message it would lose)."""

from __future__ import annotations

import os
from typing import Sequence

from hitline.config import Settings, get_settings
from hitline.errors import ConfigError
from hitline.jobs.stages import QUEUES, STAGES

__all__ = ["preflight", "run_worker"]

PREFLIGHT_TIMEOUT_S = 5.0


def preflight(settings: Settings, queues: Sequence[str]) -> None:
    """Raise ConfigError naming the first thing this worker could not use."""
    from workers.app import CONTRACT_QUEUE

    unknown = sorted(set(queues) - set(QUEUES) - {CONTRACT_QUEUE})
    if unknown:
        raise ConfigError(
            f"unknown queue(s) {', '.join(unknown)}; the line's queues: {', '.join(QUEUES)} "
            f"(and {CONTRACT_QUEUE} for tasks other services send)"
        )
    if not settings.broker_url or settings.broker_url.startswith("memory"):
        raise ConfigError("set HITLINE_BROKER_URL (e.g. redis://127.0.0.1:6379/0) to run a worker")
    if not settings.milvus_uri:
        raise ConfigError(
            "workers share the hit index through a Milvus server: set HITLINE_MILVUS_URI, e.g. "
            "http://127.0.0.1:19530 (`milvus-lite server --data-dir D --port 19530`)"
        )
    if not settings.database_url:
        raise ConfigError(
            "workers share the job table: set HITLINE_DATABASE_URL "
            "(e.g. postgresql+psycopg://postgres@127.0.0.1:5432/hitline)"
        )
    _check("job table", settings.db_url(), lambda: _check_db(settings))
    _check("broker", settings.broker_url, lambda: _check_broker(settings))
    _check("Milvus server", settings.milvus_uri, lambda: _check_milvus(settings))
    if any(st.calls_provider and st.queue in queues for st in STAGES) and settings.resolved_provider() == "openrouter":
        from hitline.providers.factory import build_providers

        build_providers(settings)  # no key for the real API -> ConfigError with what to set


def _check(what: str, where: str, probe) -> None:  # noqa: ANN001
    from kombu.utils.url import maybe_sanitize_url

    try:
        probe()
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - whatever the driver raises, the worker must not start
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise ConfigError(f"cannot reach the {what} at {maybe_sanitize_url(where)}: {first}") from None


def _check_db(settings: Settings) -> None:
    from db.session import init_db

    init_db(settings.db_url())  # connects, and brings the schema up to date


def _check_broker(settings: Settings) -> None:
    from kombu import Connection

    with Connection(settings.broker_url, connect_timeout=PREFLIGHT_TIMEOUT_S) as conn:
        conn.ensure_connection(max_retries=1, timeout=PREFLIGHT_TIMEOUT_S)


def _check_milvus(settings: Settings) -> None:
    from hitline.store.index import client_for

    client_for(settings.milvus()).list_collections()


def run_worker(queues: Sequence[str] | None, concurrency: int | None, pool: str, loglevel: str) -> None:
    from workers.app import CONTRACT_QUEUE, app

    queues = list(queues or (*QUEUES, CONTRACT_QUEUE))
    settings = get_settings()
    preflight(settings, queues)
    app.worker_main(
        [
            "worker",
            "-Q",
            ",".join(queues),
            "-c",
            str(concurrency or settings.worker_concurrency),
            # the pid keeps two workers of the same queues on one host apart: RabbitMQ refuses a second
            # consumer of a node's exclusive pidbox queue, and that worker dies
            "-P",
            pool,
            "-l",
            loglevel,
            "-E",
            "-n",
            f"hitline-{'-'.join(queues)}-{os.getpid()}@%h",
        ]
    )
