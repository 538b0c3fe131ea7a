"""The quality gate in the render stage: input checks before a SKU's renders, and after each output a
judge's verdict; a failed output is re-rendered once with the failed checks added to the prompt
(budget-aware, its cost recorded), then kept as `needs_review` with its reasons. A judge that gives no
verdict is asked again (a transient error), then the output is kept as `needs_review`: never re-rendered.

The render stage calls these (see hitline/jobs/stages.py render):
    presets, inputs = check_inputs(product.image_path, presets)        # before planning the renders
    out.update(gate_output(run, preset, out))                         # after each output, derived too
    result["digest"] = digest(result)                                 # what the batch summary counts
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Sequence

from db import crud
from db.session import connection_scope
from hitline import line
from hitline.domain.models import Preset, StyleAnalysis
from hitline.errors import BudgetExceeded, ConfigError, RetryableProviderError
from hitline.jobs.context import JobContext
from hitline.jobs.results import PlanSaving
from hitline.providers.base import ImageRenderer, Judgement, OutputJudge

__all__ = ["GateRun", "check_inputs", "gate_output", "summarise", "digest", "plan_text", "OUTCOMES"]

OUTCOMES = ("passed", "passed_after_rerender", "needs_review")


def check_inputs(flatlay: Path, presets: Sequence[Preset]) -> tuple[list[Preset], dict[str, Any]]:
    """Input checks of one flat-lay for every preset: the presets to render (a too-small photo
    downsizes or fails a preset, per its `low_res`) and the record for the job."""
    from hitline.domain.cutout import product_mask
    from hitline.domain.images import load_image
    from hitline.domain.quality import failed, input_checks, resolve_preset

    flat = load_image(flatlay)
    checks = input_checks(flat, product_mask(flat), presets)
    keep: list[Preset] = []
    record: dict[str, Any] = {"checks": {}, "failed_presets": {}, "downsized": {}}
    for p in presets:
        record["checks"][p.name] = [c.to_dict() for c in checks[p.name]]
        resolution = checks[p.name][0]
        chosen = resolve_preset(p, resolution)
        if chosen is None:
            record["failed_presets"][p.name] = resolution.message
            continue
        if chosen is not p:
            record["downsized"][p.name] = chosen.size
        keep.append(chosen)
    record["warnings"] = sorted({c.message for cs in checks.values() for c in failed(cs)})
    return keep, record


class RenderReservations(Protocol):
    """A SKU's paid renders reserved against the batch budget (hitline.jobs.stages.RenderBudget)."""

    def reserve(self, key: str, price: float, preset: str, dest: Path) -> str | None: ...

    def release(self, key: str) -> None: ...

    def settle(self, key: str, cost: float | None, dest: Path) -> float: ...

    def for_model(self, model: str) -> RenderReservations:
        """The same bookkeeping, charged as another model (an escalated render)."""
        ...


@dataclass
class GateRun:
    """What one SKU's gate needs: the job, its render budget bookkeeping (hitline.jobs.stages.RenderBudget),
    the renderer and judge, and the render inputs."""

    jc: JobContext
    budget: RenderReservations  # hitline.jobs.stages.RenderBudget
    renderer: ImageRenderer
    judge: OutputJudge | None  # the provider's (hitline.providers.factory.Providers.judge)
    refs: list[Path]
    style: StyleAnalysis
    ref_shas: list[str]
    escalation: ImageRenderer | None = None  # --escalate pro: the model a failed re-render escalates to

    def verdict(self, preset: Preset, path: Path) -> Judgement:
        rt = self.jc.rt
        if self.judge is None:
            raise ConfigError(
                "the quality gate is on but the provider has no judge (HITLINE_QUALITY_GATE=0 turns it off)"
            )
        j, _ = line.judge_output(self.judge, self.jc.product.image_path, path, preset, rt.cache)
        if j.cost_usd > 0:  # every try's tokens: a run retried after no verdict asks (and pays) again
            key = f"judge:{self.jc.job_id}:{path.name}" + (f":{self.jc.attempt}" if self.jc.attempt else "")
            with connection_scope(rt.db_url) as c:
                crud.record_charge(c, self.jc.batch.id, self.jc.job_id, "judge", key, j.model, j.cost_usd)
        return j

    def paid_render(
        self, renderer: ImageRenderer, budget: RenderReservations, style: StyleAnalysis, preset: Preset
    ) -> tuple[Path, float, str]:
        """One render reserved against the batch budget (raises BudgetExceeded) and settled: (path, what
        it was charged, its content key). The same image paid for by another SKU is reused at no charge."""
        key = line.render_key(renderer.model, self.jc.image_sha, self.ref_shas, style, preset)
        dest = self.jc.out_dir / f"{preset.name}-{key[:12]}.png"
        reused = budget.reserve(key, self.jc.rt.prices.image_cost(renderer.model, preset.size), preset.name, dest)
        if reused is not None:
            return dest, 0.0, key
        try:
            path, cost, fresh = line.render_preset(renderer, self.jc.new_product, self.refs, style, preset, dest)
        except BaseException:
            budget.release(key)
            raise
        return path, budget.settle(key, cost if fresh else None, dest), key

    def no_verdict(self, preset: Preset, j: Judgement, **record: Any) -> dict[str, Any]:
        """The judge gave no valid verdict (an unparseable answer, after its own re-asks): nothing is known
        about the picture, so nothing is re-rendered. Asked again later as a transient provider error (the
        task's retry budget: the stage runs again, paid renders are reused and passed verdicts come from
        the cache); on the budget's last run the output is kept as `needs_review`."""
        if not self.jc.last_attempt:
            raise RetryableProviderError(f"the judge ({j.model}) gave no verdict on {preset.name}; asking again")
        quality = {
            "status": "needs_review",
            "checks": j.checks,
            "reasons": [NO_VERDICT],
            "judge": j.model,
            "rerender": f"skipped: {NO_VERDICT} (not a fault of the picture)",
            **record,
        }
        return {"quality": quality}


