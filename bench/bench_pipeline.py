"""Throughput of the embedded line (in-process Celery worker, local provider) by worker concurrency.

Generates the demo data once (`hitline.demo.sampledata.generate_demo`: 48 hits, 6 new SKUs), then runs
`hitline run` as a subprocess per concurrency level, each in a fresh data dir (`HITLINE_DATA_DIR`) with
`HITLINE_WORKER_CONCURRENCY=c`. SKUs/minute are measured two ways: over the batch (from the batch's
creation to the last SKU job's update, read from the SQLite job table: no interpreter start-up or
model loading) and over the whole command (wall clock). Ratios are against concurrency 1, same run.

    python bench/bench_pipeline.py                              # c = 1, 2, 4; presets thumbnail,banner
    python bench/bench_pipeline.py --skus 18 --concurrency 1,4  # more SKUs (more demo seeds)
    python bench/bench_pipeline.py --polling-interval 0.05      # also runs with a faster memory broker poll
"""

from __future__ import annotations

import sys
from pathlib import Path as _P

sys.path.insert(0, str(_P(__file__).resolve().parent))
from _common import write_results  # noqa: E402

import argparse
import csv
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console(width=150)
# runs the hitline CLI with the in-memory broker polled every N s instead of kombu's default (1 s)
_PATCHED_CLI = (
    "import sys; import workers.app as w; "
    "w.app.conf.broker_transport_options = {**w.app.conf.broker_transport_options, "
    "'polling_interval': float(sys.argv.pop(1))}; "
    "from hitline.cli import app; sys.argv[0] = 'hitline'; app()"
)


