"""The stage registry - the one list of the line's stages (name, kind, queue, work, retry policy) that
routing, chains, resume, the CLI and the benchmarks derive from - and the work each stage does for one
job (or one chunk of catalog jobs) on top of hitline.jobs.runner.

Adding a stage: write its work function here, add a Stage to SKU_LINE (or CATALOG_LINE), and handle its
result where it is read (the next stage or the report). The Celery task, its queue, routing, chains and
resume follow from the registry.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

from db import crud
from db.session import connection_scope
from hitline import line
from hitline.domain import fairness
from hitline.domain.images import file_sha256
from hitline.domain.models import Hit, NewProduct, Preset, RenderedImage, StyleAnalysis
from hitline.domain.render_plan import plan_renders
from hitline.domain.vectors import Vector
from hitline.errors import BudgetExceeded, HitlineError, InputError, NotReady
from hitline.jobs import catalogs, localise, quality
from hitline.jobs.options import BatchOptions
from hitline.jobs.context import JobContext, Runtime, load_batch
from hitline.jobs.results import (
    AnalyzeResult,
    CatalogIndexResult,
    EmbedResult,
    IndexResult,
    RenderResult,
    R,
    RetrieveResult,
    StageResult,
    read,
)
from hitline.jobs.runner import Outcome, run_chunk, run_step
from hitline.providers.base import StagedRenderer

__all__ = [
    "Stage",
    "RetryPolicy",
    "SKU_LINE",
    "CATALOG_LINE",
    "STAGES",
    "QUEUES",
    "line_of",
    "first_stage",
    "stage",
    "result_stage",
    "OUTPUT_QUEUE",
    "embed_catalog",
    "index_catalog",
    "embed",
    "wait_for_catalog",
    "retrieve",
    "analyze",
    "render",
]


# --- catalog chunks: one batched provider call, one upsert ----------------------------------------


def embed_catalog(jobs: list[JobContext]) -> dict[int, dict[str, Any] | HitlineError]:
    """Dense vectors for a chunk of catalog products: one batched call for the images not in the cache.
    An unreadable image fails its own job only."""
    rt = jobs[0].rt
    embedder = jobs[0].providers.embedder
    results: dict[int, dict[str, Any] | HitlineError] = {}
    try:
        shas = [jc.image_sha for jc in jobs]
        _, cost = line.embed_images(embedder, [jc.product.image_path for jc in jobs], rt.cache, shas)
        ok = jobs
    except (InputError, OSError):
        # find the bad image(s): one by one (cached vectors make this cheap)
        ok, cost = [], 0.0
        for jc in jobs:
            try:
                cost += line.embed_images(embedder, [jc.product.image_path], rt.cache, [jc.image_sha])[1]
                ok.append(jc)
            except (InputError, OSError) as e:
                results[jc.job_id] = e if isinstance(e, InputError) else InputError(f"cannot read image: {e}")
    for jc in ok:
        results[jc.job_id] = {"key": line.embed_key(embedder.model, jc.image_sha), "cost_usd": cost / len(ok)}
    if cost > 0 and ok:
        first = ok[0]
        _record_cost(
            rt, first, first.stage, f"{first.stage}-chunk:{min(jc.job_id for jc in jobs)}", embedder.model, cost
        )
    return results


def index_catalog(jobs: list[JobContext]) -> dict[int, dict[str, Any] | HitlineError]:
    """Upsert a chunk of embedded catalog products (idempotent by product_id); the chunk that finishes
    the catalog flushes, so searches run on sealed segments."""
    rt, batch = jobs[0].rt, jobs[0].batch
    index = rt.index(batch.options)
    results: dict[int, dict[str, Any] | HitlineError] = {}
    items: list[tuple[JobContext, Vector]] = []
    for jc in jobs:
        embedded = read(jc.result, EmbedResult)
        vec = line.cached_vector(rt.cache, embedded.key) if embedded else None
        if vec is None:
            results[jc.job_id] = InputError("embedding missing from the cache: re-run the embed stage")
        else:
            items.append((jc, vec))
    if items:
        # live from the batch's catalog version on (the rows that version adds or changes)
        line.index_hits(
            index,
            jobs[0].vocabulary,
            [jc.hit for jc, _ in items],
            [v for _, v in items],
            catalogs.scope_of(batch.options),
        )
    for jc, _ in items:
        results[jc.job_id] = {"collection": index.collection}
    return results


def catalog_indexed(rt: Runtime, batch_id: str, options: BatchOptions | None = None) -> dict[str, Any] | None:
    """The batch's pinned catalog version once it is searchable ({"rows": n, ...}), None while it is being
    built (by this batch's catalog jobs or another batch's). The first caller to see a version's rows all
    written finishes it (hitline.jobs.catalogs.finish_version); after that this reads one cached flag."""
    key = f"catalog-ready:{batch_id}"
    facts = rt.cache.get(key)
    if isinstance(facts, dict):
        return facts
    if options is None:
        with connection_scope(rt.db_url) as c:
            options = load_batch(c, batch_id).options
    pinned = options.catalog
    if pinned is None or pinned.version_id is None:
        raise InputError(
            f"batch {batch_id} names no catalog version (made before catalogs were versioned): submit it again"
        )
    index = rt.index(options)
    done = catalogs.finish_version(rt, pinned.version_id, index)
    if done is None:
        return None
    facts = {**done, "rows": done["catalog_rows"]}
    rt.cache.put(key, facts)
    return facts


# --- one SKU's stages: work(JobContext) -> the stage's result ---------------------------------------


def embed(jc: JobContext) -> dict[str, Any]:
    embedder = jc.providers.embedder
    _, cost = line.embed_images(embedder, [jc.product.image_path], jc.rt.cache, [jc.image_sha])
    if cost > 0:
        _record_cost(jc.rt, jc, jc.stage, f"{jc.stage}:{jc.job_id}", embedder.model, cost)
    return {"key": line.embed_key(embedder.model, jc.image_sha), "cost_usd": cost}


def wait_for_catalog(jc: JobContext) -> dict[str, Any]:
    """The SKU's index stage: the catalog it will be searched against is indexed and flushed. Until then
    NotReady sends the task back to wait (not counted as an attempt)."""
    catalog = catalog_indexed(jc.rt, jc.batch.id, jc.options)
    if catalog is None:
        raise NotReady("catalog products still being indexed")
    return {
        "collection": jc.rt.index(jc.options).collection,
        "catalog_rows": catalog["rows"],
        "catalog": catalog["catalog"],
        "catalog_version": catalog["version"],
    }


def retrieve(jc: JobContext) -> dict[str, Any]:
    vec = line.cached_vector(jc.rt.cache, _earlier(jc, EmbedResult).key)
    if vec is None:
        raise InputError("embedding missing from the cache: re-run the embed stage")
    r = line.retrieve(
        jc.rt.index(jc.options),
        jc.vocabulary,
        jc.new_product,
        vec,
        jc.options.top_k,
        jc.options.min_sales,
        catalogs.scope_of(jc.options),
    )
    if not r.hits:
        raise InputError("the catalog has no product to take the look from (index empty)")
    record = line.retrieved_record(r)
    scope = catalogs.scope_of(jc.options)
    if scope is not None:  # which catalog version every hit comes from
        record["catalog"] = {"id": scope.catalog, "version": scope.seq}
    _write_json(jc.out_dir / "retrieved.json", record)
    return record


def analyze(jc: JobContext) -> dict[str, Any]:
    hits = [
        Hit(
            h.product_id,
            h.score,
            h.image_path,
            h.category,
            h.sales_count,
            h.description,
            tuple(h.found_by),
            h.dense_rank,
            h.sparse_rank,
        )
        for h in _earlier(jc, RetrieveResult).hits
    ]
    analyzer = jc.providers.analyzer
    analysis, cached = line.analyze(analyzer, hits, jc.new_product, jc.rt.cache)
    if analysis.cost_usd > 0:
        _record_cost(jc.rt, jc, jc.stage, f"{jc.stage}:{jc.job_id}", analyzer.model, analysis.cost_usd)
    _write_json(jc.out_dir / "style.json", analysis.style.model_dump())
    return {"style": analysis.style.model_dump(), "cached": cached, "cost_usd": analysis.cost_usd}


def render(jc: JobContext) -> dict[str, Any]:
    """One image per preset, one paid call per render-plan group (hitline/domain/render_plan.py): presets
    that share an aspect ratio are resized from the group's largest render. Every paid call is reserved
    against the budget first; an image with the same inputs already paid for in this batch (another SKU
    with the same flat-lay, hits and style) is reused, not rendered again."""
    renderer = jc.providers.renderer
    style = _earlier(jc, AnalyzeResult).style
    refs = [Path(h.image_path) for h in _earlier(jc, RetrieveResult).hits]
    ref_shas = [file_sha256(p) for p in refs]
    budget = RenderBudget(jc, renderer.model)
    presets, inputs, gate = jc.presets, None, None
    if jc.rt.settings.quality_gate:  # hitline/jobs/quality.py: input checks, then a judge per output
        presets, inputs = quality.check_inputs(jc.product.image_path, presets)
        escalation = jc.providers.escalation if jc.options.escalate == "pro" else None
        gate = quality.GateRun(jc, budget, renderer, jc.providers.judge, refs, style, ref_shas, escalation)
    presets, finals = draft_presets(presets, jc.options.draft)
    if finals:
        gate = None  # a draft is judged by a person; its final take by the gate (hitline.jobs.review.rerender)
    # planned after the input checks: a preset they downsize or fail changes its ratio group's source
    # in text mode "model" the presets with words are rendered per locale (hitline/jobs/localise.py)
    plan = plan_renders(
        localise.strip_text_presets(presets, jc.options), lambda size: jc.rt.prices.image_cost(renderer.model, size)
    )
    made: dict[str, dict[str, Any]] = {}
    staged = renderer if jc.options.mode == "staged" and isinstance(renderer, StagedRenderer) else None
    for preset in plan.renders:
        if staged is not None and preset.background != "white":  # a white preset has no scene to stage
            made[preset.name] = _staged_output(jc, budget, staged, refs, ref_shas, style, preset)
        else:
            key = line.render_key(renderer.model, jc.image_sha, ref_shas, style, preset)
            dest = jc.out_dir / f"{preset.name}-{key[:12]}.png"
            path, charged, reused_from = budget.render(renderer, refs, style, preset, key, dest)
            made[preset.name] = _output(preset, path, charged, key, reused_from=reused_from)
        if gate is not None:
            made[preset.name].update(quality.gate_output(gate, preset, made[preset.name]))
    for preset in presets:
        if preset.name in plan.derived:  # resized from its source's kept image: no call, no charge
            source = made[plan.derived[preset.name]]
            key = line.derived_key(source["key"], preset)
            path = line.derive_preset(Path(source["path"]), preset, jc.out_dir / f"{preset.name}-{key[:12]}.png")
            made[preset.name] = _output(preset, path, 0.0, key, derived_from=source["preset"])
            if gate is not None:  # its own rules; a failure is rendered on its own (quality.gate_output)
                made[preset.name].update(quality.gate_output(gate, preset, made[preset.name]))
    # one output per (preset, locale) for presets with words; text-free presets once for every locale
    outputs, text = localise.localise(jc, presets, made, gate, budget)
    # what made the outputs (hitline/jobs/review.py keeps it per output and exports it beside the images)
    provenance = {
        "flatlay_sha256": jc.image_sha,
        "flatlay": jc.product.image_path.name,
        "references": [
            {"product_id": h.product_id, "sha256": sha} for h, sha in zip(_earlier(jc, RetrieveResult).hits, ref_shas)
        ],
        "prompt": style.prompt,
        "model": renderer.model,
        "model_version": getattr(renderer, "version", None) or _hitline_version(),
        **({"draft": {"size": jc.options.draft, "finals": finals}} if finals else {}),
    }
    # the contact sheet is drawn after the SKU is done (hitline/jobs/sheets.py): not on its critical path
    result = {
        "outputs": outputs,
        "plan": plan.summary(),
        "provenance": provenance,
        **({"inputs": inputs} if inputs is not None else {}),
    }
    if text:
        list_price = jc.options.models.get("render_model", renderer.model)  # Nano Banana 2 for local too
        cost = lambda size: jc.rt.prices.image_cost(list_price, size)  # noqa: E731
        text["saving"] = localise.saving_for_locales(presets, cost, plan_renders(presets, cost).cost_usd)
        result["text"] = text
    return {**result, "digest": quality.digest(result)}


def _staged_output(
    jc: JobContext,
    budget: "RenderBudget",
    renderer: StagedRenderer,
    refs: list[Path],
    ref_shas: list[str],
    style: StyleAnalysis,
    preset: Preset,
) -> dict[str, Any]:
    """Staged mode: the scene plate of (these references, this ratio group) - made once per batch under
    OUT/<batch>/plates/ by its content key, reserved and charged once on the charge table, so another SKU or
    a redelivered task finds it - then the product placed into it (one call, charged to this SKU)."""
    order = sorted(range(len(refs)), key=lambda i: ref_shas[i])  # the plate does not depend on the hits' order
    prompt = line.plate_prompt(style, preset)
    pkey = line.plate_key(renderer.model, ref_shas, preset, prompt)
    plate_dest = jc.batch.out_dir / jc.batch.id / "plates" / f"{pkey[:16]}.png"
    plate, plate_cost, _ = budget.render(
        _PlateCall(renderer), [refs[i] for i in order], style, preset, f"plate-{pkey}", plate_dest
    )
    key = line.render_key(renderer.model, jc.image_sha, [f"plate:{pkey}"], style, preset)
    dest = jc.out_dir / f"{preset.name}-{key[:12]}.png"
    path, charged, reused_from = budget.render(_PlaceCall(renderer, plate), refs, style, preset, key, dest)
    return {**_output(preset, path, charged + plate_cost, key, reused_from=reused_from), "plate": pkey}


@dataclass
class _PlateCall:
    """The renderer's scene-plate call in the shape RenderBudget.render calls (no product in it)."""

    inner: StagedRenderer

    @property
    def model(self) -> str:
        return self.inner.model

    def render(
        self, flatlay: Path, references: Sequence[Path], style: StyleAnalysis, product: NewProduct, preset: Preset
    ) -> RenderedImage:
        return self.inner.render_plate(references, style, preset)


