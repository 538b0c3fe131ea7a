"""Webhooks against a real receiver process on loopback that answers 500 to half the requests and is
down for a while twice (at the start, and while the outputs are approved): every event of a real batch
arrives (job.failed, output.needs_review, output.approved, batch.finished), every signature verifies with
the `standardwebhooks` package, and no event id is lost; repeats of an event carry the same id."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

pytestmark = [pytest.mark.distributed, pytest.mark.slow, pytest.mark.timeout(400)]
RECEIVER = Path(__file__).with_name("webhook_receiver.py")
DOWN_S = 4.0  # the 30 s outage, shortened: the backoff (HITLINE_WEBHOOK_BACKOFF_*) is shortened alike


def _receiver(port: int, log: Path) -> subprocess.Popen:  # type: ignore[type-arg]
    import socket

    p = subprocess.Popen([sys.executable, str(RECEIVER), str(port), str(log)])
    for _ in range(100):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return p
        time.sleep(0.05)
    raise RuntimeError("receiver did not start")


def test_every_event_arrives_signed_through_500s_and_outages(api_cluster, tmp_path: Path) -> None:  # noqa: ANN001
    from standardwebhooks.webhooks import Webhook

    from hitline_cluster import free_port, subset

    c = api_cluster
    port, log = free_port(), tmp_path / "received.jsonl"
    hook = c.post("/webhooks", json={"url": f"http://127.0.0.1:{port}/hooks"})
    assert hook.status_code == 201, hook.text
    secret, hook_id = hook.json()["secret"], hook.json()["id"]
    assert secret.startswith("whsec_")
    assert c.get("/webhooks").json()[0].get("secret") is None  # shown once
    bad = c.post("/webhooks", json={"url": "http://example.com/hooks"})
    assert bad.status_code == 422 and "https://" in bad.json()["error"]["message"]

    new = subset(c.new, tmp_path / "new", 4, corrupt=3)
    receiver = None
    try:
        batch_id = c.post("/batches", json={"catalog": str(c.catalog), "new": str(new), "review": "all"}).json()[
            "batch_id"
        ]
        time.sleep(DOWN_S)  # the receiver is down: connection refused, backing off
        receiver = _receiver(port, log)
        c.wait_batch(batch_id)
        outputs = c.get(f"/batches/{batch_id}/outputs").json()
        assert outputs["counts"]["pending"] == 3, outputs
        receiver.terminate()
        receiver.wait()  # down again while the outputs are approved
        r = c.post(f"/batches/{batch_id}/review", json={"decision": "approve", "review": "pending"})
        assert r.status_code == 200 and len(r.json()["changed"]) == 3, r.text
        time.sleep(DOWN_S)
        receiver = _receiver(port, log)
        deadline = time.monotonic() + 120
        while True:
            deliveries = c.get("/webhooks/deliveries", params={"batch_id": batch_id}).json()
            if len(deliveries) == 8 and all(d["state"] == "delivered" for d in deliveries):
                break
            assert time.monotonic() < deadline, (deliveries, c.log_tail())
            time.sleep(0.5)
    finally:
        if receiver is not None:
            receiver.terminate()
        requests_delete = __import__("requests").delete
        requests_delete(f"{c.url}/webhooks/{hook_id}", headers=c.auth, timeout=10)

    seen = [json.loads(line) for line in log.read_text().splitlines()]
    wh = Webhook(secret)
    mine = []
    for m in seen:
        payload = wh.verify(m["body"], m["headers"])  # raises on a bad signature or a stale timestamp
        if payload["data"]["batch_id"] == batch_id:
            mine.append((m["headers"]["webhook-id"], payload["type"], m["status"]))
    assert {s for _, _, s in mine} == {500, 204}  # half of them were refused and sent again
    ids = {i for i, _, _ in mine}
    assert ids == {d["event_id"] for d in deliveries}  # no event id lost
    by_id = {i: t for i, t, _ in mine}
    assert Counter(by_id.values()) == {
        "job.failed": 1,
        "output.needs_review": 3,
        "output.approved": 3,
        "batch.finished": 1,
    }, by_id
    assert {i for i, _, s in mine if s == 204} == ids  # and every one was accepted (2xx) at least once
    assert any(d["attempts"] > 1 for d in deliveries)  # refused ones were retried (backoff) under the same id
