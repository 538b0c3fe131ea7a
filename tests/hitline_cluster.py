"""One real deployment for the API, browser and Celery-contract tests, started once per session:
PostgreSQL (own database), Redis (own db number), a milvus-lite server, the fake OpenRouter (the only
fake), one `hitline worker` process on every queue and a `hitline serve` uvicorn process."""

from __future__ import annotations

import csv
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import requests

BIN = Path(sys.executable).parent
# one cluster per pytest-xdist worker (the tests that use it sit in several files): its own Redis db
# (11, 10, 9 ...) and its own database
_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
_API_REDIS = os.environ.get("HITLINE_TEST_API_REDIS_URL", "redis://127.0.0.1:6379/11")
REDIS = _API_REDIS.rsplit("/", 1)[0] + "/" + str(int(_API_REDIS.rsplit("/", 1)[1]) - _WORKER)
PG = os.environ.get("HITLINE_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
# named after the Redis port too: checkouts sharing one PostgreSQL (each with its own Redis) do not drop
# each other's cluster database
DB_NAME = f"hitline_api_test_{REDIS.rsplit(':', 1)[-1].split('/')[0]}_{_WORKER}"
FAKE_KEY = "sk-or-v1-api-tests-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def services_reachable() -> str | None:
    import redis
    import sqlalchemy

    try:
        redis.Redis.from_url(REDIS, socket_timeout=2).ping()
        sqlalchemy.create_engine(PG).connect().close()
    except Exception as e:  # noqa: BLE001
        return f"Redis/PostgreSQL not reachable ({e}); .ci/run starts them"
    return None


def subset(new: Path, dest: Path, n: int, *, corrupt: int | None = None) -> Path:
    """A new-products folder with the first n rows of `new` (and row `corrupt` pointing at a broken file)."""
    rows = list(csv.DictReader((new / "new_products.csv").open()))[:n]
    dest.mkdir(parents=True)
    for i, row in enumerate(rows):
        target = dest / row["image_path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        if i == corrupt:
            target.write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
        else:
            shutil.copy(new / row["image_path"], target)
    with (dest / "new_products.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return dest


@dataclass
class Cluster:
    url: str
    token: str
    env: dict[str, str]
    fake: Any  # hitline.fake.server.FakeServer
    catalog: Path
    new: Path
    tmp: Path
    flower_url: str
    db_url: str
    logs: Path
    procs: list[subprocess.Popen] = field(default_factory=list)  # type: ignore[type-arg]

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def get(self, path: str, **kw: Any) -> requests.Response:
        return requests.get(self.url + path, headers=self.auth, timeout=30, **kw)

    def post(self, path: str, **kw: Any) -> requests.Response:
        return requests.post(self.url + path, headers={**self.auth, **kw.pop("headers", {})}, timeout=120, **kw)

    def wait_batch(
        self, batch_id: str, until: Callable[[dict[str, Any]], bool] | None = None, timeout: float = 150.0
    ) -> dict[str, Any]:
        """Poll GET /batches/{id} until `until` holds (default: nothing open any more)."""
        until = until or (lambda b: b["progress"]["open"] == 0)
        deadline = time.monotonic() + timeout
        while True:
            b = self.get(f"/batches/{batch_id}").json()
            if until(b):
                return b
            if time.monotonic() > deadline:
                raise AssertionError(f"batch {batch_id} did not get there in {timeout:.0f} s: {b}\n{self.log_tail()}")
            time.sleep(0.3)

    def log_tail(self) -> str:
        return "\n".join(f"--- {p.name}\n" + p.read_text()[-3000:] for p in sorted(self.logs.iterdir()))


def start(tmp: Path, catalog: Path, new: Path, *, shared_dirs: str = "[]") -> Cluster:
    import redis
    import sqlalchemy

    from hitline.fake.server import FakeConfig, running_fake

    # our own Redis db and PostgreSQL database: a clean slate, nothing shared is touched
    redis.Redis.from_url(REDIS).flushdb()
    admin = sqlalchemy.create_engine(PG, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sqlalchemy.text(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)"))
        c.execute(sqlalchemy.text(f"CREATE DATABASE {DB_NAME}"))
    admin.dispose()
    db_url = PG.rsplit("/", 1)[0] + "/" + DB_NAME
    logs = tmp / "logs"
    logs.mkdir()
    fake_cm = running_fake(
        FakeConfig(api_key=FAKE_KEY, require_key=True, max_image_side=512, latency={"image": (0.2, 0.3)})
    )
    fake = fake_cm.__enter__()
    milvus_port, api_port, flower_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HITLINE_") or k.startswith("HITLINE_TEST_")}
    env.update(
        HITLINE_BROKER_URL=REDIS,
        HITLINE_DATABASE_URL=db_url,
        HITLINE_MILVUS_URI=f"http://127.0.0.1:{milvus_port}",
        HITLINE_DATA_DIR=str(tmp / "data"),
        HITLINE_PROVIDER="openrouter",
        HITLINE_OPENROUTER_API_KEY=FAKE_KEY,
        HITLINE_OPENROUTER_BASE_URL=fake.base_url,
        HITLINE_WORKER_CONCURRENCY="2",
        HITLINE_QUALITY_GATE="0",  # the gate has its own tests (tests/jobs/test_quality_gate.py)
        HITLINE_PRESETS='["thumbnail"]',
        HITLINE_API_OUT_DIR=str(tmp / "out"),
        HITLINE_API_MAX_UPLOAD_BYTES="5000000",
        HITLINE_FLOWER_URL=f"http://127.0.0.1:{flower_port}",
        HITLINE_COLLECTION="hits_api_tests",
        # the folders the tests name over HTTP and the Celery contract (unset: uploads only)
        HITLINE_API_SHARED_DIRS=shared_dirs,
        # webhooks: fast backoff for tests/api/test_webhooks.py's flaky receiver (seconds, not minutes)
        HITLINE_WEBHOOK_KEY="api-tests-webhook-key",
        HITLINE_WEBHOOK_BACKOFF_S="0.3",
        HITLINE_WEBHOOK_BACKOFF_MAX_S="1.5",
        HITLINE_WEBHOOK_ATTEMPTS="40",
        HITLINE_WEBHOOK_LEASE_S="5",
        HITLINE_WEBHOOK_TIMEOUT_S="2",
    )
    cluster = Cluster(
        url=f"http://127.0.0.1:{api_port}",
        token="",
        env=env,
        fake=fake,
        catalog=catalog,
        new=new,
        tmp=tmp,
        flower_url=env["HITLINE_FLOWER_URL"],
        db_url=db_url,
        logs=logs,
    )
    cluster._fake_cm = fake_cm  # type: ignore[attr-defined]

    def spawn(name: str, argv: list[str], extra: dict[str, str] | None = None) -> None:
        cluster.procs.append(
            subprocess.Popen(
                argv,
                env={**env, **(extra or {})},
                stdout=open(logs / f"{name}.log", "w"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )

    spawn(
        "milvus",
        [
            str(BIN / "milvus-lite"),
            "server",
            "--data-dir",
            str(tmp / "milvus"),
            "--host",
            "127.0.0.1",
            "--port",
            str(milvus_port),
        ],
    )
    _wait_port(milvus_port)
    token = subprocess.run(
        [str(BIN / "hitline"), "token", "create", "api-tests"], env=env, capture_output=True, text=True, timeout=120
    )
    assert token.returncode == 0, token.stdout + token.stderr
    cluster.token = token.stdout.strip()
    spawn("worker", [str(BIN / "hitline"), "worker", "--loglevel", "WARNING"])
    spawn("serve", [str(BIN / "hitline"), "serve", "--port", str(api_port)])
    # Flower behind basic auth, as in docker-compose.yml: its API works with the credentials only
    spawn(
        "flower",
        [
            str(BIN / "celery"),
            "-A",
            "workers.app",
            "flower",
            f"--port={flower_port}",
            "--address=127.0.0.1",
            "--basic-auth=ops:flower-pass",
        ],
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get(cluster.url + "/healthz", timeout=2).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline or any(p.poll() is not None for p in cluster.procs):
            stop(cluster)
            raise RuntimeError("hitline serve did not come up\n" + cluster.log_tail())
        time.sleep(0.2)
    return cluster


def _wait_port(port: int) -> None:
    for _ in range(100):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)


def stop(cluster: Cluster) -> None:
    import sqlalchemy

    for p in cluster.procs:
        try:
            os.killpg(p.pid, 15)
        except ProcessLookupError:
            pass
    for p in cluster.procs:
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, 9)
    cluster._fake_cm.__exit__(None, None, None)  # type: ignore[attr-defined]
    admin = sqlalchemy.create_engine(PG, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sqlalchemy.text(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)"))
    admin.dispose()
