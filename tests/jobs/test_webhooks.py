"""The webhook outbox without a broker: stable event ids, signed deliveries a `standardwebhooks` receiver
verifies, backoff after a failure, a dead delivery after N failures and its redelivery, and only
https:// or loopback URLs."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest


@pytest.fixture
def outbox(hitline_env: Path):  # noqa: ANN201
    from db import crud
    from db.session import init_db, session_scope
    from hitline.jobs.context import get_runtime

    rt = get_runtime()
    init_db(rt.db_url)
    with session_scope(rt.db_url) as s:
        crud.create_batch(s, "W", catalog_dir="c", new_dir="n", out_dir="o", options={}, budget_usd=None, notes=[])
    return rt


def test_an_event_is_written_once_and_delivered_signed(outbox) -> None:  # noqa: ANN001
    from standardwebhooks.webhooks import Webhook

    from db.models import WebhookDelivery, WebhookEvent
    from db.session import session_scope
    from hitline.errors import InputError
    from hitline.jobs import webhooks

    rt = outbox
    settings = rt.settings.model_copy(update={"webhook_attempts": 3, "webhook_backoff_s": 0.01})
    with session_scope(rt.db_url) as s:
        with pytest.raises(InputError, match="https://"):
            webhooks.register(s, settings, "http://example.com/h", batch_id="W")
        assert webhooks.emit(s, "W", "job.failed", "1:embed:1", {"job_id": 1}) is None  # nobody listens: no row
        hook = webhooks.register(s, settings, "https://shop.example/h", batch_id="W", events=["job.failed"])
        first = webhooks.emit(s, "W", "job.failed", "1:embed:1", {"job_id": 1})
        again = webhooks.emit(s, "W", "job.failed", "1:embed:1", {"job_id": 1})
        assert first == again and s.query(WebhookEvent).count() == 1 and s.query(WebhookDelivery).count() == 1
        assert webhooks.emit(s, "W", "batch.finished", "W:x", {}) is None  # not an event it asked for
    sent = []

    def post(url, content, headers, timeout):  # noqa: ANN001, ANN202
        sent.append((content, headers))
        return SimpleNamespace(status_code=500 if len(sent) < 3 else 200)

    [did] = webhooks.dispatch_due(rt.db_url, settings)
    assert webhooks.dispatch_due(rt.db_url, settings) == []  # leased: not sent twice
    assert webhooks.deliver_one(rt.db_url, settings, did, post=post).state == "pending"
    assert webhooks.deliver_one(rt.db_url, settings, did, post=post).state == "pending"
    assert webhooks.deliver_one(rt.db_url, settings, did, post=post).state == "delivered"
    assert webhooks.deliver_one(rt.db_url, settings, did, post=post).state == "gone"  # a late duplicate message
    assert len({h["webhook-id"] for _, h in sent}) == 1 and len(sent) == 3  # the same id every time
    for body, headers in sent:
        assert Webhook(hook.secret).verify(body, headers)["data"] == {"batch_id": "W", "job_id": 1}
    from standardwebhooks.webhooks import WebhookVerificationError

    with pytest.raises(WebhookVerificationError):
        Webhook(webhooks.secret_for(settings, hook.id + 1)).verify(sent[0][0], sent[0][1])


def test_after_n_failures_an_event_is_dead_until_redelivered(outbox) -> None:  # noqa: ANN001
    from db.session import session_scope
    from hitline.jobs import webhooks

    rt = outbox
    settings = rt.settings.model_copy(update={"webhook_attempts": 2, "webhook_backoff_s": 0.01})
    with session_scope(rt.db_url) as s:
        webhooks.register(s, settings, "http://127.0.0.1:9/h", batch_id="W")
        webhooks.emit(s, "W", "batch.finished", "W:done=1", {})

    def refused(*_a, **_k):  # noqa: ANN002, ANN003, ANN202
        raise ConnectionRefusedError("refused")

    [did] = webhooks.dispatch_due(rt.db_url, settings)
    first = webhooks.deliver_one(rt.db_url, settings, did, post=refused)
    assert first.state == "pending" and 0.005 <= first.retry_in <= 0.015  # backoff with jitter
    assert webhooks.deliver_one(rt.db_url, settings, did, post=refused).state == "dead"
    with session_scope(rt.db_url) as s:
        [d] = webhooks.deliveries(s, batch_id="W", state="dead")
        assert d["attempts"] == 2 and "refused" in d["last_error"]
        assert webhooks.redeliver(s, batch_id="W") == 1
    [again] = webhooks.dispatch_due(rt.db_url, settings)
    assert again == did
    ok = webhooks.deliver_one(rt.db_url, settings, did, post=lambda *a, **k: SimpleNamespace(status_code=204))
    assert ok.state == "delivered"


def test_an_endpoint_for_every_batch_hears_its_own_tenants_batches_only(outbox) -> None:  # noqa: ANN001
    from db import crud
    from db.models import Batch
    from db.session import session_scope
    from hitline.jobs import webhooks

    rt = outbox
    with session_scope(rt.db_url) as s:
        crud.create_batch(s, "X", catalog_dir="c", new_dir="n", out_dir="o", options={}, budget_usd=None, notes=[])
        s.flush()
        s.get(Batch, "X").tenant_id = "acme"
        hook = webhooks.register(s, rt.settings, "https://acme.example/h", tenant="acme")
        assert webhooks.emit(s, "W", "batch.finished", "W:1", {}) is None  # the default tenant's batch
        assert webhooks.emit(s, "X", "batch.finished", "X:1", {}) is not None
        assert [e.id for e in webhooks.endpoints(s, tenant="acme")] == [hook.id]
        assert webhooks.endpoints(s, tenant="default") == []
        assert len(webhooks.deliveries(s, tenant="acme")) == 1 and webhooks.deliveries(s, tenant="default") == []
