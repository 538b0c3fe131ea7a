"""The offline dense image descriptor: a fixed-length, L2-normalised vector computed from pixels.

No learned model ships offline (see DESIGN.md), so similarity here means "looks alike": same
garment colours, similar silhouette and texture, similar scene layout. The vector concatenates
six blocks, each normalised on its own and then weighted so that no block dominates the cosine:

    colour   100  soft-binned CIELAB joint histogram (4 L x 5 a x 5 b), subject pixels weighted up
    hog       72  gradient-orientation histograms (8 unsigned bins) on a 3x3 grid
    edges      9  edge density per cell of the same 3x3 grid
    layout    48  mean Lab colour of a 4x4 grid (centred, fixed scale)
    shape     36  subject mask (distance from the border colour) pooled on a 6x6 grid
    stats      7  global lightness, contrast, chroma, warmth, subject area, edge density, aspect
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from hitline.domain.images import load_image, to_rgb

__all__ = [
    "DIM",
    "WORK_SIZE",
    "BLOCKS",
    "Pixels",
    "load_image",
    "prepare",
    "describe",
]

WORK_SIZE = 256  # long side of the working copy: keeps describe() at ~10 ms and size-independent

# name -> (length, weight); weights were set so that on real catalog photos no block's share of
# the cosine exceeds about a third (colour and silhouette matter most for "looks like this hit")
BLOCKS: dict[str, tuple[int, float]] = {
    "colour": (100, 1.0),
    "hog": (72, 0.8),
    "edges": (9, 0.35),
    "layout": (48, 0.6),
    "shape": (36, 0.7),
    "stats": (7, 0.35),
}
DIM = sum(n for n, _ in BLOCKS.values())  # 272

_L_BINS, _A_BINS, _B_BINS = 4, 5, 5
_AB_RANGE = 60.0  # a*, b* beyond +-60 are rare in photos; clipped into the outer bins
_HOG_GRID, _HOG_BINS = 3, 8
_LAYOUT_GRID, _SHAPE_GRID = 4, 6
_EDGE_THRESHOLD = 6.0  # L units per pixel at WORK_SIZE: a visible edge, above JPEG ringing
_BORDER_FRACTION = 0.04
_FG_DELTA_E = (10.0, 25.0)  # soft ramp: below = background colour, above = surely subject


@dataclass(frozen=True)
class Pixels:
    """A working copy of one image at WORK_SIZE: RGB in [0, 1], CIELAB, subject mask, gradients."""

    rgb: np.ndarray  # H x W x 3 float32 in [0, 1]
    lab: np.ndarray  # H x W x 3 float32: L in [0, 100], a/b roughly [-128, 127]
    subject: np.ndarray  # H x W float32 in [0, 1]: how unlike the border colour each pixel is
    background_lab: np.ndarray  # (3,) median Lab of the border strip
    magnitude: np.ndarray  # H x W float32 gradient magnitude of L (L units per pixel)
    orientation: np.ndarray  # H x W float32 in [0, pi)
    aspect: float  # original width / height


def prepare(img: Image.Image, size: int = WORK_SIZE) -> Pixels:
    """Resize to `size` on the long side and compute the per-pixel arrays every measurement uses."""
    img = to_rgb(img)
    w, h = img.size
    scale = size / max(w, h)
    nw, nh = max(8, round(w * scale)), max(8, round(h * scale))
    # PIL's resampling filters antialias on downscaling, so 4000 px and 400 px inputs agree
    small = img.resize((nw, nh), Image.Resampling.BILINEAR) if (nw, nh) != (w, h) else img
    rgb = np.asarray(small, dtype=np.float32) / 255.0
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab)
    # a light blur before gradients so JPEG blocking and sensor noise do not count as texture
    L = cv2.GaussianBlur(lab[..., 0], (3, 3), 0.8)
    gx = cv2.Sobel(L, cv2.CV_32F, 1, 0, ksize=3) / 8.0
    gy = cv2.Sobel(L, cv2.CV_32F, 0, 1, ksize=3) / 8.0
    magnitude = np.sqrt(gx * gx + gy * gy)
    orientation = np.mod(np.arctan2(gy, gx), np.pi).astype(np.float32)
    bg = _border_median(lab)
    delta = np.linalg.norm(lab - bg, axis=2)
    lo, hi = _FG_DELTA_E
    subject = np.clip((delta - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)
    return Pixels(rgb, lab, subject, bg, magnitude, orientation, w / h)


def border_mask(shape: tuple[int, int], fraction: float = _BORDER_FRACTION) -> np.ndarray:
    """Boolean mask of the outer strip of an image (where a studio backdrop shows)."""
    h, w = shape
    m = max(2, round(min(h, w) * fraction))
    mask = np.zeros((h, w), dtype=bool)
    mask[:m, :] = mask[-m:, :] = True
    mask[:, :m] = mask[:, -m:] = True
    return mask


def _border_median(lab: np.ndarray) -> np.ndarray:
    median: np.ndarray = np.median(lab[border_mask(lab.shape[:2])], axis=0).astype(np.float32)
    return median


def _grid_slices(h: int, w: int, n: int) -> list[tuple[slice, slice]]:
    ys = np.linspace(0, h, n + 1).round().astype(int)
    xs = np.linspace(0, w, n + 1).round().astype(int)
    return [(slice(ys[i], ys[i + 1]), slice(xs[j], xs[j + 1])) for i in range(n) for j in range(n)]


def _soft_axis(values: np.ndarray, lo: float, hi: float, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Linear interpolation between bin centres: (lower bin index, weight of the upper bin)."""
    pos = (np.clip(values, lo, hi) - lo) / (hi - lo) * bins - 0.5
    pos = np.clip(pos, 0.0, bins - 1.0)
    i0 = np.minimum(np.floor(pos).astype(np.int64), bins - 2) if bins > 1 else np.zeros_like(pos, np.int64)
    return i0, (pos - i0).astype(np.float32)


