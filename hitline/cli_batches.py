"""`hitline status | retry | cancel | serve | token`: operating on batches from a terminal. The work is
hitline.jobs.control (shared with the HTTP API and the Celery contract); this module only prints.
Everything fits an 80-column terminal: reasons get their own wrapped lines instead of a narrow column."""

from __future__ import annotations

from datetime import timedelta

import json
import shutil
import textwrap
import time
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any, Callable, List, Optional

import typer
from rich.console import Console

if TYPE_CHECKING:
    from hitline.jobs.results import BatchQuality, InputFindings, RenderFacts, RenderOutput


console = Console()
tenant_app = typer.Typer(no_args_is_help=True, help="Tenants: create one, set its monthly budget.")
token_app = typer.Typer(no_args_is_help=True, help="API tokens for `hitline serve` (only a hash is stored).")


def register(app: typer.Typer, *, configure: Callable[..., None], guard: Callable[[Callable[[], Any]], None]) -> None:
    """Add these commands to the `hitline` app. hitline/cli.py passes its own settings set-up and error
    guard (one clear line for a mistake or an unreachable service), so there is no import back into it."""
    _hooks.update(configure=configure, guard=guard)
    for fn in (status, retry, cancel, serve):
        app.command()(fn)
    app.add_typer(token_app, name="token")
    app.add_typer(tenant_app, name="tenant")


_hooks: dict[str, Callable[..., Any]] = {}


def _configure() -> None:
    _hooks["configure"](None, None, None)


def _guard(fn: Callable[[], Any]) -> None:
    _hooks["guard"](fn)


def _width() -> int:
    return max(60, min(shutil.get_terminal_size((80, 24)).columns, 120))


def _wrap(text: str, indent: int, hanging: int | None = None) -> str:
    return textwrap.fill(
        text,
        width=_width(),
        initial_indent=" " * indent,
        subsequent_indent=" " * (indent if hanging is None else hanging),
        break_long_words=True,
        break_on_hyphens=False,
    )


_GATE = {"passed": "passed", "passed_after_rerender": "passed after re-render", "needs_review": "needs review"}


def _gate(counts: dict[str, int]) -> str:
    return ", ".join(f"{counts[k]} {label}" for k, label in _GATE.items() if counts.get(k))


def _findings(found: InputFindings) -> list[str]:
    """One SKU's input-check findings (control.render_facts), in words."""
    out = [f"{p} downsized to {size} (low_res)" for p, size in found.downsized.items()]
    out += [f"{p} failed: {msg}" for p, msg in found.failed.items()]
    out += [f"{p}: background not white" for p in found.background]
    return out + (["touches frame"] if found.touches_frame else [])


def _job_note(facts: RenderFacts | None) -> str:
    """A SKU row's second line: what its input checks found and how its outputs left the gate."""
    if not facts:
        return ""
    found, gate = _findings(facts.input_checks), _gate(facts.gate)
    return ". ".join(([f"input checks: {'; '.join(found)}"] if found else []) + ([f"gate: {gate}"] if gate else []))


