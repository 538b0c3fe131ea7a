"""The `openrouter` providers: image embeddings, style analysis (vision LLM) and rendering (Nano Banana 2).

All three share one OpenRouterClient (timeouts, retries, error mapping, key masking live there).
"""

from __future__ import annotations

import base64
import binascii
import functools
import io
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TypeVar

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from PIL.ExifTags import Base as _ExifTag

from hitline.domain.catalog import image_errors, verify_image_data
from hitline.domain.models import NewProduct, Preset, RenderedImage, StyleAnalysis
from hitline.errors import ConfigError, InputError, RetryableProviderError, TerminalProviderError
from hitline.domain.pricing import PriceTable
from hitline.domain.vectors import Vector, from_f32_base64
from hitline.providers.base import Analysis, Embedding
from hitline.providers.openrouter.client import OpenRouterClient

T = TypeVar("T")

__all__ = [
    "OpenRouterEmbedder",
    "OpenRouterAnalyzer",
    "OpenRouterRenderer",
    "image_data_uri",
    "ask_for_json",
    "decode_data_uri",
    "fit_exact",
    "extract_json_object",
    "MAX_INPUT_IMAGES",
]

MAX_INPUT_IMAGES = 14  # Nano Banana 2: 10 objects + 4 characters
QUALITY_CONSTRAINTS = "Clothing fits the body naturally, no exposed labels, no extra elements, product details sharp."
WHITE_BACKGROUND = "Pure white #FFFFFF background, product only."
STYLE_KEYS = ("scene", "lighting", "pose", "mood")
_HEX = re.compile(r"^#?([0-9a-fA-F]{6}|[0-9a-fA-F]{3})$")
_FENCE = re.compile(r"```(?:json)?", re.IGNORECASE)
ORIENTATION = _ExifTag.Orientation


# images on the wire -----------------------------------------------------------------------------
def image_data_uri(path: Path, max_side: int, quality: int = 90, *, check: bool = False) -> str:
    """`path` as a JPEG data URI whose long side is at most `max_side` (alpha flattened on white).

    Encoded once per process for the same file version: the retrieved hits are the same few catalog
    photos for thousands of SKUs, and a SKU's flat-lay goes out once per preset. `check`: the image is
    known to decode in full afterwards, what hitline.domain.catalog.verify_image_data makes sure of (a
    JPEG's decode here is that check; other formats are verified first), with its errors."""
    with _read_errors(path, check):
        stat = Path(path).stat()
    return _encoded_data_uri(str(path), stat.st_mtime_ns, stat.st_size, max_side, quality, check)


# what a plain JPEG carries besides pixels; anything else (EXIF with GPS, ICC, XMP, comments) is dropped
# by re-encoding it, so such a file is never sent as it is
_PLAIN_JPEG_INFO = frozenset(
    {
        "jfif",
        "jfif_version",
        "jfif_unit",
        "jfif_density",
        "dpi",
        "adobe",
        "adobe_transform",
        "progressive",
        "progression",
    }
)


@functools.lru_cache(maxsize=64)  # ~64 x 0.3 MB at most; the key changes when the file does
def _encoded_data_uri(path: str, _mtime_ns: int, _size: int, max_side: int, quality: int, check: bool) -> str:
    with _read_errors(path, check):
        return _encode(path, max_side, quality, check)


@contextmanager
def _read_errors(path: Path | str, check: bool) -> Iterator[None]:
    """An unreadable image as InputError: in verify_image_data's words when it is the embed stage's check."""
    if check:
        with image_errors(Path(path).name):
            yield
        return
    try:
        yield
    except OSError as exc:  # UnidentifiedImageError is one
        raise InputError(f"cannot read image {Path(path).name}: {exc}") from exc