@dataclass
class _PlaceCall:
    """The renderer's placement call (the plate + the flat-lay) in the shape RenderBudget.render calls."""

    inner: StagedRenderer
    plate: Path

    @property
    def model(self) -> str:
        return self.inner.model

    def render(
        self, flatlay: Path, references: Sequence[Path], style: StyleAnalysis, product: NewProduct, preset: Preset
    ) -> RenderedImage:
        return self.inner.place(self.plate, flatlay, style, product, preset)


def draft_presets(presets: list[Preset], draft: str | None) -> tuple[list[Preset], dict[str, str]]:
    """A draft batch (`--draft 512px`) renders every preset bigger than the draft size at that size first
    (each ratio group once, the render plan resizes the rest); returns the presets to render and, per
    drafted preset, the size its final take is rendered at once a person approves the draft."""
    if not draft:
        return presets, {}
    from hitline.domain.models import IMAGE_SIZES

    out, finals = [], {}
    for p in presets:
        if IMAGE_SIZES[p.size] > IMAGE_SIZES[draft]:
            finals[p.name] = p.size
            p = Preset.build(p.name, p.aspect_ratio, draft, p.background, low_res=p.low_res, rules=dict(p.rules))
        out.append(p)
    return out, finals


def _earlier(jc: JobContext, model: type[R]) -> R:
    """The result of an earlier stage of this job (the chain ran it before this one)."""
    found = read(jc.result, model)
    if found is None:
        raise InputError(f"no {model.__name__} recorded for job {jc.job_id}: re-run its earlier stages")
    return found


