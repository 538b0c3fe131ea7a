"""Words on the picture, per locale, inside the render stage (hitline/jobs/stages.py render).

A batch that names locales (options["text"]: locales, mode, missing_translation) gets one output per
(preset, locale) for every preset with text slots; text-free presets stay one output for all locales.
    overlay: the preset is rendered once without words; hitline typesets each locale on it (free).
    model:   the image model writes the words: one paid call per (preset, locale), the exact strings in
             the prompt; a misread is re-rendered once with the misread quoted, then goes to review.
Either way the gate reads the words back (OCR of the slots only) and records the character error rate;
a script the OCR cannot read is `text unverified` and goes to review. Bad copy (too long, a glyph the
bundled font lacks, a price that is not a number, no translation) fails that (SKU, locale) alone."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable, Sequence

from db import crud
from db.session import connection_scope
from hitline import line
from hitline.domain.images import load_image
from hitline.domain.models import Preset, StyleAnalysis
from hitline.domain.promo_copy import CopyError, LocaleCopy, Translator, resolve_copy, text_instructions
from hitline.domain.textcheck import check_slots, status
from hitline.domain.typeset import TYPESET_VERSION, check_copy, draw_slots
from hitline.errors import BudgetExceeded, InputError
from hitline.jobs.context import JobContext
from hitline.jobs.quality import GateRun, RenderReservations
from hitline.jobs.options import BatchOptions, TextOptions
from hitline.jobs.results import AnalyzeResult, R, RetrieveResult, read

__all__ = [
    "text_options",
    "model_mode",
    "carries_text",
    "locale_copies",
    "localise",
    "saving_for_locales",
    "strip_text_presets",
    "retake",
]

SAVING_LOCALES = 5  # the batch summary's saving of overlay over model, per SKU, for this many locales


def text_options(options: BatchOptions) -> TextOptions | None:
    """The batch's text options, None when it names no locales (no words on any picture)."""
    return options.locales()


def model_mode(options: BatchOptions) -> bool:
    text = text_options(options)
    return text is not None and text.mode == "model"


def carries_text(options: BatchOptions, preset: Preset) -> bool:
    return text_options(options) is not None and bool(preset.slots)


def _translator(jc: JobContext) -> Translator | None:
    """The analysis model's translate(text, source, target) -> (text, cost), cached in the job table so a
    redelivered task does not pay twice; None when the analysis provider cannot translate."""
    analyzer = jc.providers.analyzer
    translate = getattr(analyzer, "translate", None)
    if translate is None:
        return None

    def cached(text: str, source: str, target: str) -> tuple[str, float]:
        key = "translate:" + hashlib.sha256(json.dumps([analyzer.model, text, source, target]).encode()).hexdigest()
        hit = jc.rt.cache.get(key)
        if hit is not None:
            return str(hit), 0.0
        out, cost = translate(text, source, target)
        jc.rt.cache.put(key, out)
        if cost > 0:  # charged as the analysis model's (the stage whose result is the AnalyzeResult)
            from hitline.jobs.stages import result_stage

            with connection_scope(jc.rt.db_url) as c:
                crud.record_charge(c, jc.batch.id, jc.job_id, result_stage(AnalyzeResult), key, analyzer.model, cost)
        return out, cost

    return cached


def locale_copies(jc: JobContext, presets: Sequence[Preset]) -> dict[str, LocaleCopy | str]:
    """Each locale's copy for this SKU, or the sentence saying why that locale is refused."""
    text = text_options(jc.options) or TextOptions()
    locales = text.locales
    slots = sorted({s.name for p in presets for s in p.slots})
    translate = _translator(jc) if text.missing_translation == "translate" else None
    out: dict[str, LocaleCopy | str] = {}
    for loc in locales:
        try:
            out[loc] = resolve_copy(jc.new_product.copy, loc, locales[0], slots, text.missing_translation, translate)
        except CopyError as exc:
            out[loc] = str(exc)
    return out


