"""Promo copy per SKU and locale: which locales a batch names, which headline each locale gets (the
row's own translation, a machine translation, or a refusal), and prices formatted with CLDR (Babel).
Bad copy fails its (SKU, locale) alone with a CopyError sentence. Pure: no job table, no provider.

new_products.csv may carry, all optional:
    headline             the copy in the batch's FIRST locale (the source language)
    headline_<locale>    a translation: headline_de, headline_de-DE, headline_zh_CN (most specific wins)
    price, currency      a number (19.99 or 19,99) and an ISO 4217 code (EUR, JPY...), formatted per locale
    price_<locale>, currency_<locale>   a market's own price (price_ja=2980, currency_ja=JPY)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Callable, Sequence

from babel import Locale, UnknownLocaleError
from babel.numbers import format_currency, is_currency

from hitline.errors import InputError

__all__ = [
    "CopyError",
    "LocaleCopy",
    "COPY_COLUMNS",
    "Translator",
    "parse_locale",
    "parse_locales",
    "copy_columns",
    "format_price",
    "headline_for",
    "resolve_copy",
    "MISSING_TRANSLATION",
    "TEXT_MODES",
    "text_instructions",
    "parse_text_instructions",
]

COPY_COLUMNS = ("headline", "price", "currency")  # plus headline_<locale>
MISSING_TRANSLATION = ("refuse", "translate")  # what a batch does with a locale the row has no headline for
TEXT_MODES = ("overlay", "model")  # hitline typesets the words on a text-free render, or the image model writes them
_PRICE = re.compile(r"^\d+(?:[.,]\d{1,3})?$")

# (text, source locale, target locale) -> (translated text, cost in USD): the analysis model's translation
Translator = Callable[[str, str, str], tuple[str, float]]


class CopyError(InputError):
    """Copy that cannot go on the picture for one (SKU, locale); the message says why and what to do."""


@dataclass(frozen=True)
class LocaleCopy:
    """The exact strings one locale's outputs carry, by slot name, and where the headline came from."""

    locale: str
    texts: dict[str, str]
    machine_translated: bool = False
    notes: list[str] = field(default_factory=list)
    cost_usd: float = 0.0  # what translating it cost

    def to_dict(self) -> dict[str, object]:
        return {
            "locale": self.locale,
            "texts": dict(self.texts),
            "machine_translated": self.machine_translated,
            "notes": list(self.notes),
            "cost_usd": self.cost_usd,
        }

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> "LocaleCopy":
        texts, notes, cost = d["texts"], d.get("notes") or [], d.get("cost_usd") or 0.0
        if not isinstance(texts, dict) or not isinstance(notes, list) or not isinstance(cost, (int, float)):
            raise TypeError(f"not a LocaleCopy.to_dict(): {d!r}")
        return cls(
            str(d["locale"]),
            {str(k): str(v) for k, v in texts.items()},
            bool(d.get("machine_translated")),
            [str(n) for n in notes],
            float(cost),
        )


def parse_locale(tag: str) -> str:
    """A locale tag as BCP 47 (`de-DE`, `zh-Hant-TW`), checked against CLDR; InputError when CLDR has no
    such locale. `de_DE` and `de-de` are accepted."""
    text = tag.strip().replace("_", "-")
    try:
        loc = Locale.parse(text, sep="-")
    except (UnknownLocaleError, ValueError, TypeError):
        raise InputError(
            f"unknown locale {tag!r}: give a language and region like en-US, de-DE, ja-JP or zh-CN"
        ) from None
    # CLDR adds the likely script (zh-CN -> zh-Hans-CN); keep it only when the tag named one
    script = loc.script if any(len(p) == 4 and p.isalpha() for p in text.split("-")[1:]) else None
    return "-".join(p for p in (loc.language, script, loc.territory) if p)


def parse_locales(value: str | Sequence[str] | None) -> list[str]:
    """`en-US,de-DE` or a list: each checked, duplicates dropped, order kept (the first is the source)."""
    if value is None:
        return []
    parts = value.split(",") if isinstance(value, str) else list(value)
    out: list[str] = []
    for p in parts:
        if p.strip() and (loc := parse_locale(p)) not in out:
            out.append(loc)
    return out


def copy_columns(raw: dict[str, str]) -> dict[str, str]:
    """The copy columns of a CSV row (names lower-cased, values stripped, empty cells left out)."""
    return {
        k: v.strip()
        for k, v in raw.items()
        if v and v.strip() and (k in COPY_COLUMNS or k.startswith(("headline_", "price_", "currency_")))
    }


def _candidates(locale: str) -> list[str]:
    """Column suffixes for a locale, most specific first: de-DE -> de-de, de_de, de."""
    parts = locale.lower().split("-")
    out = []
    for n in range(len(parts), 0, -1):
        out += ["-".join(parts[:n]), "_".join(parts[:n])]
    return list(dict.fromkeys(out))


