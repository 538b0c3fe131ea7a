"""OUT/<batch>/report.html: one section per SKU (pictures, retrieved hits, style prompt, cost), offline."""

from __future__ import annotations

import html
import os
from pathlib import Path
from db import crud
from db.models import Job
from db.session import session_scope
from hitline.jobs import badges
from hitline.jobs.context import Runtime, load_batch
from hitline.jobs.control import quality_summary
from hitline.jobs.options import BatchOptions
from hitline.jobs.results import AnalyzeResult, RenderOutput, RenderResult, RetrieveResult, read
from hitline.jobs.sheets import draw_missing_sheets, missing_sheets


def _rel(path: str | Path, base: Path) -> str:
    return html.escape(os.path.relpath(Path(path).resolve(), base.resolve()).replace(os.sep, "/"), quote=True)


def write_report(rt: Runtime, batch_id: str) -> Path:
    with session_scope(rt.db_url) as s:
        b = load_batch(s, batch_id)
        jobs = crud.jobs(s, batch_id)
        spent = crud.spent(s, batch_id)
        summary = quality_summary(s, batch_id)
        plan = summary.render_plan
    opts = BatchOptions.read(b.options)
    base = b.out_dir / batch_id
    base.mkdir(parents=True, exist_ok=True)
    skus = [j for j in jobs if j.kind == "sku"]
    draw_missing_sheets(skus, b.out_dir)  # most were drawn by their low-priority tasks already
    bad_hits = [j for j in jobs if j.kind == "hit" and j.state == "failed"]
    e = html.escape
    parts = [
        f"""<!doctype html><html><head><meta charset="utf-8"><title>hitline batch {e(batch_id)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1400px}}
section{{border-top:1px solid #ccc;padding:1em 0}} img{{max-height:260px;max-width:100%;margin:4px;border:1px solid #ddd;background:#fff}}
.sheet{{max-width:100%;max-height:none}} .state-failed{{color:#b00}} .state-done{{color:#070}}
.state-budget_exceeded{{color:#b60}} table{{border-collapse:collapse}} td,th{{padding:2px 8px;border-bottom:1px solid #eee;text-align:left}}
code{{background:#f4f4f4;padding:1px 4px}}{badges.CSS}</style></head><body>
<h1>hitline batch {e(batch_id)}</h1>
<p>{len(skus)} new SKUs: {sum(j.state == "done" for j in skus)} done, {sum(j.state == "failed" for j in skus)} failed,
{sum(j.state == "budget_exceeded" for j in skus)} held by the budget. Provider <code>{e(opts.provider)}</code>,
top-k {opts.top_k}, min sales {opts.min_sales}.
Total cost <b>${spent:.3f}</b>{f" of a ${b.budget_usd:.2f} budget" if b.budget_usd is not None else ""}.</p>
{badges.plan_saving(plan)}
{badges.words_summary(summary.text)}
{badges.batch_counts([r for r in (read(j, RenderResult) for j in skus) if r is not None])}"""
    ]
    for j in skus:
        parts.append(_section(j, base))
    if bad_hits:
        parts.append("<section><h2>Catalog rows that were not indexed</h2><table><tr><th>id</th><th>reason</th></tr>")
        parts += [f"<tr><td>{e(j.item_id)}</td><td>{e(j.error or '')}</td></tr>" for j in bad_hits]
        parts.append("</table></section>")
    parts.append("</body></html>")
    dest = base / "report.html"
    tmp = dest.with_suffix(".part")
    tmp.write_text("\n".join(parts), encoding="utf-8")
    tmp.replace(dest)
    return dest


def _figure(o: RenderOutput, base: Path) -> str:
    e = html.escape
    source = f" resized from {e(o.derived_from)}" if o.derived_from else ""
    locale = f" <b>{e(o.locale)}</b>" if o.locale else ""
    return (
        f"<figure style='display:inline-block' data-preset='{e(o.preset)}'><img src='{_rel(o.path, base)}' "
        f"alt='{e(o.preset)}'><figcaption>{e(o.preset)}{locale} {o.width}x{o.height} ${o.cost_usd:.3f}{source} "
        f"{badges.output_badge(o)}{badges.words(o.text)}</figcaption></figure>"
    )


