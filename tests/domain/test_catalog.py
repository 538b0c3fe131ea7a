"""hitline.domain.catalog: file-level errors raise, every bad row fails alone with its reason, good rows load."""

from __future__ import annotations

import csv
import io
import os
import struct
import zlib
from pathlib import Path

import pytest
from conftest import SHARED_CATALOG
from PIL import Image

from hitline.domain.catalog import MAX_IMAGE_PIXELS, check_image, load_catalog, load_new_products, verify_image_data
from hitline.errors import InputError

HIT_HEADER = ["product_id", "image_path", "category", "color", "style", "season", "sales_count", "description", "price"]
NEW_HEADER = ["new_id", "image_path", "category", "style", "season", "prompt_hint"]
REAL_CATALOG = SHARED_CATALOG


def save_image(path: Path, size: tuple[int, int] = (80, 96), fmt: str = "JPEG") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (200, 120, 90)).save(path, fmt)
    return path


def hit_row(pid: str, **over: str) -> dict[str, str]:
    row = dict(
        product_id=pid,
        image_path=f"images/{pid}.jpg",
        category="Dress",
        color="red",
        style="boho",
        season="summer",
        sales_count="1500",
        description=f"Red boho dress {pid}",
        price="19.99",
    )
    row.update(over)
    return row


