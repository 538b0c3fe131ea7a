"""The local line's CPU per SKU, by part: the render stage's work for the four default presets on
real-like 2-3 MP flat-lays (tests/cutout_cases.py's cases, built from the shared catalog photos and
enlarged 3x to 1440 x 1920 or so, as a phone photographs a flat-lay), judged by the quality gate.

    python bench/bench_local.py [--skus 4] [--presets amazon_main,shopify,thumbnail,banner] [--json ...]

Each SKU is run twice in the same process, in turn: `before` judges every output as the gate did
before issue 26 (each scene output segmented again with u2netp, text read on every whole output,
the flat-lay's colour measured per output) and `after` as the LocalJudge does now (the placement
mask the compositor wrote into the PNG, text read once per cut-out in the product's box, the flat-lay
measured once). Verdicts of both are compared check by check on the checks both make (`after` adds
the checks that judge against the placement; any of those failing on these good outputs is listed). CPU seconds are process CPU (every
thread: onnxruntime's included), measured with time.process_time.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from testkit import cutout_cases  # noqa: E402
from _common import write_results  # noqa: E402

from hitline import line  # noqa: E402
from hitline.domain import cutout  # noqa: E402
from hitline.domain.cutout import product_mask  # noqa: E402
from hitline.domain.imaging import load_presets  # noqa: E402
from hitline.domain.images import load_image  # noqa: E402
from hitline.domain.models import StyleAnalysis  # noqa: E402
from hitline.domain.quality import gate  # noqa: E402
from hitline.domain.render_plan import plan_renders  # noqa: E402
from hitline.jobs.quality import check_inputs  # noqa: E402
from hitline.providers.local.judge import LocalJudge  # noqa: E402
from hitline.providers.local.render import LocalRenderer  # noqa: E402

STYLE = StyleAnalysis(scene="studio", lighting="soft", pose="flat", mood="calm", prompt="bench")
CASES = [
    "frame_line_dress",
    "three_piece_set",
    "soft_shadow_tee",
    "cream_knit_on_white",
    "top_and_skirt_apart",
    "pleated_highlights",
]
REFERENCE = cutout_cases.SHARED_IMAGES / "SKU017.jpg"


def flatlays(n: int, folder: Path) -> list[Path]:
    out = []
    for name in CASES[:n]:
        photo, _ = cutout_cases.build(name)
        big = photo.resize((photo.width * 3, photo.height * 3), Image.LANCZOS)
        path = folder / f"{name}.jpg"
        big.save(path, quality=90)
        out.append(path)
    return out


class Clock:
    def __init__(self) -> None:
        self.parts: dict[str, float] = defaultdict(float)

    def add(self, part: str, t0: float) -> None:
        self.parts[part] += time.process_time() - t0


def run_sku(flat: Path, names: list[str], mode: str, folder: Path) -> tuple[dict[str, float], dict[str, list]]:
    """The render stage's local work for one SKU: (CPU s by part, verdict per output)."""
    clock = Clock()

    def forget() -> None:  # before: the input checks, the renderer and the gate each cut the flat-lay out
        if mode == "before":
            cutout._masks.clear()

    cutout._masks.clear()  # every run starts without the flat-lay's mask
    renderer, judge = LocalRenderer(), LocalJudge()  # fresh: no cut-out cached from another run
    t0 = time.process_time()
    presets, _ = check_inputs(flat, load_presets(names))
    clock.add("input checks (cut-out)", t0)
    plan = plan_renders(presets, lambda size: 0.0)
    paths: dict[str, Path] = {}
    verdicts: dict[str, list] = {}
    for preset in sorted(presets, key=lambda p: p.name in plan.derived):
        dest = folder / f"{mode}-{flat.stem}-{preset.name}.png"
        t0 = time.process_time()
        if preset.name in plan.derived:
            line.derive_preset(paths[plan.derived[preset.name]], preset, dest)
            clock.add("resize (derived)", t0)
        else:
            if not renderer._cutouts:
                forget()
            cut = renderer._cutout(flat)
            clock.add("cut-out", t0)
            t0 = time.process_time()
            from hitline.domain.compose import compose_placed
            from hitline.domain.placement import png_info

            image, placed = compose_placed(cut, load_image(REFERENCE), STYLE, preset)
            clock.add("compositing", t0)
            t0 = time.process_time()
            buf = io.BytesIO()
            image.save(buf, format="PNG", compress_level=3, pnginfo=png_info(placed))
            dest.write_bytes(buf.getvalue())
            clock.add("encoding", t0)
        paths[preset.name] = dest
        timings: dict[str, float] = {}
        t0 = time.process_time()
        if mode == "before":
            if not verdicts:
                forget()  # the old LocalJudge kept one mask per flat-lay
            f = load_image(flat)
            checks = [c.to_dict() for c in gate(load_image(dest), preset, f, product_mask(f), timings=timings)]
        else:
            checks = judge.judge(flat, dest, preset, timings=timings).checks
        total = time.process_time() - t0
        for k, v in timings.items():
            clock.parts[f"gate: {k}"] += v
        clock.parts["gate: other (loading, flat-lay mask)"] += total - sum(timings.values())
        verdicts[preset.name] = [(c["name"], c["passed"]) for c in checks]
    return dict(clock.parts), verdicts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skus", type=int, default=4)
    parser.add_argument("--presets", default="amazon_main,shopify,thumbnail,banner")
    parser.add_argument("--json", type=Path, default=None)
    opts = parser.parse_args(argv)
    names = opts.presets.split(",")
    load0 = os.getloadavg()[0]
    per_mode: dict[str, dict[str, float]] = {"before": defaultdict(float), "after": defaultdict(float)}
    differ: list[str] = []
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        flats = flatlays(opts.skus, folder)
        for flat in flats:
            got = {}
            for mode in ("before", "after"):
                parts, verdicts = run_sku(flat, names, mode, folder)
                got[mode] = verdicts
                for k, v in parts.items():
                    per_mode[mode][k] += v
                rows.append(
                    {
                        "sku": flat.stem,
                        "mode": mode,
                        "parts": {k: round(v, 3) for k, v in parts.items()},
                        "verdicts": verdicts,
                    }
                )
            for p in got["before"]:
                # the checks both judges make (`after` also has the checks that need the placement)
                before = dict(got["before"][p])
                after = {k: v for k, v in got["after"][p] if k in before}
                if before != after:
                    differ.append(f"{flat.stem}/{p}: {before} vs {after}")
                new_failed = [k for k, v in got["after"][p] if k not in before and not v]
                if new_failed:
                    differ.append(f"{flat.stem}/{p}: a check only `after` makes failed: {new_failed}")
    n = len(flats)
    keys = sorted(set(per_mode["before"]) | set(per_mode["after"]), key=lambda k: (k.startswith("gate"), k))
    print(f"CPU seconds per SKU ({n} SKUs, presets {opts.presets}; load average {load0:.1f})")
    print(f"{'part':44s} {'before':>8s} {'after':>8s}")
    summary = {}
    for mode in ("before", "after"):
        total = sum(per_mode[mode].values()) / n
        gate_s = sum(v for k, v in per_mode[mode].items() if k.startswith("gate")) / n
        summary[mode] = {
            "total": round(total, 2),
            "gate": round(gate_s, 2),
            "parts": {k: round(v / n, 3) for k, v in per_mode[mode].items()},
        }
    for k in keys:
        print(f"{k:44s} {per_mode['before'].get(k, 0) / n:8.2f} {per_mode['after'].get(k, 0) / n:8.2f}")
    for label in ("gate", "total"):
        b, a = summary["before"][label], summary["after"][label]
        print(f"{label.upper():44s} {b:8.2f} {a:8.2f}   ratio {a / b:.2f}x")
    print(
        f"gate share of the total: before {summary['before']['gate'] / summary['before']['total']:.0%}, "
        f"after {summary['after']['gate'] / summary['after']['total']:.0%}"
    )
    print("verdicts: " + ("equal for every output and check" if not differ else f"{len(differ)} differ:"))
    for d in differ:
        print("  " + d)
    write_results(
        opts.json,
        "local",
        opts,
        rows,
        summary=summary,
        verdicts_differ=differ,
        load_average=round((load0 + os.getloadavg()[0]) / 2, 1),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
