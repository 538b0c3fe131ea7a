"""Place a cut-out product on a pure white canvas or in a scene built from a best-seller's photo."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

from hitline.domain.cutout import subject_mask
from hitline.domain.models import Preset, StyleAnalysis

__all__ = ["compose", "compose_placed", "scene_backdrop", "layout_box", "Placement"]

WHITE_FILL = 0.9  # share of the frame the product spans on white: Amazon asks for at least 85%
_BACKDROP_SIDE = 256  # backdrops are modelled this small: they are blurred anyway
_SHADOW_SIDE = 768  # shadows likewise

_backdrops: OrderedDict[str, np.ndarray] = OrderedDict()
_backdrops_lock = threading.Lock()


@dataclass(frozen=True)
class Placement:
    """Where the product goes: a box (w, h) centred at (cx, cy), in canvas pixels."""

    box_w: float
    box_h: float
    cx: float
    cy: float


def layout_box(width: int, height: int) -> Placement:
    """A sensible product box for the aspect ratio: wide strips keep the right side for text,
    tall strips keep the lower part for text, everything else is centred."""
    r = width / height
    if r >= 1.9:  # 21:9, 4:1, 8:1: the product takes the strip's height, so it still reads when the
        # banner is shown at thumbnail width; a wide product (a bag, a folded knit) may take more width
        box_h = 0.86 * height
        box_w = min(0.42 * width, box_h * 1.6)
        margin = max(0.05 * width, 0.12 * height)
        return Placement(box_w, box_h, margin + box_w / 2, 0.5 * height)
    if r >= 1.45:  # 3:2, 16:9
        box_h = 0.82 * height
        box_w = 0.48 * width
        return Placement(box_w, box_h, 0.34 * width, 0.5 * height)
    if r > 0.62:  # 4:3 .. 2:3
        return Placement(0.8 * width, 0.8 * height, 0.5 * width, 0.49 * height)
    # 9:16, 1:4, 1:8
    box_w = 0.84 * width
    box_h = min(0.6 * height, box_w * 1.45)
    top = max(0.06 * height, 0.08 * width)
    return Placement(box_w, box_h, 0.5 * width, top + box_h / 2)


def _fit(product: Image.Image, box_w: float, box_h: float) -> Image.Image:
    s = min(box_w / product.width, box_h / product.height)
    size = (max(1, round(product.width * s)), max(1, round(product.height * s)))
    # resize with premultiplied alpha, or transparent pixels bleed their colour into the edge
    return product.convert("RGBa").resize(size, Image.Resampling.LANCZOS).convert("RGBA")


def _inpainted_reference(reference: Image.Image) -> np.ndarray:
    """The reference photo with its subject painted out, small and float (0..1): the empty set."""
    small = reference.convert("RGB")
    small.thumbnail((_BACKDROP_SIDE, _BACKDROP_SIDE), Image.Resampling.BILINEAR)
    key = hashlib.sha1(small.tobytes()).hexdigest()
    with _backdrops_lock:
        if key in _backdrops:
            _backdrops.move_to_end(key)
            return _backdrops[key]
    arr = np.asarray(small)
    sal = subject_mask(small)
    hole: np.ndarray = (sal > 0.12).astype(np.uint8) * 255
    hole = cv2.dilate(hole, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (17, 17)))
    filled: np.ndarray
    if hole.mean() > 0.6 * 255:
        # the subject fills the frame: too little set left to inpaint from, keep only its light
        keep = hole == 0
        colour = arr[keep].mean(axis=0) if keep.any() else np.array([235.0, 232.0, 228.0])
        t = np.linspace(1.04, 0.9, arr.shape[0])[:, None, None]
        filled = np.clip(np.broadcast_to(colour, arr.shape) * t, 0, 255).astype(np.uint8)
    else:
        filled = cv2.inpaint(arr, hole, 7, cv2.INPAINT_TELEA)
    sigma = max(filled.shape[:2]) * 0.025
    out = cv2.GaussianBlur(filled.astype(np.float32) / 255.0, (0, 0), sigma)
    with _backdrops_lock:
        _backdrops[key] = out
        while len(_backdrops) > 32:
            _backdrops.popitem(last=False)
    return out


def _palette_backdrop(style: StyleAnalysis) -> np.ndarray:
    """A soft studio gradient from the analysed palette, for when there is no reference photo."""
    cols = []
    for hx in style.palette[:3]:
        try:
            cols.append([int(hx.lstrip("#")[i : i + 2], 16) / 255.0 for i in (0, 2, 4)])
        except ValueError:
            continue
    base = np.array(cols[0] if cols else [0.92, 0.9, 0.87])
    # a backdrop is light: lift the colour towards paper white, keep its hue
    top = 0.35 * base + 0.65 * np.array([0.97, 0.96, 0.95])
    bottom = top * 0.86
    t = np.linspace(0, 1, 64)[:, None, None]
    return np.broadcast_to(top * (1 - t) + bottom * t, (64, 48, 3)).astype(np.float32)


def scene_backdrop(reference: Image.Image | None, style: StyleAnalysis, width: int, height: int) -> np.ndarray:
    """The empty scene at a small size with the output's aspect ratio (float RGB 0..1)."""
    src = _inpainted_reference(reference) if reference is not None else _palette_backdrop(style)
    sh, sw = src.shape[:2]
    r_src, r_out = sw / sh, width / height
    # cover-crop up to a factor of 2 in aspect; beyond that (4:1, 1:8 strips) stretch the rest, which
    # on a blurred, empty set reads as the same light falloff rather than a sliver of one wall
    if r_out > r_src:
        target = min(r_out, r_src * 2.0)
        ch = max(2, round(sw / target))
        y0 = round((sh - ch) * 0.35)
        crop = src[y0 : y0 + ch]
    else:
        target = max(r_out, r_src / 2.0)
        cw = max(2, round(sh * target))
        x0 = (sw - cw) // 2
        crop = src[:, x0 : x0 + cw]
    scale = _BACKDROP_SIDE / max(width, height)
    size = (max(2, round(width * scale)), max(2, round(height * scale)))
    out = cv2.resize(np.ascontiguousarray(crop), size, interpolation=cv2.INTER_CUBIC)
    # a gentle vignette pulls the eye to the product
    yy, xx = np.mgrid[0 : size[1], 0 : size[0]].astype(np.float32)
    d = ((xx / size[0] - 0.5) ** 2 + (yy / size[1] - 0.45) ** 2) ** 0.5
    out = out * (1.0 - 0.12 * np.clip(d / 0.7, 0, 1) ** 2)[..., None]
    backdrop: np.ndarray = np.clip(out, 0, 1)
    return backdrop


