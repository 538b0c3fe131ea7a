"""Load and validate the two input catalogs: best-sellers (products.csv) and new flat-lays (new_products.csv).

A file that cannot be read at all raises InputError; a bad row becomes a RowError and the rest load.

Number formats (decided here, documented for merchants):
- sales_count: a whole number >= 0. Thousands separators ("1,200", "1 200", "1_200") and integral
  floats ("1200.0", as spreadsheets export) are accepted; "1200.5", "1.200" and "-3" are rejected.
- price: a number >= 0, optionally with a currency sign or code ("$19.99", "19.99 EUR"). "1,299.00"
  and "1,299" use comma as thousands separator; "19,99" (one comma, 1-2 digits after) is a decimal comma.
Ids are compared case-insensitively for duplicates because they become folder names.
new_products.csv may also carry promo copy (headline, price, currency, headline_<locale>): see
hitline.domain.promo_copy.
"""

from __future__ import annotations

import csv
import re
import stat
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path, PureWindowsPath
from typing import Callable, Generic, TypeVar

from PIL import Image, UnidentifiedImageError

from hitline.domain.models import HitProduct, NewProduct
from hitline.domain.promo_copy import copy_columns
from hitline.errors import InputError

__all__ = [
    "RowError",
    "Loaded",
    "load_catalog",
    "load_new_products",
    "check_image",
    "verify_image_data",
    "image_errors",
    "MIN_IMAGE_SIDE",
    "MAX_IMAGE_PIXELS",
    "IMAGE_EXTENSIONS",
]

T = TypeVar("T")

MIN_IMAGE_SIDE = 64  # smaller images carry no usable style signal
MAX_IMAGE_PIXELS = 50_000_000  # above this a decode can exhaust a worker's memory (decompression bomb)
IMAGE_EXTENSIONS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP"}
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")  # ids become folder names and Milvus keys