def _quality_lines(q: BatchQuality) -> list[str]:
    """The batch's input checks, gate outcomes and render-plan saving (control.quality_summary)."""
    from hitline.jobs.quality import plan_text

    lines = []
    plan, found, gate = q.render_plan, q.input_checks, q.gate
    if plan_text(plan):
        lines.append(_wrap(plan_text(plan), 2, 4))
    if any(gate.values()):
        lines.append(_wrap(f"quality gate (outputs): {_gate(gate)}", 2, 4))
    low = found.low_res
    parts = []
    if low:  # a count per preset only where it differs from the number of low_res SKUs
        detail = [
            f"{'' if n == low else f'{n} '}{p} downsized to {size}"
            for p, sizes in found.downsized.items()
            for size, n in sizes.items()
        ]
        detail += [f"{'' if n == low else f'{n} '}{p} failed" for p, n in found.failed.items()]
        parts.append(f"{low} SKU{'s' if low > 1 else ''} low_res ({', '.join(detail)})")
    if found.touches_frame:
        parts.append(f"{found.touches_frame} touches frame")
    if found.background:
        parts.append(f"{found.background} background not white ({', '.join(found.background_presets)})")
    if parts:
        lines.append(_wrap("input checks: " + ", ".join(parts), 2, 4))
    d = q.drafts
    if d:
        lines.append(
            _wrap(
                f"drafts at {d.draft_size}: {d.drafts} drafts (${d.draft_usd:.3f}), {d.finals} "
                f"finals (${d.final_usd:.3f}), {d.rejected} rejected: ${d.finals_not_paid_usd:.3f} of "
                f"finals not paid for, {d.waiting} waiting for review",
                2,
                4,
            )
        )
    return lines


def _counts(states: dict[str, int]) -> str:
    order = ("done", "failed", "running", "retrying", "pending", "budget_exceeded", "cancelled")
    keys = sorted(states, key=lambda k: order.index(k) if k in order else len(order))
    return ", ".join(f"{states[k]} {k}" for k in keys)


def render_summary(b: Any) -> str:  # control.BatchSummary
    """A batch in a dozen lines however many SKUs it has."""
    lines = []
    status = "cancelled" if b.cancelled else ("running" if b.open else "finished")
    budget = f" of a ${b.budget_usd:.2f} budget" if b.budget_usd is not None else ""
    lines.append(f"batch {b.batch_id}  {status}  cost ${b.spent_usd:.3f}{budget}")
    for kind, label in (("sku", "new SKUs"), ("hit", "catalog")):
        states = b.by_state.get(kind, {})
        if states:
            lines.append(f"  {label:<9}{sum(states.values()):>6}: {_counts(states)}")
    stages = b.by_stage.get("sku", {})
    waiting = [
        f"{stage} {_counts({k: v for k, v in st.items() if k not in ('done', 'failed', 'cancelled')})}"
        for stage, st in stages.items()
        if stage != "done" and any(k not in ("done", "failed", "cancelled") for k in st)
    ]
    if waiting:
        lines.append("  unfinished SKUs by stage: " + "; ".join(waiting))
    lines += _quality_lines(b.quality)
    if b.failures:
        n = sum(f["count"] for f in b.failures)
        lines.append(f"failures by reason ({n} jobs, largest group first):")
        for f in b.failures:
            what = "SKU" if f["kind"] == "sku" else "catalog row"
            lines.append(
                f"  {f['count']:>5} {what}{'s' if f['count'] > 1 else ''} at {f['stage']}"
                + ("" if f["retryable"] else " (rejected row: fix the CSV, resubmit)")
            )
            lines.append(_wrap(f["reason"] or "(no reason recorded)", 8))
        lines.append(f"retry: hitline retry {b.batch_id} [--stage S] [--reason TEXT]")
        lines.append(f"rows:  hitline status {b.batch_id} --jobs --state failed")
    return "\n".join(lines)


def render_jobs(page: Any) -> str:  # control.JobPage
    from hitline.jobs import control

    lines = [f"{'job':>7}  {'id':<24} {'stage':<9} {'state':<15} {'att':>3} {'cost $':>8}"]
    for j in page.jobs:
        lines.append(f"{j.id:>7}  {j.item_id[:24]:<24} {j.stage:<9} {j.state:<15} {j.attempts:>3} {j.cost_usd:>8.3f}")
        if j.error:
            lines.append(_wrap(j.error, 9))
        note = _job_note(control.render_facts(j))
        if note:
            lines.append(_wrap(note, 9))
    return "\n".join(lines)


