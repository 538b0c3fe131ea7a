"""Real service processes for the fault tests, each on a private port/folder and restartable:
redis-server, a PostgreSQL cluster (initdb + pg_ctl), `milvus-lite server`, the fake OpenRouter and
`hitline worker` processes. Nothing here touches the machine's shared Redis/PostgreSQL/RabbitMQ except
a private RabbitMQ vhost that is created and deleted by its owner."""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent


def stamp_id(img: Any, i: int) -> None:
    """Mark image `i` in its top-left corner with 16 black or white 8 x 8 blocks (its bits), so that every
    SKU's flat-lay differs from every other's even after the JPEG re-encode the provider is sent: the
    fake's log names a render's SKU by a hash of that JPEG. (A one-pixel-row stamp did not survive it:
    7 pairs of 2,000 soak SKUs were sent as identical JPEGs and counted as renders paid twice.)"""
    from PIL import ImageDraw

    draw = ImageDraw.Draw(img)
    for bit in range(16):
        x, y = 8 * (bit % 8), 8 * (bit // 8)
        draw.rectangle((x, y, x + 7, y + 7), fill=(255, 255, 255) if (i >> bit) & 1 else (0, 0, 0))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 30.0, what: str = "service") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"{what} did not listen on {port} within {timeout} s")


def wait_closed(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) != 0:
                return
        time.sleep(0.05)


