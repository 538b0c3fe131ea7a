"""The offline embedder: the hand-made descriptor of hitline.domain.descriptors, free and deterministic."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from hitline.domain.descriptors import DIM, describe
from hitline.domain.images import load_image
from hitline.providers.base import Embedding

__all__ = ["LocalEmbedder"]


class LocalEmbedder:
    """ImageEmbedder that runs describe() on each file: free, offline, ~10-30 ms per image."""

    model = "local/descriptor-v1"
    dim = DIM

    def embed_images(self, images: Sequence[Path]) -> Embedding:
        vectors = [describe(load_image(path)) for path in images]
        return Embedding(vectors=vectors, cost_usd=0.0)
