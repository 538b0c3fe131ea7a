"""Sending many chains at once. One message costs two broker round trips (the task and Flower's
`task-sent` event); kombu's `Producer.batch()` (kombu >= 5.7) buffers them in one Redis pipeline, so a
group of chains costs one round trip. Brokers without batch support (RabbitMQ, the in-memory one)
publish each message at once, as before."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from celery import Celery, chain
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


def apply_chain(ch: chain, producer: Producer) -> None:
    """`ch.apply_async(producer=...)`, except that it goes through `producer`. Celery's chain.run takes
    `producer` as a named argument and does not pass it on (celery 5.7), so this sends the first task with
    the rest of the chain as its `chain` option, which is what chain.run does for a plain chain."""
    tasks, _ = ch.prepare_steps((), {}, ch.tasks, app=ch.app)
    first = tasks.pop()
    first.apply_async(producer=producer, chain=tasks)
