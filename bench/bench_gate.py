"""The quality gate on the demo: every demo flat-lay rendered by the local compositor for the default
presets (after the input checks), each output judged by the LocalJudge; counts of outcomes and of
failed checks, and the render plan's saving per SKU at Nano Banana 2 prices.

    python bench/bench_gate.py [--presets amazon_main,shopify,thumbnail,banner] [--json bench/results/gate.json]

No model calls, no job table: the domain functions the render stage runs. The reference image of each
SKU is the first catalog photo of its category (retrieval is not under test here).
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from _common import write_results  # noqa: E402

from hitline.demo.sampledata import generate_demo  # noqa: E402
from hitline.domain.imaging import load_presets  # noqa: E402
from hitline.domain.models import NewProduct, StyleAnalysis  # noqa: E402
from hitline.domain.pricing import PriceTable  # noqa: E402
from hitline.domain.render_plan import plan_renders  # noqa: E402
from hitline.jobs.quality import check_inputs  # noqa: E402
from hitline.providers.local.judge import LocalJudge  # noqa: E402
from hitline.providers.local.render import LocalRenderer  # noqa: E402

STYLE = StyleAnalysis(scene="studio", lighting="soft", pose="flat", mood="calm", prompt="demo")
RENDER_MODEL = "google/gemini-3.1-flash-image-preview"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="amazon_main,shopify,thumbnail,banner")
    parser.add_argument("--json", type=Path, default=None)
    opts = parser.parse_args(argv)
    names = opts.presets.split(",")
    prices = PriceTable.load()
    plan = plan_renders(load_presets(names), lambda size: prices.image_cost(RENDER_MODEL, size))
    renderer, judge = LocalRenderer(), LocalJudge()
    outcomes: Counter[str] = Counter()
    failed_checks: Counter[str] = Counter()
    input_notes: Counter[str] = Counter()
    rows = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        catalog, new = generate_demo(Path(tmp) / "demo")
        hits = list(csv.DictReader((catalog / "products.csv").open()))
        for row in csv.DictReader((new / "new_products.csv").open()):
            flat = new / row["image_path"]
            ref = next((catalog / h["image_path"] for h in hits if h["category"] == row["category"]), None)
            product = NewProduct(row["new_id"], flat, row["category"], row["style"], row["season"], row["prompt_hint"])
            presets, inputs = check_inputs(flat, load_presets(names))
            for name, why in inputs["failed_presets"].items():
                input_notes[f"{name}: preset failed (resolution)"] += 1
            for name, size in inputs["downsized"].items():
                input_notes[f"{name}: downsized to {size}"] += 1
            for preset in presets:
                img = renderer.render(flat, [ref] if ref else [], STYLE, product, preset)
                out = Path(tmp) / f"{row['new_id']}-{preset.name}.png"
                with Image.open(io.BytesIO(img.data)) as im:
                    im.save(out)
                verdict = judge.judge(flat, out, preset)
                status = "passed" if verdict.passed else "needs_review"
                outcomes[status] += 1
                bad = [c["name"] for c in verdict.checks if not c["passed"]]
                failed_checks.update(f"{preset.name}:{n}" for n in bad)
                rows.append({"sku": row["new_id"], "preset": preset.name, "size": preset.size, "status": status,
                             "failed": bad, "reasons": verdict.reasons})
    seconds = time.perf_counter() - t0
    print(f"{len(rows)} outputs in {seconds:.1f} s: " + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())))
    for k, v in sorted(input_notes.items()):
        print(f"  input: {k} x{v}")
    for k, v in failed_checks.most_common():
        print(f"  failed check {k}: {v}")
    print(f"render plan: {plan.summary()}")
    write_results(opts.json, "gate", opts, rows, outcomes=dict(outcomes), failed_checks=dict(failed_checks),
                  inputs=dict(input_notes), render_plan=plan.summary(), seconds=round(seconds, 1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
