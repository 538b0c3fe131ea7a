"""Tables: catalog and catalog_version, batch, job (one per hit product or new SKU), attempt (one per stage
run), charge, cache."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint, event, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


DEFAULT_TENANT = "default"


class Tenant(Base):
    """Who owns tokens, batches (and through them jobs, charges, outputs, uploads). Embedded mode has one,
    "default", made on first use; a server's admin adds more (`hitline tenant create`)."""

    __tablename__ = "tenant"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # USD over every batch of the tenant in a calendar month (UTC), checked at each render's reservation
    monthly_budget_usd: Mapped[float | None] = mapped_column(Float, nullable=True)
    # the running total of the month `month` ("YYYY-MM", UTC): kept by every charge write under the batch lock
    # (then this row's), so the monthly check reads one row; a charge in a new month starts it from 0
    month: Mapped[str | None] = mapped_column(String(7), nullable=True)
    month_spent_usd: Mapped[float] = mapped_column(Float, default=0.0, server_default="0", nullable=False)


def tenant_column() -> Mapped[str]:
    """The owning tenant, for any table that needs one (existing rows: the default tenant)."""
    return mapped_column(String(64), default=DEFAULT_TENANT, server_default=DEFAULT_TENANT, nullable=False, index=True)


class Catalog(Base):
    """A hit catalog a tenant owns (a folder on shared storage), indexed once and versioned by content."""

    __tablename__ = "catalog"
    __table_args__ = (UniqueConstraint("tenant", "name", name="uq_catalog_tenant_name"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # also the Milvus partition key value
    tenant: Mapped[str] = mapped_column(String(64), default="default")
    name: Mapped[str] = mapped_column(String(128))
    source_dir: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class CatalogVersion(Base):
    """One content of a catalog. `seq` counts a catalog's versions from 1; a Milvus row is live in the
    versions [valid_from, valid_to) of its catalog. `rows`: product_id -> [row hash, valid_from] of every
    product in this version, what the next update is compared against."""

    __tablename__ = "catalog_version"
    __table_args__ = (UniqueConstraint("catalog_id", "seq", name="uq_catalog_version_seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    catalog_id: Mapped[str] = mapped_column(ForeignKey("catalog.id", ondelete="CASCADE"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    content_sha: Mapped[str] = mapped_column(String(64))
    vocab_version: Mapped[str] = mapped_column(String(64))
    embed_model: Mapped[str] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(16), default="building")  # building | ready | dropped
    # the batch whose catalog jobs embed and index this version's new rows (None: built in one go)
    builder_batch_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    rows: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    products: Mapped[int] = mapped_column(Integer, default=0)
    added: Mapped[int] = mapped_column(Integer, default=0)  # rows written for this version (new or changed)
    removed: Mapped[int] = mapped_column(Integer, default=0)  # rows of the previous version it closes
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    ready_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Batch(Base):
    __tablename__ = "batch"
    # idempotency keys are per tenant: another tenant's key is another request
    __table_args__ = (UniqueConstraint("tenant_id", "idempotency_key", name="uq_batch_tenant_idempotency_key"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = tenant_column()
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    catalog_dir: Mapped[str] = mapped_column(Text)
    new_dir: Mapped[str] = mapped_column(Text)
    out_dir: Mapped[str] = mapped_column(Text)
    # top_k, min_sales, presets, provider and models: everything a worker needs to run the batch
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    budget_usd: Mapped[float | None] = mapped_column(Float, nullable=True)
    # what the batch's charge rows add up to (reservations in flight included), kept with every charge
    # write under the batch row's lock: a render's budget check reads one row, not a SUM over the batch
    spent_usd: Mapped[float] = mapped_column(Float, default=0.0, server_default="0", nullable=False)
    vocab_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # the catalog version the batch retrieves from, pinned at submission (None: a batch made before catalogs)
    catalog_version_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    # file-level problems and rows that never became jobs (unreadable CSV lines)
    notes: Mapped[list[Any]] = mapped_column(JSON, default=list)
    # set by a cancel: no job of the batch is claimed for a new stage after this (see crud.claim)
    cancelled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # a client's Idempotency-Key and the hash of what it asked for: the same request returns this batch
    idempotency_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    request_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)


class Job(Base):
    __tablename__ = "job"
    # the indexes: the API lists a batch's jobs by state and pages through them by id (migration 0003);
    # a batch's summary counts jobs by kind/stage/state and groups render digests from indexes alone,
    # without reading 100,000 job rows (migration i21_job_digest, bench/bench_api.py)
    __table_args__ = (
        UniqueConstraint("batch_id", "kind", "item_id"),
        Index("ix_job_batch_state_id", "batch_id", "state", "id"),
        Index("ix_job_batch_counts", "batch_id", "kind", "stage", "state"),
        Index(
            "ix_job_batch_digest",
            "batch_id",
            "digest",
            postgresql_where=text("digest IS NOT NULL"),
            sqlite_where=text("digest IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    batch_id: Mapped[str] = mapped_column(ForeignKey("batch.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(8))  # "hit" (catalog) or "sku" (new product)
    item_id: Mapped[str] = mapped_column(String(128))  # product_id / new_id (may be "" for broken rows)
    row_no: Mapped[int] = mapped_column(Integer, default=0)
    row: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # the validated or raw row
    stage: Mapped[str] = mapped_column(String(16))  # embed | index | retrieve | analyze | render | done
    # pending | running | retrying | done | failed | budget_exceeded | cancelled
    state: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    result: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # per-stage results
    # a stage result's "digest" (the render stage's, hitline.jobs.quality.digest) as compact JSON, derived
    # from `result` on every write (crud.advance; result_digest below for the ORM): the batch summary groups
    # these from an index instead of parsing every job's result
    digest: Mapped[str | None] = mapped_column(Text, nullable=True)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # the Celery task id holding the claim: a redelivery or retry of that same message may take it back
    claimed_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # when the message for the job's current stage was last sent (None: never sent, e.g. the broker
    # was down at submit): resume and reconciliation re-send only what has no message in flight
    enqueued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class Attempt(Base):
    __tablename__ = "attempt"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("job.id", ondelete="CASCADE"), index=True)
    stage: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    outcome: Mapped[str] = mapped_column(String(16), default="running")  # ok | retry | failed | held | lost
    error: Mapped[str | None] = mapped_column(Text, nullable=True)


class Charge(Base):
    """One paid call. The key (content hash + options) makes a redelivered task pay once."""

    __tablename__ = "charge"
    # the second: what one stage of a batch cost (the summary's render spend) summed from the index alone
    __table_args__ = (
        UniqueConstraint("batch_id", "key"),
        Index("ix_charge_batch_stage_cost", "batch_id", "stage", "cost_usd"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    batch_id: Mapped[str] = mapped_column(ForeignKey("batch.id", ondelete="CASCADE"), index=True)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("job.id", ondelete="CASCADE"), nullable=True)
    stage: Mapped[str] = mapped_column(String(16))
    key: Mapped[str] = mapped_column(String(128))
    model: Mapped[str] = mapped_column(String(128))
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    state: Mapped[str] = mapped_column(String(16), default="reserved")  # reserved | charged
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class CacheEntry(Base):
    """Embeddings, analyses and vocabularies by content hash + model: identical inputs are not paid twice."""

    __tablename__ = "cache"

    key: Mapped[str] = mapped_column(String(160), primary_key=True)  # "<kind>:<model>:<sha256>"
    value: Mapped[Any] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ApiToken(Base):
    """A bearer token of the HTTP API and dashboard. Only the SHA-256 of the token is stored: the token
    itself is printed once by `hitline token create` and cannot be read back from the table."""

    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    tenant_id: Mapped[str] = tenant_column()
    # read: look only; submit: + submit batches; operate: + retry, cancel, resume, review, webhooks
    role: Mapped[str] = mapped_column(String(16), default="operate", server_default="operate", nullable=False)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Output(Base):
    """One image a SKU's render stage kept (one per preset), with its review state and what made it.
    review: none (no review asked and the gate passed it) | pending | approved | rejected | redo (a new
    take with the reviewer's note is being rendered); take counts the renders a redo asked for."""

    __tablename__ = "output"
    __table_args__ = (
        UniqueConstraint("job_id", "preset"),
        Index("ix_output_batch_review_id", "batch_id", "review", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    batch_id: Mapped[str] = mapped_column(ForeignKey("batch.id", ondelete="CASCADE"))
    job_id: Mapped[int] = mapped_column(ForeignKey("job.id", ondelete="CASCADE"))
    item_id: Mapped[str] = mapped_column(String(128))
    preset: Mapped[str] = mapped_column(String(64))
    take: Mapped[int] = mapped_column(Integer, default=1)
    path: Mapped[str] = mapped_column(Text)
    gate: Mapped[str] = mapped_column(
        String(32), default="unchecked"
    )  # passed | passed_after_rerender | needs_review | unchecked
    reasons: Mapped[list[Any]] = mapped_column(JSON, default=list)  # the gate's reasons
    review: Mapped[str] = mapped_column(String(16), default="none")
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    reviewed_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    reviewed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)  # every take's render cost together
    # flat-lay hash, references, prompt, model + version, per-take cost (hitline.jobs.review.provenance)
    provenance: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)  # why the last redo did not happen
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class ReviewDecision(Base):
    """Who decided what about an output, and when (one row per decision, never updated)."""

    __tablename__ = "review_decision"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    output_id: Mapped[int] = mapped_column(ForeignKey("output.id", ondelete="CASCADE"), index=True)
    take: Mapped[int] = mapped_column(Integer)
    decision: Mapped[str] = mapped_column(String(16))  # approved | rejected | redo
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    by: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class WebhookEndpoint(Base):
    """A URL that receives a batch's events (batch_id set) or every batch's of its tenant (batch_id null). Its signing
    secret is not stored: it is derived from the server's webhook key and the endpoint id
    (hitline.jobs.webhooks.secret_for), shown once when the endpoint is registered."""

    __tablename__ = "webhook_endpoint"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # the tenant whose batches it hears (all of them when batch_id is null)
    tenant_id: Mapped[str] = tenant_column()
    batch_id: Mapped[str | None] = mapped_column(ForeignKey("batch.id", ondelete="CASCADE"), nullable=True, index=True)
    url: Mapped[str] = mapped_column(Text)
    events: Mapped[list[Any]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class WebhookEvent(Base):
    """The outbox: an event written in the transaction that made it happen. Its id is stable (derived
    from what happened), so writing it twice is one event and a receiver can drop repeats."""

    __tablename__ = "webhook_event"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    type: Mapped[str] = mapped_column(String(32))
    batch_id: Mapped[str] = mapped_column(ForeignKey("batch.id", ondelete="CASCADE"), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class WebhookDelivery(Base):
    """One event to one endpoint: pending (next_at: when to try) | delivered | dead (after N failures)."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (UniqueConstraint("event_id", "endpoint_id"), Index("ix_delivery_state_next", "state", "next_at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(ForeignKey("webhook_event.id", ondelete="CASCADE"))
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoint.id", ondelete="CASCADE"), index=True)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


def result_digest(result: dict[str, Any] | None) -> str | None:
    """The digest a job's results carry - the last stage result with a "digest" key (the render stage's) -
    as compact JSON with sorted keys, for job.digest; None without one."""
    for stage_result in reversed(list((result or {}).values())):
        if isinstance(stage_result, dict) and stage_result.get("digest") is not None:
            return json.dumps(stage_result["digest"], sort_keys=True, separators=(",", ":"))
    return None


@event.listens_for(Job, "before_insert")
@event.listens_for(Job, "before_update")
def _keep_digest(_mapper: Any, _conn: Any, job: Job) -> None:
    """A job written through the ORM keeps job.digest in step with its result (crud.advance, a Core
    UPDATE, sets it itself)."""
    job.digest = result_digest(job.result)
