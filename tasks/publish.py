"""Sending many chains at once. One message costs two broker round trips (the task and Flower's
`task-sent` event); kombu's `Producer.batch()` (kombu >= 5.7) buffers them in one Redis pipeline, so a
group of chains costs one round trip. Brokers without batch support (RabbitMQ, the in-memory one)
publish each message at once, as before."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from celery import Celery, Signature
from kombu import Producer

__all__ = ["GROUP", "batched_producer", "apply_chain"]

GROUP = 500  # chains per pipeline: a group is accepted, or discarded, as a whole


@contextmanager
def batched_producer(app: Celery, chains: int = GROUP) -> Iterator[Producer]:
    """A producer whose publishes reach the broker when the block exits without an error; on an error
    nothing of the block is sent (the job table keeps those jobs unsent, for `hitline resume`)."""
    with app.producer_or_acquire() as producer:
        # 2 commands per chain (the task, its task-sent event) + the priority-queue expiries kombu may add
        with producer.batch(max_size=4 * chains):
            yield producer


def apply_chain(steps: list[Signature], producer: Producer) -> None:
    """What `chain(*steps).apply_async()` sends, through `producer`: the first task, carrying the rest
    (last first, as the worker pops them) in its `chain` option. Two reasons not to use chain objects
    here: Celery's chain.run takes `producer` as a named argument and does not pass it on (celery 5.7),
    and building, folding and freezing a chain object cost ~3x the publish itself (cProfile of a
    2,000-SKU submit). The worker gives the later tasks their ids when it sends them."""
    first, *rest = steps
    first.apply_async(producer=producer, chain=list(reversed(rest)) or None)