def _needs_review(output: dict[str, Any], text: dict[str, Any], reasons: list[str]) -> dict[str, Any]:
    """The output's gate record with the words' verdict folded in: anything but `verified` is reviewed."""
    q = dict(output.get("quality") or {})
    q["text"] = text["status"]
    if text["status"] == "verified":
        return q
    q["status"] = "needs_review" if text["status"] != "unchecked" or q else q.get("status", "unchecked")
    q["reasons"] = list(q.get("reasons") or []) + reasons
    return q


def _read_back(path: Path, copy: LocaleCopy, preset: Preset, glyphs: dict[str, float], on: bool) -> dict[str, Any]:
    """The words read back from one output: readings per slot, CER, status."""
    if not on:
        return {"status": "unchecked", "readings": [], "reasons": []}
    boxes = {s.name: s.pixels(preset.width, preset.height) for s in preset.slots if s.name in copy.texts}
    readings = check_slots(load_image(path), copy.texts, boxes, glyphs)
    verdict, reasons = status(readings)
    return {
        "status": verdict,
        "readings": [r.to_dict() for r in readings],
        "reasons": reasons,
        "cer": round(max((r.cer for r in readings if r.verified), default=0.0), 4),
    }


def _record(
    base: dict[str, Any],
    preset: Preset,
    copy: LocaleCopy,
    mode: str,
    path: Path,
    key: str,
    check: dict[str, Any],
    extra: dict[str, Any],
) -> dict[str, Any]:
    text = {
        "mode": mode,
        "locale": copy.locale,
        "texts": dict(copy.texts),
        "machine_translated": copy.machine_translated,
        "notes": list(copy.notes),
        **check,
        **extra,
    }
    out = {**base, "locale": copy.locale, "path": str(path), "key": key, "text": text}
    out["quality"] = _needs_review(base, text, check.get("reasons", []))
    return out


def _overlay(jc: JobContext, preset: Preset, base: dict[str, Any], copy: LocaleCopy, gate_on: bool) -> dict[str, Any]:
    layouts = check_copy(copy.texts, preset, copy.locale)  # CopyError before anything is drawn
    key = hashlib.sha256(
        json.dumps([base["key"], TYPESET_VERSION, copy.locale, copy.texts], sort_keys=True).encode()
    ).hexdigest()
    dest = jc.out_dir / f"{preset.name}-{copy.locale}-{key[:12]}.png"
    image, facts = draw_slots(load_image(base["path"]), layouts)
    if not dest.exists():
        tmp = dest.with_suffix(".part")
        image.save(tmp, format="PNG", compress_level=3)
        tmp.replace(dest)
    check = _read_back(dest, copy, preset, {k: v.size for k, v in layouts.items()}, gate_on)
    return _record({**base, "text_base": base["path"]}, preset, copy, "overlay", dest, key, check, {"slots": facts})


def _paid(
    jc: JobContext, budget: RenderReservations, style: StyleAnalysis, preset: Preset, tag: str
) -> tuple[Path, float, str]:
    """One paid render (reserved against the budget first; the same image paid earlier in the batch is
    reused): (path, charged, key)."""
    renderer = jc.providers.renderer
    refs = [Path(h.image_path) for h in _earlier(jc, RetrieveResult).hits]
    from hitline.domain.images import file_sha256

    key = line.render_key(renderer.model, jc.image_sha, [file_sha256(p) for p in refs], style, preset)
    dest = jc.out_dir / f"{preset.name}-{tag}-{key[:12]}.png"
    reused = budget.reserve(key, jc.rt.prices.image_cost(renderer.model, preset.size), preset.name, dest)
    if reused is not None:
        return dest, 0.0, key
    try:
        path, cost, fresh = line.render_preset(renderer, jc.new_product, refs, style, preset, dest)
    except BaseException:
        budget.release(key)
        raise
    return path, budget.settle(key, cost if fresh else None, dest), key


def _with_words(style: StyleAnalysis, preset: Preset, copy: LocaleCopy, misread: str = "") -> StyleAnalysis:
    words = text_instructions(copy.texts, {s.name: s.box for s in preset.slots}, copy.locale)
    return style.model_copy(update={"prompt": f"{style.prompt}\n{words}{misread}"})