def status(
    batch: Optional[str] = typer.Argument(None, help="batch id (default: the latest)"),
    jobs: bool = typer.Option(False, "--jobs", help="one row per job, a page at a time"),
    kind: Optional[str] = typer.Option(None, help="with --jobs/--json: sku | hit"),
    state: Optional[str] = typer.Option(None, help="with --jobs/--json: only this state, e.g. failed"),
    stage: Optional[str] = typer.Option(None, help="with --jobs: only jobs standing at this stage"),
    reason: Optional[str] = typer.Option(None, help="with --jobs: reason contains this text"),
    limit: int = typer.Option(50, help="with --jobs: rows per page"),
    cursor: Optional[str] = typer.Option(None, help="with --jobs: the page after this cursor"),
    watch: bool = typer.Option(False, "--watch", help="refresh the summary every 2 s until the batch ends"),
    as_json: bool = typer.Option(False, "--json", help="machine-readable, for other services"),
) -> None:
    """A batch at a glance: counts by stage and state, failures grouped by reason, cost (--jobs for rows)."""
    _configure()
    _guard(lambda: _status(batch, jobs, kind, state, stage, reason, limit, cursor, watch, as_json))


def _status(
    batch: Optional[str],
    jobs: bool,
    kind: Optional[str],
    state: Optional[str],
    stage: Optional[str],
    reason: Optional[str],
    limit: int,
    cursor: Optional[str],
    watch: bool,
    as_json: bool,
) -> None:
    from db import crud
    from db.session import session_scope
    from hitline.jobs import control
    from hitline.jobs.context import get_runtime

    rt = get_runtime()
    with session_scope(rt.db_url) as s:
        batch = batch or crud.latest_batch_id(s)
        if batch is None:
            console.print("no batch yet")
            return
        control.get_batch(s, batch)
    if as_json:
        return _print_json(rt, batch, kind, state)
    while True:
        with session_scope(rt.db_url) as s:
            if jobs:
                page = control.list_jobs(
                    s,
                    batch,
                    control.JobFilter(state=state, stage=stage, reason=reason, kind=kind),
                    cursor=cursor,
                    limit=limit,
                )
                text = render_jobs(page)
                if page.next_cursor:
                    text += f"\nnext page: hitline status {batch} --jobs --cursor {page.next_cursor}"
            else:
                summ = control.summary(s, batch)
                text = render_summary(summ)
        if watch and not jobs:
            console.clear()
        console.print(text, highlight=False, markup=False, soft_wrap=True)
        if not watch or jobs or not summ.open:
            return
        time.sleep(2.0)


def _print_json(rt: Any, batch: str, kind: Optional[str], state: Optional[str]) -> None:
    from db import crud
    from db.session import session_scope
    from hitline.jobs import control

    with session_scope(rt.db_url) as s:
        summ = control.summary(s, batch)
        rows = [j for j in crud.jobs(s, batch, kind) if state is None or j.state == state]
        timings = crud.stage_seconds(s, [j.id for j in rows])
    data = {
        "batch": batch,
        "spent_usd": round(summ.spent_usd, 6),
        "budget_usd": summ.budget_usd,
        "cancelled": summ.cancelled,
        "counts": summ.by_state,
        "stages": summ.by_stage,
        "failures": summ.failures,
        **summ.quality.model_dump(mode="json"),
        "jobs": [
            {
                "job": j.id,
                "kind": j.kind,
                "id": j.item_id,
                "stage": j.stage,
                "state": j.state,
                "attempts": j.attempts,
                "seconds": timings.get(j.id, {}),
                "cost_usd": round(j.cost_usd, 6),
                "reason": j.error,
                "outputs": [o.path for o in _outputs(j)],
                **_facts(j),
            }
            for j in rows
        ],
    }
    print(json.dumps(data, indent=2))


def _outputs(job: Any) -> list[RenderOutput]:
    from hitline.jobs.results import RenderResult, read

    render = read(job, RenderResult)
    return render.outputs if render else []


