"""docker-compose.yml, Dockerfile and .dockerignore, checked offline (no Docker engine needed).

`docker-compose config` (Debian's docker-compose 1.29) parses, validates and interpolates the file,
including the fail-fast `${POSTGRES_PASSWORD:?...}`.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = shutil.which("docker-compose")

needs_compose = pytest.mark.skipif(
    COMPOSE is None, reason="docker-compose not installed (apt-get install -y docker-compose) - cannot validate"
)


def _config(**env: str) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in {"POSTGRES_PASSWORD", "HITLINE_OPENROUTER_API_KEY", "FLOWER_BASIC_AUTH", "HITLINE_FLOWER_URL"}
    }
    assert COMPOSE is not None
    return subprocess.run(
        [COMPOSE, "-f", str(ROOT / "docker-compose.yml"), "config"],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def rendered() -> dict[str, Any]:
    if COMPOSE is None:
        pytest.skip("docker-compose not installed (apt-get install -y docker-compose) - cannot validate")
    yaml = pytest.importorskip("yaml", reason="PyYAML is needed to read the rendered compose config")
    result = _config(POSTGRES_PASSWORD="s3cret", FLOWER_BASIC_AUTH="ops:fl0wer")
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = yaml.safe_load(result.stdout)
    return config


@needs_compose
def test_missing_postgres_password_fails_with_the_message() -> None:
    result = _config(FLOWER_BASIC_AUTH="ops:fl0wer")
    assert result.returncode != 0
    assert "set POSTGRES_PASSWORD" in result.stderr


@needs_compose
def test_missing_flower_credentials_fail_with_the_message() -> None:
    result = _config(POSTGRES_PASSWORD="s3cret")
    assert result.returncode != 0
    assert "set FLOWER_BASIC_AUTH" in result.stderr


def _consumed(services: dict[str, Any]) -> dict[str, str]:
    """queue -> the compose service whose `hitline worker --queues` reads it."""
    out = {}
    for name, svc in services.items():
        command = svc.get("command") or []
        if command[:2] == ["hitline", "worker"] and "--queues" in command:
            out.update({q: name for q in command[command.index("--queues") + 1].split(",")})
    return out


def test_every_queue_of_the_app_has_a_worker_in_compose(rendered: dict[str, Any]) -> None:
    """A queue added to the stage registry (or a task routed to a new queue) without a worker service
    would hold its messages forever: the app's queues are read from the app, not listed here."""
    from workers.app import app

    queues = {q.name for q in app.conf.task_queues}
    missing = queues - set(_consumed(rendered["services"]))
    assert not missing, f"no worker service in docker-compose.yml reads {sorted(missing)}"


def test_worker_per_queue_with_its_own_queue(rendered: dict[str, Any]) -> None:
    from hitline.jobs.stages import QUEUES

    services = rendered["services"]
    for queue in QUEUES:
        worker = services[f"worker-{queue}"]
        queues = f"{queue},celery" if queue == "embed" else queue  # + the Celery contract's queue
        assert worker["command"] == ["hitline", "worker", "--queues", queues]
        assert worker["image"].startswith("hitline:") and "build" in worker
        assert {"redis", "postgres", "milvus"} <= set(worker["depends_on"])
        assert all(dep["condition"] == "service_healthy" for dep in worker["depends_on"].values())
        assert "/data" in " ".join(worker["volumes"])
    for slow in ("analyze", "render"):
        assert int(services[f"worker-{slow}"]["environment"]["HITLINE_WORKER_CONCURRENCY"]) <= 2


def test_shared_environment_is_interpolated(rendered: dict[str, Any]) -> None:
    env = rendered["services"]["worker-render"]["environment"]
    assert env["HITLINE_BROKER_URL"] == "redis://redis:6379/0"
    assert env["HITLINE_REDIS_URL"] == "redis://redis:6379/1"
    assert env["HITLINE_DATABASE_URL"] == "postgresql+psycopg://hitline:s3cret@postgres:5432/hitline"
    assert env["HITLINE_MILVUS_URI"] == "http://milvus:19530"
    assert env["HITLINE_DATA_DIR"] == "/data"
    assert env["HITLINE_OPENROUTER_API_KEY"] == ""  # optional: empty = local provider
    assert rendered["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"] == "s3cret"


