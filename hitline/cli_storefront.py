"""`hitline outputs | review | webhook | export`: from draft to storefront in a terminal. The work is
hitline.jobs.review, hitline.jobs.webhooks and hitline.jobs.export (the HTTP API calls the same); this
module only prints."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Any, Callable, List, Optional

import typer
from rich.console import Console

console = Console()
webhook_app = typer.Typer(no_args_is_help=True, help="Webhook endpoints, deliveries and redelivery.")
_hooks: dict[str, Callable[..., Any]] = {}


def register(app: typer.Typer, *, configure: Callable[..., None], guard: Callable[[Callable[[], Any]], None]) -> None:
    _hooks.update(configure=configure, guard=guard)
    for fn in (outputs, review, export):
        app.command()(fn)
    app.add_typer(webhook_app, name="webhook")


def _run(fn: Callable[[], Any]) -> None:
    _hooks["configure"](None, None, None)
    _hooks["guard"](fn)


def outputs(
    batch: str,
    state: Optional[str] = typer.Option(None, "--state", help="none | pending | approved | rejected | redo"),
    preset: Optional[str] = typer.Option(None),
    sku: Optional[str] = typer.Option(None),
) -> None:
    """A batch's outputs with their review state and the gate's reasons."""

    def go() -> None:
        from db.session import session_scope
        from hitline.jobs import review as rv
        from hitline.jobs.context import get_runtime

        with session_scope(get_runtime().db_url) as s:
            rows, _ = rv.list_outputs(s, batch, rv.OutputFilter(review=state, preset=preset, item_id=sku), limit=10_000)
            counts = rv.review_counts(s, batch)
            console.print(", ".join(f"{n} {k}" for k, n in counts.items() if n) or "no outputs yet", highlight=False)
            for o in rows:
                who = f" by {o.reviewed_by}" if o.reviewed_by else ""
                why = f"  ({'; '.join(o.reasons)})" if o.reasons else ""
                console.print(
                    f"{o.id:>6}  {o.item_id:<16} {o.preset:<14} take {o.take}  {o.gate:<14} {o.review}{who}{why}",
                    highlight=False,
                    markup=False,
                    soft_wrap=True,
                )

    _run(go)


def review(
    batch: str,
    approve: bool = typer.Option(False, "--approve"),
    reject: bool = typer.Option(False, "--reject"),
    redo: bool = typer.Option(False, "--redo", help="render a new take with --note added to the prompt"),
    note: Optional[str] = typer.Option(None, help="why (needed for --redo)"),
    output: Optional[List[int]] = typer.Option(None, "--output", help="an output id (repeatable)"),
    state: Optional[str] = typer.Option(None, "--state", help="only outputs in this review state"),
    preset: Optional[str] = typer.Option(None),
    sku: Optional[str] = typer.Option(None),
    by: Optional[str] = typer.Option(None, help="who decides (default: your login name)"),
) -> None:
    """Approve, reject or redo outputs: by id (--output) or every one matching the filters."""
    chosen = [d for d, on in (("approve", approve), ("reject", reject), ("redo", redo)) if on]
    if len(chosen) != 1:
        raise typer.BadParameter("give exactly one of --approve, --reject, --redo")

    def go() -> None:
        from hitline.jobs import review as rv
        from hitline.jobs.context import get_runtime
        from tasks.review import after_review

        rt = get_runtime()
        if chosen[0] == "redo" and not rt.settings.broker_url:
            console.print("note: embedded mode - the new takes render with the next `hitline resume` or worker")
        flt = rv.OutputFilter(output_ids=tuple(output) if output else None, review=state, preset=preset, item_id=sku)
        done = rv.review(rt, batch, flt, chosen[0], by=by or getpass.getuser(), note=note, after=after_review)
        console.print(done.message, highlight=False)

    _run(go)


@webhook_app.command("add")
def webhook_add(
    url: str,
    batch: Optional[str] = typer.Option(None, help="only this batch's events (default: all)"),
    event: Optional[List[str]] = typer.Option(
        None, "--event", help="batch.finished, job.failed, output.needs_review, output.approved (repeatable)"
    ),
) -> None:
    """Send events to URL (https://, or http:// on loopback); prints the signing secret once."""

    def go() -> None:
        from db.session import session_scope
        from hitline.jobs import webhooks
        from hitline.jobs.context import get_runtime

        rt = get_runtime()
        with session_scope(rt.db_url) as s:
            r = webhooks.register(s, rt.settings, url, batch_id=batch, events=event)
        console.print(f"endpoint {r.id}: {', '.join(r.events)} -> {r.url}", highlight=False, markup=False)
        print(r.secret)

    _run(go)


@webhook_app.command("list")
def webhook_list() -> None:
    """Live endpoints."""

    def go() -> None:
        from db.session import session_scope
        from hitline.jobs import webhooks
        from hitline.jobs.context import get_runtime

        with session_scope(get_runtime().db_url) as s:
            for e in webhooks.endpoints(s):
                console.print(
                    f"{e.id:>4}  {e.batch_id or '(every batch)':<24} {', '.join(e.events)}  {e.url}",
                    highlight=False,
                    markup=False,
                )

    _run(go)


@webhook_app.command("remove")
def webhook_remove(endpoint: int) -> None:
    """Stop sending to an endpoint."""

    def go() -> None:
        from db.session import session_scope
        from hitline.jobs import webhooks
        from hitline.jobs.context import get_runtime

        with session_scope(get_runtime().db_url) as s:
            webhooks.remove(s, endpoint)
        console.print(f"endpoint {endpoint} removed")

    _run(go)


@webhook_app.command("deliveries")
def webhook_deliveries(
    batch: Optional[str] = typer.Option(None),
    state: Optional[str] = typer.Option(None, help="pending | delivered | dead"),
) -> None:
    """Deliveries, newest first."""

    def go() -> None:
        from db.session import session_scope
        from hitline.jobs import webhooks
        from hitline.jobs.context import get_runtime

        with session_scope(get_runtime().db_url) as s:
            for d in webhooks.deliveries(s, batch_id=batch, state=state):
                console.print(
                    f"{d['id']:>6}  {d['state']:<9} {d['type']:<20} attempts {d['attempts']}  {d['event_id']}"
                    f"{'  ' + d['last_error'] if d['last_error'] else ''}",
                    highlight=False,
                    markup=False,
                )

    _run(go)


@webhook_app.command("redeliver")
def webhook_redeliver(
    batch: Optional[str] = typer.Option(None, help="only this batch's dead deliveries"),
    delivery: Optional[List[int]] = typer.Option(None, "--delivery", help="a delivery id"),
) -> None:
    """Send dead deliveries again (a worker delivers them)."""

    def go() -> None:
        from db.session import session_scope
        from hitline.jobs import webhooks
        from hitline.jobs.context import get_runtime
        from tasks.webhooks import kick

        with session_scope(get_runtime().db_url) as s:
            n = webhooks.redeliver(s, batch_id=batch, delivery_ids=delivery)
        kick()
        console.print(f"{n} dead deliveries sent again")

    _run(go)


def export(
    batch: str,
    for_: str = typer.Option(..., "--for", help="amazon | shopify | folder"),
    out: Optional[Path] = typer.Option(None, help="the zip to write (default: <batch>-<for>.zip)"),
) -> None:
    """Write a batch's approved outputs (or every passed one, without review) as a marketplace zip."""

    def go() -> None:
        from db.session import session_scope
        from hitline.jobs import export as ex
        from hitline.jobs.context import get_runtime

        rt = get_runtime()
        dest = out or Path(f"{batch}-{for_}.zip")
        with session_scope(rt.db_url) as s:
            plan = ex.plan_export(s, rt.settings, batch, for_)
        tmp = dest.with_suffix(".part")
        with open(tmp, "wb") as f:
            for chunk in ex.zip_stream(plan):
                f.write(chunk)
        tmp.replace(dest)
        console.print(f"{dest}: {len(plan.items)} images for {for_}", highlight=False)

    _run(go)
