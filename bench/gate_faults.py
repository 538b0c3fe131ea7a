"""A labelled set of outputs with the faults a shopper sees, for bench_gate.py --faults: the real-like
flat-lays of tests/cutout_cases.py composited by the local compositor with their exact cut-out (the
gate is under test here, not the cut-out), then one fault painted into each copy the way it reaches
an output: a frame line around the garment, a watermark carried from the photo, a leftover patch of
the photo's paper, a prop beside the garment, a cast shadow, the product cut by the frame, blur, JPEG 70.
Nothing here is stored: built at bench time from the shared photos."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from hitline.domain.compose import compose_placed
from hitline.domain.imaging import _font
from hitline.domain.models import Preset, StyleAnalysis

STYLE = StyleAnalysis(scene="studio", lighting="soft", pose="flat", mood="calm", prompt="bench", palette=["#d8cfc4"])
FAULTS = ("frame_line", "watermark", "leftover_patch", "prop", "shadow", "cut_by_frame", "blur", "jpeg70")


def exact_cutout(photo: Image.Image, truth: np.ndarray) -> Image.Image:
    rgba = photo.convert("RGBA")
    alpha = Image.fromarray((truth * 255).astype(np.uint8))
    rgba.putalpha(alpha)
    return rgba.crop(alpha.getbbox())


def _box(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def inject(fault: str, image: Image.Image, placed: np.ndarray, preset: Preset) -> Image.Image:
    out = image.copy()
    d = ImageDraw.Draw(out)
    x0, y0, x1, y1 = _box(placed)
    bw, bh = x1 - x0, y1 - y0
    s = max(1, round(min(out.size) / 512))
    if fault == "frame_line":  # the photo's drawn frame travelled with the garment
        pad = round(0.03 * max(bw, bh))
        d.rectangle([x0 - pad, y0 - pad, x1 + pad, y1 + pad], outline=(150, 150, 150), width=2 * s)
    elif fault == "watermark":  # a studio's mark on the garment, readable at a shopper's size
        font = _font(max(14, round(0.05 * bh)))
        d.text((x0 + 0.3 * bw, y0 + 0.55 * bh), "STUDIO 9", fill=(120, 120, 120), font=font)
    elif fault == "leftover_patch":  # a scrap of the photo's paper beside the garment
        w, h = round(0.16 * bw), round(0.1 * bh)
        d.rectangle([x1 - w // 2, y1 - h - round(0.05 * bh), x1 + w // 2, y1 - round(0.05 * bh)], fill=(232, 231, 226))
    elif fault == "prop":  # a hanger / sunglasses left in the picture
        r = round(0.07 * bh)
        cx, cy = min(out.width - r - 2, x1 + r // 2), y0 + round(0.2 * bh)
        d.ellipse([cx - r, cy - r // 2, cx + r, cy + r // 2], fill=(30, 30, 35))
    elif fault == "shadow":
        sh = Image.new("L", out.size, 0)
        ImageDraw.Draw(sh).ellipse([x0 + 0.1 * bw, y1 - 0.02 * bh, x1 - 0.05 * bw, y1 + 0.04 * bh], fill=120)
        sh = sh.filter(ImageFilter.GaussianBlur(6 * s))
        out = Image.composite(Image.new("RGB", out.size, (90, 90, 90)), out, sh)
    elif fault == "cut_by_frame":  # the product runs off the right edge
        shift = out.width - x1 + round(0.15 * bw)
        moved = Image.new("RGB", out.size, out.getpixel((1, out.height // 2)))
        moved.paste(out, (shift, 0))
        out = moved
    elif fault == "blur":
        out = out.filter(ImageFilter.GaussianBlur(3 * s))
    elif fault == "jpeg70":
        buf = io.BytesIO()
        out.save(buf, "JPEG", quality=70)
        out = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    else:
        raise ValueError(fault)
    return out


def outputs(photo: Image.Image, truth: np.ndarray, preset: Preset, reference: Image.Image | None):
    """(label, image, placement) triples: 'good' and one per fault; the placement is where the compositor
    put the product (what the product should be: the faults came after it, as leftovers do)."""
    good, placed = compose_placed(exact_cutout(photo, truth), reference, STYLE, preset)
    yield "good", good, placed
    for fault in FAULTS:
        yield fault, inject(fault, good, placed, preset), placed
