"""Fair sharing (hitline/domain/fairness.py) on a real Redis broker with a real Celery worker: a small batch
sent after a big one is served before the big one's tail, at every stage of its chains; and the
reconciler still sees every message at every priority level (else it would send them twice).

The worker (tests/workers/fair_worker.py) runs no-op tasks under the line's task names with the app's own
configuration: one process, one message at a time, so the order is the scheduling and nothing else."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import redis

from hitline.domain.fairness import sku_priority
from testkit.services import Proc, RedisServer

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
BIG = list(range(1, 41))  # job ids of a 40-SKU batch sent first
SMALL = [101, 102, 103]  # a 3-SKU batch sent after it, by another submission
QUEUES = "embed,index,retrieve,analyze,render"

SENDER = r"""
import sys
from hitline.jobs.context import get_runtime
from hitline.jobs.submit import Dispatch
from tasks.chains import send
from tasks.reconciler import broker_in_flight
from workers.app import QUEUES, app

big, small = [int(x) for x in sys.argv[1].split(",")], [int(x) for x in sys.argv[2].split(",")]
rt = get_runtime()
send(rt, [Dispatch("BIG", "sku", "embed", (j,)) for j in big])  # submission 1
send(rt, [Dispatch("SMALL", "sku", "embed", (j,)) for j in small])  # submission 2, a moment later
print(",".join(map(str, sorted(broker_in_flight(app.conf.broker_url, QUEUES)))))
"""


def _env(tmp_path: Path, broker: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HITLINE_")}
    env.update(
        HITLINE_BROKER_URL=broker,
        HITLINE_DATA_DIR=str(tmp_path / "data"),
        HITLINE_RECONCILE_EVERY_S="0",
        PYTHONPATH=os.pathsep.join([str(ROOT), str(HERE)]),
    )
    return env


def test_a_small_batch_sent_after_a_big_one_is_not_queued_behind_it(tmp_path: Path) -> None:
    server = RedisServer(tmp_path).start()
    worker = None
    try:
        env = _env(tmp_path, server.url())
        res = subprocess.run(
            [sys.executable, "-c", SENDER, ",".join(map(str, BIG)), ",".join(map(str, SMALL))],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
        )
        assert res.returncode == 0, res.stderr[-3000:]
        # every SKU's message is seen where it waits, whatever its priority level: the reconciler re-sends
        # what it does not see
        assert res.stdout.split()[-1] == ",".join(map(str, sorted(BIG + SMALL)))
        client = redis.Redis.from_url(server.url())
        level_1 = client.llen(f"embed\x06\x16{sku_priority(0)}")
        worker = Proc(
            "worker",
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "fair_worker",
                "worker",
                "-P",
                "solo",
                "-Q",
                QUEUES,
                "-l",
                "WARNING",
            ],
            tmp_path / "worker.log",
            env,
        ).start()
        renders: list[int] = []
        deadline = time.monotonic() + 60
        while len(renders) < len(BIG) + len(SMALL):
            assert time.monotonic() < deadline, f"{len(renders)} chains done after 60 s\n{worker.tail()}"
            assert worker.alive(), worker.tail()
            ran = [x.decode().split() for x in client.lrange("fairness:ran", 0, -1)]
            renders = [int(j) for name, j in ran if name == "hitline.render"]
            time.sleep(0.1)
    finally:
        if worker is not None:
            worker.stop()
        server.stop()
    last_small = max(renders.index(j) for j in SMALL)
    big_before = [j for j in renders[:last_small] if j in BIG]
    # the small batch's SKUs share the first level with the big batch's first 4 only; first come, first
    # served it would wait behind (nearly) all 40
    assert len(big_before) <= 4, (big_before, renders)
    # and the big batch itself still runs in its own order
    assert [j for j in renders if j in BIG] == BIG
    # each priority level is a list of its own (the app's priority steps): SMALL's three were at level 1
    assert level_1 == 4 + 3
