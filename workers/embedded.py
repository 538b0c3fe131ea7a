"""Embedded mode: an in-process Celery worker (thread pool) consuming every queue of the registry, and the
contract queue (webhook deliveries go there)."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Iterator

from celery.contrib.testing.worker import start_worker

from hitline.jobs.stages import QUEUES
from workers.app import CONTRACT_QUEUE, app, install_limiter


@contextmanager
def embedded_worker(concurrency: int = 4, loglevel: str = "WARNING") -> Iterator[object]:
    """Run a real Celery worker in a background thread for the duration of the block.

    Celery's own threaded test worker does exactly what embedded mode needs (same consumer, same
    task execution path as a standalone worker); without a result backend the ping check is skipped.
    """
    # the memory transport has no host; kombu warns about it on every start
    logging.getLogger("kombu.connection").setLevel(logging.ERROR)
    install_limiter()
    with start_worker(
        app,
        pool="threads",
        concurrency=concurrency,
        perform_ping_check=False,
        queues=[*QUEUES, CONTRACT_QUEUE],
        loglevel=loglevel,
        shutdown_timeout=60.0,
    ) as w:
        yield w
