"""A batch's options as a typed model: what `batch_options` records on the batch row at submission and
what every worker reads back. The presets are recorded resolved (sizes, background, rules), as the batch
was checked against them: a worker renders those, not its own HITLINE_PRESETS_FILE.

Extra keys are kept (options added by later versions or other features); batches submitted before the
presets were recorded (no `preset_specs`) fall back to the worker's presets file, as they did."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from hitline.domain.models import Preset

__all__ = ["PresetSpec", "TextOptions", "CatalogPin", "BatchOptions"]


class PresetSpec(BaseModel):
    """One preset as resolved at submission (hitline.domain.models.Preset)."""

    model_config = ConfigDict(extra="allow")

    name: str
    aspect_ratio: str
    size: str
    width: int
    height: int
    background: str = "scene"
    low_res: str = "downsize"
    rules: dict[str, JsonValue] = Field(default_factory=dict)
    # the text slots (presets.toml [NAME.text.SLOT]): slot -> box, max_chars, min_px, max_lines
    text: dict[str, dict[str, JsonValue]] = Field(default_factory=dict)

    @classmethod
    def of(cls, p: Preset) -> PresetSpec:
        return cls(
            name=p.name,
            aspect_ratio=p.aspect_ratio,
            size=p.size,
            width=p.width,
            height=p.height,
            background=p.background,
            low_res=p.low_res,
            rules=dict(p.rules),
            text={
                s.name: {"box": list(s.box), "max_chars": s.max_chars, "min_px": s.min_px, "max_lines": s.max_lines}
                for s in p.slots
            },
        )

    def preset(self) -> Preset:
        return Preset.build(
            self.name,
            self.aspect_ratio,
            self.size,
            self.background,
            width=self.width,
            height=self.height,
            low_res=self.low_res,
            rules=dict(self.rules),
            text=self.text or None,
        )


class TextOptions(BaseModel):
    """The batch's words (hitline/jobs/localise.py): locales (the first is the CSV headline's), overlay or
    model, what to do with a missing translation."""

    model_config = ConfigDict(extra="allow")

    locales: list[str] = Field(default_factory=list)
    mode: str = "overlay"
    missing_translation: str = "refuse"


class CatalogPin(BaseModel):
    """The catalog version a batch retrieves from, pinned at submission."""

    model_config = ConfigDict(extra="allow")

    id: str
    seq: int
    version_id: int | None = None


class BatchOptions(BaseModel):
    """Read once from the batch row (`read`), then passed typed to the runtime, providers and stages."""

    model_config = ConfigDict(extra="allow")

    provider: str = "local"
    top_k: int = 3
    min_sales: int = 0
    presets: list[str] = Field(default_factory=list)
    preset_specs: list[PresetSpec] | None = Field(None, description="the presets resolved at submission")
    models: dict[str, str] = Field(default_factory=dict)
    review: str | None = None  # "all": every output waits for a person; "gate"/None: the quality gate's
    draft: str | None = None  # "512px" | "1K": drafts first, finals on approval
    escalate: str | None = None  # "pro" | "none"
    mode: str | None = None  # "direct" | "staged"
    text: TextOptions | None = None
    catalog: CatalogPin | None = None

    @classmethod
    def of(cls, options: Mapping[str, object]) -> BatchOptions:
        return cls.model_validate(options)

    @classmethod
    def read(cls, raw: object) -> BatchOptions:
        """The tolerant reader for a batch row's JSON: rows written by any earlier version read (missing
        keys take the defaults above, unknown keys are kept; a NULL column reads as the defaults)."""
        if isinstance(raw, cls):
            return raw
        if raw is None:
            return cls()
        if not isinstance(raw, Mapping):
            raise TypeError(f"batch options are a JSON object, not {type(raw).__name__}")
        return cls.model_validate(raw)

    def locales(self) -> TextOptions | None:
        """The batch's text options, None when it names no locales (no words on any picture)."""
        return self.text if self.text is not None and self.text.locales else None

    def resolved_presets(self) -> list[Preset] | None:
        """The presets the batch was checked against; None for a batch that did not record them."""
        return [s.preset() for s in self.preset_specs] if self.preset_specs is not None else None
