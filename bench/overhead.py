"""The line's own cost per SKU: SKUs/s through all five stages with an instant provider, against a bare
Celery chain of five no-op tasks on the same worker shape, in the same run.

Everything runs as real processes on loopback: a private `redis-server` (the broker; db 0 for the line,
db 1 for the baseline), a `milvus-lite server`, a fresh PostgreSQL database on 127.0.0.1:5432 (created
and dropped here), and the fake OpenRouter in this process with **no latency and no local renderer**
(it answers at once; the `local` provider is not instant, its renderer cuts the product out with u2netp,
~0.3 s). By default the fake runs its `instant` knob: an image it is sent is read at 1/8 scale (once per
data URI: the catalog photos come back for every SKU) and a render is a plain PNG of the requested size
encoded once, so its own CPU (on the same cores, reported apart) stretches the line's wall time less;
`--full-fake` decodes every image in full and draws each render. Rate limits are set far above what the run can
reach (the shared Redis limiter still runs). Worker shape for both: one worker process, prefork,
`--concurrency C` (default 2), consuming the five queues, the hitline app's Celery configuration.

- baseline: `celery -A overhead_noop worker` (bench/overhead_noop.py), then N no-op chains enqueued
  from here; the fifth task of each chain RPUSHes its finish time.
- line: `hitline worker`, then `hitline run --no-wait --provider openrouter` on the demo catalog (48 hits)
  and N new SKUs (the 6 demo flat-lays, each copy made unique by trailing bytes after the image data, so
  no embedding or analysis comes from the cache); finish time = the SKU job's last update in the table.

Rates: "steady" = (done - 1) / (last finish - first finish) (start-up, catalog embedding and the
index barrier excluded), "batch" = done / (last finish - submission). Ratio = line / baseline.
On a shared machine wall rates swing with other users' load, so the run also counts CPU seconds
(user + system, /proc) of the worker process tree, the private Redis and the Milvus server per SKU;
"ratio at equal CPU" = SKUs per CPU-second of the line / of the bare chain (PostgreSQL, shared, is not
counted; the fake provider's CPU is reported apart, and once added in).

    python bench/overhead.py                       # 200 SKUs, 1000 no-op chains, concurrency 2
    python bench/overhead.py --skus 300 --json bench/results/overhead.json
"""

from __future__ import annotations

import sys
from pathlib import Path as _P

sys.path.insert(0, str(_P(__file__).resolve().parent))
from _common import scratch_database, write_results  # noqa: E402

import argparse
import csv
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Iterator

from rich.console import Console
from rich.table import Table

console = Console(width=160)
HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
QUEUES = "embed,index,retrieve,analyze,render"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"nothing listens on port {port} after {timeout} s")