NO_VERDICT = "judge gave no verdict"


def _fix_prompt(style: StyleAnalysis, reasons: list[str]) -> StyleAnalysis:
    fix = "Fix these problems of the previous attempt: " + "; ".join(reasons) + "."
    return style.model_copy(update={"prompt": f"{style.prompt}\n{fix}"})


def gate_output(run: GateRun, preset: Preset, output: dict[str, Any]) -> dict[str, Any]:
    """Judge one output; re-render it once if it fails. Returns the fields to merge into the output
    record: `path`/`cost_usd` when a re-render replaced it, and `quality`."""
    first = run.verdict(preset, Path(output["path"]))
    if not first.verdict:
        return run.no_verdict(preset, first)
    if first.passed:
        return {"quality": {"status": "passed", "checks": first.checks, "judge": first.model}}
    reasons = first.reasons
    derived_from = output.get("derived_from")
    # a resized output that fails is rendered on its own at its own size, also by the local compositor
    if run.renderer.model.startswith("local/") and not derived_from:
        # the compositor does not read prompts: a second try would be the same picture
        return {
            "quality": {
                "status": "needs_review",
                "checks": first.checks,
                "reasons": reasons,
                "judge": first.model,
                "rerender": "skipped: the local compositor ignores prompts",
            }
        }
    style = _fix_prompt(run.style, reasons)
    try:
        path, rerender_cost, key = run.paid_render(run.renderer, run.budget, style, preset)
    except BudgetExceeded as exc:
        return {
            "quality": {
                "status": "needs_review",
                "checks": first.checks,
                "reasons": reasons,
                "judge": first.model,
                "rerender": f"skipped: {exc}",
            }
        }
    second = run.verdict(preset, path)
    if not second.verdict:  # the re-render stays (paid, on the record); its verdict is asked again
        rec = run.no_verdict(
            preset, second, first_path=output["path"], first_checks=first.checks, rerender_cost_usd=rerender_cost
        )
        return {
            "cost_usd": output["cost_usd"] + rerender_cost,
            "path": str(path),
            "key": key,
            "derived_from": None,
            **rec,
        }
    record = {
        "cost_usd": output["cost_usd"] + rerender_cost,
        "quality": {
            "first_path": output["path"],
            "first_checks": first.checks,
            "checks": second.checks,
            "judge": second.model,
            "rerender_cost_usd": rerender_cost,
            "status": "passed_after_rerender" if second.passed else "needs_review",
        },
    }
    if not second.passed:
        record["quality"]["reasons"] = second.reasons
    if derived_from:
        record["quality"]["first_derived_from"] = derived_from
    # keep the attempt with fewer failed checks as the output
    if sum(not c["passed"] for c in second.checks) <= sum(not c["passed"] for c in first.checks):
        record.update(path=str(path), key=key, derived_from=None)
    if not second.passed and run.escalation is not None:
        _escalate(run, preset, record, second)
    return record