def _encode(path: str, max_side: int, quality: int, check: bool) -> str:
    with Image.open(path) as opened:
        if check and opened.format not in ("JPEG", "MPO"):
            verify_image_data(Path(path))  # PNG CRCs and the rest: what a decode alone does not check
        if _sendable_as_is(opened, max_side):
            # a plain RGB JPEG within max_side: its own bytes, once checked they decode (at 1/8
            # scale: every scan is read, the pixels are not built); a re-encode would only lose quality
            opened.draft("RGB", (max(1, opened.width // 8), max(1, opened.height // 8)))
            opened.load()
            return "data:image/jpeg;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")
        if opened.format in ("JPEG", "MPO"):
            # decoded at the smallest 1/2, 1/4 or 1/8 scale still >= max_side (libjpeg's DCT scaling):
            # a 3000 px photo sent at 512 px costs a quarter of a full decode and resize
            opened.draft(None, _draft_box(opened.size, max_side))
        image = ImageOps.exif_transpose(opened) if opened.getexif().get(ORIENTATION, 1) != 1 else opened
        image.load()
    if image.mode in ("RGBA", "LA", "P"):
        image = image.convert("RGBA")
        canvas = Image.new("RGB", image.size, (255, 255, 255))
        canvas.paste(image, mask=image.getchannel("A"))
        image = canvas
    elif image.mode != "RGB":
        image = image.convert("RGB")
    if max(image.size) > max_side:
        # BOX (an area average) is in the same downscaling-quality tier as BILINEAR in Pillow's filter table,
        # at ~60% of its CPU (an 800 px flat-lay to 512: 2.2 vs 3.5 ms); LANCZOS took 16 ms. The model
        # resizes again to its own input
        image = image.resize(_fit_within(image.size, max_side), Image.Resampling.BOX)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _fit_within(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """The size with the long side at max_side, aspect kept (what Image.thumbnail computes)."""
    scale = max_side / max(size)
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def _draft_box(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """The box to ask JPEG draft for: it then decodes at the largest reduction that keeps the long side
    >= max_side (never below the size the image is sent at)."""
    if max(size) <= max_side:
        return size
    return _fit_within(size, max_side)


def _sendable_as_is(opened: Image.Image, max_side: int) -> bool:
    return (
        opened.format == "JPEG"
        and opened.mode == "RGB"
        and max(opened.size) <= max_side
        and set(opened.info) <= _PLAIN_JPEG_INFO
        and not opened.getexif()
    )


def decode_data_uri(url: str) -> bytes:
    """The bytes of a base64 `data:` URI; RetryableProviderError when the model sent garbage."""
    header, sep, data = url.partition(",")
    if not sep or not header.startswith("data:") or ";base64" not in header:
        raise RetryableProviderError("model returned an image that is not a base64 data URI")
    try:
        return base64.b64decode(data, validate=False)
    except (binascii.Error, ValueError) as exc:
        raise RetryableProviderError(f"model returned undecodable base64 image data: {exc}") from None


def fit_exact(data: bytes, width: int, height: int) -> bytes:
    """Cover-resize and centre-crop encoded image `data` to exactly width x height; PNG bytes."""
    try:
        with Image.open(io.BytesIO(data)) as opened:
            if opened.size == (width, height) and opened.format == "PNG" and opened.mode == "RGB":
                opened.load()  # it decodes: already what we store, kept byte for byte (no second encode)
                return data
            image = opened.convert("RGB")
    except (OSError, UnidentifiedImageError) as exc:
        raise RetryableProviderError(f"model returned an image that cannot be decoded: {exc}") from None
    if image.size != (width, height):
        image = ImageOps.fit(image, (width, height), Image.Resampling.LANCZOS, centering=(0.5, 0.5))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _image_part(url: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url}}


def _first_message(body: Mapping[str, Any], model: str) -> Mapping[str, Any]:
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise RetryableProviderError(f"malformed response from {model}: no choices")
    message = choices[0].get("message")
    if not isinstance(message, dict):
        raise RetryableProviderError(f"malformed response from {model}: no message")
    return message


def _message_text(message: Mapping[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


# embeddings -------------------------------------------------------------------------------------
class OpenRouterEmbedder:
    """Image (and text) embeddings from `POST /embeddings`, L2-normalised, in input order."""

    def __init__(
        self,
        client: OpenRouterClient,
        model: str,
        dim: int,
        prices: PriceTable | None = None,
        batch_size: int = 16,
        max_side: int = 512,
    ) -> None:
        if batch_size < 1:
            raise ConfigError("embed batch size must be at least 1")
        self.client, self.model, self.dim = client, model, int(dim)
        self.prices = prices if prices is not None else PriceTable.load()
        self.batch_size, self.max_side = batch_size, max_side

    def __repr__(self) -> str:
        return f"OpenRouterEmbedder(model={self.model!r}, dim={self.dim}, client={self.client!r})"

    # every image is decoded in full (or, sent as it is, checked at 1/8) before anything is sent, and a
    # corrupt or truncated one raises InputError: the line need not decode it a second time
    checks_images = True

    def embed_images(self, images: Sequence[Path]) -> Embedding:
        inputs = [{"content": [_image_part(image_data_uri(Path(p), self.max_side, check=True))]} for p in images]
        return self._embed(inputs)

    def embed_texts(self, texts: Sequence[str]) -> Embedding:
        return self._embed([str(t) for t in texts])

    def _embed(self, inputs: list[Any]) -> Embedding:
        vectors: list[Vector] = []
        cost = 0.0
        for start in range(0, len(inputs), self.batch_size):
            batch = inputs[start : start + self.batch_size]
            # base64 float32 (OpenAI's and OpenRouter's `encoding_format`): a quarter of the bytes of JSON
            # floats and no float parsing; a server that ignores it answers floats, read as well
            body = self.client.post(
                "/embeddings", {"model": self.model, "input": batch, "encoding_format": "base64"}, self.model
            )
            vectors.extend(self._vectors(body, len(batch)))
            cost += self.prices.token_cost(self.model, body.get("usage"))
        return Embedding(vectors=vectors, cost_usd=cost)

    def _vectors(self, body: Mapping[str, Any], expected: int) -> list[Vector]:
        data = body.get("data")
        if not isinstance(data, list) or len(data) != expected:
            got = len(data) if isinstance(data, list) else "no"
            raise RetryableProviderError(f"{self.model} returned {got} embeddings for {expected} inputs")
        try:
            rows = sorted(data, key=lambda row: int(row.get("index", 0)))
            matrix = np.asarray([_embedding_values(row["embedding"]) for row in rows], dtype=np.float64)
        except (TypeError, KeyError, ValueError, AttributeError) as exc:  # binascii.Error is a ValueError
            raise RetryableProviderError(f"malformed embeddings from {self.model}: {exc}") from None
        if not np.isfinite(matrix).all():
            raise RetryableProviderError(f"malformed embeddings from {self.model}: non-finite values")
        if matrix.ndim != 2 or matrix.shape[1] != self.dim:
            got = matrix.shape[1] if matrix.ndim == 2 else "ragged"
            raise ConfigError(
                f"{self.model} returns {got}-d embeddings but {self.dim} are configured "
                f"(HITLINE_EMBED_DIM); the collection must be rebuilt for another dimension"
            )
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        matrix = matrix / np.where(norms == 0, 1.0, norms)
        return list(matrix.astype(np.float32))  # what the cache and Milvus keep


def _embedding_values(value: Any) -> Any:
    """One answer's vector: a list of floats, or (encoding_format "base64") little-endian float32 bytes."""
    return from_f32_base64(value) if isinstance(value, str) else value


# style analysis ---------------------------------------------------------------------------------
ANALYZE_SYSTEM = (
    "You are the art director of a fashion marketplace. You study photos of best-selling products and "
    "describe the visual style they share, so that a new product can be shot the same way. Answer with "
    "ONE JSON object and nothing else, with these keys: scene, lighting, pose, mood (short phrases), "
    'palette (up to 6 hex colours like "#a1b2c3", most frequent first), prompt (an image-generation '
    "prompt of under 100 words that recreates this look for the new product)."
)
_REASK = (
    "That was not a valid JSON object. Reply with only the JSON object with keys scene, lighting, "
    "pose, mood, palette, prompt."
)


def extract_json_object(text: str) -> dict[str, Any] | None:
    """The first JSON object in `text` (```json fences and surrounding prose tolerated), else None."""
    cleaned = _FENCE.sub("", text or "")
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", cleaned):
        try:
            value, _ = decoder.raw_decode(cleaned, match.start())
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def ask_for_json(
    client: OpenRouterClient,
    model: str,
    prices: PriceTable,
    messages: list[dict[str, Any]],
    accept: Callable[[dict[str, Any]], T],
    reask: str,
    tries: int,
) -> tuple[T | None, float, str, str]:
    """Ask `model` for one JSON object, up to `tries` times: an answer with no JSON object, or one that
    `accept` refuses (ValueError, pydantic's ValidationError included), is asked again with `reask`.
    Returns (accepted value or None, the cost of every call, the last raw answer, the last refusal)."""
    cost, raw, problem = 0.0, "", ""
    for _ in range(tries):
        payload = {"model": model, "messages": messages, "response_format": {"type": "json_object"}}
        body = client.post("/chat/completions", payload, model)
        cost += prices.token_cost(model, body.get("usage"))
        raw = _message_text(_first_message(body, model))
        parsed = extract_json_object(raw)
        if parsed is not None:
            try:
                return accept(parsed), cost, raw, ""
            except ValueError as exc:
                errors = getattr(exc, "errors", None)
                problem = str(errors()[0].get("msg", exc)) if callable(errors) else str(exc)
        messages = [*messages, {"role": "assistant", "content": raw}, {"role": "user", "content": reask}]
    return None, cost, raw, problem


class OpenRouterAnalyzer:
    """Describes the shared look of the retrieved hits with a vision LLM (`POST /chat/completions`)."""

    def __init__(
        self, client: OpenRouterClient, model: str, prices: PriceTable, max_parse_retries: int = 2, max_side: int = 768
    ) -> None:
        self.client, self.model, self.prices = client, model, prices
        self.max_parse_retries, self.max_side = max(0, max_parse_retries), max_side

    def __repr__(self) -> str:
        return f"OpenRouterAnalyzer(model={self.model!r}, client={self.client!r})"

    def analyze(self, references: Sequence[Path], product: NewProduct) -> Analysis:
        parts: list[dict[str, Any]] = [_image_part(image_data_uri(Path(p), self.max_side)) for p in references]
        parts.append({"type": "text", "text": self._request_text(len(references), product)})
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": ANALYZE_SYSTEM},
            {"role": "user", "content": parts},
        ]
        parsed, cost, raw, _ = ask_for_json(
            self.client, self.model, self.prices, messages, lambda v: v, _REASK, self.max_parse_retries + 1
        )
        if parsed is not None:
            style = _style_from(parsed, raw)
            return Analysis(style=style, cost_usd=cost, raw=raw, warnings=list(style.warnings))
        warning = (
            f"{self.model} gave no parseable JSON after {self.max_parse_retries + 1} tries; "
            f"its raw answer is used as the prompt"
        )
        style = StyleAnalysis(
            scene="unknown",
            lighting="unknown",
            pose="unknown",
            mood="unknown",
            prompt=_clip_words(raw.strip(), 100),
            warnings=[warning],
        )
        return Analysis(style=style, cost_usd=cost, raw=raw, warnings=[warning])

    def translate(self, text: str, source: str, target: str) -> tuple[str, float]:
        """A shop headline in another locale (promo copy a merchant did not translate): (text, cost)."""
        messages: list[dict[str, Any]] = [
            {
                "role": "user",
                "content": (
                    f"Translate this shop headline from {source} to {target} for a product banner. Keep it as short as "
                    f'the original, no quotes, no notes. Return the JSON object {{"translation": "..."}}.\n'
                    f"Headline: {text}"
                ),
            }
        ]
        parsed, cost, raw, problem = ask_for_json(
            self.client,
            self.model,
            self.prices,
            messages,
            lambda v: str(v["translation"]),
            _REASK,
            self.max_parse_retries + 1,
        )
        if not parsed:
            raise TerminalProviderError(
                f"{self.model} gave no translation of {text!r} into {target} ({problem or raw[:80]})"
            )
        return parsed, cost

    @staticmethod
    def _request_text(count: int, product: NewProduct) -> str:
        return (
            f"The {count} images above are best-selling reference photos. The new product is a "
            f"{product.category} (style: {product.style}; season: {product.season}). "
            f"Merchant notes: {product.prompt_hint or 'none'}. Describe the shared style and return the "
            f"JSON object {{scene, lighting, pose, mood, palette: [hex], prompt}}; the prompt must be "
            f"under 100 words and describe the new product shot in this style."
        )


def _style_from(parsed: Mapping[str, Any], raw: str) -> StyleAnalysis:
    warnings: list[str] = []
    fields: dict[str, str] = {}
    for key in STYLE_KEYS:
        value = parsed.get(key)
        fields[key] = str(value).strip() if isinstance(value, (str, int, float)) and str(value).strip() else "unknown"
        if fields[key] == "unknown":
            warnings.append(f"analysis has no {key!r}")
    prompt = parsed.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        prompt = ", ".join(fields[k] for k in STYLE_KEYS if fields[k] != "unknown") or raw.strip()
        warnings.append("analysis has no 'prompt'; built one from its fields")
    clipped = _clip_words(prompt.strip(), 100)
    if clipped != prompt.strip():
        warnings.append("analysis prompt clipped to 100 words")
    palette_in = parsed.get("palette")
    palette = (
        [_hex(c) for c in palette_in if isinstance(c, str) and _HEX.match(c.strip())]
        if isinstance(palette_in, list)
        else []
    )
    return StyleAnalysis(prompt=clipped, palette=palette, warnings=warnings, **fields)


def _hex(colour: str) -> str:
    digits = colour.strip().lstrip("#").lower()
    return "#" + (digits if len(digits) == 6 else "".join(c * 2 for c in digits))


def _clip_words(text: str, limit: int) -> str:
    words = text.split()
    return text if len(words) <= limit else " ".join(words[:limit])


# rendering --------------------------------------------------------------------------------------
class OpenRouterRenderer:
    """Renders the new product in the hits' style with an image model (`modalities: [text, image]`)."""

    def __init__(
        self,
        client: OpenRouterClient,
        model: str,
        prices: PriceTable,
        max_references: int = 13,
        flatlay_max_side: int = 1536,
        reference_max_side: int = 1024,
    ) -> None:
        self.client, self.model, self.prices = client, model, prices
        self.max_references = max(0, min(max_references, MAX_INPUT_IMAGES - 1))  # + the flat-lay
        self.flatlay_max_side, self.reference_max_side = flatlay_max_side, reference_max_side

    def __repr__(self) -> str:
        return f"OpenRouterRenderer(model={self.model!r}, client={self.client!r})"

    def render(
        self, flatlay: Path, references: Sequence[Path], style: StyleAnalysis, product: NewProduct, preset: Preset
    ) -> RenderedImage:
        cost = self.prices.image_cost(self.model, preset.size)  # fail on a missing price before paying
        notes: list[str] = []
        used = list(references)[: self.max_references]
        if len(used) < len(references):
            notes.append(f"used {len(used)} of {len(references)} references (model limit)")
        parts = [_image_part(image_data_uri(Path(flatlay), self.flatlay_max_side))]
        parts += [_image_part(image_data_uri(Path(p), self.reference_max_side)) for p in used]
        parts.append({"type": "text", "text": self.prompt(style, product, preset)})
        payload = {
            "model": self.model,
            "messages": [{"role": "user", "content": parts}],
            "modalities": ["text", "image"],
            "image_config": {"aspect_ratio": preset.aspect_ratio, "image_size": preset.size},
        }
        body = self.client.post("/chat/completions", payload, self.model)
        data = self._image_bytes(_first_message(body, self.model))
        png = fit_exact(data, preset.width, preset.height)
        return RenderedImage(data=png, mime="image/png", cost_usd=cost, model=self.model, notes=notes)

    def render_plate(self, references: Sequence[Path], style: StyleAnalysis, preset: Preset) -> RenderedImage:
        """Staged mode: the scene plate alone, from the references (no product), one paid image."""
        from hitline.domain.staged import plate_prompt

        parts = [
            _image_part(image_data_uri(Path(p), self.reference_max_side))
            for p in list(references)[: self.max_references]
        ]
        parts.append(
            {
                "type": "text",
                "text": "The images are style references only: match their scene, lighting "
                "and mood, not their products.\n" + plate_prompt(style, preset),
            }
        )
        return self._image_call(parts, preset)

    def place(
        self, plate: Path, flatlay: Path, style: StyleAnalysis, product: NewProduct, preset: Preset
    ) -> RenderedImage:
        """Staged mode: an image edit call - the scene plate and the flat-lay, the product placed into the plate."""
        from hitline.domain.staged import STAGED_REFINEMENTS

        text = [
            "Edit the first image (a scene plate): place the product of the second image (a flat-lay) into it, "
            "worn by a model; keep the scene, its light and framing.",
            f"Pose: {style.pose}.",
        ]
        if product.prompt_hint.strip():
            text.append(f"Product: {product.prompt_hint.strip()}")
        text += [STAGED_REFINEMENTS, QUALITY_CONSTRAINTS]
        parts = [
            _image_part(image_data_uri(Path(plate), self.reference_max_side)),
            _image_part(image_data_uri(Path(flatlay), self.flatlay_max_side)),
            {"type": "text", "text": "\n".join(text)},
        ]
        return self._image_call(parts, preset)

    def _image_call(self, parts: list[dict[str, Any]], preset: Preset) -> RenderedImage:
        cost = self.prices.image_cost(self.model, preset.size)  # fail on a missing price before paying
        payload = {
            "model": self.model,
            "messages": [{"role": "user", "content": parts}],
            "modalities": ["text", "image"],
            "image_config": {"aspect_ratio": preset.aspect_ratio, "image_size": preset.size},
        }
        body = self.client.post("/chat/completions", payload, self.model)
        png = fit_exact(self._image_bytes(_first_message(body, self.model)), preset.width, preset.height)
        return RenderedImage(data=png, mime="image/png", cost_usd=cost, model=self.model)

    @staticmethod
    def prompt(style: StyleAnalysis, product: NewProduct, preset: Preset) -> str:
        lines = [style.prompt.strip()]
        if product.prompt_hint.strip():
            lines.append(f"Product: {product.prompt_hint.strip()}")
        lines.append(
            "The first image is the product to show (a flat-lay); the other images are style "
            "references only: match their scene, lighting, pose and mood, not their products."
        )
        lines.append(QUALITY_CONSTRAINTS)
        if preset.background == "white":
            lines.append(WHITE_BACKGROUND)
        return "\n".join(line for line in lines if line)

    def _image_bytes(self, message: Mapping[str, Any]) -> bytes:
        candidates: list[Any] = list(message.get("images") or [])
        content = message.get("content")
        if isinstance(content, list):
            candidates += [p for p in content if isinstance(p, dict) and p.get("type") == "image_url"]
        for item in candidates:
            url = item.get("image_url") if isinstance(item, dict) else None
            url = url.get("url") if isinstance(url, dict) else url
            if isinstance(url, str) and url:
                return decode_data_uri(url) if url.startswith("data:") else self._download(url)
        raise RetryableProviderError(f"model returned no image ({self.model})")

    def _download(self, url: str) -> bytes:
        import requests  # only models that answer with hosted URLs get here

        try:
            response = self.client.session.get(url, timeout=self.client.timeout)
            response.raise_for_status()
        except requests.RequestException as exc:
            raise RetryableProviderError(f"cannot download the rendered image: {exc}") from None
        return response.content
