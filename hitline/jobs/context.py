"""What a worker process needs (Runtime: settings, providers, one rate limiter, the index, prices) and
what one task needs (JobContext: the job, its product, batch options, output folder), each built once."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from sqlalchemy import Row, bindparam, select

from db import crud
from db.crud import BatchRow, Claim, Db
from db.models import Batch
from db.session import connection_scope, init_db
from hitline.config import Settings, get_settings
from hitline.domain.images import file_sha256
from hitline.domain.imaging import load_presets
from hitline.domain.models import HitProduct, NewProduct, Preset
from hitline.domain.pricing import PriceTable
from hitline.domain.sparse import TextVocabulary
from hitline.errors import ConfigError, InputError
from hitline.jobs.options import BatchOptions
from hitline.providers.factory import Providers, build_providers
from hitline.providers.ratelimit import Limiter
from hitline.store.index import HitIndex

__all__ = ["Runtime", "JobContext", "BatchInfo", "DbCache", "get_runtime", "reset_runtime"]


class DbCache:
    """line.Cache over the job table's cache, so every worker process sees the same entries."""

    def __init__(self, db_url: str) -> None:
        self.db_url = db_url

    def get(self, key: str) -> Any | None:
        with connection_scope(self.db_url) as c:
            return crud.cache_get(c, key)

    def put(self, key: str, value: Any) -> None:
        with connection_scope(self.db_url) as c:
            crud.cache_put(c, key, value)


