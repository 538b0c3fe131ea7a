"""The quality gate in the report: a badge and the reasons per output, input warnings per SKU, the
batch's count of each outcome and the render plan's saving."""

from __future__ import annotations

import html
from typing import Any, Sequence

from hitline.jobs.quality import OUTCOMES, plan_text
from hitline.jobs.results import OutputWords, PlanSaving, RenderOutput, RenderResult

__all__ = [
    "CSS",
    "output_badge",
    "input_notes",
    "batch_counts",
    "plan_saving",
    "words",
    "refused_words",
    "words_summary",
]

CSS = (
    ".badge{display:inline-block;padding:1px 6px;border-radius:8px;font-size:.85em;color:#fff}"
    ".q-passed{background:#2a7}.q-passed_after_rerender{background:#58a}.q-needs_review{background:#c50}"
    ".q-unchecked{background:#999}.reasons{color:#a40;font-size:.85em;margin:0;max-width:320px}"
    ".locales{display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:10px;align-items:start}"
    ".locales>figure{display:block!important;margin:0;min-width:0}"
    ".locales img{width:100%;height:auto;max-height:none;margin:0 0 4px 0;box-sizing:border-box}.mt{background:#86a}.words{font-size:.85em;margin:0}"
)
_LABEL = {
    "passed": "passed",
    "passed_after_rerender": "passed after re-render",
    "needs_review": "needs review",
    "unchecked": "not checked",
}


def output_badge(output: RenderOutput) -> str:
    q = output.quality
    status = q.status if q else "unchecked"
    out = f"<span class='badge q-{html.escape(status)}'>{html.escape(_LABEL.get(status, status))}</span>"
    reasons = list(q.reasons) if q else []
    if output.plate:
        reasons = [*reasons, f"scene plate {output.plate[:12]}"]
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


def words(t: OutputWords | None) -> str:
    """The words on one output: what was asked per slot, what OCR read back, machine-translated or not."""
    if t is None:
        return ""
    e = html.escape
    mt = " <span class='badge mt'>machine-translated</span>" if t.machine_translated else ""
    read: dict[str, Any] = {str(r["slot"]): r for r in t.readings}
    rows = "".join(
        f"<li>{e(slot)}: «{e(asked)}»"
        + (
            f" read «{e(str(read[slot]['read']))}» CER {read[slot]['cer']:.2f}"
            if slot in read and read[slot]["verified"]
            else ""
        )
        + "</li>"
        for slot, asked in t.texts.items()
    )
    return f"<p class='words'>text {e(t.status)} ({e(t.mode)}){mt}</p><ul class='words'>{rows}</ul>"


def refused_words(text: dict[str, Any] | None) -> str:
    """The (preset, locale) outputs of a SKU that were refused, with their sentences."""
    failures = (text or {}).get("failures") or []
    if not failures:
        return ""
    return (
        "<ul class='reasons'>"
        + "".join(
            f"<li>{html.escape(f['preset'])} {html.escape(f['locale'])}: {html.escape(f['reason'])}</li>"
            for f in failures
        )
        + "</ul>"
    )


def words_summary(text: dict[str, Any] | None) -> str:
    """The batch's words in one line: refusals, machine translations, and overlay's saving for 5 locales."""
    if not text:
        return ""
    return (
        f"<p>Words ({html.escape(str(text['mode']))}): {text['refused']} (preset, locale) outputs refused, "
        f"{text['machine_translated']} machine-translated locale(s). For 5 locales a SKU costs "
        f"${text['model_usd_5_locales_per_sku']:.3f} with the image model writing the words and "
        f"${text['overlay_usd_5_locales_per_sku']:.3f} with hitline's overlay (saves "
        f"${text['saving_usd_5_locales_per_sku']:.3f} a SKU, at list prices).</p>"
    )