def make_data(dest: Path, skus: int) -> tuple[Path, Path]:
    """The demo catalog, and `skus` new products (more demo seeds when more than 6 are asked for)."""
    from hitline.demo.sampledata import generate_demo

    catalog, new = generate_demo(dest / "demo")
    with open(new / "new_products.csv", newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header, rows = next(reader), list(reader)
    seed = 8
    while len(rows) < skus:
        _, extra = generate_demo(dest / f"extra{seed}", seed=seed)
        with open(extra / "new_products.csv", newline="", encoding="utf-8") as f:
            more = list(csv.reader(f))[1:]
        for row in more:
            new_id = f"NEW{len(rows) + 1:03d}"
            src = extra / row[1]
            dst = new / "new_products" / f"{new_id}{src.suffix}"
            shutil.copyfile(src, dst)
            rows.append([new_id, f"new_products/{dst.name}", *row[2:]])
        seed += 1
    rows = rows[:skus]
    with open(new / "new_products.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return catalog, new


def batch_span(db: Path) -> tuple[float, int, int]:
    """Seconds from the batch's creation to the last SKU job update, SKUs done, SKUs in the batch."""
    con = sqlite3.connect(db)
    try:
        created = con.execute("select created_at from batch order by created_at desc limit 1").fetchone()[0]
        last, done, total = con.execute(
            "select max(updated_at), sum(case when state = 'done' then 1 else 0 end), count(*) "
            "from job where kind = 'sku'"
        ).fetchone()
    finally:
        con.close()
    span = (datetime.fromisoformat(last) - datetime.fromisoformat(created)).total_seconds()
    return span, int(done or 0), int(total or 0)


def run_once(
    work: Path, catalog: Path, new: Path, concurrency: int, presets: str, timeout: float, polling: float | None
) -> dict[str, Any]:
    tag = f"c{concurrency}" + (f"-poll{polling:g}" if polling is not None else "")
    data_dir, out = work / f"data-{tag}", work / f"out-{tag}"
    shutil.rmtree(data_dir, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    env = {
        **os.environ,
        "HITLINE_DATA_DIR": str(data_dir),
        "HITLINE_WORKER_CONCURRENCY": str(concurrency),
        "HITLINE_PROVIDER": "local",
        "HITLINE_QUALITY_GATE": os.environ.get("HITLINE_QUALITY_GATE", "0"),
    }
    for key in ("HITLINE_BROKER_URL", "HITLINE_DATABASE_URL", "HITLINE_MILVUS_URI", "HITLINE_OPENROUTER_API_KEY"):
        env.pop(key, None)  # embedded mode only
    args = ["run", "--catalog", str(catalog), "--new", str(new), "--out", str(out), "--presets", presets]
    if polling is None:
        hitline = shutil.which("hitline", path=str(Path(sys.executable).parent)) or "hitline"
        cmd = [hitline, *args]
    else:
        cmd = [sys.executable, "-c", _PATCHED_CLI, str(polling), *args]
    t = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(
            f"{tag}: hitline run failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        )
    span, done, total = batch_span(data_dir / "jobs.sqlite")
    return {
        "tag": tag,
        "concurrency": concurrency,
        "polling_interval_s": polling,
        "wall_s": wall,
        "batch_s": span,
        "skus_done": done,
        "skus": total,
        "skus_per_min_batch": done / span * 60 if span > 0 else 0.0,
        "skus_per_min_wall": done / wall * 60 if wall > 0 else 0.0,
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--concurrency", default="1,2,4", help="comma list; the first is the baseline")
    ap.add_argument("--presets", default="thumbnail,banner")
    ap.add_argument("--skus", type=int, default=6, help="new SKUs (6 = the demo set)")
    ap.add_argument(
        "--polling-interval",
        type=float,
        default=None,
        help="also run every level with the memory broker polled every N s (default poll: 1 s)",
    )
    ap.add_argument("--timeout", type=float, default=300.0, help="per run, seconds")
    ap.add_argument("--workdir", type=Path, default=None, help="data, outputs (default: a temp dir, removed)")
    ap.add_argument("--json", type=Path, default=None, help="write the results as JSON here")
    opts = ap.parse_args(argv)
    levels = [int(c) for c in opts.concurrency.split(",") if c.strip()]
    if not levels or min(levels) < 1 or opts.skus < 1:
        ap.error("concurrency levels and --skus must be >= 1")

    work = opts.workdir or Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        catalog, new = make_data(work, opts.skus)
        runs = []
        pollings: list[float | None] = [None] + ([opts.polling_interval] if opts.polling_interval else [])
        for polling in pollings:
            for c in levels:
                r = run_once(work, catalog, new, c, opts.presets, opts.timeout, polling)
                console.print(
                    f"[dim]{r['tag']}: {r['skus_done']}/{r['skus']} SKUs, batch {r['batch_s']:.1f} s, "
                    f"wall {r['wall_s']:.1f} s[/]"
                )
                runs.append(r)
    finally:
        if opts.workdir is None:
            shutil.rmtree(work, ignore_errors=True)

    base = runs[0]
    table = Table(
        title=f"embedded line, local provider, {opts.skus} SKUs, presets {opts.presets}, {os.cpu_count()} cores"
    )
    for col in (
        "concurrency",
        "broker poll",
        "SKUs done",
        "batch s",
        "SKUs/min (batch)",
        "ratio vs c=1",
        "wall s",
        "SKUs/min (wall)",
        "ratio vs c=1 (wall)",
    ):
        table.add_column(col, justify="right")
    for r in runs:
        r["ratio_batch"] = r["skus_per_min_batch"] / base["skus_per_min_batch"]
        r["ratio_wall"] = r["skus_per_min_wall"] / base["skus_per_min_wall"]
        table.add_row(
            str(r["concurrency"]),
            "app default" if r["polling_interval_s"] is None else f"{r['polling_interval_s']:g} s",
            f"{r['skus_done']}/{r['skus']}",
            f"{r['batch_s']:.1f}",
            f"{r['skus_per_min_batch']:.1f}",
            f"{r['ratio_batch']:.2f}x",
            f"{r['wall_s']:.1f}",
            f"{r['skus_per_min_wall']:.1f}",
            f"{r['ratio_wall']:.2f}x",
        )
    console.print(table)
    console.print(
        "[dim]batch = batch created -> last SKU job updated (job table); wall = the whole `hitline run` "
        "(start-up, catalog embed + index, report). Baseline: the first row.[/]"
    )
    write_results(opts.json, "pipeline", opts, runs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