def _facts(job: Any) -> dict[str, Any]:
    from hitline.jobs import control

    facts = control.render_facts(job)
    return facts.model_dump(mode="json") if facts else {}


def retry(
    batch: str,
    stage: Optional[str] = typer.Option(None, help="only jobs that failed in this stage"),
    reason: Optional[str] = typer.Option(None, help="only jobs whose reason contains this text"),
    job: Optional[List[str]] = typer.Option(None, "--job", help="a job id or SKU id (repeatable)"),
    wait: bool = typer.Option(True, help="with a broker: wait for the retried jobs"),
) -> None:
    """Retry a batch's failed jobs (all, or by stage, reason or job) from the stage they failed in."""
    _configure()
    _guard(lambda: _retry(batch, stage, reason, job, wait))


def _retry(batch: str, stage: Optional[str], reason: Optional[str], job: Optional[List[str]], wait: bool) -> None:
    from db.session import session_scope
    from hitline.jobs import control, verbs
    from hitline.jobs.context import get_runtime
    from tasks.chains import send
    from workers.embedded import embedded_worker

    rt = get_runtime()
    embedded = not rt.settings.broker_url
    with embedded_worker(rt.settings.worker_concurrency) if embedded else nullcontext():
        answer = verbs.retry(rt, batch, control.JobFilter(stage=stage, reason=reason), send=send, job_refs=job)
        console.print(answer.message)
        if not answer.jobs:
            return
        if embedded or wait:
            _watch_until_settled(rt, batch, list(answer.job_ids))
    with session_scope(rt.db_url) as s:
        console.print(render_summary(control.summary(s, batch)), highlight=False, markup=False)


def _watch_until_settled(rt: Any, batch: str, job_ids: list[int]) -> None:
    """Poll the table until the retried jobs are no longer pending/running/retrying."""
    from db import crud
    from db.session import session_scope

    while True:
        with session_scope(rt.db_url) as s:
            open_ = sum(1 for j in crud.jobs(s, batch, ids=job_ids) if j.state in crud.OPEN)
        if not open_:
            return
        time.sleep(0.5)


def cancel(batch: str) -> None:
    """Cancel a batch: queued jobs stop now, running ones after their current stage (paid work is kept)."""
    _configure()

    def run() -> None:
        from hitline.jobs import verbs
        from hitline.jobs.context import get_runtime

        console.print(verbs.cancel(get_runtime(), batch).message, highlight=False, markup=False)

    _guard(run)


def serve(
    host: str = typer.Option("127.0.0.1", help="address to listen on"),
    port: int = typer.Option(8000),
    workers: int = typer.Option(1, help="uvicorn worker processes (distributed mode only)"),
) -> None:
    """Serve the HTTP API (/docs) and the dashboard (/ui). Without a broker it also runs the embedded worker."""
    _configure()
    import uvicorn

    from hitline.jobs.context import get_runtime
    from workers.embedded import embedded_worker

    rt = get_runtime()
    embedded = not rt.settings.broker_url
    if embedded and workers > 1:
        console.print("[red]error:[/] embedded mode runs in one process: set HITLINE_BROKER_URL for --workers > 1")
        raise typer.Exit(2)
    console.print(
        f"hitline API on http://{host}:{port}/docs, dashboard http://{host}:{port}/ui "
        f"({'embedded worker' if embedded else 'workers on the broker'})"
    )
    with embedded_worker(rt.settings.worker_concurrency) if embedded else nullcontext():
        if workers > 1:
            uvicorn.run(
                "hitline.api.app:create_app", factory=True, host=host, port=port, workers=workers, log_level="warning"
            )
        else:
            from hitline.api import create_app

            uvicorn.run(create_app(rt.settings), host=host, port=port, log_level="warning")


