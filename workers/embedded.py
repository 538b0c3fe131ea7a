"""Embedded mode: an in-process Celery worker (thread pool) consuming all five queues."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Iterator

from celery import Celery
from celery.contrib.testing.worker import start_worker

from workers.app import QUEUES


@contextmanager
def embedded_worker(app: Celery, concurrency: int = 4, loglevel: str = "WARNING") -> Iterator[object]:
    """Run a real Celery worker in a background thread for the duration of the block.

    Celery's own threaded test worker does exactly what embedded mode needs (same consumer, same
    task execution path as a standalone worker); without a result backend the ping check is skipped.
    """
    # the memory transport has no host; kombu warns about it on every start
    logging.getLogger("kombu.connection").setLevel(logging.ERROR)
    with start_worker(app, pool="threads", concurrency=concurrency, perform_ping_check=False,
                      queues=list(QUEUES), loglevel=loglevel, shutdown_timeout=60.0) as w:
        yield w
