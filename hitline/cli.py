"""The `hitline` command: demo, run, status, resume, report, worker, fake-openrouter."""

from __future__ import annotations

import logging
import os
import time
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, ContextManager, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from hitline.errors import HitlineError, TransientError

if TYPE_CHECKING:  # imported lazily at run time (the CLI starts fast)
    from hitline.config import Settings
    from hitline.jobs.context import Runtime
    from hitline.jobs.submit import Dispatch

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Turn new-product flat-lays into marketplace promo images in the look of your best-sellers.",
)
console = Console()


def _configure(provider: Optional[str], base_url: Optional[str], data_dir: Optional[Path]) -> None:
    """CLI flags win over the environment; set them before any settings are read."""
    if provider:
        os.environ["HITLINE_PROVIDER"] = provider
    if base_url:
        os.environ["HITLINE_OPENROUTER_BASE_URL"] = base_url
    if data_dir:
        os.environ["HITLINE_DATA_DIR"] = str(data_dir)
    from hitline.jobs.context import reset_runtime

    reset_runtime()
    logging.basicConfig(
        level=os.environ.get("HITLINE_LOG_LEVEL", "WARNING"), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def _run_batch(
    catalog: Path,
    new: Path,
    out: Path,
    *,
    top_k: Optional[int],
    min_sales: Optional[int],
    presets: Optional[str],
    budget: Optional[float],
    wait: bool,
    review: Optional[str] = None,
    draft: Optional[str] = None,
    locales: Optional[str] = None,
    text_mode: Optional[str] = None,
    missing_translation: Optional[str] = None,
) -> str:
    from hitline.jobs import verbs
    from hitline.jobs.context import get_runtime

    rt = get_runtime()
    st = rt.settings
    preset_names = [p.strip() for p in presets.split(",")] if presets else None
    embedded = not st.broker_url
    with ExitStack() as worker:
        # everything is checked and recorded before a worker starts: a mistake costs no start-up time;
        # a broker that refuses: one error line with the batch id and `hitline resume`
        sub = verbs.submit(
            rt,
            catalog,
            new,
            out,
            send=_Sender(worker, embedded),
            top_k=top_k,
            min_sales=min_sales,
            presets=preset_names,
            budget_usd=budget,
            review=review,
            draft=draft,
            locales=locales,
            text_mode=text_mode,
            missing_translation=missing_translation,
        )
        console.print(
            f"batch [bold]{sub.batch_id}[/]: {sum(map(len, sub.hit_chunks))} catalog products, "
            f"{len(sub.sku_jobs)} new SKUs, {sub.rejected} rows rejected "
            f"({'embedded worker' if embedded else 'queued on ' + _safe_url(st.broker_url)})"
        )
        if embedded or wait:
            _wait(rt, sub.batch_id)
    if embedded or wait:
        _finish(rt, sub.batch_id)
    return sub.batch_id


class _Sender:
    """tasks.chains.send, which in embedded mode first starts the in-process worker (held by `worker`)."""

    def __init__(self, worker: ExitStack, embedded: bool) -> None:
        self.worker, self.start = worker, embedded

    def __call__(self, rt: Runtime, dispatches: list[Dispatch], /) -> int:
        from tasks.chains import send

        if self.start:
            self.start = False
            self.worker.enter_context(_embedded_worker(rt.settings))
        return send(rt, dispatches)


def _embedded_worker(settings: Settings) -> ContextManager[object]:
    from workers.embedded import embedded_worker

    return embedded_worker(settings.worker_concurrency)


def _safe_url(url: str) -> str:
    """The URL without its password (kept: scheme, host, port, vhost or db number)."""
    from kombu.utils.url import maybe_sanitize_url

    return maybe_sanitize_url(url)


STALL_HINT_S = 60.0


def _wait(rt, batch_id: str) -> None:  # noqa: ANN001
    from db import crud
    from db.session import session_scope

    last_counts, last_change, hinted = None, time.monotonic(), False

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as bar:
        bars = {}
        while True:
            with session_scope(rt.db_url) as s:
                counts = crud.progress(s, batch_id)
            for kind, label in (("hit", "catalog indexed"), ("sku", "SKUs rendered")):
                total = sum(n for (k, _), n in counts.items() if k == kind)
                done = sum(n for (k, st), n in counts.items() if k == kind and st not in crud.OPEN)
                if kind not in bars:
                    bars[kind] = bar.add_task(label, total=total)
                bar.update(bars[kind], completed=done)
            if not any(n for (_, st), n in counts.items() if st in crud.OPEN):
                return
            if counts != last_counts:
                last_counts, last_change = counts, time.monotonic()
            elif not hinted and rt.settings.broker_url and time.monotonic() - last_change > STALL_HINT_S:
                hinted = True
                bar.console.print(
                    f"[yellow]no progress for {STALL_HINT_S:.0f} s[/]: are workers running on "
                    f"{_safe_url(rt.settings.broker_url)} with the same HITLINE_DATABASE_URL? "
                    "(`hitline worker --queues ...`; `hitline status` shows failed jobs). "
                    "Ctrl-C stops waiting; the batch goes on without you (`hitline status`)."
                )
            time.sleep(0.5)


def _finish(rt, batch_id: str) -> None:  # noqa: ANN001
    from hitline.jobs.report import write_report

    from db import crud
    from db.session import session_scope

    path = write_report(rt, batch_id)
    _print_status(batch_id, kind="sku")
    with session_scope(rt.db_url) as s:
        bad_hits = crud.progress(s, batch_id).get(("hit", "failed"), 0)
    if bad_hits:
        console.print(
            f"[yellow]{bad_hits} catalog rows were not indexed[/]: hitline status {batch_id} --kind hit --state failed"
        )
    console.print(f"report: [bold]{path}[/]")
    console.print(f"outputs: {path.parent}")


_LOCALES_HELP = (
    "words on the pictures in these locales, e.g. en-US,de-DE,ja-JP,zh-CN (the first is the "
    "language of new_products.csv's headline column)"
)
_TEXT_MODE_HELP = "overlay (default: hitline typesets the words) | model (the image model writes them)"
_MISSING_HELP = "a locale without headline_<locale>: refuse (default) | translate (analysis model, marked as such)"


@app.command()
def demo(
    out: Path = typer.Option(Path("hitline-out"), help="where results go"),
    data: Path = typer.Option(Path("hitline-demo"), help="where the generated sample data goes"),
    provider: Optional[str] = typer.Option(None, help="local | openrouter (default: openrouter when a key is set)"),
    openrouter_base_url: Optional[str] = typer.Option(None, help="e.g. the fake: http://127.0.0.1:P/api/v1"),
    presets: Optional[str] = typer.Option(None, help="comma-separated preset names"),
    budget: Optional[float] = typer.Option(None, help="USD cap for paid renders in this batch"),
    locales: Optional[str] = typer.Option(None, help=_LOCALES_HELP),
    text_mode: Optional[str] = typer.Option(None, help=_TEXT_MODE_HELP),
    missing_translation: Optional[str] = typer.Option(None, help=_MISSING_HELP),
) -> None:
    """Generate a sample hit catalog and new flat-lays, then run the whole line on them."""
    _configure(provider, openrouter_base_url, None)
    from hitline.demo.sampledata import generate_demo

    catalog, new = generate_demo(data)
    console.print(f"sample data: {catalog} (hit catalog), {new} (new products)")
    _guard(
        lambda: _run_batch(
            catalog,
            new,
            out,
            top_k=None,
            min_sales=None,
            presets=presets,
            budget=budget,
            wait=True,
            locales=locales,
            text_mode=text_mode,
            missing_translation=missing_translation,
        )
    )


@app.command()
def run(
    catalog: Path = typer.Option(
        ..., help="folder with products.csv + images, or a catalog name (`hitline catalog list`)"
    ),
    new: Path = typer.Option(..., help="folder with new_products.csv + flat-lays"),
    out: Path = typer.Option(Path("hitline-out"), help="where results go"),
    top_k: Optional[int] = typer.Option(None, help="hits to borrow the look from (default 3)"),
    min_sales: Optional[int] = typer.Option(None, help="only hits with sales_count above this (default 1500)"),
    presets: Optional[str] = typer.Option(None, help="comma-separated preset names (see presets.toml)"),
    provider: Optional[str] = typer.Option(None, help="local | openrouter"),
    openrouter_base_url: Optional[str] = typer.Option(None),
    budget: Optional[float] = typer.Option(None, help="USD cap for paid renders in this batch"),
    review: Optional[str] = typer.Option(
        None, help="all: every output waits for approval; gate (default): only those the quality gate sent to review"
    ),
    escalate: Optional[str] = typer.Option(
        None,
        help="pro | none (default): an output whose re-render still "
        "fails the gate is rendered once more by Nano Banana Pro",
    ),
    draft: Optional[str] = typer.Option(
        None,
        help="512px (or 1K): drafts first; approved ones are rendered "
        "at their final sizes (`hitline review B --approve`)",
    ),
    wait: bool = typer.Option(True, help="with a broker: wait for the batch and write the report"),
    locales: Optional[str] = typer.Option(None, help=_LOCALES_HELP),
    text_mode: Optional[str] = typer.Option(None, help=_TEXT_MODE_HELP),
    missing_translation: Optional[str] = typer.Option(None, help=_MISSING_HELP),
    mode: Optional[str] = typer.Option(
        None,
        help="direct (default): one render per ratio group; staged: a scene "
        "plate per (references, ratio group) made once per batch, the product "
        "placed into it",
    ),
) -> None:
    """Run the line on your own catalog and new products."""
    from hitline.jobs.submit import ESCALATIONS, MODES

    if mode:
        if mode not in MODES:
            raise typer.BadParameter(f"--mode must be {' or '.join(MODES)}, not {mode!r}")
        os.environ["HITLINE_MODE"] = mode
    if escalate:
        if escalate not in ESCALATIONS:
            raise typer.BadParameter(f"--escalate must be {' or '.join(ESCALATIONS)}, not {escalate!r}")
        os.environ["HITLINE_ESCALATE"] = escalate
    _configure(provider, openrouter_base_url, None)
    _guard(
        lambda: _run_batch(
            catalog,
            new,
            out,
            top_k=top_k,
            min_sales=min_sales,
            presets=presets,
            budget=budget,
            wait=wait,
            review=review,
            draft=draft,
            locales=locales,
            text_mode=text_mode,
            missing_translation=missing_translation,
        )
    )


def _guard(fn) -> None:  # noqa: ANN001
    """A mistake or an unreachable service is one clear line and exit 2, never a traceback."""
    from hitline.jobs.runner import is_transient

    try:
        fn()
    except TransientError as e:  # Milvus mapped at its boundary: said like any other unreachable service
        _error(_unreachable(e.__cause__ or e))
    except HitlineError as e:
        _error(str(e))
    except Exception as e:
        if not (is_transient(e) or _is_connection_error(e)):
            raise
        _error(_unreachable(e))


def _error(message: str) -> None:
    """One line, whatever the width: no wrapping (a log or a pipe keeps it whole), then exit 2."""
    console.print(f"[red]error:[/] {message}", soft_wrap=True)
    raise typer.Exit(2) from None


def _is_connection_error(e: BaseException) -> bool:
    from kombu.exceptions import OperationalError as BrokerDown
    from pymilvus.exceptions import MilvusException
    from sqlalchemy.exc import DBAPIError

    return isinstance(e, (BrokerDown, MilvusException, DBAPIError))


def _unreachable(e: BaseException) -> str:
    """Which service, where, and the first line of what it said."""
    from hitline.config import get_settings

    st = get_settings()
    first = (str(e).strip().splitlines() or [""])[0][:200]
    mod = type(e).__module__
    if mod.startswith(("sqlalchemy", "psycopg")):
        return f"cannot reach the job table at {_safe_url(st.db_url())}: {first}"
    if mod.startswith(("kombu", "amqp", "redis")):
        return f"cannot reach the broker at {_safe_url(st.broker_url or 'memory://')}: {first}"
    if mod.startswith(("pymilvus", "grpc")):
        return f"cannot reach Milvus at {st.milvus()}: {first}"
    return f"{type(e).__name__}: {first}"


def _print_status(
    batch: Optional[str], kind: Optional[str] = None, state: Optional[str] = None, as_json: bool = False
) -> None:
    """The batch summary (status, retry, cancel and serve live in hitline/cli_batches.py)."""
    from hitline.cli_batches import _status

    _status(batch, False, kind, state, None, None, 50, None, False, as_json)


@app.command()
def resume(
    batch: str,
    budget: Optional[float] = typer.Option(None, help="new USD budget for the batch"),
    stale_after: Optional[float] = typer.Option(
        None,
        help="a job 'running' (or queued) for longer than this many seconds is taken as lost and "
        "re-enqueued; default 900 with a broker, 0 in embedded mode (no other worker exists)",
    ),
    wait: bool = typer.Option(True),
) -> None:
    """Re-enqueue a batch's unfinished jobs (lost messages, crashes, renders held by the budget); jobs with a
    message in flight are left alone."""
    _configure(None, None, None)
    _guard(lambda: _resume(batch, budget, stale_after, wait))


def _resume(batch: str, budget: Optional[float], stale_after: Optional[float], wait: bool) -> None:
    from hitline.jobs import verbs
    from hitline.jobs.context import get_runtime

    rt = get_runtime()
    embedded = not rt.settings.broker_url
    if stale_after is None:
        stale_after = 0.0 if embedded else 900.0
    with ExitStack() as worker:  # embedded: stale_after 0 re-sends every open job, so the worker starts
        answer = verbs.resume(rt, batch, send=_Sender(worker, embedded), budget_usd=budget, stale_after_s=stale_after)
        console.print(answer.message)
        if embedded or wait:
            _wait(rt, batch)
    if embedded or wait:
        _finish(rt, batch)


@app.command()
def report(batch: Optional[str] = typer.Argument(None)) -> None:
    """(Re)write OUT/<batch>/report.html from the job table."""
    _configure(None, None, None)
    _guard(lambda: _report(batch))


def _report(batch: Optional[str]) -> None:
    from db import crud
    from db.session import session_scope
    from hitline.jobs.context import get_runtime
    from hitline.jobs.report import write_report

    rt = get_runtime()
    with session_scope(rt.db_url) as s:
        batch = batch or crud.latest_batch_id(s)
    if batch is None:
        raise HitlineError("no batch yet: start one with `hitline run` or `hitline demo`")
    console.print(str(write_report(rt, batch)))


@app.command("drop-collection")
def drop_collection(name: str, yes: bool = typer.Option(False, "--yes", help="really drop it")) -> None:
    """Drop a Milvus collection (e.g. to switch embedders); the next run re-indexes the catalog."""
    _configure(None, None, None)
    from hitline.config import get_settings
    from hitline.store.index import client_for

    if not yes:
        console.print(f"this drops collection {name!r}; add --yes to confirm")
        raise typer.Exit(1)
    client = client_for(get_settings().milvus())
    if not client.has_collection(name):
        console.print(f"no collection {name!r}")
        raise typer.Exit(1)
    client.drop_collection(name)
    console.print(f"dropped {name}")


@app.command()
def worker(
    queues: Optional[str] = typer.Option(None, help="comma-separated queues to consume (default: all)"),
    concurrency: Optional[int] = typer.Option(None, help="default: HITLINE_WORKER_CONCURRENCY"),
    pool: str = typer.Option("prefork", help="prefork | threads"),
    loglevel: str = typer.Option("INFO"),
) -> None:
    """Run a Celery worker for some queues (distributed mode). It checks the broker, the job table, Milvus and
    (for provider queues) the provider settings first, and refuses to start with one line if one is wrong."""
    _configure(None, None, None)
    from workers.run import run_worker

    _guard(lambda: run_worker(queues.split(",") if queues else None, concurrency, pool, loglevel))


@app.command(
    "fake-openrouter",
    add_help_option=False,
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def fake_openrouter(ctx: typer.Context) -> None:
    """Serve an OpenRouter-compatible fake API on loopback (try the API path offline). --help for knobs."""
    from hitline.fake.server import main

    main(list(ctx.args))


# status, retry, cancel, serve, token
from hitline import cli_batches  # noqa: E402

cli_batches.register(app, configure=_configure, guard=_guard)
from hitline import cli_storefront  # noqa: E402

cli_storefront.register(app, configure=_configure, guard=_guard)
# catalog add | update | list | show
from hitline import cli_catalogs  # noqa: E402

cli_catalogs.register(app, configure=_configure, guard=_guard)

if __name__ == "__main__":
    app()
