"""Fixtures of the fault tests: a whole distributed line of real processes per test (private Redis,
private PostgreSQL cluster, milvus-lite server, the fake OpenRouter, `hitline worker`s), test data with
one distinct flat-lay per SKU (so the fake's log can count renders per SKU), and the helpers that
submit a batch and wait until every SKU is terminal."""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from testkit.services import BIN, FakeProvider, MilvusServer, PgCluster, RabbitVhost, RedisServer, Workers, stamp_id

RENDER_MODEL = "google/gemini-3.1-flash-image-preview"
TERMINAL = ("done", "failed")
SIDE = 320  # long side of the test images
# short bounds so the suite stays fast; the shipped defaults are documented in README "Guarantees"
FAST_RECOVERY = {
    "HITLINE_CLAIM_LEASE_S": "6",
    "HITLINE_HEARTBEAT_S": "1",
    "HITLINE_RECONCILE_EVERY_S": "2",
    "HITLINE_RECONCILE_GRACE_S": "4",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/reliability/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.reliability)


def limits_toml(render_rpm: int, window_s: float, in_flight: int = 4, lease_s: float = 6.0) -> str:
    # margin 0.25: the fake stamps a request after decoding its images, up to ~0.5 s late on a loaded
    # machine; a 2 s test window needs more slack than the shipped 5% of a 60 s one
    return f"""[default]
margin = 0.25
rpm = 100000
max_in_flight = 32
window_s = {window_s}
lease_s = {lease_s}

["{RENDER_MODEL}"]
rpm = {render_rpm}
max_in_flight = {in_flight}
window_s = {window_s}
lease_s = {lease_s}
"""