@dataclass
class Proc:
    """A child process with its output in a log file; killable as a whole process group."""

    name: str
    argv: list[str]
    log: Path
    env: dict[str, str] | None = None
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> "Proc":
        self.log.parent.mkdir(parents=True, exist_ok=True)
        out = open(self.log, "ab")
        self.popen = subprocess.Popen(
            self.argv, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        out.close()
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill9(self) -> None:
        """SIGKILL the process group: a prefork worker's children die with it, as in an OOM kill."""
        if self.alive():
            os.killpg(self.pid, signal.SIGKILL)
            self.popen.wait(10)

    def stop(self, timeout: float = 20.0) -> None:
        if not self.alive():
            return
        try:
            os.killpg(self.pid, signal.SIGTERM)
            self.popen.wait(timeout)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            self.kill9()

    def tail(self, lines: int = 60) -> str:
        try:
            return f"--- {self.name} ({self.log}) ---\n" + "\n".join(
                self.log.read_text(errors="replace").splitlines()[-lines:]
            )
        except OSError:
            return f"--- {self.name}: no log ---"


class RedisServer:
    """`redis-server` without persistence: a restart loses every message, as a crashed broker would."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "redis"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc = Proc(
            "redis",
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
            ],
            self.dir / "redis.log",
        )

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> "RedisServer":
        self.proc.start()
        wait_port(self.port, what="redis")
        return self

    def stop(self) -> None:
        self.proc.kill9()  # a crash, not a clean shutdown: nothing is saved either way (--save "")
        wait_closed(self.port)

    def restart(self, down_s: float = 0.0) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise FileNotFoundError(f"{name} not found under /usr/lib/postgresql/*/bin")
    return found[-1]


class PgCluster:
    """A private PostgreSQL cluster (initdb + pg_ctl), so a test may restart it; the shared one never is."""

    def __init__(self) -> None:
        # its own folder under /tmp: as root, initdb runs as `postgres`, which cannot enter pytest's tmp dirs
        self.home = Path(tempfile.mkdtemp(prefix="hitline-pg-"))
        self.dir = self.home / "data"
        self.port = free_port()
        self._as = [] if os.geteuid() != 0 else ["runuser", "-u", "postgres", "--"]
        if self._as:  # initdb refuses to run as root
            shutil.chown(self.home, "postgres")
        self.env = {**os.environ}

    def _run(self, *argv: str) -> None:
        subprocess.run([*self._as, *argv], check=True, capture_output=True, env=self.env, timeout=120)

    def init(self) -> "PgCluster":
        self._run(_pg_bin("initdb"), "-D", str(self.dir), "-U", "postgres", "-A", "trust", "--no-sync")
        with open(self.dir / "postgresql.conf", "a") as f:
            f.write("fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 200\n")
        return self

    def start(self) -> "PgCluster":
        self._run(
            _pg_bin("pg_ctl"),
            "-D",
            str(self.dir),
            "-o",
            f"-p {self.port} -k {self.dir} -h 127.0.0.1",
            "-l",
            str(self.dir / "server.log"),
            "-w",
            "start",
        )
        return self

    def stop(self, mode: str = "immediate") -> None:
        self._run(_pg_bin("pg_ctl"), "-D", str(self.dir), "-m", mode, "-w", "stop")

    def restart(self, down_s: float = 0.0) -> None:
        # immediate = every connection is cut mid-transaction, like a crash
        self.stop("immediate")
        time.sleep(down_s)
        self.start()

    def remove(self) -> None:
        shutil.rmtree(self.home, ignore_errors=True)

    def url(self, db: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{db}"

    def createdb(self, name: str) -> str:
        self._run(_pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)
        return self.url(name)


class MilvusServer:
    def __init__(self, root: Path) -> None:
        self.dir = root / "milvus"
        self.port = free_port()
        self.proc = Proc(
            "milvus",
            [
                str(BIN / "milvus-lite"),
                "server",
                "--data-dir",
                str(self.dir),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            root / "logs" / "milvus.log",
        )

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "MilvusServer":
        self.proc.start()
        wait_port(self.port, 60, "milvus-lite server")
        return self

    def stop(self) -> None:
        self.proc.kill9()
        wait_closed(self.port)

    def restart(self, down_s: float = 0.0) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()


class FakeProvider:
    """The shipped fake OpenRouter as its own process, with a JSON-lines request log."""

    def __init__(self, root: Path, *args: str) -> None:
        self.port = free_port()
        self.log_path = root / "fake-requests.jsonl"
        self.proc = Proc(
            "fake-openrouter",
            [
                str(BIN / "hitline"),
                "fake-openrouter",
                "--port",
                str(self.port),
                "--log",
                str(self.log_path),
                "--no-local-renderer",
                "--max-image-side",
                "256",
                *args,
            ],
            root / "logs" / "fake.log",
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1"

    def start(self) -> "FakeProvider":
        self.proc.start()
        wait_port(self.port, 30, "fake OpenRouter")
        return self

    def configure(self, **knobs: Any) -> dict[str, Any]:
        import requests

        r = requests.post(f"http://127.0.0.1:{self.port}/_fake/config", json=knobs, timeout=10)
        r.raise_for_status()
        return r.json()

    def stats(self) -> dict[str, Any]:
        import requests

        return requests.get(f"http://127.0.0.1:{self.port}/_fake/stats", timeout=10).json()

    def records(self) -> list[dict[str, Any]]:
        if not self.log_path.exists():
            return []
        return [json.loads(line) for line in self.log_path.read_text().splitlines() if line.strip()]


class Flower:
    """`celery -A workers.app flower` behind basic auth, as docker-compose.yml runs it; its API and
    Prometheus metrics are read with the credentials."""

    def __init__(self, root: Path, env: dict[str, str], user: str = "ops", password: str = "flower-test-pass") -> None:
        self.port = free_port()
        self.auth = (user, password)
        self.proc = Proc(
            "flower",
            [
                str(BIN / "celery"),
                "-A",
                "workers.app",
                "flower",
                f"--port={self.port}",
                "--address=127.0.0.1",
                f"--basic-auth={user}:{password}",
            ],
            root / "logs" / "flower.log",
            env=env,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "Flower":
        self.proc.start()
        wait_port(self.port, 60, "flower")
        return self

    def get(self, path: str, **params: Any) -> Any:
        import requests

        r = requests.get(self.url + path, params=params, auth=self.auth, timeout=30)
        r.raise_for_status()
        return r.json() if path.startswith("/api/") else r.text

    def tasks(self, name: str | None = None) -> dict[str, dict[str, Any]]:
        """Flower's task list (each task's last state, its exception, `retries`, args), optionally one name."""
        tasks = self.get("/api/tasks")
        return {k: t for k, t in tasks.items() if name is None or t.get("name") == name}

    def metric(self, name: str, **labels: str) -> float:
        """A Prometheus metric of Flower (/metrics), summed over the samples that carry these labels:
        metric("flower_events_total", type="task-retried", task="hitline.render") counts the RETRY events
        Flower received; metric("flower_worker_online") the workers it hears from."""
        from prometheus_client.parser import text_string_to_metric_families

        return sum(
            s.value
            for family in text_string_to_metric_families(self.get("/metrics"))
            for s in family.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        )


class RabbitVhost:
    """A private vhost on the machine's RabbitMQ (guest/guest), deleted afterwards: other people's
    queues are never touched."""

    def __init__(self) -> None:
        self.name = "hitline_rel_" + uuid.uuid4().hex[:8]

    def create(self) -> "RabbitVhost":
        subprocess.run(["rabbitmqctl", "add_vhost", self.name], check=True, capture_output=True, timeout=60)
        subprocess.run(
            ["rabbitmqctl", "set_permissions", "-p", self.name, "guest", ".*", ".*", ".*"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        return self

    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:5672/{self.name}"

    def delete(self) -> None:
        subprocess.run(["rabbitmqctl", "delete_vhost", self.name], capture_output=True, timeout=60)


@dataclass
class Workers:
    """`hitline worker` processes of one test, by name."""

    env: dict[str, str]
    logs: Path
    procs: dict[str, Proc] = field(default_factory=dict)
    _n: int = 0

    def start(self, queues: str, concurrency: int = 4, pool: str = "threads", name: str | None = None) -> Proc:
        self._n += 1
        name = name or f"w{self._n}-{queues.replace(',', '-')}"
        p = Proc(
            name,
            [
                str(BIN / "hitline"),
                "worker",
                "--queues",
                queues,
                "--concurrency",
                str(concurrency),
                "--pool",
                pool,
                "--loglevel",
                "INFO",
            ],
            self.logs / f"{name}.log",
            env=self.env,
        ).start()
        self.procs[name] = p
        return p

    def stop_all(self) -> None:
        for p in self.procs.values():
            p.stop()

    def tails(self) -> str:
        return "\n".join(p.tail() for p in self.procs.values())