_INT = re.compile(r"^(\d{1,3}(?:[, _]\d{3})+|\d+)(?:\.0*)?$")
_PRICE_THOUSANDS = re.compile(r"^\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
_PRICE_DECIMAL_COMMA = re.compile(r"^\d+,\d{1,2}$")
_PRICE_PLAIN = re.compile(r"^\d+(?:\.\d+)?$|^\.\d+$")
_CURRENCY = re.compile(r"^(?:[$€£¥]|USD|EUR|GBP|JPY|CNY|RMB)?\s*(.*?)\s*(?:[$€£¥]|USD|EUR|GBP|JPY|CNY|RMB)?$", re.I)


@dataclass(frozen=True)
class RowError:
    """One unusable row: where it is, which id it had, why it failed and how to fix it."""

    row: int  # 1-based data row number (header = row 0), or 0 for file-level
    id: str  # product/new id if readable, else ""
    reason: str
    raw: dict[str, str]  # the raw row values as read, so nothing is lost


@dataclass
class Loaded(Generic[T]):
    """The rows that loaded, the rows that did not, and the CSV they came from."""

    items: list[T]
    errors: list[RowError]
    source: Path


class _BadValue(Exception):
    """A field value is unusable; the message is the user-facing reason."""


def check_image(path: Path, root: Path) -> Path:
    """Resolve an image path given relative to `root` and check its header (format matches the extension,
    size within bounds); else InputError. The pixel data is checked later by verify_image_data.

    A bare file name that is not in `root` is also looked up in `root/images` (how real catalogs ship).
    """
    return _check_image(path, root.resolve())


def _resolve_under(base: Path, rel: Path) -> Path:
    """`(base / rel).resolve()` for a resolved `base`, looking only at rel's own parts (resolve() reads
    every folder from / down, ~40 µs, for each of 10,000 rows): any symlink or '..' among them falls back
    to resolve(), so a link pointing outside the folder is still caught by the caller."""
    path = base / rel
    if ".." not in rel.parts:
        probe = base
        for part in rel.parts:
            probe = probe / part
            if probe.is_symlink():
                break
        else:
            return path
    return path.resolve()


def _check_image(path: Path, base: Path) -> Path:
    """check_image with the catalog folder already resolved (once per CSV, not per row)."""
    text = str(path).strip()
    if text in ("", "."):
        raise InputError(
            "image path is empty: give the image file relative to the catalog folder, e.g. images/SKU001.jpg"
        )
    rel = Path(text.replace("\\", "/"))
    if rel.is_absolute() or PureWindowsPath(text).drive:
        raise InputError(f"image path escapes the catalog folder: {text!r} is absolute; make it relative to the folder")
    tried, found, mode = [], None, 0
    for candidate in [rel] + ([Path("images") / rel] if len(rel.parts) == 1 else []):
        resolved = _resolve_under(base, candidate)
        if not resolved.is_relative_to(base):
            raise InputError(f"image path escapes the catalog folder: {text!r} points outside {base}")
        tried.append(resolved)
        try:
            mode = resolved.stat().st_mode
        except OSError:  # not there (or unreadable): try the next place
            continue
        found = resolved
        break
    if found is None:
        raise InputError(f"image file not found: {text!r} (looked in {', '.join(str(c.parent) for c in tried)})")
    if not stat.S_ISREG(mode):
        raise InputError(f"image path {text!r} is not a file")
    expected = IMAGE_EXTENSIONS.get(found.suffix.lower())
    if expected is None:
        raise InputError(
            f"image {text!r} has extension {found.suffix or '(none)'!r}; use one of {', '.join(IMAGE_EXTENSIONS)}"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            # Image.open reads the header only (format, size); the pixels are decoded in the embed stage
            # (verify_image_data), so a submission of 10,000 SKUs does not decode 10,000 images up front
            with Image.open(found) as im:
                fmt, (width, height) = im.format, im.size
        _check_header(text, fmt, expected, width, height)
    except InputError:
        raise
    except Image.DecompressionBombError as exc:
        raise InputError(
            f"image {text!r} is too large to decode safely ({exc}); keep it under {MAX_IMAGE_PIXELS:,} pixels"
        ) from exc
    except UnidentifiedImageError as exc:
        raise InputError(
            f"file {text!r} is not an image (cannot identify its format); export it as JPEG, PNG or WebP"
        ) from exc
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError... for a broken header
        raise InputError(f"image {text!r} is corrupt or truncated ({exc}); re-export or re-upload it") from exc
    return found


def verify_image_data(path: Path) -> None:
    """Decode the whole image once: a truncated or corrupt file raises InputError with a reason the merchant
    can act on. The embed stage calls this before anything is sent to a provider (unless the provider
    decodes every image itself first: `checks_images`), so a bad image fails its own job there while the
    rest of the batch goes on."""
    with image_errors(Path(path).name):
        with Image.open(path) as im:
            if im.format in ("JPEG", "MPO"):
                # libjpeg reads every scan whatever the scale: a decode at 1/8 finds a truncated or
                # corrupt file for ~1/3 of the CPU of a full one (JPEG has no checksums for verify())
                im.draft(None, (max(1, im.width // 8), max(1, im.height // 8)))
                im.load()
                return
            im.verify()  # structure and checksums (PNG CRCs); leaves the image unusable
        with Image.open(path) as im:  # a full decode catches truncated data that verify() lets through
            im.load()


@contextmanager
def image_errors(name: str) -> Iterator[None]:
    """What decoding image `name` can raise, as the InputError a merchant can act on."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    except InputError:
        raise
    except FileNotFoundError:
        raise InputError(f"image file not found: {name!r} (was it moved after the batch was submitted?)") from None
    except Image.DecompressionBombError as exc:
        raise InputError(
            f"image {name!r} is too large to decode safely ({exc}); keep it under {MAX_IMAGE_PIXELS:,} pixels"
        ) from exc
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError... for broken data
        raise InputError(f"image {name!r} is corrupt or truncated ({exc}); re-export or re-upload it") from exc


def _check_header(text: str, fmt: str | None, expected: str, width: int, height: int) -> None:
    if fmt != expected and not (expected == "JPEG" and fmt == "MPO"):  # MPO = phone JPEG with extra frames
        raise InputError(
            f"image {text!r} is named {Path(text).suffix} but contains {fmt} data; "
            f"rename it to match its format or re-save it as {expected}"
        )
    if min(width, height) < MIN_IMAGE_SIDE:
        raise InputError(
            f"image {text!r} is too small ({width}x{height}); each side needs at least {MIN_IMAGE_SIDE} px"
        )
    if width * height > MAX_IMAGE_PIXELS:
        raise InputError(
            f"image {text!r} is too large ({width}x{height} = {width * height:,} pixels, a possible "
            f"decompression bomb); keep it under {MAX_IMAGE_PIXELS:,} pixels"
        )


# --- field parsers: (stripped value, catalog root) -> parsed value, or _BadValue(reason) ----------------


def _text(value: str, _root: Path) -> str:
    return value


def _category(value: str, _root: Path) -> str:
    if not value:
        raise _BadValue("category is empty: give the product category, e.g. dress")
    # "Midi_Dress", "midi-dress" and "midi dress" are one category: the filter compares exactly
    return " ".join(value.replace("_", " ").replace("-", " ").split()).lower()


def _sales_count(value: str, _root: Path) -> int:
    if not value:
        raise _BadValue("sales_count is empty: give the number of units sold (0 or more)")
    if value.startswith("-") and _INT.match(value[1:]):
        raise _BadValue(f"sales_count {value!r} is negative: give the number of units sold (0 or more)")
    m = _INT.match(value)
    if not m:
        raise _BadValue(f"sales_count {value!r} is not a whole number: write units sold like 1200 or 1,200")
    return int(re.sub(r"[, _]", "", m.group(1)))


def _price(value: str, _root: Path) -> float:
    if not value:
        raise _BadValue("price is empty: give the selling price, e.g. 19.99")
    number = _CURRENCY.match(value).group(1)  # type: ignore[union-attr]  # the pattern matches any string
    negative = number.startswith("-")
    number = number.lstrip("-").strip()
    if _PRICE_THOUSANDS.match(number):
        number = number.replace(",", "")
    elif _PRICE_DECIMAL_COMMA.match(number):
        number = number.replace(",", ".")
    elif not _PRICE_PLAIN.match(number):
        raise _BadValue(f"price {value!r} is not a number: write it like 19.99, $19.99 or 19,99")
    if negative:
        raise _BadValue(f"price {value!r} is negative")
    return float(number)


def _image(value: str, root: Path) -> Path:
    try:
        return _check_image(Path(value), root)  # root: resolved by _load
    except InputError as exc:
        raise _BadValue(str(exc)) from exc


@dataclass(frozen=True)
class _Schema(Generic[T]):
    """What one catalog CSV looks like and how its columns become a domain object."""

    csv_name: str
    id_column: str
    fields: dict[str, Callable[[str, Path], object]]  # column (= dataclass attribute) -> parser, id excluded
    text_columns: tuple[str, ...]  # all empty = a row with nothing to search or describe by
    build: Callable[..., T]
    folder_kind: str  # how a message names the folder: "catalog folder", "new products folder"

    @property
    def header(self) -> tuple[str, ...]:
        return (self.id_column, *self.fields)


HIT_SCHEMA = _Schema[HitProduct](
    "products.csv",
    "product_id",
    {
        "image_path": _image,
        "category": _category,
        "color": _text,
        "style": _text,
        "season": _text,
        "sales_count": _sales_count,
        "description": _text,
        "price": _price,
    },
    ("description", "color", "style", "season"),
    HitProduct,
    "catalog folder",
)
NEW_SCHEMA = _Schema[NewProduct](
    "new_products.csv",
    "new_id",
    {"image_path": _image, "category": _category, "style": _text, "season": _text, "prompt_hint": _text},
    ("category", "style", "season", "prompt_hint"),
    NewProduct,
    "new products folder",
)


def require_folder(folder: Path, kind: str = "catalog folder") -> None:
    """The one sentence for a folder that is not there ("catalog folder not found: ...")."""
    if not Path(folder).is_dir():
        raise InputError(f"{kind} not found: {folder}")


def load_catalog(folder: Path) -> Loaded[HitProduct]:
    """Best-sellers from `folder/products.csv`; images resolved inside `folder`."""
    return _load(Path(folder), HIT_SCHEMA)


def load_new_products(folder: Path) -> Loaded[NewProduct]:
    """New SKUs from `folder/new_products.csv`; images resolved inside `folder`."""
    return _load(Path(folder), NEW_SCHEMA)


def _read_rows(folder: Path, schema: _Schema[T]) -> tuple[Path, list[str], list[tuple[int, list[str]]]]:
    expected = ",".join(schema.header)
    require_folder(folder, schema.folder_kind)
    source = folder / schema.csv_name
    if not source.is_file():
        raise InputError(f"{source} not found: put a {schema.csv_name} with header {expected} in {folder}")
    try:
        with source.open(encoding="utf-8-sig", newline="") as fh:
            records = list(csv.reader(fh, skipinitialspace=True))
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{source} is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as CSV UTF-8"
        ) from exc
    except csv.Error as exc:
        raise InputError(f"{source} is not a readable CSV file: {exc}") from exc
    if not records or not any(cell.strip() for cell in records[0]):
        raise InputError(f"{source} is empty: the first line must be the header {expected}")
    header = [name.strip().lower() for name in records[0]]
    missing = [name for name in schema.header if name not in header]
    if missing:
        raise InputError(f"{source} is missing column(s) {', '.join(missing)}; expected header: {expected}")
    doubled = sorted({name for name in header if name and header.count(name) > 1})
    if doubled:
        raise InputError(f"{source} has duplicate column(s) {', '.join(doubled)}; each column name must appear once")
    # blank lines keep their number so that row N is line N+1 of a file without multi-line cells
    rows = [(n, r) for n, r in enumerate(records[1:], start=1) if any(cell.strip() for cell in r)]
    return source, header, rows


def _load(folder: Path, schema: _Schema[T]) -> Loaded[T]:
    source, header, rows = _read_rows(folder, schema)
    root = folder.resolve()  # once: every image path is resolved inside it
    loaded: Loaded[T] = Loaded([], [], source)
    first_row: dict[str, int] = {}
    for row, values in rows:
        raw = {(name or f"column_{i + 1}"): v for i, (name, v) in enumerate(zip(header, values))}
        raw.update({f"extra_{i + 1}": v for i, v in enumerate(values[len(header) :])})
        item_id = raw.get(schema.id_column, "").strip()
        readable_id = item_id if ID_PATTERN.fullmatch(item_id) else ""
        reason = _row_problems(schema, row, header, values, raw, item_id, first_row, root)
        if isinstance(reason, str):
            loaded.errors.append(RowError(row, readable_id, reason, raw))
        elif schema is NEW_SCHEMA:  # optional promo copy: checked per (SKU, locale), not here
            loaded.items.append(replace(reason, copy=copy_columns(raw)))  # type: ignore[type-var]
        else:
            loaded.items.append(reason)
    return loaded


def _row_problems(
    schema: _Schema[T],
    row: int,
    header: list[str],
    values: list[str],
    raw: dict[str, str],
    item_id: str,
    first_row: dict[str, int],
    root: Path,
) -> T | str:
    """The built item, or every problem of the row joined into one reason."""
    if len(values) != len(header):
        return (
            f"malformed row: {len(values)} fields where the header has {len(header)}; "
            f"quote values that contain commas and give every column (even if empty)"
        )
    problems: list[str] = []
    if not item_id:
        problems.append(f"{schema.id_column} is empty: every row needs a unique id")
    elif not ID_PATTERN.fullmatch(item_id):
        problems.append(
            f"{schema.id_column} {item_id!r} is not allowed: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    elif item_id.lower() in first_row:
        problems.append(f"duplicate {schema.id_column} {item_id!r}: already used by row {first_row[item_id.lower()]}")
    else:
        first_row[item_id.lower()] = row
    cells = {name: raw[name].strip() for name in schema.fields}
    if not any(cells[name] for name in schema.text_columns):
        problems.append(f"empty text: fill at least one of {', '.join(schema.text_columns)}")
    parsed: dict[str, object] = {schema.id_column: item_id}
    for name, parse in schema.fields.items():
        try:
            parsed[name] = parse(cells[name], root)
        except _BadValue as exc:
            problems.append(str(exc))
    return "; ".join(problems) if problems else schema.build(**parsed)
