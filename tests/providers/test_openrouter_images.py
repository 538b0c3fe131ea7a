"""Images on the OpenRouter wire: encoded once per file version, and a model's exact-size PNG stored as sent."""

from __future__ import annotations

import io
import os
from pathlib import Path

from PIL import Image

from hitline.providers.openrouter import providers as p


def _png(size: tuple[int, int], colour: str = "red", mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, colour).save(buf, format="PNG")
    return buf.getvalue()


def test_a_reference_photo_is_encoded_once_per_file_version(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    photo = tmp_path / "hit.jpg"
    Image.new("RGB", (900, 600), "blue").save(photo, "JPEG")
    p._encoded_data_uri.cache_clear()
    saves = []
    real_save = Image.Image.save
    monkeypatch.setattr(Image.Image, "save", lambda self, *a, **k: (saves.append(a), real_save(self, *a, **k))[1])
    first = p.image_data_uri(photo, 512)
    assert p.image_data_uri(photo, 512) == first and len(saves) == 1  # the same hit for the next SKU: no encode
    p.image_data_uri(photo, 256)
    assert len(saves) == 2  # another size is another encoding
    Image.new("RGB", (900, 600), "green").save(photo, "JPEG")
    os.utime(photo, ns=(1, 1))  # a new version of the file (mtime and size are the key, not the name)
    changed = p.image_data_uri(photo, 512)
    assert changed != first and len(saves) == 4  # the overwrite above + the new encoding


def test_fit_exact_keeps_an_exact_rgb_png_byte_for_byte() -> None:
    exact = _png((64, 32))
    assert p.fit_exact(exact, 64, 32) is exact
    resized = p.fit_exact(_png((128, 64)), 64, 32)
    assert Image.open(io.BytesIO(resized)).size == (64, 32)
    rgba = p.fit_exact(_png((64, 32), mode="RGBA"), 64, 32)  # alpha is flattened: re-encoded as RGB
    with Image.open(io.BytesIO(rgba)) as im:
        assert (im.mode, im.size) == ("RGB", (64, 32))
