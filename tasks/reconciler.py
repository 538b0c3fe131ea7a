"""The periodic side of automatic reconciliation: every worker runs a timer thread (in its main process)
that, under a PostgreSQL advisory lock (one pass at a time across all workers), asks
`hitline.jobs.reconcile` for lost jobs and enqueues their chains again. Nothing to schedule or run
besides the workers themselves: whatever starts a worker (README, docker-compose.yml) starts this.

Which messages a Redis broker still holds is read from its queue lists and its unacked hash (kombu's
Redis layout); other brokers are not inspected (RabbitMQ keeps queued and unacked messages itself).
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections import defaultdict
from typing import Any, Iterable

from celery.signals import worker_ready, worker_shutdown

from hitline.config import Settings, get_settings
from hitline.domain.fairness import PRIORITY_STEPS
from hitline.jobs.reconcile import LostJob, reconcile

__all__ = ["broker_in_flight", "run_once", "start"]

log = logging.getLogger("hitline.reconciler")

_PRIORITY_SEP = "\x06\x16"  # kombu's Redis transport: "<queue>\x06\x16<priority>" for priorities > 0
_LOCK_ID = 727275


def _job_ids(args: Any) -> Iterable[int]:
    """Job ids in a task's positional arguments: (job_id,) or (batch_id, [job_ids])."""
    for a in args if isinstance(args, list) else []:
        if isinstance(a, int):
            yield a
        elif isinstance(a, list):
            yield from (x for x in a if isinstance(x, int))


def _ids_in_message(raw: bytes | str) -> Iterable[int]:
    msg = json.loads(raw)
    if isinstance(msg, list):  # unacked hash entries are [message, exchange, routing_key]
        msg = msg[0]
    body = msg.get("body")
    if msg.get("properties", {}).get("body_encoding") == "base64":
        body = base64.b64decode(body)
    payload = json.loads(body)
    yield from _job_ids(payload[0] if isinstance(payload, list) and payload else [])


def broker_in_flight(broker_url: str, queues: Iterable[str]) -> set[int] | None:
    """Job ids that some message in the broker refers to (queued, reserved or waiting for a countdown);
    None when the broker cannot be inspected."""
    if not broker_url.startswith(("redis://", "rediss://")):
        return None
    import redis

    client = redis.Redis.from_url(broker_url, socket_timeout=10)
    try:
        ids: set[int] = set()
        pipe = client.pipeline(transaction=False)
        for q in queues:
            # every priority level (hitline/domain/fairness.py): a message at a level not read here would
            # look lost and be sent twice
            for name in (q, *(f"{q}{_PRIORITY_SEP}{p}" for p in PRIORITY_STEPS if p > 0)):
                pipe.lrange(name, 0, -1)
        pipe.hvals("unacked")
        for chunk in pipe.execute():
            for raw in chunk:
                try:
                    ids.update(_ids_in_message(raw))
                except (ValueError, KeyError, TypeError, IndexError):
                    continue  # not one of ours (or a kombu layout we do not know): never a reason to resend
        return ids
    finally:
        client.close()


def _enqueue(lost: list[LostJob]) -> int:
    """One chain per lost SKU job and per chunk of lost catalog jobs, from the stage each stands at."""
    from hitline.jobs.context import get_runtime
    from hitline.jobs.submit import Dispatch, chunks
    from tasks.chains import send

    hits: dict[tuple[str, str], list[int]] = defaultdict(list)
    out = []
    for j in lost:
        if j.kind == "hit":
            hits[(j.batch_id, j.stage)].append(j.job_id)
        elif j.stage != "done":
            out.append(Dispatch(j.batch_id, "sku", j.stage, (j.job_id,)))
    for (batch_id, stage), ids in hits.items():
        out += [Dispatch(batch_id, "hit", stage, tuple(c)) for c in chunks(ids)]
    return send(get_runtime(), out)  # stamps enqueued_at on what the broker took


def run_once(settings: Settings, queues: Iterable[str]) -> list[LostJob]:
    """One reconciliation pass; returns the jobs it re-enqueued ([] when another worker holds the lock)."""
    from sqlalchemy import text

    from db.session import engine_for

    db_url = settings.db_url()
    eng, _ = engine_for(db_url)
    with eng.connect() as lock_conn:
        if eng.dialect.name == "postgresql":
            if not lock_conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": _LOCK_ID}).scalar():
                return []
        try:
            lost = reconcile(
                db_url,
                lease_s=settings.claim_lease_s,
                grace_s=settings.reconcile_grace_s,
                in_flight=lambda: broker_in_flight(settings.broker_url, queues),
            )
            from tasks.webhooks import kick

            kick()  # deliveries whose message was lost (their lease ran out)
            if lost:
                _enqueue(lost)
                log.warning(
                    "reconciled %d lost job(s): %s",
                    len(lost),
                    ", ".join(f"{j.job_id}@{j.stage} ({j.why})" for j in lost[:20]),
                )
            return lost
        finally:
            if eng.dialect.name == "postgresql":
                lock_conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _LOCK_ID})
                lock_conn.commit()


_stop = threading.Event()


def start(settings: Settings | None = None) -> threading.Thread | None:
    """Start the reconciliation timer of this worker process (distributed mode only)."""
    settings = settings or get_settings()
    if not settings.broker_url or settings.broker_url.startswith("memory") or settings.reconcile_every_s <= 0:
        return None
    from workers.app import QUEUES

    def loop() -> None:
        from db.session import init_db

        migrated = False
        while not _stop.wait(settings.reconcile_every_s):
            if not migrated:  # a fresh database has no job table until the first worker migrates it
                try:
                    init_db(settings.db_url())
                    migrated = True
                except Exception as exc:  # noqa: BLE001
                    log.warning("job table not reachable yet (retrying in %g s): %s", settings.reconcile_every_s, exc)
                    continue
            try:
                run_once(settings, QUEUES)
            except Exception as exc:  # noqa: BLE001 - the broker or the job table may be down: next pass
                log.warning("reconciliation pass failed (retrying in %g s): %s", settings.reconcile_every_s, exc)

    t = threading.Thread(target=loop, name="hitline-reconciler", daemon=True)
    t.start()
    return t


@worker_ready.connect
def _on_worker_ready(sender: Any = None, **_: Any) -> None:
    _stop.clear()
    start()


@worker_shutdown.connect
def _on_worker_shutdown(**_: Any) -> None:
    _stop.set()
