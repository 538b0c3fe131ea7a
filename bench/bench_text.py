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
import json
import random
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
from hitline.domain.promo_copy import CopyError, format_price  # noqa: E402
from hitline.domain.render_plan import plan_renders  # noqa: E402
from hitline.domain.textcheck import check_slots, status  # noqa: E402
from hitline.domain.typeset import draw_slots, layout_text  # noqa: E402

LOCALES = ("en-US", "de-DE", "fr-FR", "ja-JP", "zh-CN")
CURRENCY = {"en-US": "USD", "de-DE": "EUR", "fr-FR": "EUR", "ja-JP": "JPY", "zh-CN": "CNY"}
# Synthetic copy, varied per SKU: a product phrase, then pieces (material, claims, sizes, digits,
# percentages) appended until a length drawn per SKU between 6 characters and the slot's max_chars.
# Latin locales carry accents (ä ö ü ß é è ê ç à ô œ), CJK ones kana/kanji/hanzi mixed with digits and Latin.
NOUNS = {
    "en-US": [
        "Linen summer dress",
        "Crisp white tee",
        "Tailored city jacket",
        "Wide trousers",
        "Pleated skirt",
        "Oversized knit",
        "Cotton hoodie",
        "Everyday denim",
        "Silk blouse",
        "Trench coat",
    ],
    "de-DE": [
        "Leinen-Sommerkleid",
        "Weißes T-Shirt",
        "Taillierte Jacke",
        "Weite Hose",
        "Plissierter Rock",
        "Grobstrick-Pullover",
        "Kapuzenpullover",
        "Alltags-Jeans",
        "Seidenbluse",
        "Übergangsmantel",
    ],
    "fr-FR": [
        "Robe d'été en lin",
        "T-shirt blanc",
        "Veste ajustée",
        "Pantalon large",
        "Jupe plissée",
        "Pull oversize",
        "Sweat à capuche",
        "Jean du quotidien",
        "Chemisier en soie",
        "Trench léger",
    ],
    "ja-JP": [
        "リネンのサマードレス",
        "定番の白Tシャツ",
        "テーラードジャケット",
        "ワイドパンツ",
        "プリーツスカート",
        "オーバーサイズニット",
        "やわらかパーカー",
        "デイリーデニム",
        "シルクブラウス",
        "トレンチコート",
    ],
    "zh-CN": [
        "亚麻夏季连衣裙",
        "经典白色T恤",
        "修身西装外套",
        "阔腿裤",
        "百褶半身裙",
        "宽松针织衫",
        "柔软连帽衫",
        "日常牛仔裤",
        "真丝衬衫",
        "风衣外套",
    ],
}
PIECES = {
    "en-US": [
        "new in",
        "sale",
        "best seller",
        "100% cotton",
        "sizes 6-18",
        "2 for 1",
        "30% off",
        "only 3 left",
        "free returns",
        "organic",
        "made in Portugal",
        "week 48 deal",
    ],
    "de-DE": [
        "neu",
        "Sale",
        "Bestseller",
        "100% Baumwolle",
        "Größe 36-44",
        "2 für 1",
        "30% günstiger",
        "nur 3 übrig",
        "gratis Rückversand",
        "Bio-Qualität",
        "aus Portugal",
        "Angebot der Woche 48",
    ],
    "fr-FR": [
        "nouveau",
        "soldes",
        "best-seller",
        "100% coton",
        "tailles 36-46",
        "2 pour 1",
        "-30% à saisir",
        "plus que 3",
        "retours gratuits",
        "façon bohème",
        "cœur de gamme",
        "fabriqué au Portugal",
    ],
    "ja-JP": [
        "新作",
        "セール",
        "人気No.1",
        "綿100%",
        "サイズS〜XL",
        "2点で10%オフ",
        "30%オフ",
        "残り3点",
        "送料無料",
        "オーガニック",
        "ポルトガル製",
        "48週限定",
    ],
    "zh-CN": [
        "新品",
        "特惠",
        "热卖",
        "100%纯棉",
        "尺码S-XL",
        "买二送一",
        "立减30%",
        "仅剩3件",
        "包邮",
        "有机棉",
        "葡萄牙制造",
        "第48周特价",
    ],
}
CURRENCY = {"en-US": "USD", "de-DE": "EUR", "fr-FR": "EUR", "ja-JP": "JPY", "zh-CN": "CNY"}


