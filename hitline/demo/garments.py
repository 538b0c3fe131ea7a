"""Procedurally drawn garments (shape, folds, fabric, prints) for the demo catalog and flat-lays."""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["CATEGORIES", "ASPECT", "garment_polygon", "draw_garment"]

CATEGORIES = ("dress", "tshirt", "jacket", "skirt", "trousers", "sweater", "bag")
# width / height of the garment's box
ASPECT = {"dress": 0.72, "tshirt": 1.1, "jacket": 1.05, "skirt": 0.9, "trousers": 0.56, "sweater": 1.15, "bag": 1.0}

Pt = tuple[float, float]


def _mirror(left: list[Pt]) -> list[Pt]:
    """Left half (top centre -> bottom centre, clockwise on screen) plus its mirror image."""
    return left + [(1.0 - x, y) for x, y in reversed(left)]


def _hem(x0: float, x1: float, y: float, waves: int, amp: float) -> list[Pt]:
    xs = np.linspace(x0, x1, waves * 4 + 1)
    return [(float(x), float(y + amp * np.sin((x - x0) / (x1 - x0) * waves * 2 * np.pi))) for x in xs]


def garment_polygon(category: str, pose: str, style: str) -> list[list[Pt]]:
    """Outline(s) in unit box coordinates. pose: 'flat' (flat-lay) or 'hung' (on a form/hanger)."""
    flat = pose == "flat"
    if category == "tshirt":
        sl = [(0.03, 0.27), (0.15, 0.39)] if flat else [(0.08, 0.36), (0.18, 0.43)]
        left = [(0.5, 0.085), (0.41, 0.065), (0.36, 0.0), (0.2, 0.05), sl[0], sl[1], (0.25, 0.3), (0.25, 1.0)]
        return [_mirror(left)[:-1]]
    if category in ("sweater", "jacket"):
        cuff = [(0.0, 0.8), (0.11, 0.85)] if flat else [(0.05, 0.9), (0.16, 0.92)]
        neck = (0.5, 0.07) if category == "sweater" else (0.5, 0.03)
        shoulder = (
            [(0.4, 0.0), (0.2, 0.04), (0.13, 0.1)]
            if category == "sweater"
            else [(0.39, 0.0), (0.16, 0.04), (0.12, 0.09)]
        )
        left = [neck, *shoulder, *cuff, (0.26, 0.3), (0.25, 1.0)]
        return [_mirror(left)[:-1]]
    if category == "dress":
        flare = {"boho": 0.02, "elegant": 0.06, "streetwear": 0.2, "minimalist": 0.12}.get(style, 0.1)
        hem = _hem(flare, 1 - flare, 0.985, 3 if style == "boho" else 2, 0.012)
        left = [(0.5, 0.2), (0.4, 0.0), (0.33, 0.0), (0.28, 0.13), (0.3, 0.24), (0.34, 0.38)]
        right = [(1 - x, y) for x, y in reversed(left)]
        return [left + hem + right]  # the hem runs left -> right along the bottom
    if category == "skirt":
        flare = {"boho": 0.02, "elegant": 0.1, "streetwear": 0.14, "minimalist": 0.08}.get(style, 0.08)
        hem = _hem(flare, 1 - flare, 0.985, 3, 0.01 if style == "boho" else 0.004)
        return [[(0.27, 0.0), (0.27, 0.09), *hem, (0.73, 0.09), (0.73, 0.0)]]
    if category == "trousers":
        wide = style in ("boho", "elegant")
        out_x, in_x = (0.06, 0.46) if wide else (0.2, 0.455)
        return [
            [
                (0.18, 0.0),
                (0.82, 0.0),
                (0.84, 0.1),
                (0.88 if wide else 0.86, 0.4),
                (1 - out_x, 1.0),
                (1 - in_x, 1.0),
                (0.5, 0.36),
                (in_x, 1.0),
                (out_x, 1.0),
                (0.12 if wide else 0.14, 0.4),
                (0.16, 0.1),
            ]
        ]
    if category == "bag":
        body = [(0.08, 0.38), (0.92, 0.38), (0.98, 1.0), (0.02, 1.0)]
        t = np.linspace(np.pi, 0, 24)
        outer = [(0.5 + 0.27 * np.cos(a), 0.4 - 0.38 * np.sin(a)) for a in t]
        inner = [(0.5 + 0.21 * np.cos(a), 0.4 - 0.31 * np.sin(a)) for a in t[::-1]]
        return [body, outer + inner]
    raise ValueError(f"unknown category {category!r}")