@contextmanager
def _process(
    cmd: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> Iterator[subprocess.Popen]:
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def make_data(work: Path, n: int) -> tuple[Path, Path]:
    """The demo catalog and n new SKUs cycling through the 6 demo flat-lays, each file's bytes unique."""
    from hitline.demo.sampledata import generate_demo

    catalog, demo_new = generate_demo(work / "demo")
    with open(demo_new / "new_products.csv", newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header, demo_rows = next(reader), list(reader)
    folder = work / "new"
    (folder / "new_products").mkdir(parents=True)
    rows = []
    for i in range(n):
        src_row = demo_rows[i % len(demo_rows)]
        new_id = f"NEW{i + 1:05d}"
        src = demo_new / src_row[1]
        dst = folder / "new_products" / f"{new_id}{src.suffix}"
        # decoders stop at the end-of-image marker; the trailing id only changes the content hash
        dst.write_bytes(src.read_bytes() + new_id.encode())
        rows.append([new_id, f"new_products/{dst.name}", *src_row[2:]])
    with open(folder / "new_products.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return catalog, folder


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of a process, its reaped children and its live descendants (/proc).
    CPU per SKU is what the machine's load does not stretch; wall rates swing with other users' jobs."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                text = (entry / "stat").read_text()
            except OSError:
                continue
            stats[int(entry.name)] = _stat_fields(text)
    children: dict[int, list[int]] = {}
    for child, f in stats.items():
        children.setdefault(int(f[1]), []).append(child)
    total, todo, first = 0.0, [pid], True
    while todo:
        p = todo.pop()
        f = stats.get(p)
        if f is None:
            continue
        # utime, stime (+ cutime, cstime for the root: children it already reaped)
        total += sum(int(x) for x in (f[11:15] if first else f[11:13])) / tick
        first = False
        todo += children.get(p, [])
    return total


def own_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of the process itself, without its children (/proc)."""
    f = _stat_fields((Path("/proc") / str(pid) / "stat").read_text())
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def _stat_fields(text: str) -> list[str]:
    return text[text.rindex(")") + 2 :].split()  # the fields after "pid (comm)"


class CpuMeter:
    """CPU seconds spent by a set of processes between start() and stop(); for the worker also its main
    process alone (Celery's consumer: receiving, dispatching to the prefork children, acks, events)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids, self.start_s, self.used_s = pids, {}, {}

    def _now(self) -> dict[str, float]:
        return {**{k: tree_cpu_s(p) for k, p in self.pids.items()}, "worker_main": own_cpu_s(self.pids["worker"])}

    def start(self) -> None:
        self.start_s = self._now()

    def stop(self) -> dict[str, float]:
        self.used_s = {k: v - self.start_s[k] for k, v in self._now().items()}
        return self.used_s


def _ping(broker: str, timeout: float = 120.0) -> None:
    from celery import Celery

    probe = Celery(broker=broker)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe.control.ping(timeout=1.0):
            return
    raise SystemExit(f"no worker answered on {broker} within {timeout} s")


def _rates(submitted: float, finishes: list[float]) -> dict[str, float]:
    finishes = sorted(finishes)
    span = finishes[-1] - finishes[0] if len(finishes) > 1 else 0.0
    return {
        "done": len(finishes),
        "first_finish_s": finishes[0] - submitted,
        "last_finish_s": finishes[-1] - submitted,
        "steady_per_s": (len(finishes) - 1) / span if span > 0 else 0.0,
        "batch_per_s": len(finishes) / (finishes[-1] - submitted),
    }


def run_baseline(
    work: Path,
    env: dict[str, str],
    broker: str,
    chains: int,
    concurrency: int,
    timeout: float,
    services: dict[str, int],
) -> dict[str, Any]:
    import redis

    r = redis.Redis.from_url(broker)
    with _process(
        [
            str(BIN / "celery"),
            "-A",
            "overhead_noop",
            "worker",
            "-Q",
            QUEUES,
            "-c",
            str(concurrency),
            "-P",
            "prefork",
            "-l",
            "WARNING",
            "-E",
            "-n",
            "noop@%h",
        ],
        work / "noop-worker.log",
        {**env, "HITLINE_BROKER_URL": broker},
        cwd=HERE,
    ) as worker:
        _ping(broker)
        meter = CpuMeter({"worker": worker.pid, **services})
        meter.start()
        os.environ["HITLINE_BROKER_URL"] = broker
        import overhead_noop as noop

        r.delete(noop.DONE_KEY)
        t0 = time.time()
        for i in range(chains):
            noop.sku_chain(i).apply_async()
        enqueue_s = time.time() - t0
        deadline = time.monotonic() + timeout
        while r.llen(noop.DONE_KEY) < chains:
            if time.monotonic() > deadline:
                raise SystemExit(f"baseline: {r.llen(noop.DONE_KEY)}/{chains} chains after {timeout} s")
            time.sleep(0.1)
        finishes = [float(x.split()[1]) for x in r.lrange(noop.DONE_KEY, 0, -1)]
        cpu = meter.stop()
    return {
        "name": "bare chain of 5 no-op tasks",
        "n": chains,
        "enqueue_s": enqueue_s,
        "cpu_s": cpu,
        **_rates(t0, finishes),
    }


def run_line(
    work: Path,
    env: dict[str, str],
    db_url: str,
    n: int,
    presets: str,
    concurrency: int,
    timeout: float,
    services: dict[str, int],
) -> dict[str, Any]:
    import sqlalchemy

    catalog, new = make_data(work, n)
    engine = sqlalchemy.create_engine(db_url)
    with _process(
        [
            str(BIN / "hitline"),
            "worker",
            "--queues",
            QUEUES,
            "--concurrency",
            str(concurrency),
            "--loglevel",
            "WARNING",
        ],
        work / "line-worker.log",
        env,
    ) as worker:
        _ping(env["HITLINE_BROKER_URL"])
        meter = CpuMeter({"worker": worker.pid, **services})
        meter.start()
        t0, cpu0 = time.time(), time.process_time()
        res = subprocess.run(
            [
                str(BIN / "hitline"),
                "run",
                "--catalog",
                str(catalog),
                "--new",
                str(new),
                "--out",
                str(work / "out"),
                "--provider",
                "openrouter",
                "--presets",
                presets,
                "--no-wait",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if res.returncode != 0:
            raise SystemExit(f"hitline run failed:\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}")
        deadline = time.monotonic() + timeout
        while True:
            with engine.connect() as c:
                open_ = c.execute(
                    sqlalchemy.text(
                        "SELECT count(*) FROM job WHERE kind = 'sku' AND state NOT IN "
                        "('done', 'failed', 'budget_exceeded')"
                    )
                ).scalar()
            if open_ == 0:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"line: {open_} SKUs still open after {timeout} s (see {work}/line-worker.log)")
            time.sleep(0.25)
        # this process' CPU while the line ran: the fake provider's threads (it reads the images it is
        # sent and draws a PNG per render), plus this loop's polling
        fake_cpu_s = time.process_time() - cpu0
        cpu = meter.stop()
    with engine.connect() as c:
        created = c.execute(sqlalchemy.text("SELECT created_at FROM batch")).scalar()
        rows = c.execute(sqlalchemy.text("SELECT state, updated_at FROM job WHERE kind = 'sku'")).all()
        stages = dict(
            c.execute(
                sqlalchemy.text(
                    "SELECT a.stage, avg(a.seconds) FROM attempt a JOIN job j ON j.id = a.job_id "
                    "WHERE j.kind = 'sku' AND a.outcome = 'ok' GROUP BY a.stage"
                )
            ).all()
        )
    engine.dispose()
    failed = sum(1 for st, _ in rows if st != "done")
    finishes = [u.timestamp() for st, u in rows if st == "done"]
    out = {
        "name": "hitline line, 5 stages",
        "n": n,
        "failed": failed,
        "submit_s": created.timestamp() - t0,
        "fake_provider_cpu_s_per_sku": fake_cpu_s / n,
        "cpu_s": cpu,
        "stage_s_per_sku": {k: float(v) for k, v in stages.items()},
        **_rates(created.timestamp(), finishes),
    }
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--skus", type=int, default=200, help="new SKUs through the line")
    ap.add_argument("--noop-chains", type=int, default=1000, help="chains through the baseline")
    ap.add_argument("--concurrency", type=int, default=2, help="prefork children of the one worker process")
    ap.add_argument("--presets", default="thumbnail", help="render presets per SKU")
    ap.add_argument("--timeout", type=float, default=900.0, help="per phase, seconds")
    ap.add_argument("--workdir", type=Path, default=None, help="data, logs (default: a temp dir, removed)")
    ap.add_argument("--json", type=Path, default=None, help="write the results as JSON here")
    ap.add_argument(
        "--full-fake",
        action="store_true",
        help="the fake decodes every image in full and draws each render (its default); without "
        "this flag it runs --instant: the line's cost, not the fake's, on the shared cores",
    )
    opts = ap.parse_args(argv)
    if opts.skus < 2 or opts.noop_chains < 2:
        ap.error("--skus and --noop-chains must be >= 2")

    from hitline.fake.server import FakeConfig, running_fake

    work = opts.workdir or Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    work.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    try:
        with ExitStack() as stack:
            redis_port, milvus_port = _free_port(), _free_port()
            (work / "redis").mkdir(exist_ok=True)
            redis_proc = stack.enter_context(
                _process(
                    [
                        "redis-server",
                        "--port",
                        str(redis_port),
                        "--bind",
                        "127.0.0.1",
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--dir",
                        str(work / "redis"),
                    ],
                    work / "redis.log",
                )
            )
            milvus_proc = stack.enter_context(
                _process(
                    [
                        str(BIN / "milvus-lite"),
                        "server",
                        "--data-dir",
                        str(work / "milvus"),
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(milvus_port),
                    ],
                    work / "milvus.log",
                )
            )
            # PostgreSQL is the machine's, shared: its CPU is not counted (the line's only)
            services = {"redis": redis_proc.pid, "milvus": milvus_proc.pid}
            _wait_port(redis_port)
            _wait_port(milvus_port)
            db_url = stack.enter_context(scratch_database("bench_overhead"))
            fake = stack.enter_context(
                running_fake(FakeConfig(use_local_renderer=False, max_image_side=512, instant=not opts.full_fake))
            )
            # the shared Redis limiter stays on (its round trips are part of the line's cost) but never binds:
            # the shipped limits.toml holds renders at 20/min, which would measure the limit, not the line
            limits = work / "limits.toml"
            limits.write_text("[default]\nrpm = 1000000\nmax_in_flight = 64\n")
            env = {k: v for k, v in os.environ.items() if not k.startswith("HITLINE_")}
            env.update(
                HITLINE_BROKER_URL=f"redis://127.0.0.1:{redis_port}/0",
                HITLINE_DATABASE_URL=db_url,
                HITLINE_MILVUS_URI=f"http://127.0.0.1:{milvus_port}",
                HITLINE_DATA_DIR=str(work / "data"),
                HITLINE_OPENROUTER_API_KEY="sk-bench-overhead",
                HITLINE_OPENROUTER_BASE_URL=fake.base_url,
                HITLINE_LIMITS_FILE=str(limits),
                HITLINE_QUALITY_GATE=os.environ.get("HITLINE_QUALITY_GATE", "0"),
                PYTHONPATH=os.pathsep.join([str(HERE.parent), env.get("PYTHONPATH", "")]),
            )
            base = run_baseline(
                work,
                env,
                f"redis://127.0.0.1:{redis_port}/1",
                opts.noop_chains,
                opts.concurrency,
                opts.timeout,
                services,
            )
            console.print(f"[dim]baseline: {base['done']} chains, {base['steady_per_s']:.1f}/s steady[/]")
            line = run_line(
                work,
                env,
                env["HITLINE_DATABASE_URL"],
                opts.skus,
                opts.presets,
                opts.concurrency,
                opts.timeout,
                services,
            )
            console.print(
                f"[dim]line: {line['done']} SKUs done, {line['failed']} not, {line['steady_per_s']:.2f}/s steady[/]"
            )
    finally:
        if opts.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    load_after = os.getloadavg()

    for r in (base, line):
        r["cpu_s_per_sku"] = {k: v / r["n"] for k, v in r["cpu_s"].items()}
        # worker_main is part of the worker's tree: not counted twice
        r["cpu_s_per_sku"]["total"] = sum(v for k, v in r["cpu_s"].items() if k != "worker_main") / r["n"]
    # SKUs per CPU-second, line / bare chain: the throughput ratio on cores nobody else uses
    ratio = {
        "steady": line["steady_per_s"] / base["steady_per_s"],
        "batch": line["batch_per_s"] / base["batch_per_s"],
        "cpu": base["cpu_s_per_sku"]["total"] / line["cpu_s_per_sku"]["total"],
        "cpu_with_fake": base["cpu_s_per_sku"]["total"]
        / (line["cpu_s_per_sku"]["total"] + line["fake_provider_cpu_s_per_sku"]),
    }
    table = Table(
        title=f"SKUs/s, one worker process (prefork, concurrency {opts.concurrency}), private Redis broker, "
        f"instant fake provider, presets {opts.presets}, {os.cpu_count()} cores"
    )
    for c in (
        "run",
        "N",
        "done",
        "first finish s",
        "last finish s",
        "steady /s",
        "batch /s",
        "ratio steady",
        "ratio batch",
    ):
        table.add_column(c, justify="right")
    for r, q in ((base, None), (line, ratio)):
        table.add_row(
            r["name"],
            str(r["n"]),
            str(r["done"]),
            f"{r['first_finish_s']:.1f}",
            f"{r['last_finish_s']:.1f}",
            f"{r['steady_per_s']:.2f}",
            f"{r['batch_per_s']:.2f}",
            "1.00x" if q is None else f"{q['steady']:.3f}x",
            "1.00x" if q is None else f"{q['batch']:.3f}x",
        )
    console.print(table)
    console.print(
        "line stage seconds per SKU (mean of successful attempts): "
        + ", ".join(f"{k} {v:.3f}" for k, v in sorted(line["stage_s_per_sku"].items()))
    )
    for r in (base, line):
        console.print(f"{r['name']}: CPU s per SKU " + ", ".join(f"{k} {v:.4f}" for k, v in r["cpu_s_per_sku"].items()))
    console.print(
        f"[bold]ratio at equal CPU (SKUs per CPU-second, line / bare chain): {ratio['cpu']:.3f}x[/] "
        f"(counting the fake provider's CPU too: {ratio['cpu_with_fake']:.3f}x)"
    )
    console.print(
        f"fake provider CPU (this process) per SKU: {line['fake_provider_cpu_s_per_sku']:.3f} s, "
        "on the same 2 cores as the workers"
    )
    console.print(f"[dim]load average (1, 5, 15 min) before {load_before}, after {load_after}[/]")
    write_results(
        opts.json, "overhead", opts, [base, line], ratio=ratio, load_before=load_before, load_after=load_after
    )
    return 0 if line["failed"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
