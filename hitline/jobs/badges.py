"""The quality gate in the report: a badge and the reasons per output, input warnings per SKU, the
batch's count of each outcome and the render plan's saving."""

from __future__ import annotations

import html
from typing import Any, Sequence

from hitline.jobs.quality import plan_text, summarise

__all__ = ["CSS", "output_badge", "input_notes", "batch_counts", "plan_saving"]

CSS = (".badge{display:inline-block;padding:1px 6px;border-radius:8px;font-size:.85em;color:#fff}"
       ".q-passed{background:#2a7}.q-passed_after_rerender{background:#58a}.q-needs_review{background:#c50}"
       ".q-unchecked{background:#999}.reasons{color:#a40;font-size:.85em;margin:0;max-width:320px}")
_LABEL = {"passed": "passed", "passed_after_rerender": "passed after re-render", "needs_review": "needs review",
          "unchecked": "not checked"}


def output_badge(output: dict[str, Any]) -> str:
    q = output.get("quality") or {}
    status = q.get("status", "unchecked")
    out = f"<span class='badge q-{html.escape(status)}'>{html.escape(_LABEL.get(status, status))}</span>"
    reasons = q.get("reasons") or []
    if q.get("rerender"):
        reasons = [*reasons, f"re-render {q['rerender']}"]
    esc = q.get("escalated")
    if esc:
        outcome = esc.get("skipped") and f"skipped: {esc['skipped']}" or ("passed" if esc.get("passed") else "failed too")
        reasons = [*reasons, f"escalated to {esc['model']} (${esc.get('cost_usd', 0.0):.3f}): {outcome}"]
    if reasons:
        out += "<ul class='reasons'>" + "".join(f"<li>{html.escape(str(r))}</li>" for r in reasons) + "</ul>"
    return out


def input_notes(render: dict[str, Any]) -> str:
    inputs = render.get("inputs") or {}
    notes = [f"{p}: {m}" for p, m in (inputs.get("failed_presets") or {}).items()]
    notes += [f"{p} rendered at {size}" for p, size in (inputs.get("downsized") or {}).items()]
    notes += [w for w in inputs.get("warnings") or [] if w not in " ".join(notes)]
    if not notes:
        return ""
    return "<p class='reasons'>input checks: " + "; ".join(html.escape(n) for n in notes) + "</p>"


def batch_counts(renders: Sequence[dict[str, Any]]) -> str:
    counts = summarise([r.get("outputs", []) for r in renders])
    shown = [f"<span class='badge q-{k}'>{_LABEL[k]}</span> {n}" for k, n in counts.items() if n]
    return ("<p>Quality gate: " + ", ".join(shown) + ".</p>") if shown else ""


def plan_saving(plan: dict[str, Any]) -> str:
    """The render plan's line (hitline.jobs.control.quality_summary()["render_plan"])."""
    text = plan_text(plan)
    return f"<p>{html.escape(text[0].upper() + text[1:])}.</p>" if text else ""
