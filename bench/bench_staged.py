"""Staged vs direct generation on the shipped fake OpenRouter (`hitline run --mode staged|direct`):
image calls, cost per SKU and plates reused, both modes on the same batch in the same run.

    python bench/bench_staged.py [--skus 8] [--presets thumbnail,live_stream]

The batch: the demo catalog's t-shirts only (so every SKU retrieves the same references, the case
staged mode shares plates in) and N SKUs made from the demo's flat-lays (mirrored/rotated copies, each
its own picture). Quality gate off (its re-renders are direct in both modes). Embedded mode, fresh data
dir per mode.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _common import write_results  # noqa: E402

from hitline.demo.sampledata import generate_demo  # noqa: E402
from hitline.fake.server import FakeConfig, running_fake  # noqa: E402

RENDER_MODEL = "google/gemini-3.1-flash-image-preview"


def batch(dest: Path, skus: int) -> tuple[Path, Path]:
    catalog, new = generate_demo(dest)
    rows = (catalog / "products.csv").read_text().splitlines()
    (catalog / "products.csv").write_text("\n".join([rows[0], *[r for r in rows[1:] if ",tshirt," in r]]) + "\n")
    lines = (new / "new_products.csv").read_text().splitlines()
    header, first = lines[0], lines[1]
    src = new / first.split(",")[1]
    out = [header]
    for i in range(skus):
        im = Image.open(src).convert("RGB")
        im = ImageOps.mirror(im) if i % 2 else im
        im = im.rotate(i * 3, fillcolor=(245, 245, 245))
        name = f"B{i:03d}.jpg"
        im.save(src.with_name(name), quality=92)
        out.append(first.replace("NEW001", f"B{i:03d}", 1).replace(src.name, name, 1))
    (new / "new_products.csv").write_text("\n".join(out) + "\n")
    return catalog, new


def run(mode: str, catalog: Path, new: Path, work: Path, presets: str) -> dict:
    with running_fake(FakeConfig(max_image_side=512)) as fake:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HITLINE_")}
        env.update(
            HITLINE_DATA_DIR=str(work / "data"),
            HITLINE_OPENROUTER_API_KEY="sk-bench",
            HITLINE_QUALITY_GATE="0",
            HITLINE_COLLECTION=f"bench_staged_{mode}",
        )
        t = time.perf_counter()
        res = subprocess.run(
            [
                sys.executable,
                "-m",
                "hitline.cli",
                "run",
                "--catalog",
                str(catalog),
                "--new",
                str(new),
                "--out",
                str(work / "out"),
                "--provider",
                "openrouter",
                "--openrouter-base-url",
                fake.base_url,
                "--presets",
                presets,
                "--top-k",
                "10",
                "--min-sales",
                "0",
                "--mode",
                mode,
            ],
            env=env,
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        wall = time.perf_counter() - t
        assert res.returncode == 0, res.stdout + res.stderr
        b = re.search(r"batch (\S+):", res.stdout).group(1)
        calls = [r for r in fake.stats()["recent"] if r["model"] == RENDER_MODEL]
        n_calls = fake.stats()["requests"]["chat/completions"].get(RENDER_MODEL, 0)
    import json
    import sqlite3

    db = work / "data" / "jobs.sqlite"
    with sqlite3.connect(db) as c:
        rows = c.execute("select result from job where batch_id=? and kind='sku'", (b,)).fetchall()
    outputs = [o for (r,) in rows for o in json.loads(r)["render"]["outputs"]]
    plates = {o.get("plate") for o in outputs if o.get("plate")}
    render_cost = sum(o["cost_usd"] for o in outputs)
    return {
        "mode": mode,
        "skus": len(rows),
        "image_calls": n_calls,
        "plate_calls": sum("Background scene plate" in r["text"] for r in calls),
        "plates": len(plates),
        "plate_uses": sum(1 for o in outputs if o.get("plate")),
        "render_cost_per_sku": round(render_cost / len(rows), 4),
        "wall_s": round(wall, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--skus", type=int, default=8)
    ap.add_argument("--presets", default="thumbnail,live_stream")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_staged_"))
    try:
        catalog, new = batch(tmp / "in", args.skus)
        res = [run(m, catalog, new, tmp / m, args.presets) for m in ("direct", "staged")]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    d, s = res
    for r in res:
        print(r)
    print(
        f"staged/direct: image calls {s['image_calls'] / d['image_calls']:.2f}x, "
        f"render cost per SKU {s['render_cost_per_sku'] / d['render_cost_per_sku']:.2f}x, "
        f"plates {s['plates']} made, used {s['plate_uses']} times"
    )
    write_results(ROOT / "bench" / "results" / "staged.json", "staged", args, res)


if __name__ == "__main__":
    main()
