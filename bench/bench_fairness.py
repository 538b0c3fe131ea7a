"""Fair sharing between batches (issue 22 item 4): a small batch submitted while a big one runs, with real
workers and the fake OpenRouter.

Everything runs as real processes on loopback, as in bench/overhead.py: a private `redis-server` (the
broker), a `milvus-lite server`, a fresh PostgreSQL database on 127.0.0.1:5432 (created and dropped
here), the fake OpenRouter in this process (instant: no latency, no local renderer), rate limits far
above reach, one `hitline worker` (prefork, --concurrency C, the five queues). Batches are submitted with
tasks.chains' submit (from this process, as another service would) on one already indexed catalog (the demo's 48 hits, `hitline catalog add` first);
every SKU's flat-lay bytes are unique, so nothing comes from the cache. Times are read from the job table:
a batch's time = its last SKU's finish (job.updated_at) - batch.created_at.

Phases, one run, one worker:
  1. small alone: the S-SKU batch on an idle line               -> T_small_alone
  2. big alone: the N-SKU batch                                  -> T_big_alone, throughput N / T_big_alone
  3. big + small, fair sharing on: a new N-SKU batch; once `--inject-at` of it is done, a new S-SKU batch
                                                                 -> T_small_shared, T_big_shared
  4. (--fifo) the same sent with fair sharing off (HITLINE_FAIR_SHARING=0: first come, first served)

Targets (issue 22): T_small_shared <= 2 x T_small_alone; big throughput shared >= 0.90 x alone.

    python bench/bench_fairness.py --big 1000 --small 20 --fifo --json bench/results/fairness.json
"""

from __future__ import annotations

import sys
from pathlib import Path as _P

sys.path.insert(0, str(_P(__file__).resolve().parent))
from _common import scratch_database, write_results  # noqa: E402
from overhead import _free_port, _ping, _process, _wait_port  # noqa: E402

import argparse
import csv
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
QUEUES = "embed,index,retrieve,analyze,render"


