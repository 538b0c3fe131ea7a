"""Which folders a caller from outside may name: one rule for the HTTP API and the Celery contract.

A service names folders on storage the server shares with it (a catalog, new products). The server reads
what it is pointed at, so a caller may name only folders under HITLINE_API_SHARED_DIRS (none by default)
or under its own tenant's uploads (<data_dir>/uploads/<tenant>/, where multipart uploads are unpacked).
A catalog may also be named by the name or id of one of the tenant's catalogs (added on the server with
`hitline catalog add`, or through POST /catalogs, which checks its folder with this rule).
The CLI on the server is the server's own admin and is not checked.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from db.models import Catalog
from db.session import session_scope
from hitline.config import Settings
from hitline.errors import InputError

__all__ = ["uploads_root", "catalog_uploads_root", "shared_roots", "check_shared"]


def uploads_root(settings: Settings, tenant: str) -> Path:
    """Where the tenant's multipart uploads are unpacked (one folder per upload)."""
    return settings.data_dir.resolve() / "uploads" / tenant


def catalog_uploads_root(settings: Settings, tenant: str) -> Path:
    """Where catalogs uploaded to POST /catalogs are unpacked (one folder per upload). Not pruned with the
    batch uploads: a catalog version's hits are read from its folder for as long as a batch pins it."""
    return settings.data_dir.resolve() / "catalogs" / tenant


def shared_roots(settings: Settings, tenant: str) -> list[Path]:
    """HITLINE_API_SHARED_DIRS (resolved), then the tenant's own uploads."""
    return [r.resolve() for r in settings.api_shared_dirs] + [uploads_root(settings, tenant)]


def _is_catalog_ref(settings: Settings, tenant: str, ref: str) -> bool:
    try:
        if "\x00" in ref or len(ref) > 128 or Path(ref).is_dir():
            return False  # a folder is checked as a folder, even when a catalog has that name
    except (OSError, ValueError):  # a name too long for the file system
        return False
    with session_scope(settings.db_url()) as s:
        found = s.scalar(
            select(Catalog.id).where(Catalog.tenant == tenant, (Catalog.name == ref) | (Catalog.id == ref)).limit(1)
        )
    return found is not None


def check_shared(settings: Settings, tenant: str, *, catalog: str | None = None, **folders: str) -> None:
    """Raise InputError (a 422 over HTTP, the task's error over Celery) unless every folder (symlinks
    resolved) is inside a shared folder or the tenant's uploads; `catalog` may also be a catalog's name/id.
    Folders are passed by the request's field name (new=..., folder=...), which the sentence names."""
    roots = shared_roots(settings, tenant)
    named = list(folders.items())
    if catalog is not None and not _is_catalog_ref(settings, tenant, catalog):
        named.insert(0, ("catalog", catalog))
    for field, f in named:
        try:
            p = Path(f).resolve()
        except (ValueError, OSError):  # a NUL, a loop of symlinks
            raise InputError(f"{field}: {f[:300]!r} is not a folder name this server can read") from None
        if not any(p == r or r in p.parents for r in roots):
            where = ", ".join(map(str, roots[:-1])) if len(roots) > 1 else "none set"
            raise InputError(
                f"{field}: {f[:300]} is not under a folder this server shares (HITLINE_API_SHARED_DIRS: {where}); "
                "name a folder under one of them, one of your catalogs (GET /catalogs), or upload the files "
                "(multipart POST /batches)"
            )