def _colour_block(p: Pixels) -> np.ndarray:
    lab = p.lab.reshape(-1, 3)
    # the backdrop often covers most of the frame; weight the subject so the garment colour counts
    weight = (0.25 + 0.75 * p.subject.reshape(-1)).astype(np.float32)
    li, lw = _soft_axis(lab[:, 0], 0.0, 100.0, _L_BINS)
    ai, aw = _soft_axis(lab[:, 1], -_AB_RANGE, _AB_RANGE, _A_BINS)
    bi, bw = _soft_axis(lab[:, 2], -_AB_RANGE, _AB_RANGE, _B_BINS)
    hist = np.zeros(_L_BINS * _A_BINS * _B_BINS, dtype=np.float64)
    for dl in (0, 1):
        wl = lw if dl else 1.0 - lw
        for da in (0, 1):
            wa = aw if da else 1.0 - aw
            for db in (0, 1):
                wb = bw if db else 1.0 - bw
                idx = ((li + dl) * _A_BINS + (ai + da)) * _B_BINS + (bi + db)
                hist += np.bincount(idx, weights=weight * wl * wa * wb, minlength=hist.size)
    return np.sqrt(hist)  # Hellinger: one big bin must not swamp the rest


def _hog_blocks(p: Pixels) -> tuple[np.ndarray, np.ndarray]:
    h, w = p.magnitude.shape
    pos = p.orientation / np.pi * _HOG_BINS - 0.5
    i0 = np.floor(pos).astype(np.int64)
    frac = (pos - i0).astype(np.float32)
    i0 %= _HOG_BINS
    i1 = (i0 + 1) % _HOG_BINS
    hog, edges = [], []
    for ys, xs in _grid_slices(h, w, _HOG_GRID):
        mag = p.magnitude[ys, xs].reshape(-1)
        a, b, f = i0[ys, xs].reshape(-1), i1[ys, xs].reshape(-1), frac[ys, xs].reshape(-1)
        cell = np.bincount(a, weights=mag * (1.0 - f), minlength=_HOG_BINS)
        cell += np.bincount(b, weights=mag * f, minlength=_HOG_BINS)
        hog.append(cell / max(mag.size, 1))
        edges.append(float(np.mean(mag > _EDGE_THRESHOLD)) if mag.size else 0.0)
    return np.sqrt(np.concatenate(hog)), np.asarray(edges)


def _layout_block(p: Pixels) -> np.ndarray:
    h, w = p.lab.shape[:2]
    cells = []
    for ys, xs in _grid_slices(h, w, _LAYOUT_GRID):
        L, a, b = p.lab[ys, xs].reshape(-1, 3).mean(axis=0)
        cells.extend([(L - 50.0) / 50.0, a / 40.0, b / 40.0])
    # fixed scale, not unit norm: a mid-grey frame is a real layout, not a zero to divide by
    layout: np.ndarray = np.clip(np.asarray(cells), -1.5, 1.5) / np.sqrt(_LAYOUT_GRID * _LAYOUT_GRID)
    return layout


def _shape_block(p: Pixels) -> np.ndarray:
    h, w = p.subject.shape
    return np.sqrt([float(p.subject[ys, xs].mean()) for ys, xs in _grid_slices(h, w, _SHAPE_GRID)])


def _stats_block(p: Pixels) -> np.ndarray:
    L = p.lab[..., 0]
    chroma = np.hypot(p.lab[..., 1], p.lab[..., 2])
    stats = [
        (float(L.mean()) - 55.0) / 30.0,
        (float(L.std()) - 20.0) / 15.0,
        (float(chroma.mean()) - 12.0) / 15.0,
        float(p.lab[..., 2].mean()) / 20.0,  # warmth: yellow (+) vs blue (-)
        (float(p.subject.mean()) - 0.35) / 0.3,
        (float(np.mean(p.magnitude > _EDGE_THRESHOLD)) - 0.1) / 0.1,
        float(np.log(p.aspect)) / 0.7,
    ]
    scaled: np.ndarray = np.clip(np.asarray(stats), -2.0, 2.0) / np.sqrt(len(stats) * 2.0)
    return scaled


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 1e-12 else v


def describe(img: Image.Image) -> np.ndarray:
    """The DIM-long float32 descriptor of an image, L2-normalised; deterministic for the same pixels."""
    p = prepare(img)
    hog, edges = _hog_blocks(p)
    raw = {
        "colour": _unit(_colour_block(p)),
        "hog": _unit(hog),
        "edges": _unit(np.sqrt(edges)),
        "layout": _layout_block(p),
        "shape": _unit(_shape_block(p)),
        "stats": _stats_block(p),
    }
    parts = [raw[name] * weight for name, (_, weight) in BLOCKS.items()]
    vec = np.concatenate(parts).astype(np.float64)
    n = float(np.linalg.norm(vec))
    if n < 1e-12:  # cannot happen for real pixels (colour block is never empty); keep it unit anyway
        vec = np.full(DIM, 1.0 / np.sqrt(DIM))
    else:
        vec /= n
    assert vec.shape == (DIM,)
    return vec.astype(np.float32)
