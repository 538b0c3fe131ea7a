"""Typesetting promo copy into a preset's text slots: the bundled fonts (OFL, installed from PyPI with the
package, never downloaded: Noto Sans for Latin, Greek and Cyrillic, Noto Sans CJK for Japanese, Chinese
and Korean, Noto Sans Arabic and Noto Sans Hebrew for right-to-left copy), a glyph check before anything
is drawn, HarfBuzz shaping and bidi through Pillow's raqm layout (right-to-left lines set right-aligned), line breaks at spaces or at CJK phrase boundaries (BudouX)
with the CJK no-break rules, and a text colour (with a backing plate when needed) that keeps WCAG
contrast with what is under the words. Pure: images in, images out."""

from __future__ import annotations

import functools
import unicodedata
from dataclasses import dataclass
from typing import Any, TypedDict

import numpy as np
from PIL import Image, ImageDraw, ImageFont, features

from hitline.domain.models import Preset, TextSlot
from hitline.domain.promo_copy import CopyError

__all__ = [
    "FONT_NAME",
    "Layout",
    "font_path",
    "missing_glyphs",
    "check_copy",
    "layout_text",
    "draw_slots",
    "TYPESET_VERSION",
    "MIN_CONTRAST",
    "direction",
]

FONT_NAME = "Noto Sans, Noto Sans CJK, Noto Sans Arabic and Noto Sans Hebrew (OFL-1.1)"
TYPESET_VERSION = "typeset-2"  # part of an overlay output's content key: a change of layout makes new files
MIN_CONTRAST = 4.5  # WCAG AA for text: below it against the pixels under the words, a plate goes behind them
_LINE_GAP = 1.35  # line height as a multiple of the font size (1.22 let PP-OCR box two lines as one word)
_NO_LINE_START = set(
    "、。，．,.!?！？：；:;)]}）」』】〕〉》〙〗ー々ゝゞぁぃぅぇぉっゃゅょゎァィゥェォッャュョヮヵヶ・…‥〜～%％"
)
_NO_LINE_END = set("([{（「『【〔〈《〘〖")
_IGNORED = {"\u200e", "\u200f", "\u200b", "\u2060", "\ufeff"}  # direction marks and zero-width spaces: no glyph needed
# Noto Sans CJK's faces by writing system (ja/ko/zh differ in their Han glyph shapes); its Latin, Greek and
# Cyrillic are only the basic letters (no ą, ί, ї), so other languages use Noto Sans
_CJK_FACES = {"ja": 0, "ko": 1, "zh-Hans": 2, "zh-Hant": 3}
_LATIN = -1  # Noto Sans
_ARABIC = -2  # Noto Sans Arabic (Arabic, Persian, Urdu letters; Latin letters and digits too)
_HEBREW = -3  # Noto Sans Hebrew
_RTL_FACES = {"ar": _ARABIC, "fa": _ARABIC, "ur": _ARABIC, "he": _HEBREW, "iw": _HEBREW, "yi": _HEBREW}


def font_path(face: int) -> str:
    if face == _LATIN:
        import fontpkg_noto_sans

        return str(fontpkg_noto_sans.ROOT / "files" / "NotoSans[wdth,wght].ttf")
    if face == _ARABIC:
        import fontpkg_noto_sans_arabic

        return str(fontpkg_noto_sans_arabic.ROOT / "files" / "NotoSansArabic[wdth,wght].ttf")
    if face == _HEBREW:
        import pylopdf_fonts_he

        return str(pylopdf_fonts_he.sans_path())
    import noto_cjk_sans_otc

    return str(noto_cjk_sans_otc.FONT_PATH)


def _face(locale: str) -> int:
    parts = locale.split("-")
    lang = parts[0]
    if lang == "zh":
        traditional = "Hant" in parts or any(p in ("TW", "HK", "MO") for p in parts)
        return _CJK_FACES["zh-Hant" if traditional else "zh-Hans"]
    return _CJK_FACES.get(lang, _RTL_FACES.get(lang, _LATIN))


