"""Submission: validate a batch's CSVs, create every job row (bad rows as failed jobs with their reason),
and say what must be enqueued. Idempotent under a client's key. The caller sends the chains after commit."""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from db import crud
from db.models import DEFAULT_TENANT, Batch, Job
from db.session import session_scope
from hitline.config import Settings
from hitline.domain.catalog import Loaded, load_catalog, load_new_products, require_folder
from hitline.domain.imaging import load_presets
from hitline.domain.models import HitProduct, NewProduct
from hitline.domain.promo_copy import MISSING_TRANSLATION, TEXT_MODES, parse_locales
from hitline.errors import IdempotencyConflict, InputError
from hitline.jobs import catalogs, webhooks
from hitline.jobs.context import Runtime
from hitline.jobs.options import BatchOptions, PresetSpec
from hitline.jobs.stages import CATALOG_LINE, first_stage
from hitline.line import fit_vocabulary

__all__ = ["Dispatch", "Submitted", "IdempotencyConflict", "batch_options", "submit_batch", "new_batch_id"]

CHUNK_SIZE = 64  # catalog products per embed -> index chain (one batched provider call each)


@dataclass(frozen=True)
class Dispatch:
    """One chain to send: a SKU job from `stage` on, or a chunk of catalog jobs from `stage` on."""

    batch_id: str
    kind: str  # "sku" | "hit"
    stage: str
    job_ids: tuple[int, ...]


@dataclass
class Submitted:
    batch_id: str
    hit_chunks: list[list[int]]  # catalog job ids, one list per embed -> index chain
    sku_jobs: list[int]
    rejected: int  # rows that failed validation (already recorded as failed jobs)
    # True when an earlier request with the same idempotency key created the batch
    existing: bool = False
    # what still has to be sent (a repeated request re-sends only jobs whose first send failed)
    dispatches: list[Dispatch] = field(default_factory=list)


MODES = ("direct", "staged")  # how a batch renders (hitline/jobs/stages.py); direct is the default
ESCALATIONS = ("pro", "none")  # a twice-failed output rendered once more by the Pro model, or not


def batch_options(
    settings: Settings,
    *,
    top_k: int | None = None,
    min_sales: int | None = None,
    presets: list[str] | None = None,
    review: str | None = None,
    draft: str | None = None,
    locales: str | list[str] | None = None,
    text_mode: str | None = None,
    missing_translation: str | None = None,
    mode: str | None = None,
    escalate: str | None = None,
) -> dict[str, Any]:
    """Everything a worker needs to run a batch, stored on the batch row (never the API key). review:
    "all" = every output waits for a person; "gate" (default) = only those the quality gate sent.
    `locales` (e.g. "en-US,de-DE,ja-JP"): words on the pictures in each (the first is the language of
    the CSV's `headline`), text_mode overlay|model, missing_translation refuse|translate
    (hitline/jobs/localise.py). mode direct|staged and escalate pro|none: the batch's own choice, else
    the settings' (HITLINE_MODE, HITLINE_ESCALATE)."""
    names = presets or list(settings.presets)
    # an unknown preset fails before anything is queued; the resolved presets are recorded: workers
    # render what the batch was checked against, whatever their own presets file says
    resolved = load_presets(names, settings.presets_file)
    if review not in (None, "gate", "all"):
        raise InputError(f"review {review!r} is not 'gate' or 'all'")
    text = text_options(settings.resolved_provider(), locales, text_mode, missing_translation)
    if mode is not None and mode not in MODES:
        raise InputError(f"mode must be {' or '.join(MODES)}, not {mode!r}")
    if escalate is not None and escalate not in ESCALATIONS:
        raise InputError(f"escalate must be {' or '.join(ESCALATIONS)}, not {escalate!r}")
    if draft is not None and draft not in ("512px", "1K"):
        raise InputError(f"draft size {draft!r} is not 512px or 1K")
    # drafts are approved by a person: a draft batch reviews every output
    return {
        **({"review": "all", "draft": draft} if draft else {"review": review} if review else {}),
        "provider": settings.resolved_provider(),
        "top_k": top_k or settings.top_k,
        "min_sales": settings.min_sales if min_sales is None else min_sales,
        "presets": names,
        "preset_specs": [PresetSpec.of(p).model_dump(mode="json") for p in resolved],
        "escalate": escalate or settings.escalate,
        "mode": mode or settings.mode,
        "models": {
            "embed_model": settings.embed_model,
            "analyze_model": settings.analyze_model,
            "render_model": settings.render_model,
            "escalate_model": settings.escalate_model,
        },
        **({"text": text} if text else {}),
    }


