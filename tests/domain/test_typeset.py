"""The overlay typesetter: the glyph check before anything is drawn, slot length and readable size,
CJK line breaks, and ink that keeps contrast with what is under the words."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from hitline.domain.imaging import load_presets
from hitline.domain.promo_copy import CopyError
from hitline.domain.typeset import MIN_CONTRAST, check_copy, draw_slots, layout_text, missing_glyphs


@pytest.fixture(scope="module")
def banner():  # noqa: ANN201
    return load_presets(["banner"])[0]


def test_the_bundled_font_covers_latin_greek_cyrillic_and_cjk() -> None:
    for text, locale in [
        ("Größe € ß", "de-DE"),
        ("Καλοκαίρι", "el-GR"),
        ("Летнее платье", "ru-RU"),
        ("夏のワンピース", "ja-JP"),
        ("夏季连衣裙", "zh-CN"),
        ("여름 원피스", "ko-KR"),
    ]:
        assert missing_glyphs(text, locale) == [], locale


def test_a_character_no_bundled_font_has_fails_before_drawing(banner) -> None:  # noqa: ANN001
    # Arabic is right-to-left and shaped by raqm, but no bundled OFL font draws it: refused with a sentence
    with pytest.raises(CopyError, match=r"no bundled font can draw \(U\+0627 .*U\+0641"):
        check_copy({"headline": "فستان صيفي"}, banner, "ar-EG")
    with pytest.raises(CopyError, match="U\\+1F600"):
        check_copy({"headline": "Summer dress 😀"}, banner, "en-US")


def test_copy_too_long_for_its_slot_is_refused(banner) -> None:  # noqa: ANN001
    with pytest.raises(CopyError, match="takes at most 40"):
        check_copy({"headline": "x" * 41}, banner, "en-US")
    # short enough in characters, but only fits below the slot's smallest readable glyph size
    with pytest.raises(CopyError, match="smaller than 40 px"):
        check_copy({"headline": "W" * 40}, banner, "en-US")


def test_cjk_lines_break_at_phrases_and_never_start_with_closing_punctuation(banner) -> None:  # noqa: ANN001
    slot = banner.slots[0]
    lay = layout_text("夏のリネンワンピース、新作セール中！お見逃しなく。", slot, "ja-JP", banner.width, banner.height)
    assert 1 < len(lay.lines) <= slot.max_lines and lay.size >= slot.min_px
    assert "".join(lay.lines) == "夏のリネンワンピース、新作セール中！お見逃しなく。"
    assert not any(line[0] in "、。！？）」" for line in lay.lines)
    latin = layout_text("Summer linen dress, new in", slot, "en-US", banner.width, banner.height)
    assert " ".join(latin.lines) == "Summer linen dress, new in"  # broken at spaces only


@pytest.mark.parametrize("backdrop", [(20, 24, 30), (245, 240, 235)])
def test_ink_contrasts_with_what_is_under_the_words(banner, backdrop) -> None:  # noqa: ANN001
    img = Image.new("RGB", (banner.width, banner.height), backdrop)
    _, facts = draw_slots(img, check_copy({"headline": "Crisp white tee", "price": "$19.99"}, banner, "en-US"))
    for f in facts.values():
        assert f["contrast"] >= MIN_CONTRAST and not f["plate"]
        assert (f["ink"] == "#ffffff") == (backdrop[0] < 128)


def test_a_busy_backdrop_gets_a_plate_behind_the_words(banner) -> None:  # noqa: ANN001
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (banner.height // 8, banner.width // 8, 3), dtype=np.uint8)
    img = Image.fromarray(noise).resize((banner.width, banner.height), Image.NEAREST)
    _, facts = draw_slots(img, check_copy({"headline": "Crisp white tee"}, banner, "en-US"))
    assert facts["headline"]["plate"] and facts["headline"]["contrast"] >= MIN_CONTRAST
