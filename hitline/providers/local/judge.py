"""The offline judge: the output gate of hitline.domain.quality, free and deterministic."""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
from PIL import Image

from hitline.domain.cutout import product_mask
from hitline.domain.images import file_sha256, load_image
from hitline.domain.models import Preset
from hitline.domain.quality import TextFinder, find_text, gate
from hitline.providers.base import Judgement

__all__ = ["LocalJudge"]


class LocalJudge:
    """OutputJudge that measures: exact size, the preset's rules, colour and silhouette fidelity."""

    model = "local/quality-gate-v1"

    def __init__(self, text_finder: TextFinder | None = find_text, cache_size: int = 16) -> None:
        self.text_finder = text_finder
        self._masks: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def _mask(self, flatlay: Path, flat: Image.Image) -> np.ndarray:
        # every preset of a SKU is judged against the same flat-lay: cut it out once
        key = file_sha256(flatlay)
        with self._lock:
            if key in self._masks:
                self._masks.move_to_end(key)
                return self._masks[key]
        mask = product_mask(flat)
        with self._lock:
            self._masks[key] = mask
            while len(self._masks) > self._cache_size:
                self._masks.popitem(last=False)
        return mask

    def judge(self, flatlay: Path, output: Path, preset: Preset) -> Judgement:
        flat = load_image(flatlay)
        checks = gate(load_image(output), preset, flat, self._mask(Path(flatlay), flat), text_finder=self.text_finder)
        return Judgement(checks=[c.to_dict() for c in checks], cost_usd=0.0, model=self.model)
