"""Job-level steps: load a job from the table, run its stage, record the outcome.

Celery tasks (tasks/) are thin wrappers around these functions; every function takes ids, loads what
it needs from the job table, and is safe to run twice.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from db import crud
from db.models import Job
from db.session import init_db, session_scope
from hitline import line as stages
from hitline.domain.catalog import load_catalog, load_new_products
from hitline.config import Settings, get_settings
from hitline.domain.models import HitProduct, NewProduct
from hitline.errors import (BudgetExceeded, ConfigError, HitlineError, InputError, RetryableProviderError)
from hitline.domain.index import HitIndex
from hitline.domain.sparse import TextVocabulary
from hitline.jobs.heartbeat import held_claims

log = logging.getLogger(__name__)

SKU_STAGES = ("embed", "index", "retrieve", "analyze", "render")
HIT_STAGES = ("embed", "index")


class CatalogNotReady(Exception):
    """The batch's catalog is still being embedded/indexed: try retrieve again shortly."""


class DbCache:
    """stages.Cache over the job table's cache, so every worker process sees the same entries."""

    def __init__(self, db_url: str) -> None:
        self.db_url = db_url

    def get(self, key: str) -> Any | None:
        with session_scope(self.db_url) as s:
            return crud.cache_get(s, key)

    def put(self, key: str, value: Any) -> None:
        with session_scope(self.db_url) as s:
            crud.cache_put(s, key, value)


@dataclass
class Context:
    """What one worker process needs: settings, providers per batch options, the index. Built lazily."""

    settings: Settings
    _providers: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def db_url(self) -> str:
        return self.settings.db_url()

    @property
    def cache(self) -> DbCache:
        return DbCache(self.db_url)

    def providers(self, options: dict[str, Any]):  # -> Providers
        from hitline.providers.factory import build_providers
        from hitline.providers.ratelimit import build_limiter

        kind = options.get("provider", "local")
        models = options.get("models", {})
        key = json.dumps([kind, models], sort_keys=True)
        with self._lock:
            if key not in self._providers:
                s = self.settings.model_copy(update={"provider": kind, **models})
                self._providers[key] = build_providers(s, limiter=build_limiter(s) if kind == "openrouter" else None)
            return self._providers[key]

    def index(self, options: dict[str, Any]) -> HitIndex:
        emb = self.providers(options).embedder
        return HitIndex(self.settings.milvus(), self.settings.collection_for(emb.model), emb.dim, emb.model)


_contexts: dict[int, Context] = {}


def get_context() -> Context:
    """One Context per process (a forked worker child builds its own)."""
    pid = os.getpid()
    if pid not in _contexts:
        s = get_settings()
        init_db(s.db_url())
        _contexts[pid] = Context(s)
    return _contexts[pid]


def reset_context() -> None:
    _contexts.clear()
    get_settings.cache_clear()


# --- submission ------------------------------------------------------------------------------------

@dataclass
class Submitted:
    batch_id: str
    hit_chunks: list[list[int]]  # catalog job ids, one list per embed->index chain
    sku_jobs: list[int]
    rejected: int  # rows that failed validation (already recorded as failed jobs)


def batch_options(settings: Settings, *, top_k: int | None = None, min_sales: int | None = None,
                  presets: list[str] | None = None) -> dict[str, Any]:
    """Everything a worker needs to run a batch, stored on the batch row (never the API key)."""
    from hitline.domain.imaging import load_presets

    names = presets or list(settings.presets)
    load_presets(names, settings.presets_file)  # an unknown preset fails before anything is queued
    return {"provider": settings.resolved_provider(), "top_k": top_k or settings.top_k,
            "min_sales": settings.min_sales if min_sales is None else min_sales, "presets": names,
            "models": {"embed_model": settings.embed_model, "analyze_model": settings.analyze_model,
                       "render_model": settings.render_model}}


def new_batch_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


