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


def _jpeg(path: Path, size: tuple[int, int], **save: object) -> bytes:
    Image.new("RGB", size, (30, 90, 160)).save(path, "JPEG", **save)
    return path.read_bytes()


def _sent(uri: str) -> bytes:
    import base64

    return base64.b64decode(uri.split(",", 1)[1])


def test_a_plain_jpeg_within_the_side_is_sent_as_it_is_and_anything_else_is_re_encoded(tmp_path: Path) -> None:
    p._encoded_data_uri.cache_clear()
    plain = tmp_path / "plain.jpg"
    _jpeg(plain, (300, 200))
    assert _sent(p.image_data_uri(plain, 512)) == plain.read_bytes()
    exif = Image.Exif()
    exif[0x8825] = {1: "N"}  # GPSInfo: must not leave the machine
    tagged = tmp_path / "tagged.jpg"
    _jpeg(tagged, (300, 200), exif=exif.tobytes())
    sent = _sent(p.image_data_uri(tagged, 512))
    assert sent != tagged.read_bytes() and not Image.open(io.BytesIO(sent)).getexif()
    big = tmp_path / "big.jpg"
    _jpeg(big, (900, 600))
    assert Image.open(io.BytesIO(_sent(p.image_data_uri(big, 512)))).size == (512, 341)


def test_a_truncated_jpeg_is_not_sent(tmp_path: Path) -> None:
    import pytest

    from hitline.errors import InputError

    p._encoded_data_uri.cache_clear()
    cut = tmp_path / "cut.jpg"
    Image.effect_noise((400, 300), 80).convert("RGB").save(cut, "JPEG", quality=95)
    data = cut.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError):
        p.image_data_uri(cut, 512)


def test_a_large_jpeg_is_decoded_at_a_reduced_scale_never_below_the_side_it_is_sent_at(
    tmp_path: Path, monkeypatch
) -> None:  # noqa: ANN001
    """A 3000 px phone photo sent at 512 px is decoded at 1/4 (750 px), not in full; the sent size and the
    EXIF rotation are those of a full decode."""
    p._encoded_data_uri.cache_clear()
    decoded: list[tuple[int, int]] = []
    real_resize = Image.Image.resize
    monkeypatch.setattr(
        Image.Image,
        "resize",
        lambda self, size, *a, **k: (decoded.append(self.size), real_resize(self, size, *a, **k))[1],
    )
    photo = tmp_path / "phone.jpg"
    _jpeg(photo, (3000, 2000))
    assert Image.open(io.BytesIO(_sent(p.image_data_uri(photo, 512)))).size == (512, 341)
    assert decoded == [(750, 500)]
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotated 90 degrees, as phones save a portrait shot
    turned = tmp_path / "turned.jpg"
    _jpeg(turned, (2000, 1000), exif=exif.tobytes())
    assert Image.open(io.BytesIO(_sent(p.image_data_uri(turned, 600)))).size == (300, 600)
    assert decoded[-1] == (500, 1000)  # 1/2 scale: 1/4 would give 500 px, below the 600 it is sent at


def test_the_embedders_own_decode_is_the_embed_stages_image_check(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """The line does not decode an image the OpenRouter embedder decodes anyway (checks_images): its check
    refuses what verify_image_data refuses (a truncated JPEG, sent as it is or re-encoded; a PNG with a bad
    CRC, which a plain decode lets through), in the same words, before anything is sent."""
    import pytest

    from hitline import line
    from hitline.domain.catalog import verify_image_data
    from hitline.errors import InputError
    from hitline.providers.openrouter.providers import OpenRouterEmbedder

    p._encoded_data_uri.cache_clear()
    small, big = tmp_path / "small.jpg", tmp_path / "big.jpg"
    Image.effect_noise((400, 300), 80).convert("RGB").save(small, "JPEG", quality=95)  # sent as it is
    Image.effect_noise((900, 700), 80).convert("RGB").save(big, "JPEG", quality=95)  # decoded and resized
    for f in (small, big):
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    png = tmp_path / "crc.png"
    Image.effect_noise((300, 300), 80).convert("RGB").save(png, "PNG")
    data = bytearray(png.read_bytes())
    end = data.index(b"IEND") - 8  # the last 4 bytes before IEND's length: the IDAT chunk's CRC
    data[end : end + 4] = bytes(b ^ 0xFF for b in data[end : end + 4])
    png.write_bytes(bytes(data))
    p.image_data_uri(png, 512)  # a plain decode does not read chunk CRCs: without check it would be sent

    class Refuses:
        def post(self, *a, **k):  # noqa: ANN002, ANN003, ANN202
            raise AssertionError("nothing may be sent for a broken image")

    embedder = OpenRouterEmbedder(Refuses(), "m", 8)  # type: ignore[arg-type]
    assert embedder.checks_images
    monkeypatch.setattr(line, "verify_image_data", lambda path: pytest.fail("decoded twice"))
    for broken in (small, big, png, tmp_path / "gone.jpg"):
        with pytest.raises(InputError) as theirs:
            verify_image_data(broken)
        with pytest.raises(InputError) as ours:
            line.embed_images(embedder, [broken], {}, ["sha"])  # type: ignore[arg-type]
        assert str(ours.value).split(" (")[0] == str(theirs.value).split(" (")[0], broken.name