def _model(
    jc: JobContext, preset: Preset, copy: LocaleCopy, gate: GateRun | None, budget: RenderReservations
) -> dict[str, Any]:
    """The image model writes this locale's words; read back; a misread is re-rendered once with what
    was misread quoted in the prompt, then goes to review with the diff."""
    layouts = check_copy(copy.texts, preset, copy.locale)  # too long / no readable size: refused before paying
    glyphs = {k: float(v.size) for k, v in layouts.items()}
    style = _earlier(jc, AnalyzeResult).style
    path, charged, key = _paid(jc, budget, _with_words(style, preset, copy), preset, copy.locale)
    base: dict[str, Any] = {
        "preset": preset.name,
        "width": preset.width,
        "height": preset.height,
        "cost_usd": charged,
        "key": key,
        "reused_from": None,
        "derived_from": None,
    }
    if gate is not None:
        verdict = gate.verdict(preset, path)
        base["quality"] = {
            "status": "passed" if verdict.passed else "needs_review",
            "checks": verdict.checks,
            "judge": verdict.model,
            **({"reasons": verdict.reasons} if not verdict.passed else {}),
        }
    check = _read_back(path, copy, preset, glyphs, gate is not None)
    extra: dict[str, Any] = {}
    if check["status"] == "misread":
        wrong = "; ".join(
            f"{r['slot']} must read «{r['asked']}» but read «{r['read']}»" for r in check["readings"] if not r["exact"]
        )
        note = f"\nThe previous attempt misspelt the text ({wrong}): write it exactly, letter for letter."
        try:
            path2, charged2, key2 = _paid(
                jc, budget, _with_words(style, preset, copy, note), preset, f"{copy.locale}-r"
            )
        except BudgetExceeded as exc:
            extra["rerender"] = f"skipped: {exc}"
        else:
            second = _read_back(path2, copy, preset, glyphs, True)
            extra = {
                "rerender": "done",
                "first_path": str(path),
                "first_readings": check["readings"],
                "rerender_cost_usd": charged2,
            }
            base["cost_usd"] = charged + charged2
            path, key = path2, key2
            if second["status"] == "verified" and base.get("quality", {}).get("status") != "needs_review":
                check = second
                base["quality"] = {**base.get("quality", {}), "status": "passed_after_rerender"}
            else:
                check = second
    return _record(base, preset, copy, "model", path, key, check, extra)


