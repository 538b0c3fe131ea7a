"""A small labelled set of realistic flat-lays for the cut-out, with exact masks.

Every case is built here, in code, from two things: garment silhouettes drawn as polygons (the mask is
the polygon, so it is exact by construction), and fabric taken from the real photographs in
../shared/data/hit-catalog (a crop of the garment in the photo, its lightness texture kept and its
colour moved to the case's colour). The paper is modelled like a phone photo of a flat-lay: a slow
light fall-off, sensor noise and JPEG compression. Nothing here is committed as pixels; the shared
photos stay outside the project.

How the masks were checked: `python bench/bench_cutout.py --sheet /tmp/cases.png` draws every case
next to its mask outline; each was looked at (the outline follows the garment edge, includes a
translucent skirt whole, excludes shadows and frame lines).

Difficulties (the issue's list): pale_on_white, several_pieces, frame_line, soft_shadow, highlights,
low_contrast, translucent, and touching_edge (a piece running off the photo's edge, added in the
issue's second round: the border the paper is learnt from is then partly garment). `CASES` maps a
case name to (difficulty, builder).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import cv2
from testkit.shared import SHARED_CATALOG
import numpy as np
from PIL import Image, ImageDraw

SHARED_IMAGES = SHARED_CATALOG / "images"
_SS = 4  # silhouettes are drawn at 4x and averaged down: anti-aliased edges like a photo

# where the fabric is in each catalog photo (576 x 768): a crop of garment only
FABRICS = {
    "jersey": ("SKU006.jpg", (240, 320, 380, 540)),  # yellow T-shirt
    "chiffon": ("SKU017.jpg", (220, 300, 420, 560)),  # pink printed chiffon skirt, folds
    "flounce": ("SKU008.jpg", (240, 430, 410, 600)),  # white tiered flounce with lace
    "denim": ("SKU015.jpg", (160, 320, 300, 600)),  # denim skirt panel
    "knit": ("SKU030.jpg", (135, 330, 215, 560)),  # cream knit cardigan
    "twill": ("SKU023.jpg", (200, 260, 300, 520)),  # beige trousers, creases
}

# silhouettes in a unit box (x right, y down)
CARDIGAN = [
    (0.38, 0),
    (0.5, 0.28),
    (0.62, 0),
    (0.8, 0.04),
    (1.0, 0.58),
    (0.88, 0.63),
    (0.77, 0.32),
    (0.78, 1.0),
    (0.22, 1.0),
    (0.23, 0.32),
    (0.12, 0.63),
    (0.0, 0.58),
    (0.2, 0.04),
]
TEE = [
    (0.36, 0),
    (0.5, 0.08),
    (0.64, 0),
    (0.82, 0.05),
    (1.0, 0.25),
    (0.88, 0.38),
    (0.78, 0.3),
    (0.78, 1.0),
    (0.22, 1.0),
    (0.22, 0.3),
    (0.12, 0.38),
    (0.0, 0.25),
    (0.18, 0.05),
]
PANTS = [(0.08, 0), (0.92, 0), (1.0, 1.0), (0.58, 1.0), (0.5, 0.3), (0.42, 1.0), (0.0, 1.0)]
CLUTCH = [(0.0, 0.15), (0.15, 0.0), (0.85, 0.0), (1.0, 0.15), (1.0, 1.0), (0.0, 1.0)]


def skirt(n: int = 9, flare: float = 1.0) -> list[tuple[float, float]]:
    """A flared skirt with a softly scalloped hem."""
    w0 = 0.5 - 0.25 * flare
    hem = [(1.0 - i / (8 * n), 0.965 + 0.035 * abs(np.sin(i * np.pi / 8))) for i in range(8 * n + 1)]
    return [(w0, 0.0), (1.0 - w0, 0.0), *hem]


def dress() -> list[tuple[float, float]]:
    return [
        (0.36, 0),
        (0.5, 0.1),
        (0.64, 0),
        (0.7, 0.04),
        (0.68, 0.34),
        (1.0, 1.0),
        (0.0, 1.0),
        (0.32, 0.34),
        (0.3, 0.04),
    ]


@dataclass
class Layer:
    """One garment piece: silhouette in a box (x, y, w, h) in pixels, fabric, colour, opacity."""

    shape: list[tuple[float, float]]
    box: tuple[float, float, float, float]
    fabric: str
    lab: tuple[float, float, float]  # target mean colour, CIELAB (L 0..100)
    texture: float = 1.0  # how much of the photo's lightness variation to keep
    opacity: float = 1.0
    mesh: float = 0.0  # translucent tulle: fine net modulating the opacity
    pleats: int = 0  # vertical pleats with bright ridges (the highlights case)


@lru_cache(maxsize=None)
def fabric_lab(name: str) -> np.ndarray:
    """The fabric crop of a catalog photo as float CIELAB (L 0..100)."""
    file, box = FABRICS[name]
    with Image.open(SHARED_IMAGES / file) as im:
        crop = np.asarray(im.convert("RGB").crop(box))
    return rgb_to_lab(crop)


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    lab = cv2.cvtColor(np.ascontiguousarray(rgb, dtype=np.float32) / 255.0, cv2.COLOR_RGB2LAB)
    return lab


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    rgb = cv2.cvtColor(lab.astype(np.float32), cv2.COLOR_LAB2RGB)
    return np.clip(rgb * 255.0 + 0.5, 0, 255)


def _alpha(
    shape: list[tuple[float, float]], box: tuple[float, float, float, float], size: tuple[int, int]
) -> np.ndarray:
    w, h = size
    x, y, bw, bh = box
    im = Image.new("L", (w * _SS, h * _SS), 0)
    pts = [((x + px * bw) * _SS, (y + py * bh) * _SS) for px, py in shape]
    ImageDraw.Draw(im).polygon(pts, fill=255)
    return np.asarray(im.resize((w, h), Image.BOX), dtype=np.float32) / 255.0


def _paint(layer: Layer, size: tuple[int, int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The layer's colour (Lab, full canvas) and its opacity map."""
    w, h = size
    alpha = _alpha(layer.shape, layer.box, size)
    src = fabric_lab(layer.fabric)
    x, y, bw, bh = (int(round(v)) for v in layer.box)
    tex = cv2.resize(src, (max(2, bw), max(2, bh)), interpolation=cv2.INTER_LINEAR)
    tex = tex - tex.reshape(-1, 3).mean(axis=0)
    body = np.zeros((bh, bw, 3), np.float32)
    body[..., 0] = layer.lab[0] + layer.texture * tex[..., 0]
    body[..., 1] = layer.lab[1] + 0.3 * layer.texture * tex[..., 1]
    body[..., 2] = layer.lab[2] + 0.3 * layer.texture * tex[..., 2]
    if layer.pleats:
        xs = np.linspace(0, layer.pleats * 2 * np.pi, bw)[None, :]
        ridge = np.cos(xs) ** 16  # narrow bright ridges
        ys = np.linspace(0, 1, bh)[:, None]
        along = np.clip((ys - 0.12) / 0.1, 0, 1) * np.clip((0.9 - ys) / 0.1, 0, 1)  # ridges end inside
        body[..., 0] += -4.0 * np.cos(xs + np.pi) + 14.0 * ridge * along
        body[..., 1:] *= (1.0 - ridge * along)[..., None]  # a highlight is white, not tinted
    canvas = np.zeros((h, w, 3), np.float32)
    y0, x0 = max(0, y), max(0, x)
    y1, x1 = min(h, y + bh), min(w, x + bw)
    canvas[y0:y1, x0:x1] = body[y0 - y : y1 - y, x0 - x : x1 - x]
    opacity = alpha * layer.opacity
    if layer.mesh:
        yy, xx = np.mgrid[0:h, 0:w]
        net = 0.5 + 0.5 * np.cos(xx * 2.1) * np.cos(yy * 2.1)
        opacity = opacity * (1.0 - layer.mesh * net)
    return canvas, opacity


