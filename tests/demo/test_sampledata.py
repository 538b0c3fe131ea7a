"""Demo data generator (hitline.demo.sampledata)."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hitline.domain.cutout import product_mask
from hitline.demo.sampledata import COPY_HEADER, NEW_HEADER, PRODUCTS_HEADER, draw_flatlay, generate_demo, _pick_spec


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return generate_demo(tmp_path_factory.mktemp("demo"), seed=7)


def _rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def test_catalog_csv_shape(demo: tuple[Path, Path]) -> None:
    catalog, _ = demo
    header, rows = _rows(catalog / "products.csv")
    assert (
        header
        == PRODUCTS_HEADER
        == ["product_id", "image_path", "category", "color", "style", "season", "sales_count", "description", "price"]
    )
    assert len(rows) >= 40
    assert len({r["category"] for r in rows}) >= 6
    sales = [int(r["sales_count"]) for r in rows]
    assert min(sales) >= 200 and max(sales) <= 20000
    assert any(s < 1500 for s in sales) and sum(s > 1500 for s in sales) >= 20
    assert all(0 < float(r["price"]) < 500 for r in rows)
    assert len({r["product_id"] for r in rows}) == len(rows)
    for r in rows:
        assert r["color"].lower() in r["description"].lower()
        assert r["image_path"].startswith("images/")
        with Image.open(catalog / r["image_path"]) as im:
            assert im.size == (576, 768)


def test_new_products_csv_shape(demo: tuple[Path, Path]) -> None:
    _, new = demo
    header, rows = _rows(new / "new_products.csv")
    assert (
        header[: len(NEW_HEADER)]
        == NEW_HEADER
        == ["new_id", "image_path", "category", "style", "season", "prompt_hint"]
    )
    assert header[len(NEW_HEADER) :] == COPY_HEADER  # optional promo copy (headline, price per market)
    assert len(rows) >= 4
    for r in rows:
        with Image.open(new / r["image_path"]) as im:
            im.load()


def test_demo_is_deterministic_for_a_seed(tmp_path: Path, demo: tuple[Path, Path]) -> None:
    catalog, new = generate_demo(tmp_path / "again", seed=7)

    def digest(folder: Path) -> str:
        h = hashlib.sha256()
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                h.update(f.relative_to(folder).as_posix().encode() + f.read_bytes())
        return h.hexdigest()

    assert digest(catalog) == digest(demo[0]) and digest(new) == digest(demo[1])
    other, _ = generate_demo(tmp_path / "other", seed=8)
    assert digest(other) != digest(catalog)


def test_flatlays_cut_out_cleanly(demo: tuple[Path, Path]) -> None:
    rng = np.random.default_rng(1)
    for cat, style, colour in [
        ("dress", "boho", "terracotta"),
        ("trousers", "minimalist", "navy"),
        ("bag", "boho", "rust"),
        ("tshirt", "streetwear", "red"),
    ]:
        img, truth = draw_flatlay(_pick_spec(rng, cat, style, colour), rng)
        mask = product_mask(img)
        assert (mask & truth).sum() / (mask | truth).sum() > 0.9, (cat, style, colour)
