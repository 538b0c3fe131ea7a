"""tasks.publish: a bulk submission sends its chains in a few Redis pipelines, and each message is the one
chain.apply_async() would have sent. A private redis-server; the sender runs in a subprocess because the
Celery app reads its broker URL at import."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SENDER = r'''
import base64, json, sys
import redis.connection
from hitline.jobs.context import get_runtime
from hitline.jobs.submit import Dispatch
from tasks.chains import chain_for, send
from tasks.publish import GROUP

n = int(sys.argv[1])
r = redis.Redis.from_url(sys.argv[2])
chain_for(Dispatch("B", "sku", "embed", (1,))).apply_async()  # the reference: Celery's own chain send
reference = json.loads(r.lpop("embed"))
trips = []
real = redis.connection.Connection.send_packed_command
redis.connection.Connection.send_packed_command = lambda self, *a, **k: (trips.append(1), real(self, *a, **k))[1]
send(get_runtime(), [Dispatch("B", "sku", "embed", (i,)) for i in range(1, n + 1)])
redis.connection.Connection.send_packed_command = real
sent = [json.loads(m) for m in r.lrange("embed", 0, -1)]
def chain_of(m):
    args, kwargs, embed = json.loads(base64.b64decode(m["body"]))
    steps = [[t["task"], t["args"], t["options"].get("priority")] for t in reversed(embed["chain"] or [])]
    return [[m["headers"]["task"], args, m["properties"].get("priority")]] + steps, sorted(m["headers"])
print(json.dumps({"group": GROUP, "round_trips": len(trips), "messages": len(sent),
                  "reference": chain_of(reference), "sent": [chain_of(m) for m in sent]}))
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def private_redis(tmp_path: Path):
    if not shutil.which("redis-server"):
        pytest.skip("redis-server not installed; .ci/run provides it")
    port = _free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


def test_bulk_send_uses_few_round_trips_and_sends_what_celery_would(tmp_path: Path, private_redis: str) -> None:
    n = 1200
    env = {k: v for k, v in os.environ.items() if not k.startswith("HITLINE_")}
    env.update(HITLINE_BROKER_URL=private_redis, HITLINE_DATA_DIR=str(tmp_path / "data"), PYTHONPATH=str(ROOT))
    res = subprocess.run([sys.executable, "-c", SENDER, str(n), private_redis], env=env, capture_output=True,
                         text=True, timeout=300, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["messages"] == n
    # one pipeline per group of chains (+ a few for the producer's connection); one by one it was 2 per chain
    assert out["round_trips"] <= -(-n // out["group"]) + 5, out["round_trips"]
    ref_chain, ref_headers = out["reference"]
    # the five stages, then the contact sheet at the lowest priority (off the SKU's critical path)
    assert ref_chain == [["hitline.embed", [1], 0], ["hitline.index", [1], None], ["hitline.retrieve", [1], None],
                         ["hitline.analyze", [1], None], ["hitline.render", [1], None],
                         ["hitline.contact_sheet", [1], 9]]
    # LPUSH + BRPOP: the first chain sent is the last in the list
    sent = {c[0][1][0]: (c, h) for c, h in out["sent"]}
    assert sorted(sent) == list(range(1, n + 1))
    for job, (chain, headers) in sent.items():
        assert chain == [[task, [job], pri] for task, _, pri in ref_chain] and headers == ref_headers