@pytest.fixture(scope="session")
def skus_factory(demo_data: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Callable[[int], Path]:
    """new_products folders of N SKUs, each with its own flat-lay bytes (a demo flat-lay with a
    one-pixel-row stamp), so a render request names its SKU by the hash of its first image."""
    from PIL import Image

    _, new = demo_data
    rows = list(csv.DictReader(open(new / "new_products.csv", encoding="utf-8")))
    made: dict[int, Path] = {}

    def make(n: int) -> Path:
        if n in made:
            return made[n]
        dest = tmp_path_factory.mktemp(f"new{n}")
        (dest / "new_products").mkdir()
        out = []
        for i in range(n):
            src = rows[i % len(rows)]
            with Image.open(new / src["image_path"]) as im:
                img = im.convert("RGB")
            img.thumbnail((SIDE, SIDE))  # small inputs: the CPU goes to the line, not to JPEG codecs
            stamp_id(img, i)  # a unique stamp in the corner: distinct bytes, same garment
            sid = f"REL{i:05d}"
            img.save(dest / "new_products" / f"{sid}.png")
            out.append({**src, "new_id": sid, "image_path": f"new_products/{sid}.png"})
        with open(dest / "new_products.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(out)
        made[n] = dest
        return dest

    return make


@pytest.fixture(scope="session")
def small_catalog(demo_data: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 21 demo hits (every category, all above the default min_sales or not): the faults
    under test are in the SKU chains; a smaller catalog keeps each test's warm-up short."""
    catalog = demo_data[0]
    dest = tmp_path_factory.mktemp("catalog")
    lines = (catalog / "products.csv").read_text(encoding="utf-8").splitlines()
    (dest / "products.csv").write_text("\n".join(lines[:22]) + "\n", encoding="utf-8")
    (dest / "images").mkdir()
    from PIL import Image

    for row in lines[1:22]:
        name = row.split(",")[1]  # images/SKU001.jpg (demo rows have no quoted path)
        with Image.open(catalog / name) as im:
            im.thumbnail((SIDE, SIDE))
            im.save(dest / name, quality=90)
    return dest


@pytest.fixture(scope="session")
def pg_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgCluster]:
    """One private PostgreSQL cluster for the session (a database per test); tests may restart it."""
    pg = PgCluster().init().start()
    yield pg
    try:
        pg.stop("fast")
    except subprocess.CalledProcessError:
        pass
    pg.remove()


@dataclass
class Line:
    """One distributed hitline of real processes; env is what a worker or the CLI is started with."""

    root: Path
    env: dict[str, str]
    redis: RedisServer
    pg: PgCluster
    milvus: MilvusServer
    fake: FakeProvider
    workers: Workers
    catalog: Path
    db_url: str
    extra_logs: list[Any] = field(default_factory=list)

    # --- submitting and waiting ------------------------------------------------------------------
    def submit(
        self, new: Path, presets: str = "thumbnail", out: Path | None = None, idempotency_key: str | None = None
    ) -> str:
        """Submit through the public API (tasks.chains.submit) in its own process, as another service
        would; returns the batch id."""
        out = out or self.root / "out"
        key = repr(idempotency_key) if idempotency_key else "None"
        extra = f", idempotency_key={key}" if idempotency_key else ""
        code = (
            f"from tasks.chains import submit\n"
            f"s = submit({str(self.catalog)!r}, {str(new)!r}, {str(out)!r}, presets={presets.split(',')!r}{extra})\n"
            f"print('BATCH', s.batch_id)\n"
        )
        res = subprocess.run(
            [str(BIN / "python"), "-c", code], env=self.env, capture_output=True, text=True, timeout=300
        )
        assert res.returncode == 0, res.stdout + res.stderr
        return re.search(r"BATCH (\S+)", res.stdout).group(1)

    def sql(self, query: str, **params: Any) -> list[tuple[Any, ...]]:
        """A query on the test's job table; a fresh connection each time (the cluster may restart)."""
        import sqlalchemy

        eng = sqlalchemy.create_engine(self.db_url, poolclass=sqlalchemy.pool.NullPool)
        try:
            with eng.connect() as c:
                return [tuple(r) for r in c.execute(sqlalchemy.text(query), params)]
        finally:
            eng.dispose()

    def states(self, batch: str, kind: str = "sku") -> Counter[tuple[str, str]]:
        return Counter(self.sql("SELECT stage, state FROM job WHERE batch_id = :b AND kind = :k", b=batch, k=kind))

    def wait_until(self, what: str, pred: Callable[[], bool], timeout: float, poll: float = 0.3) -> float:
        t0 = time.monotonic()
        while True:
            try:
                if pred():
                    return time.monotonic() - t0
            except Exception:  # noqa: BLE001 - a service may be down on purpose right now
                pass
            if time.monotonic() - t0 > timeout:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{self.diagnostics()}")
            time.sleep(poll)

    def wait_terminal(self, batch: str, timeout: float) -> float:
        """Wait (bounded) until every job of the batch is done or failed; returns the seconds it took."""

        def finished() -> bool:
            rows = self.sql("SELECT state, count(*) FROM job WHERE batch_id = :b GROUP BY state", b=batch)
            return bool(rows) and all(st in TERMINAL for st, _ in rows)

        self._batch = batch
        return self.wait_until(f"every job of {batch} terminal", finished, timeout)

    def diagnostics(self) -> str:
        parts = []
        batch = getattr(self, "_batch", None)
        if batch:
            try:
                parts.append(f"job states: {dict(self.states(batch))} hits: {dict(self.states(batch, 'hit'))}")
                parts.append(
                    "open jobs: "
                    + repr(
                        self.sql(
                            "SELECT id, stage, state, attempts, error, claimed_at FROM job WHERE batch_id = :b "
                            "AND state NOT IN ('done', 'failed') ORDER BY id LIMIT 10",
                            b=batch,
                        )
                    )
                )
            except Exception as e:  # noqa: BLE001
                parts.append(f"(job table unreachable: {e})")
        parts.append(self.workers.tails())
        spy = shutil.which("py-spy")
        for w in self.workers.procs.values():  # where a stuck worker's threads wait (when py-spy is there)
            if spy and w.alive():
                dump = subprocess.run([spy, "dump", "--pid", str(w.pid)], capture_output=True, text=True)
                parts.append(f"--- py-spy {w.name} ---\n{dump.stdout[-6000:]}")
        parts.append(self.fake.proc.tail(10))
        return "\n".join(parts)

    # --- what the provider saw ------------------------------------------------------------------
    def served_renders(self) -> Counter[tuple[str, str]]:
        """Renders the fake answered with an image, per (flat-lay hash, aspect:size): each one is paid."""
        return Counter(
            (r["input_sha"], f"{r['image_config'].get('aspect_ratio')}:{r['image_config'].get('image_size')}")
            for r in self.fake.records()
            if r["endpoint"] == "chat/completions"
            and "image" in (r.get("modalities") or [])
            and r["status"] == 200
            and not r.get("fault")
        )

    def render_charges(self, batch: str) -> list[tuple[Any, ...]]:
        return self.sql("SELECT key, state, cost_usd FROM charge WHERE batch_id = :b AND stage = 'render'", b=batch)


def _line(
    tmp_path: Path,
    catalog: Path,
    pg: PgCluster,
    broker: str,
    limits: str,
    fake_args: tuple[str, ...],
    env_extra: dict[str, str],
) -> Iterator[Line]:
    root = tmp_path
    (root / "logs").mkdir(exist_ok=True)
    redis = RedisServer(root).start()
    milvus = MilvusServer(root).start()
    fake = FakeProvider(root, *fake_args).start()
    db_url = pg.createdb("rel_" + uuid.uuid4().hex[:10])
    vhost = None
    if broker == "amqp":
        vhost = RabbitVhost().create()
        broker_url = vhost.url()
    else:
        broker_url = redis.url(0)
    (root / "limits.toml").write_text(limits)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HITLINE_") or k.startswith("HITLINE_TEST_")}
    env.update(
        HITLINE_BROKER_URL=broker_url,
        HITLINE_REDIS_URL=redis.url(1),
        HITLINE_DATABASE_URL=db_url,
        HITLINE_MILVUS_URI=milvus.uri,
        HITLINE_DATA_DIR=str(root / "data"),
        HITLINE_PROVIDER="openrouter",
        HITLINE_OPENROUTER_BASE_URL=fake.base_url,
        HITLINE_OPENROUTER_API_KEY="sk-or-v1-reliability",
        HITLINE_OPENROUTER_TIMEOUT_S="3",
        # delivery is under test here; the gate (OCR per output) is tested in tests/jobs/test_quality_gate.py
        HITLINE_QUALITY_GATE="0",
        HITLINE_LIMITS_FILE=str(root / "limits.toml"),
        HITLINE_COLLECTION="rel_" + uuid.uuid4().hex[:8],
        **FAST_RECOVERY,
    )
    env.update(env_extra)
    workers = Workers(env, root / "logs")
    line = Line(root, env, redis, pg, milvus, fake, workers, catalog, db_url)
    try:
        yield line
    finally:
        workers.stop_all()
        fake.proc.stop()
        milvus.proc.stop()
        redis.proc.kill9()
        if vhost is not None:
            vhost.delete()


@pytest.fixture
def make_line(tmp_path: Path, small_catalog: Path, pg_cluster: PgCluster) -> Iterator[Callable[..., Line]]:
    """make_line(broker="redis"|"amqp", render_rpm=..., window_s=..., fake_args=(...), env={...})."""
    gens: list[Iterator[Line]] = []

    def make(
        broker: str = "redis",
        render_rpm: int = 1000,
        window_s: float = 2.0,
        in_flight: int = 4,
        fake_args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> Line:
        gen = _line(
            tmp_path,
            small_catalog,
            pg_cluster,
            broker,
            limits_toml(render_rpm, window_s, in_flight),
            fake_args,
            env or {},
        )
        gens.append(gen)
        return next(gen)

    yield make
    for gen in gens:
        try:
            next(gen)
        except StopIteration:
            pass


def standard_workers(line: Line) -> dict[str, Any]:
    """The shape the README recommends: CPU-light stages on one worker, the paid calls on another."""
    return {
        "front": line.workers.start("embed,index,retrieve,analyze", concurrency=4, name="front"),
        "render": line.workers.start("render", concurrency=4, name="render"),
    }


def check_no_double_render(line: Line, batch: str, n_skus: int, cut_mid_flight: int = 0) -> None:
    """Every SKU rendered and charged once: the fake served at most one image per (SKU, preset) beyond
    the calls cut mid-flight (each may be repeated once), and the charge table holds one settled row
    per image."""
    served = line.served_renders()
    assert len(served) == n_skus, (len(served), n_skus)
    repeats = sum(n - 1 for n in served.values())
    assert repeats <= cut_mid_flight, (
        f"{repeats} renders paid twice (allowed {cut_mid_flight}): {[k for k, n in served.items() if n > 1]}"
    )
    charges = line.render_charges(batch)
    assert len(charges) == n_skus and all(st == "charged" for _, st, _ in charges), charges
