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


def test_the_bundled_font_covers_latin_greek_cyrillic_cjk_arabic_and_hebrew() -> None:
    for text, locale in [
        ("Größe € ß", "de-DE"),
        ("Καλοκαίρι", "el-GR"),
        ("Летнее платье", "ru-RU"),
        ("夏のワンピース", "ja-JP"),
        ("夏季连衣裙", "zh-CN"),
        ("여름 원피스", "ko-KR"),
        ("فستان صيفي ١٩٫٩٩ US$", "ar-EG"),
        ("پیراهن تابستانی", "fa-IR"),
        ("שמלת קיץ $19.99", "he-IL"),
    ]:
        assert missing_glyphs(text, locale) == [], locale


def test_a_character_no_bundled_font_has_fails_before_drawing(banner) -> None:  # noqa: ANN001
    # Thai: no bundled font draws it (nor an emoji): refused with a sentence naming the characters
    with pytest.raises(CopyError, match=r"no bundled font can draw \(U\+0E0A .*U\+0E14"):
        check_copy({"headline": "ชุดเดรส"}, banner, "th-TH")
    with pytest.raises(CopyError, match="U\\+1F600"):
        check_copy({"headline": "Summer dress 😀"}, banner, "en-US")
    # each locale is checked against its own font: Hebrew copy under an Arabic locale has no glyphs
    with pytest.raises(CopyError, match="U\\+05E9"):
        check_copy({"headline": "שמלה"}, banner, "ar-EG")


@pytest.mark.parametrize(("locale", "headline"), [("ar-EG", "فستان صيفي"), ("he-IL", "שמלת קיץ")])
def test_right_to_left_copy_is_shaped_and_set_from_the_right_edge(banner, locale, headline) -> None:  # noqa: ANN001
    lays = check_copy({"headline": headline}, banner, locale)
    assert lays["headline"].direction == "rtl" and lays["headline"].lines == (headline,)
    img, facts = draw_slots(Image.new("RGB", (banner.width, banner.height), (240, 238, 235)), lays)
    assert facts["headline"]["direction"] == "rtl"
    x0, y0, x1, y1 = lays["headline"].box
    ink = np.nonzero((np.asarray(img.crop((x0, y0, x1, y1)).convert("L")) < 128).any(axis=0))[0]
    assert x1 - x0 - ink.max() < 0.03 * (x1 - x0) and ink.min() > 0.1 * (x1 - x0)  # hangs from the right
    if locale == "ar-EG":  # HarfBuzz joined the letters: fewer, wider glyph runs than isolated forms
        from hitline.domain.typeset import _font

        font = _font(-2, 60)
        joined = font.getlength("فستان", language="ar", direction="rtl")
        isolated = sum(font.getlength(ch, language="ar", direction="rtl") for ch in "فستان")
        assert joined < isolated


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


def test_cjk_never_breaks_inside_a_number_and_breaks_between_characters_when_phrases_do_not_fit(banner) -> None:  # noqa: ANN001
    slot = banner.slots[0]
    # BudouX cuts "第4|8" and "减30|%": a number stays whole on its line
    zh = "亚麻夏季连衣裙葡萄牙制造热卖立减30%100%纯棉新品第48周特价有机棉"
    lay = layout_text(zh, slot, "zh-CN", banner.width, banner.height)
    assert "".join(lay.lines) == zh
    assert not any(a[-1:].isdigit() and b[:1] in "0123456789%" for a, b in zip(lay.lines, lay.lines[1:]))
    # one phrase of 30 characters after a short one: three lines by phrases, two by characters (37 < 40)
    ja = "リネンのサマードレス30%オフ新作送料無料サイズS〜XLセール人気No.1"
    lay = layout_text(ja, slot, "ja-JP", banner.width, banner.height, max_px=slot.min_px)
    assert len(lay.lines) == 2 and "".join(lay.lines) == ja and lay.lines[1][0] not in "〜ー、。"


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
