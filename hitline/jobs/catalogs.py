"""Catalogs as resources: a tenant's hit catalog is indexed once and versioned by content.

A version is a set of rows (product_id -> row hash) and the TF-IDF vocabulary fitted on them. Planning a
version compares the folder's rows with the catalog's latest version: an identical content reuses that
version (nothing embedded, nothing written); otherwise a new version lists only the rows that are new or
changed. They are embedded (from the cache when the image was embedded before) and written to Milvus live
from the new version on; the rows they replace are closed at the new version when it is finished, so a
batch pinned to the older version keeps seeing exactly its products. A version no open batch pins, older
than the catalog's newest ready one, is dropped.

Written rows come from the catalog jobs of the batch that caused the version (`builder_batch_id`), or are
built in one go by `build_now` (`hitline catalog add|update`, POST /catalogs).
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from db.crud import OPEN
from db.models import Batch, Catalog, CatalogVersion, Job, utcnow
from db.session import session_scope
from hitline import line
from hitline.domain.catalog import Loaded, load_catalog
from hitline.domain.models import HitProduct
from hitline.domain.retrieval import Scope
from hitline.domain.sparse import TextVocabulary
from hitline.errors import InputError
from hitline.jobs.options import BatchOptions
from hitline.jobs.context import Runtime

__all__ = [
    "DEFAULT_TENANT",
    "Plan",
    "CatalogFacts",
    "row_hash",
    "resolve",
    "plan_version",
    "finish_version",
    "build_now",
    "add_or_update",
    "folder_of",
    "collect",
    "facts",
    "list_catalogs",
    "get_catalog",
    "scope_of",
    "Unchanged",
    "csv_fingerprint",
    "unchanged_version",
    "remember_folder",
    "rejected_rows",
]

from db.models import DEFAULT_TENANT  # noqa: E402  (a catalog belongs to a tenant: issue 21)

EMBED_CHUNK = 64  # products per embedding call when a version is built in one go


def row_hash(p: HitProduct) -> str:
    """What decides a product's row in the index: its fields and its image file (path, size, mtime: a new
    photo under the same name is a changed row). Not the vocabulary: rows store vocabulary-free sparse
    vectors (hitline.domain.sparse), the version's IDF weighs the query."""
    try:
        st = p.image_path.stat()
        image = [str(p.image_path), st.st_size, st.st_mtime_ns]
    except OSError:
        image = [str(p.image_path), None, None]
    blob = json.dumps(
        [
            p.product_id,
            p.category,
            p.color,
            p.style,
            p.season,
            p.description,
            int(p.sales_count),
            float(p.price),
            image,
        ],
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def scope_of(options: BatchOptions) -> Scope | None:
    """The catalog version a batch retrieves from (stored in its options at submission)."""
    pinned = options.catalog
    return Scope(pinned.id, pinned.seq) if pinned else None


# --- resolving and planning ---------------------------------------------------------------------------


def _slug(text: str) -> str:
    return re.sub(r"[^0-9A-Za-z_.-]+", "-", text).strip("-")[:100] or "catalog"


def resolve(
    s: Session, *, folder: Path | None = None, name: str | None = None, tenant: str = DEFAULT_TENANT
) -> Catalog:
    """The tenant's catalog of this name (or id), or of this folder (created when there is none)."""
    if name is not None:
        cat = s.scalar(select(Catalog).where(Catalog.tenant == tenant, (Catalog.name == name) | (Catalog.id == name)))
        if cat is not None:
            if folder is not None and Path(cat.source_dir) != folder.resolve():
                cat.source_dir = str(folder.resolve())  # an update from another folder
            return cat
        if folder is None:
            raise InputError(f"no catalog {name!r}: `hitline catalog list` (GET /catalogs) lists them")
    assert folder is not None
    src = str(folder.resolve())
    if name is None:
        cat = s.scalar(
            select(Catalog).where(Catalog.tenant == tenant, Catalog.source_dir == src).order_by(Catalog.created_at)
        )
        if cat is not None:
            return cat
        name = _slug(folder.resolve().name)
        if s.scalar(select(Catalog.id).where(Catalog.tenant == tenant, Catalog.name == name)) is not None:
            name = f"{name}-{secrets.token_hex(2)}"
    cat = Catalog(id="c" + secrets.token_hex(6), tenant=tenant, name=name, source_dir=src)
    s.add(cat)
    s.flush()
    return cat


@dataclass
class Plan:
    version: CatalogVersion
    write: list[HitProduct]  # rows to embed and write for this version (empty: reused or unchanged)
    reused: bool  # an existing version has this content


def _latest(s: Session, catalog_id: str) -> CatalogVersion | None:
    return s.scalar(
        select(CatalogVersion)
        .where(CatalogVersion.catalog_id == catalog_id, CatalogVersion.state != "dropped")
        .order_by(CatalogVersion.seq.desc())
        .limit(1)
    )


def plan_version(
    s: Session,
    catalog: Catalog,
    products: Sequence[HitProduct],
    vocab: TextVocabulary,
    embed_model: str,
    builder_batch_id: str | None = None,
) -> Plan:
    """The version these products make (reused when the latest has the same content) and the rows to write."""
    hashes = {p.product_id: row_hash(p) for p in products}
    content = hashlib.sha256(json.dumps([sorted(hashes.items()), vocab.version, embed_model]).encode()).hexdigest()
    latest = _latest(s, catalog.id)
    if latest is not None and latest.content_sha == content:
        return Plan(latest, [], True)
    seq = (s.scalar(select(func.max(CatalogVersion.seq)).where(CatalogVersion.catalog_id == catalog.id)) or 0) + 1
    before: dict[str, Any] = dict(latest.rows) if latest is not None and latest.embed_model == embed_model else {}
    rows: dict[str, list[Any]] = {}
    write = []
    for p in products:
        h = hashes[p.product_id]
        old = before.get(p.product_id)
        if old is not None and old[0] == h:
            rows[p.product_id] = [h, int(old[1])]
        else:
            rows[p.product_id] = [h, seq]
            write.append(p)
    removed = sum(1 for pid, old in before.items() if rows.get(pid, [None, None])[1] != old[1])
    v = CatalogVersion(
        catalog_id=catalog.id,
        seq=seq,
        content_sha=content,
        vocab_version=vocab.version,
        embed_model=embed_model,
        state="building",
        builder_batch_id=builder_batch_id if write else None,
        rows=rows,
        products=len(rows),
        added=len(write),
        removed=removed,
    )
    s.add(v)
    s.flush()
    return Plan(v, write, False)


# --- a folder whose products.csv has not changed: no re-reading ---------------------------------------

MAX_REMEMBERED_REJECTS = 1000  # a folder with more rejected rows is read again at every submission


@dataclass(frozen=True)
class Unchanged:
    """The catalog and version an unchanged folder makes, and its rejected rows (already resolved)."""

    catalog_id: str
    version_id: int
    seq: int
    vocab_version: str
    rejected: list[dict[str, Any]]  # {"item_id", "row", "raw", "reason"}


def csv_fingerprint(folder: Path) -> str | None:
    """The folder's products.csv: its path, size, mtime and the sha256 of its bytes (None: unreadable).
    Reading and hashing the bytes is ~20 ms for 100,000 rows; validating them (image headers, row
    hashes with an image stat each) is what grows with the catalog."""
    csv_path = folder / "products.csv"
    try:
        st = csv_path.stat()
        h = hashlib.sha256(csv_path.read_bytes())
    except OSError:
        return None
    h.update(json.dumps([str(csv_path.resolve()), st.st_size, st.st_mtime_ns]).encode())
    return h.hexdigest()


def rejected_rows(loaded: Loaded[Any] | None) -> list[dict[str, Any]]:
    """The rows a file rejected, as failed job rows: a rejected row keeps its id when it can (a duplicate
    id gets its row number appended)."""
    if loaded is None:
        return []
    used = {p.product_id if isinstance(p, HitProduct) else p.new_id for p in loaded.items}
    out = []
    for e in loaded.errors:
        item_id = e.id if e.id and e.id not in used else f"{e.id or 'row'}@row{e.row}"
        used.add(item_id)
        out.append({"item_id": item_id, "row": e.row, "raw": e.raw, "reason": f"row {e.row}: {e.reason}"})
    return out


def _folder_key(catalog_id: str, fingerprint: str) -> str:
    return f"catalog-csv:{catalog_id}:{fingerprint}"


def unchanged_version(s: Session, folder: Path, tenant: str, fingerprint: str, embed_model: str) -> Unchanged | None:
    """The version a folder made last time, when its products.csv is byte for byte the same and that
    version is still the catalog's latest (for this embedder); None otherwise (read the folder again).
    A photo replaced in place under the same file name, with products.csv untouched, is not seen here:
    `hitline catalog update` reads every row again."""
    from db import crud

    cat_id = s.scalar(
        select(Catalog.id)
        .where(Catalog.tenant == tenant, Catalog.source_dir == str(folder.resolve()))
        .order_by(Catalog.created_at)
        .limit(1)
    )
    if cat_id is None:
        return None
    seen = crud.cache_get(s, _folder_key(cat_id, fingerprint))
    if not isinstance(seen, dict):
        return None
    # the latest version's few columns, not its rows (product_id -> hash: as long as the catalog)
    latest = s.execute(
        select(CatalogVersion.id, CatalogVersion.seq, CatalogVersion.vocab_version, CatalogVersion.embed_model)
        .where(CatalogVersion.catalog_id == cat_id, CatalogVersion.state != "dropped")
        .order_by(CatalogVersion.seq.desc())
        .limit(1)
    ).first()
    if latest is None or latest.id != seen.get("version_id") or latest.embed_model != embed_model:
        return None
    return Unchanged(cat_id, latest.id, latest.seq, latest.vocab_version, list(seen.get("rejected") or []))


def remember_folder(
    s: Session, catalog_id: str, fingerprint: str | None, version: CatalogVersion, rejected: list[dict[str, Any]]
) -> None:
    """Note that this products.csv made this version (with these rejected rows), for unchanged_version."""
    from db import crud

    if fingerprint is None or len(rejected) > MAX_REMEMBERED_REJECTS:
        return
    crud.cache_put(s, _folder_key(catalog_id, fingerprint), {"version_id": version.id, "rejected": rejected})


# --- finishing and dropping --------------------------------------------------------------------------


def finish_version(rt: Runtime, version_id: int, index: Any) -> dict[str, Any] | None:
    """Make a version searchable once its rows are written: close the rows it replaces, flush, mark it
    ready. None while its builder batch still has catalog jobs open or an older version of the catalog
    is still building. Safe to call from several workers at once (every step is idempotent)."""
    with session_scope(rt.db_url) as s:
        v = s.get(CatalogVersion, version_id)
        if v is None:
            raise InputError(f"no catalog version {version_id}")
        if v.state == "ready":
            return _wait_facts(v)
        if v.state == "dropped":
            raise InputError(f"catalog version {v.catalog_id} v{v.seq} was dropped")
        if v.builder_batch_id and s.scalar(
            select(func.count())
            .select_from(Job)
            .where(Job.batch_id == v.builder_batch_id, Job.kind == "hit", Job.state.in_(OPEN))
        ):
            return None
        older = list(
            s.scalars(
                select(CatalogVersion)
                .where(
                    CatalogVersion.catalog_id == v.catalog_id,
                    CatalogVersion.seq < v.seq,
                    CatalogVersion.state != "dropped",
                )
                .order_by(CatalogVersion.seq.desc())
            )
        )
        if any(o.state == "building" for o in older):
            return None
        rows = dict(v.rows)
        if v.builder_batch_id:  # a product whose catalog job failed is not in the index: not in the version
            failed = set(
                s.scalars(
                    select(Job.item_id).where(
                        Job.batch_id == v.builder_batch_id, Job.kind == "hit", Job.state != "done"
                    )
                )
            )
            for pid in [pid for pid, (_, frm) in rows.items() if frm == v.seq and pid in failed]:
                del rows[pid]
        base = older[0].rows if older else {}
        closing = [
            f"{v.catalog_id}:{int(frm)}:{pid}"
            for pid, (_, frm) in base.items()
            if rows.get(pid, [None, None])[1] != frm
        ]
        catalog_id, seq = v.catalog_id, v.seq
    index.close(closing, seq)
    index.flush()
    with session_scope(rt.db_url) as s:
        s.execute(
            update(CatalogVersion)
            .where(CatalogVersion.id == version_id, CatalogVersion.state == "building")
            .values(state="ready", ready_at=utcnow(), rows=rows, products=len(rows))
        )
        v = s.get(CatalogVersion, version_id)
        assert v is not None  # the row this function has been building
        out = _wait_facts(v)
    collect(rt, catalog_id, index)
    return out


def _wait_facts(v: CatalogVersion) -> dict[str, Any]:
    return {"catalog": v.catalog_id, "version": v.seq, "catalog_rows": v.products}


def collect(rt: Runtime, catalog_id: str, index: Any) -> list[int]:
    """Drop the versions of a catalog that nothing uses: older than its newest ready version and pinned
    by no batch with an open job. Their rows that no kept version sees are deleted from Milvus. Returns
    the dropped seqs."""
    with session_scope(rt.db_url) as s:
        versions = list(
            s.scalars(
                select(CatalogVersion).where(CatalogVersion.catalog_id == catalog_id, CatalogVersion.state != "dropped")
            )
        )
        ready = [v.seq for v in versions if v.state == "ready"]
        if not ready:
            return []
        newest = max(ready)
        pinned = set(
            s.scalars(
                select(CatalogVersion.seq)
                .join(Batch, Batch.catalog_version_id == CatalogVersion.id)
                .join(Job, Job.batch_id == Batch.id)
                .where(CatalogVersion.catalog_id == catalog_id, Job.state.in_(OPEN))
            )
        )
        drop = [v for v in versions if v.state == "ready" and v.seq < newest and v.seq not in pinned]
        for v in drop:
            v.state, v.rows = "dropped", {}
        keep = [v.seq for v in versions if v not in drop]
        dropped = [v.seq for v in drop]
    if dropped:
        index.drop_before(catalog_id, min(keep))
    return dropped


# --- building in one go (CLI, HTTP) -----------------------------------------------------------------


@dataclass
class CatalogFacts:
    catalog: Catalog
    version: CatalogVersion | None
    reused: bool = False
    rejected: int = 0


def build_now(rt: Runtime, plan: Plan, options: BatchOptions, catalog_id: str) -> None:
    """Embed (cache first) and write a planned version's rows in this process, then finish it."""
    providers = rt.providers(options)
    index = rt.index(options)
    index.ensure()
    vocab = rt.vocabulary(plan.version.vocab_version)
    scope = Scope(catalog_id, plan.version.seq)
    for i in range(0, len(plan.write), EMBED_CHUNK):
        chunk = plan.write[i : i + EMBED_CHUNK]
        vectors, _ = line.embed_images(providers.embedder, [p.image_path for p in chunk], rt.cache)
        line.index_hits(index, vocab, chunk, vectors, scope)
    finish_version(rt, plan.version.id, index)


def add_or_update(
    rt: Runtime, folder: Path, options: BatchOptions, *, name: str | None = None, tenant: str = DEFAULT_TENANT
) -> CatalogFacts:
    """`hitline catalog add|update` and POST /catalogs: read the folder, plan its version and build it now."""
    fingerprint = csv_fingerprint(folder)
    loaded = _load(folder)
    vocab = line.fit_vocabulary(loaded.items)
    model = rt.providers(options).embedder.model
    with session_scope(rt.db_url) as s:
        from db import crud

        crud.cache_put(s, f"vocab:{vocab.version}", vocab.to_json())
        cat = resolve(s, folder=folder, name=name, tenant=tenant)
        plan = plan_version(s, cat, loaded.items, vocab, model)
        catalog_id = cat.id
        if Path(cat.source_dir) == folder.resolve():  # the next batch on this folder need not read it again
            remember_folder(s, cat.id, fingerprint, plan.version, rejected_rows(loaded))
    # a reused version still building with no builder batch is one a stopped build left: finish it here
    if not plan.reused or (plan.version.state == "building" and plan.version.builder_batch_id is None):
        if plan.reused:
            plan = Plan(
                plan.version,
                [p for p in loaded.items if plan.version.rows.get(p.product_id, [None, 0])[1] == plan.version.seq],
                True,
            )
        build_now(rt, plan, options, catalog_id)
    else:
        collect(rt, catalog_id, rt.index(options))  # versions the batches since finished with
    return get_catalog(rt, catalog_id, tenant=tenant, reused=plan.reused, rejected=len(loaded.errors))


def folder_of(rt: Runtime, ref: str, tenant: str = DEFAULT_TENANT) -> Path | None:
    """The folder of the tenant's catalog named (or with the id) `ref`; None when there is no such catalog."""
    with session_scope(rt.db_url) as s:
        src = s.scalar(
            select(Catalog.source_dir).where(Catalog.tenant == tenant, (Catalog.name == ref) | (Catalog.id == ref))
        )
    return Path(src) if src else None


def _load(folder: Path) -> Loaded[HitProduct]:
    loaded = load_catalog(folder)
    if not loaded.items:
        raise InputError(f"{folder}: no usable product in products.csv ({len(loaded.errors)} rows rejected)")
    return loaded


def get_catalog(
    rt: Runtime, ref: str, *, tenant: str = DEFAULT_TENANT, reused: bool = False, rejected: int = 0
) -> CatalogFacts:
    with session_scope(rt.db_url) as s:
        cat = resolve(s, name=ref, tenant=tenant)
        s.expunge(cat)
        v = _latest(s, cat.id)
        if v is not None:
            s.expunge(v)
    return CatalogFacts(cat, v, reused, rejected)


def list_catalogs(rt: Runtime, tenant: str = DEFAULT_TENANT) -> list[CatalogFacts]:
    with session_scope(rt.db_url) as s:
        out = []
        for cat in s.scalars(select(Catalog).where(Catalog.tenant == tenant).order_by(Catalog.created_at)):
            v = _latest(s, cat.id)
            out.append(CatalogFacts(cat, v))
        for f in out:
            s.expunge(f.catalog)
            if f.version is not None:
                s.expunge(f.version)
    return out


def facts(f: CatalogFacts) -> dict[str, Any]:
    """A catalog as the CLI and the API show it."""
    v = f.version
    return {
        "id": f.catalog.id,
        "tenant": f.catalog.tenant,
        "name": f.catalog.name,
        "source_dir": f.catalog.source_dir,
        "version": None
        if v is None
        else {
            "seq": v.seq,
            "state": v.state,
            "products": v.products,
            "written": v.added,
            "closed": v.removed,
            "vocab_version": v.vocab_version,
            "embed_model": v.embed_model,
            "created_at": v.created_at.isoformat() if v.created_at else None,
            "ready_at": v.ready_at.isoformat() if v.ready_at else None,
        },
        "reused": f.reused,
        "rejected_rows": f.rejected,
    }