def headline(sku: int, locale: str, max_chars: int) -> str:
    """A headline of a length drawn per (SKU, locale, slot) between 6 and max_chars characters."""
    rng = random.Random(f"{sku}:{locale}:{max_chars}")
    target = rng.randint(6, max_chars)
    cjk = locale in ("ja-JP", "zh-CN")
    sep = rng.choice(["", " "]) if cjk else ", "  # CJK copy runs on, or spaces its claims
    text = rng.choice(NOUNS[locale])
    pieces = rng.sample(PIECES[locale], len(PIECES[locale]))
    for piece in pieces:
        joined = f"{text}{sep if text[-1:].isalpha() or cjk else ' '}{piece}"
        if len(joined) > target:
            break
        text = joined
    if len(text) > max_chars:  # a long product phrase on a short target: cut at a word (or character)
        text = text[:max_chars].rsplit(" ", 1)[0] if not cjk else text[:max_chars]
    return text


def copy_for(sku: int, locale: str, preset) -> dict[str, str]:  # noqa: ANN001
    rng = random.Random(f"{sku}:{locale}:price")
    amount = str(rng.randint(300, 980000)) if locale == "ja-JP" else f"{rng.uniform(4, 9999):.2f}"
    out = {}
    for slot in preset.slots:
        if slot.name == "price":
            out["price"] = format_price(amount, CURRENCY[locale], locale)
        else:
            out[slot.name] = headline(sku, locale, slot.max_chars)
    return out


def backdrop(preset, sku: int) -> Image.Image:  # noqa: ANN001
    """A light studio gradient with grain, tinted per SKU (the scene outputs' look)."""
    rng = np.random.default_rng(sku)
    tint = rng.uniform(0.85, 1.0, 3)
    t = np.linspace(1.0, 0.86, preset.height)[:, None, None]
    arr = np.clip(235 * tint[None, None, :] * t + rng.integers(0, 5, (preset.height, preset.width, 1)), 0, 255)
    return Image.fromarray(np.broadcast_to(arr, (preset.height, preset.width, 3)).astype(np.uint8))


def costs() -> dict[str, object]:
    prices = PriceTable.load()
    model = "google/gemini-3.1-flash-image-preview"
    cost = lambda size: prices.image_cost(model, size)  # noqa: E731
    default = load_presets(["amazon_main", "shopify", "thumbnail", "banner", "story"])
    overlay = plan_renders(default, cost).cost_usd
    text_free = plan_renders([p for p in default if not p.slots], cost).cost_usd
    model_5 = text_free + 5 * sum(cost(p.size) for p in default if p.slots)
    return {
        "presets": [p.name for p in default],
        "model_usd_per_sku_5_locales": round(model_5, 3),
        "overlay_usd_per_sku_5_locales": round(overlay, 3),
        "ratio_overlay_vs_model": round(overlay / model_5, 3),
    }


def summarise(per_locale: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, object]]:
    def mean(xs: list[float], nd: int) -> float | None:
        return round(statistics.mean(xs), nd) if xs else None

    return {
        loc: {
            "outputs": len(v["typeset_s"]),
            "slots_read": len(v["cer"]),
            "exact_min_px": sum(c == 0 for c in v["cer"]),
            "misread_min_px": sum(c > 0 for c in v["cer"]),
            "mean_cer_min_px": mean(v["cer"], 4),
            "max_cer_min_px": round(max(v["cer"]), 4) if v["cer"] else None,
            "refused_too_long_at_min_px": len(v["refused"]),
            "headline_chars_max": int(max(v["chars"])) if v["chars"] else None,
            "slots_read_largest": len(v["cer_base"]),
            "mean_cer_largest": mean(v["cer_base"], 4),
            "typeset_s_per_output": mean(v["typeset_s"], 3),
            "ocr_s_per_output": mean(v["ocr_s"], 2),
            "ocr_s_per_output_largest": mean(v["ocr_base_s"], 2),
        }
        for loc, v in per_locale.items()
    }