def paper(
    size: tuple[int, int],
    lab: tuple[float, float, float],
    rng: np.random.Generator,
    mottle: float = 0.0,
    falloff: float = 2.5,
) -> np.ndarray:
    """A backdrop in Lab: even colour, a slow light fall-off towards one corner, optional mottling."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.empty((h, w, 3), np.float32)
    base[...] = lab
    base[..., 0] -= falloff * ((xx / w) * 0.6 + (yy / h) * 0.4)
    if mottle:
        small = rng.standard_normal((max(2, h // 40), max(2, w // 40))).astype(np.float32)
        base[..., 0] += mottle * cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    return base


def shoot(
    bg: np.ndarray,
    layers: list[Layer],
    rng: np.random.Generator,
    *,
    shadow: float = 0.0,
    shadow_offset: tuple[int, int] = (10, 14),
    noise: float = 1.2,
    jpeg: int = 88,
    frame: tuple[int, int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Lay the pieces on the backdrop, photograph it; returns (RGB uint8, exact product mask)."""
    h, w = bg.shape[:2]
    img = bg.copy()
    mask = np.zeros((h, w), np.float32)
    painted = [_paint(layer, (w, h), rng) for layer in layers]
    if shadow:
        cover = np.zeros((h, w), np.float32)
        for _, a in painted:
            cover = np.maximum(cover, a)
        dx, dy = shadow_offset
        shifted = np.roll(np.roll(cover, dy, axis=0), dx, axis=1)
        soft = cv2.GaussianBlur(shifted, (0, 0), 0.025 * max(w, h))
        img[..., 0] -= shadow * soft  # a shadow darkens the paper; its hue stays
    for colour, a in painted:
        img = img * (1.0 - a[..., None]) + colour * a[..., None]
        mask = np.maximum(mask, _alpha_of(a))
    rgb = lab_to_rgb(img) + rng.normal(0.0, noise, img.shape)
    out = np.clip(rgb, 0, 255).astype(np.uint8)
    if frame is not None:
        inset, width, grey = frame  # a thin printed/scanned frame line around the photo
        pil = Image.fromarray(out)
        ImageDraw.Draw(pil).rectangle([inset, inset, w - 1 - inset, h - 1 - inset], outline=(grey,) * 3, width=width)
        out = np.asarray(pil)
    buf = io.BytesIO()
    Image.fromarray(out).save(buf, "JPEG", quality=jpeg)
    with Image.open(buf) as im:
        photo = np.asarray(im.convert("RGB"))
    return photo, mask > 0.5