def direction(locale: str) -> str:
    """rtl for the locales whose script runs right to left (their lines are set right-aligned), else ltr."""
    return "rtl" if locale.split("-")[0] in _RTL_FACES else "ltr"


@functools.lru_cache(maxsize=8)
def _coverage(face: int) -> frozenset[int]:
    from fontTools.ttLib import TTCollection, TTFont

    font = TTFont(font_path(face), lazy=True) if face < 0 else TTCollection(font_path(face), lazy=True).fonts[face]
    return frozenset(font.getBestCmap())


def missing_glyphs(text: str, locale: str) -> list[str]:
    """Characters of text that the bundled font for this locale has no glyph for."""
    cover = _coverage(_face(locale))
    return sorted({ch for ch in text if ch not in _IGNORED and not ch.isspace() and ord(ch) not in cover})


@functools.lru_cache(maxsize=64)
def _font(face: int, size: int) -> ImageFont.FreeTypeFont:
    engine = ImageFont.Layout.RAQM if features.check("raqm") else ImageFont.Layout.BASIC
    font = ImageFont.truetype(font_path(face), size, index=max(0, face), layout_engine=engine)
    if face < 0:  # variable fonts: Regular weight, full width (Noto Sans Hebrew's default instance is Thin)
        font.set_variation_by_axes([400, 100])
    return font


class _Shaping(TypedDict, total=False):
    """Pillow's text keywords (ImageDraw.text, FreeTypeFont.getlength)."""

    language: str
    direction: str


def _shaping(language: str, direction: str) -> _Shaping:
    """Pillow's text keywords: language always; the base direction only with raqm (the basic layout has none)."""
    if features.check("raqm"):
        return {"language": language, "direction": direction}
    return {"language": language}


def _cjk(ch: str) -> bool:
    return unicodedata.east_asian_width(ch) in ("W", "F")


def _atoms(text: str, locale: str) -> list[str]:
    """The pieces a line may break between: words (with their trailing space), CJK phrases (BudouX for
    ja/zh), and single CJK characters inside a phrase as a last resort."""
    lang = locale.split("-")[0]
    if any(_cjk(ch) for ch in text) and lang in ("ja", "zh"):
        import budoux

        parser = (
            budoux.load_default_japanese_parser()
            if lang == "ja"
            else budoux.load_default_traditional_chinese_parser()
            if _face(locale) == _CJK_FACES["zh-Hant"]
            else budoux.load_default_simplified_chinese_parser()
        )
        return _keep_runs([a for chunk in text.split(" ") for a in parser.parse(chunk + " ")])
    words = text.split(" ")
    return [w + " " for w in words[:-1]] + [words[-1]]


def _glued(ch: str) -> bool:
    """A character of a Latin word or a number: no line break on either side of it within its run."""
    return not ch.isspace() and not _cjk(ch)


def _keep_runs(atoms: list[str]) -> list[str]:
    """BudouX phrases joined where it cut inside a run of Latin letters or digits ("第4|8", "减30|%"):
    a number or a word never breaks across lines."""
    out: list[str] = []
    for atom in atoms:
        if out and atom and _glued(out[-1][-1]) and _glued(atom[0]):
            out[-1] += atom
        else:
            out.append(atom)
    return out


def _split_chars(atom: str) -> list[str]:
    """An atom too long for a line, cut between characters where the CJK rules allow it."""
    out: list[str] = []
    for ch in atom:
        if out and (ch in _NO_LINE_START or out[-1][-1:] in _NO_LINE_END or not _cjk(ch)):
            out[-1] += ch
        else:
            out.append(ch)
    return out


