"""Presets, cut-out, compositing and contact sheets: the image side of hitline, all offline."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from PIL import Image, ImageDraw, ImageFont

from hitline.domain.compose import compose, layout_box
from hitline.config import load_data_file
from hitline.domain.cutout import cutout
from hitline.domain.models import Preset
from hitline.errors import InputError

__all__ = ["load_presets", "cutout", "compose", "layout_box", "contact_sheet"]

SHEET_MAX_WIDTH = 2400
_TILE_H = 300
_LABEL_H = 30
_GAP = 10


def load_presets(names: list[str] | None = None, override: Path | None = None) -> list[Preset]:
    """The named presets (all of them when names is None) from presets.toml or the user's file."""
    table = load_data_file("presets.toml", override)
    known = {name: Preset.build(name, **spec) for name, spec in table.items()}
    if names is None:
        return list(known.values())
    unknown = [n for n in names if n not in known]
    if unknown:
        raise InputError(f"unknown preset(s) {', '.join(unknown)}; known presets: {', '.join(known)}")
    return [known[n] for n in names]


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for name in ("DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "Arial.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default()


def _tile(img: Image.Image, label: str, tile_h: int) -> Image.Image:
    """The image fitted into a box at most twice as wide as tall, with its label underneath."""
    box_w = tile_h * 2 if img.width > img.height * 1.2 else tile_h
    thumb = img.convert("RGB")
    thumb.thumbnail((box_w, tile_h), Image.Resampling.LANCZOS)
    w = max(thumb.width, min(box_w, 12 * len(label)))
    tile = Image.new("RGB", (w, tile_h + _LABEL_H), (246, 246, 246))
    tile.paste(thumb, ((w - thumb.width) // 2, (tile_h - thumb.height) // 2))
    draw = ImageDraw.Draw(tile)
    font = _font(max(11, _LABEL_H - 14))
    tw = draw.textlength(label, font=font)
    draw.text(((w - tw) / 2, tile_h + 6), label, fill=(40, 40, 40), font=font)
    return tile


def contact_sheet(
    flatlay: Image.Image, references: Sequence[Image.Image], outputs: Sequence[tuple[str, Image.Image]]
) -> Image.Image:
    """One row for one product: flat-lay | top references | outputs labelled with their preset names."""
    tiles = [_tile(flatlay, "flat-lay", _TILE_H)]
    tiles += [_tile(r, f"reference {i + 1}", _TILE_H) for i, r in enumerate(references)]
    tiles += [_tile(img, f"{name} {img.width}x{img.height}", _TILE_H) for name, img in outputs]
    width = sum(t.width for t in tiles) + _GAP * (len(tiles) + 1)
    row = Image.new("RGB", (width, _TILE_H + _LABEL_H + 2 * _GAP), (255, 255, 255))
    x = _GAP
    for i, t in enumerate(tiles):
        row.paste(t, (x, _GAP))
        x += t.width + _GAP
        if i == len(references):  # a thin rule between the inputs and the outputs
            ImageDraw.Draw(row).line(
                [(x - _GAP // 2, _GAP), (x - _GAP // 2, row.height - _GAP)], fill=(190, 190, 190), width=2
            )
    if row.width > SHEET_MAX_WIDTH:
        s = SHEET_MAX_WIDTH / row.width
        row = row.resize((SHEET_MAX_WIDTH, max(1, round(row.height * s))), Image.Resampling.LANCZOS)
    return row
