"""Job-table rows and summaries as API models, with the URLs a client follows (outputs, images)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from db.models import Attempt, Job
from hitline.api import schemas
from hitline.jobs.control import BatchSummary, is_rejected, render_facts
from hitline.jobs.results import AnalyzeResult, RenderResult, RetrieveResult, read

FINISHED = ("done", "failed", "budget_exceeded", "cancelled")


def batch(b: BatchSummary) -> schemas.Batch:
    sku = b.by_state.get("sku", {})
    total = sum(sku.values())
    status = "cancelled" if b.cancelled and b.open == 0 else ("running" if b.open else "finished")
    if b.cancelled and b.open:
        status = "cancelling"
    return schemas.Batch(
        id=b.batch_id,
        created_at=b.created_at,
        cancelled=b.cancelled,
        status=status,
        options=b.options,
        budget_usd=b.budget_usd,
        spent_usd=round(b.spent_usd, 6),
        progress=schemas.Progress(
            total=total,
            finished=sum(n for st, n in sku.items() if st in FINISHED),
            done=sku.get("done", 0),
            failed=sku.get("failed", 0),
            open=b.open,
        ),
        counts=b.by_state,
        stages=b.by_stage,
        failures=[schemas.Failure(**f) for f in b.failures],
        quality=b.quality,
        links={
            "self": f"/batches/{b.batch_id}",
            "jobs": f"/batches/{b.batch_id}/jobs",
            "failed": f"/batches/{b.batch_id}/jobs?state=failed",
            "dashboard": f"/ui/batches/{b.batch_id}",
        },
    )


def job_row(j: Job) -> schemas.JobRow:
    return schemas.JobRow(
        id=j.id,
        batch_id=j.batch_id,
        kind=j.kind,
        item_id=j.item_id,
        stage=j.stage,
        state=j.state,
        attempts=j.attempts,
        reason=j.error,
        cost_usd=round(j.cost_usd, 6),
        updated_at=j.updated_at,
        url=f"/jobs/{j.id}",
    )


def file_url(batch_id: str, out_dir: str, path: str | Path) -> str | None:
    """The /files URL of an output under OUT/<batch>/, or None for anything outside it."""
    base = (Path(out_dir) / batch_id).resolve()
    try:
        rel = Path(path).resolve().relative_to(base)
    except ValueError:
        return None
    return f"/files/{batch_id}/{rel.as_posix()}"


def job_detail(j: Job, attempts: list[Attempt], out_dir: str) -> schemas.JobDetail:
    render, retrieved = read(j, RenderResult), read(j, RetrieveResult)
    analysis = read(j, AnalyzeResult)
    outputs = []
    for o in render.outputs if render else []:
        url = file_url(j.batch_id, out_dir, o.path)
        if url:
            q, t = o.quality, o.text
            outputs.append(
                schemas.Output(
                    locale=o.locale,
                    text=schemas.OutputText(
                        mode=t.mode,
                        texts=t.texts,
                        machine_translated=t.machine_translated,
                        status=t.status,
                        cer=t.cer,
                        readings=t.readings,
                    )
                    if t
                    else None,
                    preset=o.preset,
                    width=o.width,
                    height=o.height,
                    cost_usd=o.cost_usd,
                    url=url,
                    derived_from=o.derived_from,
                    reused_from=o.reused_from,
                    quality=schemas.OutputQuality(status=q.status, reasons=q.reasons, rerender=q.rerender)
                    if q
                    else None,
                )
            )
    sheet = Path(out_dir) / j.batch_id / j.item_id / "contact_sheet.png"
    hits = [
        schemas.HitOut(
            product_id=h.product_id,
            score=h.score,
            found_by=h.found_by,
            sales_count=h.sales_count,
            description=h.description,
            image_url=f"/jobs/{j.id}/hits/{n}",
        )
        for n, h in enumerate(retrieved.hits if retrieved else [])
    ]
    facts = render_facts(j)
    checks = render.inputs.checks if render and render.inputs else {}
    return schemas.JobDetail(
        **job_row(j).model_dump(),
        row=j.row or {},
        input_checks=schemas.InputChecks(**facts.input_checks.model_dump(), checks=checks)
        if facts and checks
        else None,
        gate=facts.gate if facts else {},
        render_plan=facts.render_plan if facts else None,
        history=[
            schemas.AttemptOut(
                stage=a.stage, started_at=a.started_at, seconds=a.seconds, outcome=a.outcome, error=a.error
            )
            for a in attempts
        ],
        outputs=outputs,
        contact_sheet_url=file_url(j.batch_id, out_dir, sheet) if sheet.exists() else None,
        flatlay_url=f"/jobs/{j.id}/flatlay"
        if j.kind == "sku" and (j.row or {}).get("image_path") and not is_rejected(j)
        else None,
        hits=hits,
        retrieval_filter=retrieved.filter if retrieved else None,
        style=analysis.style if analysis else None,
    )


def output_row(o: Any, out_dir: str, decisions: list[dict[str, Any]] | None = None) -> schemas.OutputRow:
    return schemas.OutputRow(
        id=o.id,
        job_id=o.job_id,
        sku=o.item_id,
        preset=o.preset,
        take=o.take,
        review=o.review,
        gate=o.gate,
        reasons=list(o.reasons or []),
        note=o.note,
        reviewed_by=o.reviewed_by,
        reviewed_at=o.reviewed_at,
        cost_usd=round(o.cost_usd, 6),
        error=o.error,
        url=file_url(o.batch_id, out_dir, o.path),
        flatlay_url=f"/jobs/{o.job_id}/flatlay",
        decisions=[schemas.ReviewDecisionOut(**d) for d in (decisions or [])],
    )