def _escalate(run: GateRun, preset: Preset, record: dict[str, Any], failed_again: Judgement) -> None:
    """The re-render failed too: one render by the stronger model (Nano Banana Pro), with the tutorial's
    refinements and the reasons, reserved against the budget and charged at its own price. Its verdict
    decides: passed, it replaces the output; failed, the output stays for review with the attempt noted."""
    assert run.escalation is not None
    q = record["quality"]
    model = run.escalation.model
    style = _fix_prompt(run.style, [*failed_again.reasons, *ESCALATION_REFINEMENTS])
    # a size the stronger model does not offer (Pro has no 512px) is rendered at 1K and resized
    sized = preset
    try:
        run.jc.rt.prices.image_cost(model, preset.size)
    except ConfigError:
        sized = Preset.build(
            preset.name, preset.aspect_ratio, "1K", preset.background, low_res=preset.low_res, rules=dict(preset.rules)
        )
    try:
        path, cost, key = run.paid_render(run.escalation, run.budget.for_model(model), style, sized)
    except BudgetExceeded as exc:
        q["escalated"] = {"model": model, "skipped": str(exc), "cost_usd": 0.0}
        return
    if sized is not preset:
        key = line.derived_key(key, preset)
        path = line.derive_preset(path, preset, run.jc.out_dir / f"{preset.name}-{key[:12]}.png")
    third = run.verdict(preset, path)
    record["cost_usd"] += cost
    q["escalated"] = {
        "model": model,
        "cost_usd": cost,
        "path": str(path),
        "passed": third.verdict and third.passed,
        "checks": third.checks,
    }
    if third.verdict and third.passed:
        q.update(status="passed_after_rerender", checks=third.checks, judge=third.model)
        q.pop("reasons", None)
        record.update(path=str(path), key=key, derived_from=None)


# what Nano Banana Pro is asked on top of the reasons (the tutorial's advice for a garment blended badly)
ESCALATION_REFINEMENTS = (
    "the garment fits the body naturally, not pasted on",
    "no labels or tags showing",
    "no extra elements: only the garment and the scene",
)


def summarise(outputs_by_sku: Sequence[Sequence[dict[str, Any]]]) -> dict[str, int]:
    """How many outputs of a batch ended in each outcome (ungated outputs counted as `unchecked`)."""
    counts = {k: 0 for k in (*OUTCOMES, "unchecked")}
    for outputs in outputs_by_sku:
        for o in outputs:
            counts[o.get("quality", {}).get("status", "unchecked")] += 1
    return counts


def digest(render: dict[str, Any]) -> dict[str, Any]:
    """One SKU's render in a few low-cardinality fields, which the batch summary counts
    (hitline.jobs.control.quality_summary groups equal digests in SQL): what the input checks found,
    how many outputs ended in each gate outcome, and the render plan's paid calls and list prices."""
    inputs = render.get("inputs") or {}
    checks = inputs.get("checks") or {}

    def failing(name: str) -> list[str]:
        return sorted(p for p, cs in checks.items() if any(c["name"] == name and not c["passed"] for c in cs))

    gate = {k: n for k, n in summarise([render.get("outputs", [])]).items() if n and k != "unchecked"}
    plan = render.get("plan") or {}
    words = {"text": _text_digest(render["text"])} if render.get("text") else {}
    return {
        **words,
        "inputs": {
            "downsized": dict(sorted((inputs.get("downsized") or {}).items())),
            "failed": sorted(inputs.get("failed_presets") or {}),
            "background": failing("background"),
            "touches_frame": bool(failing("touches_frame")),
        },
        "gate": gate,
        "plan": {
            "renders": len(plan.get("renders", [])),
            "derived": len(plan.get("derived", {})),
            "naive_usd": plan.get("naive_cost_usd", 0.0),
            "cost_usd": plan.get("cost_usd", 0.0),
        },
    }


def _text_digest(text: dict[str, Any]) -> dict[str, Any]:
    """One SKU's words on the pictures (hitline/jobs/localise.py): outputs per read-back status, refused
    (preset, locale) pairs, machine-translated locales, and the per-SKU saving of overlay for 5 locales."""
    return {
        "mode": text["mode"],
        "locales": len(text["locales"]),
        "refused": len(text.get("failures", [])),
        "machine_translated": sum(bool(c.get("machine_translated")) for c in text.get("copies", {}).values()),
        "saving": text.get("saving", {}),
    }


def plan_text(plan: PlanSaving) -> str:
    """The batch's render-plan saving in words (hitline.jobs.control.quality_summary().render_plan);
    nothing when no output was resized (every preset has a ratio of its own)."""
    if not plan.derived:
        return ""
    head = f"render plan: {plan.renders} renders for {plan.renders + plan.derived} outputs ({plan.derived} resized)"
    if not plan.naive_usd:  # a provider without prices (local): no money to speak of
        return head
    return (
        f"{head}: ${plan.cost_usd:.3f} instead of ${plan.naive_usd:.3f} at list price, "
        f"saved ${plan.saving_usd:.3f} (${plan.saving_usd / plan.skus:.3f} a SKU); renders paid "
        f"${plan.paid_usd:.3f} (re-renders included)"
    )
