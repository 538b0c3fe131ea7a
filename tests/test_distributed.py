"""Distributed mode for real: Redis broker, PostgreSQL job table, a Milvus Lite gRPC server and two
separate `hitline worker` processes consuming different queues."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest

pytestmark = [pytest.mark.distributed, pytest.mark.slow, pytest.mark.timeout(600)]

REDIS = os.environ.get("HITLINE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
PG = os.environ.get("HITLINE_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _services_or_skip() -> None:
    import redis
    import sqlalchemy

    try:
        redis.Redis.from_url(REDIS, socket_timeout=2).ping()
        sqlalchemy.create_engine(PG).connect().close()
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"Redis/PostgreSQL not reachable ({e}); .ci/run starts them")


@pytest.fixture
def cluster(tmp_path: Path, demo_data: tuple[Path, Path]):
    with _cluster(tmp_path, {}) as env:
        yield env, tmp_path, demo_data


@contextmanager
def _cluster(
    tmp_path: Path,
    extra_env: dict[str, str],
    workers: tuple[tuple[str, ...], ...] = (("embed,index,retrieve",), ("analyze,render",)),
):
    _services_or_skip()
    import redis
    import sqlalchemy

    redis.Redis.from_url(REDIS).flushdb()
    dbname = "hitline_" + uuid.uuid4().hex[:8]
    admin = sqlalchemy.create_engine(PG, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sqlalchemy.text(f"CREATE DATABASE {dbname}"))
    db_url = PG.rsplit("/", 1)[0] + "/" + dbname
    port = _free_port()
    procs = [
        subprocess.Popen(
            [
                str(BIN / "milvus-lite"),
                "server",
                "--data-dir",
                str(tmp_path / "milvus"),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HITLINE_", "_RENDER"))}
    env.update(
        {
            "HITLINE_BROKER_URL": REDIS,
            "HITLINE_DATABASE_URL": db_url,
            "HITLINE_MILVUS_URI": f"http://127.0.0.1:{port}",
            "HITLINE_DATA_DIR": str(tmp_path / "data"),
            "HITLINE_PROVIDER": "local",
            "HITLINE_WORKER_CONCURRENCY": "2",
            "HITLINE_QUALITY_GATE": "0",  # the gate is tested in tests/test_quality_gate.py
            **extra_env,
        }
    )
    for _ in range(100):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.1)
    logs = tmp_path / "logs"
    logs.mkdir()
    flower_port = _free_port()
    env["HITLINE_TEST_FLOWER_PORT"] = str(flower_port)
    procs.append(
        subprocess.Popen(
            [str(BIN / "celery"), "-A", "workers.app", "flower", f"--port={flower_port}", "--address=127.0.0.1"],
            env={**env, "FLOWER_UNAUTHENTICATED_API": "true"},
            stdout=open(logs / "flower.log", "w"),
            stderr=subprocess.STDOUT,
        )
    )
    for n, (queues, *flags) in enumerate(workers):
        procs.append(
            subprocess.Popen(
                [str(BIN / "hitline"), "worker", "--queues", queues, "--loglevel", "WARNING", *flags],
                env=env,
                stdout=open(logs / f"{n}-{queues}.log", "w"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
    env["_RENDER_WORKER_PID"] = str(procs[-1].pid)
    try:
        yield env
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        with admin.connect() as c:
            c.execute(sqlalchemy.text(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)"))


def _with_a_truncated_flatlay(new: Path, dest: Path) -> Path:
    """The demo's new products plus one whose JPEG is cut in half: its header passes the submission
    check, its decode fails in the embed stage."""
    import shutil

    shutil.copytree(new, dest)
    lines = (dest / "new_products.csv").read_text().strip().splitlines()
    first = lines[1].split(",")
    src = dest / first[1]
    data = src.read_bytes()
    (src.parent / "cut.jpg").write_bytes(data[: len(data) // 2])
    first[0], first[1] = "BROKEN", str(Path(first[1]).parent / "cut.jpg")
    (dest / "new_products.csv").write_text("\n".join(lines + [",".join(first)]) + "\n")
    return dest


def test_batch_runs_on_separate_worker_processes(cluster) -> None:  # noqa: ANN001
    env, tmp, (catalog, new) = cluster
    out = tmp / "out"
    good = new
    new = _with_a_truncated_flatlay(good, tmp / "new")
    res = subprocess.run(
        [
            str(BIN / "hitline"),
            "run",
            "--catalog",
            str(catalog),
            "--new",
            str(new),
            "--out",
            str(out),
            "--presets",
            "amazon_main,thumbnail,banner",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stdout + res.stderr + "".join(p.read_text() for p in (tmp / "logs").iterdir())
    batch = re.search(r"batch (\S+):", res.stdout).group(1)
    assert "queued on redis://127.0.0.1" in res.stdout
    status = subprocess.run(
        [str(BIN / "hitline"), "status", batch, "--kind", "sku", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert status.returncode == 0, status.stdout + status.stderr
    n_new = len((good / "new_products.csv").read_text().strip().splitlines()) - 1
    rows = {r["id"]: r for r in json.loads(status.stdout)["jobs"]}
    broken = rows.pop("BROKEN")
    assert broken["state"] == "failed" and "corrupt or truncated" in broken["reason"], broken
    assert len(rows) == n_new and [r["state"] for r in rows.values()] == ["done"] * n_new, rows
    assert all(len(r["outputs"]) == 3 for r in rows.values())
    assert (out / batch / "report.html").exists()
    assert len(list((out / batch).rglob("banner-*.png"))) == n_new
    # Flower, on the same broker, saw both workers and the tasks of every queue
    import requests

    base = f"http://127.0.0.1:{env['HITLINE_TEST_FLOWER_PORT']}"
    tasks = {}
    for _ in range(30):
        tasks = requests.get(f"{base}/api/tasks", timeout=10).json()
        if sum(t["name"] == "hitline.render" and t["state"] == "SUCCESS" for t in tasks.values()) >= n_new:
            break
        time.sleep(1)
    names = {t["name"] for t in tasks.values()}
    # Flower tells the job table's story: the failed SKU's task ended as FAILURE with the reason, and no
    # task of the line is left STARTED once its job has ended
    failures = [t for t in tasks.values() if t["state"] == "FAILURE"]
    assert [t["name"] for t in failures] == ["hitline.embed"], failures
    assert "corrupt or truncated" in (failures[0].get("exception") or ""), failures[0]
    assert not [t for t in tasks.values() if t["name"].startswith("hitline.") and t["state"] == "STARTED"]
    assert {
        "hitline.embed_hits",
        "hitline.index_hits",
        "hitline.embed",
        "hitline.index",
        "hitline.retrieve",
        "hitline.analyze",
        "hitline.render",
    } <= names, names
    workers = requests.get(f"{base}/api/workers?refresh=1", timeout=30).json()
    assert len(workers) == 2, list(workers)


def test_global_rate_limit_holds_across_worker_processes(tmp_path: Path, demo_data: tuple[Path, Path]) -> None:
    """Two render worker processes (4 threads each) want far more than the limit; they share one Redis
    limiter, so the fake provider, which enforces the same limit, sees no 429 and never more than 4 renders
    in any 2 s. With one limiter per process they would together send up to 8 per 2 s (this test then fails)."""
    from hitline.fake.server import FakeConfig, running_fake

    render_model = "google/gemini-3.1-flash-image-preview"
    limits = tmp_path / "limits.toml"
    limits.write_text(f'''[default]
rpm = 1000
max_in_flight = 8
window_s = 2.0

["{render_model}"]
rpm = 4
max_in_flight = 8
window_s = 2.0
''')
    key = "sk-or-v1-distributed-secret"
    with running_fake(
        FakeConfig(
            rpm={render_model: 4},
            rpm_window_s=2.0,
            retry_after_s=1.0,
            api_key=key,
            require_key=True,
            max_image_side=256,
        )
    ) as fake:
        extra = {
            "HITLINE_OPENROUTER_API_KEY": key,
            "HITLINE_OPENROUTER_BASE_URL": fake.base_url,
            "HITLINE_LIMITS_FILE": str(limits),
            "HITLINE_PROVIDER": "openrouter",
        }
        render = ("render", "--pool", "threads", "--concurrency", "4")
        with _cluster(tmp_path, extra, (("embed,index,retrieve,analyze",), render, render)) as env:
            catalog, new = demo_data
            out = tmp_path / "out"
            res = subprocess.run(
                [
                    str(BIN / "hitline"),
                    "run",
                    "--catalog",
                    str(catalog),
                    "--new",
                    str(new),
                    "--out",
                    str(out),
                    "--presets",
                    "thumbnail,banner",
                ],
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
            )
            logs = "".join(p.read_text() for p in (tmp_path / "logs").iterdir())
            assert res.returncode == 0, res.stdout + res.stderr + logs
            stats = fake.stats()
            import requests

            # Flower shows every task's arguments: ids only, never the key
            flower = requests.get(f"http://127.0.0.1:{env['HITLINE_TEST_FLOWER_PORT']}/api/tasks", timeout=10).json()
            renders_seen = [t for t in flower.values() if t["name"] == "hitline.render"]
            ids_only = [(t.get("args"), t.get("kwargs")) for t in renders_seen]
            assert ids_only and all(
                re.fullmatch(r"[(\[]\d+,?[)\]]", a or "") and re.fullmatch(r"\{('provider_retries': \d+)?\}", k or "{}")
                for a, k in ids_only
            ), ids_only[:5]
            assert key not in json.dumps(flower)
    n_new = len((new / "new_products.csv").read_text().strip().splitlines()) - 1
    renders = [r["t"] for r in stats["recent"] if r["model"] == render_model]
    assert len(renders) == stats["requests"]["chat/completions"][render_model] == 2 * n_new
    assert stats["statuses"].get("429", 0) == 0, stats["statuses"]
    # the rate the provider saw: never more than 4 arrivals in any 2 s (small slack for network jitter)
    renders.sort()
    busiest = max(sum(1 for u in renders if t <= u < t + 2.0 * 0.98) for t in renders)
    assert busiest <= 4, busiest
    assert key not in res.stdout + res.stderr + logs


def test_killed_render_worker_loses_nothing_and_resume_finishes(tmp_path: Path, demo_data: tuple[Path, Path]) -> None:
    """SIGKILL the render worker mid-render: its message stays unacked in Redis and its job 'running' in
    the table. `hitline resume --stale-after 0` finds it from the table; a fresh worker finishes the
    batch, and every image is stored once."""
    import signal

    import sqlalchemy

    from hitline.fake.server import FakeConfig, running_fake

    key = "sk-or-v1-crash-secret"
    with running_fake(
        FakeConfig(api_key=key, require_key=True, max_image_side=512, latency={"image": (1.5, 2.0)})
    ) as fake:
        extra = {"HITLINE_OPENROUTER_API_KEY": key, "HITLINE_OPENROUTER_BASE_URL": fake.base_url}
        with _cluster(tmp_path, extra) as env:
            catalog, new = demo_data
            out = tmp_path / "out"
            res = subprocess.run(
                [
                    str(BIN / "hitline"),
                    "run",
                    "--catalog",
                    str(catalog),
                    "--new",
                    str(new),
                    "--out",
                    str(out),
                    "--provider",
                    "openrouter",
                    "--presets",
                    "thumbnail,banner",
                    "--no-wait",
                ],
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert res.returncode == 0, res.stdout + res.stderr
            batch = re.search(r"batch (\S+):", res.stdout).group(1)
            engine = sqlalchemy.create_engine(env["HITLINE_DATABASE_URL"])

            def states() -> list[tuple[str, str]]:
                with engine.connect() as c:
                    return [
                        tuple(r)
                        for r in c.execute(
                            sqlalchemy.text("SELECT stage, state FROM job WHERE batch_id = :b AND kind = 'sku'"),
                            {"b": batch},
                        )
                    ]

            deadline = time.monotonic() + 240
            while ("render", "running") not in states():
                assert time.monotonic() < deadline, states()
                time.sleep(0.2)
            render_worker = env["_RENDER_WORKER_PID"]
            os.killpg(int(render_worker), signal.SIGKILL)
            time.sleep(1.0)
            assert ("render", "running") in states()  # the dead worker's claim is still in the table
            procs_env = {**env}
            fresh = subprocess.Popen(
                [str(BIN / "hitline"), "worker", "--queues", "analyze,render", "--loglevel", "WARNING"],
                env=procs_env,
                start_new_session=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                res = subprocess.run(
                    [str(BIN / "hitline"), "resume", batch, "--stale-after", "0"],
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=600,
                )
                assert res.returncode == 0, res.stdout + res.stderr
                assert all(st == ("done", "done") for st in states()), states()
                with engine.connect() as c:
                    charged = c.execute(
                        sqlalchemy.text(
                            "SELECT count(*), sum(CASE WHEN state = 'charged' THEN 1 ELSE 0 END) FROM charge "
                            "WHERE batch_id = :b AND stage = 'render'"
                        ),
                        {"b": batch},
                    ).one()
                renders = fake.stats()["requests"]["chat/completions"]["google/gemini-3.1-flash-image-preview"]
                engine.dispose()
            finally:
                os.killpg(fresh.pid, signal.SIGTERM)
                fresh.wait(30)
    n_new = len((new / "new_products.csv").read_text().strip().splitlines()) - 1
    assert charged[0] == charged[1] == 2 * n_new  # one settled charge per image, no dangling reservation
    # the only repeated requests are the ones in flight when the worker died (2 prefork children)
    assert 2 * n_new <= renders <= 2 * n_new + 2
    pngs = list((out / batch).rglob("thumbnail-*.png")) + list((out / batch).rglob("banner-*.png"))
    assert len(pngs) == 2 * n_new


def test_identical_skus_on_the_cluster_are_rendered_and_paid_once(tmp_path: Path, demo_data: tuple[Path, Path]) -> None:
    """Money on real services: four SKUs with the same flat-lay and text, two worker processes, PostgreSQL,
    the fake over HTTP. The fake serves one render per preset; the charge table holds exactly those."""
    import shutil

    import sqlalchemy

    from hitline.fake.server import FakeConfig, running_fake

    catalog, new = demo_data
    twins = tmp_path / "twins"
    shutil.copytree(new, twins)
    lines = (twins / "new_products.csv").read_text().strip().splitlines()
    row = lines[1].split(",", 1)[1]
    (twins / "new_products.csv").write_text("\n".join([lines[0]] + [f"TWIN{i},{row}" for i in range(4)]) + "\n")
    key = "sk-or-v1-twins-secret"
    render_model = "google/gemini-3.1-flash-image-preview"
    with running_fake(FakeConfig(api_key=key, require_key=True, max_image_side=256)) as fake:
        extra = {
            "HITLINE_OPENROUTER_API_KEY": key,
            "HITLINE_OPENROUTER_BASE_URL": fake.base_url,
            "HITLINE_PROVIDER": "openrouter",
        }
        with _cluster(tmp_path, extra) as env:
            res = subprocess.run(
                [
                    str(BIN / "hitline"),
                    "run",
                    "--catalog",
                    str(catalog),
                    "--new",
                    str(twins),
                    "--out",
                    str(tmp_path / "out"),
                    "--presets",
                    "thumbnail,banner",
                    "--no-wait",
                ],
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
            )
            logs = "".join(p.read_text() for p in (tmp_path / "logs").iterdir())
            assert res.returncode == 0, res.stdout + res.stderr + logs
            batch = re.search(r"batch (\S+):", res.stdout).group(1)
            # resume while the batch is live: every job has a message in flight, so nothing is sent twice
            again = subprocess.run(
                [str(BIN / "hitline"), "resume", batch, "--no-wait"],
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert again.returncode == 0 and "re-enqueued 0 chains" in again.stdout, again.stdout + again.stderr
            engine = sqlalchemy.create_engine(env["HITLINE_DATABASE_URL"])
            deadline = time.monotonic() + 300
            while True:
                with engine.connect() as c:
                    open_jobs = c.execute(
                        sqlalchemy.text(
                            "SELECT count(*) FROM job WHERE batch_id = :b AND state IN ('pending', 'running', "
                            "'retrying')"
                        ),
                        {"b": batch},
                    ).scalar()
                if not open_jobs:
                    break
                assert time.monotonic() < deadline, "batch did not finish"
                time.sleep(0.5)
            with engine.connect() as c:
                # one attempt per (job, stage): no stage ran twice
                repeated = c.execute(
                    sqlalchemy.text(
                        "SELECT count(*) FROM (SELECT a.job_id, a.stage FROM attempt a JOIN job j ON j.id = a.job_id "
                        "WHERE j.batch_id = :b GROUP BY a.job_id, a.stage HAVING count(*) > 1) t"
                    ),
                    {"b": batch},
                ).scalar()
                states = [
                    r[0]
                    for r in c.execute(
                        sqlalchemy.text("SELECT state FROM job WHERE batch_id = :b AND kind = 'sku'"), {"b": batch}
                    )
                ]
                charges = c.execute(
                    sqlalchemy.text(
                        "SELECT count(*), sum(cost_usd) FROM charge WHERE batch_id = :b AND stage = 'render' "
                        "AND state = 'charged'"
                    ),
                    {"b": batch},
                ).one()
            engine.dispose()
            renders = fake.stats()["requests"]["chat/completions"][render_model]
    assert states == ["done"] * 4
    assert repeated == 0
    assert renders == 2 and charges[0] == 2, (renders, charges)  # one per preset, not one per SKU
    assert charges[1] == pytest.approx(0.045 + 0.101)


def test_workers_without_the_batch_provider_fail_its_jobs_with_the_reason(
    tmp_path: Path, demo_data: tuple[Path, Path]
) -> None:
    """The submitter has an OpenRouter key; the workers have none (their own environment): every job of the
    batch, catalog included, fails with what to set - none hangs, `hitline run` comes back."""
    catalog, new = demo_data
    with _cluster(tmp_path, {}) as env:
        submitter = {**env, "HITLINE_OPENROUTER_API_KEY": "sk-or-v1-submitter-only"}
        res = subprocess.run(
            [
                str(BIN / "hitline"),
                "run",
                "--catalog",
                str(catalog),
                "--new",
                str(new),
                "--out",
                str(tmp_path / "out"),
                "--provider",
                "openrouter",
                "--presets",
                "thumbnail",
            ],
            env=submitter,
            capture_output=True,
            text=True,
            timeout=600,
        )
        logs = "".join(p.read_text() for p in (tmp_path / "logs").iterdir())
        assert res.returncode == 0, res.stdout + res.stderr + logs
        batch = re.search(r"batch (\S+):", res.stdout).group(1)
        status = subprocess.run(
            [str(BIN / "hitline"), "status", batch, "--json"], env=env, capture_output=True, text=True, timeout=120
        )
    jobs = json.loads(status.stdout)["jobs"]
    assert jobs and {j["state"] for j in jobs} == {"failed"}, {j["state"] for j in jobs}
    assert all("HITLINE_OPENROUTER_API_KEY" in (j["reason"] or "") for j in jobs), jobs[:2]
    assert "sk-or-v1-submitter-only" not in res.stdout + res.stderr + logs + status.stdout
