"""What each stage hands the next and everything that reports on it: one pydantic model per stage result,
declared on the stage registry (`Stage(..., result=RenderResult)`), validated by the runner when the
result is written and read back through `read()`. The API's response models reuse them.

Every model allows extra keys and gives its later fields defaults: a result written by an older version
(a row already in the job table) still reads, and a field added later does not break what is stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from hitline.domain.models import StyleAnalysis

if TYPE_CHECKING:
    from db.models import Job

__all__ = [
    "StageResult",
    "EmbedResult",
    "IndexResult",
    "CatalogIndexResult",
    "RetrievedHit",
    "RetrieveResult",
    "AnalyzeResult",
    "CheckRecord",
    "InputRecord",
    "Escalation",
    "OutputQuality",
    "RenderOutput",
    "RenderPlan",
    "DigestInputs",
    "DigestPlan",
    "TextSaving",
    "DigestText",
    "Digest",
    "RenderResult",
    "InputFindings",
    "RenderFacts",
    "InputCheckCounts",
    "PlanSaving",
    "DraftSummary",
    "BatchQuality",
    "read",
    "R",
]


class _Open(BaseModel):
    """Extensible: keys this version does not know are kept (written by a newer one, or added by a gate)."""

    model_config = ConfigDict(extra="allow")


class StageResult(_Open):
    """The base of every stage's result."""


class EmbedResult(StageResult):
    key: str = Field(description="cache key of the dense vector")
    cost_usd: float = 0.0


class CatalogIndexResult(StageResult):
    collection: str


class IndexResult(StageResult):
    """A SKU's index stage: the catalog version it is searched against is indexed and flushed."""

    collection: str
    catalog_rows: int | None = None
    catalog: str | None = None  # the catalog's id (hitline/jobs/catalogs.py)
    catalog_version: int | None = None  # the version the batch pinned


class RetrievedHit(_Open):
    product_id: str
    score: float
    image_path: str
    category: str = ""
    sales_count: int = 0
    description: str = ""
    found_by: list[str] = Field(default_factory=list)
    dense_rank: int | None = None
    sparse_rank: int | None = None


class RetrieveResult(StageResult):
    filter: str | None = None
    fallback: str | None = None
    notes: list[str] = Field(default_factory=list)
    hits: list[RetrievedHit] = Field(default_factory=list)
    catalog: dict[str, Any] | None = None  # {"id", "version"}: where every hit comes from


class AnalyzeResult(StageResult):
    style: StyleAnalysis
    cached: bool = False
    cost_usd: float = 0.0


class CheckRecord(_Open):
    """One input or output check (hitline.domain.quality.Check as stored)."""

    name: str
    passed: bool
    measured: JsonValue = None
    threshold: JsonValue = None
    message: str = ""
    action: str = ""


class InputRecord(_Open):
    """The input checks of one flat-lay: per preset its checks, the presets failed or downsized."""

    checks: dict[str, list[CheckRecord]] = Field(default_factory=dict)
    failed_presets: dict[str, str] = Field(default_factory=dict)
    downsized: dict[str, str] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)


class Escalation(_Open):
    """A failed output judged again by a stronger judge (hitline.jobs.quality)."""

    model: str = ""
    cost_usd: float = 0.0
    passed: bool | None = None
    skipped: str | None = None


class OutputQuality(_Open):
    """The gate's verdict on one output (hitline.jobs.quality.gate_output)."""

    status: str
    checks: list[CheckRecord] = Field(default_factory=list)
    reasons: list[str] = Field(default_factory=list)
    judge: str | None = None
    rerender: str | None = None
    escalated: Escalation | None = None


class OutputWords(_Open):
    """The words on one output (hitline/jobs/localise.py): what was asked, what OCR read back."""

    mode: str
    locale: str
    texts: dict[str, str] = Field(default_factory=dict)
    machine_translated: bool = False
    status: str = "unchecked"  # verified | misread | unverified | unchecked
    readings: list[dict[str, JsonValue]] = Field(default_factory=list)
    reasons: list[str] = Field(default_factory=list)
    cer: float | None = None


class RenderOutput(_Open):
    preset: str
    locale: str | None = None  # the locale of its words; None: a text-free preset, one output for all locales
    text: OutputWords | None = None
    path: str
    width: int
    height: int
    cost_usd: float = 0.0
    key: str = ""
    reused_from: str | None = None
    derived_from: str | None = None
    plate: str | None = None  # staged mode: the content key of the scene plate the product was placed into
    quality: OutputQuality | None = None


class RenderPlan(_Open):
    """hitline.domain.render_plan.RenderPlan.summary()."""

    renders: list[str] = Field(default_factory=list)
    derived: dict[str, str] = Field(default_factory=dict)
    cost_usd: float = 0.0
    naive_cost_usd: float = 0.0
    saving_usd: float = 0.0


class DigestInputs(_Open):
    downsized: dict[str, str] = Field(default_factory=dict)
    failed: list[str] = Field(default_factory=list)
    background: list[str] = Field(default_factory=list)
    touches_frame: bool = False


class DigestPlan(_Open):
    renders: int = 0
    derived: int = 0
    naive_usd: float = 0.0
    cost_usd: float = 0.0


