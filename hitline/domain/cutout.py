"""Cut a product out of its flat-lay photo: u2netp saliency combined with a model of the paper."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Any

import cv2
import numpy as np
from PIL import Image

from hitline.domain.backdrop import Backdrop, model_backdrop, paper_reachable, to_lab
from hitline.errors import InputError

__all__ = ["cutout", "product_mask", "subject_mask", "MIN_COVERAGE", "MAX_COVERAGE"]

# a mask outside this share of the picture is not a product on a flat-lay
MIN_COVERAGE = 0.02
MAX_COVERAGE = 0.95
# masks are computed at this long side; the full-size alpha is an upscaled, feathered version
_WORK_SIDE = 768
_MIN_PIECE = 0.02  # a piece this share of the largest one is product (a clutch beside a coat)

_session: Any = None
_session_lock = threading.Lock()


def _rembg_session() -> Any:
    """One u2netp session per process, built on first use (InferenceSession.run is thread-safe)."""
    global _session
    if _session is None:
        with _session_lock:
            if _session is None:
                import onnxruntime as ort
                from rembg import new_session

                session = new_session("u2netp")
                # one thread: onnxruntime's pool spins while it waits (more CPU for the same mask), and a
                # worker already runs SKUs side by side
                opts = ort.SessionOptions()
                opts.intra_op_num_threads, opts.inter_op_num_threads = 1, 1
                session.inner_session = ort.InferenceSession(
                    session.inner_session._model_path, providers=["CPUExecutionProvider"], sess_options=opts
                )
                _session = session
    return _session


def subject_mask(img: Image.Image) -> np.ndarray:
    """u2netp's soft saliency mask (float 0..1) at the image's size."""
    from rembg import remove

    mask = remove(img.convert("RGB"), session=_rembg_session(), only_mask=True)
    return np.asarray(mask, dtype=np.float32) / 255.0


def _components(mask: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    return n, labels, stats


def _keep_significant(mask: np.ndarray) -> np.ndarray:
    """Every piece big enough to be product (a clutch next to a coat), not specks of dust."""
    n, labels, stats = _components(mask)
    if n <= 1:
        return np.zeros_like(mask, dtype=bool)
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = 1 + np.flatnonzero(areas >= max(areas.max() * _MIN_PIECE, 0.001 * mask.size))
    return np.isin(labels, keep)


def _drop_border_lines(mask: np.ndarray) -> np.ndarray:
    """Pieces that are thin lines lying along the border are frame or scanner edges, not product."""
    n, labels, stats = _components(mask)
    h, w = mask.shape
    thin = max(3, round(0.015 * min(h, w)))
    band = max(thin, round(0.05 * min(h, w)))
    out = mask.copy()
    for i in range(1, n):
        x, y, bw, bh, _ = stats[i]
        along_x = bh <= thin and (y <= band or y + bh >= h - band) and bw > 0.3 * w
        along_y = bw <= thin and (x <= band or x + bw >= w - band) and bh > 0.3 * h
        if along_x or along_y:
            out[labels == i] = False
    return out


_CORNER_ZONE = (0.3, 0.2)  # a corner mark lies within this share of the width and height from a corner
_CORNER_MARK = 0.08  # ... and is at most this share of the largest piece


def _drop_corner_marks(mask: np.ndarray) -> np.ndarray:
    """Small pieces tucked into a corner, apart from the garment, are a studio's watermark or logo plate
    (background, not product): a clutch beside a coat lies beside it, not in the photo's corner."""
    n, labels, stats = _components(mask)
    if n <= 2:
        return mask
    h, w = mask.shape
    areas = stats[1:, cv2.CC_STAT_AREA]
    biggest = 1 + int(np.argmax(areas))
    bx, by, bw, bh, _ = stats[biggest]
    gap = 0.03 * np.hypot(w, h)
    zx, zy = _CORNER_ZONE[0] * w, _CORNER_ZONE[1] * h
    out = mask.copy()
    for i in range(1, n):
        x, y, cw, ch, area = stats[i]
        if i == biggest or area > _CORNER_MARK * areas.max():
            continue
        in_corner = (x + cw <= zx or x >= w - zx) and (y + ch <= zy or y >= h - zy)
        apart = x > bx + bw + gap or x + cw < bx - gap or y > by + bh + gap or y + ch < by - gap
        if in_corner and apart:
            out[labels == i] = False
    return out


