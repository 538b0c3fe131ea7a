"""The offline judge: the output gate of hitline.domain.quality, free and deterministic."""

from __future__ import annotations

from pathlib import Path

from hitline.domain.cutout import product_mask
from hitline.domain.images import load_image
from hitline.domain.models import Preset
from hitline.domain.quality import TextFinder, find_text, gate
from hitline.providers.base import Judgement

__all__ = ["LocalJudge"]


class LocalJudge:
    """OutputJudge that measures: exact size, the preset's rules, colour and silhouette fidelity."""

    model = "local/quality-gate-v1"

    def __init__(self, text_finder: TextFinder | None = find_text) -> None:
        self.text_finder = text_finder

    def judge(self, flatlay: Path, output: Path, preset: Preset) -> Judgement:
        flat = load_image(flatlay)
        checks = gate(load_image(output), preset, flat, product_mask(flat), text_finder=self.text_finder)
        return Judgement(checks=[c.to_dict() for c in checks], cost_usd=0.0, model=self.model)
