"""hitline/line.py: embed_images and cached_vector over a plain dict cache (the job table's cache in
tests/jobs), the compact vector form written, old lists read, bad entries named."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from hitline import line
from hitline.errors import InputError
from hitline.providers.base import Embedding


class JsonCache:
    """line.Cache keeping values as JSON text, as the job table's JSON column does."""

    def __init__(self) -> None:
        self.text: dict[str, str] = {}

    def get(self, key: str) -> Any | None:
        return json.loads(self.text[key]) if key in self.text else None

    def put(self, key: str, value: Any) -> None:
        self.text[key] = json.dumps(value)


class CountingEmbedder:
    model, dim = "test/float64", 2048

    def __init__(self) -> None:
        self.calls = 0

    def embed_images(self, images: list[Path]) -> Embedding:
        self.calls += 1
        rng = np.random.default_rng(len(images))
        rows = rng.standard_normal((len(images), self.dim))
        return Embedding(vectors=list(rows / np.linalg.norm(rows, axis=1, keepdims=True)))


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    p = tmp_path / "a.png"
    Image.new("RGB", (64, 64), "red").save(p)
    return p


def test_a_new_vector_is_stored_compact_and_read_back_as_it_was_returned(photo: Path) -> None:
    cache, embedder = JsonCache(), CountingEmbedder()
    (fresh,), _ = line.embed_images(embedder, [photo], cache, ["sha-a"])
    key = line.embed_key(embedder.model, "sha-a")
    stored = json.loads(cache.text[key])
    assert set(stored) == {"f32", "dim"} and stored["dim"] == 2048
    (cached,), cost = line.embed_images(embedder, [photo], cache, ["sha-a"])
    assert embedder.calls == 1 and cost == 0.0
    assert fresh.dtype == cached.dtype == np.float32 and np.array_equal(fresh, cached)  # same with or without a hit


def test_a_list_written_by_an_earlier_version_is_a_cache_hit(photo: Path) -> None:
    cache, embedder = JsonCache(), CountingEmbedder()
    old = [float(x) for x in np.linspace(-1, 1, 2048)]
    cache.put(line.embed_key(embedder.model, "sha-a"), old)
    (v,), cost = line.embed_images(embedder, [photo], cache, ["sha-a"])
    assert embedder.calls == 0 and cost == 0.0
    assert np.array_equal(v, np.asarray(old, dtype=np.float32))


def test_a_bad_cache_entry_is_an_input_error_naming_its_key(photo: Path) -> None:
    cache, embedder = JsonCache(), CountingEmbedder()
    key = line.embed_key(embedder.model, "sha-a")
    cache.put(key, {"f32": "AAAA", "dim": 2048})  # cut short
    with pytest.raises(InputError, match=f"cache entry '{key}' is not a usable vector: .* holds 3 bytes"):
        line.cached_vector(cache, key)
    with pytest.raises(InputError, match="not a usable vector"):
        line.embed_images(embedder, [photo], cache, ["sha-a"])
    assert embedder.calls == 0
    assert line.cached_vector(cache, "emb:none") is None