def test_flower_on_5555_with_broker_from_env(rendered: dict[str, Any]) -> None:
    flower = rendered["services"]["flower"]
    command = " ".join(flower["command"])
    assert "celery -A workers.app" in command and " flower" in command and "--port=5555" in command
    # $$ survives rendering: the container's shell, not compose, reads the broker URL
    assert '--broker="$$HITLINE_BROKER_URL"' in command
    assert any("5555:5555" in str(port) for port in flower["ports"])
    assert "healthcheck" in flower


def test_backing_services_have_healthchecks(rendered: dict[str, Any]) -> None:
    services = rendered["services"]
    expect = {
        "redis": "redis-cli ping",
        "postgres": "pg_isready",
        "milvus": "9091/healthz",
        "etcd": "etcdctl endpoint health",
        "minio": "/minio/health/live",
    }
    for name, probe in expect.items():
        assert probe in " ".join(services[name]["healthcheck"]["test"]), name
    assert services["redis"]["image"] == "redis:7"
    assert services["postgres"]["image"] == "postgres:16"
    assert re.fullmatch(r"milvusdb/milvus:v2\.5\.\d+", services["milvus"]["image"])
    assert services["milvus"]["environment"] == {"ETCD_ENDPOINTS": "etcd:2379", "MINIO_ADDRESS": "minio:9000"}
    assert {"etcd", "minio"} == set(services["milvus"]["depends_on"])


def test_dockerfile_installs_the_package_as_non_root() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    assert re.search(r"pip install \.(\s|$)", text)
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1] not in {"root", "0"}


def test_dockerignore_keeps_sources_and_drops_the_rest() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def ignored(path: str) -> bool:
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        return any(
            fnmatch.fnmatch(p, pat.removeprefix("**/")) or fnmatch.fnmatch(parts[-1], pat.removeprefix("**/"))
            for pat in patterns
            for p in prefixes
        )

    for needed in (
        "pyproject.toml",
        "hitline/config.py",
        "hitline/data/limits.toml",
        "workers/app.py",
        "tasks/__init__.py",
        "db/__init__.py",
    ):
        assert not ignored(needed), needed
    for dropped in (
        ".git/config",
        ".venv/bin/python",
        ".env",
        "tests/test_compose.py",
        "hitline/__pycache__/x.pyc",
        "hitline-data/jobs.sqlite",
    ):
        assert ignored(dropped), dropped


def test_api_service_serves_the_dashboard_on_8000(rendered: dict[str, Any]) -> None:
    api = rendered["services"]["api"]
    assert api["command"] == ["hitline", "serve", "--host", "0.0.0.0", "--port", "8000"]
    assert api["image"].startswith("hitline:") and "build" in api
    assert any(
        "127.0.0.1:8000:8000" in str(port)
        or (port.get("published") in (8000, "8000") and port.get("host_ip") == "127.0.0.1")
        for port in api["ports"]
    )
    assert "/healthz" in " ".join(api["healthcheck"]["test"])
    assert api["environment"]["HITLINE_DATABASE_URL"] == "postgresql+psycopg://hitline:s3cret@postgres:5432/hitline"
    assert api["environment"]["HITLINE_FLOWER_URL"] == "http://127.0.0.1:5555"
    assert all(dep["condition"] == "service_healthy" for dep in api["depends_on"].values())


def test_flower_is_behind_basic_auth(rendered: dict[str, Any]) -> None:
    flower = rendered["services"]["flower"]
    assert flower["environment"]["FLOWER_BASIC_AUTH"] == "ops:fl0wer"
    assert "FLOWER_UNAUTHENTICATED_API" not in flower["environment"]
    assert "/healthcheck" in " ".join(flower["healthcheck"]["test"])  # open: the probe needs no password
