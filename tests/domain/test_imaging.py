"""Presets, cut-out, compositing and contact sheets (hitline.domain.imaging, hitline.domain.cutout, hitline.domain.compose)."""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_CATALOG
from PIL import Image, ImageDraw

from hitline.domain.models import ASPECT_RATIOS, NewProduct, Preset, StyleAnalysis
from hitline.errors import InputError
from hitline.domain.imaging import compose, contact_sheet, cutout, load_presets
from hitline.domain.images import file_sha256 as image_fingerprint
from hitline.domain.cutout import product_mask
from hitline.providers.base import ImageRenderer
from hitline.providers.local.render import LocalRenderer

REAL_PHOTOS = sorted((SHARED_CATALOG / "images").glob("*.jpg"))
STYLE = StyleAnalysis(
    scene="studio", lighting="soft", pose="hung", mood="calm", prompt="p", palette=["#d8cfc4", "#333333"]
)


def _flatlay(
    colour: tuple[int, int, int] = (200, 60, 50), bg: tuple[int, int, int] = (236, 233, 228), size: int = 640
) -> tuple[Image.Image, np.ndarray]:
    """A t-shirt-like polygon on a plain background, with its true mask."""
    img = Image.new("RGB", (size, size), bg)
    s = size / 800
    pts = [
        (300 * s, 150 * s),
        (180 * s, 190 * s),
        (90 * s, 330 * s),
        (170 * s, 380 * s),
        (230 * s, 300 * s),
        (230 * s, 680 * s),
        (570 * s, 680 * s),
        (570 * s, 300 * s),
        (630 * s, 380 * s),
        (710 * s, 330 * s),
        (620 * s, 190 * s),
        (500 * s, 150 * s),
        (400 * s, 200 * s),
    ]
    ImageDraw.Draw(img).polygon(pts, fill=colour)
    truth = Image.new("L", img.size, 0)
    ImageDraw.Draw(truth).polygon(pts, fill=255)
    noise = np.random.default_rng(0).normal(0, 2, (size, size, 3))
    arr = np.clip(np.asarray(img, dtype=np.float64) + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(arr), np.asarray(truth) > 127


@pytest.fixture(scope="module")
def product() -> Image.Image:
    return cutout(_flatlay()[0])


def test_load_presets_all_and_named() -> None:
    presets = load_presets()
    names = [p.name for p in presets]
    assert "amazon_main" in names and "banner" in names
    amazon = load_presets(["amazon_main"])[0]
    assert (amazon.width, amazon.height, amazon.background) == (2048, 2048, "white")
    banner = load_presets(["banner"])[0]
    assert (banner.width, banner.height) == (2048, 512)


def test_unknown_preset_lists_the_known_ones() -> None:
    with pytest.raises(InputError, match="amazon_main"):
        load_presets(["amazon_main", "nope"])


def test_presets_override_file(tmp_path: Path) -> None:
    f = tmp_path / "p.toml"
    f.write_text('[square]\naspect_ratio = "1:1"\nsize = "1K"\n')
    assert [(p.name, p.width) for p in load_presets(override=f)] == [("square", 1024)]


def test_image_fingerprint_is_sha256_of_bytes(tmp_path: Path) -> None:
    import hashlib

    f = tmp_path / "a.bin"
    f.write_bytes(b"hello")
    assert image_fingerprint(f) == hashlib.sha256(b"hello").hexdigest()


@pytest.mark.parametrize(
    "colour,bg",
    [
        ((200, 60, 50), (236, 233, 228)),  # red on off-white
        ((30, 30, 34), (240, 240, 240)),  # black on white
        ((246, 244, 238), (226, 218, 204)),
    ],
)  # white on cream
def test_cutout_mask_matches_truth(colour: tuple[int, int, int], bg: tuple[int, int, int]) -> None:
    img, truth = _flatlay(colour, bg)
    mask = product_mask(img)
    iou = (mask & truth).sum() / (mask | truth).sum()
    assert iou > 0.9
    out = cutout(img)
    assert out.mode == "RGBA"
    ys, xs = np.nonzero(truth)
    # cropped to the product's bounding box (plus a few pixels of margin)
    assert abs(out.width - (xs.max() - xs.min() + 1)) < 16 and abs(out.height - (ys.max() - ys.min() + 1)) < 16


def test_cutout_of_blank_image_raises() -> None:
    with pytest.raises(InputError, match="no product found"):
        cutout(Image.new("RGB", (500, 400), (240, 238, 235)))


def test_cutout_of_full_frame_raises() -> None:
    img = Image.new("RGB", (400, 400), (240, 238, 235))
    ImageDraw.Draw(img).rectangle([1, 1, 398, 398], fill=(20, 20, 120))
    with pytest.raises(InputError):
        cutout(img)


@pytest.mark.parametrize("preset", load_presets(), ids=lambda p: p.name)
def test_compose_exact_size_for_every_shipped_preset(product: Image.Image, preset: Preset) -> None:
    out = compose(product, None, STYLE, preset)
    assert out.size == (preset.width, preset.height) and out.mode == "RGB"


@pytest.mark.parametrize("ratio", ASPECT_RATIOS)
def test_compose_every_aspect_ratio_at_512(product: Image.Image, ratio: str) -> None:
    ref = Image.open(REAL_PHOTOS[0]) if REAL_PHOTOS else None
    for background in ("scene", "white"):
        preset = Preset.build(f"r{ratio}", ratio, "512px", background)
        out = compose(product, ref, STYLE, preset)
        assert out.size == (preset.width, preset.height)
        # the product is actually in the picture: a good share of its red pixels
        arr = np.asarray(out).astype(int)
        red = (arr[..., 0] > 150) & (arr[..., 1] < 110) & (arr[..., 2] < 110)
        assert red.mean() > 0.02


def test_white_preset_has_pure_white_border_and_centred_product(product: Image.Image) -> None:
    preset = load_presets(["amazon_main"])[0]
    arr = np.asarray(compose(product, None, STYLE, preset))
    border = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]])
    assert (border == 255).all()
    non_white = np.nonzero((arr < 250).any(axis=2))
    cy, cx = np.mean(non_white[0]), np.mean(non_white[1])
    assert abs(cx - preset.width / 2) < 0.05 * preset.width and abs(cy - preset.height / 2) < 0.08 * preset.height
    ys, xs = np.nonzero((arr < 200).any(axis=2))
    assert 0.75 < max(np.ptp(xs), np.ptp(ys)) / preset.width < 0.9  # ~85% fill


