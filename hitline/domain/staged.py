"""Staged generation's prompts (`hitline run --mode staged`): a scene plate from the references, made once
per (references, ratio group) in a batch, then the product placed into it."""

from __future__ import annotations

from hitline.domain.models import Preset, StyleAnalysis

__all__ = ["STAGED_REFINEMENTS", "plate_prompt"]

# the tutorial's refinements, carried by every staged prompt (plate and placement)
STAGED_REFINEMENTS = (
    "The garment fits the body naturally, not pasted on. No labels or tags showing. "
    "No extra elements: only the garment and the scene."
)


def plate_prompt(style: StyleAnalysis, preset: Preset) -> str:
    """The scene plate's prompt: the references' scene, light and mood, no product (staged mode)."""
    return (
        f"Background scene plate for a fashion product photo: {style.scene}, {style.lighting}, {style.mood} mood. "
        f"Aspect ratio {preset.aspect_ratio}. Leave the centre free for the garment; no products, no text, "
        f"no logos. {STAGED_REFINEMENTS}"
    )
