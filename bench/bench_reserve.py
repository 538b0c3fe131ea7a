"""A render's budget reservation as a batch grows: the running total on the batch row (`batch.spent_usd`,
migration 0004) against what a reservation did before, a SUM over every charge of the batch, in the same
run on the same database.

A 10,000-SKU batch holds ~30,000 charges by its end (embed, analyze, render: one each per SKU, more with
the judge). The reservation runs under the batch row's lock, so what it costs is also how long every
other worker's reservation waits. For each size N: N charges are recorded, then R reservations are made
(new keys, a budget far away), alternating rounds with the old budget check (`SUM(cost_usd)` over the
batch, under the same lock) run in the same transaction shape. Reported: the median over rounds of wall
and client-CPU milliseconds per reservation, and the ratio old / new.

    python bench/bench_reserve.py                                  # N = 0, 3000, 30000, 100000
    python bench/bench_reserve.py --sizes 0 30000 --json bench/results/reserve.json
"""

from __future__ import annotations

import sys
from pathlib import Path as _P

sys.path.insert(0, str(_P(__file__).resolve().parent))
from _common import scratch_database, write_results  # noqa: E402

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

console = Console(width=140)


def _old_budget_check(c, batch: str) -> float:  # noqa: ANN001
    """What reserve ran before the running total: lock the batch row, then SUM its charges."""
    from db import crud

    c.execute(crud._LOCK_BATCH, {"bid": batch})
    return float(c.execute(crud._SPENT, {"bid": batch}).scalar() or 0.0)


def _timed(url: str, op: Callable[..., object], n: int) -> tuple[float, float]:
    from db.session import connection_scope

    w0, c0 = time.perf_counter(), time.process_time()
    for i in range(n):
        with connection_scope(url) as c:
            op(c, i)
    return (time.perf_counter() - w0) / n * 1e3, (time.process_time() - c0) / n * 1e3


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[0, 3000, 30000, 100000], help="charges in the batch")
    ap.add_argument("--reservations", type=int, default=100, help="per round and mode")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", type=Path, default=None)
    opts = ap.parse_args(argv)

    from sqlalchemy import text

    from db import crud
    from db.session import connection_scope, engine_for, init_db, session_scope

    runs = []
    with scratch_database("bench_reserve") as url:
        init_db(url)
        with session_scope(url) as s:
            crud.create_batch(s, "b1", catalog_dir="c", new_dir="n", out_dir="o", options={}, budget_usd=1e9, notes=[])
        have, serial = 0, 0
        for size in sorted(opts.sizes):
            with engine_for(url)[0].begin() as c:  # the batch's earlier charges, in one statement
                c.execute(
                    text(
                        "INSERT INTO charge (batch_id, stage, key, model, cost_usd, state, created_at) "
                        "SELECT 'b1', 'embed', 'old' || g, 'm', 0.001, 'charged', now() "
                        "FROM generate_series(CAST(:a AS integer), CAST(:b AS integer)) g"
                    ),
                    {"a": have, "b": size - 1},
                )
                c.execute(
                    text(
                        "UPDATE batch SET spent_usd = (SELECT COALESCE(SUM(cost_usd), 0) FROM charge WHERE batch_id = 'b1')"
                    )
                )
                c.execute(text("ANALYZE charge"))
            have = size
            new_w, new_c, old_w, old_c = [], [], [], []
            for _ in range(opts.rounds):
                serial += 1
                tag = serial
                w, cpu = _timed(
                    url,
                    lambda c, i, tag=tag: crud.reserve(c, "b1", None, "render", f"r{tag}-{i}", "m", 1e-6, 1e9),
                    opts.reservations,
                )
                new_w.append(w), new_c.append(cpu)
                w, cpu = _timed(url, lambda c, i: _old_budget_check(c, "b1"), opts.reservations)
                old_w.append(w), old_c.append(cpu)
            with connection_scope(url) as c:  # the reservations above are charges too: counted in the next size
                have_now = c.execute(text("SELECT count(*) FROM charge")).scalar()
            run = {
                "charges": size,
                "new_wall_ms": statistics.median(new_w),
                "new_cpu_ms": statistics.median(new_c),
                "old_check_wall_ms": statistics.median(old_w),
                "old_check_cpu_ms": statistics.median(old_c),
            }
            run["wall_ratio_old_over_new"] = run["old_check_wall_ms"] / run["new_wall_ms"]
            runs.append(run)
            console.print(f"[dim]{size} charges ({have_now} after the rounds) done[/]")

    table = Table(title="one budget reservation, by charges already in the batch (median of rounds)")
    for col in (
        "charges",
        "reserve now: wall ms",
        "client CPU ms",
        "old check alone: wall ms",
        "client CPU ms",
        "old check / reserve now",
    ):
        table.add_column(col, justify="right")
    for r in runs:
        table.add_row(
            f"{r['charges']:,}",
            f"{r['new_wall_ms']:.2f}",
            f"{r['new_cpu_ms']:.2f}",
            f"{r['old_check_wall_ms']:.2f}",
            f"{r['old_check_cpu_ms']:.2f}",
            f"{r['wall_ratio_old_over_new']:.2f}x",
        )
    console.print(table)
    console.print(
        "[dim]the old check is only the lock + SUM of the old reserve; the whole old reservation "
        "added the same SELECT and INSERT as the new one[/]"
    )
    write_results(opts.json, "reserve", opts, runs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
