"""Dense vectors as float32, and the one way they are stored in the job table's cache: the little-endian
float32 bytes in base64 inside the JSON value, {"f32": "...", "dim": n} - 11 KB for 2048 dimensions
instead of ~45 KB of decimal text, ~18x less CPU to write and read (bench/bench_vectors.py). Milvus keeps
FLOAT_VECTOR as float32, so rounding to float32 here loses nothing the index keeps."""

from __future__ import annotations

import base64
import binascii
from typing import Any

import numpy as np
import numpy.typing as npt

from hitline.errors import InputError

__all__ = ["Vector", "as_vector", "f32_base64", "from_f32_base64", "encode_vector", "decode_vector"]

Vector = npt.NDArray[np.float32]


def as_vector(v: npt.ArrayLike) -> Vector:
    """v as a 1-D float32 array (v itself when it already is one). Raises ValueError for another shape or
    a NaN or infinity (numpy reads None as NaN), which would make every cosine meaningless."""
    a = np.asarray(v, dtype=np.float32)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"a vector is 1-D and not empty, not of shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"a vector's values are finite, not {a[~np.isfinite(a)][0]}")
    return a


def f32_base64(v: npt.ArrayLike) -> str:
    """The values' little-endian float32 bytes in base64: the cache's form, and the embeddings API's
    `encoding_format: "base64"` (OpenAI's, OpenRouter's)."""
    return base64.b64encode(np.asarray(v, dtype="<f4").tobytes()).decode("ascii")


def from_f32_base64(text: str) -> Vector:
    """The values of f32_base64 text; ValueError when it is not base64 of float32 bytes."""
    raw = base64.b64decode(text, validate=True)  # binascii.Error is a ValueError
    if len(raw) % 4:
        raise ValueError(f"{len(raw)} bytes of base64 embedding are not float32 values")
    return np.frombuffer(raw, dtype="<f4").astype(np.float32, copy=False)


def encode_vector(v: npt.ArrayLike) -> dict[str, Any]:
    """The JSON-ready cache value of a vector."""
    a = as_vector(v)
    return {"f32": f32_base64(a), "dim": a.size}


def decode_vector(value: Any) -> Vector:
    """The vector in a cache value written by encode_vector, or by an earlier hitline that stored a plain
    list of numbers. Anything else raises InputError saying what is wrong with it."""
    if isinstance(value, list):  # written by hitline before compact vectors
        try:
            return as_vector(value)
        except (TypeError, ValueError) as e:
            raise InputError(f"a stored vector list is not a usable vector: {e}") from None
    if not isinstance(value, dict) or set(value) != {"f32", "dim"}:
        got = sorted(value) if isinstance(value, dict) else type(value).__name__
        raise InputError(f"a stored vector is {{'f32': base64, 'dim': n}} or a list of numbers, not {got}")
    dim, text = value["dim"], value["f32"]
    if type(dim) is not int or dim < 1:
        raise InputError(f"a stored vector's dim must be a positive integer, not {dim!r}")
    if not isinstance(text, str):
        raise InputError(f"a stored vector's f32 must be base64 text, not {type(text).__name__}")
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error as e:
        raise InputError(f"a stored vector's f32 is not valid base64: {e}") from None
    if len(raw) != 4 * dim:
        raise InputError(f"a stored vector's f32 holds {len(raw)} bytes, not the 4 x {dim} its dim says")
    try:
        return as_vector(np.frombuffer(raw, dtype="<f4").astype(np.float32, copy=False))
    except ValueError as e:
        raise InputError(f"a stored vector's f32 is not a usable vector: {e}") from None
