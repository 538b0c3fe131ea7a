"""One protocol per capability. Stages receive providers; they never build them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Sequence, runtime_checkable

from hitline.domain.models import NewProduct, Preset, RenderedImage, StyleAnalysis
from hitline.domain.vectors import Vector

__all__ = [
    "Embedding",
    "Analysis",
    "Judgement",
    "ImageEmbedder",
    "StyleAnalyzer",
    "ImageRenderer",
    "StagedRenderer",
    "OutputJudge",
]


@dataclass
class Embedding:
    vectors: list[Vector]  # one L2-normalised float32 vector per input image, same order
    cost_usd: float = 0.0


@dataclass
class Analysis:
    style: StyleAnalysis
    cost_usd: float = 0.0
    raw: str = ""  # the provider's raw answer, kept for the record
    warnings: list[str] = field(default_factory=list)


@dataclass
class Judgement:
    """A judge's verdict on one output: per-check results (hitline.domain.quality.Check as dicts)."""

    checks: list[dict[str, Any]]
    cost_usd: float = 0.0
    model: str = ""
    raw: str = ""  # the judge's raw answer, kept for the record
    # False when the judge gave no valid verdict (unparseable answer): not a finding about the picture
    verdict: bool = True

    @property
    def passed(self) -> bool:
        return all(c["passed"] for c in self.checks)

    @property
    def reasons(self) -> list[str]:
        return [c["message"] for c in self.checks if not c["passed"]]


@runtime_checkable
class ImageEmbedder(Protocol):
    """`checks_images` (optional, default False): embed_images decodes every image before sending it and
    raises InputError for a corrupt or truncated one, so the line does not decode it first."""

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

    def render(
        self, flatlay: Path, references: Sequence[Path], style: StyleAnalysis, product: NewProduct, preset: Preset
    ) -> RenderedImage: ...


@runtime_checkable
class StagedRenderer(ImageRenderer, Protocol):
    """A renderer that can also work in two steps (staged mode, hitline.domain.staged): the scene plate
    from the references alone, then the product placed into it."""

    def render_plate(self, references: Sequence[Path], style: StyleAnalysis, preset: Preset) -> RenderedImage: ...

    def place(
        self, plate: Path, flatlay: Path, style: StyleAnalysis, product: NewProduct, preset: Preset
    ) -> RenderedImage: ...


@runtime_checkable
class OutputJudge(Protocol):
    """Looks at one rendered output next to its flat-lay and says what is wrong with it."""

    model: str

    def judge(self, flatlay: Path, output: Path, preset: Preset) -> Judgement: ...
