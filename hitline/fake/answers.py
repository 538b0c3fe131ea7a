"""What the fake OpenRouter answers with: pixel-derived embeddings, style JSON, rendered PNGs.

Kept apart from the HTTP plumbing in hitline/fake/server.py; everything here is deterministic.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import io
import logging
import re
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from threadpoolctl import ThreadpoolController

from hitline.domain.models import NewProduct, Preset, StyleAnalysis

__all__ = [
    "BadRequest",
    "decode_image",
    "Projector",
    "analysis_answer",
    "render_png",
    "image_summary",
    "is_judge_request",
    "judge_answer",
    "JUDGE_FAILS",
    "translation_answer",
]

log = logging.getLogger("hitline.fake.server")
_GRID = 16  # image feature: a 16x16 RGB thumbnail (768 numbers) -> near-duplicates stay near
_FEATURES = _GRID * _GRID * 3
_REDUCED_KEPT = 128  # images kept decoded in the instant mode: the catalog photos that come back as references


class BadRequest(ValueError):
    """The request would be rejected by the real API with a 400."""


def decode_image(url: Any, reduced: bool = False) -> Image.Image:
    """An RGB image from a base64 data URI, or BadRequest like the real API. `reduced` (the instant mode):
    a JPEG is decoded at 1/8 scale (all of its data is still read), and the same URI sent again is answered
    from the images decoded before (the same catalog photos come back as references for thousands of SKUs;
    the same bytes decode the same way, and a failure is not kept)."""
    if not isinstance(url, str) or not url.startswith("data:image/") or ";base64," not in url:
        raise BadRequest("image_url.url must be a base64 data URI (data:image/...;base64,...)")
    return _reduced_images.get(url) if reduced else _decode(url, reduced=False)


def _decode(url: str, reduced: bool) -> Image.Image:
    try:
        raw = base64.b64decode(url.split(",", 1)[1], validate=True)
        with Image.open(io.BytesIO(raw)) as image:
            if reduced:
                image.draft("RGB", (max(1, image.width // 8), max(1, image.height // 8)))
            return image.convert("RGB")
    except (binascii.Error, ValueError, OSError, UnidentifiedImageError) as exc:
        raise BadRequest(f"invalid image data: {exc}") from None


class _ReducedImages:
    """The last `size` images decoded at 1/8 scale, by the digest of their data URI. Callers only read
    them (resize, save), so one decoded image serves every request that sends the same bytes."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._images: OrderedDict[bytes, Image.Image] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, url: str) -> Image.Image:
        key = hashlib.sha256(url.encode()).digest()
        with self._lock:
            image = self._images.get(key)
            if image is not None:
                self._images.move_to_end(key)
                return image
        image = _decode(url, reduced=True)  # outside the lock: other threads' images need not wait
        with self._lock:
            self._images[key] = image
            while len(self._images) > self.size:
                self._images.popitem(last=False)
        return image


_reduced_images = _ReducedImages(_REDUCED_KEPT)


def image_summary(image: Image.Image) -> dict[str, Any]:
    mean = np.asarray(image.resize((8, 8)), dtype=np.float64).reshape(-1, 3).mean(axis=0)
    return {"w": image.width, "h": image.height, "mean": [round(float(c), 1) for c in mean]}


# numpy's OpenBLAS hands a product as large as a projection (768 x 2048) to a second thread, which then
# spins ~60 ms waiting for more work: 30 projections cost 2 s of CPU instead of 0.03 s, on the cores the
# client under test shares (bench/overhead.py). One thread gives the same bits (tests/fake/test_answers.py
# checks it). The limit is process-wide while it holds, hence the lock: two overlapping limits would
# restore each other's count.
_BLAS = ThreadpoolController()
_BLAS_LOCK = threading.Lock()


def _project(features: np.ndarray, matrix: np.ndarray) -> list[float]:
    with _BLAS_LOCK, _BLAS.limit(limits=1, user_api="blas"):
        return (features @ matrix).tolist()