def make_skus(work: Path, name: str, n: int) -> Path:
    """n new SKUs cycling through the 6 demo flat-lays, each file's bytes unique (nothing cached)."""
    from hitline.demo.sampledata import generate_demo

    demo = work / "demo"
    if not demo.exists():
        generate_demo(demo)
    demo_new = demo / "new"
    with open(demo_new / "new_products.csv", newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header, demo_rows = next(reader), list(reader)
    folder = work / name
    (folder / "new_products").mkdir(parents=True)
    rows = []
    for i in range(n):
        src_row = demo_rows[i % len(demo_rows)]
        new_id = f"{name.upper()}{i + 1:05d}"
        src = demo_new / src_row[1]
        dst = folder / "new_products" / f"{new_id}{src.suffix}"
        dst.write_bytes(src.read_bytes() + new_id.encode())  # decoders stop at the end-of-image marker
        rows.append([new_id, f"new_products/{dst.name}", *src_row[2:]])
    with open(folder / "new_products.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return folder


def submit(work: Path, fair: bool, catalog: str, new: Path, presets: str) -> str:
    """Submit a batch from this process, as another service would (tasks.chains.submit): no CLI start-up in
    the time measured. fair=False sends it first come, first served (HITLINE_FAIR_SHARING=0)."""
    from hitline.jobs import verbs
    from hitline.jobs.context import Runtime, get_runtime
    from tasks.chains import send

    rt = get_runtime()
    if not fair:
        rt = Runtime(rt.settings.model_copy(update={"fair_sharing": False}))
    sub = verbs.submit(rt, catalog, new, work / "out", send=send, presets=presets.split(","))
    return sub.batch_id


def drain(broker: str, timeout: float) -> None:
    """Wait until the broker holds no message (queued, reserved or unacked): the contact sheets of the
    phase before (priority 9, drawn after its SKUs are done) must not run in the next phase's time."""
    import redis

    r = redis.Redis.from_url(broker)
    deadline, quiet = time.monotonic() + timeout, 0
    while quiet < 4:
        busy = r.hlen("unacked") + sum(r.llen(k) for k in r.scan_iter(count=1000) if r.type(k) == b"list")
        quiet = quiet + 1 if busy == 0 else 0
        if time.monotonic() > deadline:
            raise SystemExit(f"the broker still holds {busy} messages after {timeout} s")
        time.sleep(0.5)
    r.close()


class Table:
    def __init__(self, db_url: str) -> None:
        import sqlalchemy

        self.sa = sqlalchemy
        self.engine = sqlalchemy.create_engine(db_url)

    def progress(self, batch: str) -> tuple[int, int]:
        """(finished SKUs, SKUs) of a batch."""
        with self.engine.connect() as c:
            row = c.execute(
                self.sa.text(
                    "SELECT count(*) FILTER (WHERE state IN ('done', 'failed', 'budget_exceeded')), count(*) "
                    "FROM job WHERE batch_id = :b AND kind = 'sku'"
                ),
                {"b": batch},
            ).one()
        return int(row[0]), int(row[1])

    def times(self, batch: str) -> dict[str, Any]:
        with self.engine.connect() as c:
            created = c.execute(self.sa.text("SELECT created_at FROM batch WHERE id = :b"), {"b": batch}).scalar()
            rows = c.execute(
                self.sa.text("SELECT state, updated_at FROM job WHERE batch_id = :b AND kind = 'sku'"), {"b": batch}
            ).all()
        done = sorted(u.timestamp() for st, u in rows if st == "done")
        t0 = created.timestamp()
        return {
            "skus": len(rows),
            "done": len(done),
            "failed": len(rows) - len(done),
            "created": t0,
            "first_s": done[0] - t0 if done else None,
            "last_s": done[-1] - t0 if done else None,
            "per_s": len(done) / (done[-1] - t0) if done else 0.0,
        }

    def timeline(self, batch: str) -> list[list[Any]]:
        """Every attempt of the batch's SKUs: [sku, stage, start s after submission, seconds, outcome]."""
        with self.engine.connect() as c:
            created = c.execute(self.sa.text("SELECT created_at FROM batch WHERE id = :b"), {"b": batch}).scalar()
            rows = c.execute(
                self.sa.text(
                    "SELECT j.item_id, a.stage, a.started_at, a.seconds, a.outcome FROM attempt a "
                    "JOIN job j ON j.id = a.job_id WHERE j.batch_id = :b AND j.kind = 'sku' ORDER BY a.started_at"
                ),
                {"b": batch},
            ).all()
        return [[i, st, round((t - created).total_seconds(), 2), sec and round(sec, 3), o] for i, st, t, sec, o in rows]

    def finished_between(self, batch: str, t0: float, t1: float) -> int:
        with self.engine.connect() as c:
            rows = c.execute(
                self.sa.text("SELECT updated_at FROM job WHERE batch_id = :b AND kind = 'sku' AND state = 'done'"),
                {"b": batch},
            ).all()
        return sum(1 for (u,) in rows if t0 <= u.timestamp() <= t1)

    def wait(self, batch: str, timeout: float, until: float = 1.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            fin, total = self.progress(batch)
            if total and fin >= until * total:
                return
            if time.monotonic() > deadline:
                raise SystemExit(f"batch {batch}: {fin}/{total} finished after {timeout} s")
            time.sleep(0.25)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--big", type=int, default=300, help="SKUs of the big batch")
    ap.add_argument("--small", type=int, default=20, help="SKUs of the small batch")
    ap.add_argument("--inject-at", type=float, default=0.2, help="share of the big batch done when small is sent")
    ap.add_argument("--concurrency", type=int, default=2, help="prefork children of the one worker process")
    ap.add_argument("--presets", default="thumbnail")
    ap.add_argument("--fifo", action="store_true", help="also run phase 3 with fair sharing off")
    ap.add_argument("--timeout", type=float, default=3600.0, help="per batch, seconds")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    opts = ap.parse_args(argv)

    from hitline.fake.server import FakeConfig, running_fake

    work = opts.workdir or Path(tempfile.mkdtemp(prefix="bench-fairness-"))
    work.mkdir(parents=True, exist_ok=True)
    load = [os.getloadavg()]
    runs: dict[str, Any] = {}
    try:
        with ExitStack() as stack:
            redis_port, milvus_port = _free_port(), _free_port()
            (work / "redis").mkdir(exist_ok=True)
            stack.enter_context(
                _process(
                    ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", ""]
                    + ["--appendonly", "no", "--dir", str(work / "redis")],
                    work / "redis.log",
                )
            )
            stack.enter_context(
                _process(
                    [str(BIN / "milvus-lite"), "server", "--data-dir", str(work / "milvus")]
                    + ["--host", "127.0.0.1", "--port", str(milvus_port)],
                    work / "milvus.log",
                )
            )
            _wait_port(redis_port)
            _wait_port(milvus_port)
            db_url = stack.enter_context(scratch_database("bench_fairness"))
            fake = stack.enter_context(
                running_fake(FakeConfig(use_local_renderer=False, max_image_side=512, instant=True))
            )
            limits = work / "limits.toml"
            limits.write_text("[default]\nrpm = 1000000\nmax_in_flight = 64\n")
            env = {k: v for k, v in os.environ.items() if not k.startswith("HITLINE_")}
            env.update(
                HITLINE_BROKER_URL=f"redis://127.0.0.1:{redis_port}/0",
                HITLINE_DATABASE_URL=db_url,
                HITLINE_MILVUS_URI=f"http://127.0.0.1:{milvus_port}",
                HITLINE_DATA_DIR=str(work / "data"),
                HITLINE_PROVIDER="openrouter",
                HITLINE_OPENROUTER_API_KEY="sk-bench-fairness",
                HITLINE_OPENROUTER_BASE_URL=fake.base_url,
                HITLINE_LIMITS_FILE=str(limits),
                HITLINE_QUALITY_GATE="0",
                PYTHONPATH=os.pathsep.join([str(HERE.parent), env.get("PYTHONPATH", "")]),
            )
            os.environ.update(env)  # this process submits too (tasks.chains reads its settings at import)
            # the catalog, indexed once; and the data of every phase (made before any clock runs)
            make_skus(work, "warm", 6)
            subprocess.run(
                [str(BIN / "hitline"), "catalog", "add", str(work / "demo" / "catalog"), "--name", "demo"],
                env=env,
                check=True,
                capture_output=True,
                timeout=600,
            )
            folders = {"small_alone": make_skus(work, "sa", opts.small), "big_alone": make_skus(work, "ba", opts.big)}
            folders |= {"big_fair": make_skus(work, "bf", opts.big), "small_fair": make_skus(work, "sf", opts.small)}
            if opts.fifo:
                folders |= {
                    "big_fifo": make_skus(work, "bo", opts.big),
                    "small_fifo": make_skus(work, "so", opts.small),
                }
            table = Table(db_url)
            with _process(
                [str(BIN / "hitline"), "worker", "--queues", QUEUES, "--concurrency", str(opts.concurrency)]
                + ["--loglevel", "WARNING"],
                work / "worker.log",
                env,
            ):
                _ping(env["HITLINE_BROKER_URL"])
                warm = submit(work, True, "demo", work / "warm", opts.presets)  # worker imports, first calls
                table.wait(warm, opts.timeout)
                drain(env["HITLINE_BROKER_URL"], opts.timeout)

                def alone(name: str) -> dict[str, Any]:
                    b = submit(work, True, "demo", folders[name], opts.presets)
                    table.wait(b, opts.timeout)
                    drain(env["HITLINE_BROKER_URL"], opts.timeout)
                    r = runs[name] = table.times(b)
                    if name.startswith("small"):
                        r["timeline"] = table.timeline(b)
                    print(f"{name}: {r['done']}/{r['skus']} in {r['last_s']:.1f} s ({r['per_s']:.2f}/s)", flush=True)
                    return r

                def shared(mode: str) -> None:
                    big = submit(work, mode == "fair", "demo", folders[f"big_{mode}"], opts.presets)
                    table.wait(big, opts.timeout, until=opts.inject_at)
                    small = submit(work, mode == "fair", "demo", folders[f"small_{mode}"], opts.presets)
                    table.wait(small, opts.timeout)
                    table.wait(big, opts.timeout)
                    drain(env["HITLINE_BROKER_URL"], opts.timeout)
                    rb, rs = table.times(big), table.times(small)
                    # what the big batch finished while the small one ran, and the small one's path through the line
                    rs["big_finished_meanwhile"] = table.finished_between(
                        big, rs["created"], rs["created"] + (rs["last_s"] or 0)
                    )
                    rs["timeline"] = table.timeline(small)
                    runs[f"big_{mode}"], runs[f"small_{mode}"] = rb, rs
                    print(
                        f"{mode}: small {rs['done']}/{rs['skus']} in {rs['last_s']:.1f} s; "
                        f"big {rb['done']}/{rb['skus']} in {rb['last_s']:.1f} s ({rb['per_s']:.2f}/s)",
                        flush=True,
                    )

                alone("small_alone")
                load.append(os.getloadavg())
                alone("big_alone")
                load.append(os.getloadavg())
                shared("fair")
                load.append(os.getloadavg())
                if opts.fifo:
                    shared("fifo")
                    load.append(os.getloadavg())
            table.engine.dispose()
    finally:
        if opts.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    sa = runs["small_alone"]["last_s"]
    ba = runs["big_alone"]["per_s"]
    ratios = {
        "small_fair_vs_alone": runs["small_fair"]["last_s"] / sa,
        "big_fair_throughput_vs_alone": runs["big_fair"]["per_s"] / ba,
    }
    if opts.fifo:
        ratios["small_fifo_vs_alone"] = runs["small_fifo"]["last_s"] / sa
        ratios["big_fifo_throughput_vs_alone"] = runs["big_fifo"]["per_s"] / ba
    print("ratios:", {k: round(v, 3) for k, v in ratios.items()})
    print(
        f"targets: small shared <= 2x alone: {ratios['small_fair_vs_alone'] <= 2}; "
        f"big throughput >= 0.90x: {ratios['big_fair_throughput_vs_alone'] >= 0.9}"
    )
    write_results(opts.json, "fairness", opts, runs, ratios=ratios, loadavg=load)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
