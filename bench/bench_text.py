"""Words on the picture (issue 24): the overlay typesetter read back by the bundled OCR.

For SKUs x 5 locales (en-US, de-DE, fr-FR, ja-JP, zh-CN) and every preset with text slots (banner,
story), each slot is typeset at the preset's SMALLEST allowed glyph size (min_px: the hardest case the
presets allow) on a backdrop made from a demo output, then read back: character error rate per locale,
misreads, time to typeset and to read per (output, locale). The baseline measured in the same run is
the OCR read of the same slot at the largest size that fits (what the line usually draws).
Cost per SKU for 5 locales, model vs overlay, at the prices in prices.toml (Nano Banana 2).

    python bench/bench_text.py --skus 4 --out bench/results/text.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_results  # noqa: E402

from hitline.domain.imaging import load_presets  # noqa: E402
from hitline.domain.pricing import PriceTable  # noqa: E402
from hitline.domain.promo_copy import format_price  # noqa: E402
from hitline.domain.render_plan import plan_renders  # noqa: E402
from hitline.domain.textcheck import check_slots, status  # noqa: E402
from hitline.domain.typeset import draw_slots, layout_text  # noqa: E402

LOCALES = ("en-US", "de-DE", "fr-FR", "ja-JP", "zh-CN")
CURRENCY = {"en-US": "USD", "de-DE": "EUR", "fr-FR": "EUR", "ja-JP": "JPY", "zh-CN": "CNY"}
# (en, de, fr, ja, zh) per product word; headlines are built from two of them per SKU
WORDS = [
    ("Linen summer dress", "Leinen-Sommerkleid", "Robe d'été en lin", "リネンのサマードレス", "亚麻夏季连衣裙"),
    ("Crisp white tee", "Weißes T-Shirt", "T-shirt blanc", "定番の白Tシャツ", "经典白色T恤"),
    ("Tailored city jacket", "Taillierte Jacke", "Veste ajustée", "テーラードジャケット", "修身西装外套"),
    ("Wide trousers", "Weite Hose", "Pantalon large", "ワイドパンツ", "阔腿裤"),
    ("Pleated satin skirt", "Plissierter Rock", "Jupe plissée", "プリーツスカート", "百褶缎面裙"),
    ("Oversized knit", "Oversize-Pullover", "Pull oversize", "オーバーサイズニット", "宽松针织衫"),
    ("Soft cotton hoodie", "Weicher Hoodie", "Sweat doux", "やわらかパーカー", "柔软连帽衫"),
    ("Everyday denim", "Alltags-Jeans", "Jean du quotidien", "デイリーデニム", "日常牛仔裤"),
]
TAGS = [
    ("new in", "neu", "nouveau", "新作", "新品"),
    ("sale", "Sale", "soldes", "セール", "特惠"),
    ("best seller", "Bestseller", "best-seller", "人気", "热卖"),
]


def copy_for(sku: int, locale: str) -> dict[str, str]:
    i = LOCALES.index(locale)
    word, tag = WORDS[sku % len(WORDS)][i], TAGS[sku % len(TAGS)][i]
    headline = f"{word}, {tag}" if i < 3 else f"{word} {tag}"
    price = str(round(19.99 + 10 * sku, 2)) if locale != "ja-JP" else str(2980 + 500 * sku)
    return {"headline": headline, "price": format_price(price, CURRENCY[locale], locale)}


def backdrop(preset, sku: int) -> Image.Image:  # noqa: ANN001
    """A light studio gradient with grain, tinted per SKU (the scene outputs' look)."""
    rng = np.random.default_rng(sku)
    tint = rng.uniform(0.85, 1.0, 3)
    t = np.linspace(1.0, 0.86, preset.height)[:, None, None]
    arr = np.clip(235 * tint[None, None, :] * t + rng.integers(0, 5, (preset.height, preset.width, 1)), 0, 255)
    return Image.fromarray(np.broadcast_to(arr, (preset.height, preset.width, 3)).astype(np.uint8))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--skus", type=int, default=4)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--no-baseline", action="store_true", help="skip the read at the largest size (halves the time)")
    opts = ap.parse_args()
    presets = [p for p in load_presets() if p.slots]
    per_locale: dict[str, dict[str, list[float]]] = {
        loc: {"cer": [], "cer_base": [], "typeset_s": [], "ocr_s": []} for loc in LOCALES
    }
    misreads: list[dict[str, object]] = []
    for sku in range(opts.skus):
        for preset in presets:
            bg = backdrop(preset, sku)
            for loc in LOCALES:
                texts = {k: v for k, v in copy_for(sku, loc).items() if k in {s.name for s in preset.slots}}
                for forced, key in ((True, "cer"), (False, "cer_base"))[: 1 if opts.no_baseline else 2]:
                    t0 = time.perf_counter()
                    lays = {
                        s.name: layout_text(
                            texts[s.name], s, loc, preset.width, preset.height, max_px=s.min_px if forced else None
                        )
                        for s in preset.slots
                    }
                    img, _ = draw_slots(bg, lays)
                    t1 = time.perf_counter()
                    readings = check_slots(
                        img,
                        texts,
                        {s.name: s.pixels(preset.width, preset.height) for s in preset.slots},
                        {k: v.size for k, v in lays.items()},
                    )
                    t2 = time.perf_counter()
                    per_locale[loc][key] += [r.cer for r in readings]
                    if forced:
                        per_locale[loc]["typeset_s"].append(t1 - t0)
                        per_locale[loc]["ocr_s"].append(t2 - t1)
                    verdict, reasons = status(readings)
                    if verdict != "verified":
                        misreads.append(
                            {"sku": sku, "preset": preset.name, "locale": loc, "min_px": forced, "reasons": reasons}
                        )
            print(f"sku {sku} {preset.name}: {', '.join(LOCALES)} done", flush=True)
    prices = PriceTable.load()
    model = "google/gemini-3.1-flash-image-preview"
    cost = lambda size: prices.image_cost(model, size)  # noqa: E731
    default = load_presets(["amazon_main", "shopify", "thumbnail", "banner", "story"])
    overlay = plan_renders(default, cost).cost_usd
    text_free = plan_renders([p for p in default if not p.slots], cost).cost_usd
    model_5 = text_free + 5 * sum(cost(p.size) for p in default if p.slots)
    summary = {
        loc: {
            "slots_read": len(v["cer"]),
            "mean_cer_min_px": round(statistics.mean(v["cer"]), 4),
            "exact_min_px": sum(c == 0 for c in v["cer"]),
            "mean_cer_largest": round(statistics.mean(v["cer_base"]), 4) if v["cer_base"] else None,
            "typeset_s_per_output": round(statistics.mean(v["typeset_s"]), 3),
            "ocr_s_per_output": round(statistics.mean(v["ocr_s"]), 2),
        }
        for loc, v in per_locale.items()
    }
    costs = {
        "presets": [p.name for p in default],
        "model_usd_per_sku_5_locales": round(model_5, 3),
        "overlay_usd_per_sku_5_locales": round(overlay, 3),
        "ratio_overlay_vs_model": round(overlay / model_5, 3),
    }
    for loc, s in summary.items():
        print(loc, s)
    print("misreads:", misreads)
    print("cost:", costs)
    write_results(opts.out, "bench_text", opts, summary, misreads=misreads, cost=costs)


if __name__ == "__main__":
    main()
