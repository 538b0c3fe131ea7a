"""The nouns of hitline: catalog rows, presets, style analyses, rendered images."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

__all__ = [
    "HitProduct",
    "NewProduct",
    "Hit",
    "StyleAnalysis",
    "Preset",
    "TextSlot",
    "RenderedImage",
    "ASPECT_RATIOS",
    "IMAGE_SIZES",
    "SLOT_NAMES",
]

# what Nano Banana 2 accepts; the local renderer honours the same set
ASPECT_RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9", "4:1", "1:4", "8:1", "1:8")
IMAGE_SIZES = {"512px": 512, "1K": 1024, "2K": 2048, "4K": 4096}
SLOT_NAMES = ("headline", "price")  # the words a preset can carry (presets.toml [NAME.text.SLOT])


@dataclass(frozen=True)
class HitProduct:
    """One row of products.csv: a proven best-seller."""

    product_id: str
    image_path: Path  # absolute, checked to lie inside the catalog folder
    category: str
    color: str
    style: str
    season: str
    sales_count: int
    description: str
    price: float

    def text(self) -> str:
        """What the sparse (TF-IDF) vector of a hit is computed from."""
        return " ".join([self.description, self.category, self.color, self.style, self.season])


@dataclass(frozen=True)
class NewProduct:
    """One row of new_products.csv: a new SKU photographed as a flat-lay."""

    new_id: str
    image_path: Path
    category: str
    style: str
    season: str
    prompt_hint: str
    # the promo copy columns of the row, as written (headline, price, currency, headline_<locale>); checked
    # per (SKU, locale) when the batch names locales (hitline.domain.promo_copy)
    copy: dict[str, str] = field(default_factory=dict)

    def text(self) -> str:
        """What the sparse query vector is computed from."""
        return " ".join([self.category, self.style, self.season, self.prompt_hint])


@dataclass(frozen=True)
class Hit:
    """One retrieved best-seller with its fused score and the search paths that found it."""

    product_id: str
    score: float
    image_path: str
    category: str
    sales_count: int
    description: str
    found_by: tuple[str, ...] = ()  # ("dense",), ("sparse",) or both
    dense_rank: int | None = None
    sparse_rank: int | None = None


class StyleAnalysis(BaseModel):
    """What the vision model (or the local analyzer) says about the retrieved hits."""

    scene: str
    lighting: str
    pose: str
    mood: str
    prompt: str
    palette: list[str] = Field(default_factory=list)  # hex colours, most frequent first
    measurements: dict[str, float] = Field(default_factory=dict)  # local analyzer's numbers
    warnings: list[str] = Field(default_factory=list)


@dataclass(frozen=True)
class TextSlot:
    """Where one piece of copy goes on a preset: a box in shares of the frame (left, top, right, bottom),
    the most characters it takes, its most lines, and the smallest glyph size (font size in px at the
    preset's pixel size) a shopper can still read; copy that only fits smaller is refused."""

    name: str  # one of SLOT_NAMES
    box: tuple[float, float, float, float]
    max_chars: int
    min_px: int
    max_lines: int = 1

    @classmethod
    def build(
        cls, preset: str, name: str, box: list[float], max_chars: int, min_px: int, max_lines: int = 1
    ) -> "TextSlot":
        from hitline.errors import InputError

        if name not in SLOT_NAMES:
            raise InputError(f"preset {preset!r}: text slot {name!r} is not one of {', '.join(SLOT_NAMES)}")
        if len(box) != 4 or not (0 <= box[0] < box[2] <= 1 and 0 <= box[1] < box[3] <= 1):
            raise InputError(
                f"preset {preset!r}: text slot {name!r} box must be [left, top, right, bottom] "
                "shares of the frame, left < right and top < bottom, within 0..1"
            )
        if max_chars < 1 or min_px < 6 or max_lines < 1:
            raise InputError(f"preset {preset!r}: text slot {name!r} needs max_chars >= 1, min_px >= 6, max_lines >= 1")
        return cls(
            name,
            (float(box[0]), float(box[1]), float(box[2]), float(box[3])),
            int(max_chars),
            int(min_px),
            int(max_lines),
        )

    def pixels(self, width: int, height: int) -> tuple[int, int, int, int]:
        """The box in pixels of a width x height frame."""
        x0, y0, x1, y1 = self.box
        return round(x0 * width), round(y0 * height), round(x1 * width), round(y1 * height)


@dataclass(frozen=True)
class Preset:
    """A marketplace output format: exact pixels, aspect ratio, size class, background rule."""

    name: str
    aspect_ratio: str
    size: str  # 512px | 1K | 2K | 4K
    width: int
    height: int
    background: str = "scene"  # "white" = pure #FFFFFF (Amazon main image), "scene" = styled
    low_res: str = "downsize"  # flat-lay too small for `size`: "downsize" to a smaller size class, or "fail"
    rules: tuple[tuple[str, Any], ...] = ()  # the output gate's rules for this preset (presets.toml)
    slots: tuple[TextSlot, ...] = ()  # the words it carries (none: a text-free preset, rendered once for all locales)

    def rule(self, name: str, default: Any = None) -> Any:
        return dict(self.rules).get(name, default)

    @classmethod
    def build(
        cls,
        name: str,
        aspect_ratio: str,
        size: str,
        background: str = "scene",
        width: int | None = None,
        height: int | None = None,
        low_res: str = "downsize",
        rules: dict[str, Any] | None = None,
        text: dict[str, dict[str, Any]] | None = None,
    ) -> "Preset":
        from hitline.errors import InputError

        if low_res not in ("downsize", "fail"):
            raise InputError(f"preset {name!r}: low_res must be 'downsize' or 'fail'")

        if aspect_ratio not in ASPECT_RATIOS:
            raise InputError(f"preset {name!r}: aspect ratio {aspect_ratio!r} is not one of {', '.join(ASPECT_RATIOS)}")
        if size not in IMAGE_SIZES:
            raise InputError(f"preset {name!r}: size {size!r} is not one of {', '.join(IMAGE_SIZES)}")
        if background not in ("white", "scene"):
            raise InputError(f"preset {name!r}: background must be 'white' or 'scene'")
        if width is None or height is None:
            a, b = (int(x) for x in aspect_ratio.split(":"))
            long = IMAGE_SIZES[size]
            width, height = (long, round(long * b / a)) if a >= b else (round(long * a / b), long)
        slots = tuple(TextSlot.build(name, slot, **spec) for slot, spec in (text or {}).items())
        return cls(
            name,
            aspect_ratio,
            size,
            int(width),
            int(height),
            background,
            low_res,
            tuple(sorted((rules or {}).items())),
            slots,
        )


@dataclass
class RenderedImage:
    """Output of one render call: encoded image bytes and what it cost."""

    data: bytes  # PNG or JPEG bytes
    mime: str = "image/png"
    cost_usd: float = 0.0
    model: str = ""
    notes: list[str] = field(default_factory=list)