class Projector:
    """Seeded random projections of pixel / hashed-word features to a model's dimension."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._cache: dict[tuple[str, int, str], np.ndarray] = {}
        self._lock = threading.Lock()

    def _matrix(self, model: str, dim: int, kind: str) -> np.ndarray:
        key = (model, dim, kind)
        with self._lock:
            if key not in self._cache:
                digest = hashlib.sha256(f"{self.seed}|{model}|{kind}".encode()).digest()
                rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
                self._cache[key] = rng.standard_normal((_FEATURES, dim)).astype(np.float32)
            return self._cache[key]

    def image_vector(self, image: Image.Image, model: str, dim: int) -> list[float]:
        pixels = np.asarray(image.resize((_GRID, _GRID), Image.Resampling.BILINEAR), dtype=np.float32)
        features = pixels.reshape(-1) / 255.0 - 0.5
        return _project(features, self._matrix(model, dim, "image"))  # deliberately not normalised

    def text_vector(self, text: str, model: str, dim: int) -> list[float]:
        features = np.zeros(_FEATURES, dtype=np.float32)
        for word in text.lower().split():
            h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
            features[h % _FEATURES] += 1.0 if (h >> 32) & 1 else -1.0
        return _project(features, self._matrix(model, dim, "text"))


def _hex(rgb: Any) -> str:
    return "#" + "".join(f"{int(c):02x}" for c in rgb)


def analysis_answer(images: list[Image.Image], text: str) -> dict[str, Any]:
    """A style description derived from the images' colours, brightness and shape."""
    if not images:
        images = [Image.new("RGB", (8, 8), (200, 200, 200))]
    thumbs = [np.asarray(im.resize((48, 48)), dtype=np.float64) for im in images]
    stack = np.concatenate([t.reshape(-1, 3) for t in thumbs])
    r, g, b = stack.mean(axis=0)
    luma = 0.299 * r + 0.587 * g + 0.114 * b
    border = np.concatenate([np.concatenate([t[0], t[-1], t[:, 0], t[:, -1]]) for t in thumbs])
    white_backdrop = float((border.min(axis=1) > 225).mean()) > 0.6
    warm = r > b + 8
    tall = sum(im.height > im.width * 1.1 for im in images) * 2 >= len(images)
    mosaic = Image.fromarray(np.concatenate(thumbs, axis=1).astype(np.uint8))
    quant = mosaic.quantize(colors=5, method=Image.Quantize.MEDIANCUT)
    pal = quant.getpalette() or []
    counts = sorted(quant.getcolors() or [], reverse=True)
    palette = [_hex(pal[i * 3 : i * 3 + 3]) for _, i in counts][:5]
    scene = "clean white studio backdrop" if white_backdrop else f"{'warm' if warm else 'cool'}-toned lifestyle setting"
    lighting = (
        "bright high-key studio light"
        if luma > 170
        else "moody low-key light"
        if luma < 90
        else "soft natural daylight"
    )
    pose = "full-body standing pose, three-quarter angle" if tall else "relaxed half-body pose, facing camera"
    mood = "warm, inviting" if warm else "calm, fresh"
    prompt = (
        f"Fashion photo of the product worn by a model, {pose}, {scene}, {lighting}, {mood} mood, "
        f"colour palette {', '.join(palette[:3])}, sharp focus, marketplace ready."
    )
    return {"scene": scene, "lighting": lighting, "pose": pose, "mood": mood, "palette": palette, "prompt": prompt}


def render_png(
    images: list[Image.Image],
    prompt: str,
    ratio: str,
    size: str,
    max_side: int | None,
    use_local_renderer: bool,
    instant: bool = False,
    misspell: str = "never",
) -> bytes:
    """A real PNG of the requested ratio/size class (long side capped at `max_side` to stay fast), with
    the words the prompt asks for written in their boxes (hitline.domain.promo_copy.text_instructions),
    misspelt when told to (`misspell`: never | first = unless the prompt says a previous attempt
    misspelt them | always)."""
    white = "#FFFFFF" in prompt.upper()
    preset = Preset.build("fake", ratio, size, background="white" if white else "scene")
    if max_side and max(preset.width, preset.height) > max_side:
        scale = max_side / max(preset.width, preset.height)
        preset = Preset.build(
            "fake",
            ratio,
            size,
            background=preset.background,
            width=max(1, round(preset.width * scale)),
            height=max(1, round(preset.height * scale)),
        )
    if instant:
        return _plain_png(preset.width, preset.height, _backdrop(images, white))
    image = _local_render(images, prompt, preset) if use_local_renderer and images else None
    if image is None:
        image = _composite(images, preset, white)
    if image.size != (preset.width, preset.height):
        image = ImageOps.fit(image.convert("RGB"), (preset.width, preset.height))
    image = _vary_with_prompt(_write_words(image.convert("RGB"), prompt, misspell), prompt)
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "PNG")
    return buffer.getvalue()


