"""Promo copy per (SKU, locale): locales checked against CLDR, prices formatted with CLDR, a missing
translation refused or machine-translated (and marked), bad copy refused with a sentence."""

from __future__ import annotations

import pytest

from hitline.domain.promo_copy import (
    CopyError,
    format_price,
    parse_locales,
    parse_text_instructions,
    resolve_copy,
    text_instructions,
)
from hitline.errors import InputError

ROW = {
    "headline": "Crisp white tee",
    "price": "19.99",
    "currency": "USD",
    "headline_de": "Weißes T-Shirt",
    "headline_ja": "定番の白Tシャツ",
    "price_ja": "2980",
    "currency_ja": "JPY",
}


def test_locales_are_checked_and_normalised() -> None:
    assert parse_locales("en-US, de_DE,ja-jp,zh-CN,en-US") == ["en-US", "de-DE", "ja-JP", "zh-CN"]
    with pytest.raises(InputError, match="unknown locale 'xx-YY'"):
        parse_locales("en-US,xx-YY")


def test_prices_in_each_locale_follow_cldr() -> None:
    assert format_price("19.99", "EUR", "de-DE") == "19,99\xa0€"
    assert format_price("2980", "JPY", "ja-JP") == "￥2,980"  # CLDR's full-width yen; the OCR compare folds width
    assert format_price("19,99", "USD", "en-US") == "$19.99"
    with pytest.raises(CopyError, match="not a number"):
        format_price("nineteen", "EUR", "de-DE")
    with pytest.raises(CopyError, match="ISO 4217"):
        format_price("19.99", "EURO", "de-DE")


def test_each_locale_gets_its_own_headline_and_market_price() -> None:
    en = resolve_copy(ROW, "en-US", "en-US", ["headline", "price"])
    de = resolve_copy(ROW, "de-DE", "en-US", ["headline", "price"])
    ja = resolve_copy(ROW, "ja-JP", "en-US", ["headline", "price"])
    assert en.texts == {"headline": "Crisp white tee", "price": "$19.99"}
    assert de.texts == {"headline": "Weißes T-Shirt", "price": "19,99\xa0$"}
    assert ja.texts == {"headline": "定番の白Tシャツ", "price": "￥2,980"} and not ja.machine_translated


def test_a_missing_translation_is_refused_or_machine_translated_and_marked() -> None:
    with pytest.raises(CopyError, match="no headline_fr for fr-FR"):
        resolve_copy(ROW, "fr-FR", "en-US", ["headline"], "refuse")
    calls = []

    def translate(text: str, source: str, target: str) -> tuple[str, float]:
        calls.append((text, source, target))
        return "T-shirt blanc", 0.0004

    fr = resolve_copy(ROW, "fr-FR", "en-US", ["headline"], "translate", translate)
    assert fr.texts["headline"] == "T-shirt blanc" and fr.machine_translated and fr.cost_usd == 0.0004
    assert calls == [("Crisp white tee", "en-US", "fr-FR")]
    de = resolve_copy(ROW, "de-DE", "en-US", ["headline"], "translate", translate)
    assert not de.machine_translated and len(calls) == 1  # the merchant's own translation wins


def test_the_words_in_a_render_prompt_round_trip() -> None:
    prompt = "A studio photo.\n" + text_instructions(
        {"headline": "Weißes T-Shirt", "price": "19,99\xa0€"},
        {"headline": (0.43, 0.1, 0.97, 0.58), "price": (0.43, 0.64, 0.8, 0.92)},
        "de-DE",
    )
    assert parse_text_instructions(prompt) == [
        ("headline", "de-DE", (0.43, 0.1, 0.97, 0.58), "Weißes T-Shirt"),
        ("price", "de-DE", (0.43, 0.64, 0.8, 0.92), "19,99\xa0€"),
    ]
