"""Response models of the HTTP API (requests are hitline.jobs.requests, shared with the Celery contract)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

# the job layer's models, reused as they are: what a stage writes is what the API shows
from hitline.domain.models import StyleAnalysis
from hitline.jobs.requests import MAX_PATH, Text
from hitline.jobs.results import BatchQuality, CheckRecord, InputFindings, RenderPlan


class ErrorBody(BaseModel):
    status: int
    message: str


class Error(BaseModel):
    error: ErrorBody


class Failure(BaseModel):
    reason: str = Field(
        description="the group: the reason with row numbers and file names as <n>, <file> "
        '(retry it with {"reason_group": ...})'
    )
    example: str = Field(description="one of the group's reasons as recorded")
    stage: str
    kind: str
    count: int
    retryable: bool = Field(description="false for rows rejected at validation: fix the CSV and resubmit")


class Progress(BaseModel):
    total: int = Field(description="new SKUs in the batch")
    finished: int = Field(description="SKUs no longer queued or running (done, failed, held, cancelled)")
    done: int
    failed: int
    open: int = Field(description="jobs of any kind still pending, running or retrying")


class Batch(BaseModel):
    id: str
    created_at: datetime
    cancelled: bool
    status: str = Field(description="running | finished | cancelled")
    options: dict[str, Any]
    budget_usd: float | None
    spent_usd: float
    progress: Progress
    counts: dict[str, dict[str, int]] = Field(description="kind (sku, hit) -> state -> jobs")
    stages: dict[str, dict[str, dict[str, int]]] = Field(description="kind -> stage -> state -> jobs")
    failures: list[Failure] = Field(description="failed jobs grouped by reason, largest group first")
    quality: BatchQuality = Field(description="input checks, quality gate and render plan over the rendered SKUs")
    links: dict[str, str]


class BatchList(BaseModel):
    batches: list[Batch]
    next_cursor: str | None


class Submitted(BaseModel):
    batch_id: str
    catalog_products: int
    new_skus: int
    rejected_rows: int
    existing: bool = Field(
        False,
        description="true when an earlier request with the same Idempotency-Key "
        "created this batch (status 200 instead of 201)",
    )
    links: dict[str, str]


class AttemptOut(BaseModel):
    stage: str
    started_at: datetime
    seconds: float | None
    outcome: str
    error: str | None


class OutputQuality(BaseModel):
    status: str = Field(description="passed | passed_after_rerender | needs_review")
    reasons: list[str] = Field(default_factory=list, description="why it needs review")
    rerender: str | None = Field(None, description="why a re-render was skipped")


class OutputText(BaseModel):
    """The words on one output (a batch that names locales; hitline/jobs/localise.py)."""

    mode: str = Field(description="overlay (hitline typeset them) | model (the image model wrote them)")
    texts: dict[str, str] = Field(description="slot -> the exact string asked for")
    machine_translated: bool = Field(description="the headline was translated by the analysis model, not the merchant")
    status: str = Field(
        description="verified (OCR read it back exactly) | misread | unverified (a script the "
        "bundled OCR cannot read) | unchecked (gate off)"
    )
    cer: float | None = Field(None, description="worst character error rate of the OCR read-back over the slots")
    readings: list[dict[str, Any]] = Field(default_factory=list, description="per slot: asked, read, cer")


class Output(BaseModel):
    preset: str
    locale: str | None = Field(None, description="the locale of its words; null for a text-free preset (one for all)")
    text: OutputText | None = None
    width: int
    height: int
    cost_usd: float = Field(description="0 for an output resized from another (derived_from) or reused")
    url: str
    derived_from: str | None = Field(None, description="the preset whose render this output was resized from")
    reused_from: str | None = Field(None, description="the identical image paid for by another SKU of the batch")
    quality: OutputQuality | None = Field(None, description="the gate's verdict (null with the gate off)")


class InputChecks(InputFindings):
    checks: dict[str, list[CheckRecord]] = Field(description="preset -> every input check with what it measured")


class HitOut(BaseModel):
    product_id: str
    score: float
    found_by: list[str]
    sales_count: int
    description: str
    image_url: str


class JobRow(BaseModel):
    id: int
    batch_id: str
    kind: str
    item_id: str
    stage: str
    state: str
    attempts: int
    reason: str | None
    cost_usd: float
    updated_at: datetime | None
    url: str


class JobPage(BaseModel):
    jobs: list[JobRow]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null on the last page")


class JobDetail(JobRow):
    row: dict[str, Any]
    history: list[AttemptOut]
    outputs: list[Output]
    contact_sheet_url: str | None
    flatlay_url: str | None
    hits: list[HitOut]
    retrieval_filter: str | None
    style: StyleAnalysis | None
    input_checks: InputChecks | None = Field(description="the flat-lay checked against every preset")
    gate: dict[str, int] = Field(description="this SKU's outputs per gate outcome")
    render_plan: RenderPlan | None


class Enqueued(BaseModel):
    batch_id: str
    jobs: int = Field(description="jobs put back in the queue / stopped")
    message: str


class ReviewDecisionOut(BaseModel):
    take: int
    decision: str
    note: str | None
    by: str
    at: str | None


class OutputRow(BaseModel):
    id: int
    job_id: int
    sku: str
    preset: str
    take: int
    review: str = Field(description="none | pending | approved | rejected | redo")
    gate: str = Field(description="passed | passed_after_rerender | needs_review | unchecked")
    reasons: list[str]
    note: str | None
    reviewed_by: str | None
    reviewed_at: datetime | None
    cost_usd: float
    error: str | None = Field(None, description="why the last redo made no new take")
    url: str | None
    flatlay_url: str
    decisions: list[ReviewDecisionOut] = Field(default_factory=list)


class OutputPage(BaseModel):
    outputs: list[OutputRow]
    counts: dict[str, int] = Field(description="the batch's outputs per review state")
    next_cursor: str | None


class Reviewed(BaseModel):
    batch_id: str
    decision: str
    changed: list[int]
    skipped: int
    message: str


class WebhookOut(BaseModel):
    id: int
    url: str
    batch_id: str | None
    events: list[str]
    secret: str | None = Field(None, description="the signing secret (whsec_...): shown only when registered")


class DeliveryOut(BaseModel):
    id: int
    event_id: str
    type: str
    batch_id: str
    url: str
    state: str = Field(description="pending | delivered | dead")
    attempts: int
    last_error: str | None
    next_at: datetime | None
    delivered_at: datetime | None


class CatalogRequest(BaseModel):
    folder: Text = Field(
        min_length=1, max_length=MAX_PATH, description="folder on shared storage with products.csv and the images"
    )
    name: Text | None = Field(
        None,
        max_length=128,
        description="catalog name (default: the folder's name); an existing name gets a new version",
    )


class CatalogVersionOut(BaseModel):
    seq: int = Field(description="the catalog's version number (1, 2, ...)")
    state: str = Field(description="building | ready | dropped")
    products: int
    written: int = Field(description="rows this version embedded and wrote (new or changed products)")
    closed: int = Field(description="rows of the previous version it replaces or removes")
    vocab_version: str
    embed_model: str
    created_at: str | None
    ready_at: str | None


class CatalogOut(BaseModel):
    id: str
    tenant: str
    name: str
    source_dir: str
    version: CatalogVersionOut | None = Field(description="the newest version")
    reused: bool = Field(False, description="true when the folder's content was already indexed as it is")
    rejected_rows: int = 0
