"""Webhooks: endpoints a batch (or the whole server) registers, an outbox of events in the job table, and
their delivery, signed the Standard Webhooks way (`standardwebhooks`: webhook-id, webhook-timestamp,
webhook-signature = HMAC-SHA256 over id, timestamp and body).

Events are written in the transaction that made them happen (emit); a delivery row per endpoint says
when to try next. dispatch_due() leases what is due for the Celery task tasks.webhooks.deliver, which
runs deliver_one(): it backs off after a failure (the task's retry countdown) and marks a delivery dead
after `webhook_attempts` failures; redeliver() revives it.
An event's id is derived from what happened, so emitting it twice is one event and a receiver that sees
an id again (at-least-once delivery) can drop it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import random
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterable, Mapping, Protocol, TypedDict
from urllib.parse import urlsplit

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from db import crud
from db.crud import Db
from db.models import WebhookDelivery, WebhookEndpoint, WebhookEvent, utcnow
from hitline.config import Settings
from hitline.errors import InputError

__all__ = [
    "EVENTS",
    "emit",
    "register",
    "endpoints",
    "remove",
    "secret_for",
    "dispatch_due",
    "deliver_one",
    "redeliver",
    "deliveries",
    "delivery_counts",
    "event_id",
    "batch_finished_if_done",
    "sign",
]

EVENTS = ("batch.finished", "job.failed", "output.needs_review", "output.approved")


def event_id(type_: str, subject: str) -> str:
    """A stable id: the same happening (type + subject) is the same event."""
    return "evt_" + hashlib.sha256(f"{type_}|{subject}".encode()).hexdigest()[:32]


def _check_url(url: str) -> str:
    parts = urlsplit(url.strip())
    host = parts.hostname or ""
    if parts.scheme == "https" and host:
        return url.strip()
    loopback = host == "localhost"
    try:
        loopback = loopback or ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    if parts.scheme == "http" and loopback:
        return url.strip()
    raise InputError(f"webhook URL {url!r} must be https:// (or http:// on loopback, for a receiver on this host)")


def _master_key(settings: Settings) -> bytes:
    """The server's webhook key (HITLINE_WEBHOOK_KEY; every process of a deployment needs the same), or,
    in embedded mode, one made once under the data dir."""
    if settings.webhook_key is not None:
        return settings.webhook_key.get_secret_value().encode()
    path = Path(settings.data_dir) / "webhook.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(path, "x") as f:
                f.write(secrets.token_urlsafe(32))
            path.chmod(0o600)
        except FileExistsError:
            pass
    return path.read_text().strip().encode()


def secret_for(settings: Settings, endpoint_id: int) -> str:
    """An endpoint's signing secret (whsec_ + base64, the Standard Webhooks form), derived, never stored."""
    raw = hmac.new(_master_key(settings), f"webhook-endpoint:{endpoint_id}".encode(), hashlib.sha256).digest()
    return "whsec_" + base64.b64encode(raw).decode()


@dataclass
class Registered:
    id: int
    url: str
    batch_id: str | None
    events: list[str]
    secret: str  # shown once


def register(
    s: Session,
    settings: Settings,
    url: str,
    *,
    batch_id: str | None = None,
    events: Iterable[str] | None = None,
    tenant: str = "default",
) -> Registered:
    """A new endpoint for a batch's events (or, with batch_id None, every batch's of the tenant)."""
    url = _check_url(url)
    chosen = list(events or EVENTS)
    unknown = sorted(set(chosen) - set(EVENTS))
    if unknown:
        raise InputError(f"unknown webhook event(s) {', '.join(unknown)}: choose from {', '.join(EVENTS)}")
    if batch_id is not None:
        from hitline.jobs.control import get_batch

        tenant = get_batch(s, batch_id, tenant).tenant_id
    row = WebhookEndpoint(url=url, batch_id=batch_id, events=chosen, tenant_id=tenant)
    s.add(row)
    s.flush()
    return Registered(row.id, url, batch_id, chosen, secret_for(settings, row.id))


def endpoints(s: Session, batch_id: str | None = None, tenant: str | None = None) -> list[WebhookEndpoint]:
    q = select(WebhookEndpoint).where(WebhookEndpoint.disabled_at.is_(None)).order_by(WebhookEndpoint.id)
    if tenant is not None:
        q = q.where(WebhookEndpoint.tenant_id == tenant)
    if batch_id is not None:
        q = q.where(or_(WebhookEndpoint.batch_id == batch_id, WebhookEndpoint.batch_id.is_(None)))
    return list(s.scalars(q))


def remove(s: Session, endpoint_id: int) -> None:
    from hitline.jobs.control import NotFound

    row = s.get(WebhookEndpoint, endpoint_id)
    if row is None or row.disabled_at is not None:
        raise NotFound(f"no webhook endpoint {endpoint_id} (`hitline webhook list`)")
    row.disabled_at = utcnow()