def _output(
    preset: Preset,
    path: Path,
    cost: float,
    key: str,
    *,
    reused_from: str | None = None,
    derived_from: str | None = None,
) -> dict[str, Any]:
    return {
        "preset": preset.name,
        "path": str(path),
        "width": preset.width,
        "height": preset.height,
        "size": preset.size,
        "cost_usd": cost,
        "key": key,
        "reused_from": reused_from,
        "derived_from": derived_from,
    }


@dataclass
class RenderBudget:
    """One SKU's render bookkeeping on the charge table: reserve before a call, settle or release after."""

    jc: JobContext
    model: str

    def reserve(self, key: str, price: float, preset: str, dest: Path) -> str | None:
        """None: go ahead and render (this job holds the reservation). Otherwise the path of the same image
        already paid for in this batch, now copied to dest. Raises BudgetExceeded, or NotReady while
        another job is rendering the same image."""
        b = self.jc.batch
        with connection_scope(self.jc.rt.db_url) as c:
            verdict = crud.reserve(c, b.id, self.jc.job_id, self.jc.stage, key, self.model, price, b.budget_usd)
        if verdict == "over":
            raise BudgetExceeded(
                f"budget ${b.budget_usd:.2f} reached before {preset} (${price:.3f}); resume with a higher --budget"
            )
        if verdict == "over_month":
            with connection_scope(self.jc.rt.db_url) as c:
                tenant = crud.tenant_of(c, b.id) or "?"
                monthly, month_spent = crud.tenant_month(c, tenant)
            raise BudgetExceeded(
                f"tenant {tenant}'s monthly budget ${monthly or 0:.2f} reached before {preset} "
                f"(${price:.3f}; ${month_spent:.2f} spent this month, UTC); resume after "
                f"`hitline tenant budget {tenant} --monthly N` or next month"
            )
        if verdict == "busy":
            raise NotReady(f"the same {preset} image is being rendered for another SKU of this batch")
        if verdict == "paid":
            source = self.jc.rt.cache.get(_output_key(b.id, key))
            if source is None or not Path(source).exists():
                raise InputError(
                    f"{preset}: the identical image paid for earlier in this batch is missing "
                    f"({source}); it is not rendered and charged twice"
                )
            if Path(source) != dest:
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, dest)
            return str(source)
        return None

    def render(
        self, renderer: Any, refs: list[Path], style: StyleAnalysis, preset: Preset, key: str, dest: Path
    ) -> tuple[Path, float, str | None]:
        """Reserve, render and settle one paid image (or take the identical one already paid for in this
        batch): (path, what this image was charged, the path it was reused from or None)."""
        reused_from = self.reserve(key, self.jc.rt.prices.image_cost(renderer.model, preset.size), preset.name, dest)
        if reused_from is not None:
            return dest, 0.0, reused_from
        try:
            path, cost, fresh = line.render_preset(renderer, self.jc.new_product, refs, style, preset, dest)
        except BaseException:
            self.release(key)
            raise
        return path, self.settle(key, cost if fresh else None, dest), None

    def release(self, key: str) -> None:
        with connection_scope(self.jc.rt.db_url) as c:
            crud.settle(c, self.jc.batch.id, key, keep=False)

    def for_model(self, model: str) -> RenderBudget:
        return replace(self, model=model)

    def settle(self, key: str, cost: float | None, dest: Path) -> float:
        """Settle a render (cost given when it was made now) and return what this image was charged."""
        with connection_scope(self.jc.rt.db_url) as c:  # one transaction: a charged image has its output key
            crud.cache_put(c, _output_key(self.jc.batch.id, key), str(dest))
            return crud.settle(c, self.jc.batch.id, key, cost)


