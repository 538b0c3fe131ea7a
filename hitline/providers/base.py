"""One protocol per capability. Stages receive providers; they never build them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, Sequence, runtime_checkable

from hitline.domain.models import NewProduct, Preset, RenderedImage, StyleAnalysis

__all__ = ["Embedding", "Analysis", "ImageEmbedder", "StyleAnalyzer", "ImageRenderer"]


@dataclass
class Embedding:
    vectors: list[list[float]]  # one L2-normalised vector per input image, same order
    cost_usd: float = 0.0


@dataclass
class Analysis:
    style: StyleAnalysis
    cost_usd: float = 0.0
    raw: str = ""  # the provider's raw answer, kept for the record
    warnings: list[str] = field(default_factory=list)


@runtime_checkable
class ImageEmbedder(Protocol):
    model: str
    dim: int

    def embed_images(self, images: Sequence[Path]) -> Embedding: ...


@runtime_checkable
class StyleAnalyzer(Protocol):
    model: str

    def analyze(self, references: Sequence[Path], product: NewProduct) -> Analysis: ...


@runtime_checkable
class ImageRenderer(Protocol):
    model: str

    def render(self, flatlay: Path, references: Sequence[Path], style: StyleAnalysis,
               product: NewProduct, preset: Preset) -> RenderedImage: ...