def merge(opts: argparse.Namespace) -> None:
    """One summary from runs over disjoint SKU ranges: counts added, means weighted by their counts."""
    runs = [json.loads(p.read_text()) for p in opts.merge]
    summary: dict[str, dict[str, object]] = {}
    for loc in LOCALES:
        parts = [r["runs"][loc] for r in runs]

        def total(k: str, parts: list[dict] = parts) -> int:
            return sum(int(p[k] or 0) for p in parts)

        def weighted(k: str, n: str, nd: int, parts: list[dict] = parts) -> float | None:
            w = sum(p[n] for p in parts if p[k] is not None)
            return round(sum(p[k] * p[n] for p in parts if p[k] is not None) / w, nd) if w else None

        summary[loc] = {
            "outputs": total("outputs"),
            "slots_read": total("slots_read"),
            "exact_min_px": total("exact_min_px"),
            "misread_min_px": total("misread_min_px"),
            "mean_cer_min_px": weighted("mean_cer_min_px", "slots_read", 4),
            "max_cer_min_px": max((p["max_cer_min_px"] or 0.0) for p in parts),
            "refused_too_long_at_min_px": total("refused_too_long_at_min_px"),
            "headline_chars_max": max(int(p["headline_chars_max"] or 0) for p in parts),
            "slots_read_largest": total("slots_read_largest"),
            "mean_cer_largest": weighted("mean_cer_largest", "slots_read_largest", 4),
            "typeset_s_per_output": weighted("typeset_s_per_output", "outputs", 3),
            "ocr_s_per_output": weighted("ocr_s_per_output", "outputs", 2),
            "ocr_s_per_output_largest": weighted("ocr_s_per_output_largest", "slots_read_largest", 2),
        }
    misreads = [m for r in runs for m in r["misreads"]]
    refused = [m for r in runs for m in r.get("refused", [])]
    skus = sum(int(r.get("skus_done") or 0) for r in runs)
    opts.merge = [str(p) for p in opts.merge]
    for loc, s in summary.items():
        print(loc, s)
    write_results(
        opts.out,
        "bench_text",
        opts,
        summary,
        misreads=misreads,
        refused=refused,
        cost=costs(),
        skus_done=skus,
        merged_from=[{"params": r["params"], "skus_done": r.get("skus_done")} for r in runs],
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--skus", type=int, default=4)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--no-baseline", action="store_true", help="skip the read at the largest size (halves the time)")
    ap.add_argument(
        "--baseline-every", type=int, default=1, help="read at the largest size every Nth SKU (the baseline)"
    )
    ap.add_argument("--start", type=int, default=0, help="first SKU number (a run split over processes)")
    ap.add_argument("--merge", type=Path, nargs="+", help="merge the results of runs over disjoint SKUs into --out")
    opts = ap.parse_args()
    if opts.merge:
        merge(opts)
        return
    presets = [p for p in load_presets() if p.slots]
    per_locale: dict[str, dict[str, list[float]]] = {
        loc: {k: [] for k in ("cer", "cer_base", "typeset_s", "ocr_s", "ocr_base_s", "refused", "chars")}
        for loc in LOCALES
    }
    misreads: list[dict[str, object]] = []
    refused: list[dict[str, object]] = []
    started = time.perf_counter()
    for sku in range(opts.start, opts.skus):
        baseline = not opts.no_baseline and sku % max(1, opts.baseline_every) == 0
        for preset in presets:
            bg = backdrop(preset, sku)
            for loc in LOCALES:
                texts = copy_for(sku, loc, preset)
                per_locale[loc]["chars"] += [len(v) for k, v in texts.items() if k != "price"]
                for forced, key in ((True, "cer"), (False, "cer_base"))[: 2 if baseline else 1]:
                    t0 = time.perf_counter()
                    try:
                        lays = {
                            s.name: layout_text(
                                texts[s.name], s, loc, preset.width, preset.height, max_px=s.min_px if forced else None
                            )
                            for s in preset.slots
                        }
                    except CopyError as exc:  # the copy does not fit its slot at a readable size: refused
                        per_locale[loc]["refused"].append(1)
                        refused.append({"sku": sku, "preset": preset.name, "locale": loc, "reason": str(exc)})
                        break
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
                    else:
                        per_locale[loc]["ocr_base_s"].append(t2 - t1)
                    verdict, reasons = status(readings)
                    if verdict != "verified":
                        misreads.append(
                            {
                                "sku": sku,
                                "preset": preset.name,
                                "locale": loc,
                                "at": "min_px" if forced else "largest",
                                "sizes": {k: v.size for k, v in lays.items()},
                                "reasons": reasons,
                            }
                        )
                        print("MISREAD", misreads[-1], flush=True)
        print(f"sku {sku}: {time.perf_counter() - started:.0f} s, {len(misreads)} misread(s)", flush=True)
        if opts.out and (sku + 1 - opts.start) % 10 == 0:  # partial results, in case the run is stopped
            write_results(
                opts.out,
                "bench_text",
                opts,
                summarise(per_locale),
                misreads=misreads,
                refused=refused,
                cost=costs(),
                skus_done=sku + 1 - opts.start,
            )
    summary = summarise(per_locale)
    for loc, s in summary.items():
        print(loc, s)
    print("misreads:", misreads)
    print("cost:", costs())
    write_results(
        opts.out,
        "bench_text",
        opts,
        summary,
        misreads=misreads,
        refused=refused,
        cost=costs(),
        skus_done=opts.skus - opts.start,
        wall_s=round(time.perf_counter() - started, 1),
    )


if __name__ == "__main__":
    main()