def _light_side(backdrop: np.ndarray) -> float:
    """-1 when the light comes from the left, +1 from the right (the brighter half of the set)."""
    lum = backdrop.mean(axis=2)
    half = lum.shape[1] // 2
    diff = float(lum[:, half:].mean() - lum[:, :half].mean())
    return float(np.clip(diff * 25.0, -1.0, 1.0))


def _match_light(product: Image.Image, backdrop: np.ndarray, style: StyleAnalysis) -> Image.Image:
    """Nudge the product's white balance and exposure a little towards the scene's."""
    arr = np.asarray(product).astype(np.float32)
    alpha = arr[..., 3] > 128
    if alpha.sum() < 16:
        return product
    scene = backdrop.reshape(-1, 3).mean(axis=0) + 1e-3
    tint = scene / scene.mean()  # >1 in R and <1 in B for a warm set
    warmth = style.measurements.get("warmth")
    if warmth is not None:  # the analyzer's number (-1 cool .. +1 warm) wins over our estimate
        w = float(np.clip(warmth, -1.0, 1.0))
        tint = np.array([1 + 0.08 * w, 1.0, 1 - 0.08 * w])
    gain = tint**0.35
    scene_l = float(scene.mean())
    prod_l = float(arr[alpha][:, :3].mean()) / 255.0 + 1e-3
    exposure = float(np.clip((scene_l / max(prod_l, 0.2)) ** 0.08, 0.94, 1.06))
    rgb = np.clip(arr[..., :3] * (gain * exposure)[None, None, :], 0, 255)
    out = np.dstack([rgb, arr[..., 3]]).astype(np.uint8)
    return Image.fromarray(out, "RGBA")


