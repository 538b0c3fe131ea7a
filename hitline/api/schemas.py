"""Response models of the HTTP API (requests are hitline.jobs.requests, shared with the Celery contract)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    status: int
    message: str


class Error(BaseModel):
    error: ErrorBody


class Failure(BaseModel):
    reason: str = Field(description="the group: the reason with row numbers and file names as <n>, <file> "
                                    "(retry it with {\"reason_group\": ...})")
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
    links: dict[str, str]


class BatchList(BaseModel):
    batches: list[Batch]
    next_cursor: str | None


class Submitted(BaseModel):
    batch_id: str
    catalog_products: int
    new_skus: int
    rejected_rows: int
    existing: bool = Field(False, description="true when an earlier request with the same Idempotency-Key "
                                              "created this batch (status 200 instead of 201)")
    links: dict[str, str]


class AttemptOut(BaseModel):
    stage: str
    started_at: datetime
    seconds: float | None
    outcome: str
    error: str | None


class Output(BaseModel):
    preset: str
    width: int
    height: int
    cost_usd: float
    url: str


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
    style: dict[str, Any] | None


class Enqueued(BaseModel):
    batch_id: str
    jobs: int = Field(description="jobs put back in the queue / stopped")
    message: str
