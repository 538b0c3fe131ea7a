"""Reading the words back: OCR (the bundled rapidocr, no download) of each text slot of an output,
compared with what was asked after folding case, width and whitespace; the character error rate kept.

Which scripts the bundled PP-OCR models read (measured, DESIGN.md and bench/bench_text.py): Latin (en, de,
fr, es... accents, umlauts, currency signs), Japanese (kana, kanji) and Chinese (simplified and traditional
Han). Korean (Hangul), Cyrillic, Greek, Arabic and Hebrew come back empty or wrong: copy in those scripts is
`unverified` and goes to review, never passed on trust."""

from __future__ import annotations

import threading
import unicodedata
from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np
from PIL import Image

__all__ = [
    "SlotReading",
    "normalise",
    "cer",
    "unreadable_scripts",
    "read_region",
    "check_slots",
    "Reader",
    "VERIFIED_SCRIPTS",
]

VERIFIED_SCRIPTS = (
    "LATIN",
    "CJK",
    "HIRAGANA",
    "KATAKANA",
    "KATAKANA-HIRAGANA",
    "IDEOGRAPHIC",
    "FULLWIDTH",
    "HALFWIDTH",
)
_OCR_MAX_SIDE = 1600  # a slot crop larger than this is scaled down first (text a shopper reads survives)
# glyphs are scaled to about this size before OCR: at ~100 px PP-OCR's small models split a German line
# ("Leinen 1 − r neu") or a katakana word; at 40-48 px the four demo locales read back exactly
OCR_GLYPH_PX = 40

Reader = Callable[[Image.Image], str]  # an image region -> the text read in it


def normalise(text: str) -> str:
    """Case, width (NFKC: ￥ -> ¥, full-width digits -> ASCII) and whitespace folded away: OCR drops the
    space between CJK and Latin, and line breaks are ours, not the copy's."""
    return "".join(unicodedata.normalize("NFKC", text).casefold().split())


def _distance(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def cer(asked: str, read: str) -> float:
    """Character error rate of `read` against `asked`, both normalised: edits / asked length."""
    a, r = normalise(asked), normalise(read)
    return _distance(a, r) / max(1, len(a))


def _script(ch: str) -> str | None:
    """The script of a letter (first word of its Unicode name); None for digits, punctuation, symbols."""
    if not unicodedata.category(ch).startswith("L"):
        return None
    return unicodedata.name(ch, "UNKNOWN").split(" ")[0]


def unreadable_scripts(text: str) -> list[str]:
    """The scripts in text that the bundled OCR cannot read (so a match could not be confirmed)."""
    return sorted({s for ch in text if (s := _script(ch)) is not None and s not in VERIFIED_SCRIPTS})


_ocr: Any = None
_ocr_lock = threading.Lock()


def _engine() -> Any:
    global _ocr
    if _ocr is None:
        import logging

        from rapidocr import RapidOCR

        # the detector at the region's own scale (glyphs are already ~OCR_GLYPH_PX): its default ("min" side
        # 736) blew a 250 px high slot up 3x, 5 s of a 10 s read; one thread, as hitline.domain.quality
        _ocr = RapidOCR(
            params={
                "Det.limit_type": "max",
                "Det.limit_side_len": _OCR_MAX_SIDE,
                "EngineConfig.onnxruntime.intra_op_num_threads": 1,
                "EngineConfig.onnxruntime.inter_op_num_threads": 1,
            }
        )
        logging.getLogger("RapidOCR").setLevel(logging.ERROR)
    return _ocr


def read_region(region: Image.Image) -> str:
    """The text rapidocr reads in one region, lines top to bottom. The detector finds the text; each
    line (its boxes merged) is then recognised as one strip: read box by box, the detector's overlapping
    boxes of one line gave a letter twice ("Crisp white t tee")."""
    img = region.convert("RGB")
    if max(img.size) > _OCR_MAX_SIDE:
        img.thumbnail((_OCR_MAX_SIDE, _OCR_MAX_SIDE))
    arr = np.asarray(img)
    with _ocr_lock:
        engine = _engine()
        found = engine(arr, use_det=True, use_cls=False, use_rec=True)  # the flags persist between calls
        boxes = list(found.boxes) if found.boxes is not None else []
        texts = []
        for x0, y0, x1, y1 in _line_boxes(boxes, img.width, img.height):
            strip = engine(np.ascontiguousarray(arr[y0:y1, x0:x1]), use_det=False, use_cls=False, use_rec=True)
            texts += [t for t in strip.txts or () if t.strip()]
    return " ".join(texts)


def _line_boxes(boxes: list[Any], width: int, height: int) -> list[tuple[int, int, int, int]]:
    """Detected boxes grouped into lines (a box whose centre lies within half a box height of the line's
    first box joins it), each line's union box with a little margin, top to bottom."""
    lines: list[list[Any]] = []
    for box in sorted(boxes, key=lambda b: float(np.mean(b[:, 1]))):
        cy, h = float(np.mean(box[:, 1])), float(np.ptp(box[:, 1]))
        if lines and cy - float(np.mean(lines[-1][0][:, 1])) < 0.5 * max(h, float(np.ptp(lines[-1][0][:, 1]))):
            lines[-1].append(box)
        else:
            lines.append([box])
    out = []
    for line in lines:
        pts = np.concatenate(line)
        h = float(np.ptp(pts[:, 1]))
        m = max(2, round(0.15 * h))
        out.append(
            (
                max(0, int(pts[:, 0].min()) - m),
                max(0, int(pts[:, 1].min()) - m),
                min(width, int(pts[:, 0].max()) + m),
                min(height, int(pts[:, 1].max()) + m),
            )
        )
    return out


@dataclass(frozen=True)
class SlotReading:
    slot: str
    asked: str
    read: str
    cer: float
    verified: bool  # False: the script is one the OCR cannot read, so `read` proves nothing
    unreadable: tuple[str, ...] = ()

    @property
    def exact(self) -> bool:
        return self.verified and normalise(self.asked) == normalise(self.read)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "cer": round(self.cer, 4), "unreadable": list(self.unreadable), "exact": self.exact}


