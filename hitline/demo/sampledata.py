"""Demo data: a procedurally photographed best-seller catalog and a few new-product flat-lays."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from hitline.demo.garments import ASPECT, CATEGORIES, draw_garment

__all__ = ["generate_demo", "draw_flatlay", "draw_catalog_photo", "STYLES", "PRODUCTS_HEADER", "NEW_HEADER"]

PRODUCTS_HEADER = [
    "product_id",
    "image_path",
    "category",
    "color",
    "style",
    "season",
    "sales_count",
    "description",
    "price",
]
NEW_HEADER = ["new_id", "image_path", "category", "style", "season", "prompt_hint"]
# optional promo copy (hitline.domain.promo_copy): headline in en-US, translations, a price per market
COPY_HEADER = [
    "headline",
    "price",
    "currency",
    "headline_de",
    "price_de",
    "currency_de",
    "headline_ja",
    "price_ja",
    "currency_ja",
    "headline_zh",
    "price_zh",
    "currency_zh",
]
DEMO_COPY = [
    [
        "Crisp white tee",
        "19.99",
        "USD",
        "Klassisches weißes T-Shirt",
        "19.99",
        "EUR",
        "定番の白Tシャツ",
        "2980",
        "JPY",
        "经典白色T恤",
        "139",
        "CNY",
    ],
    [
        "Flowy summer dress",
        "49.99",
        "USD",
        "Luftiges Sommerkleid",
        "49.99",
        "EUR",
        "軽やかなサマードレス",
        "7480",
        "JPY",
        "飘逸夏日连衣裙",
        "349",
        "CNY",
    ],
    [
        "Tailored city jacket",
        "89.99",
        "USD",
        "Taillierte Stadtjacke",
        "89.99",
        "EUR",
        "上品なテーラードジャケット",
        "13800",
        "JPY",
        "都市修身西装外套",
        "629",
        "CNY",
    ],
    [
        "Wide everyday trousers",
        "39.99",
        "USD",
        "Weite Alltagshose",
        "39.99",
        "EUR",
        "毎日のワイドパンツ",
        "5980",
        "JPY",
        "日常阔腿裤",
        "279",
        "CNY",
    ],
    [
        "Pleated satin skirt",
        "45.00",
        "USD",
        "Plissierter Satinrock",
        "45.00",
        "EUR",
        "サテンのプリーツスカート",
        "6480",
        "JPY",
        "缎面百褶裙",
        "319",
        "CNY",
    ],
    [
        "Oversized street knit",
        "59.99",
        "USD",
        "Oversize-Strickpullover",
        "59.99",
        "EUR",
        "オーバーサイズニット",
        "8980",
        "JPY",
        "宽松街头针织衫",
        "419",
        "CNY",
    ],
]
PHOTO_SIZE = (576, 768)
FLATLAY_SIZE = (800, 800)

# each look has its palette and its kind of set, so "find best-sellers that look like this" has an answer
STYLES: dict[str, dict[str, object]] = {
    "minimalist": {
        "scene": "studio",
        "colours": {
            "black": (32, 32, 36),
            "white": (238, 236, 232),
            "beige": (205, 186, 160),
            "grey": (140, 142, 146),
            "navy": (34, 44, 72),
            "camel": (178, 132, 86),
        },
        "accent": (120, 120, 120),
    },
    "boho": {
        "scene": "beach",
        "colours": {
            "terracotta": (190, 100, 70),
            "mustard": (212, 160, 50),
            "olive": (118, 120, 62),
            "rust": (160, 72, 40),
            "cream": (236, 224, 200),
            "teal": (40, 120, 120),
        },
        "accent": (245, 230, 190),
    },
    "streetwear": {
        "scene": "street",
        "colours": {
            "black": (28, 28, 30),
            "red": (196, 36, 40),
            "royal blue": (40, 70, 180),
            "grey": (128, 130, 134),
            "orange": (232, 110, 30),
            "lime": (170, 210, 40),
        },
        "accent": (245, 245, 245),
    },
    "elegant": {
        "scene": "interior",
        "colours": {
            "burgundy": (118, 24, 42),
            "emerald": (20, 100, 70),
            "navy": (30, 40, 80),
            "ivory": (240, 232, 214),
            "blush": (226, 176, 172),
            "black": (24, 22, 24),
        },
        "accent": (212, 175, 80),
    },
}
SEASONS = {
    "dress": ["summer", "spring"],
    "tshirt": ["summer", "spring"],
    "jacket": ["autumn", "winter", "spring"],
    "skirt": ["spring", "summer", "autumn"],
    "trousers": ["spring", "autumn", "all_season"],
    "sweater": ["autumn", "winter"],
    "bag": ["all_season"],
}
NOUN = {
    "dress": "midi dress",
    "tshirt": "t-shirt",
    "jacket": "jacket",
    "skirt": "skirt",
    "trousers": "trousers",
    "sweater": "sweater",
    "bag": "tote bag",
}
MATERIAL = {
    "dress": ["linen", "viscose crepe", "washed satin", "cotton voile"],
    "tshirt": ["organic cotton jersey", "heavyweight cotton", "slub cotton"],
    "jacket": ["wool blend", "washed denim", "recycled nylon", "cotton twill"],
    "skirt": ["denim", "satin", "cotton voile", "linen blend"],
    "trousers": ["linen", "wool crepe", "cotton twill", "stretch gabardine"],
    "sweater": ["merino wool", "chunky cotton knit", "cashmere blend"],
    "bag": ["vegan leather", "heavy canvas", "woven straw"],
}
PRICE = {
    "dress": (39, 129),
    "tshirt": (14, 39),
    "jacket": (69, 219),
    "skirt": (29, 89),
    "trousers": (34, 109),
    "sweater": (39, 149),
    "bag": (29, 159),
}
STYLE_WORDS = {
    "minimalist": ["clean-lined", "minimal", "pared-back"],
    "boho": ["boho", "free-spirited", "relaxed boho"],
    "streetwear": ["oversized streetwear", "urban", "bold street"],
    "elegant": ["elegant", "tailored", "refined"],
}
SEASON_LINE = {
    "summer": "Made for warm summer days.",
    "spring": "An easy layer for spring.",
    "autumn": "Ready for crisp autumn weather.",
    "winter": "Keeps you warm all winter.",
    "all_season": "A wardrobe staple for every season.",
}


@dataclass(frozen=True)
class _Spec:
    category: str
    style: str
    colour_name: str
    colour: tuple[int, int, int]
    accent: tuple[int, int, int]
    season: str


def _pick_spec(
    rng: np.random.Generator, category: str, style: str | None = None, colour_name: str | None = None
) -> _Spec:
    style = style or str(rng.choice(list(STYLES)))
    colours: dict[str, tuple[int, int, int]] = STYLES[style]["colours"]  # type: ignore[assignment]
    colour_name = colour_name or str(rng.choice(list(colours)))
    accent: tuple[int, int, int] = STYLES[style]["accent"]  # type: ignore[assignment]
    if colour_name in ("white", "ivory", "cream") or sum(colours[colour_name]) > 600:
        accent = (150, 110, 70) if style != "streetwear" else (200, 40, 40)
    return _Spec(category, style, colour_name, colours[colour_name], accent, str(rng.choice(SEASONS[category])))


# ---------------------------------------------------------------- scenes (float RGB 0..1, H x W x 3)


def _vgrad(h: int, w: int, top: tuple[float, ...], bottom: tuple[float, ...]) -> np.ndarray:
    t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    return np.broadcast_to(np.array(top) * (1 - t) + np.array(bottom) * t, (h, w, 3)).copy()


def _scene(kind: str, w: int, h: int, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """A set with its floor line (as a share of the height)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    u, v = xx / w, yy / h
    if kind == "studio":
        tint = np.array(rng.choice([(0.93, 0.92, 0.9), (0.9, 0.9, 0.91), (0.94, 0.9, 0.87), (0.92, 0.89, 0.89)]))
        img = _vgrad(h, w, tuple(tint), tuple(tint * 0.9))
        floor = 0.82
        img *= (1.0 - 0.1 * np.clip((v - floor) / 0.1, 0, 1) * (1 - np.clip((v - floor - 0.1) / 0.1, 0, 1)))[..., None]
        img *= (1.05 - 0.15 * ((u - 0.35) ** 2 + (v - 0.35) ** 2) ** 0.5)[..., None]
    elif kind == "interior":
        wall = np.array(rng.choice([(0.85, 0.79, 0.71), (0.8, 0.76, 0.72), (0.87, 0.83, 0.78)]))
        img = _vgrad(h, w, tuple(wall), tuple(wall * 0.88))
        light = np.zeros((h, w), np.float32)
        x0 = rng.uniform(0.05, 0.45)
        for i in range(2):  # two window panes thrown across the wall
            for j in range(2):
                pts = np.array(
                    [
                        (x0 + 0.2 * i, 0.1 + 0.26 * j),
                        (x0 + 0.18 + 0.2 * i, 0.1 + 0.26 * j),
                        (x0 + 0.28 + 0.2 * i, 0.34 + 0.26 * j),
                        (x0 + 0.1 + 0.2 * i, 0.34 + 0.26 * j),
                    ]
                )
                cv2.fillPoly(light, [np.round(pts * [w, h]).astype(np.int32)], 1.0)
        light = cv2.GaussianBlur(light, (0, 0), w * 0.012)
        img *= (1.0 + 0.18 * light)[..., None]
        floor = 0.8
        wood = np.array((0.55, 0.4, 0.28)) * (1 + 0.06 * np.sin(u * 90 + 8 * np.sin(v * 30)))[..., None]
        wood *= (1 - 0.25 * (np.abs(((u * 7) % 1) - 0.5) < 0.01))[..., None]
        img = np.where((v > floor)[..., None], wood * (0.9 + 0.3 * (v - floor))[..., None], img)
        img[(v > floor - 0.012) & (v <= floor)] = wall * 1.02  # skirting board
    elif kind == "beach":
        sky = _vgrad(h, w, (0.55, 0.72, 0.88), (0.93, 0.86, 0.78))
        sea_line, floor = 0.52, 0.66
        sea = np.array((0.25, 0.5, 0.62)) * (1 + 0.06 * np.sin(v * 400 + np.sin(u * 20) * 2))[..., None]
        sand = np.array((0.88, 0.78, 0.62)) * (1 + 0.05 * rng.standard_normal((h, w)).astype(np.float32))[..., None]
        sand = cv2.GaussianBlur(sand.astype(np.float32), (0, 0), 1.2)
        img = np.where((v < sea_line)[..., None], sky, np.where((v < floor)[..., None], sea, sand))
        glow = np.exp(-(((u - 0.8) ** 2) + (v - 0.35) ** 2) / 0.05)
        img = img + 0.18 * glow[..., None] * np.array((1.0, 0.85, 0.6))
        img = cv2.GaussianBlur(img.astype(np.float32), (0, 0), w * 0.006)  # shallow depth of field
        floor = 0.9
    else:  # street: brick wall, pavement
        brick = np.array(rng.choice([(0.55, 0.3, 0.24), (0.5, 0.48, 0.46), (0.62, 0.4, 0.3)]))
        bh, bw = h * 0.035, w * 0.12
        row = np.floor(v * h / bh)
        col = np.floor((u * w + (row % 2) * bw / 2) / bw)
        jitter = (np.sin(row * 12.9898 + col * 78.233) * 43758.5453) % 1
        img = brick * (0.85 + 0.25 * jitter)[..., None]
        mortar = ((v * h % bh) < 2) | (((u * w + (row % 2) * bw / 2) % bw) < 2)
        img[mortar] = (0.75, 0.72, 0.68)
        for _ in range(3):  # old paint and posters
            cx, cy, r = rng.uniform(0, 1), rng.uniform(0.05, 0.6), rng.uniform(0.08, 0.2)
            blob = np.exp(-(((u - cx) / r) ** 2 + ((v - cy) / r) ** 2) * 3)
            img = img * (1 - 0.5 * blob[..., None]) + 0.5 * blob[..., None] * rng.uniform(0.2, 0.9, 3)
        floor = 0.84
        pave = np.array((0.42, 0.42, 0.43)) * (1 + 0.05 * rng.standard_normal((h, w)))[..., None]
        img = np.where((v > floor)[..., None], pave, img)
        img = cv2.GaussianBlur(img.astype(np.float32), (0, 0), 1.5)
    return np.clip(img, 0, 1).astype(np.float32), floor


