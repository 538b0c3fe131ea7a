"""The one way hitline reads an image file: EXIF rotation applied, mode normalised to RGB (alpha
flattened on white, 16-bit scaled), and the file's content hash. Every stage uses these, so the
embedder, the analyzer and the renderer all see a phone photo the same way up."""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from hitline.errors import InputError

__all__ = ["load_image", "to_rgb", "file_sha256"]


def load_image(path: Path | str) -> Image.Image:
    """Open an image file fully (EXIF rotation applied, alpha flattened on white) or raise InputError."""
    try:
        with Image.open(path) as opened:
            opened.load()
            return to_rgb(ImageOps.exif_transpose(opened))
    except FileNotFoundError:
        raise InputError(f"image not found: {path}") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise InputError(f"cannot read image {path}: {exc}") from None


def to_rgb(im: Image.Image) -> Image.Image:
    if im.width < 1 or im.height < 1:
        raise InputError("image has no pixels")
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit greyscale: scale down rather than clip to 255
        arr = np.asarray(im, dtype=np.float64)
        top = max(float(arr.max()), 1.0)
        return Image.fromarray((arr * (255.0 / top)).astype(np.uint8)).convert("RGB")
    return im.convert("RGB")


def file_sha256(path: Path | str) -> str:
    """sha256 of the file's bytes: the content-hash key of an image. Read once per process for the same
    file version (path, mtime, size): every render and analysis keys on the same few catalog photos."""
    st = os.stat(path)
    return _sha256_of(str(path), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=4096)
def _sha256_of(path: str, _mtime_ns: int, _size: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
