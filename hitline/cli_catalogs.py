"""`hitline catalog add | update | list | show`: hit catalogs as resources (hitline.jobs.catalogs does
the work; this module only prints)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Optional

import typer
from rich.console import Console

console = Console()
catalog_app = typer.Typer(
    no_args_is_help=True, help="Hit catalogs: indexed once, versioned by content, named by batches."
)
_hooks: dict[str, Callable[..., Any]] = {}


def register(app: typer.Typer, *, configure: Callable[..., None], guard: Callable[[Callable[[], Any]], None]) -> None:
    _hooks.update(configure=configure, guard=guard)
    app.add_typer(catalog_app, name="catalog")


def _line(f: dict[str, Any]) -> str:
    v = f["version"]
    if v is None:
        return f"{f['id']}  {f['name']:<24} no version"
    return (
        f"{f['id']}  {f['name']:<24} v{v['seq']} {v['state']:<8} {v['products']} products "
        f"({v['written']} rows written, {v['closed']} closed)  {f['source_dir']}"
    )


def _build(folder: Path, name: Optional[str], as_json: bool) -> None:
    _hooks["configure"](None, None, None)

    def run() -> None:
        from hitline.jobs import catalogs
        from hitline.jobs.context import get_runtime
        from hitline.jobs.options import BatchOptions
        from hitline.jobs.submit import batch_options

        rt = get_runtime()
        f = catalogs.facts(catalogs.add_or_update(rt, folder, BatchOptions.of(batch_options(rt.settings)), name=name))
        if as_json:
            print(json.dumps(f, indent=2))
        else:
            console.print(("unchanged: " if f["reused"] else "") + _line(f), markup=False)

    _hooks["guard"](run)


@catalog_app.command("add")
def add(
    folder: Path = typer.Argument(..., help="folder with products.csv and the images"),
    name: Optional[str] = typer.Option(None, help="name (default: the folder's name)"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Index a catalog folder (embedded once; a folder already added gets a new version only if it changed)."""
    _build(folder, name, as_json)


@catalog_app.command("update")
def update(
    name: str = typer.Argument(..., help="catalog name or id"),
    folder: Optional[Path] = typer.Option(None, "--from", help="read it from this folder instead"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """A new version from the catalog's folder: only new images are embedded, only changed rows written.
    Batches running on the older version keep it until they finish."""
    _hooks["configure"](None, None, None)

    def run() -> None:
        from hitline.jobs import catalogs
        from hitline.jobs.context import get_runtime

        src = folder or catalogs.folder_of(get_runtime(), name)
        if src is None:
            from hitline.errors import InputError

            raise InputError(f"no catalog {name!r}: `hitline catalog list` lists them")
        _build(src, name, as_json)

    _hooks["guard"](run)


@catalog_app.command("list")
def list_(as_json: bool = typer.Option(False, "--json")) -> None:
    """The catalogs and their newest version."""
    _hooks["configure"](None, None, None)
    from hitline.jobs import catalogs
    from hitline.jobs.context import get_runtime

    found = [catalogs.facts(f) for f in catalogs.list_catalogs(get_runtime())]
    if as_json:
        print(json.dumps(found, indent=2))
    for f in found if not as_json else []:
        console.print(_line(f), markup=False)


@catalog_app.command("show")
def show(name: str = typer.Argument(..., help="catalog name or id")) -> None:
    """One catalog and its newest version, as JSON."""
    _hooks["configure"](None, None, None)

    def run() -> None:
        from hitline.jobs import catalogs
        from hitline.jobs.context import get_runtime

        print(json.dumps(catalogs.facts(catalogs.get_catalog(get_runtime(), name)), indent=2))

    _hooks["guard"](run)