def _shadow_mask(
    size: tuple[int, int], product: Image.Image, pos: tuple[int, int], light: float, strength: float
) -> Image.Image:
    """Soft drop shadow plus contact shadow as an L mask at canvas size (255 = full shadow)."""
    w, h = size
    s = min(1.0, _SHADOW_SIDE / max(w, h))
    sw, shh = max(2, round(w * s)), max(2, round(h * s))
    pw, ph = max(1, round(product.width * s)), max(1, round(product.height * s))
    px, py = pos[0] * s, pos[1] * s
    alpha = product.getchannel("A").resize((pw, ph), Image.Resampling.BILINEAR)
    canvas = Image.new("L", (sw, shh), 0)
    # the cast shadow falls away from the light, down and to the side
    dx, dy = round(-light * 0.04 * pw + 0.015 * pw), round(0.035 * ph)
    canvas.paste(alpha.point(lambda v: int(v * 0.7 * strength)), (round(px) + dx, round(py) + dy))
    canvas = canvas.filter(ImageFilter.GaussianBlur(max(1.0, 0.03 * max(pw, ph))))
    contact = Image.new("L", (sw, shh), 0)
    bottom = py + ph
    ImageDraw.Draw(contact).ellipse(
        [px + 0.12 * pw, bottom - 0.025 * ph, px + 0.88 * pw, bottom + 0.02 * ph], fill=int(150 * strength)
    )
    contact = contact.filter(ImageFilter.GaussianBlur(max(1.0, 0.02 * max(pw, ph))))
    out = ImageChops.lighter(canvas, contact)
    return out.resize((w, h), Image.Resampling.BILINEAR) if s < 1.0 else out


def _apply_shadow(canvas: Image.Image, shadow: Image.Image, tint: tuple[int, int, int]) -> Image.Image:
    # multiply towards a darker tone of the set, not towards grey: shadows pick up the ambient colour
    dark = Image.new("RGB", canvas.size, tint)
    return Image.composite(ImageChops.multiply(canvas, dark), canvas, shadow)


def _pasted(size: tuple[int, int], placed: Image.Image, pos: tuple[int, int]) -> np.ndarray:
    """Where the pasted product is visibly there, at canvas size (the gate reads it, see placement.py)."""
    mask = np.zeros((size[1], size[0]), bool)
    alpha = np.asarray(placed.getchannel("A")) > 127
    x, y = pos
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(size[0], x + placed.width), min(size[1], y + placed.height)
    if x1 > x0 and y1 > y0:
        mask[y0:y1, x0:x1] = alpha[y0 - y : y1 - y, x0 - x : x1 - x]
    return mask


def _compose_white(product: Image.Image, preset: Preset) -> tuple[Image.Image, np.ndarray]:
    """Amazon's main image, met by construction: every background pixel exactly RGB 255 (no cast
    shadow: a shadow is not pure white) and the product spanning WHITE_FILL of the frame."""
    w, h = preset.width, preset.height
    placed = _fit(_opaque_crop(product), WHITE_FILL * w, WHITE_FILL * h)
    x = (w - placed.width) // 2
    y = (h - placed.height) // 2
    canvas = Image.new("RGB", (w, h), (255, 255, 255))
    canvas.paste(placed, (x, y), placed)
    return canvas, _pasted((w, h), placed, (x, y))


def _opaque_crop(product: Image.Image) -> Image.Image:
    """The cut-out cropped to where it is visibly there, so the fill is measured on the product."""
    box = product.getchannel("A").point(lambda v: 255 if v > 24 else 0).getbbox()
    return product.crop(box) if box else product


def _grain(size: tuple[int, int], seed: int = 11) -> Image.Image:
    """A tiled fine noise that hides 8-bit banding in big smooth gradients."""
    tile = np.random.default_rng(seed).integers(0, 5, (128, 128), dtype=np.uint8)
    t = Image.fromarray(tile, "L")
    out = Image.new("L", size)
    for yy in range(0, size[1], 128):
        for xx in range(0, size[0], 128):
            out.paste(t, (xx, yy))
    return out.convert("RGB")


