"""Offline StyleAnalyzer: measures the retrieved hit photos and turns the numbers into words by rule.

Every sentence in the resulting StyleAnalysis comes from a measurement crossing a threshold that
is written down below (no free text), so the same references always give the same analysis.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from sklearn.cluster import KMeans

from hitline.domain.descriptors import Pixels, prepare
from hitline.domain.images import load_image
from hitline.domain.models import NewProduct, StyleAnalysis
from hitline.errors import InputError
from hitline.providers.base import Analysis

__all__ = ["LocalAnalyzer", "measure", "colour_name", "MAX_PROMPT_WORDS"]

MAX_PROMPT_WORDS = 99
PALETTE_SIZE = 5
_SAMPLES_PER_IMAGE = 3000
_EDGE_THRESHOLD = 6.0  # same "visible edge" as the descriptor (L units per pixel at 256 px)

# thresholds, in CIELAB units unless said otherwise; measured on studio and lifestyle catalog photos
HIGH_KEY_L, LOW_KEY_L = 72.0, 35.0  # key_l: mean of backdrop lightness and median frame lightness
HIGH_CONTRAST_STD, LOW_CONTRAST_STD = 28.0, 16.0
WARM_B, COOL_B = 6.0, -3.0  # b* of the backdrop (the light's colour, not the garment's): yellow vs blue
VIVID_CHROMA, MUTED_CHROMA = 25.0, 10.0
PLAIN_BORDER_STD, BUSY_BORDER_STD = 6.0, 14.0  # spread of the border strip: backdrop vs environment
BUSY_BORDER_EDGES = 0.12
DIRECTIONAL_L_DIFF = 8.0  # backdrop lightness, one side vs the other


def _border_segments(p: Pixels, n: int = 4, fraction: float = 0.08) -> list[tuple[np.ndarray, np.ndarray]]:
    """The frame's outer strip cut into 4n pieces: (Lab pixels, gradient magnitudes) of each."""
    h, w = p.lab.shape[:2]
    m = max(2, round(min(h, w) * fraction))
    out = []
    for rows, cols, along in (
        (slice(0, m), slice(None), w),
        (slice(h - m, h), slice(None), w),
        (slice(m, h - m), slice(0, m), h - 2 * m),
        (slice(m, h - m), slice(w - m, w), h - 2 * m),
    ):
        lab, mag = p.lab[rows, cols], p.magnitude[rows, cols]
        axis = 1 if along == w else 0
        for lab_part, mag_part in zip(np.array_split(lab, n, axis=axis), np.array_split(mag, n, axis=axis)):
            out.append((lab_part.reshape(-1, 3), mag_part.reshape(-1)))
    return out


