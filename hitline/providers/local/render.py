"""The offline renderer: cut the product out of its flat-lay and composite it, no model calls."""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Sequence

from PIL import Image

from hitline.domain.models import NewProduct, Preset, RenderedImage, StyleAnalysis
from hitline.domain.compose import compose_on_plate, compose_placed, scene_plate
from hitline.domain.imaging import cutout
from hitline.domain.placement import png_info
from hitline.domain.images import file_sha256, load_image

__all__ = ["LocalRenderer"]


class LocalRenderer:
    """ImageRenderer that composites locally; free and deterministic."""

    model = "local/compositor-v1"

    def __init__(self, cache_size: int = 16, png_compress_level: int = 3) -> None:
        self._cutouts: OrderedDict[str, Image.Image] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._compress = png_compress_level

    def _cutout(self, flatlay: Path) -> Image.Image:
        # one product is rendered for several presets in a row: cut it out once
        key = file_sha256(flatlay)
        with self._lock:
            if key in self._cutouts:
                self._cutouts.move_to_end(key)
                return self._cutouts[key]
        product = cutout(load_image(flatlay))
        with self._lock:
            self._cutouts[key] = product
            while len(self._cutouts) > self._cache_size:
                self._cutouts.popitem(last=False)
        return product

    def render(
        self, flatlay: Path, references: Sequence[Path], style: StyleAnalysis, product: NewProduct, preset: Preset
    ) -> RenderedImage:
        cut = self._cutout(Path(flatlay))
        reference = load_image(references[0]) if references else None
        image, placed = compose_placed(cut, reference, style, preset)
        buf = io.BytesIO()
        # where the product went travels in the PNG: the gate reads it instead of segmenting the output
        image.save(buf, format="PNG", compress_level=self._compress, pnginfo=png_info(placed))
        notes = [] if references else ["no reference image: backdrop built from the palette"]
        return RenderedImage(data=buf.getvalue(), mime="image/png", cost_usd=0.0, model=self.model, notes=notes)

    def render_plate(self, references: Sequence[Path], style: StyleAnalysis, preset: Preset) -> RenderedImage:
        """Staged mode: the scene plate alone (the backdrop from the first reference), no product."""
        reference = load_image(references[0]) if references else None
        buf = io.BytesIO()
        scene_plate(reference, style, preset).save(buf, format="PNG", compress_level=self._compress)
        return RenderedImage(data=buf.getvalue(), mime="image/png", cost_usd=0.0, model=self.model)

    def place(
        self, plate: Path, flatlay: Path, style: StyleAnalysis, product: NewProduct, preset: Preset
    ) -> RenderedImage:
        """Staged mode: the compositor puts the cut-out product into the plate."""
        image, placed = compose_on_plate(self._cutout(Path(flatlay)), load_image(plate), style, preset)
        buf = io.BytesIO()
        image.save(buf, format="PNG", compress_level=self._compress, pnginfo=png_info(placed))
        return RenderedImage(data=buf.getvalue(), mime="image/png", cost_usd=0.0, model=self.model)