def _section(job: Job, base: Path) -> str:
    e = html.escape
    out = [f"<section><h2>{e(job.item_id)} <small class='state-{e(job.state)}'>{e(job.state)}</small></h2>"]
    row = job.row or {}
    out.append(
        f"<p>{e(str(row.get('category', '')))} / {e(str(row.get('style', '')))} / "
        f"{e(str(row.get('season', '')))} - hint: <i>{e(str(row.get('prompt_hint', '')))}</i>; "
        f"cost ${job.cost_usd:.3f}; attempts {job.attempts}</p>"
    )
    if job.error:
        out.append(f"<p class='state-failed'>stopped at {e(job.stage)}: {e(job.error)}</p>")
    sheet = base / job.item_id / "contact_sheet.png"
    if sheet.exists():
        out.append(f"<img class='sheet' src='{_rel(sheet, base)}' alt='contact sheet'>")
    rr = read(job, RetrieveResult)
    if rr is not None:
        out.append(
            f"<p>retrieved with <code>{e(rr.filter or 'no filter')}</code>"
            + (f" - {e('; '.join(rr.notes))}" if rr.notes else "")
            + "</p><table><tr><th>hit</th>"
            "<th>RRF score</th><th>found by</th><th>sales</th><th>description</th></tr>"
        )
        for h in rr.hits:
            out.append(
                f"<tr><td>{e(h.product_id)}</td><td>{h.score:.4f}</td><td>{e(', '.join(h.found_by))}</td>"
                f"<td>{h.sales_count}</td><td>{e(h.description)}</td></tr>"
            )
        out.append("</table>")
    analysis = read(job, AnalyzeResult)
    if analysis is not None:
        st = analysis.style
        out.append(
            "<table>"
            + "".join(
                f"<tr><th>{k}</th><td>{e(str(getattr(st, k)))}</td></tr>"
                for k in ("scene", "lighting", "pose", "mood", "prompt")
            )
            + "</table>"
        )
    render = read(job, RenderResult)
    if render is not None:
        out.append(badges.input_notes(render))
        by_locale: dict[str, list[RenderOutput]] = {}
        for o in render.outputs:
            if o.locale:  # shown below, each locale of a preset side by side
                by_locale.setdefault(o.preset, []).append(o)
                continue
            out.append(_figure(o, base))
        for preset, outs in by_locale.items():
            out.append(
                f"<h3>{e(preset)} in {len(outs)} locale(s)</h3><div class='locales'>"
                + "".join(_figure(o, base) for o in outs)
                + "</div>"
            )
        out.append(badges.refused_words(render.text))
    out.append("</section>")
    return "\n".join(out)


def report_when_finished(rt: Runtime, batch_id: str, wait_for_sheets: bool = False) -> Path | None:
    """The batch's report.html, written (again) once no job of the batch is open and the report is missing
    or older than the last job change; None while the batch runs. Every door's batches get one: the last
    contact-sheet task of a batch calls this, and the API calls it before serving the report (a batch
    whose last job failed sends no contact-sheet task).

    wait_for_sheets (the sheet tasks): None while a done SKU's sheet is still to be drawn - its own task,
    queued behind every stage at the lowest priority, draws it and writes the report then. Without it the
    first sheet task after a big batch's last SKU drew every other sheet itself, on every worker at once
    (measured: ~10 min per 1,000 SKUs, twice over). The API and `hitline report` draw what is missing."""
    from datetime import timezone

    from sqlalchemy import func, select

    with session_scope(rt.db_url) as s:
        open_jobs, last = s.execute(
            select(func.count(Job.id).filter(Job.state.in_(crud.OPEN)), func.max(Job.updated_at)).where(
                Job.batch_id == batch_id
            )
        ).one()
        out = load_batch(s, batch_id).out_dir / batch_id
    if open_jobs:
        return None
    if wait_for_sheets:
        with session_scope(rt.db_url) as s:
            if missing_sheets(crud.jobs(s, batch_id, "sku"), out.parent):
                return None
    dest = out / "report.html"
    if dest.exists() and last is not None:
        stamp = (last if last.tzinfo else last.replace(tzinfo=timezone.utc)).timestamp()
        if dest.stat().st_mtime >= stamp:
            return dest
    return write_report(rt, batch_id)
