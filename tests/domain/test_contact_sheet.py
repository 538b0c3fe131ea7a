"""The text hitline draws is legible: OCR (rapidocr, offline models in the wheel) reads every label."""

from __future__ import annotations

import re

import pytest
from PIL import Image

from hitline.domain.models import StyleAnalysis
from hitline.domain.imaging import contact_sheet, load_presets


@pytest.fixture(scope="module")
def ocr():
    rapidocr = pytest.importorskip("rapidocr")
    return rapidocr.RapidOCR()


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9_]", "", text.lower().replace("×", "x"))


def test_contact_sheet_labels_are_readable(ocr, tmp_path) -> None:  # noqa: ANN001
    from hitline.domain.compose import compose

    presets = load_presets(["amazon_main", "shopify", "thumbnail", "banner"])
    product = Image.new("RGBA", (300, 400), (0, 0, 0, 0))
    product.paste((180, 60, 40, 255), (50, 50, 250, 350))
    style = StyleAnalysis(
        scene="studio", lighting="soft", pose="centred", mood="calm", prompt="p", palette=["#dddddd", "#aaaaaa"]
    )
    ref = Image.new("RGB", (600, 800), (200, 190, 180))
    outputs = [(p.name, compose(product, ref, style, p)) for p in presets]
    sheet = contact_sheet(Image.new("RGB", (600, 800), (240, 240, 240)), [ref, ref], outputs)
    assert sheet.width <= 2400
    path = tmp_path / "sheet.png"
    sheet.save(path)
    read = {_norm(t) for t in (ocr(str(path)).txts or ())}
    expected = ["flatlay", "reference1", "reference2"] + [_norm(f"{p.name} {p.width}x{p.height}") for p in presets]
    missing = [e for e in expected if e not in read]
    assert not missing, f"OCR could not read {missing}; it read {sorted(read)}"