class TextSaving(_Open):
    """What one SKU's words in 5 locales cost with the model writing them vs hitline's overlay
    (hitline.jobs.localise.saving_for_locales)."""

    model_usd: float = 0.0
    overlay_usd: float = 0.0
    saving_usd: float = 0.0


class DigestText(_Open):
    """One SKU's words on the pictures, counted (hitline.jobs.quality._text_digest)."""

    mode: str | None = None
    locales: int = 0
    refused: int = 0
    machine_translated: int = 0
    saving: TextSaving = Field(default_factory=TextSaving)


class Digest(_Open):
    """One SKU's render in a few low-cardinality fields, which the batch summary counts in SQL."""

    inputs: DigestInputs = Field(default_factory=DigestInputs)
    gate: dict[str, int] = Field(default_factory=dict)
    plan: DigestPlan = Field(default_factory=DigestPlan)
    text: DigestText | None = None


class RenderResult(StageResult):
    outputs: list[RenderOutput] = Field(default_factory=list)
    plan: RenderPlan | None = None
    inputs: InputRecord | None = None
    digest: Digest | None = None
    text: dict[str, JsonValue] | None = None  # locales, mode, each locale's copy, refused (preset, locale), saving


# --- what the status, the API and the report show of rendered SKUs ---------------------------------


class InputFindings(_Open):
    """One SKU's input-check findings, with their messages."""

    downsized: dict[str, str] = Field(
        default_factory=dict, description="preset -> the smaller size class it was rendered at"
    )
    failed: dict[str, str] = Field(
        default_factory=dict, description="preset -> why it failed (flat-lay too small, low_res = fail)"
    )
    background: list[str] = Field(
        default_factory=list, description="white-background presets whose flat-lay is not on white"
    )
    touches_frame: bool = False
    warnings: list[str] = Field(default_factory=list)


class RenderFacts(_Open):
    """One SKU's input checks, gate outcomes and render plan (hitline.jobs.control.render_facts)."""

    input_checks: InputFindings
    gate: dict[str, int] = Field(default_factory=dict, description="this SKU's outputs per gate outcome")
    render_plan: RenderPlan | None = None


class InputCheckCounts(_Open):
    low_res: int = Field(0, description="SKUs whose flat-lay was too small for a preset (downsized or failed)")
    downsized: dict[str, dict[str, int]] = Field(
        default_factory=dict, description="preset -> size class rendered instead -> SKUs"
    )
    failed: dict[str, int] = Field(default_factory=dict, description="preset -> SKUs where it failed (low_res = fail)")
    background: int = Field(0, description="SKUs on a non-white flat-lay with a white-background preset")
    background_presets: dict[str, int] = Field(default_factory=dict, description="white-background preset -> SKUs")
    touches_frame: int = Field(0, description="SKUs whose garment touches the photo's edge")


class PlanSaving(_Open):
    skus: int = Field(0, description="SKUs rendered under the render plan")
    renders: int = Field(0, description="paid render calls the plan made (re-renders not counted)")
    derived: int = Field(0, description="outputs resized from a larger render of the same aspect ratio")
    naive_usd: float = Field(0.0, description="list price of rendering every preset on its own")
    cost_usd: float = Field(0.0, description="list price of the plan's renders")
    saving_usd: float = 0.0
    paid_usd: float = Field(0.0, description="what the batch's render calls were charged, re-renders included")


class DraftSummary(_Open):
    """What drafting saved (hitline.jobs.review.draft_summary): drafts, finals rendered for approved drafts,
    rejected drafts and the finals not paid for them (list price)."""

    draft_size: str = ""
    drafts: int = 0
    finals: int = 0
    rejected: int = 0
    waiting: int = 0
    draft_usd: float = 0.0
    final_usd: float = 0.0
    finals_not_paid_usd: float = 0.0


class BatchQuality(_Open):
    """What a batch's rendered SKUs add up to (hitline.jobs.control.quality_summary)."""

    input_checks: InputCheckCounts = Field(default_factory=InputCheckCounts)
    gate: dict[str, int] = Field(
        default_factory=dict, description="outputs per gate outcome: passed, passed_after_rerender, needs_review"
    )
    render_plan: PlanSaving = Field(default_factory=PlanSaving)
    drafts: DraftSummary | None = Field(
        None,
        description="a draft batch: drafts, finals rendered for approved "
        "drafts, rejected drafts and the finals not paid for them (list price)",
    )
    text: dict[str, JsonValue] | None = Field(
        None,
        description="words on the pictures: mode, refused (preset, locale) "
        "outputs, machine-translated locales, and per SKU what 5 locales cost "
        "with the model writing the words vs hitline's overlay",
    )


R = TypeVar("R", bound=StageResult)


def read(job: Job | Mapping[str, object] | None, model: type[R]) -> R | None:
    """The result of the stage that declares `model` on the registry, from a job (or its `result`
    column); None while that stage has not run. The one way results are read."""
    from hitline.jobs.stages import result_stage

    stored = job if isinstance(job, Mapping) or job is None else job.result
    raw = (stored or {}).get(result_stage(model))
    return model.model_validate(raw) if raw else None