@token_app.command("create")
def token_create(
    name: str,
    tenant: str = typer.Option("default", help="the tenant the token acts in (made if new)"),
    role: str = typer.Option(
        "operate", help="read | submit (+ submit batches) | operate (+ retry, cancel, resume, review, webhooks)"
    ),
    expires_days: float = typer.Option(0, help="the token stops working after this many days (0: never)"),
) -> None:
    """Create a token for NAME and print it once (store it now: only its hash is kept)."""
    _configure()

    def run() -> None:
        from db.session import session_scope
        from hitline.jobs import control
        from hitline.jobs.context import get_runtime

        with session_scope(get_runtime().db_url) as s:
            token = control.create_token(
                s, name, tenant=tenant, role=role, expires_in=timedelta(days=expires_days) if expires_days > 0 else None
            )
        print(token)
        Console(stderr=True).print(
            f"token for {name!r}: shown once, only its hash is stored. Use it as "
            "`Authorization: Bearer <token>` or to log in to the dashboard."
        )

    _guard(run)


@tenant_app.command("create")
def tenant_create(tenant: str) -> None:
    """Make a tenant (tokens, batches and the Celery contract's submissions name it); nothing when it exists."""
    _configure()

    def run() -> None:
        from db.session import session_scope
        from hitline.jobs import control
        from hitline.jobs.context import get_runtime

        with session_scope(get_runtime().db_url) as s:
            control.ensure_tenant(s, tenant)
        console.print(f"tenant {tenant}", markup=False)

    _guard(run)


@tenant_app.command("budget")
def tenant_budget(
    tenant: str,
    monthly: Optional[float] = typer.Option(
        None, help="USD over all of the tenant's batches in a calendar month (UTC); 0 or less: no limit"
    ),
) -> None:
    """Set the tenant's monthly budget (made if new), or show it and this month's spend without --monthly.
    Renders past it are held like those past a batch's budget."""
    _configure()

    def run() -> None:
        import math

        from db import crud
        from db.session import session_scope
        from hitline.errors import InputError
        from hitline.jobs import control
        from hitline.jobs.context import get_runtime

        with session_scope(get_runtime().db_url) as s:
            row = control.ensure_tenant(s, tenant)
            if monthly is not None:
                if not math.isfinite(monthly) or monthly > 1e9:
                    raise InputError(f"--monthly {monthly}: a finite amount of USD up to 1e9 (0: no limit)")
                crud.set_monthly_budget(s, row.id, monthly if monthly > 0 else None)
            budget, spent = crud.tenant_month(s, row.id)
        limit = f"${budget:.2f}" if budget is not None else "no limit"
        console.print(f"tenant {tenant}  monthly budget {limit}  spent this month ${spent:.3f}", markup=False)

    _guard(run)


@token_app.command("list")
def token_list() -> None:
    """Token names, when they were created and last used (never the tokens)."""
    _configure()
    from db.session import session_scope
    from hitline.jobs import control
    from hitline.jobs.context import get_runtime

    with session_scope(get_runtime().db_url) as s:
        for t in control.tokens(s):
            used = t.last_used_at.strftime("%Y-%m-%d %H:%M") if t.last_used_at else "never"
            console.print(
                f"{t.name:<24} tenant {t.tenant_id:<12} {t.role:<8} created {t.created_at:%Y-%m-%d %H:%M}"
                f"  last used {used}"
                + (f"  expires {t.expires_at:%Y-%m-%d %H:%M}" if t.expires_at else "")
                + ("  REVOKED" if t.revoked_at else ""),
                markup=False,
            )


@token_app.command("revoke")
def token_revoke(name: str) -> None:
    """Revoke the token named NAME (requests with it get 401 from now on)."""
    _configure()

    def run() -> None:
        from db.session import session_scope
        from hitline.jobs import control
        from hitline.jobs.context import get_runtime

        with session_scope(get_runtime().db_url) as s:
            control.revoke_token(s, name)
        console.print(f"revoked {name}")

    _guard(run)


__all__ = ["register", "render_summary", "render_jobs"]