def _inner_frame(lum: np.ndarray) -> tuple[int, int, int, int] | None:
    """A drawn or printed frame line inside the photo (a mat, a border around a print): (x0, y0, x1, y1)
    of what is inside it, or None. A line is a row (column) in the outer band whose step in lightness
    runs across nearly all of the photo's width (height), on all four sides."""
    h, w = lum.shape

    def lines(profile_axis: int, length: int, band: int) -> list[int]:
        grad = np.abs(np.diff(lum, axis=profile_axis))
        core = grad[:, round(0.1 * w) : round(0.9 * w)] if profile_axis == 0 else grad[round(0.1 * h) : round(0.9 * h)]
        along = (core > 6.0).mean(axis=1 - profile_axis)
        return [i for i in range(len(along)) if along[i] > 0.85 and (i < band or i >= length - 1 - band)]

    band_y, band_x = round(0.12 * h), round(0.12 * w)
    rows, cols = lines(0, h, band_y), lines(1, w, band_x)
    top = [r for r in rows if r < band_y]
    bottom = [r for r in rows if r >= h - 1 - band_y]
    left = [c for c in cols if c < band_x]
    right = [c for c in cols if c >= w - 1 - band_x]
    if not (top and bottom and left and right):
        return None
    pad = 3
    x0, y0, x1, y1 = max(left) + 1 + pad, max(top) + 1 + pad, min(right) - pad, min(bottom) - pad
    if x1 - x0 < 0.6 * w or y1 - y0 < 0.6 * h or (x0 < 2 and y0 < 2):
        return None
    return x0, y0, x1, y1


def _fill_small_holes(mask: np.ndarray) -> np.ndarray:
    """Close pinholes (highlights, a print the paper's colour) a salient region may leave."""
    inv = (~mask).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(inv, connectivity=4)
    h, w = mask.shape
    out = mask.copy()
    limit = 0.03 * mask.sum()
    for i in range(1, n):
        x, y, bw, bh, area = stats[i]
        if x > 0 and y > 0 and x + bw < w and y + bh < h and area < limit:
            out[labels == i] = True
    return out


def _real_holes(colour: np.ndarray, bd: Backdrop, saliency: np.ndarray) -> np.ndarray:
    """Paper-coloured regions the paper cannot reach are filled: highlights, a print the paper's
    colour. A big one that is the paper itself (its colour and noise, neither brighter like a
    highlight nor seen by u2netp as subject) is real background, the opening of a bag's handle,
    and stays open (u2netp tends to fill it)."""
    holes = colour & ~bd.unlike
    n, labels, stats = _components(holes)
    out = np.zeros_like(colour)
    limit = 0.03 * colour.sum()
    for i in range(1, n):
        if stats[i, cv2.CC_STAT_AREA] < limit:
            continue
        region = labels == i
        darker = bd.darker[region].mean()
        paper_itself = np.median(bd.distance[region]) < 0.5 * bd.tolerance and 0.2 < darker < 0.8
        if paper_itself or saliency[region].mean() < 0.5:
            out |= region
    return out


