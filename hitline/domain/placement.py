"""Where a compositor put the product in an output, carried in the output PNG itself (a text chunk):
the gate reads it instead of segmenting the output again, and a resized output carries it resized."""

from __future__ import annotations

import base64
import json
import zlib

import cv2
import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

__all__ = ["KEY", "png_info", "read_placement", "resized_placement"]

KEY = "hitline:placement"


def _encode(mask: np.ndarray) -> str:
    ys, xs = np.nonzero(mask)
    if not len(ys):
        return json.dumps({"size": [mask.shape[1], mask.shape[0]], "box": None})
    x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
    bits = np.packbits(mask[y0:y1, x0:x1], axis=None)
    return json.dumps(
        {
            "size": [mask.shape[1], mask.shape[0]],
            "box": [x0, y0, x1, y1],
            "bits": base64.b64encode(zlib.compress(bits.tobytes(), 6)).decode("ascii"),
        }
    )


def png_info(mask: np.ndarray) -> PngInfo:
    """PNG text chunk holding the product mask (bool, output size) as placed by the compositor."""
    info = PngInfo()
    info.add_text(KEY, _encode(mask), zip=True)
    return info


def read_placement(im: Image.Image) -> np.ndarray | None:
    """The product mask an opened output carries (its size), or None (not a compositor's output, or a
    mask that does not fit the image: then the gate segments the output itself)."""
    raw = im.info.get(KEY) if hasattr(im, "info") else None
    if not raw:
        return None
    try:
        data = json.loads(raw)
        w, h = data["size"]
        if (w, h) != im.size:
            return None
        mask = np.zeros((h, w), bool)
        if data["box"] is None:
            return mask
        x0, y0, x1, y1 = data["box"]
        bits = np.frombuffer(zlib.decompress(base64.b64decode(data["bits"])), np.uint8)
        n = (y1 - y0) * (x1 - x0)
        mask[y0:y1, x0:x1] = np.unpackbits(bits)[:n].reshape(y1 - y0, x1 - x0).astype(bool)
        return mask
    except (ValueError, KeyError, TypeError, zlib.error):
        return None


def resized_placement(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray | None:
    """The mask for the same picture resized to `size` (w, h); None when the aspect ratio differs by more
    than a pixel's worth (a cover-fit crop: the gate then segments)."""
    h, w = mask.shape
    if abs(w / h - size[0] / size[1]) > 2.0 / min(size):
        return None
    return cv2.resize(mask.astype(np.uint8) * 255, size, interpolation=cv2.INTER_LINEAR) > 127
