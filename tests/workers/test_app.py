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
from workers.app import ROUTES, UnroutedTask, check_routes, make_app


@pytest.fixture
def private_redis(tmp_path: Path):  # noqa: ANN201
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port", str(port), "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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


def test_every_stage_message_lands_on_its_own_queue(private_redis) -> None:  # noqa: ANN001
    url, client = private_redis
    app = make_app(Settings(broker_url=url))
    app.loader.import_default_modules()
    for st in STAGES:
        args = [7] if st.kind == "sku" else ["b", [1, 2]]
        app.send_task(st.task_name, args=args)
    seen: dict[str, list[str]] = {}
    for q in QUEUES:
        for raw in client.lrange(q, 0, -1):
            seen.setdefault(q, []).append(json.loads(raw)["headers"]["task"])
    expected: dict[str, list[str]] = {}
    for st in STAGES:
        expected.setdefault(st.queue, []).append(st.task_name)
    assert {q: sorted(v) for q, v in seen.items()} == {q: sorted(v) for q, v in expected.items()}
    assert set(QUEUES) == {"embed", "index", "retrieve", "analyze", "render"}
    assert all(st.queue == st.name for st in STAGES)  # each stage on the queue of its name


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
    assert {r["queue"] for r in ROUTES.values()} <= set(QUEUES)
