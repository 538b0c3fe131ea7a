"""Cut a product out of its flat-lay photo: u2netp saliency + a background-colour mask, cleaned up."""

from __future__ import annotations

import threading
from typing import Any

import cv2
import numpy as np
from PIL import Image

from hitline.errors import InputError

__all__ = ["cutout", "product_mask", "subject_mask", "MIN_COVERAGE", "MAX_COVERAGE"]

# a mask outside this share of the picture is not a product on a flat-lay
MIN_COVERAGE = 0.02
MAX_COVERAGE = 0.95
# masks are computed at this long side; the full-size alpha is an upscaled, feathered version
_WORK_SIDE = 768

_session: Any = None
_session_lock = threading.Lock()


def _rembg_session() -> Any:
    """One u2netp session per process, built on first use (InferenceSession.run is thread-safe)."""
    global _session
    if _session is None:
        with _session_lock:
            if _session is None:
                from rembg import new_session

                _session = new_session("u2netp")
    return _session


def subject_mask(img: Image.Image) -> np.ndarray:
    """u2netp's soft saliency mask (float 0..1) at the image's size."""
    from rembg import remove

    mask = remove(img.convert("RGB"), session=_rembg_session(), only_mask=True)
    return np.asarray(mask, dtype=np.float32) / 255.0


def _border_pixels(lab: np.ndarray) -> np.ndarray:
    h, w = lab.shape[:2]
    b = max(2, round(min(h, w) * 0.03))
    return np.concatenate([lab[:b].reshape(-1, 3), lab[-b:].reshape(-1, 3),
                           lab[:, :b].reshape(-1, 3), lab[:, -b:].reshape(-1, 3)])


def _colour_distance(lab: np.ndarray) -> tuple[np.ndarray, bool]:
    """Distance of every pixel from the border colour, and whether the background looks plain."""
    border = _border_pixels(lab)
    bg = np.median(border, axis=0)
    spread = np.percentile(np.linalg.norm(border - bg, axis=1), 90)
    d = lab - bg
    # lightness counts less than hue: soft shadows on the background are darker, not differently coloured
    dist = np.sqrt((0.55 * d[..., 0]) ** 2 + d[..., 1] ** 2 + d[..., 2] ** 2)
    return dist, bool(spread < 12.0)


def _visible(salient: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """Salient components that differ visibly (somewhere) from the background colour."""
    n, labels = cv2.connectedComponents(salient.astype(np.uint8), connectivity=8)
    out = np.zeros_like(salient, dtype=bool)
    for i in range(1, n):
        region = labels == i
        if np.percentile(dist[region], 90) > 4.0:
            out |= region
    return out


def _keep_main_components(mask: np.ndarray) -> np.ndarray:
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 1:
        return np.zeros_like(mask, dtype=bool)
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = 1 + np.flatnonzero(areas >= max(areas.max() * 0.15, 0.002 * mask.size))
    return np.isin(labels, keep)


def _fill_holes(mask: np.ndarray, saliency: np.ndarray) -> np.ndarray:
    """Fill holes inside the product: small ones always, big ones when they are enclosed by thick
    fabric (a print the colour of the background). A hole framed by a thin strap or handle shows
    the background itself and stays open."""
    inv = (~mask).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(inv, connectivity=4)
    h, w = mask.shape
    out = mask.copy()
    limit = 0.03 * mask.sum()
    ys, xs = np.nonzero(mask)
    k = max(3, round(0.1 * max(np.ptp(ys) if len(ys) else 1, np.ptp(xs) if len(xs) else 1)))
    ring_kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1))
    for i in range(1, n):
        x, y, bw, bh, area = stats[i]
        if x == 0 or y == 0 or x + bw == w or y + bh == h:
            continue
        region = labels == i
        if area < limit:
            out[region] = True
            continue
        y0, y1, x0, x1 = max(0, y - k), min(h, y + bh + k), max(0, x - k), min(w, x + bw + k)
        sub = region[y0:y1, x0:x1]
        ring = (cv2.dilate(sub.astype(np.uint8), ring_kernel) > 0) & ~sub
        if mask[y0:y1, x0:x1][ring].mean() > 0.95 and saliency[region].mean() > 0.6:
            out[region] = True
    return out


def product_mask(img: Image.Image) -> np.ndarray:
    """Boolean product mask at the image's size (raises InputError when nothing plausible is found)."""
    rgb = img.convert("RGB")
    scale = min(1.0, _WORK_SIDE / max(rgb.size))
    small = rgb.resize((max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale))), Image.BILINEAR) \
        if scale < 1.0 else rgb
    arr = np.asarray(small)
    lab = cv2.cvtColor(arr, cv2.COLOR_RGB2LAB).astype(np.float32)
    lab[..., 0] *= 100.0 / 255.0
    lab[..., 1:] -= 128.0
    dist, plain = _colour_distance(cv2.GaussianBlur(lab, (0, 0), 1.0))
    saliency = subject_mask(small)
    salient = saliency > 0.5
    if plain:
        # u2netp drops pale garments on pale backgrounds; the colour mask misses garments the colour
        # of the background (white on white). When the two agree, the colour mask has the crisper
        # edge and keeps real holes; otherwise take their union, but only salient regions that show
        # something, or u2netp's min-max normalisation invents objects on a blank frame.
        colour = dist > 14.0
        inter, union = (colour & salient).sum(), (colour | salient).sum()
        agree = union > 0 and inter / union > 0.8 and MIN_COVERAGE <= colour.mean() <= MAX_COVERAGE
        mask = colour if agree else colour | _visible(salient, dist)
    else:
        mask = salient
    k = max(3, round(min(mask.shape) * 0.006)) | 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    m = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, kernel)
    mask = _fill_holes(_keep_main_components(m.astype(bool)), saliency)
    coverage = float(mask.mean())
    if not MIN_COVERAGE <= coverage <= MAX_COVERAGE:
        raise InputError(f"no product found in the flat-lay (mask covers {coverage:.1%} of the picture, "
                         f"expected {MIN_COVERAGE:.0%}..{MAX_COVERAGE:.0%}); use a plain, contrasting background")
    if scale < 1.0:
        up = cv2.resize(mask.astype(np.float32), rgb.size, interpolation=cv2.INTER_LINEAR)
        return up > 0.5
    return mask


def cutout(img: Image.Image) -> Image.Image:
    """The product as an RGBA image cropped to its bounding box, with a feathered edge."""
    rgb = img.convert("RGB")
    mask = product_mask(rgb)
    ys, xs = np.nonzero(mask)
    pad = max(2, round(max(rgb.size) * 0.004))
    x0, x1 = max(0, xs.min() - pad), min(rgb.width, xs.max() + 1 + pad)
    y0, y1 = max(0, ys.min() - pad), min(rgb.height, ys.max() + 1 + pad)
    alpha = (mask[y0:y1, x0:x1].astype(np.float32) * 255.0)
    # erode a hair before feathering so the background colour does not fringe the edge
    feather = max(0.8, max(rgb.size) / 1000.0)
    alpha = cv2.erode(alpha, np.ones((3, 3), np.uint8), iterations=max(1, round(max(rgb.size) / 500)))
    alpha = cv2.GaussianBlur(alpha, (0, 0), feather)
    out = rgb.crop((x0, y0, x1, y1)).convert("RGBA")
    out.putalpha(Image.fromarray(np.clip(alpha, 0, 255).astype(np.uint8)))
    return out
