"""Every registered stage's message lands on its own queue in a real broker; an unrouted task is an error
at start-up, not a silent fallback to some queue."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from celery import Celery

from hitline.config import Settings
from hitline.jobs.stages import QUEUES, STAGES
from workers.app import CONTRACT_QUEUE, CONTRACT_TASKS, ROUTES, UnroutedTask, check_routes, make_app


@pytest.fixture
def private_redis(tmp_path: Path):  # noqa: ANN201
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            shutil.which("redis-server") or "redis-server",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import redis

    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0", client
    proc.terminate()
    proc.wait(10)


def _queued(client, queue: str) -> dict[int, list[str]]:  # noqa: ANN001
    """Task names per priority in a Redis queue (kombu keeps priority p > 0 in the list "<queue>\x06\x16<p>")."""
    return {
        p: [json.loads(raw)["headers"]["task"] for raw in client.lrange(q, 0, -1)]
        for p, q in ((p, queue if p == 0 else f"{queue}\x06\x16{p}") for p in (0, 3, 6, 9))
        if client.llen(q)
    }


def test_every_stage_message_lands_on_its_own_queue_at_its_priority(private_redis) -> None:  # noqa: ANN001
    url, client = private_redis
    app = make_app(Settings(broker_url=url))
    app.loader.import_default_modules()
    for st in STAGES:
        args = [7] if st.kind == "sku" else ["b", [1, 2]]
        app.send_task(st.task_name, args=args)
    seen = {q: _queued(client, q) for q in QUEUES}
    expected: dict[str, dict[int, list[str]]] = {}
    for st in STAGES:
        expected.setdefault(st.queue, {}).setdefault(0 if st.kind == "hit" else 3, []).append(st.task_name)
    assert seen == expected
    assert all(st.queue == st.name for st in STAGES)  # each stage on the queue of its name


def test_catalog_work_is_served_before_the_skus_already_queued(private_redis) -> None:  # noqa: ANN001
    """Thousands of SKU embeds wait in `embed` when a catalog chunk is sent again (a retry goes to the back
    of its queue): the catalog message is still the next one a worker takes, else every SKU's index stage
    waits for the whole batch's embeds (the 2,000-SKU soak stalled 6 minutes so)."""
    url, _ = private_redis
    app = make_app(Settings(broker_url=url))
    app.loader.import_default_modules()
    for job in range(50):
        app.send_task("hitline.embed", args=[job])
    app.send_task("hitline.embed_hits", args=["b", [1, 2]])
    with app.connection_for_read() as conn:
        queue = conn.SimpleQueue(app.amqp.queues["embed"], no_ack=True)
        order = [queue.get(timeout=2).headers["task"] for _ in range(51)]
    assert order[0] == "hitline.embed_hits"
    assert order[1:] == ["hitline.embed"] * 50


def test_an_unrouted_task_is_an_error_at_start_up() -> None:
    app = Celery("t", broker="memory://")
    app.conf.task_routes = dict(ROUTES)

    @app.task(name="hitline.sneaky")
    def sneaky() -> None:  # pragma: no cover - never runs
        pass

    with pytest.raises(UnroutedTask, match="hitline.sneaky"):
        check_routes(app)


def test_sending_to_an_undeclared_queue_fails_instead_of_creating_it() -> None:
    app = make_app(Settings(broker_url="memory://"))
    assert app.conf.task_create_missing_queues is False
    # the line's queues, and Celery's default queue for the contract tasks other services send by name
    assert {r["queue"] for r in ROUTES.values()} <= {*QUEUES, CONTRACT_QUEUE}
    # and webhook deliveries (tasks/webhooks.py), which every default worker must send
    assert {n for n, r in ROUTES.items() if r["queue"] == CONTRACT_QUEUE} == {
        *CONTRACT_TASKS,
        "hitline.deliver_webhook",
    }
    assert {q.name for q in app.conf.task_queues} == {*QUEUES, CONTRACT_QUEUE}


def test_a_channel_closed_after_the_broker_was_lost_fails_as_a_connection_error(private_redis) -> None:  # noqa: ANN001
    """Celery's consumer, on losing Redis, detaches the transport and then closes its channels; restoring
    a channel's unacked messages then raised AttributeError and the worker exited ("Unrecoverable
    error", bench/soak.py). It must be a connection error, which the close ignores, so the consumer
    reconnects (workers.app.survive_redis_restarts)."""
    from kombu import Connection

    url, _ = private_redis
    conn = Connection(url)
    channel = conn.channel()
    errors = conn.connection_errors
    channel.connection.client = None  # what Connection.collect() leaves behind (kombu _do_close_transport)
    channel._pool = None  # the broken pool was dropped with the connection
    with pytest.raises(errors):
        channel.qos.restore_unacked()
    conn.maybe_close_channel(channel)  # and the close that the consumer runs goes through


def test_a_worker_child_runs_numpy_on_one_blas_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each prefork child is one core's worth of work: OpenBLAS threads inside it spin on the other
    children's cores (bench/README.md, issue 13 item 10, fourth pass)."""
    import numpy as np  # noqa: F401 - loads OpenBLAS
    from threadpoolctl import threadpool_info, threadpool_limits

    import workers.app as wa

    monkeypatch.setattr(wa, "install_limiter", lambda: None)
    before = threadpool_info()
    assert any(p["internal_api"] == "openblas" for p in before), "numpy without OpenBLAS: nothing to check"
    try:
        threadpool_limits(limits=2)  # as a fresh child on these 2 cores starts
        wa._child_starts()
        assert {p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"} == {1}
    finally:
        for p in before:
            threadpool_limits(limits=p["num_threads"], user_api=p["user_api"])
