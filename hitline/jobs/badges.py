"""The quality gate in the report: a badge and the reasons per output, input warnings per SKU, the
batch's count of each outcome and the render plan's saving."""

from __future__ import annotations

import html
from typing import Sequence

from hitline.jobs.quality import OUTCOMES, plan_text
from hitline.jobs.results import PlanSaving, RenderOutput, RenderResult

__all__ = ["CSS", "output_badge", "input_notes", "batch_counts", "plan_saving"]

CSS = (".badge{display:inline-block;padding:1px 6px;border-radius:8px;font-size:.85em;color:#fff}"
       ".q-passed{background:#2a7}.q-passed_after_rerender{background:#58a}.q-needs_review{background:#c50}"
       ".q-unchecked{background:#999}.reasons{color:#a40;font-size:.85em;margin:0;max-width:320px}")
_LABEL = {"passed": "passed", "passed_after_rerender": "passed after re-render", "needs_review": "needs review",
          "unchecked": "not checked"}


def output_badge(output: RenderOutput) -> str:
    q = output.quality
    status = q.status if q else "unchecked"
    out = f"<span class='badge q-{html.escape(status)}'>{html.escape(_LABEL.get(status, status))}</span>"
    reasons = list(q.reasons) if q else []
    if q and q.rerender:
        reasons = [*reasons, f"re-render {q.rerender}"]
    esc = q.escalated if q else None
    if esc:
        outcome = esc.skipped and f"skipped: {esc.skipped}" or ("passed" if esc.passed else "failed too")
        reasons = [*reasons, f"escalated to {esc.model} (${esc.cost_usd:.3f}): {outcome}"]
    if reasons:
        out += "<ul class='reasons'>" + "".join(f"<li>{html.escape(str(r))}</li>" for r in reasons) + "</ul>"
    return out


def input_notes(render: RenderResult) -> str:
    inputs = render.inputs
    if inputs is None:
        return ""
    notes = [f"{p}: {m}" for p, m in inputs.failed_presets.items()]
    notes += [f"{p} rendered at {size}" for p, size in inputs.downsized.items()]
    notes += [w for w in inputs.warnings if w not in " ".join(notes)]
    if not notes:
        return ""
    return "<p class='reasons'>input checks: " + "; ".join(html.escape(n) for n in notes) + "</p>"


def batch_counts(renders: Sequence[RenderResult]) -> str:
    counts = {k: 0 for k in (*OUTCOMES, "unchecked")}
    for o in (o for r in renders for o in r.outputs):
        counts[o.quality.status if o.quality else "unchecked"] += 1
    shown = [f"<span class='badge q-{k}'>{_LABEL[k]}</span> {n}" for k, n in counts.items() if n]
    return ("<p>Quality gate: " + ", ".join(shown) + ".</p>") if shown else ""


def plan_saving(plan: PlanSaving) -> str:
    """The render plan's line (hitline.jobs.control.quality_summary().render_plan)."""
    text = plan_text(plan)
    return f"<p>{html.escape(text[0].upper() + text[1:])}.</p>" if text else ""
