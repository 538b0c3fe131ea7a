"""hitline/descriptors.py: fixed dim, unit norm, robust to size and codec, ranks look-alikes first."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from hitline.domain.descriptors import DIM, describe
from hitline.domain.images import load_image
from hitline.providers.local.embed import LocalEmbedder
from hitline.errors import InputError
from hitline.providers.base import ImageEmbedder


def dress(colour: tuple[int, int, int], size: tuple[int, int] = (600, 800), bg=(245, 245, 242)) -> Image.Image:
    """A flat-lay-like dress: narrow bodice, flared skirt, on a plain backdrop, with a little texture."""
    w, h = size
    im = Image.new("RGB", size, bg)
    d = ImageDraw.Draw(im)
    d.polygon(
        [
            (0.40 * w, 0.12 * h),
            (0.60 * w, 0.12 * h),
            (0.62 * w, 0.40 * h),
            (0.80 * w, 0.88 * h),
            (0.20 * w, 0.88 * h),
            (0.38 * w, 0.40 * h),
        ],
        fill=colour,
    )
    darker = tuple(int(c * 0.7) for c in colour)
    for i in range(6):  # pleats
        x = (0.30 + 0.08 * i) * w
        d.line([(0.5 * w, 0.42 * h), (x, 0.86 * h)], fill=darker, width=max(1, w // 150))
    return im


def trousers(colour: tuple[int, int, int], size: tuple[int, int] = (600, 800)) -> Image.Image:
    w, h = size
    im = Image.new("RGB", size, (245, 245, 242))
    d = ImageDraw.Draw(im)
    d.rectangle([0.30 * w, 0.10 * h, 0.70 * w, 0.25 * h], fill=colour)
    d.rectangle([0.30 * w, 0.25 * h, 0.47 * w, 0.92 * h], fill=colour)
    d.rectangle([0.53 * w, 0.25 * h, 0.70 * w, 0.92 * h], fill=colour)
    return im


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_dim_norm_dtype_and_determinism():
    v = describe(dress((200, 30, 40)))
    assert v.shape == (DIM,) and v.dtype == np.float32
    assert abs(float(np.linalg.norm(v)) - 1.0) < 1e-5
    assert np.isfinite(v).all()
    assert np.array_equal(v, describe(dress((200, 30, 40))))


@pytest.mark.parametrize(
    "img",
    [
        Image.new("RGB", (50, 50), (128, 128, 128)),
        Image.new("L", (3, 900), 0),
        Image.new("RGBA", (300, 200), (0, 0, 0, 0)),
        Image.new("RGB", (1, 1), (255, 0, 0)),
    ],
)
def test_degenerate_images_still_give_unit_vectors(img):
    v = describe(img)
    assert v.shape == (DIM,) and abs(float(np.linalg.norm(v)) - 1.0) < 1e-5 and np.isfinite(v).all()


def test_same_image_at_two_sizes_and_after_jpeg(tmp_path: Path):
    big = dress((200, 30, 40), size=(1200, 1600))
    small = big.resize((300, 400), Image.Resampling.LANCZOS)
    jpg = tmp_path / "d.jpg"
    big.save(jpg, quality=70)
    png = tmp_path / "d.png"
    big.save(png)
    ref = describe(big)
    assert cos(ref, describe(small)) > 0.95
    assert cos(ref, describe(load_image(jpg))) > 0.95
    assert np.allclose(ref, describe(load_image(png)))


def test_colour_and_shape_rank_correctly():
    red = describe(dress((200, 30, 40)))
    red_again = describe(dress((190, 35, 45), size=(700, 900)))  # another red dress, other size
    blue = describe(dress((30, 60, 190)))
    red_trousers = describe(trousers((200, 30, 40)))
    blue_trousers = describe(trousers((30, 60, 190)))
    ranked = sorted(
        [
            ("red_again", cos(red, red_again)),
            ("blue", cos(red, blue)),
            ("red_trousers", cos(red, red_trousers)),
            ("blue_trousers", cos(red, blue_trousers)),
        ],
        key=lambda kv: -kv[1],
    )
    assert ranked[0][0] == "red_again"
    assert ranked[-1][0] == "blue_trousers"  # different colour and different shape is furthest
    assert cos(red, red_again) > 0.95


def test_embedder_protocol_and_vectors(tmp_path: Path):
    paths = []
    for i, c in enumerate([(200, 30, 40), (30, 60, 190)]):
        p = tmp_path / f"{i}.png"
        dress(c).save(p)
        paths.append(p)
    emb = LocalEmbedder()
    assert isinstance(emb, ImageEmbedder)
    assert emb.dim == DIM and emb.model == "local/descriptor-v1"
    out = emb.embed_images(paths)
    assert out.cost_usd == 0.0 and len(out.vectors) == 2 and all(len(v) == DIM for v in out.vectors)
    assert all(v.dtype == np.float32 and v.shape == (DIM,) for v in out.vectors)
    assert emb.embed_images([]).vectors == []


def test_unreadable_images_raise_input_error(tmp_path: Path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"this is not a jpeg")
    truncated = tmp_path / "cut.png"
    dress((1, 2, 3)).save(tmp_path / "full.png")
    truncated.write_bytes((tmp_path / "full.png").read_bytes()[:200])
    for path in (bad, truncated, tmp_path / "missing.png", tmp_path):
        with pytest.raises(InputError, match=str(path.name)):
            LocalEmbedder().embed_images([path])


def test_exif_rotation_is_applied(tmp_path: Path):
    img = dress((200, 30, 40))
    rotated = img.rotate(90, expand=True)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to view": undoes our counter-clockwise rotation
    p = tmp_path / "r.jpg"
    rotated.save(p, exif=exif, quality=95)
    assert cos(describe(img), describe(load_image(p))) > 0.95