def _listening(s: Db, batch_id: str, type_: str) -> list[int]:
    """The live endpoints that want this batch's events of this type: the batch's own, and those for every
    batch of the batch's tenant."""
    from db.models import Batch

    tenant = select(Batch.tenant_id).where(Batch.id == batch_id).scalar_subquery()
    return [
        i
        for i, ev in s.execute(
            select(WebhookEndpoint.id, WebhookEndpoint.events).where(
                WebhookEndpoint.disabled_at.is_(None),
                or_(
                    WebhookEndpoint.batch_id == batch_id,
                    and_(WebhookEndpoint.batch_id.is_(None), WebhookEndpoint.tenant_id == tenant),
                ),
            )
        )
        if type_ in (ev or [])
    ]


def emit(s: Db, batch_id: str, type_: str, subject: str, data: Mapping[str, object]) -> str | None:
    """Write an event and a delivery per endpoint listening for it, in the caller's transaction. Nothing
    is written when no endpoint listens (no outbox rows for batches nobody watches). Returns the id."""
    eps = _listening(s, batch_id, type_)
    if not eps:
        return None
    eid = event_id(type_, subject)
    now = utcnow()
    payload = {"type": type_, "timestamp": now.isoformat(), "data": {"batch_id": batch_id, **data}}
    ins = crud._dialect_insert(crud._dialect(s))
    s.execute(
        ins(WebhookEvent.__table__)
        .values(id=eid, type=type_, batch_id=batch_id, payload=payload, created_at=now)
        .on_conflict_do_nothing()
    )
    for ep_id in eps:
        s.execute(
            ins(WebhookDelivery.__table__)
            .values(event_id=eid, endpoint_id=ep_id, state="pending", attempts=0, next_at=now)
            .on_conflict_do_nothing()
        )
    return eid


def batch_finished_if_done(s: Db, batch_id: str) -> str | None:
    """batch.finished once no job of the batch is open; the subject holds the final counts, so a batch
    finished again after a retry is a new event and the same finish seen twice is one."""
    from db.models import Batch, Job

    if not _listening(s, batch_id, "batch.finished"):
        return None
    # the batch row's lock orders the SKUs finishing together: the last one to commit sees all the others
    # done (without it, the last two could each see the other still running, and nobody would send it)
    s.execute(select(Batch.id).where(Batch.id == batch_id).with_for_update())
    if s.execute(select(Job.id).where(Job.batch_id == batch_id, Job.state.in_(crud.OPEN)).limit(1)).first():
        return None
    counts = dict(s.execute(select(Job.state, func.count()).where(Job.batch_id == batch_id).group_by(Job.state)).all())
    subject = f"{batch_id}:" + ",".join(f"{k}={v}" for k, v in sorted(counts.items()))
    return emit(s, batch_id, "batch.finished", subject, {"counts": counts})


# --- delivery ----------------------------------------------------------------------------------------


def _backoff(settings: Settings, attempts: int) -> float:
    base = settings.webhook_backoff_s * 2.0 ** max(0, attempts - 1)
    return min(settings.webhook_backoff_max_s, base) * (0.5 + random.random())


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def sign(secret: str, msg_id: str, when: datetime, body: str) -> dict[str, str]:
    from standardwebhooks.webhooks import Webhook

    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, when, body),
        "content-type": "application/json",
    }


def dispatch_due(db_url: str, settings: Settings, *, limit: int = 500) -> list[int]:
    """Pending deliveries with no live message (next_at passed): each is leased (next_at moved
    webhook_lease_s on, a conditional UPDATE, so two senders never both take it) and returned for the
    caller to send as a delivery task. A message lost with a worker is found again when its lease ends."""
    from db.session import rowcount, session_scope

    now = utcnow()
    lease = now + timedelta(seconds=settings.webhook_lease_s)
    taken: list[int] = []
    with session_scope(db_url) as s:
        ids = list(
            s.scalars(
                select(WebhookDelivery.id)
                .where(WebhookDelivery.state == "pending", WebhookDelivery.next_at <= now)
                .order_by(WebhookDelivery.next_at)
                .limit(limit)
            )
        )
        for i in ids:
            if rowcount(
                s.execute(
                    update(WebhookDelivery)
                    .where(WebhookDelivery.id == i, WebhookDelivery.state == "pending", WebhookDelivery.next_at <= now)
                    .values(next_at=lease)
                    .execution_options(synchronize_session=False)
                )
            ):
                taken.append(i)
    return taken


@dataclass
class Attempted:
    state: str  # delivered | pending (try again after `retry_in` seconds) | dead | gone (nothing to do)
    retry_in: float = 0.0
    error: str | None = None


class _Response(Protocol):
    @property
    def status_code(self) -> int: ...


class Post(Protocol):
    """What deliver_one POSTs with (httpx.post; a test's fake)."""

    def __call__(self, url: str, *, content: bytes, headers: dict[str, str], timeout: float) -> _Response: ...