def headline_for(copy: dict[str, str], locale: str, source_locale: str) -> str | None:
    """The row's own headline for a locale: its headline_<locale> column, or `headline` for the source
    locale (or a locale of the source's language)."""
    for suffix in _candidates(locale):
        if copy.get(f"headline_{suffix}"):
            return copy[f"headline_{suffix}"]
    if copy.get("headline") and locale.split("-")[0] == source_locale.split("-")[0]:
        return copy["headline"]
    return None


def format_price(amount: str, currency: str, locale: str) -> str:
    """The price as a shopper in `locale` reads it (CLDR): 19.99 EUR -> `19,99 €` in de-DE, 2980 JPY ->
    `￥2,980` in ja-JP (CLDR's full-width yen; the OCR compare folds width)."""
    if not _PRICE.match(amount):
        raise CopyError(
            f"price {amount!r} is not a number: write it like 19.99 or 19,99, and the currency in the currency column"
        )
    if not currency:
        raise CopyError(f"price {amount} has no currency: fill the currency column with a code like EUR, USD or JPY")
    if not is_currency(currency.upper()):
        raise CopyError(f"currency {currency!r} is not an ISO 4217 code CLDR knows: use EUR, USD, JPY, CNY...")
    return format_currency(Decimal(amount.replace(",", ".")), currency.upper(), locale=locale.replace("-", "_"))


def resolve_copy(
    copy: dict[str, str],
    locale: str,
    source_locale: str,
    slots: Sequence[str],
    missing: str = "refuse",
    translate: Translator | None = None,
) -> LocaleCopy:
    """The strings for `slots` in `locale`. A headline the row lacks is machine-translated from the
    source headline (missing="translate", recorded as such) or refused (CopyError)."""
    texts: dict[str, str] = {}
    machine, notes, cost = False, [], 0.0
    if "headline" in slots:
        headline = headline_for(copy, locale, source_locale)
        if headline is None:
            source = headline_for(copy, source_locale, source_locale)
            if source is None:
                raise CopyError(
                    f"no headline for {locale}: fill the headline column (in {source_locale}) "
                    f"or headline_{locale.split('-')[0]}"
                )
            if missing != "translate" or translate is None:
                why = (
                    "the batch refuses machine translation (missing_translation=refuse)"
                    if missing != "translate"
                    else "the provider has no translation model"
                )
                raise CopyError(
                    f"no headline_{locale.split('-')[0]} for {locale} and {why}: add the translation "
                    "to new_products.csv or submit with missing translations machine-translated"
                )
            headline, cost = translate(source, source_locale, locale)
            headline = headline.strip()
            if not headline:
                raise CopyError(f"the machine translation of {source!r} into {locale} came back empty")
            machine = True
            notes.append(f"headline machine-translated from {source_locale}")
        texts["headline"] = headline
    if "price" in slots:
        # a market's own price (price_de + currency_de) wins over the row's price in its currency
        market = next((s for s in _candidates(locale) if copy.get(f"price_{s}")), None)
        amount, currency = (
            (copy[f"price_{market}"], copy.get(f"currency_{market}", ""))
            if market
            else (copy.get("price", ""), copy.get("currency", ""))
        )
        if amount or currency:
            texts["price"] = format_price(amount, currency, locale)
    return LocaleCopy(locale, texts, machine, notes, cost)


# --- the words in a render prompt (text_mode "model"): one line per slot, parsed back by the fake -----
_TEXT_HEAD = "Write exactly this text on the image, letter for letter, and no other text:"
_TEXT_LINE = re.compile(
    r"^- (\w+) \(language ([A-Za-z-]+)\) in the box left (\d+)% top (\d+)% right (\d+)% "
    r"bottom (\d+)% of the frame: «(.*)»$",
    re.M,
)


def text_instructions(texts: dict[str, str], boxes: dict[str, tuple[float, float, float, float]], locale: str) -> str:
    """The prompt lines that ask an image model for the exact strings, their slots and their language."""
    lines = [_TEXT_HEAD]
    for slot, text in texts.items():
        x0, y0, x1, y1 = (round(100 * v) for v in boxes[slot])
        lines.append(
            f"- {slot} (language {locale}) in the box left {x0}% top {y0}% right {x1}% bottom {y1}% "
            f"of the frame: «{text}»"
        )
    return "\n".join(lines)


def parse_text_instructions(prompt: str) -> list[tuple[str, str, tuple[float, float, float, float], str]]:
    """(slot, locale, box as shares, text) for every slot line of text_instructions in a prompt."""
    return [
        (m[0], m[1], (int(m[2]) / 100, int(m[3]) / 100, int(m[4]) / 100, int(m[5]) / 100), m[6])
        for m in _TEXT_LINE.findall(prompt)
    ]