def localise(
    jc: JobContext,
    presets: Sequence[Preset],
    made: dict[str, dict[str, Any]],
    gate: GateRun | None,
    budget: RenderReservations,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The SKU's outputs in preset order (a text preset as one output per locale) and the text record:
    each locale's copy and each refused (preset, locale) with its sentence."""
    text = text_options(jc.options)
    if text is None:
        return [made[p.name] for p in presets], {}
    copies = locale_copies(jc, presets)
    outputs: list[dict[str, Any]] = []
    failures: list[dict[str, str]] = []
    for p in presets:
        if not p.slots:
            outputs.append(made[p.name])
            continue
        for loc, copy in copies.items():
            if isinstance(copy, str):
                failures.append({"preset": p.name, "locale": loc, "reason": copy})
                continue
            try:
                if text.mode == "model":
                    outputs.append(_model(jc, p, copy, gate, budget))
                else:
                    outputs.append(_overlay(jc, p, made[p.name], copy, gate is not None))
            except CopyError as exc:
                failures.append({"preset": p.name, "locale": loc, "reason": str(exc)})
    record = {
        "locales": list(text.locales),
        "mode": text.mode,
        "copies": {loc: (c.to_dict() if isinstance(c, LocaleCopy) else {"refused": c}) for loc, c in copies.items()},
        "failures": failures,
    }
    return outputs, record


# a redo's render: (the style to render, a tag for the file name) -> (path, charged, content key)
Paint = Callable[[StyleAnalysis, str], tuple[Path, float, str]]
# the gate's verdict on a picture: (status, reasons)
Judge = Callable[[Path], tuple[str, list[str]]]


def retake(
    jc: JobContext, preset: Preset, locale: str, style: StyleAnalysis, paint: Paint, judge: Judge | None
) -> dict[str, Any]:
    """A redo's new take of ONE localised output (`banner@de-DE`, hitline.jobs.review.rerender): the
    locale's copy recorded at render time, the batch's text mode. overlay: the picture rendered again
    without words (the reviewer's note in `style`), judged, then this locale typeset on it; model: the
    picture rendered with the words in the prompt. Either way the words are read back (OCR); anything but
    `verified` is needs_review with the reasons. CopyError when the copy was refused or no longer fits."""
    text = text_options(jc.options) or TextOptions()
    recorded = ((jc.result.get("render") or {}).get("text") or {}).get("copies", {}).get(locale)
    if not recorded or "refused" in recorded:
        why = (recorded or {}).get("refused", "no copy was recorded for it")
        raise CopyError(f"{preset.name}@{locale} has no words to redo: {why}")
    copy = LocaleCopy.from_dict(recorded)
    layouts = check_copy(copy.texts, preset, copy.locale)  # refused before paying, as at render time
    glyphs = {k: float(v.size) for k, v in layouts.items()}
    mode = text.mode
    if mode == "model":
        path, charged, key = paint(_with_words(style, preset, copy), copy.locale)
        gate, reasons = judge(path) if judge else ("unchecked", [])
        facts: dict[str, Any] = {}
        base_path = None
    else:
        base_path, charged, base_key = paint(style, "")
        gate, reasons = judge(base_path) if judge else ("unchecked", [])
        key = hashlib.sha256(
            json.dumps([base_key, TYPESET_VERSION, copy.locale, copy.texts], sort_keys=True).encode()
        ).hexdigest()
        path = jc.out_dir / f"{preset.name}-{copy.locale}-{key[:12]}.png"
        image, facts = draw_slots(load_image(base_path), layouts)
        if not path.exists():
            tmp = path.with_suffix(".part")
            image.save(tmp, format="PNG", compress_level=3)
            tmp.replace(path)
    check = _read_back(path, copy, preset, glyphs, judge is not None)
    if check["status"] not in ("verified", "unchecked"):
        gate, reasons = "needs_review", [*reasons, *check["reasons"]]
    return {
        "path": path,
        "charged": charged,
        "key": key,
        "gate": gate,
        "reasons": reasons,
        "text": {
            "mode": mode,
            "locale": copy.locale,
            "texts": dict(copy.texts),
            **({"text_base": str(base_path)} if base_path else {}),
            **({"slots": facts} if facts else {}),
            **check,
        },
    }


def saving_for_locales(
    presets: Sequence[Preset], image_cost: Callable[[str], float], plan_cost: float, locales: int = SAVING_LOCALES
) -> dict[str, float]:
    """Per SKU for `locales` locales: model mode pays every text preset once per locale on top of the
    text-free renders; overlay pays the render plan once."""
    from hitline.domain.render_plan import plan_renders

    text_free = plan_renders([p for p in presets if not p.slots], image_cost).cost_usd
    model = text_free + locales * sum(image_cost(p.size) for p in presets if p.slots)
    return {
        "locales": locales,
        "model_usd": round(model, 6),
        "overlay_usd": round(plan_cost, 6),
        "saving_usd": round(model - plan_cost, 6),
    }


def strip_text_presets(presets: Sequence[Preset], options: BatchOptions) -> list[Preset]:
    """What the render plan renders: in model mode the text presets are rendered per locale instead."""
    if not model_mode(options):
        return list(presets)
    return [p for p in presets if not p.slots]


def _earlier(jc: JobContext, model: type[R]) -> R:
    """The result of an earlier stage of this job (hitline.jobs.results.read), which the chain ran first."""
    found = read(jc.result, model)
    if found is None:
        raise InputError(f"no {model.__name__} recorded for job {jc.job_id}: re-run its earlier stages")
    return found