@dataclass
class Runtime:
    """One per process (a forked worker child builds its own). The worker installs its rate limiter
    here when it starts (workers/); without one (plain-function tests) provider calls are not limited."""

    settings: Settings
    limiter: Limiter | None = None
    _providers: dict[str, Providers] = field(default_factory=dict)
    _indexes: dict[str, HitIndex] = field(default_factory=dict)
    _vocabularies: dict[str, TextVocabulary] = field(default_factory=dict)
    _presets: dict[tuple[str, ...], list[Preset]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def db_url(self) -> str:
        return self.settings.db_url()

    @cached_property
    def cache(self) -> DbCache:
        return DbCache(self.db_url)

    @cached_property
    def prices(self) -> PriceTable:
        return PriceTable.load(self.settings.prices_file)

    def presets(self, names: list[str]) -> list[Preset]:
        """Read from the presets file once per process and list of names, like the price table."""
        key = tuple(names)
        if key not in self._presets:
            self._presets[key] = load_presets(names, self.settings.presets_file)
        return list(self._presets[key])

    def providers(self, options: BatchOptions) -> Providers:
        """The providers a batch asked for, built from this process's own settings (its key, its base
        URL): a worker that cannot serve the batch's provider raises ConfigError, failing the job visibly."""
        kind = options.provider
        models = options.models
        key = f"{kind}:{sorted(models.items())}"
        with self._lock:
            if key not in self._providers:
                s = self.settings.model_copy(update={"provider": kind, **models})
                self._providers[key] = build_providers(s, limiter=self.limiter if kind == "openrouter" else None)
            return self._providers[key]

    def index(self, options: BatchOptions) -> HitIndex:
        emb = self.providers(options).embedder
        name = self.settings.collection_for(emb.model)
        with self._lock:
            if name not in self._indexes:
                self._indexes[name] = HitIndex(self.settings.milvus(), name, emb.dim, emb.model)
            return self._indexes[name]

    def vocabulary(self, version: str) -> TextVocabulary:
        if version not in self._vocabularies:
            data = self.cache.get(f"vocab:{version}")
            if data is None:
                raise ConfigError(f"text vocabulary {version} is not in the job table")
            vocab = TextVocabulary(data["vocabulary"], data["idf"], data["params"])
            if vocab.version != version:
                raise ConfigError(f"text vocabulary {version} in the job table does not match its content")
            self._vocabularies[version] = vocab
        return self._vocabularies[version]


@dataclass(frozen=True)
class BatchInfo:
    id: str
    options: BatchOptions
    out_dir: Path
    budget_usd: float | None
    vocab_version: str | None

    @classmethod
    def of(cls, b: BatchRow | Row[tuple[str, dict[str, Any], str, float | None, str | None]]) -> BatchInfo:
        """From the claim's batch columns or a SELECT of them (_BATCH)."""
        return cls(b.id, BatchOptions.read(b.options), Path(b.out_dir), b.budget_usd, b.vocab_version)


_BATCH = select(Batch.id, Batch.options, Batch.out_dir, Batch.budget_usd, Batch.vocab_version).where(
    Batch.id == bindparam("bid")
)


def load_batch(s: Db, batch_id: str) -> BatchInfo:
    """Read on every claim (a resume may raise the budget while workers run); one plain SELECT."""
    b = s.execute(_BATCH, {"bid": batch_id}).first()
    if b is None:
        raise InputError(f"no batch {batch_id!r}")
    return BatchInfo.of(b)


def claimed_batch(s: Db, claimed: Claim) -> BatchInfo:
    """The claimed job's batch: read with the claim (PostgreSQL), else now."""
    return BatchInfo.of(claimed.batch) if claimed.batch is not None else load_batch(s, claimed.batch_id)


@dataclass
class JobContext:
    """Everything one stage of one job works with, loaded once when the stage is claimed."""

    rt: Runtime
    batch: BatchInfo
    job_id: int
    kind: str
    item_id: str
    stage: str
    row: dict[str, Any]
    result: dict[str, Any]
    attempt: int = 0  # retryable provider errors this stage has had before this run (the task's count)

    @classmethod
    def of(cls, rt: Runtime, job: Claim, batch: BatchInfo, attempt: int = 0) -> JobContext:
        return cls(
            rt, batch, job.id, job.kind, job.item_id, job.stage, dict(job.row or {}), dict(job.result or {}), attempt
        )

    @property
    def last_attempt(self) -> bool:
        """This run is the last the retry budget (Settings.provider_attempts) allows."""
        return self.attempt + 1 >= self.rt.settings.provider_attempts

    @property
    def options(self) -> BatchOptions:
        return self.batch.options

    @cached_property
    def product(self) -> HitProduct | NewProduct:
        cls = HitProduct if self.kind == "hit" else NewProduct
        return cls(**{**self.row, "image_path": Path(self.row["image_path"])})

    @property
    def hit(self) -> HitProduct:
        """A catalog job's product."""
        p = self.product
        if not isinstance(p, HitProduct):
            raise TypeError(f"job {self.job_id} is a {self.kind} job, not a catalog hit")
        return p

    @property
    def new_product(self) -> NewProduct:
        """A SKU job's product."""
        p = self.product
        if not isinstance(p, NewProduct):
            raise TypeError(f"job {self.job_id} is a {self.kind} job, not a new product")
        return p

    @cached_property
    def image_sha(self) -> str:
        return file_sha256(self.product.image_path)

    @property
    def out_dir(self) -> Path:
        """OUT/<batch>/<item>: where this SKU's files go."""
        return self.batch.out_dir / self.batch.id / self.item_id

    @cached_property
    def providers(self) -> Providers:
        return self.rt.providers(self.options)

    @property
    def presets(self) -> list[Preset]:
        """The presets recorded with the batch at submission (hitline.jobs.options); a batch from before
        they were recorded: this worker's presets file."""
        recorded = self.options.resolved_presets()
        return recorded if recorded is not None else self.rt.presets(self.options.presets)

    @property
    def vocabulary(self) -> TextVocabulary:
        if not self.batch.vocab_version:
            raise ConfigError(f"batch {self.batch.id} has no text vocabulary")
        return self.rt.vocabulary(self.batch.vocab_version)


_runtimes: dict[int, Runtime] = {}
_runtimes_lock = threading.Lock()


def get_runtime() -> Runtime:
    """This process's Runtime (a forked worker child builds its own)."""
    pid = os.getpid()
    with _runtimes_lock:
        if pid not in _runtimes:
            s = get_settings()
            init_db(s.db_url())
            _runtimes[pid] = Runtime(s)
        return _runtimes[pid]


def reset_runtime() -> None:
    with _runtimes_lock:
        _runtimes.clear()
    get_settings.cache_clear()
