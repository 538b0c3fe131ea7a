"""Settings, read once from the environment (prefix HITLINE_) and an optional .env file."""

from __future__ import annotations

import tomllib
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HITLINE_", env_file=".env", extra="ignore")

    # where embedded mode keeps its SQLite job table, Milvus Lite file and caches
    data_dir: Path = Path("hitline-data")
    # empty = sqlite file under data_dir; production: postgresql+psycopg://user@host/db
    database_url: str = ""
    # empty = in-memory broker with an in-process worker (embedded mode)
    broker_url: str = ""
    # empty = Milvus Lite file under data_dir; distributed: http://host:19530
    milvus_uri: str = ""
    # empty = one collection per embedder ("hits_<model>"), so switching providers never mixes vectors
    collection: str = ""
    # redis URL of the shared rate limiter; empty = the broker when it is redis, else in-process
    redis_url: str = ""

    provider: Literal["auto", "local", "openrouter"] = "auto"
    openrouter_api_key: SecretStr | None = None
    openrouter_base_url: str = "https://openrouter.ai/api/v1"
    openrouter_timeout_s: float = 120.0
    # the one retry budget: HTTP attempts per provider call (per image, per analysis, per embed batch),
    # spent as Celery retries of the stage's task, each visible in Flower as RETRY with the provider's error
    provider_attempts: int = Field(7, ge=1)
    # a rate-limit wait longer than this gives the worker thread back: the task retries after the wait
    rate_wait_max_s: float = Field(5.0, ge=0)
    embed_model: str = "nvidia/llama-nemotron-embed-vl-1b-v2"
    analyze_model: str = "qwen/qwen3.5-397b-a17b"
    render_model: str = "google/gemini-3.1-flash-image-preview"
    # an output whose re-render still fails the gate may be rendered once more by a stronger model
    # (`hitline run --escalate pro`); "none" keeps it for review
    escalate: Literal["none", "pro"] = "none"
    escalate_model: str = "google/gemini-3-pro-image-preview"
    # staged: a scene plate per (references, ratio group) made once per batch, the product placed into it
    mode: Literal["direct", "staged"] = "direct"
    # dimension the embed model returns (a mismatch is a ConfigError) and images per /embeddings call
    embed_dim: int = 2048
    embed_batch_size: int = 16

    top_k: int = 3
    min_sales: int = 1500
    presets: list[str] = Field(default_factory=lambda: ["amazon_main", "shopify", "thumbnail", "banner"])
    # file overriding the shipped presets / prices / rate limits (TOML, same shape as hitline/data/*.toml)
    presets_file: Path | None = None
    # input checks before and a judge after every render (HITLINE_QUALITY_GATE=0 turns both off)
    quality_gate: bool = True
    prices_file: Path | None = None
    limits_file: Path | None = None

    worker_concurrency: int = 4
    # fair sharing between batches (hitline/domain/fairness.py): a SKU's messages carry a priority from its
    # position in its batch, so a small batch is not queued behind a big one's thousands (Redis broker;
    # HITLINE_FAIR_SHARING=0: first come, first served)
    fair_sharing: bool = True
    # automatic reconciliation (hitline/jobs/reconcile.py, run by every worker): a running stage renews
    # its claim every heartbeat_s; a claim silent for claim_lease_s is a dead worker's and is taken back;
    # a pending job untouched for reconcile_grace_s with no message in the (Redis) broker is re-sent.
    # Passes every reconcile_every_s (0 = off). Lost work restarts within lease + every (90 s by default).
    heartbeat_s: float = 10.0
    claim_lease_s: float = 60.0
    reconcile_every_s: float = 30.0
    reconcile_grace_s: float = 60.0

    # HTTP API / dashboard (`hitline serve`)
    # where batches submitted over HTTP write their outputs; empty = <data_dir>/out
    api_out_dir: Path | None = None
    # folders a caller over HTTP or the Celery contract may name (catalog, new products), besides its own
    # tenant's uploads (hitline.jobs.shared); empty (the default) = uploads and its catalogs by name only
    api_shared_dirs: list[Path] = Field(default_factory=list)
    api_max_body_bytes: int = 1_000_000  # JSON bodies
    api_max_upload_bytes: int = 200_000_000  # a multipart upload (CSV + zip), and the zip's unpacked size
    # uploads (and the files of uploads whose submission was refused) are removed after this many days;
    # partial unpacks (*.part) at once
    upload_retention_days: float = 30.0
    # shown as a link on the dashboard (Celery-level monitoring); empty = no link
    flower_url: str = ""

    # webhooks (hitline/jobs/webhooks.py): the key endpoint secrets are derived from (every process of a
    # deployment needs the same; empty = a key made once under data_dir), delivery attempts before an
    # event is dead, backoff between attempts (doubling from webhook_backoff_s, with jitter), timeout
    webhook_key: SecretStr | None = None
    webhook_attempts: int = Field(8, ge=1)
    webhook_backoff_s: float = Field(5.0, gt=0)
    webhook_backoff_max_s: float = Field(600.0, gt=0)
    webhook_timeout_s: float = Field(10.0, gt=0)
    # a delivery whose message is lost (a killed worker) is sent again this long after it was due
    webhook_lease_s: float = Field(60.0, gt=0)
    # export (hitline/jobs/export.py): where a shop fetches exported images from, e.g.
    # https://cdn.example.com/hitline (the Shopify CSV's Image Src is <base>/<batch>/<file>)
    public_base_url: str = ""

    def out_dir_for_api(self) -> Path:
        return (self.api_out_dir or self.data_dir / "out").resolve()

    def resolved_provider(self) -> Literal["local", "openrouter"]:
        if self.provider == "auto":
            return "openrouter" if self.openrouter_api_key else "local"
        return self.provider

    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'jobs.sqlite').resolve()}"

    def collection_for(self, embed_model: str) -> str:
        import re

        return self.collection or "hits_" + re.sub(r"[^0-9A-Za-z]+", "_", embed_model).strip("_")[:200]

    def milvus(self) -> str:
        return self.milvus_uri or str((self.data_dir / "milvus.db").resolve())


@lru_cache
def get_settings() -> Settings:
    return Settings()


def load_data_file(name: str, override: Path | None = None) -> dict[str, Any]:
    """A shipped TOML table from hitline/data, or the user's file in its place."""
    if override is not None:
        return tomllib.loads(Path(override).read_text())
    return tomllib.loads(resources.files("hitline.data").joinpath(name).read_text())