class DeliveryRow(TypedDict):
    """One delivery as `hitline webhook deliveries` and GET /webhooks/deliveries list it."""

    id: int
    event_id: str
    type: str
    batch_id: str
    url: str
    state: str
    attempts: int
    last_error: str | None
    next_at: datetime
    delivered_at: datetime | None


def deliver_one(db_url: str, settings: Settings, delivery_id: int, *, post: Post | None = None) -> Attempted:
    """One attempt of one delivery: POST the signed event; 2xx = delivered, anything else (refused, reset,
    timeout, 5xx, 4xx) counts a failure, backs off, and after `webhook_attempts` failures the delivery is
    dead (`hitline webhook redeliver`). A delivery already delivered or dead is left alone."""
    from db.session import session_scope
    import httpx

    send: Post = post or httpx.post
    with session_scope(db_url) as s:
        d = s.get(WebhookDelivery, delivery_id)
        if d is None or d.state != "pending":
            return Attempted("gone")
        ev = s.get(WebhookEvent, d.event_id)
        ep = s.get(WebhookEndpoint, d.endpoint_id)
        if ev is None or ep is None:  # deleted under us (their deliveries go with them: ON DELETE CASCADE)
            return Attempted("gone")
        body = json.dumps(ev.payload, separators=(",", ":"), sort_keys=True)
        url, ep_id, eid = ep.url, ep.id, ev.id
    error = None
    try:
        resp = send(
            url,
            content=body.encode(),
            headers=sign(secret_for(settings, ep_id), eid, utcnow(), body),
            timeout=settings.webhook_timeout_s,
        )
        if not 200 <= resp.status_code < 300:
            error = f"HTTP {resp.status_code}"
    except Exception as e:  # noqa: BLE001 - refused, reset, timed out: the receiver's problem, retried
        error = f"{type(e).__name__}: {str(e)[:200]}"
    with session_scope(db_url) as s:
        d = s.get(WebhookDelivery, delivery_id)
        if d is None or d.state != "pending":  # delivered by another message meanwhile
            return Attempted("gone")
        d.attempts += 1
        if error is None:
            d.state, d.delivered_at, d.last_error = "delivered", utcnow(), None
            return Attempted("delivered")
        d.last_error = error
        if d.attempts >= settings.webhook_attempts:
            d.state = "dead"
            return Attempted("dead", error=error)
        wait = _backoff(settings, d.attempts)
        # the retry's message is due after `wait`; the lease after that lets the sweep find it if lost
        d.next_at = utcnow() + timedelta(seconds=wait + settings.webhook_lease_s)
        return Attempted("pending", wait, error)


def deliveries(
    s: Session, *, batch_id: str | None = None, state: str | None = None, limit: int = 200, tenant: str | None = None
) -> list[DeliveryRow]:
    q = (
        select(WebhookDelivery, WebhookEvent.type, WebhookEvent.batch_id, WebhookEndpoint.url)
        .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .order_by(WebhookDelivery.id.desc())
        .limit(limit)
    )
    if batch_id:
        q = q.where(WebhookEvent.batch_id == batch_id)
    if tenant is not None:
        q = q.where(WebhookEndpoint.tenant_id == tenant)
    if state:
        q = q.where(WebhookDelivery.state == state)
    return [
        DeliveryRow(
            id=d.id,
            event_id=d.event_id,
            type=t,
            batch_id=b,
            url=u,
            state=d.state,
            attempts=d.attempts,
            last_error=d.last_error,
            next_at=d.next_at,
            delivered_at=d.delivered_at,
        )
        for d, t, b, u in s.execute(q)
    ]


def delivery_counts(s: Db, batch_id: str) -> dict[str, int]:
    """A batch's deliveries per state (pending, delivered, dead); empty when nothing was ever sent."""
    return dict(
        s.execute(
            select(WebhookDelivery.state, func.count())
            .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
            .where(WebhookEvent.batch_id == batch_id)
            .group_by(WebhookDelivery.state)
        ).all()
    )


def redeliver(
    s: Session, *, batch_id: str | None = None, delivery_ids: Iterable[int] | None = None, tenant: str | None = None
) -> int:
    """Dead deliveries (of a batch, or these ids) back to pending, due now, with a fresh attempt count."""
    q = update(WebhookDelivery).where(WebhookDelivery.state == "dead")
    if delivery_ids is not None:
        q = q.where(WebhookDelivery.id.in_(list(delivery_ids)))
    if batch_id is not None:
        q = q.where(WebhookDelivery.event_id.in_(select(WebhookEvent.id).where(WebhookEvent.batch_id == batch_id)))
    if tenant is not None:
        q = q.where(
            WebhookDelivery.endpoint_id.in_(select(WebhookEndpoint.id).where(WebhookEndpoint.tenant_id == tenant))
        )
    from db.session import rowcount

    return rowcount(
        s.execute(q.values(state="pending", attempts=0, next_at=utcnow()).execution_options(synchronize_session=False))
    )