def _soft_edged(region: np.ndarray, others: np.ndarray, grad: np.ndarray, soft: float) -> bool:
    """A region whose outline against the paper is soft, two thirds of it at least: a shadow. Fabric,
    even sheer, has an edge, though a grey piece may border its own faint shadow or paper-like
    fabric softly along part of it (a median let such a skirt go as a shadow)."""
    ring = cv2.dilate(region.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    ring &= ~region & ~others
    if ring.sum() < 8:
        return False
    return bool(np.percentile(grad[ring], 65) < soft)


def _drop_shadows(colour: np.ndarray, salient: np.ndarray, bd: Backdrop, lum: np.ndarray) -> np.ndarray:
    """Colour-mask pixels that are only a darkening of the paper, outside what u2netp sees as the
    subject, and soft-edged, are shadows."""
    gy, gx = np.gradient(lum)
    grad = np.hypot(gx, gy)
    soft = max(1.0, 1.5 * bd.noise)
    shadow_like = colour & bd.darker & (bd.chroma < bd.tolerance) & ~salient
    n, labels, stats = _components(shadow_like)
    out = colour.copy()
    keep = colour & ~shadow_like
    h, w = colour.shape
    for i in range(1, n):
        x, y, bw, bh, _ = stats[i]
        x0, y0, x1, y1 = max(0, x - 3), max(0, y - 3), min(w, x + bw + 3), min(h, y + bh + 3)
        region = labels[y0:y1, x0:x1] == i
        if _soft_edged(region, keep[y0:y1, x0:x1], grad[y0:y1, x0:x1], soft):
            out[y0:y1, x0:x1][region] = False
    return out


_masks: OrderedDict[str, np.ndarray] = OrderedDict()
_masks_lock = threading.Lock()
_MASKS_KEPT = 8


def product_mask(img: Image.Image) -> np.ndarray:
    """Boolean product mask at the image's size (read-only; raises InputError when nothing plausible is
    found). The render stage asks for the same flat-lay's mask three times (input checks, the cut-out,
    the gate): the last few are kept, keyed by the pixels."""
    rgb = img.convert("RGB")
    key = hashlib.blake2b(rgb.tobytes(), digest_size=16).hexdigest() + f"{rgb.size}"
    with _masks_lock:
        if key in _masks:
            _masks.move_to_end(key)
            return _masks[key]
    mask = _product_mask(rgb)
    mask.setflags(write=False)
    with _masks_lock:
        _masks[key] = mask
        while len(_masks) > _MASKS_KEPT:
            _masks.popitem(last=False)
    return mask


def _upscaled(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return cv2.resize(mask.astype(np.float32), size, interpolation=cv2.INTER_LINEAR) > 0.5


def _product_mask(img: Image.Image, inside_frame: bool = True, drop_marks: bool = True) -> np.ndarray:
    """Boolean product mask at the image's size (raises InputError when nothing plausible is found).

    Two views are combined. The learned one (u2netp) finds the subject but drops pale pieces on
    white and small photos. The paper model learns the backdrop from the border (colour under the
    light's fall-off, noise, frame lines), and everything the paper cannot reach from the border is
    product: that keeps every piece that differs from the paper, and fills highlights and
    paper-coloured prints enclosed by fabric. Shadows (a soft darkening outside the subject) and
    thin lines along the border are dropped; every significant piece is kept."""
    rgb = img.convert("RGB")
    scale = min(1.0, _WORK_SIDE / max(rgb.size))
    small = (
        rgb.resize((max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale))), Image.Resampling.BILINEAR)
        if scale < 1.0
        else rgb
    )
    lab = cv2.GaussianBlur(to_lab(np.asarray(small)), (0, 0), 1.0)
    frame = _inner_frame(lab[..., 0]) if inside_frame else None
    if frame is not None:
        # a print or a mat: what lies outside the frame line is not the paper the product lies on; the
        # paper is learnt inside it, where the product is
        x0, y0, x1, y1 = frame
        inner = _product_mask(small.crop((x0, y0, x1, y1)), inside_frame=False, drop_marks=drop_marks)
        mask = np.zeros((small.height, small.width), bool)
        mask[y0:y1, x0:x1] = inner
        return _upscaled(mask, rgb.size) if scale < 1.0 else mask
    bd = model_backdrop(lab)
    saliency = subject_mask(small)
    salient = saliency > 0.5
    if bd.plain:
        unlike = bd.unlike
        colour = ~paper_reachable(unlike) & ~bd.frame
        holes = _real_holes(colour, bd, saliency)
        colour &= ~holes
        colour = _drop_shadows(colour, salient, bd, lab[..., 0])
        # the blur that tames paper noise spreads every edge by a pixel: take it back
        colour = cv2.erode(colour.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        mask = (colour | salient) & ~holes
    else:
        mask = salient
    k = max(3, round(min(mask.shape) * 0.006)) | 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, kernel).astype(bool)
    mask = _fill_small_holes(_keep_significant(_drop_border_lines(mask)))
    if drop_marks:
        mask = _drop_corner_marks(mask)
    coverage = float(mask.mean())
    if not MIN_COVERAGE <= coverage <= MAX_COVERAGE:
        raise InputError(
            f"no product found in the flat-lay (mask covers {coverage:.1%} of the picture, "
            f"expected {MIN_COVERAGE:.0%}..{MAX_COVERAGE:.0%}); use a plain, contrasting background"
        )
    return _upscaled(mask, rgb.size) if scale < 1.0 else mask


def cutout(img: Image.Image) -> Image.Image:
    """The product as an RGBA image cropped to its bounding box, with a feathered edge."""
    rgb = img.convert("RGB")
    mask = product_mask(rgb)
    ys, xs = np.nonzero(mask)
    pad = max(2, round(max(rgb.size) * 0.004))
    x0, x1 = max(0, xs.min() - pad), min(rgb.width, xs.max() + 1 + pad)
    y0, y1 = max(0, ys.min() - pad), min(rgb.height, ys.max() + 1 + pad)
    alpha: np.ndarray = mask[y0:y1, x0:x1].astype(np.float32) * 255.0
    # erode a hair before feathering so the background colour does not fringe the edge
    feather = max(0.8, max(rgb.size) / 1000.0)
    alpha = cv2.erode(alpha, np.ones((3, 3), np.uint8), iterations=max(1, round(max(rgb.size) / 500)))
    alpha = cv2.GaussianBlur(alpha, (0, 0), feather)
    out = rgb.crop((x0, y0, x1, y1)).convert("RGBA")
    out.putalpha(Image.fromarray(np.clip(alpha, 0, 255).astype(np.uint8)))
    return out
