"""Which presets to render and which to derive: presets that share an aspect ratio are rendered once,
at the largest size among them, and the others are resized from that image (a 512 px thumbnail
from the 2K main image costs nothing). Pure: prices come in as a function."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

from PIL import Image, ImageOps

from hitline.domain.models import IMAGE_SIZES, Preset

__all__ = ["RenderPlan", "plan_renders", "derive"]


@dataclass(frozen=True)
class RenderPlan:
    """`renders` are paid model calls; `derived` maps a preset name to the rendered preset it is
    resized from. Costs are per SKU in USD."""

    renders: list[Preset]
    derived: dict[str, str] = field(default_factory=dict)
    cost_usd: float = 0.0
    naive_cost_usd: float = 0.0  # every preset rendered on its own, as before the plan

    @property
    def saving_usd(self) -> float:
        return round(self.naive_cost_usd - self.cost_usd, 6)

    def summary(self) -> dict[str, object]:
        return {
            "renders": [p.name for p in self.renders],
            "derived": dict(self.derived),
            "cost_usd": round(self.cost_usd, 6),
            "naive_cost_usd": round(self.naive_cost_usd, 6),
            "saving_usd": self.saving_usd,
        }


def _pixels(p: Preset) -> int:
    return p.width * p.height


def _derivable(target: Preset, source: Preset) -> bool:
    """A scene preset may be resized from any render of its ratio (a thumbnail from the white main
    image); a white-background preset only from a white render (a resized scene is never pure white)."""
    return target.background != "white" or source.background == "white"


def plan_renders(presets: Sequence[Preset], image_cost: Callable[[str], float]) -> RenderPlan:
    """Group presets by aspect ratio; within a group, the largest is rendered (on a tie, the one whose
    background is white, since a white main image is the stricter render) and the others are derived
    from the largest render they can be derived from (see _derivable), else rendered too."""
    groups: dict[str, list[Preset]] = {}
    for p in presets:
        groups.setdefault(p.aspect_ratio, []).append(p)
    renders: list[Preset] = []
    derived: dict[str, str] = {}
    for members in groups.values():
        sources: list[Preset] = []
        for p in sorted(
            members, key=lambda p: (_pixels(p), IMAGE_SIZES[p.size], p.background == "white"), reverse=True
        ):
            source = next((s for s in sources if _derivable(p, s)), None)
            if source is None:
                sources.append(p)
            else:
                derived[p.name] = source.name
        renders += sources
    naive = sum(image_cost(p.size) for p in presets)
    cost = sum(image_cost(p.size) for p in renders)
    order = {p.name: i for i, p in enumerate(presets)}
    renders.sort(key=lambda p: order[p.name])
    return RenderPlan(renders=renders, derived=derived, cost_usd=cost, naive_cost_usd=naive)


def derive(image: Image.Image, target: Preset) -> Image.Image:
    """The rendered image resized to the target preset's exact pixels (same ratio: a plain resize;
    pinned sizes that differ by a pixel are cover-fitted)."""
    return ImageOps.fit(image.convert("RGB"), (target.width, target.height), Image.Resampling.LANCZOS)
