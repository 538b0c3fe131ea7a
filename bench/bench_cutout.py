"""Cut-out quality on the labelled flat-lays of tests/cutout_cases.py: IoU against the exact masks,
mean and worst per difficulty, for hitline's cut-out (`product_mask`) and, as the baseline measured
in the same run, the learned model alone (u2netp saliency > 0.5).

    python bench/bench_cutout.py [--json bench/results/cutout.json] [--sheet /tmp/cutout.png]

`--sheet` writes a picture of every case with the exact outline (green), u2netp's (red) and
hitline's (blue): look at it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from testkit import cutout_cases  # noqa: E402
from _common import write_results  # noqa: E402

from hitline.domain.cutout import _product_mask, product_mask, subject_mask  # noqa: E402
from hitline.errors import InputError  # noqa: E402


def measure() -> list[dict]:
    rows = []
    for name, (difficulty, _) in cutout_cases.CASES.items():
        photo, truth = cutout_cases.build(name)
        t0 = time.perf_counter()
        base = subject_mask(photo) > 0.5
        t1, c1 = time.perf_counter(), time.process_time()
        try:
            ours = product_mask(photo)
        except InputError:
            ours = np.zeros_like(truth)
        t2, c2 = time.perf_counter(), time.process_time()
        try:  # the cut-out before issue 26: no inner frame, corner marks kept
            before = _product_mask(photo, inside_frame=False, drop_marks=False)
        except InputError:
            before = np.zeros_like(truth)
        rows.append(
            {
                "case": name,
                "difficulty": difficulty,
                "size": list(photo.size),
                "iou_u2netp": round(cutout_cases.iou(base, truth), 4),
                "iou_hitline": round(cutout_cases.iou(ours, truth), 4),
                "iou_before_i26": round(cutout_cases.iou(before, truth), 4),
                "s_u2netp": round(t1 - t0, 3),
                "s_hitline": round(t2 - t1, 3),
                "cpu_s_hitline": round(c2 - c1, 3),
                "_masks": (photo, truth, base, ours),
            }
        )
    return rows


def summarise(rows: list[dict]) -> list[dict]:
    by: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by[r["difficulty"]].append(r)
    by["all"] = rows
    out = []
    for difficulty, rs in by.items():
        base = [r["iou_u2netp"] for r in rs]
        ours = [r["iou_hitline"] for r in rs]
        out.append(
            {
                "difficulty": difficulty,
                "cases": len(rs),
                "before_i26_mean": round(float(np.mean([r["iou_before_i26"] for r in rs])), 3),
                "u2netp_mean": round(float(np.mean(base)), 3),
                "u2netp_worst": round(float(np.min(base)), 3),
                "hitline_mean": round(float(np.mean(ours)), 3),
                "hitline_worst": round(float(np.min(ours)), 3),
            }
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--sheet", type=Path, default=None)
    opts = parser.parse_args(argv)
    load_before = os.getloadavg()
    rows = measure()
    load = {"before": [round(x, 2) for x in load_before], "after": [round(x, 2) for x in os.getloadavg()]}
    summary = summarise(rows)
    console = Console(width=140)
    table = Table(title="cut-out IoU vs exact masks (u2netp alone = baseline, same run)")
    for col in (
        "difficulty",
        "cases",
        "u2netp mean",
        "u2netp worst",
        "before i26 mean",
        "hitline mean",
        "hitline worst",
    ):
        table.add_column(col, justify="left" if col == "difficulty" else "right")
    for s in summary:
        table.add_row(
            s["difficulty"],
            str(s["cases"]),
            f"{s['u2netp_mean']:.3f}",
            f"{s['u2netp_worst']:.3f}",
            f"{s['before_i26_mean']:.3f}",
            f"{s['hitline_mean']:.3f}",
            f"{s['hitline_worst']:.3f}",
        )
    console.print(table)
    for r in rows:
        console.print(
            f"  {r['case']:<28} {r['difficulty']:<15} u2netp {r['iou_u2netp']:.3f}  "
            f"before issue 26 {r['iou_before_i26']:.3f}  hitline {r['iou_hitline']:.3f}  "
            f"({r['s_hitline']:.2f} s, cpu {r['cpu_s_hitline']:.2f} s)"
        )
    console.print(f"load average {load['before']} -> {load['after']}")
    if opts.sheet:
        cutout_cases.sheet(
            [(r["case"], r["_masks"][0], r["_masks"][1], [r["_masks"][2], r["_masks"][3]]) for r in rows], opts.sheet
        )
        print(f"wrote {opts.sheet}")
    for r in rows:
        r.pop("_masks")
    write_results(opts.json, "cutout", opts, rows, summary=summary, loadavg=load)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