def _compose_scene(
    product: Image.Image, reference: Image.Image | None, style: StyleAnalysis, preset: Preset
) -> tuple[Image.Image, np.ndarray]:
    w, h = preset.width, preset.height
    small = scene_backdrop(reference, style, w, h)
    canvas = Image.fromarray((small * 255).astype(np.uint8), "RGB").resize((w, h), Image.Resampling.BICUBIC)
    canvas = ImageChops.add(canvas, _grain((w, h)), scale=1.0, offset=-2)
    place = layout_box(w, h)
    placed = _fit(_match_light(product, small, style), place.box_w, place.box_h)
    x = round(place.cx - placed.width / 2)
    y = round(place.cy - placed.height / 2)
    light = _light_side(small)
    shadow = _shadow_mask((w, h), placed, (x, y), light, strength=1.0)
    mean = small.reshape(-1, 3).mean(axis=0)
    tint = tuple(int(v) for v in np.clip(mean * 255 * 0.55, 0, 255))
    canvas = _apply_shadow(canvas, shadow, tint)  # type: ignore[arg-type]
    canvas.paste(placed, (x, y), placed)
    return canvas, _pasted((w, h), placed, (x, y))


def scene_plate(reference: Image.Image | None, style: StyleAnalysis, preset: Preset) -> Image.Image:
    """The scene without the product (staged mode): the backdrop the compositor would build, with grain."""
    w, h = preset.width, preset.height
    small = scene_backdrop(reference, style, w, h)
    canvas = Image.fromarray((small * 255).astype(np.uint8), "RGB").resize((w, h), Image.Resampling.BICUBIC)
    return ImageChops.add(canvas, _grain((w, h)), scale=1.0, offset=-2)


def compose_on_plate(
    product: Image.Image, plate: Image.Image, style: StyleAnalysis, preset: Preset
) -> tuple[Image.Image, np.ndarray]:
    """The cut-out product placed into a scene plate (staged mode): light matched, shadow cast."""
    w, h = preset.width, preset.height
    canvas = (
        plate.convert("RGB").resize((w, h), Image.Resampling.BICUBIC) if plate.size != (w, h) else plate.convert("RGB")
    )
    small = (
        np.asarray(canvas.resize((max(8, w // 8), max(8, h // 8)), Image.Resampling.BILINEAR), dtype=np.float32) / 255.0
    )
    place = layout_box(w, h)
    placed = _fit(_match_light(product.convert("RGBA"), small, style), place.box_w, place.box_h)
    x = round(place.cx - placed.width / 2)
    y = round(place.cy - placed.height / 2)
    shadow = _shadow_mask((w, h), placed, (x, y), _light_side(small), strength=1.0)
    tint = tuple(int(v) for v in np.clip(small.reshape(-1, 3).mean(axis=0) * 255 * 0.55, 0, 255))
    canvas = _apply_shadow(canvas, shadow, tint)  # type: ignore[arg-type]
    canvas.paste(placed, (x, y), placed)
    return canvas, _pasted((w, h), placed, (x, y))


def compose_placed(
    product: Image.Image, reference: Image.Image | None, style: StyleAnalysis, preset: Preset
) -> tuple[Image.Image, np.ndarray]:
    """A promo image of exactly preset.width x preset.height (RGB) with the cut-out product, and where
    the product went (bool mask at the image's size)."""
    product = product.convert("RGBA")
    if preset.background == "white":
        out, mask = _compose_white(product, preset)
    else:
        out, mask = _compose_scene(product, reference, style, preset)
    assert out.size == (preset.width, preset.height)
    return out, mask


def compose(product: Image.Image, reference: Image.Image | None, style: StyleAnalysis, preset: Preset) -> Image.Image:
    """A promo image of exactly preset.width x preset.height (RGB) with the cut-out product."""
    return compose_placed(product, reference, style, preset)[0]