def _paste(
    canvas: np.ndarray,
    rgba: np.ndarray,
    x: int,
    y: int,
    shadow: float = 0.0,
    offset: tuple[int, int] = (0, 0),
    blur: float = 6.0,
) -> None:
    """Alpha-composite rgba onto canvas at (x, y), with an optional soft cast shadow."""
    h, w = canvas.shape[:2]
    gh, gw = rgba.shape[:2]
    layer = np.zeros((h, w, 4), np.float32)
    x0, y0, x1, y1 = max(0, x), max(0, y), min(w, x + gw), min(h, y + gh)
    if x1 <= x0 or y1 <= y0:
        return
    layer[y0:y1, x0:x1] = rgba[y0 - y : y1 - y, x0 - x : x1 - x]
    if shadow:
        a = np.roll(layer[..., 3], offset, axis=(0, 1))
        a = cv2.GaussianBlur(a, (0, 0), blur)
        canvas *= (1 - shadow * a)[..., None]
    al = layer[..., 3:4]
    canvas[:] = canvas * (1 - al) + layer[..., :3] * al


def _holder(
    canvas: np.ndarray, kind: str, cx: int, top: int, gw: int, gh: int, floor_y: int, rng: np.random.Generator
) -> None:
    """A dress form on a stand, or a hanger on a hook, drawn behind the garment."""
    h, w = canvas.shape[:2]
    if kind == "form":
        colour = np.array(rng.choice([(0.9, 0.86, 0.78), (0.15, 0.15, 0.16)]))
        form = np.zeros((h, w), np.uint8)
        neck_w = gw * 0.09
        cv2.rectangle(form, (int(cx - neck_w), int(top - gh * 0.08)), (int(cx + neck_w), top + 5), 255, -1)
        cv2.ellipse(form, (cx, int(top - gh * 0.08)), (int(neck_w * 1.1), int(gh * 0.015)), 0, 0, 360, 255, -1)
        pole = (0.35, 0.28, 0.2)
        cv2.line(canvas, (cx, top + gh // 2), (cx, floor_y), pole, max(3, w // 110))
        for dx in (-1, 0, 1):
            cv2.line(canvas, (cx, floor_y - 4), (cx + int(dx * w * 0.09), floor_y + 10), pole, max(3, w // 130))
        shade = 0.85 + 0.25 * np.linspace(0, 1, w)[None, :] ** 0.5
        canvas[form > 0] = (colour * shade[..., None].repeat(h, 0))[form > 0]
        knob = (int(cx), int(top - gh * 0.1))
        cv2.circle(canvas, knob, max(3, w // 80), (0.35, 0.26, 0.18), -1, cv2.LINE_AA)
    else:  # hanger
        wood = (0.62, 0.44, 0.26) if rng.random() < 0.6 else (0.15, 0.15, 0.16)
        hook_top = int(top - gh * 0.13)
        cv2.ellipse(canvas, (cx, hook_top + 12), (12, 12), 0, 180, 360, (0.7, 0.7, 0.72), 3, cv2.LINE_AA)
        cv2.line(canvas, (cx + 12, hook_top + 12), (cx, int(top - gh * 0.05)), (0.7, 0.7, 0.72), 3, cv2.LINE_AA)
        bar = np.array([(cx - gw * 0.45, top + 3), (cx, top - gh * 0.06), (cx + gw * 0.45, top + 3)], np.int32)
        cv2.polylines(canvas, [bar], False, wood, max(5, w // 70), cv2.LINE_AA)


def draw_catalog_photo(spec: _Spec, rng: np.random.Generator, size: tuple[int, int] = PHOTO_SIZE) -> Image.Image:
    """A best-seller's photo: the garment on a form or hanger, in its style's set."""
    w, h = size
    kind = str(STYLES[spec.style]["scene"])
    if kind == "beach" and rng.random() < 0.35:
        kind = "studio"  # not every boho shoot is on location
    canvas, floor = _scene(kind, w, h, rng)
    floor_y = int(floor * h)
    cat = spec.category
    gh = int(h * {"trousers": 0.7, "dress": 0.68, "skirt": 0.52, "bag": 0.4}.get(cat, 0.56) * rng.uniform(0.93, 1.05))
    gw = int(gh * ASPECT[cat])
    if gw > 0.8 * w:
        gw, gh = int(0.8 * w), int(0.8 * w / ASPECT[cat])
    garment = draw_garment(cat, "hung", spec.style, spec.colour, spec.accent, gh, rng)
    gh, gw = garment.shape[:2]
    cx = int(w * rng.uniform(0.46, 0.54))
    if cat == "bag":
        top = floor_y - gh + int(0.02 * h)
    else:
        holder = "hanger" if cat in ("skirt", "trousers") or rng.random() < 0.3 else "form"
        top = int(h * 0.17)
        _holder(canvas, holder, cx, top, gw, gh, floor_y, rng)
    light = -1 if rng.random() < 0.5 else 1
    _paste(
        canvas, garment, cx - gw // 2, top, shadow=0.35, offset=(int(0.03 * h), int(light * 0.04 * w)), blur=w * 0.02
    )
    return _finish(canvas, rng, vignette=0.18)


def _finish(canvas: np.ndarray, rng: np.random.Generator, vignette: float) -> Image.Image:
    """Lens and sensor: a little softness, vignette and grain."""
    h, w = canvas.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    d = ((xx / w - 0.5) ** 2 + (yy / h - 0.5) ** 2) ** 0.5 / 0.71
    img = cv2.GaussianBlur(canvas, (0, 0), 0.6) * (1 - vignette * d**2)[..., None]
    img = img + rng.normal(0, 0.012, img.shape).astype(np.float32)
    return Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8), "RGB")


def draw_flatlay(
    spec: _Spec, rng: np.random.Generator, size: tuple[int, int] = FLATLAY_SIZE
) -> tuple[Image.Image, np.ndarray]:
    """A new product photographed top-down on a plain light background, and its true mask."""
    w, h = size
    bg = np.array(rng.choice([(0.93, 0.92, 0.9), (0.95, 0.94, 0.93), (0.91, 0.89, 0.86), (0.9, 0.91, 0.92)]))
    canvas = _vgrad(h, w, tuple(bg * 1.02), tuple(bg * 0.97))
    canvas *= (1 + 0.01 * rng.standard_normal((h, w))).astype(np.float32)[..., None]
    cat = spec.category
    gh = int(h * 0.78)
    if gh * ASPECT[cat] > 0.8 * w:
        gh = int(0.8 * w / ASPECT[cat])
    garment = draw_garment(cat, "flat", spec.style, spec.colour, spec.accent, gh, rng)
    gh, gw = garment.shape[:2]
    x, y = (w - gw) // 2 + int(rng.integers(-10, 11)), (h - gh) // 2 + int(rng.integers(-10, 11))
    _paste(canvas, garment, x, y, shadow=0.22, offset=(6, 5), blur=7)
    truth = np.zeros((h, w), bool)
    truth[y : y + gh, x : x + gw] = garment[..., 3] > 0.5
    return _finish(canvas, rng, vignette=0.04), truth


def _description(spec: _Spec, rng: np.random.Generator) -> str:
    material = str(rng.choice(MATERIAL[spec.category]))
    adj = str(rng.choice(STYLE_WORDS[spec.style]))
    fit = str(rng.choice(["relaxed fit", "flattering cut", "easy fit", "soft hand feel", "clean finish"]))
    return (
        f"{spec.colour_name.capitalize()} {adj} {NOUN[spec.category]} in {material} with a {fit}. "
        f"{SEASON_LINE[spec.season]}"
    )


def generate_demo(dest: Path, seed: int = 7) -> tuple[Path, Path]:
    """Write a demo hit catalog and new-product flat-lays under dest; return (catalog_dir, new_dir)."""
    rng = np.random.default_rng(seed)
    dest = Path(dest)
    catalog, new = dest / "catalog", dest / "new"
    (catalog / "images").mkdir(parents=True, exist_ok=True)
    (new / "new_products").mkdir(parents=True, exist_ok=True)
    rows = []
    cats = [CATEGORIES[i % len(CATEGORIES)] for i in range(48)]
    for i, cat in enumerate(cats, start=1):
        spec = _pick_spec(rng, cat)
        pid = f"SKU{i:03d}"
        draw_catalog_photo(spec, rng).save(catalog / "images" / f"{pid}.jpg", quality=90)
        lo, hi = PRICE[cat]
        price = round(float(rng.uniform(lo, hi))) - 0.01
        sales = int(np.clip(rng.lognormal(np.log(2200), 1.0), 200, 20000))
        rows.append(
            [
                pid,
                f"images/{pid}.jpg",
                cat,
                spec.colour_name,
                spec.style,
                spec.season,
                sales,
                _description(spec, rng),
                f"{price:.2f}",
            ]
        )
    with open(catalog / "products.csv", "w", newline="", encoding="utf-8") as f:
        wr = csv.writer(f)
        wr.writerow(PRODUCTS_HEADER)
        wr.writerows(rows)
    new_items = [
        ("tshirt", "minimalist", "white", "crisp white tee, clean studio look"),
        ("dress", "boho", "terracotta", "flowy summer dress, beach holiday mood"),
        ("jacket", "elegant", "navy", "tailored jacket, refined city style"),
        ("trousers", "minimalist", "camel", "wide everyday trousers, calm neutral tones"),
        ("skirt", "elegant", "burgundy", "pleated satin skirt for evenings"),
        ("sweater", "streetwear", "orange", "oversized knit, bold urban street look"),
    ]
    new_rows = []
    for i, (cat, style, colour, hint) in enumerate(new_items, start=1):
        spec = _pick_spec(rng, cat, style, colour)
        nid = f"NEW{i:03d}"
        img, _ = draw_flatlay(spec, rng)
        img.save(new / "new_products" / f"{nid}.jpg", quality=92)
        new_rows.append([nid, f"new_products/{nid}.jpg", cat, style, spec.season, hint, *DEMO_COPY[i - 1]])
    with open(new / "new_products.csv", "w", newline="", encoding="utf-8") as f:
        wr = csv.writer(f)
        wr.writerow(NEW_HEADER + COPY_HEADER)
        wr.writerows(new_rows)
    return catalog, new
