"""Checks on what goes in and what comes out: input checks on a flat-lay against a preset, and the
output gate on a rendered image (spec rules from presets.toml, fidelity to the flat-lay). Pure
functions over images and masks: no job table, no Celery, no provider."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from typing import Any, Callable, Iterator, Sequence

import cv2
import numpy as np
from PIL import Image

from hitline.domain.backdrop import to_lab
from hitline.domain.colour import ciede2000
from hitline.domain.models import IMAGE_SIZES, Preset

__all__ = [
    "Check",
    "MAX_UPSCALE",
    "input_checks",
    "check_resolution",
    "resolve_preset",
    "check_background",
    "check_touching",
    "gate",
    "output_mask",
    "find_text",
    "failed",
    "TextFinder",
    "garment_colour",
    "text_in_product",
    "foreign_content",
    "product_fidelity",
    "blockiness",
]

MAX_UPSCALE = 2.0  # the product's pixels may be enlarged this much; beyond it the output is a smudge
OFF_WHITE_DELTA = 8.0  # CIEDE2000 of the flat-lay's paper from white beyond which it is not white
TOUCH_SHARE = 0.02  # product on this share of a side's edge pixels touches that side
_NEAR_WHITE = 250  # on a white output, a pixel with any channel below this is product (or shadow)
_OCR_SIDE = 768  # text a shopper can read survives this downscale; OCR is the slow check
_PRODUCT_TEXT_SIDE = 512  # a product's box is read at the size a shopper sees a product in a listing
_COLOUR_SIDE = 512  # a garment's median colour does not need more pixels than this
_OCR_MIN_SCORE = 0.6

TextFinder = Callable[[Image.Image], list[tuple[str, float]]]


@dataclass(frozen=True)
class Check:
    """One check: what was measured against what threshold, and a sentence a person can act on."""

    name: str
    passed: bool
    measured: Any
    threshold: Any
    message: str
    action: str = ""  # input checks: "downsize:<size>" or "fail" when a preset must change

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def failed(checks: Sequence[Check]) -> list[Check]:
    return [c for c in checks if not c.passed]


# input checks ------------------------------------------------------------------------------------
def _fill(preset: Preset) -> float:
    return float(preset.rule("min_fill") or preset.rule("min_height_fill") or 0.8)


def _needed_px(preset: Preset, size: str | None = None) -> float:
    """How many pixels the product spans in the output (its long side in the frame's short side)."""
    p = preset if size is None else Preset.build(preset.name, preset.aspect_ratio, size, preset.background)
    return _fill(preset) * min(p.width, p.height)


def check_resolution(product_px: int, preset: Preset) -> Check:
    """Is the flat-lay's product big enough for the preset without more than MAX_UPSCALE? If not,
    say by how much, and (policy `low_res`) which smaller size class it supports, or fail."""
    needed = _needed_px(preset)
    factor = needed / max(1, product_px)
    if factor <= MAX_UPSCALE:
        return Check(
            "resolution",
            True,
            round(factor, 2),
            MAX_UPSCALE,
            f"product {product_px} px, {preset.size} needs {needed:.0f} px: {factor:.1f}x",
        )
    short = (
        f"product is {product_px} px, {preset.name} at {preset.size} needs {needed:.0f} px ({factor:.1f}x upscale, "
        f"at most {MAX_UPSCALE:g}x)"
    )
    if preset.low_res == "downsize":
        floor = float(preset.rule("min_side") or 0)  # a marketplace minimum (Amazon: 1000 px)
        smaller = [s for s, side in IMAGE_SIZES.items() if floor <= side < IMAGE_SIZES[preset.size]]
        fits = [s for s in smaller if _needed_px(preset, s) / max(1, product_px) <= MAX_UPSCALE]
        if fits:
            size = max(fits, key=IMAGE_SIZES.__getitem__)
            return Check(
                "resolution",
                False,
                round(factor, 2),
                MAX_UPSCALE,
                f"{short}: rendering at {size} instead",
                action=f"downsize:{size}",
            )
    return Check(
        "resolution",
        False,
        round(factor, 2),
        MAX_UPSCALE,
        f"{short}: preset failed; photograph the product larger",
        action="fail",
    )


def resolve_preset(preset: Preset, check: Check) -> Preset | None:
    """The preset to render after a resolution check: itself, a smaller size class, or None (fail)."""
    if check.passed:
        return preset
    if check.action.startswith("downsize:"):
        size = check.action.split(":", 1)[1]
        smaller = Preset.build(
            preset.name, preset.aspect_ratio, size, preset.background, low_res=preset.low_res, rules=dict(preset.rules)
        )
        return replace(smaller, slots=preset.slots)  # slots are shares of the frame: they scale with it
    return None


def _paper_lab(lab: np.ndarray, mask: np.ndarray) -> np.ndarray:
    ring = np.zeros(mask.shape, bool)
    b = max(2, round(0.03 * min(mask.shape)))
    ring[:b], ring[-b:], ring[:, :b], ring[:, -b:] = True, True, True, True
    sample = ring & ~mask
    paper: np.ndarray = np.median(lab[sample if sample.any() else ~mask], axis=0)
    return paper


def check_background(flatlay: Image.Image, mask: np.ndarray, preset: Preset) -> Check:
    """A white-background preset from a flat-lay on coloured paper: the render has to replace it."""
    paper = _paper_lab(to_lab(np.asarray(flatlay.convert("RGB"))), mask)
    delta = float(ciede2000(paper, np.array([100.0, 0.0, 0.0])))
    if preset.background != "white":
        return Check("background", True, round(delta, 1), None, "the preset has a scene background")
    ok = delta <= OFF_WHITE_DELTA
    return Check(
        "background",
        ok,
        round(delta, 1),
        OFF_WHITE_DELTA,
        "flat-lay background is white"
        if ok
        else f"flat-lay background is not white (ΔE00 {delta:.1f} from white); {preset.name} needs pure white, "
        f"so the background must be replaced entirely",
    )


def _touching(mask: np.ndarray) -> list[str]:
    edges = {"top": mask[0], "bottom": mask[-1], "left": mask[:, 0], "right": mask[:, -1]}
    return [side for side, px in edges.items() if px.mean() > TOUCH_SHARE]


def check_touching(mask: np.ndarray) -> Check:
    """A garment running off the photo is cropped in every output."""
    sides = _touching(mask)
    return Check(
        "touches_frame",
        not sides,
        sides,
        [],
        "the product is clear of the photo's edges"
        if not sides
        else f"the product touches the photo's {', '.join(sides)} edge(s): it may be cropped; leave a margin",
    )


def input_checks(flatlay: Image.Image, mask: np.ndarray, presets: Sequence[Preset]) -> dict[str, list[Check]]:
    """Every input check for every preset (the touching check is the same for all)."""
    ys, xs = np.nonzero(mask)
    product_px = int(max(np.ptp(ys), np.ptp(xs)) + 1) if len(ys) else 0
    touching = check_touching(mask)
    return {p.name: [check_resolution(product_px, p), check_background(flatlay, mask, p), touching] for p in presets}


# the output gate ---------------------------------------------------------------------------------
def output_mask(output: Image.Image, preset: Preset) -> np.ndarray:
    """Where the product is in an output: on white, whatever is not white; in a scene, u2netp's subject."""
    rgb = np.asarray(output.convert("RGB"))
    if preset.background == "white":
        mask = rgb.min(axis=2) < _NEAR_WHITE
        return cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)).astype(bool)
    from hitline.domain.cutout import subject_mask

    small = output.convert("RGB")
    small.thumbnail((512, 512))
    sal = subject_mask(small)
    return cv2.resize(sal, output.size, interpolation=cv2.INTER_LINEAR) > 0.5