def text_options(
    provider: str, locales: str | list[str] | None, mode: str | None, missing: str | None
) -> dict[str, Any] | None:
    """The batch's words: locales checked against CLDR, the mode (overlay unless asked; the local
    compositor cannot write words), what to do with a missing translation (refuse unless asked)."""
    locs = parse_locales(locales)
    if not locs:
        if mode or missing:
            raise InputError("text_mode and missing_translation need locales: name them, e.g. --locales en-US,de-DE")
        return None
    mode = mode or "overlay"
    if mode not in TEXT_MODES:
        raise InputError(f"text mode {mode!r} is not one of {', '.join(TEXT_MODES)}")
    if mode == "model" and provider == "local":
        raise InputError(
            "text mode 'model' needs an image model that writes words; the local compositor does not: "
            "use text mode overlay (hitline typesets the words) or the openrouter provider"
        )
    missing = missing or "refuse"
    if missing not in MISSING_TRANSLATION:
        raise InputError(f"missing_translation {missing!r} is not one of {', '.join(MISSING_TRANSLATION)}")
    return {"locales": locs, "mode": mode, "missing_translation": missing}


def new_batch_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


def request_hash(
    catalog_dir: Path, new_dir: Path, out_dir: Path, options: dict[str, Any], budget_usd: float | None
) -> str:
    """What a request asks for: folders, options, budget and the bytes of both CSVs."""
    h = hashlib.sha256(
        json.dumps(
            [str(catalog_dir.resolve()), str(new_dir.resolve()), str(out_dir.resolve()), options, budget_usd],
            sort_keys=True,
        ).encode()
    )
    for csv_path in (catalog_dir / "products.csv", new_dir / "new_products.csv"):
        h.update(csv_path.read_bytes() if csv_path.is_file() else b"-")
    return h.hexdigest()


def submit_batch(
    rt: Runtime,
    catalog_dir: Path,
    new_dir: Path,
    out_dir: Path,
    *,
    options: dict[str, Any],
    budget_usd: float | None = None,
    batch_id: str | None = None,
    idempotency_key: str | None = None,
    tenant: str = DEFAULT_TENANT,
    _retried: bool = False,
) -> Submitted:
    """Validate both CSVs, fit the text vocabulary, prepare the collection and create every job row.
    Bad rows become failed jobs with their reason; the caller sends `dispatches` after this commits.
    With an idempotency key, the same request returns the batch it created the first time."""
    catalog_dir, new_dir, out_dir = Path(catalog_dir), Path(new_dir), Path(out_dir)
    if not catalog_dir.is_dir():  # a catalog's name or id (`hitline catalog list`) stands for its folder
        catalog_dir = catalogs.folder_of(rt, str(catalog_dir), tenant) or catalog_dir
    # said first, before the new products (the catalog is read later, or not at all)
    require_folder(catalog_dir, "catalog folder")
    digest = request_hash(catalog_dir, new_dir, out_dir, options, budget_usd) if idempotency_key else None
    if idempotency_key:
        earlier = _earlier(rt, idempotency_key, digest, tenant)
        if earlier is not None:
            return earlier
    new = load_new_products(new_dir)
    index = rt.index(BatchOptions.read(options))
    index.ensure()
    embed_model = index.embed_model
    # a folder whose products.csv is the one its catalog's latest version was made from is not read again:
    # a batch on an indexed catalog starts in the same time for 1,000 or 100,000 products
    fingerprint = catalogs.csv_fingerprint(catalog_dir) if catalog_dir.is_dir() else None
    unchanged = None
    if fingerprint is not None:
        with session_scope(rt.db_url) as s:
            unchanged = catalogs.unchanged_version(s, catalog_dir, tenant, fingerprint, embed_model)
    catalog: Loaded[HitProduct] | None = None
    if unchanged is None:
        catalog = load_catalog(catalog_dir)  # a missing/unreadable file raises InputError: nothing to run
        if not catalog.items:
            raise InputError(
                f"{catalog_dir}: no usable product in products.csv "
                f"({len(catalog.errors)} rows rejected); nothing to retrieve from"
            )
    hit_rejects = unchanged.rejected if unchanged is not None else catalogs.rejected_rows(catalog)
    batch_id = batch_id or new_batch_id()
    try:
        with session_scope(rt.db_url) as s:
            write: list[HitProduct] = []
            if unchanged is None:
                assert catalog is not None
                vocab = fit_vocabulary(catalog.items)
                crud.cache_put(s, f"vocab:{vocab.version}", vocab.to_json())
                # the folder's catalog and the version its rows make: an indexed catalog is reused as it is;
                # otherwise this batch's catalog jobs write only the rows that are new or changed
                cat = catalogs.resolve(s, folder=catalog_dir, tenant=tenant)
                plan = catalogs.plan_version(s, cat, catalog.items, vocab, embed_model, builder_batch_id=batch_id)
                catalogs.remember_folder(s, cat.id, fingerprint, plan.version, hit_rejects)
                ver = (cat.id, plan.version.id, plan.version.seq, plan.version.vocab_version)
                write = plan.write
            else:
                ver = (unchanged.catalog_id, unchanged.version_id, unchanged.seq, unchanged.vocab_version)
            cat_id, version_id, seq, vocab_version = ver
            pinned = {**options, "catalog": {"id": cat_id, "seq": seq, "version_id": version_id}}
            b = crud.create_batch(
                s,
                batch_id,
                catalog_dir=str(catalog_dir.resolve()),
                new_dir=str(new_dir.resolve()),
                out_dir=str(out_dir.resolve()),
                options=pinned,
                budget_usd=budget_usd,
                notes=[],
            )
            b.vocab_version = vocab_version
            b.catalog_version_id = version_id
            b.idempotency_key, b.request_hash, b.tenant_id = idempotency_key, digest, tenant
            hit_ids = crud.add_jobs(s, batch_id, "hit", [(p.product_id, _row(p)) for p in write], first_stage("hit"))
            sku_ids = crud.add_jobs(s, batch_id, "sku", [(p.new_id, _row(p)) for p in new.items], first_stage("sku"))
            for kind, rejects in (("hit", hit_rejects), ("sku", catalogs.rejected_rows(new))):
                for e in rejects:
                    item_id = e["item_id"]
                    j = crud.add_job(
                        s,
                        batch_id,
                        kind,
                        item_id,
                        e["row"],
                        e["raw"],
                        first_stage(kind),
                        "failed",
                        e["reason"],
                    )
                    s.flush()
                    webhooks.emit(
                        s,
                        batch_id,
                        "job.failed",
                        f"{j.id}:rejected",
                        {
                            "job_id": j.id,
                            "sku" if kind == "sku" else "product_id": item_id,
                            "stage": "submit",
                            "reason": j.error,
                            "attempts": 0,
                        },
                    )
    except IntegrityError:
        if idempotency_key:  # a concurrent request with the same key won the race
            earlier = _earlier(rt, idempotency_key, digest, tenant)
            if earlier is not None:
                return earlier
        if not _retried:  # a concurrent batch planned the same catalog's next version first: plan again
            return submit_batch(
                rt,
                catalog_dir,
                new_dir,
                out_dir,
                options=options,
                budget_usd=budget_usd,
                batch_id=None,
                idempotency_key=idempotency_key,
                tenant=tenant,
                _retried=True,
            )
        raise
    sub = Submitted(batch_id, chunks(hit_ids), sku_ids, len(hit_rejects) + len(new.errors))
    sub.dispatches = [Dispatch(batch_id, "hit", first_stage("hit"), tuple(c)) for c in sub.hit_chunks] + [
        Dispatch(batch_id, "sku", first_stage("sku"), (j,)) for j in sku_ids
    ]
    return sub