def test_wide_banner_keeps_room_for_text(product: Image.Image) -> None:
    out = np.asarray(compose(product, None, STYLE, Preset.build("b", "4:1", "1K"))).astype(int)
    red = (out[..., 0] > 150) & (out[..., 1] < 110)
    xs = np.nonzero(red)[1]
    assert xs.max() < out.shape[1] * 0.45  # product on the left, the right half free


def test_tall_strip_puts_product_in_upper_part(product: Image.Image) -> None:
    out = np.asarray(compose(product, None, STYLE, Preset.build("s", "1:8", "1K"))).astype(int)
    red = (out[..., 0] > 150) & (out[..., 1] < 110)
    ys = np.nonzero(red)[0]
    assert ys.max() < out.shape[0] * 0.5


@pytest.mark.skipif(not REAL_PHOTOS, reason="shared real catalog photos not present")
def test_compose_with_real_reference_at_4k(product: Image.Image) -> None:
    ref = Image.open(REAL_PHOTOS[len(REAL_PHOTOS) // 2])
    preset = Preset.build("big", "1:1", "4K")
    compose(product, ref, STYLE, Preset.build("warm", "1:1", "512px"))  # warm the backdrop cache
    t = time.perf_counter()
    out = compose(product, ref, STYLE, preset)
    elapsed = time.perf_counter() - t
    assert out.size == (4096, 4096)
    assert elapsed < 10.0  # ~1.2 s measured on 2 cores; generous for loaded CI machines


def test_contact_sheet_is_one_readable_row(product: Image.Image) -> None:
    flat, _ = _flatlay()
    outs = [(p.name, compose(product, None, STYLE, p)) for p in load_presets(["thumbnail", "banner"])]
    sheet = contact_sheet(flat, [flat, flat], outs)
    assert sheet.mode == "RGB" and sheet.width <= 2400 and sheet.height >= 200


def test_local_renderer_renders_png_at_preset_size(tmp_path: Path) -> None:
    flat, _ = _flatlay()
    path = tmp_path / "flat.png"
    flat.save(path)
    renderer = LocalRenderer()
    assert isinstance(renderer, ImageRenderer)
    product = NewProduct("N1", path, "tshirt", "minimal", "summer", "")
    refs = REAL_PHOTOS[:1]
    for preset in load_presets(["thumbnail", "banner"]):
        r = renderer.render(path, refs, STYLE, product, preset)
        assert r.mime == "image/png" and r.cost_usd == 0.0 and r.model == "local/compositor-v1"
        assert Image.open(io.BytesIO(r.data)).size == (preset.width, preset.height)
    assert len(renderer._cutouts) == 1  # the cut-out was made once for both presets
