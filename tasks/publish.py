"""Sending many chains at once.

Grouping: one message costs two broker round trips (the task and Flower's `task-sent` event); kombu's
`Producer.batch()` (kombu >= 5.7) buffers them in one Redis pipeline, so a group of chains costs one round
trip. Brokers without batch support (RabbitMQ, the in-memory one) publish each message at once, as before.

Templates: what Celery does per message (routing, option merging, building the protocol-2 message, its
retry wrapper, declaring the queue and the event exchange again, the task-sent event) cost ~1 ms of CPU
per chain, most of a 10,000-SKU submission (cProfile). Chains that differ only in their job id are the same
messages but for that id and the task id, so `ChainSender` lets Celery build and publish one chain with a
placeholder job id into a recorder, once per kind of chain and producer, and sends each real chain as
those recorded `Producer.publish` calls with the ids put in: the same body, headers, properties and
`task-sent` event (fresh clock and timestamp) that `apply_async` would send, so workers and Flower see no
difference (tests/tasks/test_publish.py compares them). Not repeated per message: Celery's
`before/after_task_publish` signals (hitline connects none) and the sending task's result `children` (a
contract task submitting 10,000 SKUs no longer stores 10,000 child ids with its result)."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from typing import Any

from celery import Celery, Signature
from celery.utils import uuid
from kombu import Producer

__all__ = ["GROUP", "PLACEHOLDER", "batched_producer", "apply_chain", "ChainSender"]

GROUP = 500  # chains per pipeline: a group is accepted, or discarded, as a whole
# stands in for the job id while Celery builds a template chain; 16 digits, so its text occurs nowhere else
# in a message (uuids are hex groups of at most 12, job ids are far smaller, no other long numbers)
PLACEHOLDER = 7_300_000_000_000_001


@contextmanager
def batched_producer(app: Celery, chains: int = GROUP) -> Iterator[Producer]:
    """A producer whose publishes reach the broker when the block exits without an error; on an error
    nothing of the block is sent (the job table keeps those jobs unsent, for `hitline resume`)."""
    with app.producer_or_acquire() as producer:
        # 2 commands per chain (the task, its task-sent event) + the priority-queue expiries kombu may add
        with producer.batch(max_size=4 * chains):
            yield producer


def apply_chain(steps: list[Signature], producer: Any) -> None:
    """What `chain(*steps).apply_async()` sends, through `producer`: the first task, carrying the rest
    (last first, as the worker pops them) in its `chain` option. Two reasons not to use chain objects
    here: Celery's chain.run takes `producer` as a named argument and does not pass it on (celery 5.7),
    and building, folding and freezing a chain object cost ~3x the publish itself (cProfile of a
    2,000-SKU submit). The worker gives the later tasks their ids when it sends them."""
    first, *rest = steps
    first.apply_async(producer=producer, chain=list(reversed(rest)) or None)


class _Recorder:
    """Stands in for the producer while Celery sends one chain: keeps each `publish` call, sends nothing."""

    def __init__(self, producer: Producer) -> None:
        self.connection = producer.connection  # Celery wraps the send in the connection's error mapping
        self.calls: list[tuple[Any, dict[str, Any]]] = []

    def publish(self, body: Any, **kwargs: Any) -> None:
        self.calls.append((body, kwargs))


class _Template:
    """The publish calls of one chain with the placeholder job id, ready to repeat for another id."""

    def __init__(self, app: Celery, producer: Producer, steps: list[Signature]) -> None:
        from kombu.serialization import dumps

        recorder = _Recorder(producer)
        apply_chain(steps, recorder)
        (body, kwargs), *events = recorder.calls  # the task, then its task-sent event if enabled
        self.clock = app.clock
        headers = kwargs.pop("headers")
        self.task_id = headers["id"]
        # the body as kombu would serialize it (protocol 2: args, kwargs, embed with the rest of the chain)
        content_type, encoding, text = dumps(body, serializer=kwargs.pop("serializer", None) or "json")
        if str(PLACEHOLDER) not in text:
            raise RuntimeError(f"chain template: the job id is not in the message body ({text[:200]})")
        self.body, self.headers, self.kwargs = text, headers, kwargs
        self.kwargs.update(content_type=content_type, content_encoding=encoding)
        self.declare = self.kwargs.pop("declare", None) or []
        self.event = events[0] if events else None  # None when task_send_sent_event is off
        self.event_declare = (self.event[1].pop("declare", None) or []) if self.event else []
        self.declared = False

    def publish(self, producer: Producer, job_id: int) -> None:
        old, new, task_id = str(PLACEHOLDER), str(job_id), uuid()
        headers = {**self.headers, "id": task_id, "argsrepr": self.headers["argsrepr"].replace(old, new)}
        if headers["root_id"] == self.task_id:  # the chain is its own root (not sent from inside a task)
            headers["root_id"] = task_id
        first = not self.declared  # queue and exchange: declared with the first message on this producer
        self.declared = True
        producer.publish(
            self.body.replace(old, new),
            headers=headers,
            **{**self.kwargs, "correlation_id": task_id},
            declare=self.declare if first else [],
        )
        if self.event is not None:
            fields, kwargs = self.event
            event = {
                **fields,
                "uuid": task_id,
                "args": fields["args"].replace(old, new),
                "clock": self.clock.forward(),
                "timestamp": time.time(),
            }
            if fields["root_id"] == self.task_id:
                event["root_id"] = task_id
            producer.publish(event, **kwargs, declare=self.event_declare if first else [])


class ChainSender:
    """Sends chains through one producer; chains of the same kind (`key`) are built by Celery once, with
    a placeholder job id, and repeated for each job (see the module's docstring)."""

    def __init__(self, app: Celery, producer: Producer) -> None:
        self.app, self.producer = app, producer
        self._templates: dict[Hashable, _Template] = {}

    def send(self, key: Hashable, job_id: int, steps: Callable[[int], list[Signature]]) -> None:
        """Send the chain `steps(job_id)`: every step's arguments hold the job id and nothing else varies
        between chains of the same `key`."""
        template = self._templates.get(key)
        if template is None:
            template = self._templates[key] = _Template(self.app, self.producer, steps(PLACEHOLDER))
        template.publish(self.producer, job_id)
