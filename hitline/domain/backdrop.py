"""A model of the paper a flat-lay lies on, learnt from the photo's border: its colour (with the
light's fall-off), its noise, and the frame lines printed or scanned around it. The cut-out asks it
which pixels are paper."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["Backdrop", "to_lab", "model_backdrop", "paper_reachable"]

_BAND = 0.035  # the border band the paper is learnt from, as a share of the short side
_FRAME_ROW = 0.6  # a border row (column) this much unlike the paper is a frame line, not product
_L_DARKER = 1.0  # darker-than-paper weight (shadows are told apart by their soft edge instead)
_MIN_TOL = 4.0
_HALO = 2  # pixels either side of a frame line that its blur and JPEG ringing darken
_REFITS = 3


def to_lab(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB -> float CIELAB with L in 0..100 (the scale CIEDE2000 and the tolerances use)."""
    return cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)


@dataclass
class Backdrop:
    """Per-pixel paper colour and how far each pixel is from it."""

    paper: np.ndarray  # (h, w, 3) Lab: the fitted paper colour under this photo's light
    distance: np.ndarray  # (h, w) weighted colour distance from the paper
    chroma: np.ndarray  # (h, w) hue/saturation distance only (what a shadow does not change)
    darker: np.ndarray  # (h, w) bool: darker than the paper
    frame: np.ndarray  # (h, w) bool: frame-line pixels along the border
    noise: float  # robust spread of the distance over the paper border
    tolerance: float  # distance beyond which a pixel is not paper
    plain: bool  # a plain backdrop (the colour model can be trusted)

    @property
    def unlike(self) -> np.ndarray:
        unlike: np.ndarray = (self.distance > self.tolerance) & ~self.frame
        return unlike


def _band(h: int, w: int) -> int:
    return max(2, round(min(h, w) * _BAND))


def _frame_lines(rough: np.ndarray, b: int) -> np.ndarray:
    """Whole rows and columns of the outer band that stand out from the rest of the band: frame
    lines and scanner edges. A row is judged by its median, so a garment crossing it does not make
    it a frame, and a frame line crossed by a garment is still found."""
    h, w = rough.shape
    out = np.zeros((h, w), bool)
    rows = np.r_[0:b, h - b : h]
    cols = np.r_[0:b, w - b : w]
    row_med = np.median(rough[rows], axis=1)
    col_med = np.median(rough[:, cols], axis=0)
    typical = float(np.median(np.concatenate([row_med, col_med])))
    limit = max(2.0 * typical, typical + 4.0)
    out[rows[row_med > limit]] = True
    out[:, cols[col_med > limit]] = True
    return out


def _fit_paper(lab: np.ndarray, sample: np.ndarray) -> np.ndarray:
    """A quadratic surface per channel through the paper samples: the light falls off smoothly."""
    h, w = sample.shape
    ys, xs = np.nonzero(sample)
    if len(ys) < 12:
        return np.broadcast_to(np.median(lab.reshape(-1, 3), axis=0), lab.shape).copy()

    def basis(y: np.ndarray, x: np.ndarray) -> np.ndarray:
        y, x = y / h - 0.5, x / w - 0.5
        return np.stack([np.ones_like(x), x, y, x * x, y * y, x * y], axis=-1)

    coef, *_ = np.linalg.lstsq(basis(ys.astype(np.float64), xs.astype(np.float64)), lab[ys, xs], rcond=None)
    # the surface term by term over a row and a column (broadcast), not a (h, w, 6) basis: same values
    y = (np.arange(h, dtype=np.float64) / h - 0.5)[:, None, None]
    x = (np.arange(w, dtype=np.float64) / w - 0.5)[None, :, None]
    c = coef.astype(np.float64)
    surface: np.ndarray = (c[0] + x * c[1] + y * c[2] + (x * x) * c[3] + (y * y) * c[4] + (x * y) * c[5]).astype(
        np.float32
    )
    return surface


def _distance(lab: np.ndarray, paper: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    d = lab - paper
    darker = d[..., 0] < 0
    weight = np.where(darker, _L_DARKER, 1.0)
    chroma = np.sqrt(d[..., 1] ** 2 + d[..., 2] ** 2)
    return np.sqrt((weight * d[..., 0]) ** 2 + chroma**2), chroma, darker


def _ring(h: int, w: int, b: int) -> np.ndarray:
    ring = np.zeros((h, w), bool)
    ring[:b], ring[-b:], ring[:, :b], ring[:, -b:] = True, True, True, True
    return ring


def _robust_fit(lab: np.ndarray, sample: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fit the paper, then refit without the samples far from it (a garment or a halo in the band),
    until the samples settle. Returns (paper, samples kept)."""
    paper = _fit_paper(lab, sample)
    for _ in range(_REFITS):
        d = _distance(lab, paper)[0]
        res = d[sample]
        mid = float(np.median(res))
        keep = sample & (d < mid + 3.0 * 1.4826 * float(np.median(np.abs(res - mid))))
        if keep.sum() < 12 or keep.sum() == sample.sum():
            break
        sample = keep
        paper = _fit_paper(lab, sample)
    return paper, sample


def model_backdrop(lab: np.ndarray) -> Backdrop:
    """Learn the paper from the border band of a (lightly blurred) Lab image."""
    h, w = lab.shape[:2]
    b = _band(h, w)
    band, wide = _ring(h, w, b), _ring(h, w, 2 * b)
    # the reference colour from the wide band: a frame line and its halo can fill the outer one
    median = np.median(lab[wide], axis=0)
    rough, _, _ = _distance(lab, np.broadcast_to(median, lab.shape))
    spread = float(np.percentile(rough[wide], 50))
    # a frame line comes with a halo (the blur, JPEG ringing) a few Lab units darker than the paper:
    # left in the samples it drags the fitted paper down until pale fabric passes for paper
    frame = cv2.dilate(_frame_lines(rough, b).astype(np.uint8), np.ones((2 * _HALO + 1,) * 2, np.uint8)) > 0
    # samples: a band twice as wide (there is paper inside a frame line) minus frame lines and minus
    # whatever sticks out (a garment touching the edge)
    sample = wide & ~frame & (rough < max(4.0 * spread, 10.0))
    paper, sample = _robust_fit(lab, sample)
    distance, chroma, darker = _distance(lab, paper)
    residual = distance[sample] if sample.any() else distance[band]
    # the distance is a norm, so even clean paper sits a little above 0: tolerate its median plus
    # a few robust deviations
    mid = float(np.median(residual))
    noise = float(1.4826 * np.median(np.abs(residual - mid)))
    tolerance = max(_MIN_TOL, mid + 4.0 * noise)
    return Backdrop(
        paper=paper,
        distance=distance,
        chroma=chroma,
        darker=darker,
        frame=frame,
        noise=noise,
        tolerance=tolerance,
        plain=tolerance < 10.0,
    )


def paper_reachable(unlike: np.ndarray, seeds: np.ndarray | None = None) -> np.ndarray:
    """Paper pixels connected to the seeds (default: the photo's outer band): the background. What
    it cannot reach (the product, and any paper-coloured hole enclosed by it) is not background.
    Seeding from the whole band, not just the edge, reaches the paper inside a frame line."""
    h, w = unlike.shape
    if seeds is None:
        seeds = _ring(h, w, _band(h, w))
    n, labels = cv2.connectedComponents((~unlike).astype(np.uint8), connectivity=4)
    hit = np.unique(labels[seeds & ~unlike])
    return np.isin(labels, hit[hit > 0])