def submit_batch(ctx: Context, catalog_dir: Path, new_dir: Path, out_dir: Path, *, options: dict[str, Any],
                 budget_usd: float | None = None, chunk_size: int = 64, batch_id: str | None = None) -> Submitted:
    """Validate both CSVs, fit the text vocabulary, prepare the collection and create every job row.
    Bad rows become failed jobs with their reason; the caller enqueues the returned ids after commit."""
    catalog = load_catalog(catalog_dir)  # a missing/unreadable file raises InputError: nothing to run
    new = load_new_products(new_dir)
    if not catalog.items:
        raise InputError(f"{catalog_dir}: no usable product in products.csv "
                         f"({len(catalog.errors)} rows rejected); nothing to retrieve from")
    vocab = stages.fit_vocabulary(catalog.items)
    ctx.index(options).ensure(vocab.version)
    batch_id = batch_id or new_batch_id()
    with session_scope(ctx.db_url) as s:
        crud.cache_put(s, f"vocab:{vocab.version}", vocab.to_json())
        b = crud.create_batch(s, batch_id, catalog_dir=str(catalog_dir.resolve()), new_dir=str(new_dir.resolve()),
                              out_dir=str(out_dir.resolve()), options=options, budget_usd=budget_usd, notes=[])
        b.vocab_version = vocab.version
        hit_jobs = [crud.add_job(s, batch_id, "hit", p.product_id, i, _row(p), "embed") for i, p in
                    enumerate(catalog.items)]
        sku_jobs = [crud.add_job(s, batch_id, "sku", p.new_id, i, _row(p), "embed") for i, p in enumerate(new.items)]
        for kind, loaded in (("hit", catalog), ("sku", new)):
            used = {getattr(p, "product_id", None) or getattr(p, "new_id") for p in loaded.items}
            for e in loaded.errors:
                # a rejected row keeps its id when it can (a duplicate id gets its row number appended)
                item_id = e.id if e.id and e.id not in used else f"{e.id or 'row'}@row{e.row}"
                used.add(item_id)
                crud.add_job(s, batch_id, kind, item_id, e.row, e.raw, "embed", "failed", f"row {e.row}: {e.reason}")
        s.flush()
        hit_ids = [j.id for j in hit_jobs]
        sku_ids = [j.id for j in sku_jobs]
    chunks = [hit_ids[i:i + chunk_size] for i in range(0, len(hit_ids), chunk_size)]
    return Submitted(batch_id, chunks, sku_ids, len(catalog.errors) + len(new.errors))


def _row(p: HitProduct | NewProduct) -> dict[str, Any]:
    d = asdict(p)
    d["image_path"] = str(p.image_path)
    return d


def _hit(job: Job) -> HitProduct:
    return HitProduct(**{**job.row, "image_path": Path(job.row["image_path"])})


def _sku(job: Job) -> NewProduct:
    return NewProduct(**{**job.row, "image_path": Path(job.row["image_path"])})


# --- the step runner ------------------------------------------------------------------------------

def run_step(ctx: Context, job_id: int, stage: str, work: Callable[[Job, dict[str, Any]], dict[str, Any]]) -> str:
    """Claim (job, stage), run work(job, batch_options), record the outcome.

    Returns "done", "skipped" (not ours: done already, failed, or running elsewhere), "failed" or "held".
    A RetryableProviderError is recorded as retrying and re-raised for the task to retry;
    CatalogNotReady gives the claim back uncounted and is re-raised.
    """
    with session_scope(ctx.db_url) as s:
        job = crud.claim(s, job_id, stage)
        if job is None:
            return "skipped"
        options = dict(_batch(s, job.batch_id).options)
    try:
        with held_claims(ctx.db_url, [job_id], stage, ctx.settings.heartbeat_s):  # a dead worker's claim goes stale
            result = work(job, options)
    except CatalogNotReady:
        with session_scope(ctx.db_url) as s:
            crud.release(s, job_id, stage)
        raise
    except RetryableProviderError as e:
        with session_scope(ctx.db_url) as s:
            crud.set_state(s, job_id, stage, "retrying", str(e))
        raise
    except BudgetExceeded as e:
        with session_scope(ctx.db_url) as s:
            crud.set_state(s, job_id, stage, "budget_exceeded", str(e))
        return "held"
    except HitlineError as e:  # bad input, terminal provider answer, unusable config: this SKU fails alone
        with session_scope(ctx.db_url) as s:
            crud.set_state(s, job_id, stage, "failed", str(e))
        return "failed"
    except Exception as e:  # a bug or an unreadable file: this SKU fails, the batch goes on
        log.exception("job %s stage %s crashed", job_id, stage)
        with session_scope(ctx.db_url) as s:
            crud.set_state(s, job_id, stage, "failed", f"{type(e).__name__}: {e}")
        return "failed"
    stages_of = HIT_STAGES if job.kind == "hit" else SKU_STAGES
    i = stages_of.index(stage)
    nxt = stages_of[i + 1] if i + 1 < len(stages_of) else "done"
    with session_scope(ctx.db_url) as s:
        crud.advance(s, job_id, stage, nxt, result)
    return "done"


def _batch(s, batch_id: str):  # noqa: ANN001
    from db.models import Batch

    b = s.get(Batch, batch_id)
    if b is None:
        raise InputError(f"no batch {batch_id!r}")
    return b


def batch_info(ctx: Context, batch_id: str) -> dict[str, Any]:
    with session_scope(ctx.db_url) as s:
        b = _batch(s, batch_id)
        return {"id": b.id, "options": dict(b.options), "out_dir": b.out_dir, "budget_usd": b.budget_usd,
                "vocab_version": b.vocab_version}


def vocabulary(ctx: Context, version: str) -> TextVocabulary:
    data = ctx.cache.get(f"vocab:{version}")
    if data is None:
        raise ConfigError(f"text vocabulary {version} is not in the job table")
    vocab = TextVocabulary(data["vocabulary"], data["idf"], data["params"])
    if vocab.version != version:
        raise ConfigError(f"text vocabulary {version} in the job table does not match its content")
    return vocab
