"""The requests other services make, as pydantic models: one definition for the HTTP API, the Celery
contract (tasks/contract.py) and the JSON schemas in docs/contract/ (generated from these models;
tests/test_contract.py fails when a file and its model drift apart)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from hitline.jobs.control import MAX_ID, JobFilter

MAX_PATH = 1024  # longer than any folder a person names; the file system's own limit is 4096 bytes
MAX_SALES = 2**53  # sales counts are compared in the index as 64-bit numbers; nothing sells more


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain a NUL character")
    return value


Text = Annotated[str, AfterValidator(_no_nul)]

if TYPE_CHECKING:
    from hitline.jobs.review import OutputFilter

__all__ = [
    "BatchRequest",
    "SubmitBatchRequest",
    "RetryFilter",
    "RetryRequest",
    "BatchRef",
    "ResumeRequest",
    "ReviewRequest",
    "WebhookRequest",
    "SCHEMAS",
    "json_schema",
    "write_schemas",
]


class BatchRequest(BaseModel):
    """A batch over folders on storage the workers share; the options of `hitline run`."""

    model_config = ConfigDict(extra="forbid", title="hitline.submit_batch")

    catalog: Text = Field(
        description="folder with products.csv and the hit catalog's images", min_length=1, max_length=MAX_PATH
    )
    new: Text = Field(
        description="folder with new_products.csv and the new products' flat-lays", min_length=1, max_length=MAX_PATH
    )
    top_k: int | None = Field(None, ge=1, le=50, description="hits to borrow the look from (default 3)")
    min_sales: int | None = Field(
        None, ge=0, le=MAX_SALES, description="only hits with sales_count above this (default 1500)"
    )
    presets: list[Annotated[Text, Field(max_length=64)]] | None = Field(
        None, min_length=1, max_length=50, description='preset names, e.g. ["amazon_main", "banner"]'
    )
    budget_usd: float | None = Field(
        None,
        ge=0,
        le=1e9,
        allow_inf_nan=False,
        description="USD cap for paid renders in this batch (a number; none = no cap)",
    )
    draft: Literal["512px", "1K"] | None = Field(
        None,
        description="render every ratio group at this size first; "
        "only approved drafts are rendered at their final sizes",
    )
    review: Literal["gate", "all"] | None = Field(
        None,
        description='"all": every output waits for a person\'s '
        'approval; "gate" (default): only those the quality gate sent',
    )
    locales: list[str] | None = Field(
        None,
        min_length=1,
        description="words on the pictures in these locales, "
        'e.g. ["en-US", "de-DE", "ja-JP"]; the first is the language of '
        "new_products.csv's headline column",
    )
    text_mode: Literal["overlay", "model"] | None = Field(
        None,
        description="overlay (default): hitline typesets each locale on one text-free render; model: the "
        "image model writes the words, one paid render per (preset, locale)",
    )
    missing_translation: Literal["refuse", "translate"] | None = Field(
        None,
        description="a locale without a headline_<locale> column: refuse it for that SKU (default) or have "
        "the analysis model translate it (marked machine-translated)",
    )
    mode: Literal["direct", "staged"] | None = Field(
        None,
        description="direct (default): one render per ratio group; staged: a scene plate per (references, "
        "ratio group) made once per batch, the product placed into it",
    )
    escalate: Literal["pro", "none"] | None = Field(
        None,
        description='"pro": an output whose re-render still fails the gate is rendered once more by Nano '
        'Banana Pro (reserved against the budget); "none" (default): it waits for review',
    )


TenantName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]


_ACTS_IN = (
    "the tenant the caller acts for (the HTTP API takes it from the token); a batch of another tenant is not found"
)


class SubmitBatchRequest(BatchRequest):
    """The Celery contract's submission: a batch request and the tenant it is submitted for (the HTTP API
    takes the tenant from the caller's token instead)."""

    model_config = ConfigDict(extra="forbid", title="hitline.submit_batch")

    tenant: TenantName = Field(
        "default",
        description="the tenant the batch belongs to; it must exist (`hitline tenant create T`). Its catalog "
        "and new products must be under HITLINE_API_SHARED_DIRS or its uploads, as over HTTP",
    )