def _wrap(atoms: list[str], width: float, measure: Any) -> list[str]:
    lines: list[str] = []
    line = ""
    queue = list(atoms)
    while queue:
        atom = queue.pop(0)
        if measure((line + atom).rstrip()) <= width:
            line += atom
            continue
        if not line.strip() and len(atom) > 1:  # one atom wider than the line: break inside it
            pieces = _split_chars(atom)
            if len(pieces) > 1:
                queue[:0] = pieces
                continue
        if line.strip():
            if atom[:1] in _NO_LINE_START and len(line.rstrip()) > 1:  # kinsoku: pull the last character down
                queue.insert(0, line.rstrip()[-1] + atom)
                line = line.rstrip()[:-1]
            else:
                queue.insert(0, atom)
            lines.append(line.rstrip())
            line = ""
        else:
            lines.append(atom.rstrip())
    if line.strip():
        lines.append(line.rstrip())
    return lines


@dataclass(frozen=True)
class Layout:
    """One slot's copy set: font size in px, the lines, and the slot's pixel box."""

    slot: str
    text: str
    size: int
    lines: tuple[str, ...]
    box: tuple[int, int, int, int]
    face: int
    language: str
    direction: str = "ltr"


def _language(locale: str) -> str:
    return locale.split("-")[0]


def layout_text(text: str, slot: TextSlot, locale: str, width: int, height: int, max_px: int | None = None) -> Layout:
    """The largest font size (at most max_px) at which text fits the slot in at most max_lines;
    CopyError when it only fits below the slot's smallest readable size."""
    box = slot.pixels(width, height)
    bw, bh = box[2] - box[0], box[3] - box[1]
    face, lang = _face(locale), _language(locale)
    shaping = _shaping(lang, direction(locale))
    atoms = _atoms(text, locale)
    # CJK: phrases (BudouX) at every readable size first; when they cannot fit (a long phrase leaves a line
    # short), break between characters instead (still no line starting with 、。ー〜 etc.)
    tries = [atoms]
    if any(_cjk(ch) for ch in text):
        chars = [piece for atom in atoms for piece in _split_chars(atom)]
        if chars != atoms:
            tries.append(chars)
    for pieces in tries:
        size = min(int(bh / _LINE_GAP), max_px or bh)
        while size >= slot.min_px:
            font = _font(face, size)

            def measure(s: str, font: ImageFont.FreeTypeFont = font) -> float:
                return font.getlength(s, **shaping) if s else 0.0

            lines = _wrap(pieces, bw, measure)
            if (
                len(lines) <= slot.max_lines
                and len(lines) * size * _LINE_GAP <= bh
                and all(measure(ln) <= bw for ln in lines)
            ):
                return Layout(slot.name, text, size, tuple(lines), box, face, lang, direction(locale))
            size = int(size * 0.93) if size > 20 else size - 1
    raise CopyError(
        f"{slot.name} {text!r} is too long for its slot ({bw}x{bh} px, at most {slot.max_lines} "
        f"line(s)): it would need glyphs smaller than {slot.min_px} px, too small to read; shorten it"
    )


def check_copy(texts: dict[str, str], preset: Preset, locale: str) -> dict[str, Layout]:
    """Every check that can fail before anything is drawn, in order: a slot the copy is for, its length,
    a glyph for every character in the bundled font, a layout at a readable size."""
    layouts: dict[str, Layout] = {}
    for slot in preset.slots:
        text = texts.get(slot.name)
        if text is None:
            continue
        if len(text) > slot.max_chars:
            raise CopyError(
                f"{slot.name} {text!r} has {len(text)} characters; {preset.name}'s {slot.name} slot "
                f"takes at most {slot.max_chars}: shorten it"
            )
        missing = missing_glyphs(text, locale)
        if missing:
            raise CopyError(
                f"{slot.name} {text!r} for {locale} has characters no bundled font can draw "
                f"({' '.join(f'U+{ord(c):04X} {c}' for c in missing[:5])}); the bundled fonts "
                f"({FONT_NAME}) cover Latin, Greek, Cyrillic and CJK, each locale in its own font"
            )
        layouts[slot.name] = layout_text(text, slot, locale, preset.width, preset.height)
    return layouts