def _chaikin(pts: np.ndarray, rounds: int = 2, step: float = 6.0) -> np.ndarray:
    # densify first, so rounding softens corners by a few pixels instead of chamfering long edges
    dense = []
    for a, b in zip(pts, np.roll(pts, -1, axis=0)):
        n = max(1, int(np.ceil(np.linalg.norm(b - a) / step)))
        dense.extend(a + (b - a) * t for t in np.arange(n) / n)
    pts = np.array(dense)
    for _ in range(rounds):
        nxt = np.roll(pts, -1, axis=0)
        pts = np.stack([0.8 * pts + 0.2 * nxt, 0.2 * pts + 0.8 * nxt], axis=1).reshape(-1, 2)
    return pts


def _mask(polys: list[list[Pt]], w: int, h: int) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    for poly in polys:
        p = _chaikin(np.array(poly, dtype=np.float64) * [w - 1, h - 1])
        cv2.fillPoly(m, [np.round(p * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
    return m


def _line(img: np.ndarray, pts: list[Pt], colour: np.ndarray, width: float) -> None:
    h, w = img.shape[:2]
    p = np.round(np.array(pts) * [w - 1, h - 1] * 16).astype(np.int32)
    cv2.polylines(img, [p], False, colour.tolist(), max(1, round(width)), cv2.LINE_AA, shift=4)


def _dot(img: np.ndarray, at: Pt, r: float, colour: np.ndarray) -> None:
    h, w = img.shape[:2]
    cv2.circle(
        img, (round(at[0] * (w - 1)), round(at[1] * (h - 1))), max(1, round(r)), colour.tolist(), -1, cv2.LINE_AA
    )


def _details(
    img: np.ndarray, category: str, style: str, base: np.ndarray, accent: np.ndarray, rng: np.random.Generator
) -> None:
    """Seams, buttons, pockets and prints, drawn on the flat colour before shading."""
    h, w = img.shape[:2]
    seam = base * 0.72
    lw = max(1.0, w / 300)
    if category == "tshirt":
        _line(img, [(0.37, 0.01), (0.42, 0.07), (0.5, 0.095), (0.58, 0.07), (0.63, 0.01)], seam, lw * 2)
        _line(img, [(0.26, 0.95), (0.74, 0.95)], seam, lw)
        if style == "streetwear":
            cv2.rectangle(img, (int(0.36 * w), int(0.26 * h)), (int(0.64 * w), int(0.46 * h)), accent.tolist(), -1)
            cv2.rectangle(img, (int(0.39 * w), int(0.3 * h)), (int(0.61 * w), int(0.34 * h)), base.tolist(), -1)
        elif style == "boho":
            for y in np.arange(0.2, 0.95, 0.09):
                _line(img, [(0.26, y), (0.74, y)], accent, lw * 3)
    elif category in ("sweater", "jacket"):
        if category == "sweater":
            _line(img, [(0.38, 0.0), (0.43, 0.07), (0.5, 0.09), (0.57, 0.07), (0.62, 0.0)], seam, lw * 5)
            for y in (0.92, 0.95, 0.98):
                _line(img, [(0.26, y), (0.74, y)], seam, lw)
            if style == "boho":
                for y in (0.35, 0.5):
                    for x in np.arange(0.3, 0.72, 0.06):
                        _line(img, [(x, y), (x + 0.03, y - 0.04), (x + 0.06, y)], accent, lw * 2)
        else:
            lining = base * 0.45
            cv2.fillPoly(
                img,
                [np.round(np.array([(0.41, 0.0), (0.5, 0.33), (0.59, 0.0)]) * [w, h]).astype(np.int32)],
                lining.tolist(),
                cv2.LINE_AA,
            )
            _line(img, [(0.39, 0.0), (0.45, 0.2), (0.5, 0.33)], seam * 0.8, lw * 2)
            _line(img, [(0.61, 0.0), (0.55, 0.2), (0.5, 0.33)], seam * 0.8, lw * 2)
            _line(img, [(0.5, 0.33), (0.5, 1.0)], seam, lw * 1.5)
            button = accent if style == "elegant" else base * 0.5
            for y in (0.45, 0.6, 0.75):
                _dot(img, (0.47, y), w * 0.012, button)
            for x in (0.29, 0.58):
                _line(img, [(x, 0.68), (x + 0.13, 0.68)], seam, lw * 2)
    elif category == "dress":
        _line(img, [(0.33, 0.38), (0.67, 0.38)], seam, lw * 1.5)
        if style == "boho":
            for _ in range(70):
                x, y = rng.uniform(0.15, 0.85), rng.uniform(0.05, 0.97)
                _dot(img, (x, y), w * 0.012, accent)
                _dot(img, (x, y), w * 0.004, base * 0.6 + 0.4)
        elif style == "elegant":
            cv2.rectangle(img, (int(0.3 * w), int(0.36 * h)), (int(0.7 * w), int(0.4 * h)), accent.tolist(), -1)
    elif category == "skirt":
        _line(img, [(0.27, 0.09), (0.73, 0.09)], seam, lw * 1.5)
        if style == "minimalist" or style == "streetwear":
            for y in np.arange(0.2, 0.9, 0.14):
                _dot(img, (0.5, y), w * 0.011, seam)
            _line(img, [(0.5, 0.09), (0.5, 0.99)], seam, lw)
        if style == "boho":
            for _ in range(50):
                _dot(img, (rng.uniform(0.1, 0.9), rng.uniform(0.12, 0.97)), w * 0.01, accent)
        if style == "elegant":
            for x in np.linspace(0.3, 0.7, 7):
                _line(img, [(x, 0.1), (0.5 + (x - 0.5) * 1.9, 0.98)], seam, lw)
    elif category == "trousers":
        _line(img, [(0.17, 0.08), (0.83, 0.08)], seam, lw * 1.5)
        _line(img, [(0.5, 0.08), (0.5, 0.3)], seam, lw)
        _line(img, [(0.22, 0.1), (0.3, 0.2)], seam, lw)
        _line(img, [(0.78, 0.1), (0.7, 0.2)], seam, lw)
    elif category == "bag":
        _line(img, [(0.06, 0.5), (0.94, 0.5)], seam, lw * 2)
        _dot(img, (0.5, 0.5), w * 0.02, accent)


def _shading(mask: np.ndarray, category: str, style: str, pose: str, rng: np.random.Generator) -> np.ndarray:
    """Multiplicative light: folds, rounded edges, a soft key light, fabric texture."""
    h, w = mask.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    u, v = xx / w, yy / h
    folds = np.zeros_like(u)
    drape = category in ("dress", "skirt") or (category == "trousers" and style in ("boho", "elegant"))
    for _ in range(5):
        f, ph = rng.uniform(4, 11), rng.uniform(0, 2 * np.pi)
        warp = 0.3 * np.sin(v * rng.uniform(2, 5) + ph)
        folds += np.sin(2 * np.pi * f * u + warp + ph) / 5
    amp = (0.08 + 0.22 * v) if drape else np.full_like(v, 0.06 if pose == "flat" else 0.09)
    shade = 1.0 + amp * folds
    d = cv2.distanceTransform((mask > 127).astype(np.uint8), cv2.DIST_L2, 5)
    rim = np.exp(-d / (0.035 * w))
    shade -= (0.16 if pose == "flat" else 0.3) * rim
    shade *= 1.06 - 0.14 * u - 0.06 * v  # key light from the upper left
    if category == "sweater":
        shade *= 1.0 + 0.05 * np.sin(2 * np.pi * xx / max(3.0, w / 90))
    else:
        weave = np.sin(2 * np.pi * xx / 3.1) * np.sin(2 * np.pi * yy / 3.3)
        shade *= 1.0 + 0.025 * weave
    shade *= 1.0 + rng.normal(0, 0.015, shade.shape).astype(np.float32)
    return shade


def draw_garment(
    category: str,
    pose: str,
    style: str,
    colour: tuple[int, int, int],
    accent: tuple[int, int, int],
    height: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """The garment as float RGBA (0..1), `height` pixels tall, width from its category's aspect."""
    w = max(8, round(height * ASPECT[category]))
    mask = _mask(garment_polygon(category, pose, style), w, height)
    base = np.array(colour, np.float32) / 255.0
    acc = np.array(accent, np.float32) / 255.0
    img = np.empty((height, w, 3), np.float32)
    img[:] = base
    _details(img, category, style, base, acc, rng)
    shade = _shading(mask, category, style, pose, rng)
    rgb = img * shade[..., None]
    # dark fabric shows its folds as highlights, not as shadows
    lift = np.clip(shade - 1.0, 0, None)[..., None] * (0.5 - base.mean()) * 0.9 if base.mean() < 0.35 else 0.0
    if style == "elegant" and category in ("dress", "skirt"):
        sheen = np.clip(shade - 1.02, 0, None)[..., None] * 1.4  # satin catches the light on the fold crests
        rgb = rgb + sheen
    rgb = np.clip(rgb + lift, 0, 1)
    return np.dstack([rgb, mask.astype(np.float32) / 255.0])
