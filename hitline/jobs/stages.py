"""The work of each stage for one job (or one chunk of catalog jobs), on top of pipeline.run_step."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from db import crud
from db.models import Job
from db.session import session_scope
from hitline import line as stages
from hitline.domain.models import Hit, StyleAnalysis
from hitline.errors import BudgetExceeded, InputError, RetryableProviderError
from hitline.domain.imaging import load_presets
from hitline.jobs.heartbeat import held_claims
from hitline.jobs.context import (CatalogNotReady, Context, _hit, _sku, batch_info, run_step, vocabulary)

log = logging.getLogger(__name__)


def embed_hits(ctx: Context, job_ids: list[int]) -> dict[int, str]:
    """Dense vectors for a chunk of catalog products: one batched provider call for the images not in
    the cache. An unreadable image fails its own job only."""
    with session_scope(ctx.db_url) as s:
        claimed = [j for j in (crud.claim(s, i, "embed") for i in job_ids) if j is not None]
    if not claimed:
        return {}
    options = batch_info(ctx, claimed[0].batch_id)["options"]
    embedder = ctx.providers(options).embedder
    outcome: dict[int, str] = {}
    try:
        with held_claims(ctx.db_url, [j.id for j in claimed], "embed", ctx.settings.heartbeat_s):
            _, cost = stages.embed_images(embedder, [Path(j.row["image_path"]) for j in claimed], ctx.cache)
        ok = claimed
    except InputError:
        # find the bad image(s): embed one by one (cached vectors make this cheap)
        ok, cost = [], 0.0
        for j in claimed:
            try:
                cost += stages.embed_images(embedder, [Path(j.row["image_path"])], ctx.cache)[1]
                ok.append(j)
            except InputError as e:
                with session_scope(ctx.db_url) as s:
                    crud.set_state(s, j.id, "embed", "failed", str(e))
                outcome[j.id] = "failed"
    except RetryableProviderError as e:
        with session_scope(ctx.db_url) as s:
            for j in claimed:
                crud.set_state(s, j.id, "embed", "retrying", str(e))
        raise
    with session_scope(ctx.db_url) as s:
        for j in ok:
            crud.advance(s, j.id, "embed", "index", {"key": stages.embed_key(embedder.model, Path(j.row["image_path"])),
                                                     "cost_usd": cost / len(ok)})
            outcome[j.id] = "done"
    if cost > 0:
        _record_cost(ctx, claimed[0].batch_id, ok[0].id, "embed", f"embed-chunk:{min(job_ids)}", embedder.model, cost)
    return outcome


def _embed_one(job: Job, options: dict[str, Any]) -> dict[str, Any]:
    from hitline.jobs.context import get_context

    ctx = get_context()
    path = Path(job.row["image_path"])
    embedder = ctx.providers(options).embedder
    _, cost = stages.embed_images(embedder, [path], ctx.cache)
    if cost > 0:
        _record_cost(ctx, job.batch_id, job.id, "embed", f"embed:{job.id}", embedder.model, cost)
    return {"key": stages.embed_key(embedder.model, path), "cost_usd": cost}


def _record_cost(ctx: Context, batch_id: str, job_id: int, stage: str, key: str, model: str, cost: float) -> None:
    """Record the cost of an embed/analyze call once per key (the budget guards renders, the big spend)."""
    with session_scope(ctx.db_url) as s:
        crud.reserve(s, batch_id, job_id, stage, key, model, cost, None)
        crud.settle(s, batch_id, key, cost)


def index_hits(ctx: Context, batch_id: str, job_ids: list[int]) -> int:
    """Upsert a chunk of embedded catalog products; flush once the whole catalog is in."""
    info = batch_info(ctx, batch_id)
    vocab = vocabulary(ctx, info["vocab_version"])
    index = ctx.index(info["options"])
    # one upsert for the whole chunk (idempotent by product_id), then each job records its outcome
    with session_scope(ctx.db_url) as s:
        todo = [j for j in crud.jobs(s, batch_id, "hit", job_ids) if j.stage == "index" and j.state != "failed"]
    items = {}
    for job in todo:
        vec = ctx.cache.get((job.result.get("embed") or {}).get("key", ""))
        if vec is not None:
            items[job.id] = (_hit(job), vec)
    if items:
        stages.index_hits(index, vocab, [p for p, _ in items.values()], [v for _, v in items.values()])

    def work(job: Job, options: dict[str, Any]) -> dict[str, Any]:
        if job.id not in items:
            raise InputError("embedding missing from the cache: re-run the embed stage")
        return {"collection": index.collection}

    outcome = {j: run_step(ctx, j, "index", work) for j in job_ids}
    with session_scope(ctx.db_url) as s:
        remaining = crud.catalog_open(s, batch_id)
    if remaining == 0:
        index.flush()
        ctx.cache.put(f"flushed:{batch_id}", True)
    return sum(1 for o in outcome.values() if o == "done")


def embed_sku(ctx: Context, job_id: int) -> str:
    return run_step(ctx, job_id, "embed", _embed_one)


def index_sku(ctx: Context, job_id: int) -> str:
    """A SKU's index stage: the catalog it will be searched against is indexed and flushed. Until then
    CatalogNotReady sends the task back to wait (not counted as an attempt)."""
    def work(job: Job, options: dict[str, Any]) -> dict[str, Any]:
        with session_scope(ctx.db_url) as s:
            waiting = crud.catalog_open(s, job.batch_id)
        if waiting:
            raise CatalogNotReady(f"{waiting} catalog products still being indexed")
        index = ctx.index(options)
        if ctx.cache.get(f"flushed:{job.batch_id}") is None:
            # the last catalog chunk flushes; this covers a chunk whose chain gave up before its index task
            index.flush()
            ctx.cache.put(f"flushed:{job.batch_id}", True)
        return {"collection": index.collection, "catalog_rows": index.count()}

    return run_step(ctx, job_id, "index", work)


def retrieve(ctx: Context, job_id: int) -> str:
    def work(job: Job, options: dict[str, Any]) -> dict[str, Any]:
        info = batch_info(ctx, job.batch_id)
        vec = ctx.cache.get(job.result["embed"]["key"])
        product = _sku(job)
        r = stages.retrieve(ctx.index(options), vocabulary(ctx, info["vocab_version"]), product, vec,
                            int(options["top_k"]), int(options["min_sales"]))
        if not r.hits:
            raise InputError("the catalog has no product to take the look from (index empty)")
        record = stages.retrieved_record(r)
        _write_json(Path(info["out_dir"]) / job.batch_id / job.item_id / "retrieved.json", record)
        return record

    return run_step(ctx, job_id, "retrieve", work)


def analyze(ctx: Context, job_id: int) -> str:
    def work(job: Job, options: dict[str, Any]) -> dict[str, Any]:
        info = batch_info(ctx, job.batch_id)
        hits = [Hit(**{**h, "found_by": tuple(h["found_by"])}) for h in job.result["retrieve"]["hits"]]
        analyzer = ctx.providers(options).analyzer
        analysis, cached = stages.analyze(analyzer, hits, _sku(job), ctx.cache)
        if analysis.cost_usd > 0:
            _record_cost(ctx, job.batch_id, job.id, "analyze", f"analyze:{job.id}", analyzer.model, analysis.cost_usd)
        style = analysis.style
        _write_json(Path(info["out_dir"]) / job.batch_id / job.item_id / "style.json", style.model_dump())
        return {"style": style.model_dump(), "cached": cached, "cost_usd": analysis.cost_usd}

    return run_step(ctx, job_id, "analyze", work)


def render(ctx: Context, job_id: int) -> str:
    def work(job: Job, options: dict[str, Any]) -> dict[str, Any]:
        from hitline.domain.imaging import contact_sheet
        from hitline.domain.pricing import PriceTable

        info = batch_info(ctx, job.batch_id)
        renderer = ctx.providers(options).renderer
        prices = PriceTable.load(ctx.settings.prices_file)
        product = _sku(job)
        style = StyleAnalysis.model_validate(job.result["analyze"]["style"])
        refs = [Path(h["image_path"]) for h in job.result["retrieve"]["hits"]]
        flat_sha = stages.file_sha256(product.image_path)
        ref_shas = [stages.file_sha256(p) for p in refs]
        sku_dir = Path(info["out_dir"]) / job.batch_id / job.item_id
        job_ref = _RenderJob(ctx, job.batch_id, job.id, info["budget_usd"], renderer.model)
        outputs = []
        for preset in load_presets(options["presets"], ctx.settings.presets_file):
            key = stages.render_key(renderer.model, flat_sha, ref_shas, style, preset)
            dest = sku_dir / f"{preset.name}-{key[:12]}.png"
            price = prices.image_cost(renderer.model, preset.size)
            try:
                path, cost, fresh = stages.render_preset(renderer, product, refs, style, preset, dest,
                                                         before_call=partial(job_ref.reserve, key, price, preset.name))
            except BudgetExceeded:
                raise
            except BaseException:
                job_ref.release(key)
                raise
            outputs.append({"preset": preset.name, "path": str(path), "width": preset.width,
                            "height": preset.height, "cost_usd": job_ref.settle(key, cost if fresh else None),
                            "key": key})
        _write_contact_sheet(product.image_path, refs, outputs, sku_dir / "contact_sheet.png", contact_sheet)
        return {"outputs": outputs}

    return run_step(ctx, job_id, "render", work)


@dataclass
class _RenderJob:
    """Budget bookkeeping of one SKU's renders: reserve before the call, settle or release after."""

    ctx: Context
    batch_id: str
    job_id: int
    budget_usd: float | None
    model: str

    def reserve(self, key: str, price: float, preset: str) -> None:
        with session_scope(self.ctx.db_url) as s:
            verdict = crud.reserve(s, self.batch_id, self.job_id, "render", key, self.model, price, self.budget_usd)
        if verdict == "over":
            raise BudgetExceeded(f"budget ${self.budget_usd:.2f} reached before {preset} (${price:.3f}); "
                                 "resume with a higher --budget")

    def release(self, key: str) -> None:
        with session_scope(self.ctx.db_url) as s:
            crud.settle(s, self.batch_id, key, keep=False)

    def settle(self, key: str, cost: float | None) -> float:
        """Settle a fresh render (cost given) and return what this image was charged, now or before."""
        with session_scope(self.ctx.db_url) as s:
            # cost None = the image was on disk already. If its reservation is still open, the call that
            # wrote it was cut before settling (worker killed, job table down) and was paid: settle it
            # at the reserved price (a no-op for a charge that is settled)
            crud.settle(s, self.batch_id, key, cost)
            return crud.charged(s, self.batch_id, key)


def _write_contact_sheet(flatlay: Path, refs: list[Path], outputs: list[dict[str, Any]], dest: Path, sheet) -> None:  # noqa: ANN001
    from PIL import Image

    with Image.open(flatlay) as f:
        ref_imgs = [Image.open(p) for p in refs]
        outs = [(o["preset"], Image.open(o["path"])) for o in outputs]
        img = sheet(f, ref_imgs, outs)
    tmp = dest.with_suffix(".part")
    img.save(tmp, format="PNG")
    tmp.replace(dest)


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str))
    tmp.replace(path)
