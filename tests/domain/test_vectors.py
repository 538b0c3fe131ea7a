"""hitline/domain/vectors.py: the cache's compact float32 form, the plain lists of earlier versions,
and a clear error for anything else."""

from __future__ import annotations

import base64
import json
import struct

import numpy as np
import pytest

from hitline.domain.vectors import as_vector, decode_vector, encode_vector
from hitline.errors import InputError


def _unit(dim: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(dim)
    return v / np.linalg.norm(v)  # float64, as a provider's JSON answer is parsed


def _through_json(value: object) -> object:
    return json.loads(json.dumps(value))  # what the job table's JSON column does to a value


@pytest.mark.parametrize("dim", [1, 272, 2048])
def test_round_trip_keeps_every_float32_value_and_the_dim(dim: int) -> None:
    v = _unit(dim)
    stored = _through_json(encode_vector(v))
    assert stored["dim"] == dim and len(json.dumps(stored)) < 6 * dim + 40  # ~5.3 bytes a value, not ~22
    back = decode_vector(stored)
    assert back.dtype == np.float32 and back.shape == (dim,)
    assert np.array_equal(back, v.astype(np.float32))


def test_milvus_is_sent_the_same_floats_as_before() -> None:
    """FLOAT_VECTOR is float32: pymilvus packs a query's floats with struct 'f' (and an upsert into a
    protobuf float field). The old cache's float64 list and the compact value give the same bytes."""
    old = [float(x) for x in _unit(2048, seed=3)]
    packed_before = struct.pack(f"{len(old)}f", *old)
    assert decode_vector(_through_json(encode_vector(old))).tobytes() == packed_before
    assert struct.pack(f"{len(old)}f", *as_vector(old).tolist()) == packed_before


def test_a_plain_list_from_an_earlier_version_is_still_read() -> None:
    old = _through_json([float(x) for x in _unit(2048, seed=1)])
    back = decode_vector(old)
    assert back.dtype == np.float32 and back.shape == (2048,)
    assert np.array_equal(back, np.asarray(old, dtype=np.float32))


def _f32(values: list[float]) -> str:
    return base64.b64encode(np.asarray(values, dtype="<f4").tobytes()).decode()


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ({"f32": _f32([1.0, 2.0, 3.0]), "dim": 4}, r"holds 12 bytes, not the 4 x 4"),
        ({"f32": _f32([1.0, 2.0])[:-1], "dim": 2}, r"not valid base64"),
        ({"f32": "AAAAAA*=", "dim": 2}, r"not valid base64"),
        ({"f32": _f32([1.0]), "dim": "1"}, r"dim must be a positive integer, not '1'"),
        ({"f32": _f32([1.0]), "dim": True}, r"dim must be a positive integer"),
        ({"f32": "", "dim": 0}, r"dim must be a positive integer, not 0"),
        ({"f32": [1.0], "dim": 1}, r"f32 must be base64 text, not list"),
        ({"f32": _f32([1.0])}, r"not \['f32'\]"),
        ({"f16": _f32([1.0]), "dim": 1}, r"not \['dim', 'f16'\]"),
        ("0.5,0.5", r"or a list of numbers, not str"),
        (0.5, r"or a list of numbers, not float"),
        (["a", "b"], r"list is not a usable vector"),
        ([[1.0, 2.0], [3.0]], r"list is not a usable vector"),
        ([[1.0, 2.0], [3.0, 4.0]], r"list is not a usable vector: .*shape \(2, 2\)"),
        ([None, 1.0], r"list is not a usable vector: .*finite, not nan"),
        ({"f32": _f32([1.0, float("inf")]), "dim": 2}, r"not a usable vector: .*finite, not inf"),
        ([], r"list is not a usable vector: .*shape \(0,\)"),
    ],
)
def test_a_malformed_value_is_a_clear_input_error(value: object, says: str) -> None:
    with pytest.raises(InputError, match=says):
        decode_vector(value)