_ocr: Any = None
_ocr_lock = threading.Lock()


def find_text(image: Image.Image) -> list[tuple[str, float]]:
    """Text that rapidocr reads in the image (bundled PP-OCR models; no download)."""
    global _ocr
    with _ocr_lock:
        if _ocr is None:
            import logging

            from rapidocr import RapidOCR

            # one thread: onnxruntime's pool spins while waiting (~25% more CPU for the same answer), and a
            # worker already runs SKUs side by side
            _ocr = RapidOCR(
                params={
                    "EngineConfig.onnxruntime.intra_op_num_threads": 1,
                    "EngineConfig.onnxruntime.inter_op_num_threads": 1,
                }
            )
            logging.getLogger("RapidOCR").setLevel(logging.ERROR)
        small = image.convert("RGB")
        small.thumbnail((_OCR_SIDE, _OCR_SIDE))
        result = _ocr(np.asarray(small))
    texts = result.txts or ()
    scores = result.scores or ()
    # one letter alone is how OCR reads a garment's outline (a T-shirt is a "T"); words have two or more
    return [(t, float(s)) for t, s in zip(texts, scores) if sum(ch.isalnum() for ch in t) >= 2 and s >= _OCR_MIN_SCORE]


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    ys, xs = np.nonzero(mask)
    if not len(ys):
        return None
    return int(xs.min()), int(ys.min()), int(xs.max() + 1), int(ys.max() + 1)


