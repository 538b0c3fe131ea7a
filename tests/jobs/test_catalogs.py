"""hitline/jobs/catalogs.py as plain functions (embedded: SQLite + Milvus Lite, local provider): a catalog
is indexed once, an update writes only what changed, a batch on an indexed catalog starts at once, and a
version no batch uses is dropped."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest

from db.models import Batch, CatalogVersion, Job
from db.session import session_scope
from hitline.domain.retrieval import Scope
from hitline.errors import InputError
from hitline.jobs import catalogs
from hitline.jobs.context import get_runtime
from hitline.jobs.options import BatchOptions
from hitline.jobs.stages import SKU_LINE, catalog_indexed
from hitline.jobs.submit import submit_batch

OPTIONS = {"provider": "local", "top_k": 3, "min_sales": 0, "presets": ["thumbnail"], "models": {}}
TYPED = BatchOptions.of(OPTIONS)


def _rows(folder: Path) -> list[dict[str, str]]:
    with open(folder / "products.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _write(folder: Path, rows: list[dict[str, str]]) -> None:
    with open(folder / "products.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


@pytest.fixture
def catalog(hitline_env: Path, demo_data: tuple[Path, Path]) -> Path:
    dest = hitline_env / "catalog"
    shutil.copytree(demo_data[0], dest)
    _write(dest, _rows(dest)[:12])
    return dest


def _embedded(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the images the local embedder is asked to embed (cache misses)."""
    from hitline.providers.local import embed as local_embed

    calls: list[int] = []
    real = local_embed.LocalEmbedder.embed_images
    monkeypatch.setattr(
        local_embed.LocalEmbedder, "embed_images", lambda self, paths: calls.append(len(paths)) or real(self, paths)
    )
    return calls


def test_an_update_embeds_new_images_and_writes_changed_rows_only(catalog: Path, monkeypatch) -> None:  # noqa: ANN001
    rt = get_runtime()
    embedded = _embedded(monkeypatch)
    first = catalogs.facts(catalogs.add_or_update(rt, catalog, TYPED, name="shop"))
    assert first["version"]["seq"] == 1 and first["version"]["written"] == 12 and sum(embedded) == 12
    again = catalogs.facts(catalogs.add_or_update(rt, catalog, TYPED, name="shop"))
    assert again["reused"] and again["version"]["seq"] == 1 and sum(embedded) == 12
    rows = _rows(catalog)
    old_sales = rows[1]["sales_count"]
    rows[1]["sales_count"] = "123456"  # a changed sales count
    rows[2]["description"] = "velvet opera cape with a silver lining"  # a changed description
    del rows[3]  # a removed product
    shutil.copy(catalog / rows[4]["image_path"], catalog / "images" / "new-hit.jpg")
    Path(catalog / "images" / "new-hit.jpg").write_bytes((catalog / "images" / "new-hit.jpg").read_bytes() + b"\0")
    rows.append({**rows[4], "product_id": "NEW-HIT", "image_path": "images/new-hit.jpg"})  # a new image
    _write(catalog, rows)
    second = catalogs.facts(catalogs.add_or_update(rt, catalog, TYPED, name="shop"))
    v = second["version"]
    assert (v["seq"], v["products"], v["written"], v["closed"]) == (2, 12, 3, 3)
    assert sum(embedded) == 13  # the new image only: the others come from the cache
    assert v["vocab_version"] != first["version"]["vocab_version"]  # the vocabulary is versioned with it
    index = rt.index(TYPED)
    cat_id = second["id"]
    # version 1 was dropped (no batch uses it); version 2 sees exactly its own rows
    assert index.count(Scope(cat_id, 2)) == 12 and index.count(Scope(cat_id, 1)) != 12
    r = index.search(np.ones(index.dim), {}, "nothing", 10**9, 50, Scope(cat_id, 2))
    got = {h.product_id: h.sales_count for h in r.hits}
    assert set(got) == {row["product_id"] for row in rows} and got[rows[1]["product_id"]] == 123456
    assert str(old_sales) != "123456"