def _alpha_of(opacity: np.ndarray) -> np.ndarray:
    """The product's extent regardless of how see-through it is: a tulle skirt is product all over."""
    return (opacity > 0.02).astype(np.float32) * (opacity / np.maximum(opacity, 1e-6))


WHITE = (97.0, 0.0, 1.0)


def pale_two_piece_small(seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The issue's first photo: light-blue knit cardigan over a grey tulle skirt on white, 170 x 342 px,
    a thin grey frame line 3 px inside the edge."""
    rng = np.random.default_rng(seed)
    size = (170, 342)
    layers = [
        Layer(skirt(flare=1.2), (22, 150, 126, 176), "chiffon", (80.0, 0.0, -1.0), texture=0.5, opacity=0.75, mesh=0.3),
        Layer(CARDIGAN, (18, 18, 134, 168), "knit", (88.0, -3.0, -11.0), texture=0.6),
    ]
    return shoot(paper(size, WHITE, rng), layers, rng, frame=(3, 1, 150))


def cream_knit_on_white(seed: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """A cream knit cardigan on white paper (knit from SKU030, lifted almost to the paper's lightness)."""
    rng = np.random.default_rng(seed)
    layers = [Layer(CARDIGAN, (70, 80, 340, 470), "knit", (94.0, 0.5, 5.0), texture=0.35)]
    return shoot(paper((480, 640), WHITE, rng), layers, rng)


def white_flounce_on_white(seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """An off-white flounce dress on white paper: lace texture from SKU008, only the shading shows it."""
    rng = np.random.default_rng(seed)
    layers = [Layer(dress(), (80, 60, 320, 520), "flounce", (95.0, 0.3, 3.0), texture=0.5)]
    return shoot(paper((480, 640), WHITE, rng), layers, rng)


def top_and_skirt_apart(seed: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Two pieces side by side with a gap: a yellow jersey T-shirt and a denim skirt."""
    rng = np.random.default_rng(seed)
    layers = [
        Layer(TEE, (20, 150, 220, 250), "jersey", (78.0, 5.0, 60.0)),
        Layer(skirt(), (260, 180, 200, 300), "denim", (48.0, -2.0, -25.0)),
    ]
    return shoot(paper((480, 640), WHITE, rng), layers, rng, shadow=4.0)


def three_piece_set(seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """A set of three: pale-pink cardigan, beige trousers and a small clutch, all apart."""
    rng = np.random.default_rng(seed)
    layers = [
        Layer(CARDIGAN, (30, 30, 250, 280), "knit", (86.0, 9.0, 4.0)),
        Layer(PANTS, (290, 40, 170, 560), "twill", (78.0, 3.0, 16.0)),
        Layer(CLUTCH, (60, 400, 140, 90), "denim", (70.0, 10.0, 20.0), texture=0.4),
    ]
    return shoot(paper((480, 640), WHITE, rng), layers, rng)


def frame_line_dress(seed: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """A dress inside a 2 px mid-grey frame line 5 px from the edge, the hem close to the line."""
    rng = np.random.default_rng(seed)
    layers = [Layer(dress(), (70, 40, 340, 585), "chiffon", (82.0, 12.0, 4.0))]
    return shoot(paper((480, 640), WHITE, rng), layers, rng, frame=(5, 2, 140))


def frame_line_dark_edge(seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """A scanned print: a dark 1 px line at the very edge and a thin grey frame 4 px in, a pale tee."""
    rng = np.random.default_rng(seed)
    layers = [Layer(TEE, (60, 100, 360, 420), "jersey", (88.0, -2.0, 12.0), texture=0.7)]
    photo, mask = shoot(paper((480, 640), (95.0, 0.0, 2.0), rng), layers, rng, frame=(4, 1, 160))
    photo = photo.copy()
    photo[:1], photo[-1:], photo[:, :1], photo[:, -1:] = 40, 40, 40, 40
    return photo, mask


def soft_shadow_tee(seed: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """A pale T-shirt throwing a wide, soft shadow down and to the right (light from the top left)."""
    rng = np.random.default_rng(seed)
    layers = [Layer(TEE, (60, 90, 340, 400), "jersey", (93.0, -3.0, -6.0), texture=0.4)]
    return shoot(paper((480, 640), WHITE, rng), layers, rng, shadow=20.0, shadow_offset=(18, 24))


def soft_shadow_grey_skirt(seed: int = 9) -> tuple[np.ndarray, np.ndarray]:
    """A light-grey skirt (grey like its own shadow) with a soft shadow on white."""
    rng = np.random.default_rng(seed)
    layers = [Layer(skirt(flare=1.3), (80, 80, 320, 460), "chiffon", (78.0, 0.0, 0.0), texture=0.6)]
    return shoot(paper((480, 640), WHITE, rng), layers, rng, shadow=12.0, shadow_offset=(14, 20))


def pleated_highlights(seed: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """The issue's second photo: a pale-blue bodice over a light-grey pleated skirt on white; the pleat
    ridges burn out to paper white inside the skirt."""
    rng = np.random.default_rng(seed)
    layers = [
        Layer(skirt(n=12, flare=1.4), (50, 230, 380, 390), "chiffon", (88.0, 0.0, 0.0), texture=0.2, pleats=9),
        Layer(TEE, (110, 30, 260, 240), "knit", (90.0, -3.0, -9.0), texture=0.4),
    ]
    return shoot(paper((480, 640), WHITE, rng), layers, rng)


def beige_on_cream(seed: int = 11) -> tuple[np.ndarray, np.ndarray]:
    """Beige trousers on a cream backdrop: about 6 CIELAB units apart."""
    rng = np.random.default_rng(seed)
    layers = [Layer(PANTS, (100, 50, 280, 540), "twill", (87.0, 2.5, 12.5), texture=0.4)]
    return shoot(paper((480, 640), (90.0, 1.5, 10.0), rng, falloff=3.0), layers, rng)


def grey_knit_on_mottled_grey(seed: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """A grey knit cardigan on a mottled grey backdrop (the issue's third photo, made harder)."""
    rng = np.random.default_rng(seed)
    layers = [Layer(CARDIGAN, (50, 70, 380, 500), "knit", (66.0, 1.0, 3.0), texture=0.5)]
    return shoot(paper((480, 640), (72.0, 0.0, 1.0), rng, mottle=3.0), layers, rng)


def tulle_over_white(seed: int = 13) -> tuple[np.ndarray, np.ndarray]:
    """A dusty-rose tulle skirt at about 45 % opacity (a net you see the paper through) under a white top."""
    rng = np.random.default_rng(seed)
    layers = [
        Layer(
            skirt(flare=1.5), (50, 250, 380, 370), "chiffon", (70.0, 14.0, 4.0), texture=0.3, opacity=0.55, mesh=0.35
        ),
        Layer(TEE, (120, 40, 240, 250), "flounce", (93.0, 0.0, 3.0), texture=0.8),
    ]
    return shoot(paper((480, 640), WHITE, rng), layers, rng)


def tulle_grey_alone(seed: int = 14) -> tuple[np.ndarray, np.ndarray]:
    """A grey tulle petticoat alone at about 40 % opacity on white."""
    rng = np.random.default_rng(seed)
    layers = [
        Layer(skirt(flare=1.6), (40, 90, 400, 480), "chiffon", (65.0, 0.0, -2.0), texture=0.3, opacity=0.35, mesh=0.3)
    ]
    return shoot(paper((480, 640), WHITE, rng), layers, rng)


def pale_set_off_edge(seed: int = 21) -> tuple[np.ndarray, np.ndarray]:
    """A tight crop of the issue's first photo: the grey tulle skirt runs off the bottom edge across
    the thin frame line, 150 x 300 px, JPEG 75, a faint shadow down and to the right (the paper's
    border band is then part skirt)."""
    rng = np.random.default_rng(seed)
    layers = [
        Layer(skirt(flare=1.2), (18, 140, 114, 175), "chiffon", (82.0, 0.0, -1.0), texture=0.5, opacity=0.7, mesh=0.3),
        Layer(CARDIGAN, (14, 14, 122, 150), "knit", (90.0, -2.0, -8.0), texture=0.6),
    ]
    return shoot(
        paper((150, 300), WHITE, rng), layers, rng, frame=(3, 1, 150), jpeg=75, shadow=4.0, shadow_offset=(3, 4)
    )


Builder = Callable[[], tuple[np.ndarray, np.ndarray]]


def _rejpeg(photo: np.ndarray, quality: int = 88) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(photo).save(buf, "JPEG", quality=quality)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"))


def matted_two_piece(seed: int = 22) -> tuple[np.ndarray, np.ndarray]:
    """The issue's first photo as a print: the pale two-piece on white inside a thin drawn frame line,
    a light-grey mat outside the line, the white inside darkening into blotches at its corners (the
    paper learnt from the border is the mat: the white inside came out as a rectangle of product)."""
    rng = np.random.default_rng(seed)
    size = (340, 520)
    layers = [
        Layer(skirt(flare=1.2), (60, 250, 220, 220), "chiffon", (80.0, 0.0, -1.0), texture=0.5, opacity=0.75, mesh=0.3),
        Layer(CARDIGAN, (55, 50, 230, 240), "knit", (88.0, -3.0, -11.0), texture=0.6),
    ]
    photo, mask = shoot(paper(size, WHITE, rng), layers, rng, jpeg=95)
    out = photo.astype(np.float32)
    w, h = size
    inset = 16
    yy, xx = np.mgrid[0:h, 0:w]
    for cx, cy in ((inset, inset), (w - inset, inset), (inset, h - inset), (w - inset, h - inset)):
        blot = np.exp(-(((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 22.0**2)))
        out -= 18.0 * blot[..., None]  # darker corners inside the frame
    outside = (xx < inset) | (xx >= w - inset) | (yy < inset) | (yy >= h - inset)
    out[outside] = 214.0 + rng.normal(0, 1.0, (int(outside.sum()), 3))  # the mat
    pil = Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))
    ImageDraw.Draw(pil).rectangle([inset, inset, w - 1 - inset, h - 1 - inset], outline=(120, 120, 120), width=2)
    return _rejpeg(np.asarray(pil)), mask


def corner_watermark_coat(seed: int = 23) -> tuple[np.ndarray, np.ndarray]:
    """A camel coat on light-grey paper with a studio's watermark in the bottom-right corner: a small
    white plate with grey lettering (it travelled with the coat into every output as a white scrap)."""
    rng = np.random.default_rng(seed)
    layers = [Layer(CARDIGAN, (60, 50, 340, 480), "twill", (62.0, 9.0, 24.0), texture=0.7)]
    photo, mask = shoot(paper((480, 640), (86.0, 0.0, 1.0), rng), layers, rng, jpeg=95)
    pil = Image.fromarray(photo)
    d = ImageDraw.Draw(pil)
    d.rounded_rectangle([372, 596, 466, 626], radius=5, fill=(250, 250, 250))
    d.text((380, 604), "(c) STUDIO 9", fill=(150, 150, 150))
    return _rejpeg(np.asarray(pil)), mask


CASES: dict[str, tuple[str, Builder]] = {
    "pale_two_piece_small": ("pale_on_white", pale_two_piece_small),
    "cream_knit_on_white": ("pale_on_white", cream_knit_on_white),
    "white_flounce_on_white": ("pale_on_white", white_flounce_on_white),
    "top_and_skirt_apart": ("several_pieces", top_and_skirt_apart),
    "three_piece_set": ("several_pieces", three_piece_set),
    "frame_line_dress": ("frame_line", frame_line_dress),
    "frame_line_dark_edge": ("frame_line", frame_line_dark_edge),
    "soft_shadow_tee": ("soft_shadow", soft_shadow_tee),
    "soft_shadow_grey_skirt": ("soft_shadow", soft_shadow_grey_skirt),
    "pleated_highlights": ("highlights", pleated_highlights),
    "beige_on_cream": ("low_contrast", beige_on_cream),
    "grey_knit_on_mottled_grey": ("low_contrast", grey_knit_on_mottled_grey),
    "tulle_over_white": ("translucent", tulle_over_white),
    "tulle_grey_alone": ("translucent", tulle_grey_alone),
    "pale_set_off_edge": ("touching_edge", pale_set_off_edge),
    "matted_two_piece": ("framed_print", matted_two_piece),
    "corner_watermark_coat": ("corner_mark", corner_watermark_coat),
}
DIFFICULTIES = tuple(dict.fromkeys(d for d, _ in CASES.values()))


def build(name: str) -> tuple[Image.Image, np.ndarray]:
    """(flat-lay photo, exact boolean mask) of a named case."""
    photo, mask = CASES[name][1]()
    return Image.fromarray(photo), mask


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def sheet(rows: list[tuple[str, Image.Image, np.ndarray, list[np.ndarray]]], path: Path, tile: int = 220) -> None:
    """A picture to look at: each case, its exact mask outline (green) and predicted outlines (red, blue)."""
    colours = [(0, 200, 0), (230, 0, 0), (0, 90, 255)]
    tiles = []
    for name, photo, truth, preds in rows:
        base = np.asarray(photo.convert("RGB")).copy()
        for m, c in zip([truth, *preds], colours):
            cnts, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
            cv2.drawContours(base, cnts, -1, c, max(1, base.shape[1] // 240))
        im = Image.fromarray(base)
        im.thumbnail((tile, tile * 4 // 3))
        cell = Image.new("RGB", (tile, tile * 4 // 3 + 16), (255, 255, 255))
        cell.paste(im, ((tile - im.width) // 2, 0))
        ImageDraw.Draw(cell).text((2, tile * 4 // 3 + 2), name[:34], fill=(0, 0, 0))
        tiles.append(cell)
    cols = 7
    out = Image.new("RGB", (cols * tile, ((len(tiles) + cols - 1) // cols) * (tile * 4 // 3 + 16)), (255, 255, 255))
    for i, t in enumerate(tiles):
        out.paste(t, ((i % cols) * tile, (i // cols) * t.height))
    out.save(path)