def _hitline_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return "hitline " + version("hitline")
    except PackageNotFoundError:  # a checkout without an install
        return "hitline (source)"


def _output_key(batch_id: str, key: str) -> str:
    return f"render-out:{batch_id}:{key}"


def _record_cost(rt: Runtime, jc: JobContext, stage: str, key: str, model: str, cost: float) -> None:
    """Record the cost of an embed/analyze call once per key (the budget guards renders, the big spend)."""
    with connection_scope(rt.db_url) as c:
        crud.record_charge(c, jc.batch.id, jc.job_id, stage, key, model, cost)


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str))
    tmp.replace(path)


# --- the registry ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """How a stage's task retries a retryable provider error: exponential backoff from `backoff_s`, capped
    at `max_backoff_s`, with jitter; a provider's Retry-After wins. How many times: Settings
    `provider_attempts` (one budget for every paid call). Unreachable infrastructure is retried without a
    bound (capped backoff); NotReady is re-checked every `not_ready_s` (growing to 10 s), uncounted."""

    backoff_s: float = 1.0
    max_backoff_s: float = 120.0
    not_ready_s: float = 0.5


@dataclass(frozen=True)
class Stage:
    name: str  # as stored in job.stage
    kind: Literal["sku", "hit"]
    queue: str
    work: Callable[..., Any]
    result: type[StageResult] = StageResult  # what work returns, validated when written (hitline/jobs/results.py)
    calls_provider: bool = True
    retry: RetryPolicy = RetryPolicy()

    @property
    def priority(self) -> int:
        """Its messages' routed priority on Redis (0 is served first, the contact sheet's 9 last): every SKU
        of a batch waits on the catalog in its index stage, so catalog work, its retries included, goes
        before the SKUs' instead of behind thousands of them in the same queue (RabbitMQ queues: FIFO).
        A SKU chain sent by tasks.chains carries its own priority instead (hitline/domain/fairness.py)."""
        return fairness.CATALOG_PRIORITY if self.kind == "hit" else fairness.DEFAULT_SKU_PRIORITY

    @property
    def task_name(self) -> str:
        return f"hitline.{self.name}" if self.kind == "sku" else f"hitline.{self.name}_hits"

    def run(self, rt: Runtime, *args: Any, token: str | None = None, attempt: int = 0) -> Outcome | dict[int, Outcome]:
        """sku stages take (job_id,), catalog stages (batch_id, job_ids); `attempt`: provider retries so far."""
        names = [st.name for st in line_of(self.kind)]
        if self.kind == "sku":
            (job_id,) = args
            return run_step(rt, job_id, self.name, self.work, names, token, attempt, self.result)
        batch_id, job_ids = args
        outcomes = run_chunk(rt, batch_id, list(job_ids), self.name, self.work, names, token, self.result)
        if self.name == names[-1]:
            # the chunk that finishes the catalog flushes (SKUs waiting in their index stage also check)
            catalog_indexed(rt, batch_id)
        return outcomes


SKU_LINE: tuple[Stage, ...] = (
    Stage("embed", "sku", "embed", embed, EmbedResult),
    Stage("index", "sku", "index", wait_for_catalog, IndexResult, calls_provider=False),
    Stage("retrieve", "sku", "retrieve", retrieve, RetrieveResult, calls_provider=False),
    Stage("analyze", "sku", "analyze", analyze, AnalyzeResult),
    Stage("render", "sku", "render", render, RenderResult),
)
CATALOG_LINE: tuple[Stage, ...] = (
    Stage("embed", "hit", "embed", embed_catalog, EmbedResult),
    Stage("index", "hit", "index", index_catalog, CatalogIndexResult, calls_provider=False),
)
STAGES: tuple[Stage, ...] = CATALOG_LINE + SKU_LINE
QUEUES: tuple[str, ...] = tuple(dict.fromkeys(st.queue for st in SKU_LINE + CATALOG_LINE))
# the queue of the stage that writes a SKU's outputs (its result is the RenderResult): its contact sheet
# and redo takes run there (the workers that have the renderer), after the SKU's own work (lower priority)
OUTPUT_QUEUE: str = next(st.queue for st in SKU_LINE if st.result is RenderResult)


def line_of(kind: str) -> tuple[Stage, ...]:
    return SKU_LINE if kind == "sku" else CATALOG_LINE


def first_stage(kind: str) -> str:
    """Where a new job of this kind starts (and where a row rejected at submission is recorded)."""
    return line_of(kind)[0].name


def result_stage(model: type[StageResult]) -> str:
    """The name of the stage whose result `model` is (hitline.jobs.results.read)."""
    for st in STAGES:
        if st.result is model:
            return st.name
    raise KeyError(f"no stage declares {model.__name__} as its result")


def stage(kind: str, name: str) -> Stage:
    for st in line_of(kind):
        if st.name == name:
            return st
    raise KeyError(f"no {kind} stage {name!r}")