class RetryFilter(BaseModel):
    """Which failed jobs to retry; nothing set = every failed job of the batch."""

    model_config = ConfigDict(extra="forbid")

    stage: Text | None = Field(
        None, max_length=32, description="only jobs that failed in this stage (embed, index, retrieve, analyze, render)"
    )
    reason: Text | None = Field(
        None, max_length=1000, description="only jobs whose reason contains this text (case-insensitive)"
    )
    reason_group: Text | None = Field(
        None,
        max_length=1000,
        description="only jobs in this failure group (`failures[].reason` of "
        "GET /batches/{id}: row numbers and file names as <n>, <file>)",
    )
    job_ids: list[Annotated[int, Field(ge=1, le=MAX_ID)]] | None = Field(
        None, max_length=100_000, description="only these job ids"
    )

    def to_filter(self) -> JobFilter:
        return JobFilter(
            stage=self.stage,
            reason=self.reason,
            reason_group=self.reason_group,
            job_ids=tuple(self.job_ids) if self.job_ids is not None else None,
        )


class ReviewRequest(BaseModel):
    """A review decision on a batch's outputs: these ids, or every output matching the filter."""

    model_config = ConfigDict(extra="forbid")

    decision: Literal["approve", "reject", "redo"]
    note: str | None = Field(None, max_length=1000, description="why (needed for redo: it is added to the prompt)")
    output_ids: list[Annotated[int, Field(ge=1, le=MAX_ID)]] | None = Field(None, description="only these outputs")
    review: str | None = Field(
        None, description="only outputs in this review state (none, pending, approved, rejected, redo)"
    )
    gate: str | None = Field(None, description="only outputs with this gate outcome (passed, needs_review, ...)")
    preset: str | None = Field(None, description="only this preset")
    sku: str | None = Field(None, description="only this SKU")

    def to_filter(self) -> "OutputFilter":
        from hitline.jobs.review import OutputFilter

        return OutputFilter(
            output_ids=tuple(self.output_ids) if self.output_ids is not None else None,
            review=self.review,
            gate=self.gate,
            preset=self.preset,
            item_id=self.sku,
        )


class WebhookRequest(BaseModel):
    """An endpoint to send events to: https://, or http:// on loopback."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, max_length=2000)
    events: list[str] | None = Field(
        None, description="batch.finished, job.failed, output.needs_review, output.approved (default: all)"
    )


class RetryRequest(RetryFilter):
    model_config = ConfigDict(extra="forbid", title="hitline.retry_jobs")

    batch_id: Text = Field(min_length=1, max_length=64, description="the batch whose failed jobs to retry")
    tenant: TenantName = Field("default", description=_ACTS_IN)


class BatchRef(BaseModel):
    model_config = ConfigDict(extra="forbid", title="hitline.cancel_batch")

    batch_id: Text = Field(min_length=1, max_length=64, description="the batch to cancel")
    tenant: TenantName = Field("default", description=_ACTS_IN)


class ResumeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", title="hitline.resume_batch")

    batch_id: Text = Field(min_length=1, max_length=64, description="the batch to resume (a cancelled one is reopened)")
    tenant: TenantName = Field("default", description=_ACTS_IN)
    budget_usd: float | None = Field(
        None, ge=0, le=1e9, allow_inf_nan=False, description="a new USD budget (releases renders held by the old)"
    )


# file name under docs/contract/ -> model
SCHEMAS: dict[str, type[BaseModel]] = {
    "submit_batch.schema.json": SubmitBatchRequest,
    "retry_jobs.schema.json": RetryRequest,
    "cancel_batch.schema.json": BatchRef,
    "resume_batch.schema.json": ResumeRequest,
}


def json_schema(model: type[BaseModel]) -> dict[str, object]:
    """The published schema of a request model (what docs/contract/*.schema.json hold)."""
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **model.model_json_schema()}


def write_schemas(folder: str = "docs/contract") -> None:
    """Regenerate docs/contract/ after changing a model: python -m hitline.jobs.requests"""
    import json
    from pathlib import Path

    for name, model in SCHEMAS.items():
        Path(folder, name).write_text(json.dumps(json_schema(model), indent=2) + "\n")


if __name__ == "__main__":
    write_schemas()
