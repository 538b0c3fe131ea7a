"""The offline judge: the output gate of hitline.domain.quality, free and deterministic."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

from PIL import Image

from hitline.domain.cutout import product_mask
from hitline.domain.images import file_sha256, load_image, to_rgb
from hitline.domain.models import Preset
from hitline.domain.placement import read_placement
from hitline.domain.quality import TextFinder, find_text, gate, garment_colour, text_in_product
from hitline.errors import InputError
from hitline.providers.base import Judgement

__all__ = ["LocalJudge"]


class LocalJudge:
    """OutputJudge that measures: exact size, the preset's rules, colour and silhouette fidelity.

    What is the same for every output of one flat-lay is measured once (an LRU per flat-lay): its mask,
    its garment colour and, for a compositor's outputs (they carry where the product was placed), the
    text in the product - the compositor draws none, so text can only come with the cut-out."""

    model = "local/quality-gate-v1"

    def __init__(self, text_finder: TextFinder | None = find_text, cache_size: int = 16) -> None:
        self.text_finder = text_finder
        self._memo: OrderedDict[tuple[str, str], Any] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def _once(self, sha: str, what: str, make: Callable[[], Any]) -> Any:
        key = (sha, what)
        with self._lock:
            if key in self._memo:
                self._memo.move_to_end(key)
                return self._memo[key]
        value = make()
        with self._lock:
            self._memo[key] = value
            while len(self._memo) > 3 * self._cache_size:
                self._memo.popitem(last=False)
        return value

    def judge(self, flatlay: Path, output: Path, preset: Preset, timings: dict[str, float] | None = None) -> Judgement:
        sha = file_sha256(flatlay)
        flat = self._once(sha, "image", lambda: load_image(flatlay))  # four outputs, one flat-lay
        mask = self._once(sha, "mask", lambda: product_mask(flat))
        colour = self._once(sha, "colour", lambda: garment_colour(flat, mask)) if mask.any() else None
        try:
            with Image.open(output) as im:
                im.load()
                placed = read_placement(im)
                out = to_rgb(im)
        except (OSError, ValueError, SyntaxError) as exc:
            raise InputError(f"cannot read output {output}: {exc}") from None
        text = None
        if placed is not None and preset.rule("no_text") and self.text_finder is not None:
            finder = self.text_finder
            t0 = time.process_time()
            text = self._once(sha, "text", lambda: text_in_product(out, placed, finder))
            if timings is not None:
                timings["no_text"] = timings.get("no_text", 0.0) + time.process_time() - t0
        checks = gate(
            out,
            preset,
            flat,
            mask,
            text_finder=self.text_finder,
            placed=placed,
            text=text,
            flatlay_colour=colour,
            timings=timings,
        )
        return Judgement(checks=[c.to_dict() for c in checks], cost_usd=0.0, model=self.model)