def _luminance(rgb: np.ndarray) -> np.ndarray:
    c = rgb.astype(np.float64) / 255.0
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    luminance: np.ndarray = lin @ np.array([0.2126, 0.7152, 0.0722])
    return luminance


def _contrast(a: float | np.ndarray, b: float | np.ndarray) -> Any:
    hi, lo = np.maximum(a, b), np.minimum(a, b)
    return (hi + 0.05) / (lo + 0.05)


_INKS = {"dark": ((24, 24, 24), 0.0091), "light": ((255, 255, 255), 1.0)}


def _ink(region: np.ndarray) -> tuple[tuple[int, int, int], float, bool]:
    """The text colour for the pixels under the words, its worst-case contrast, and whether a plate is
    needed (neither ink reaches MIN_CONTRAST on 95% of those pixels)."""
    lum = _luminance(region.reshape(-1, 3))
    lo, hi = np.percentile(lum, [5, 95])
    best = max(_INKS.values(), key=lambda ink: min(_contrast(ink[1], lo), _contrast(ink[1], hi)))
    worst = float(min(_contrast(best[1], lo), _contrast(best[1], hi)))
    return best[0], worst, worst < MIN_CONTRAST


def draw_slots(image: Image.Image, layouts: dict[str, Layout]) -> tuple[Image.Image, dict[str, dict[str, Any]]]:
    """The image with every layout drawn (a copy), and per slot what was drawn: size, lines, ink, contrast."""
    out = image.convert("RGB").copy()
    facts: dict[str, dict[str, Any]] = {}
    for name, lay in layouts.items():
        font = _font(lay.face, lay.size)
        x0, y0, x1, y1 = lay.box
        line_h = lay.size * _LINE_GAP
        block_h = line_h * len(lay.lines)
        top = y0 + (y1 - y0 - block_h) / 2
        shaping = _shaping(lay.language, lay.direction)
        widths = [font.getlength(line, **shaping) for line in lay.lines]
        rtl = lay.direction == "rtl"  # right-to-left lines hang from the slot's right edge
        tx0, tx1 = (x1 - max(widths), x1) if rtl else (x0, x0 + max(widths))
        pad = round(0.25 * lay.size)
        under = np.asarray(out.crop((round(tx0), round(top), round(tx1), round(top + block_h))))
        ink, contrast, plate = _ink(under)
        if plate:  # a busy or mid-grey backdrop: a soft plate of the opposite tone behind the words
            tone = (255, 255, 255) if ink[0] < 128 else (20, 20, 20)
            layer = Image.new("RGBA", out.size, (0, 0, 0, 0))
            ImageDraw.Draw(layer).rounded_rectangle(
                [tx0 - pad, top - pad, tx1 + pad, top + block_h + pad], radius=pad, fill=(*tone, 225)
            )
            out = Image.alpha_composite(out.convert("RGBA"), layer).convert("RGB")
            under = np.asarray(out.crop((round(tx0), round(top), round(tx1), round(top + block_h))))
            ink, contrast, _ = _ink(under)
        draw = ImageDraw.Draw(out)
        for i, (line, w) in enumerate(zip(lay.lines, widths)):
            # raqm: HarfBuzz shapes the run (Arabic joining forms), FriBiDi orders mixed runs within the
            # locale's base direction, language picks the locale's glyph forms
            x = x1 - w if rtl else x0
            draw.text((x, top + i * line_h + (line_h - lay.size) / 2), line, font=font, fill=ink, **shaping)
        facts[name] = {
            "size_px": lay.size,
            "direction": lay.direction,
            "lines": list(lay.lines),
            "ink": "#%02x%02x%02x" % ink,
            "contrast": round(contrast, 1),
            "plate": plate,
        }
    return out, facts