def _misspelt(text: str) -> str:
    """One letter changed, as an image model slips: the middle letter (X, or 口 in CJK)."""
    letters = [i for i, ch in enumerate(text) if ch.isalpha()]
    if not letters:
        return text + "X"
    i = letters[len(letters) // 2]
    wrong = "口" if ord(text[i]) > 0x2E80 else ("X" if text[i] not in "xX" else "Q")
    return text[:i] + wrong + text[i + 1 :]


def _write_words(image: Image.Image, prompt: str, misspell: str) -> Image.Image:
    """The words a render prompt asks for, typeset in their boxes like a model that writes text."""
    from hitline.domain.models import TextSlot
    from hitline.domain.promo_copy import CopyError, parse_text_instructions
    from hitline.domain.typeset import draw_slots, layout_text

    asked = parse_text_instructions(prompt)
    if not asked:
        return image
    wrong = misspell == "always" or (misspell == "first" and "previous attempt misspelt" not in prompt)
    layouts = {}
    for slot, locale, box, text in asked:
        try:
            layouts[slot] = layout_text(
                _misspelt(text) if wrong else text, TextSlot(slot, box, 999, 6, 3), locale, image.width, image.height
            )
        except CopyError:  # too long even at 6 px: a model would squeeze it somehow; the gate will say
            continue
    return draw_slots(image, layouts)[0]


def _vary_with_prompt(image: Image.Image, prompt: str) -> Image.Image:
    """Another prompt gives another picture, as with a real model: here 16 pixels at the centre (on
    the product) differ by at most one level, so a re-render with a changed prompt is a new file, not
    a cache hit of the judge's verdict."""
    digest = hashlib.sha256(prompt.encode()).digest()
    arr = np.asarray(image, dtype=np.int16).copy()
    y, x0 = image.height // 2, max(0, image.width // 2 - 8)
    bits = np.array([(digest[i // 8] >> (i % 8)) & 1 for i in range(16)])[: arr.shape[1] - x0]
    arr[y, x0 : x0 + len(bits), 2] = np.clip(arr[y, x0 : x0 + len(bits), 2] - bits, 0, 255)
    return Image.fromarray(arr.astype(np.uint8), "RGB")


def _local_render(images: list[Image.Image], prompt: str, preset: Preset) -> Image.Image | None:
    try:
        from hitline.providers.local.render import LocalRenderer
    except Exception:  # noqa: BLE001 - not written yet, or its optional deps are missing
        return None
    try:
        with tempfile.TemporaryDirectory(prefix="hitline-fake-") as tmp:
            paths = []
            for i, image in enumerate(images):
                paths.append(Path(tmp) / f"in{i}.png")
                image.save(paths[-1])
            style = StyleAnalysis(scene="studio", lighting="soft", pose="natural", mood="neutral", prompt=prompt)
            product = NewProduct("fake", paths[0], "unknown", "unknown", "unknown", "")
            rendered = LocalRenderer().render(paths[0], paths[1:], style, product, preset)
            with Image.open(io.BytesIO(rendered.data)) as out:
                return out.convert("RGB")
    except Exception as exc:  # noqa: BLE001 - the fake must answer anyway
        log.warning("LocalRenderer failed in the fake (%s); using the simple compositor", exc)
        return None


def _backdrop(images: list[Image.Image], white: bool) -> tuple[int, ...]:
    if white:
        return (255, 255, 255)
    if len(images) > 1:
        return tuple(int(c) for c in np.asarray(images[1].resize((8, 8))).reshape(-1, 3).mean(axis=0))
    return (232, 228, 222)


@functools.lru_cache(maxsize=256)
def _plain_png(width: int, height: int, colour: tuple[int, ...]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, "PNG")
    return buffer.getvalue()


def _composite(images: list[Image.Image], preset: Preset, white: bool) -> Image.Image:
    colour = _backdrop(images, white)
    canvas = Image.new("RGB", (preset.width, preset.height), colour)
    if images:
        product = images[0].copy()
        product.thumbnail((max(1, int(preset.width * 0.8)), max(1, int(preset.height * 0.8))))
        canvas.paste(product, ((preset.width - product.width) // 2, (preset.height - product.height) // 2))
    return canvas


# what a failed verdict says for each answer key the fake can be told to fail
JUDGE_FAILS = {
    "same_garment": False,
    "colour_match": False,
    "pattern_match": False,
    "artefacts": ["extra sleeve"],
    "text_or_logo": True,
    "background_ok": False,
}


def is_judge_request(text: str) -> bool:
    """A judge request, told apart from an analysis the way a model would: by what it is asked."""
    return "quality judge" in text.lower() and "same_garment" in text


def judge_answer(images: list[Image.Image], fail: list[str]) -> dict[str, Any]:
    """A verdict on the second image against the first: passes unless told to fail some keys."""
    answer: dict[str, Any] = {
        "same_garment": True,
        "colour_match": True,
        "pattern_match": True,
        "artefacts": [],
        "text_or_logo": False,
        "background_ok": True,
        "reasons": [],
    }
    for key in fail:
        answer[key] = JUDGE_FAILS[key]
        answer["reasons"].append(f"{key.replace('_', ' ')} failed (scripted)")
    if len(images) < 2:
        answer["same_garment"] = False
        answer["reasons"].append("expected the flat-lay and the output")
    return answer


_TRANSLATE = re.compile(r"^Translate this shop headline from (\S+) to (\S+) .*?\nHeadline: (.*)$", re.S)


def translation_answer(text: str) -> dict[str, str] | None:
    """A headline translation request answered deterministically: the headline with the target locale
    appended (a test can tell it from the merchant's own copy); None for any other request."""
    m = _TRANSLATE.match(text.strip())
    return {"translation": f"{m[3].strip()} ({m[2]})"} if m else None