def write_csv(folder: Path, name: str, header: list[str], rows: list[dict[str, str]]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    (folder / name).write_text(buf.getvalue(), encoding="utf-8")


def hit_catalog(tmp_path: Path, bad: dict[str, str] | None = None, *, image: bool = True) -> Path:
    """Two good rows (G1, G2) around an optional bad one, with images for every id that has a simple path."""
    rows = [hit_row("G1")] + ([bad] if bad else []) + [hit_row("G2")]
    for row in rows:
        target = tmp_path / row["image_path"]
        if image and row["image_path"] == f"images/{row['product_id']}.jpg" and not os.path.lexists(target):
            save_image(tmp_path / row["image_path"])
    write_csv(tmp_path, "products.csv", HIT_HEADER, rows)
    return tmp_path


def assert_fails_alone(folder: Path, reason: str, row: int = 2) -> None:
    loaded = load_catalog(folder)
    assert [p.product_id for p in loaded.items] == ["G1", "G2"], loaded.errors
    assert len(loaded.errors) == 1
    err = loaded.errors[0]
    assert err.row == row
    assert reason in err.reason, err.reason
    assert err.raw  # nothing lost


# --- good data and formats --------------------------------------------------------------------------------


def test_good_catalog_loads_with_resolved_paths_and_normalised_category(tmp_path: Path) -> None:
    folder = hit_catalog(tmp_path, hit_row("B", category="  Midi   DRESS "))
    save_image(tmp_path / "images/B.jpg")
    loaded = load_catalog(folder)
    assert loaded.errors == [] and len(loaded.items) == 3
    assert loaded.source == folder / "products.csv"
    b = loaded.items[1]
    assert b.category == "midi dress" and b.sales_count == 1500 and b.price == 19.99
    assert b.image_path.is_absolute() and b.image_path == (tmp_path / "images/B.jpg").resolve()


def test_bom_crlf_quoted_commas_newlines_whitespace_extra_columns(tmp_path: Path) -> None:
    save_image(tmp_path / "images/A 1.jpg")
    save_image(tmp_path / "images/B.png", fmt="PNG")
    text = (
        " Product_ID , image_path,category,color,style,season,sales_count,description,price,notes\r\n"
        ' A1 , "images/A 1.jpg" , Dress ,red,boho,summer, "1,200" ,"Red dress, with ""bow""\r\nand lining",$19.99,x\r\n'
        'B2,images/B.png,top,,,, 7 ,Blue top,"19,99",\r\n'
    )
    (tmp_path / "products.csv").write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    loaded = load_catalog(tmp_path)
    assert loaded.errors == []
    a, b = loaded.items
    assert a.product_id == "A1" and a.sales_count == 1200 and a.price == 19.99
    assert a.description == 'Red dress, with "bow"\r\nand lining'
    assert a.category == "dress" and b.sales_count == 7 and b.price == 19.99


@pytest.mark.parametrize(
    "text,value",
    [("1200", 1200), ("1,200", 1200), ("1 200", 1200), ("1200.0", 1200), ("1,234,567.00", 1234567), ("0", 0)],
)
def test_sales_count_formats_accepted(tmp_path: Path, text: str, value: int) -> None:
    save_image(tmp_path / "images/X.jpg")
    write_csv(tmp_path, "products.csv", HIT_HEADER, [hit_row("X", sales_count=text)])
    assert load_catalog(tmp_path).items[0].sales_count == value


@pytest.mark.parametrize(
    "text,value",
    [
        ("19.99", 19.99),
        ("$19.99", 19.99),
        ("19,99", 19.99),
        ("€ 5", 5.0),
        ("1,299.50", 1299.5),
        ("1,299", 1299.0),
        ("12.5 USD", 12.5),
        ("0", 0.0),
    ],
)
def test_price_formats_accepted(tmp_path: Path, text: str, value: float) -> None:
    save_image(tmp_path / "images/X.jpg")
    write_csv(tmp_path, "products.csv", HIT_HEADER, [hit_row("X", price=text)])
    assert load_catalog(tmp_path).items[0].price == pytest.approx(value)


# --- file-level errors ------------------------------------------------------------------------------------


def test_missing_folder(tmp_path: Path) -> None:
    """Each folder is named for what it is: a missing new-products folder is not a 'catalog folder'."""
    with pytest.raises(InputError, match="^catalog folder not found"):
        load_catalog(tmp_path / "nope")
    with pytest.raises(InputError, match="^new products folder not found"):
        load_new_products(tmp_path / "nope")


def test_missing_csv(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="products.csv not found"):
        load_catalog(tmp_path)
    with pytest.raises(InputError, match="new_products.csv not found"):
        load_new_products(tmp_path)


def test_header_missing_columns_names_them_and_expected_header(tmp_path: Path) -> None:
    (tmp_path / "products.csv").write_text("product_id,image_path,category,color,style,description\nA,a.jpg,x,,,d\n")
    with pytest.raises(InputError) as exc:
        load_catalog(tmp_path)
    msg = str(exc.value)
    assert "season, sales_count, price" in msg and ",".join(HIT_HEADER) in msg


@pytest.mark.parametrize(
    "content,match",
    [
        (b"", "is empty"),
        (b"\r\n\r\n", "is empty"),
        ("product_id,x\n".encode("utf-16"), "not UTF-8"),
        (",".join(HIT_HEADER + ["price"]).encode(), "duplicate column"),
    ],
)
def test_unreadable_csv(tmp_path: Path, content: bytes, match: str) -> None:
    (tmp_path / "products.csv").write_bytes(content)
    with pytest.raises(InputError, match=match):
        load_catalog(tmp_path)


# --- bad rows: each fails alone -------------------------------------------------------------------------


def test_malformed_row_wrong_field_count(tmp_path: Path) -> None:
    hit_catalog(tmp_path)
    lines = (tmp_path / "products.csv").read_text().splitlines()
    lines.insert(2, "M1,images/M1.jpg,dress,red,boho,summer,10,Dress, with a stray comma,9.99")
    (tmp_path / "products.csv").write_text("\n".join(lines) + "\n")
    assert_fails_alone(tmp_path, "malformed row: 10 fields where the header has 9")
    assert load_catalog(tmp_path).errors[0].raw["extra_1"] == "9.99"


@pytest.mark.parametrize(
    "pid,reason",
    [
        ("", "product_id is empty"),
        ("   ", "product_id is empty"),
        ("a b", "is not allowed"),
        ("../x", "is not allowed"),
        ("-lead", "is not allowed"),
        ("x" * 65, "is not allowed"),
    ],
)
def test_bad_ids(tmp_path: Path, pid: str, reason: str) -> None:
    save_image(tmp_path / "images/ok.jpg")
    assert_fails_alone(hit_catalog(tmp_path, hit_row(pid, image_path="images/ok.jpg")), reason)
    assert load_catalog(tmp_path).errors[0].id == ""


def test_id_is_stripped(tmp_path: Path) -> None:
    save_image(tmp_path / "images/S.jpg")
    write_csv(tmp_path, "products.csv", HIT_HEADER, [hit_row("  S  ", image_path="images/S.jpg")])
    assert load_catalog(tmp_path).items[0].product_id == "S"


def test_duplicate_ids_fail_after_the_first_naming_it(tmp_path: Path) -> None:
    rows = [hit_row("G1"), hit_row("D"), hit_row("d"), hit_row("G2"), hit_row("D")]
    for name in ("G1", "G2", "D", "d"):
        save_image(tmp_path / f"images/{name}.jpg")
    write_csv(tmp_path, "products.csv", HIT_HEADER, rows)
    loaded = load_catalog(tmp_path)
    assert [p.product_id for p in loaded.items] == ["G1", "D", "G2"]
    assert [(e.row, e.id) for e in loaded.errors] == [(3, "d"), (5, "D")]
    assert all("already used by row 2" in e.reason for e in loaded.errors)


@pytest.mark.parametrize(
    "over,reason",
    [
        (dict(category="  "), "category is empty"),
        (dict(description="", color="", style=" ", season=""), "empty text"),
        (dict(sales_count="lots"), "is not a whole number"),
        (dict(sales_count="1200.5"), "is not a whole number"),
        (dict(sales_count="1.200"), "is not a whole number"),
        (dict(sales_count="-3"), "is negative"),
        (dict(sales_count=""), "sales_count is empty"),
        (dict(price="cheap"), "price 'cheap' is not a number"),
        (dict(price="-5"), "price '-5' is negative"),
        (dict(price=""), "price is empty"),
    ],
)
def test_bad_values(tmp_path: Path, over: dict[str, str], reason: str) -> None:
    assert_fails_alone(hit_catalog(tmp_path, hit_row("B", **over)), reason)
    assert load_catalog(tmp_path).errors[0].id == "B"


def test_description_may_be_empty_when_other_text_exists(tmp_path: Path) -> None:
    folder = hit_catalog(tmp_path, hit_row("B", description=""))
    assert len(load_catalog(folder).items) == 3


def test_all_problems_of_a_row_are_reported(tmp_path: Path) -> None:
    reason = (
        load_catalog(hit_catalog(tmp_path, hit_row("B", price="x", sales_count="y", image_path="images/none.jpg")))
        .errors[0]
        .reason
    )
    assert "sales_count" in reason and "price" in reason and "image file not found" in reason


# --- images ------------------------------------------------------------------------------------------------


def png_with_size(path: Path, width: int, height: int) -> Path:
    """A small valid PNG whose header claims another size (what a decompression bomb looks like up front)."""
    save_image(path, fmt="PNG")
    data = bytearray(path.read_bytes())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


def bad_image_case(tmp_path: Path, kind: str) -> str:
    """Create the broken image for `kind` and return the image_path to put in the CSV."""
    img = tmp_path / "images/B.jpg"
    if kind == "not_image":
        img.parent.mkdir(parents=True)
        img.write_text("hello")
    elif kind == "truncated_jpeg":
        save_image(img, (300, 300))
        Image.effect_noise((300, 300), 60).convert("RGB").save(img, "JPEG")
        img.write_bytes(img.read_bytes()[: img.stat().st_size // 2])
    elif kind == "corrupt_png":
        img = save_image(tmp_path / "images/B.png", fmt="PNG")
        data = bytearray(img.read_bytes())
        data[-20] ^= 0xFF  # inside IDAT: bad CRC / bad zlib data
        img.write_bytes(bytes(data))
    elif kind == "png_named_jpg":
        save_image(img, fmt="PNG")
    elif kind == "gif":
        img = save_image(tmp_path / "images/B.gif", fmt="GIF")
    elif kind == "small":
        save_image(img, (63, 500))
    elif kind == "bomb":
        img = png_with_size(tmp_path / "images/B.png", 8000, 7000)
    elif kind == "huge_bomb":
        img = png_with_size(tmp_path / "images/B.png", 20000, 20000)
    elif kind == "symlink_out":
        outside = save_image(tmp_path.parent / f"{tmp_path.name}-outside.jpg")
        img.parent.mkdir(parents=True)
        img.symlink_to(outside)
    elif kind == "directory":
        img.mkdir(parents=True)
    return img.relative_to(tmp_path).as_posix()


@pytest.mark.parametrize(
    "kind,reason",
    [
        ("not_image", "is not an image"),
        ("png_named_jpg", "is named .jpg but contains PNG data"),
        ("gif", "has extension '.gif'"),
        ("small", "too small (63x500)"),
        ("bomb", "too large (8000x7000"),
        ("huge_bomb", "too large"),
        ("symlink_out", "image path escapes the catalog folder"),
        ("directory", "is not a file"),
    ],
)
def test_bad_images(tmp_path: Path, kind: str, reason: str) -> None:
    path = bad_image_case(tmp_path, kind)
    assert_fails_alone(hit_catalog(tmp_path, hit_row("B", image_path=path)), reason)


@pytest.mark.parametrize("kind", ["truncated_jpeg", "corrupt_png"])
def test_broken_pixel_data_passes_the_header_check_and_fails_the_decode(tmp_path: Path, kind: str) -> None:
    """Submit reads headers only (a full decode of 10,000 images took two thirds of a bulk submission);
    the pixel data is checked by verify_image_data in the embed stage, where the row fails alone."""
    path = bad_image_case(tmp_path, kind)
    loaded = load_catalog(hit_catalog(tmp_path, hit_row("B", image_path=path)))
    assert [p.product_id for p in loaded.items] == ["G1", "B", "G2"] and loaded.errors == []
    with pytest.raises(InputError, match=r"image 'B\.(jpg|png)' is corrupt or truncated .*re-export or re-upload"):
        verify_image_data(loaded.items[1].image_path)
    for good in (loaded.items[0], loaded.items[2]):
        verify_image_data(good.image_path)


def test_check_image_does_not_decode_pixels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    img = save_image(tmp_path / "images/A.jpg", (300, 200))
    from PIL import ImageFile

    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail("check_image decoded the pixels"))
    assert check_image(Path("images/A.jpg"), tmp_path) == img.resolve()


def test_verify_image_data_names_a_vanished_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="image file not found: 'gone.jpg'"):
        verify_image_data(tmp_path / "gone.jpg")


@pytest.mark.parametrize(
    "path,reason",
    [
        ("", "image path is empty"),
        ("/etc/passwd", "image path escapes the catalog folder"),
        ("../outside.jpg", "image path escapes the catalog folder"),
        ("images/../../outside.jpg", "image path escapes the catalog folder"),
        ("C:\\photos\\B.jpg", "image path escapes the catalog folder"),
        ("images/missing.jpg", "image file not found"),
    ],
)
def test_bad_image_paths(tmp_path: Path, path: str, reason: str) -> None:
    save_image(tmp_path.parent / "outside.jpg")
    assert_fails_alone(hit_catalog(tmp_path, hit_row("B", image_path=path)), reason)


def test_check_image_resolves_inside_paths_and_bare_names(tmp_path: Path) -> None:
    img = save_image(tmp_path / "images/A.jpg")
    assert check_image(Path("images/./x/../A.jpg"), tmp_path) == img.resolve()
    assert check_image(Path("A.jpg"), tmp_path) == img.resolve()  # bare name found under images/
    assert check_image(Path("images\\A.jpg"), tmp_path) == img.resolve()  # Windows separators
    assert MAX_IMAGE_PIXELS == 50_000_000


# --- new products share the row parser -------------------------------------------------------------------


def test_new_products_load_and_fail_per_row(tmp_path: Path) -> None:
    for name in ("N01", "N02", "N03"):
        save_image(tmp_path / f"new_products/{name}.png", fmt="PNG")
    rows = [
        dict(
            new_id="N01",
            image_path="new_products/N01.png",
            category=" Midi Dress",
            style="boho",
            season="summer",
            prompt_hint="beach",
        ),
        dict(new_id="N02", image_path="new_products/N02.png", category="", style="", season="", prompt_hint=""),
        dict(new_id="N01", image_path="new_products/N03.png", category="top", style="", season="", prompt_hint=""),
        dict(new_id="N03", image_path="new_products/N03.png", category="top", style="", season="", prompt_hint=""),
    ]
    write_csv(tmp_path, "new_products.csv", NEW_HEADER, rows)
    loaded = load_new_products(tmp_path)
    assert [(n.new_id, n.category) for n in loaded.items] == [("N01", "midi dress"), ("N03", "top")]
    assert loaded.items[0].image_path == (tmp_path / "new_products/N01.png").resolve()
    assert [e.row for e in loaded.errors] == [2, 3]
    assert "empty text" in loaded.errors[0].reason
    assert "duplicate new_id 'N01': already used by row 1" in loaded.errors[1].reason


def test_new_products_header_missing_column(tmp_path: Path) -> None:
    (tmp_path / "new_products.csv").write_text("new_id,image_path,category\n")
    with pytest.raises(InputError, match="missing column.*style, season, prompt_hint"):
        load_new_products(tmp_path)


# --- the real sample catalog ------------------------------------------------------------------------------


def test_real_hit_catalog_loads_14_items() -> None:
    if not REAL_CATALOG.is_dir():
        pytest.skip(f"real catalog not present at {REAL_CATALOG}")
    loaded = load_catalog(REAL_CATALOG)
    assert loaded.errors == []
    assert len(loaded.items) == 14
    # images resolve inside the folder (itself resolved: ../shared may be a symlink)
    assert all(p.image_path.is_file() and p.image_path.is_relative_to(REAL_CATALOG.resolve()) for p in loaded.items)