def _backdrop(p: Pixels) -> dict[str, float]:
    """Backdrop colour and busyness from the border pieces; the calmer half of them wins, because a
    cropped model or garment usually touches only a few pieces of the frame edge."""
    segs = _border_segments(p)
    stds = np.array([np.sqrt(lab.var(axis=0).sum() / 3.0) for lab, _ in segs])
    edges = np.array([float(np.mean(mag > _EDGE_THRESHOLD)) for _, mag in segs])
    calm = np.argsort(stds, kind="stable")[: len(segs) // 2]
    colour = np.median(np.concatenate([segs[i][0] for i in calm]), axis=0)
    return {
        "border_std": float(np.median(stds)),
        "border_edge_density": float(np.median(edges)),
        "background_l": float(colour[0]),
        "background_a": float(colour[1]),
        "background_b": float(colour[2]),
    }


def measure(p: Pixels) -> dict[str, float]:
    """The numbers one image contributes: light, colour, backdrop and where the subject sits."""
    lab = p.lab
    L, a, b = lab[..., 0], lab[..., 1], lab[..., 2]
    h, w = L.shape
    chroma = np.hypot(a, b)
    subject = _subject_mask(p)
    area = float(subject.mean())
    if area > 0:
        ys, xs = np.nonzero(subject)
        cy, cx = float(ys.mean() / h), float(xs.mean() / w)
        bbox_h = float((ys.max() - ys.min() + 1) / h)
        bbox_w = float((xs.max() - xs.min() + 1) / w)
    else:
        cy = cx = 0.5
        bbox_h = bbox_w = 0.0
    background = ~subject
    left, right = background[:, : w // 2], background[:, w // 2 :]
    light_side = 0.0
    if left.mean() > 0.05 and right.mean() > 0.05:
        light_side = float(L[:, w // 2 :][right].mean() - L[:, : w // 2][left].mean())
    backdrop = _backdrop(p)
    median_l = float(np.median(L))
    return {
        "mean_l": float(L.mean()),
        "median_l": median_l,
        "p10_l": float(np.percentile(L, 10)),
        "p90_l": float(np.percentile(L, 90)),
        # what a photographer calls the key: the backdrop's lightness as much as the garment's
        "key_l": 0.5 * (backdrop["background_l"] + median_l),
        "contrast_std_l": float(L.std()),
        "mean_a": float(a.mean()),
        "mean_b": float(b.mean()),
        "red_blue_balance": float((p.rgb[..., 0] - p.rgb[..., 2]).mean()),
        "mean_chroma": float(chroma.mean()),
        "subject_chroma": float(chroma[subject].mean()) if area > 0 else float(chroma.mean()),
        **backdrop,
        "light_side": light_side,
        "subject_area": area,
        "subject_cx": cx,
        "subject_cy": cy,
        "subject_height": bbox_h,
        "subject_width": bbox_w,
        "edge_density": float(np.mean(p.magnitude > _EDGE_THRESHOLD)),
        "aspect": float(p.aspect),
    }


def _subject_mask(p: Pixels) -> np.ndarray:
    """Largest connected blob unlike the backdrop, cleaned of speckle (watermarks, JPEG noise)."""
    mask = (p.subject > 0.5).astype(np.uint8)
    kernel = np.ones((3, 3), np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel, iterations=2)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n <= 1:
        return np.zeros(mask.shape, dtype=bool)
    biggest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return labels == biggest


def _lab_to_hex(lab: np.ndarray) -> str:
    rgb = cv2.cvtColor(lab.reshape(1, 1, 3).astype(np.float32), cv2.COLOR_Lab2RGB).reshape(3)
    r, g, b = (int(round(float(np.clip(c, 0.0, 1.0)) * 255)) for c in rgb)
    return f"#{r:02x}{g:02x}{b:02x}"


def colour_name(L: float, a: float, b: float) -> str:
    """A plain English name for a Lab colour, by lightness, chroma and hue angle."""
    chroma = float(np.hypot(a, b))
    if chroma < 8.0:
        if L > 88:
            return "white"
        if L > 70:
            return "off-white" if b > 2 else "light grey"
        if L > 35:
            return "grey"
        return "charcoal" if L > 18 else "black"
    hue = float(np.degrees(np.arctan2(b, a))) % 360.0
    if chroma < 30 and 40 <= hue < 100:  # low-chroma yellow-orange: the studio neutrals
        return "cream" if L > 82 else "beige" if L >= 55 else "camel" if L >= 40 else "brown"
    names = [
        (20, "pink" if L > 60 else "red"),
        (50, "red" if L < 60 else "coral"),
        (75, "orange"),
        (100, "yellow"),
        (160, "green"),
        (220, "teal"),
        (290, "blue"),
        (330, "purple"),
        (360, "pink"),
    ]
    hue_name = next(name for limit, name in names if hue < limit)
    if hue_name == "blue" and L < 35:
        return "navy"
    shade = "light " if L > 75 and hue_name not in ("pink", "cream") else ("dark " if L < 30 else "")
    return shade + hue_name


def _palette(pixels: list[Pixels]) -> tuple[list[str], list[str], list[float]]:
    """k-means (k=5) in Lab over pixels sampled on a fixed stride from every reference."""
    samples = []
    for p in pixels:
        flat = p.lab.reshape(-1, 3)
        step = max(1, flat.shape[0] // _SAMPLES_PER_IMAGE)
        samples.append(flat[::step][:_SAMPLES_PER_IMAGE])
    data = np.concatenate(samples).astype(np.float64)
    k = min(PALETTE_SIZE, len(np.unique(np.round(data, 1), axis=0)))
    km = KMeans(n_clusters=k, n_init=4, random_state=0).fit(data)
    shares = np.bincount(km.labels_, minlength=k) / len(data)
    order = sorted(range(k), key=lambda i: (-shares[i], i))
    centres = km.cluster_centers_
    hexes = [_lab_to_hex(centres[i]) for i in order]
    names = [colour_name(*centres[i]) for i in order]
    return hexes, names, [float(shares[i]) for i in order]


def _band(value: float, high: float, low: float, labels: tuple[str, str, str]) -> str:
    """labels = (at or above high, at or below low, in between)."""
    return labels[0] if value >= high else labels[1] if value <= low else labels[2]


def _key(m: dict[str, float]) -> str:
    return _band(m["key_l"], HIGH_KEY_L, LOW_KEY_L, ("high-key", "low-key", "mid-key"))


def _warmth(m: dict[str, float]) -> str:
    return _band(m["background_b"], WARM_B, COOL_B, ("warm", "cool", "neutral"))


def _contrast(m: dict[str, float]) -> str:
    return _band(m["contrast_std_l"], HIGH_CONTRAST_STD, LOW_CONTRAST_STD, ("high", "low", "moderate"))


def _scene(m: dict[str, float]) -> str:
    backdrop = colour_name(m["background_l"], m["background_a"], m["background_b"])
    if m["border_std"] <= PLAIN_BORDER_STD and m["border_edge_density"] < BUSY_BORDER_EDGES:
        tone = "high-key" if m["background_l"] >= 75 else ("dark" if m["background_l"] <= 30 else "mid-tone")
        return f"plain {tone} studio backdrop, seamless {backdrop}"
    if m["border_std"] >= BUSY_BORDER_STD or m["border_edge_density"] >= BUSY_BORDER_EDGES:
        return f"outdoor/environmental setting with textured background, mostly {backdrop}"
    return f"simple {backdrop} studio or interior wall with soft shadows and gradients"


def _lighting(m: dict[str, float]) -> str:
    key, warmth, contrast = _key(m), _warmth(m), _contrast(m)
    if key == "high-key":
        base = "soft, even, high-key light" if contrast != "high" else "bright high-key light with crisp shadows"
    elif key == "low-key":
        base = "dramatic low-key light, subject lit against darkness"
    else:
        base = "balanced mid-key light" + (" with soft shadows" if contrast != "high" else " with strong shadows")
    if abs(m["light_side"]) >= DIRECTIONAL_L_DIFF:
        base += f", directional from the {'right' if m['light_side'] > 0 else 'left'}"
    tone = {"warm": "warm golden tones", "cool": "cool bluish tones", "neutral": "neutral white balance"}[warmth]
    return f"{base}, {tone}"


def _pose(m: dict[str, float]) -> str:
    orient = "portrait" if m["aspect"] < 0.9 else ("landscape" if m["aspect"] > 1.1 else "square")
    if m["subject_height"] >= 0.92 and m["subject_area"] >= 0.45:
        shot = "close-up, garment fills and is cropped by the frame"
    elif m["subject_height"] >= 0.75:
        shot = "full-length, subject spans the frame height"
    elif m["subject_area"] > 0:
        shot = "product shown whole with generous margins (flat-lay or hanger style)"
    else:
        shot = "subject blends with the backdrop"
    offset = m["subject_cx"] - 0.5
    place = "centred" if abs(offset) < 0.08 else f"placed {'right' if offset > 0 else 'left'} of centre"
    return f"{shot}, {place}, {orient} frame, subject covers about {round(m['subject_area'] * 100)}% of the image"


def _mood(m: dict[str, float]) -> str:
    key, warmth = _key(m), _warmth(m)
    vivid = m["subject_chroma"] >= VIVID_CHROMA
    muted = m["subject_chroma"] <= MUTED_CHROMA
    words = {"high-key": ["clean", "airy"], "low-key": ["dramatic", "premium"], "mid-key": ["natural"]}[key]
    words.append("bold, colourful" if vivid else ("minimal, understated" if muted else "softly coloured"))
    words.append({"warm": "warm and inviting", "cool": "crisp and modern", "neutral": "timeless"}[warmth])
    if m["border_std"] >= BUSY_BORDER_STD:
        words.append("lifestyle")
    return ", ".join(words)


def _words(text: str) -> int:
    return len(text.split())


def _prompt(product: NewProduct, scene: str, lighting: str, pose: str, mood: str, colours: list[str]) -> str:
    """One generation prompt under MAX_PROMPT_WORDS; optional clauses are dropped first, the hint last."""
    what = " ".join(x.replace("_", " ") for x in (product.style, product.category) if x).strip() or "garment"
    season = product.season.replace("_", "-").strip()
    hint = " ".join(product.prompt_hint.split())
    head = f"Marketplace promo photo of this {what}" + (f" for {season}" if season else "") + "."
    must = [head] + ([f"{hint}."] if hint else []) + ["Keep the garment's exact colour, pattern and details."]
    optional = [
        f"Scene: {scene}.",
        f"Lighting: {lighting}.",
        f"Framing: {pose.split(', subject covers')[0]}.",
        f"Mood: {mood}.",
    ]
    if colours:
        optional.append("Palette: " + ", ".join(dict.fromkeys(colours)) + ".")
    while optional and _words(" ".join(must[:2] + optional + must[2:])) > MAX_PROMPT_WORDS:
        optional.pop()
    text = " ".join(must[:2] + optional + must[2:])
    if _words(text) > MAX_PROMPT_WORDS:  # only an enormous hint gets here: cut it, keep the sentence frame
        text = " ".join(text.split()[:MAX_PROMPT_WORDS])
    return text


def _median(ms: list[dict[str, float]]) -> dict[str, float]:
    # median, not mean: one black-backdrop hit among white ones must not invent a grey studio
    return {k: round(float(np.median([m[k] for m in ms])), 4) for k in ms[0]}


class LocalAnalyzer:
    """StyleAnalyzer with no model: pixel statistics of the references, worded by fixed rules."""

    model = "local/stats-analyzer-v1"

    def analyze(self, references: Sequence[Path], product: NewProduct) -> Analysis:
        warnings: list[str] = []
        pixels: list[Pixels] = []
        for ref in references:
            try:
                pixels.append(prepare(load_image(ref)))
            except InputError as exc:
                warnings.append(f"reference skipped: {exc}")
        if not pixels:
            style = self._neutral(product, warnings)
        else:
            style = self._from_references(pixels, product, warnings)
        raw = json.dumps({"measurements": style.measurements, "palette": style.palette}, sort_keys=True)
        return Analysis(style=style, cost_usd=0.0, raw=raw, warnings=list(style.warnings))

    def _from_references(self, pixels: list[Pixels], product: NewProduct, warnings: list[str]) -> StyleAnalysis:
        per_image = [measure(p) for p in pixels]
        m = _median(per_image)
        m["n_references"] = float(len(pixels))
        palette, names, shares = _palette(pixels)
        for i, share in enumerate(shares):
            m[f"palette_share_{i}"] = round(share, 4)
        keys = {_key(one) for one in per_image}
        if len(keys) > 1:
            warnings.append(
                f"references disagree on brightness ({', '.join(sorted(keys))}); the median look is described"
            )
        scene, lighting, pose, mood = _scene(m), _lighting(m), _pose(m), _mood(m)
        return StyleAnalysis(
            scene=scene,
            lighting=lighting,
            pose=pose,
            mood=mood,
            prompt=_prompt(product, scene, lighting, pose, mood, names),
            palette=palette,
            measurements=m,
            warnings=warnings,
        )

    def _neutral(self, product: NewProduct, warnings: list[str]) -> StyleAnalysis:
        warnings.append("no usable reference images: neutral studio look from the product's own metadata")
        palette: list[str] = []
        names: list[str] = []
        m: dict[str, float] = {"n_references": 0.0}
        try:  # the flat-lay's own colours, so the prompt at least names the garment's palette
            flat = prepare(load_image(product.image_path))
            palette, names, shares = _palette([flat])
            m.update({f"palette_share_{i}": round(s, 4) for i, s in enumerate(shares)})
        except InputError as exc:
            warnings.append(f"flat-lay unreadable, no palette: {exc}")
        scene = "plain high-key studio backdrop, seamless light grey"
        lighting = "soft, even, high-key light, neutral white balance"
        pose = "full-length, subject spans the frame height, centred, portrait frame"
        mood = "clean, timeless"
        return StyleAnalysis(
            scene=scene,
            lighting=lighting,
            pose=pose,
            mood=mood,
            prompt=_prompt(product, scene, lighting, pose, mood, names),
            palette=palette,
            measurements=m,
            warnings=warnings,
        )
