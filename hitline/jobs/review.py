"""Review: every output a render stage keeps gets a row (hitline `output` table) with a review state, and
the operator verbs approve / reject / redo act on one output or many by filter. The HTTP API, the CLI and
the dashboard call these functions; none of them enqueues (redo returns the outputs whose new take the
caller sends as tasks.review.redo once the session has committed).

States: none (no review asked and the gate passed it) | pending (the batch asks review of all, or the gate
sent it) | approved | rejected (with an optional note) | redo (a new take with the note in the prompt is
being rendered: reserved against the budget, charged, judged by the gate, then pending again).
Every decision is a review_decision row: who, what, when, on which take.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from db import crud
from db.models import Job, Output, ReviewDecision, utcnow
from db.session import rowcount, session_scope
from hitline.errors import BudgetExceeded, InputError
from hitline.jobs import webhooks
from hitline.jobs.options import BatchOptions
from hitline.jobs.control import Conflict, NotFound, get_batch
from hitline.jobs.results import AnalyzeResult, RenderResult, RetrieveResult, read

if TYPE_CHECKING:  # the job layer's runtime and prices (context is imported at call time here)
    from hitline.domain.pricing import PriceTable
    from hitline.jobs.context import Runtime

__all__ = [
    "STATES",
    "DECISIONS",
    "draft_summary",
    "OutputFilter",
    "Decided",
    "record_outputs",
    "list_outputs",
    "decide",
    "review",
    "review_counts",
    "rerender",
    "redo_failed",
    "decisions_of",
]

# final: an approved draft whose final take is being rendered
STATES = ("none", "pending", "approved", "rejected", "redo", "final")
DECISIONS = {"approve": "approved", "reject": "rejected", "redo": "redo"}
NOTE_MAX = 1000


@dataclass(frozen=True)
class OutputFilter:
    """Which outputs of a batch: all conditions hold. `review` is a state, `gate` a gate outcome."""

    output_ids: tuple[int, ...] | None = None
    review: str | None = None
    gate: str | None = None
    preset: str | None = None
    item_id: str | None = None

    def apply(self, q: Any) -> Any:
        if self.review:
            if self.review not in STATES:
                raise InputError(f"review state {self.review!r} is not one of {', '.join(STATES)}")
            q = q.where(Output.review == self.review)
        if self.output_ids is not None:
            q = q.where(Output.id.in_(self.output_ids))
        if self.gate:
            q = q.where(Output.gate == self.gate)
        if self.preset:
            q = q.where(Output.preset == self.preset)
        if self.item_id:
            q = q.where(Output.item_id == self.item_id)
        return q


def record_outputs(
    s: Any, batch_id: str, job_id: int, item_id: str, render: dict[str, Any], options: BatchOptions
) -> int:
    """The rows of a SKU's kept outputs, written in the transaction that finishes its render stage (a
    redelivered stage writes none twice). Pending ones raise output.needs_review. Returns rows written."""
    review_all = options.review == "all"
    made = dict(render.get("provenance") or {})
    drafted = made.pop("draft", None) or {}
    ins = crud._dialect_insert(crud._dialect(s))
    n = 0
    for o in render.get("outputs", []):
        q = o.get("quality") or {}
        gate = q.get("status", "unchecked")
        # a preset with words has one output per locale (hitline/jobs/localise.py): one row each, banner@de-DE
        name = f"{o['preset']}@{o['locale']}" if o.get("locale") else o["preset"]
        final_size = (drafted.get("finals") or {}).get(o["preset"])
        review = "pending" if review_all or gate == "needs_review" or final_size else "none"
        draft = {"draft": {"size": drafted["size"], "final_size": final_size}} if final_size else {}
        prov = {
            **made,
            **draft,
            "preset": o["preset"],
            "size": o.get("size"),
            "width": o["width"],
            "height": o["height"],
            "takes": [
                {
                    "take": 1,
                    "key": o.get("key"),
                    "cost_usd": o.get("cost_usd", 0.0),
                    "gate": gate,
                    "derived_from": o.get("derived_from"),
                    "reused_from": o.get("reused_from"),
                    "rerender_cost_usd": q.get("rerender_cost_usd", 0.0),
                }
            ],
        }
        row = s.execute(
            ins(Output.__table__)
            .values(
                batch_id=batch_id,
                job_id=job_id,
                item_id=item_id,
                preset=name,
                take=1,
                path=o["path"],
                gate=gate,
                reasons=list(q.get("reasons") or []),
                review=review,
                cost_usd=o.get("cost_usd", 0.0),
                provenance=prov,
                updated_at=utcnow(),
            )
            .on_conflict_do_nothing()
            .returning(Output.__table__.c.id)
        ).first()
        if row is None:
            continue
        n += 1
        if review == "pending":
            _needs_review(s, batch_id, row[0], job_id, item_id, name, 1, list(q.get("reasons") or []))
    return n


def _needs_review(
    s: Any, batch_id: str, output_id: int, job_id: int, item_id: str, preset: str, take: int, reasons: list[str]
) -> None:
    webhooks.emit(
        s,
        batch_id,
        "output.needs_review",
        f"{output_id}:{take}",
        {"output_id": output_id, "job_id": job_id, "sku": item_id, "preset": preset, "take": take, "reasons": reasons},
    )


def list_outputs(
    s: Any, batch_id: str, flt: OutputFilter = OutputFilter(), *, cursor: str | None = None, limit: int = 200
) -> tuple[list[Output], str | None]:
    """Outputs in id order, `limit` at a time (keyset paging on the id, like control.list_jobs)."""
    get_batch(s, batch_id)
    after = int(cursor) if cursor and cursor.isdigit() else 0
    rows = list(
        s.scalars(
            flt.apply(select(Output).where(Output.batch_id == batch_id, Output.id > after))
            .order_by(Output.id)
            .limit(limit + 1)
        )
    )
    return rows[:limit], (str(rows[limit - 1].id) if len(rows) > limit else None)


def _drafts(s: Session, output_ids: list[int]) -> set[int]:
    """The outputs whose current take is a draft (its final not rendered yet)."""
    if not output_ids:
        return set()
    return {
        i
        for i, prov in s.execute(select(Output.id, Output.provenance).where(Output.id.in_(output_ids)))
        if (prov or {}).get("draft")
    }


def draft_summary(s: Session, batch_id: str, prices: PriceTable) -> dict[str, Any] | None:
    """What drafting saved: drafts rendered, finals rendered for approved drafts, and the finals not paid
    for (rejected drafts) at list price. None for a batch without drafts."""
    from hitline.jobs.context import load_batch

    draft_size = load_batch(s, batch_id).options.draft
    if not draft_size:
        return None
    n = {"drafts": 0, "finals": 0, "rejected": 0, "waiting": 0}
    usd = {"draft_usd": 0.0, "final_usd": 0.0, "finals_not_paid_usd": 0.0}
    for review, prov, _cost in s.execute(
        select(Output.review, Output.provenance, Output.cost_usd).where(Output.batch_id == batch_id)
    ):
        prov = prov or {}
        draft = prov.get("draft") or prov.get("final_of_draft")
        if not draft:
            continue
        takes = prov.get("takes") or []
        n["drafts"] += 1
        usd["draft_usd"] += sum(t.get("cost_usd", 0.0) for t in takes if not t.get("final"))
        if prov.get("final_of_draft"):
            n["finals"] += 1
            usd["final_usd"] += sum(t.get("cost_usd", 0.0) for t in takes if t.get("final"))
        elif review == "rejected":
            n["rejected"] += 1
            usd["finals_not_paid_usd"] += prices.image_cost(prov.get("model", "local/"), draft["final_size"])
        else:
            n["waiting"] += 1
    return {"draft_size": draft_size, **n, **{k: round(v, 6) for k, v in usd.items()}}


def review_counts(s: Session, batch_id: str) -> dict[str, int]:
    counts = {k: 0 for k in STATES}
    for state, n in s.execute(
        select(Output.review, func.count()).where(Output.batch_id == batch_id).group_by(Output.review)
    ):
        counts[state] = n
    return counts


def decisions_of(s: Session, output_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = {i: [] for i in output_ids}
    if not output_ids:
        return out
    for d in s.scalars(
        select(ReviewDecision).where(ReviewDecision.output_id.in_(output_ids)).order_by(ReviewDecision.id)
    ):
        out[d.output_id].append(
            {
                "take": d.take,
                "decision": d.decision,
                "note": d.note,
                "by": d.by,
                "at": d.at.isoformat() if d.at else None,
            }
        )
    return out


@dataclass
class Decided:
    decision: str  # approved | rejected | redo
    changed: list[int]  # outputs now in that state
    skipped: int  # matched but left alone: already in that state, or a take being rendered
    redo: list[int] = dataclasses.field(default_factory=list)  # send tasks.review.redo for each

    @property
    def message(self) -> str:
        verb = {"approved": "approved", "rejected": "rejected", "redo": "sent for a new take"}[self.decision]
        extra = f" ({self.skipped} left as they were)" if self.skipped else ""
        return f"{len(self.changed)} outputs {verb}{extra}"


def decide(s: Session, batch_id: str, flt: OutputFilter, decision: str, *, by: str, note: str | None = None) -> Decided:
    """Approve, reject or redo the batch's outputs that match. A take being rendered (redo) is left alone;
    so is an output already in the asked state. Each change is conditional on the state read, so two
    reviewers deciding at once record one decision each, the later one winning."""
    state = DECISIONS.get(decision, decision if decision in DECISIONS.values() else None)
    if state is None:
        raise InputError(f"decision {decision!r} is not one of approve, reject, redo")
    note = (note or "").strip() or None
    if note and len(note) > NOTE_MAX:
        raise InputError(f"a note is at most {NOTE_MAX} characters")
    if state == "redo" and not note:
        raise InputError("a redo needs a note: what the new take should change (it is added to the prompt)")
    b = get_batch(s, batch_id)
    if state == "redo" and b.cancelled_at is not None:
        raise Conflict(f"batch {batch_id} is cancelled: resume it before asking for new takes")
    rows = list(
        s.execute(
            flt.apply(
                select(Output.id, Output.review, Output.take, Output.job_id, Output.item_id, Output.preset).where(
                    Output.batch_id == batch_id
                )
            ).order_by(Output.id)
        )
    )
    if flt.output_ids is not None and not rows:
        raise NotFound(f"batch {batch_id} has no output {', '.join(map(str, flt.output_ids))}")
    out = Decided(state, [], 0)
    now = utcnow()
    drafts = _drafts(s, [r[0] for r in rows]) if state == "approved" else set()
    for oid, current, take, job_id, item_id, preset in rows:
        if current in ("redo", "final") or (current == state and state != "redo"):
            out.skipped += 1
            continue
        final = state == "approved" and oid in drafts
        won = rowcount(
            s.execute(
                update(Output)
                .where(Output.id == oid, Output.review == current, Output.take == take)
                .values(
                    review="final" if final else state,
                    note=note,
                    reviewed_by=by,
                    reviewed_at=now,
                    error=None,
                    updated_at=now,
                )
                .execution_options(synchronize_session=False)
            )
        )
        if not won:
            out.skipped += 1
            continue
        s.add(ReviewDecision(output_id=oid, take=take, decision=state, note=note, by=by, at=now))
        out.changed.append(oid)
        if state == "redo" or final:
            out.redo.append(oid)
        if state == "approved" and not final:
            webhooks.emit(
                s,
                batch_id,
                "output.approved",
                f"{oid}:{take}",
                {"output_id": oid, "job_id": job_id, "sku": item_id, "preset": preset, "take": take, "by": by},
            )
    s.flush()
    return out


class AfterReview(Protocol):
    """What a door does once a decision is committed: send the redo takes (tasks.review.after_review)
    and the webhook deliveries the decision wrote. The job layer does not import Celery."""

    def __call__(self, redo_ids: list[int], /) -> None: ...


def review(
    rt: Any, batch_id: str, flt: OutputFilter, decision: str, *, by: str, note: str | None = None, after: AfterReview
) -> Decided:
    """The review verb, the same through every door (HTTP, CLI, dashboard via HTTP): decide in one
    transaction, commit, then send what the decision made."""
    with session_scope(rt.db_url) as s:
        done = decide(s, batch_id, flt, decision, by=by, note=note)
    after(done.redo)
    return done


# --- a redo's new take (run by tasks.review.redo) ----------------------------------------------------


def rerender(rt: Runtime, output_id: int) -> str:
    """Render the next take of an output in `redo`: the reviewer's note added to the prompt, reserved
    against the batch budget and charged like any render, judged by the gate, then pending again. Or, for
    an approved draft (`final`), its final take: at the preset's own size with the draft as one more
    reference (the final keeps its composition), judged by the gate: approved when it passes, pending when
    not. Safe to run twice: the take is written only while the output is still in that state at that take."""
    from hitline import line
    from hitline.domain.images import file_sha256
    from hitline.domain.models import Preset
    from hitline.domain.promo_copy import CopyError
    from hitline.jobs import localise, quality
    from hitline.jobs.context import JobContext, load_batch
    from hitline.jobs.stages import RenderBudget, result_stage

    with session_scope(rt.db_url) as s:
        o = s.get(Output, output_id)
        if o is None or o.review not in ("redo", "final"):
            return "nothing to redo"
        final, state = o.review == "final", o.review
        draft_path = o.path
        job = s.get(Job, o.job_id)
        if job is None:  # gone with its batch
            return "nothing to redo"
        batch = load_batch(s, o.batch_id)
        take, note, name, prov = o.take, o.note or "", o.preset, dict(o.provenance or {})
        # the job as its outputs' stage sees it (the stage whose result is the RenderResult)
        stage = result_stage(RenderResult)
        jc = JobContext(rt, batch, job.id, job.kind, job.item_id, stage, dict(job.row or {}), dict(job.result or {}))
    renderer = jc.providers.renderer
    analysis, retrieved = read(jc.result, AnalyzeResult), read(jc.result, RetrieveResult)
    if analysis is None or retrieved is None:
        return redo_failed(rt, output_id, take, "the SKU has no style analysis or retrieved hits recorded")
    style = analysis.style
    refs = [Path(h.image_path) for h in retrieved.hits]
    if final:  # the approved draft leads: same composition, final size
        refs.append(Path(draft_path))
        style = style.model_copy(
            update={
                "prompt": f"{style.prompt}\nKeep the composition, pose and framing of "
                "the last reference image (the approved draft) exactly."
            }
        )
    else:
        style = style.model_copy(update={"prompt": f"{style.prompt}\nReviewer's note for this take: {note}"})
    ref_shas = [file_sha256(p) for p in refs]
    # a localised output (banner@de-DE): that one (preset, locale) again, its words re-typeset or re-written
    preset_name, _, locale = name.partition("@")
    base = next((p for p in jc.presets if p.name == preset_name), None)
    if base is None:
        return redo_failed(rt, output_id, take, f"preset {preset_name} is no longer in the batch's presets")
    preset = base
    if final:
        preset = (
            base
            if base.size == prov["draft"]["final_size"]
            else Preset.build(
                preset_name,
                base.aspect_ratio,
                prov["draft"]["final_size"],
                base.background,
                low_res=base.low_res,
                rules=dict(base.rules),
            )
        )
    elif prov.get("size") and prov["size"] != base.size:  # downsized by the input checks: the same size again
        preset = Preset.build(
            preset_name, base.aspect_ratio, prov["size"], base.background, low_res=base.low_res, rules=dict(base.rules)
        )
    preset = dataclasses.replace(preset, slots=base.slots)  # slot boxes are shares of the frame: any size
    budget = RenderBudget(jc, renderer.model)

    def paint(style: Any, tag: str) -> tuple[Path, float, str]:
        key = line.render_key(renderer.model, jc.image_sha, ref_shas, style, preset)
        dest = jc.out_dir / f"{preset_name}{'-' + tag if tag else ''}-{key[:12]}.png"
        path, charged, _ = budget.render(renderer, refs, style, preset, key, dest)
        return Path(path), charged, key

    def judge(path: Path) -> tuple[str, list[str]]:
        run = quality.GateRun(jc, budget, renderer, jc.providers.judge, refs, style, ref_shas)
        verdict = run.verdict(preset, path)
        return ("passed" if verdict.passed else "needs_review"), list(verdict.reasons)

    words: dict[str, Any] = {}
    try:
        if locale:
            made = localise.retake(jc, preset, locale, style, paint, judge if rt.settings.quality_gate else None)
            path, charged, key, gate, reasons = (made[k] for k in ("path", "charged", "key", "gate", "reasons"))
            words = {"locale": locale, "text": made["text"]}
        else:
            path, charged, key = paint(style, "")
            gate, reasons = judge(path) if rt.settings.quality_gate else ("unchecked", [])
    except BudgetExceeded as e:
        return redo_failed(rt, output_id, take, f"new take not rendered: {e}")
    except CopyError as e:
        return redo_failed(rt, output_id, take, f"new take not rendered: {e}")
    with session_scope(rt.db_url) as s:
        prov.setdefault("takes", []).append(
            {
                "take": take + 1,
                "key": key,
                "cost_usd": charged,
                "gate": gate,
                "note": None if final else note,
                "prompt": style.prompt,
                **words,
                **({"final": True, "draft_path": draft_path} if final else {}),
            }
        )
        if final:
            prov["final_of_draft"] = prov.pop("draft")
            prov["size"], prov["width"], prov["height"] = preset.size, preset.width, preset.height
        after = "approved" if final and gate != "needs_review" else "pending"
        won = rowcount(
            s.execute(
                update(Output)
                .where(Output.id == output_id, Output.review == state, Output.take == take)
                .values(
                    take=take + 1,
                    path=str(path),
                    gate=gate,
                    reasons=reasons,
                    review=after,
                    cost_usd=Output.cost_usd + charged,
                    provenance=prov,
                    error=None,
                    updated_at=utcnow(),
                )
                .execution_options(synchronize_session=False)
            )
        )
        if won and after == "pending":
            _needs_review(s, batch.id, output_id, job.id, job.item_id, name, take + 1, reasons)
        elif won:
            webhooks.emit(
                s,
                batch.id,
                "output.approved",
                f"{output_id}:{take + 1}",
                {
                    "output_id": output_id,
                    "job_id": job.id,
                    "sku": job.item_id,
                    "preset": name,
                    "take": take + 1,
                    "final_of_draft": True,
                },
            )
    return f"take {take + 1} of output {output_id}: {gate}" if won else "another delivery wrote this take"


def redo_failed(rt: Runtime, output_id: int, take: int, reason: str) -> str:
    """The new take could not be made (budget, provider gave up): back to pending with the reason shown."""
    with session_scope(rt.db_url) as s:
        s.execute(
            update(Output)
            .where(Output.id == output_id, Output.review.in_(("redo", "final")), Output.take == take)
            .values(review="pending", error=reason, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
    return reason