def chunks(ids: list[int], size: int = CHUNK_SIZE) -> list[list[int]]:
    return [ids[i : i + size] for i in range(0, len(ids), size)]


def _earlier(rt: Runtime, key: str, digest: str | None, tenant: str) -> Submitted | None:
    """The batch an earlier request of this tenant with this key created, with whatever of it was never sent."""
    with session_scope(rt.db_url) as s:
        b = s.scalar(select(Batch).where(Batch.idempotency_key == key, Batch.tenant_id == tenant))
        if b is None:
            return None
        if b.request_hash != digest:
            raise IdempotencyConflict(
                f"Idempotency-Key {key!r} was used for a different request "
                f"(batch {b.id}); use a new key for a new batch"
            )
        rows = s.execute(
            select(Job.id, Job.kind, Job.state, Job.stage, Job.attempts, Job.enqueued_at)
            .where(Job.batch_id == b.id)
            .order_by(Job.id)
        ).all()
    # rows rejected at submission are the failed jobs that never ran
    rejected = {r.id for r in rows if r.state == "failed" and r.attempts == 0}
    hits = [r.id for r in rows if r.kind == "hit" and r.id not in rejected]
    skus = [r.id for r in rows if r.kind == "sku" and r.id not in rejected]
    unsent = [r for r in rows if r.state == "pending" and r.enqueued_at is None]
    sub = Submitted(b.id, chunks(hits), skus, len(rejected), existing=True)
    sub.dispatches = [
        Dispatch(b.id, "hit", st, tuple(c))
        for st in (st.name for st in CATALOG_LINE)
        for c in chunks([r.id for r in unsent if r.kind == "hit" and r.stage == st])
    ] + [Dispatch(b.id, "sku", r.stage, (r.id,)) for r in unsent if r.kind == "sku"]
    return sub


def _row(p: HitProduct | NewProduct) -> dict[str, Any]:
    # flat fields of plain values: a shallow copy (asdict deep-copies each, 3x the time per row)
    return {**vars(p), "image_path": str(p.image_path)}