def garment_colour(image: Image.Image, mask: np.ndarray) -> np.ndarray:
    """The garment's typical colour: the median CIELAB of its pixels, the edge left out. Only the mask's
    box is converted to CIELAB (a 2K output is 4 MP; the product a part of it)."""
    box = _bbox(mask)
    if box is not None:
        x0, y0, x1, y1 = max(0, box[0] - 3), max(0, box[1] - 3), box[2] + 3, box[3] + 3
        image, mask = image.crop((x0, y0, min(image.width, x1), min(image.height, y1))), mask[y0:y1, x0:x1]
    s = _COLOUR_SIDE / max(image.size)
    if s < 1.0:  # the median of a few hundred thousand pixels is the median of millions
        size = (max(1, round(image.width * s)), max(1, round(image.height * s)))
        image = image.resize(size, Image.Resampling.BOX)
        mask = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    inner = cv2.erode(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    use = inner if inner.sum() > 50 else mask
    lab = to_lab(np.asarray(image.convert("RGB")))
    typical: np.ndarray = np.median(lab[use], axis=0)
    return typical


@contextmanager
def _timed(timings: dict[str, float] | None, name: str) -> Iterator[None]:
    """CPU seconds of one check added to timings[name] (bench/bench_local.py); nothing without a dict."""
    if timings is None:
        yield
        return
    t0 = time.process_time()
    try:
        yield
    finally:
        timings[name] = timings.get(name, 0.0) + time.process_time() - t0


def text_in_product(output: Image.Image, mask: np.ndarray, text_finder: TextFinder) -> list[tuple[str, float]]:
    """Text in the product's box of an output: where a compositor's output can carry text from the photo
    (its backdrop is a blurred, emptied set). The box is read at most _PRODUCT_TEXT_SIDE on its long side, the
    size a shopper sees a product at, not the whole frame shrunk."""
    box = _bbox(mask)
    if box is None:
        return []
    pad = max(4, round(0.03 * max(box[2] - box[0], box[3] - box[1])))
    crop = output.crop(
        (max(0, box[0] - pad), max(0, box[1] - pad), min(output.width, box[2] + pad), min(output.height, box[3] + pad))
    )
    crop.thumbnail((_PRODUCT_TEXT_SIDE, _PRODUCT_TEXT_SIDE), Image.Resampling.BILINEAR)
    return text_finder(crop)


def _without_slots(image: Image.Image, preset: Preset) -> Image.Image:
    """The image with the preset's text slots painted over in their median colour."""
    if not preset.slots:
        return image
    out = image.convert("RGB").copy()
    for slot in preset.slots:
        box = slot.pixels(*out.size)
        region = np.asarray(out.crop(box)).reshape(-1, 3)
        out.paste(tuple(int(v) for v in np.median(region, axis=0)), box)
    return out


# the checks that see what a shopper sees (issue 26) ------------------------------------------
_SEE_SIDE = 512  # the new checks look at an output with its short side at this: a listing's size
FOREIGN_LIMIT = 0.25  # foreign edge pixels outside the product, per pixel of the frame's short side
FOREIGN_EDGE = 10.0  # grey levels per pixel: the compositor's backdrop is blurred, its shadow soft
FOREIGN_RIDGE = 18.0  # a thin line this much off its surroundings (a frame line, a hair of paper)
FIDELITY_LIMIT = 0.005  # share of the product's pixels unlike the flat-lay's garment (a good demo output: 0.0025)
FIDELITY_SLACK = 3  # px at a shopper's size: the product may sit this far off where the flat-lay says
FIDELITY_DELTA = 20.0  # grey levels: a pixel this far off the flat-lay (light matched) is not the garment
SHARP_LIMIT = 0.85  # the product's fine detail against the flat-lay's at the same size
PLAIN_DETAIL = 1.0  # grey levels of fine detail below which a fabric is plain (sharpness not judged)
BLOCK_LIMIT = 1.8  # steps peaking on the 8x8 grid this much more often than off it: JPEG blocks


def _grey(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("L"), dtype=np.float32)


def _seen(output: Image.Image, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The output's grey levels and the product mask at a shopper's size (short side _SEE_SIDE)."""
    w, h = output.size
    s = min(1.0, _SEE_SIDE / min(w, h))
    size = (max(1, round(w * s)), max(1, round(h * s)))
    grey = _grey(output)
    if s < 1.0:
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
        mask = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_LINEAR) > 0
    return grey, mask


def foreign_content(output: Image.Image, mask: np.ndarray, preset: Preset) -> float:
    """How much sharp structure lies outside the product: frame lines, props, scraps of paper, a product
    running off the frame. The backdrop a compositor builds is blurred and its shadow soft, white is
    flat: an edge or a thin line there is something that is not the product. Measured as edge pixels
    per pixel of the frame's short side (a frame line around the product scores ~4)."""
    grey, prod = _seen(output, mask)
    h, w = grey.shape
    k = max(3, round(0.012 * min(h, w))) * 2 + 1
    near = cv2.dilate(prod.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))).astype(bool)
    away = ~near
    away[:2], away[-2:], away[:, :2], away[:, -2:] = False, False, False, False
    for slot in preset.slots:  # the preset's own words are typeset there later, not foreign
        x0, y0, x1, y1 = slot.pixels(w, h)
        away[y0:y1, x0:x1] = False
    if not away.any():
        return 0.0
    soft = cv2.GaussianBlur(grey, (0, 0), 1.0)
    edge = np.hypot(cv2.Sobel(soft, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(soft, cv2.CV_32F, 0, 1, ksize=3)) / 8.0
    ridge = np.abs(grey - cv2.medianBlur(grey.astype(np.uint8), 5).astype(np.float32))
    foreign = (edge > FOREIGN_EDGE) | (ridge > FOREIGN_RIDGE)
    if preset.background == "white":  # white is exactly white: any pixel off it away from the product
        foreign |= grey < _NEAR_WHITE
    hits: np.ndarray = away & foreign
    return float(hits.sum()) / float(min(h, w))


def product_fidelity(
    output: Image.Image, mask: np.ndarray, flatlay: Image.Image, flatlay_mask: np.ndarray
) -> tuple[float, float] | None:
    """The product in the output against the flat-lay's garment brought to the same box and light:
    (share of the product's pixels unlike the garment, fine detail kept). Whatever was painted over the
    product (a watermark, a cast shadow, a scrap) is unlike it; a blurred output keeps little detail.
    None when either mask is empty."""
    box, fbox = _bbox(mask), _bbox(flatlay_mask)
    if box is None or fbox is None:
        return None
    bw, bh = box[2] - box[0], box[3] - box[1]
    s = min(1.0, _SEE_SIDE / max(bw, bh))
    size = (max(8, round(bw * s)), max(8, round(bh * s)))
    out = cv2.resize(_grey(output.crop(box)), size, interpolation=cv2.INTER_AREA)
    flat = cv2.resize(_grey(flatlay.crop(fbox)), size, interpolation=cv2.INTER_AREA)

    def fit(m: np.ndarray, b: tuple[int, int, int, int]) -> np.ndarray:
        crop = m[b[1] : b[3], b[0] : b[2]].astype(np.uint8)
        return cv2.resize(crop, size, interpolation=cv2.INTER_NEAREST) > 0

    both = cv2.erode((fit(mask, box) & fit(flatlay_mask, fbox)).astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
    if both.sum() < 50:
        return None
    gain = float(np.median(out[both])) / max(1.0, float(np.median(flat[both])))
    a, b = cv2.GaussianBlur(out, (0, 0), 1.0), cv2.GaussianBlur(flat * gain, (0, 0), 1.0)
    # the two boxes are found apart (the cut-out's feathered edge, rounding): a pixel or two of slack
    near = np.ones((FIDELITY_SLACK, FIDELITY_SLACK), np.uint8)
    lo, hi = cv2.erode(b, near), cv2.dilate(b, near)
    unlike = (((a < lo - FIDELITY_DELTA) | (a > hi + FIDELITY_DELTA)) & both).astype(np.uint8)
    unlike = cv2.morphologyEx(unlike, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)).astype(bool)

    def detail(g: np.ndarray) -> float:
        return float(np.abs(g - cv2.GaussianBlur(g, (0, 0), 1.5))[both].mean())

    plain = detail(flat * gain)  # a plain fabric has no fine detail to lose: nothing to compare
    return float(unlike.sum()) / float(both.sum()), detail(out) / plain if plain >= PLAIN_DETAIL else 1.0


def blockiness(output: Image.Image) -> float:
    """JPEG's 8x8 grid: how much more often a step between two pixels is a local peak (larger than the
    steps either side) where it crosses a block edge than elsewhere (about 1 without JPEG). Texture
    peaks everywhere alike, flat areas nowhere; compression puts the peaks on the grid."""
    grey = _grey(output)

    def peaks(lines: np.ndarray) -> tuple[float, float]:
        steps = np.abs(np.diff(lines, axis=1))
        mid = steps[:, 1:-1]
        peak = (mid > steps[:, :-2] + 1.0) & (mid > steps[:, 2:] + 1.0)
        edge = (np.arange(1, steps.shape[1] - 1) % 8) == 7
        return float(peak[:, edge].mean()), float(peak[:, ~edge].mean())

    (a, b), (c, d) = peaks(grey[::2]), peaks(grey[:, ::2].T)  # every other line is plenty to see a grid
    return (a + c) / max(1e-4, b + d)


def gate(
    output: Image.Image,
    preset: Preset,
    flatlay: Image.Image,
    flatlay_mask: np.ndarray,
    *,
    text_finder: TextFinder | None = find_text,
    placed: np.ndarray | None = None,
    text: list[tuple[str, float]] | None = None,
    flatlay_colour: np.ndarray | None = None,
    timings: dict[str, float] | None = None,
) -> list[Check]:
    """Every check of one output against its preset's rules and the flat-lay it was made from.

    What a caller already knows is not measured again: `placed`, where a compositor put the product (the
    output is not segmented again); `text`, what was read in the product already (another output of the
    same cut-out); `flatlay_colour`, the flat-lay garment's colour. `timings` collects CPU s per check."""
    w, h = output.size
    checks = [
        Check(
            "size",
            (w, h) == (preset.width, preset.height),
            [w, h],
            [preset.width, preset.height],
            f"{w}x{h}"
            + (
                ""
                if (w, h) == (preset.width, preset.height)
                else f", {preset.name} needs {preset.width}x{preset.height}"
            ),
        )
    ]
    if (w, h) != (preset.width, preset.height):
        output = output.resize((preset.width, preset.height))  # the other checks still say something useful
        w, h = output.size
    with _timed(timings, "mask"):
        mask = placed if placed is not None and placed.shape == (h, w) else output_mask(output, preset)
    box = _bbox(mask)
    area = float(mask.mean())
    # silhouette: present, uncropped, the same shape as in the flat-lay
    fbox = _bbox(flatlay_mask)
    if box is None or area < 0.02 or fbox is None:
        checks.append(Check("silhouette", False, round(area, 3), 0.02, "no product found in the output"))
    else:
        sides = [
            s
            for s, hit in (
                ("left", box[0] <= 1),
                ("top", box[1] <= 1),
                ("right", box[2] >= w - 1),
                ("bottom", box[3] >= h - 1),
            )
            if hit
        ]
        aspect = (box[2] - box[0]) / max(1, box[3] - box[1])
        f_aspect = (fbox[2] - fbox[0]) / max(1, fbox[3] - fbox[1])
        ratio = max(aspect, f_aspect) / max(1e-6, min(aspect, f_aspect))
        ok = not sides and ratio <= 1.35
        msg = (
            "product present, uncropped, same shape"
            if ok
            else "; ".join(
                ([f"product cut off at the {', '.join(sides)} edge"] if sides else [])
                + (
                    [f"product shape changed ({aspect:.2f} wide/tall vs {f_aspect:.2f} in the flat-lay)"]
                    if ratio > 1.35
                    else []
                )
            )
        )
        checks.append(
            Check(
                "silhouette",
                ok,
                {"touches": sides, "aspect_ratio_change": round(ratio, 2)},
                {"touches": [], "aspect_ratio_change": 1.35},
                msg,
            )
        )
    if preset.rule("pure_white"):
        t0 = time.process_time()
        halo = cv2.dilate(mask.astype(np.uint8), np.ones((15, 15), np.uint8))
        white = cv2.inRange(np.asarray(output.convert("RGB")), (255, 255, 255), (255, 255, 255))
        background = int(halo.size - cv2.countNonZero(halo))
        white_bg = cv2.countNonZero(cv2.bitwise_and(white, white, mask=(halo == 0).astype(np.uint8)))
        share = white_bg / background if background else 0.0
        checks.append(
            Check(
                "pure_white",
                share >= 0.995,
                round(share, 4),
                0.995,
                "background is pure white RGB 255"
                if share >= 0.995
                else f"only {share:.1%} of the background is pure white RGB 255 (needs 99.5%)",
            )
        )
        if timings is not None:
            timings["pure_white"] = timings.get("pure_white", 0.0) + time.process_time() - t0
    if preset.rule("min_fill") is not None and box is not None:
        fill = max((box[2] - box[0]) / w, (box[3] - box[1]) / h)
        need = float(preset.rule("min_fill"))
        checks.append(
            Check(
                "fill",
                fill >= need,
                round(fill, 3),
                need,
                f"product spans {fill:.0%} of the frame" + ("" if fill >= need else f" (needs {need:.0%})"),
            )
        )
    if preset.rule("min_height_fill") is not None and box is not None:
        fill = (box[3] - box[1]) / h
        need = float(preset.rule("min_height_fill"))
        checks.append(
            Check(
                "height_fill",
                fill >= need,
                round(fill, 3),
                need,
                f"product is {fill:.0%} of the frame's height"
                + ("" if fill >= need else f" (needs {need:.0%} to read at thumbnail size)"),
            )
        )
    if preset.rule("no_text") and (text_finder is not None or text is not None):
        with _timed(timings, "no_text"):
            if text is not None:
                found = text
            elif placed is not None:
                found = text_in_product(output, mask, text_finder)  # type: ignore[arg-type]
            else:
                # a preset's own text slots carry its words (read back by hitline.domain.textcheck); text
                # anywhere else fails it, and a preset without slots may carry none at all
                found = text_finder(_without_slots(output, preset))  # type: ignore[misc]
        checks.append(
            Check(
                "no_text",
                not found,
                [t for t, _ in found],
                [],
                "no text or logo found"
                if not found
                else f"text found in the output: {', '.join(repr(t) for t, _ in found[:5])}",
            )
        )
    checks.extend(_shopper_checks(output, preset, flatlay, flatlay_mask, placed if placed is mask else None, timings))
    if preset.rule("max_colour_delta") is not None and box is not None and flatlay_mask.any():
        with _timed(timings, "colour"):
            reference = flatlay_colour if flatlay_colour is not None else garment_colour(flatlay, flatlay_mask)
            delta = float(ciede2000(reference, garment_colour(output, mask)))
        limit = float(preset.rule("max_colour_delta"))
        checks.append(
            Check(
                "colour",
                delta <= limit,
                round(delta, 1),
                limit,
                f"garment colour ΔE00 {delta:.1f} from the flat-lay"
                + ("" if delta <= limit else f" (at most {limit:g})"),
            )
        )
    return checks


def _shopper_checks(
    output: Image.Image,
    preset: Preset,
    flatlay: Image.Image,
    flatlay_mask: np.ndarray,
    placed: np.ndarray | None,
    timings: dict[str, float] | None,
) -> list[Check]:
    """What a shopper sees beyond the rules: JPEG blocks on any output; on a compositor's output, judged
    against where the product was placed (what the product should be), anything else in the picture
    (frame lines, scraps, props, the product off the frame) and the product unlike or blurrier than the
    flat-lay's garment (a mark or shadow painted over it, a soft render)."""
    checks = []
    with _timed(timings, "compression"):
        blocks = blockiness(output)
    checks.append(
        Check(
            "compression",
            blocks <= BLOCK_LIMIT,
            round(blocks, 2),
            BLOCK_LIMIT,
            "no JPEG blocks"
            if blocks <= BLOCK_LIMIT
            else f"JPEG blocks: steps peak on the 8x8 grid {blocks:.1f}x as often as off it (at most {BLOCK_LIMIT:g}x)",
        )
    )
    if placed is None or not placed.any():
        return checks  # where the product should be is not known: the other checks judge what was found
    with _timed(timings, "clean_background"):
        foreign = foreign_content(output, placed, preset)
    checks.append(
        Check(
            "clean_background",
            foreign <= FOREIGN_LIMIT,
            round(foreign, 2),
            FOREIGN_LIMIT,
            "nothing but the product and its set"
            if foreign <= FOREIGN_LIMIT
            else f"something besides the product in the picture: sharp edges or lines away from it ({foreign:.1f} "
            f"px per px of the frame, at most {FOREIGN_LIMIT:g}): a frame line, a scrap of the photo, a prop, or "
            f"the product running off the frame",
        )
    )
    with _timed(timings, "matches_product"):
        fidelity = product_fidelity(output, placed, flatlay, flatlay_mask)
    if fidelity is not None:
        unlike, detail = fidelity
        checks.append(
            Check(
                "matches_product",
                unlike <= FIDELITY_LIMIT,
                round(unlike, 4),
                FIDELITY_LIMIT,
                "the product looks as in the flat-lay"
                if unlike <= FIDELITY_LIMIT
                else f"{unlike:.1%} of the product is unlike the flat-lay's garment (at most {FIDELITY_LIMIT:.1%}): "
                f"a mark, shadow or scrap over it, or the product moved",
            )
        )
        checks.append(
            Check(
                "sharp",
                detail >= SHARP_LIMIT,
                round(detail, 2),
                SHARP_LIMIT,
                "the product is as sharp as in the flat-lay"
                if detail >= SHARP_LIMIT
                else f"the product is blurred: {detail:.0%} of the flat-lay's fine detail (needs {SHARP_LIMIT:.0%})",
            )
        )
    return checks