def test_a_running_batch_keeps_its_version_and_a_batch_on_an_indexed_catalog_starts_at_once(
    catalog: Path, demo_data: tuple[Path, Path], hitline_env: Path
) -> None:
    rt = get_runtime()
    first = submit_batch(rt, catalog, demo_data[1], hitline_env / "out", options=OPTIONS)
    assert sum(map(len, first.hit_chunks)) == 12  # a new catalog: indexed by this batch's catalog jobs
    assert catalog_indexed(rt, first.batch_id) is None  # not searchable before they ran
    from hitline.jobs.stages import CATALOG_LINE

    for chunk in first.hit_chunks:
        for st in CATALOG_LINE:
            st.run(rt, first.batch_id, chunk)
    assert catalog_indexed(rt, first.batch_id)["version"] == 1
    # the same folder again: nothing to embed or write, the SKUs' index stage passes at once
    second = submit_batch(rt, catalog, demo_data[1], hitline_env / "out2", options=OPTIONS)
    assert second.hit_chunks == [] and catalog_indexed(rt, second.batch_id)["version"] == 1
    # a new version while both batches are open: they keep version 1, it is not dropped
    rows = _rows(catalog)
    for r in rows:
        r["sales_count"] = str(int(r["sales_count"]) + 7)
    _write(catalog, rows)
    catalogs.add_or_update(rt, catalog, TYPED)
    job = second.sku_jobs[0]
    for st in SKU_LINE[:3]:  # embed, index, retrieve
        assert st.run(rt, job).status == "done"
    with session_scope(rt.db_url) as s:
        hits = s.get(Job, job).result["retrieve"]["hits"]
        versions = {v.seq: v.state for v in s.query(CatalogVersion)}
    old = {r["product_id"]: int(r["sales_count"]) - 7 for r in rows}
    assert hits and all(h["sales_count"] == old[h["product_id"]] for h in hits)
    assert versions == {1: "ready", 2: "ready"}
    # once no open batch pins version 1, the next catalog operation drops it
    with session_scope(rt.db_url) as s:
        s.query(Job).filter(Job.batch_id.in_([first.batch_id, second.batch_id])).update({"state": "done"})
    catalogs.add_or_update(rt, catalog, TYPED)
    with session_scope(rt.db_url) as s:
        assert {v.seq: v.state for v in s.query(CatalogVersion)} == {1: "dropped", 2: "ready"}
        assert s.get(Batch, second.batch_id).catalog_version_id is not None


def test_a_batch_can_name_a_catalog_and_an_unknown_name_is_a_clear_error(catalog: Path, demo_data, hitline_env) -> None:  # noqa: ANN001
    rt = get_runtime()
    catalogs.add_or_update(rt, catalog, TYPED, name="spring")
    sub = submit_batch(rt, Path("spring"), demo_data[1], hitline_env / "out", options=OPTIONS)
    assert sub.hit_chunks == []
    with pytest.raises(InputError, match="no catalog 'autumn'"):
        catalogs.get_catalog(rt, "autumn")


def test_a_folder_whose_products_csv_is_unchanged_is_not_read_again(
    catalog: Path, demo_data: tuple[Path, Path], hitline_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Submission on an indexed catalog costs the same for 1,000 or 100,000 products: an unchanged
    products.csv (same bytes) pins the version it made without reading and validating every row again."""
    from hitline.jobs import submit as submit_module

    rt = get_runtime()
    rows = _rows(catalog)
    _write(catalog, [*rows, {**rows[0], "product_id": "BAD", "sales_count": "lots"}])  # one rejected row
    catalogs.add_or_update(rt, catalog, TYPED)
    reads: list[Path] = []
    real = submit_module.load_catalog
    monkeypatch.setattr(submit_module, "load_catalog", lambda folder: reads.append(folder) or real(folder))
    first = submit_batch(rt, catalog, demo_data[1], hitline_env / "o1", options=OPTIONS)
    assert reads == [] and first.hit_chunks == [] and first.rejected == 1
    assert catalog_indexed(rt, first.batch_id)["version"] == 1
    with session_scope(rt.db_url) as s:  # the rejected catalog row is still the batch's failed job
        bad = s.query(Job).filter(Job.batch_id == first.batch_id, Job.kind == "hit").one()
        assert (bad.item_id, bad.state) == ("BAD", "failed") and "row 13" in (bad.error or "")
    # a changed products.csv is read again and makes a new version, which the next batch reuses unread
    rows[1]["sales_count"] = "99999"
    _write(catalog, [*rows, {**rows[0], "product_id": "BAD", "sales_count": "lots"}])
    second = submit_batch(rt, catalog, demo_data[1], hitline_env / "o2", options=OPTIONS)
    assert reads == [catalog] and sum(map(len, second.hit_chunks)) == 1
    third = submit_batch(rt, catalog, demo_data[1], hitline_env / "o3", options=OPTIONS)
    assert reads == [catalog] and third.hit_chunks == []
    with session_scope(rt.db_url) as s:
        pinned = {b: s.get(Batch, b).catalog_version_id for b in (first.batch_id, second.batch_id, third.batch_id)}
    assert pinned[first.batch_id] != pinned[second.batch_id] == pinned[third.batch_id]