def check_slots(
    image: Image.Image,
    texts: dict[str, str],
    boxes: dict[str, tuple[int, int, int, int]],
    glyph_px: dict[str, float],
    reader: Reader = read_region,
) -> list[SlotReading]:
    """OCR each slot's region (only those: OCR is ~1 s a strip), scaled so its glyphs (`glyph_px`: drawn
    or expected size) are about OCR_GLYPH_PX, and compare with the copy asked for. A slot whose script
    the OCR cannot read is not OCR'd at all: its reading is `unverified`."""
    out = []
    for slot, asked in texts.items():
        x0, y0, x1, y1 = boxes[slot]
        unreadable = unreadable_scripts(asked)
        if unreadable:
            out.append(SlotReading(slot, asked, "", 1.0, False, tuple(unreadable)))
            continue
        pad_x, pad_y = round(0.04 * (x1 - x0)), round(0.12 * (y1 - y0))
        region = image.crop(
            (max(0, x0 - pad_x), max(0, y0 - pad_y), min(image.width, x1 + pad_x), min(image.height, y1 + pad_y))
        )
        scale = OCR_GLYPH_PX / max(1.0, glyph_px.get(slot, OCR_GLYPH_PX))
        if scale < 1.0:
            region = region.resize(
                (max(1, round(region.width * scale)), max(1, round(region.height * scale))), Image.Resampling.LANCZOS
            )
        read = reader(region)
        out.append(SlotReading(slot, asked, read, cer(asked, read), True))
    return out


def status(readings: list[SlotReading]) -> tuple[str, list[str]]:
    """`verified` (every slot read back exactly), `misread` (some slot read otherwise) or `unverified`
    (some slot's script the OCR cannot read), with a sentence per problem."""
    reasons = []
    for r in readings:
        if not r.verified:
            reasons.append(
                f"text unverified: the bundled OCR cannot read {', '.join(r.unreadable).title()} "
                f"({r.slot} {r.asked!r}); a person must check it"
            )
        elif not r.exact:
            reasons.append(f"{r.slot} misread: asked {r.asked!r}, OCR read {r.read!r} (CER {r.cer:.2f})")
    if any(not r.verified for r in readings):
        return "unverified", reasons
    return ("misread" if reasons else "verified"), reasons
