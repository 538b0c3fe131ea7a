"""The stages as plain functions over the job table (no Celery), incl. bad rows and idempotency."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

from PIL import Image

from db import crud
from db.session import session_scope
from hitline.store.index import FALLBACKS
from hitline.jobs.stages import CATALOG_LINE, SKU_LINE
from hitline.jobs.context import get_runtime
from hitline.jobs.report import report_when_finished
from hitline.jobs.sheets import draw_contact_sheet
from hitline.jobs.submit import submit_batch

OPTIONS = {
    "provider": "local",
    "top_k": 3,
    "min_sales": 1500,
    "presets": ["amazon_main", "thumbnail", "banner"],
    "models": {},
}


def _small_copy(demo_data: tuple[Path, Path], dest: Path, n_new: int = 2) -> tuple[Path, Path]:
    catalog, new = demo_data
    cat2, new2 = dest / "catalog", dest / "new"
    shutil.copytree(catalog, cat2)
    shutil.copytree(new, new2)
    with open(new2 / "new_products.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    fields = list(rows[0].keys())
    rows = rows[:n_new]
    # bad rows: each must fail alone with its reason
    (new2 / "new_products" / "liar.jpg").write_bytes(_png_bytes())
    (new2 / "new_products" / "notes.jpg").write_text("not an image")
    _truncate_copy(new2 / rows[0]["image_path"], new2 / "new_products" / "cut.jpg")
    # a catalog photo cut short: its header passes submit, the embed stage fails that hit alone
    with open(cat2 / "products.csv", newline="") as f:
        hits = list(csv.DictReader(f))
    _truncate_copy(cat2 / hits[0]["image_path"], cat2 / "images" / "cut-hit.jpg")
    with open(cat2 / "products.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(hits[0].keys()))
        w.writeheader()
        w.writerows(hits + [{**hits[0], "product_id": "HIT-TRUNC", "image_path": "images/cut-hit.jpg"}])
    bad = [
        {**rows[0], "new_id": "BAD-MISSING", "image_path": "new_products/nope.jpg"},
        {**rows[0], "new_id": "BAD-ESCAPE", "image_path": "../../etc/passwd"},
        {**rows[0], "new_id": "BAD-NOTIMG", "image_path": "new_products/notes.jpg"},
        {**rows[0], "new_id": "BAD-LIAR", "image_path": "new_products/liar.jpg"},
        {**rows[0], "new_id": "BAD-TRUNC", "image_path": "new_products/cut.jpg"},  # accepted at submit
        {**rows[0]},  # duplicate id
    ]
    with open(new2 / "new_products.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows + bad)
    return cat2, new2


def _truncate_copy(src: Path, dest: Path) -> None:
    data = src.read_bytes()
    dest.write_bytes(data[: len(data) // 2])


def _png_bytes() -> bytes:
    import io

    buf = io.BytesIO()
    Image.new("RGB", (200, 200), "red").save(buf, format="PNG")
    return buf.getvalue()


def _run_all(rt, sub) -> None:  # noqa: ANN001
    """The registry's stages in order, as plain functions (no broker)."""
    for chunk in sub.hit_chunks:
        for st in CATALOG_LINE:
            st.run(rt, sub.batch_id, chunk)
    for j in sub.sku_jobs:
        for st in SKU_LINE:
            if st.run(rt, j).status != "done":  # a failed stage ends that SKU's chain, as in Celery
                break


def test_line_as_plain_functions(hitline_env: Path, demo_data: tuple[Path, Path], monkeypatch) -> None:  # noqa: ANN001
    from hitline.store.index import HitIndex

    counted: list[str] = []
    real_count = HitIndex.count
    monkeypatch.setattr(HitIndex, "count", lambda self: counted.append(self.collection) or real_count(self))
    catalog, new = _small_copy(demo_data, hitline_env)
    ctx = get_runtime()
    out = hitline_env / "out"
    sub = submit_batch(ctx, catalog, new, out, options=OPTIONS)
    assert sub.rejected == 5 and len(sub.sku_jobs) == 3  # 2 good + the truncated one (headers only at submit)
    _run_all(ctx, sub)
    with session_scope(ctx.db_url) as s:
        skus = crud.jobs(s, sub.batch_id, "sku")
        hits = crud.jobs(s, sub.batch_id, "hit")
    assert all(h.state == "done" and h.stage == "done" for h in hits if h.item_id != "HIT-TRUNC")
    bad_hit = next(h for h in hits if h.item_id == "HIT-TRUNC")
    assert (bad_hit.stage, bad_hit.state) == ("embed", "failed")
    assert "image 'cut-hit.jpg' is corrupt or truncated" in bad_hit.error
    good = [j for j in skus if j.state == "done"]
    bad = {j.item_id: j.error for j in skus if j.state == "failed"}
    assert len(good) == 2
    # the catalog version's size is kept on its row when it is finished: no SKU's index stage counts Milvus
    assert counted == []
    assert {j.result["index"]["catalog_rows"] for j in good} == {sum(h.state == "done" for h in hits)}
    assert "escapes" in bad["BAD-ESCAPE"]
    assert "image file not found" in bad["BAD-MISSING"]
    assert "PNG" in bad["BAD-LIAR"]
    assert any("duplicate" in (e or "") for e in bad.values())
    assert "is not an image" in bad["BAD-NOTIMG"]
    trunc = next(j for j in skus if j.item_id == "BAD-TRUNC")
    assert trunc.stage == "embed" and "image 'cut.jpg' is corrupt or truncated" in trunc.error
    # a sheet task (wait_for_sheets) leaves the report to the task of the last sheet still to be drawn,
    # instead of drawing every other SKU's sheet itself; the API/CLI path (the default) draws what is missing
    assert report_when_finished(ctx, sub.batch_id, wait_for_sheets=True) is None
    assert not any((out / sub.batch_id / j.item_id / "contact_sheet.png").exists() for j in good)
    for j in good:
        r = j.result
        assert len(r["retrieve"]["hits"]) == 3
        # the demo catalog has every new product's category: the filter holds, no fallback was needed
        assert all(h["category"] == j.row["category"] for h in r["retrieve"]["hits"]), r["retrieve"]
        assert r["retrieve"]["fallback"] == FALLBACKS[0] and not r["retrieve"]["notes"]
        assert len(r["analyze"]["style"]["prompt"].split()) < 100
        sizes = {o["preset"]: Image.open(o["path"]).size for o in r["render"]["outputs"]}
        assert sizes == {"amazon_main": (2048, 2048), "thumbnail": (512, 512), "banner": (2048, 512)}
        d = out / sub.batch_id / j.item_id
        assert (d / "style.json").exists() and (d / "retrieved.json").exists()
        # the contact sheet is not drawn on the SKU's critical path, but after it (tasks/sheets.py, the report)
        assert not (d / "contact_sheet.png").exists()
        sheet = draw_contact_sheet(ctx, j.id)
        assert sheet == d / "contact_sheet.png" and Image.open(sheet).size[0] > 0
        stamp = sheet.stat().st_mtime_ns
        assert draw_contact_sheet(ctx, j.id) == sheet and sheet.stat().st_mtime_ns == stamp  # drawn once
    assert draw_contact_sheet(ctx, trunc.id) is None  # a failed SKU has nothing to show
    assert report_when_finished(ctx, sub.batch_id, wait_for_sheets=True) == out / sub.batch_id / "report.html"


def test_a_truncated_image_is_never_sent_to_the_provider(tmp_path: Path, demo_data: tuple[Path, Path]) -> None:
    """line.embed_images decodes before the call: an embedder that does not decode (a paid API taking
    bytes) never receives the broken file, and nothing is cached for it."""
    import pytest

    from hitline import line
    from hitline.errors import InputError
    from hitline.providers.base import Embedding

    good = next((demo_data[1] / "new_products").iterdir())
    cut = tmp_path / "cut.jpg"
    _truncate_copy(good, cut)

    class BytesEmbedder:  # like the OpenRouter embedder with a lenient encoder: sends what it is given
        model, dim, sent = "test/bytes", 2, []

        def embed_images(self, images):  # noqa: ANN001, ANN202
            self.sent.extend(images)
            return Embedding(vectors=[[1.0, 0.0] for _ in images], cost_usd=0.01 * len(images))

    cache: dict[str, object] = {}
    store = type(
        "DictCache", (), {"get": lambda self, k: cache.get(k), "put": lambda self, k, v: cache.__setitem__(k, v)}
    )()
    embedder = BytesEmbedder()
    with pytest.raises(InputError, match="image 'cut.jpg' is corrupt or truncated"):
        line.embed_images(embedder, [good, cut], store)
    assert embedder.sent == [] and cache == {}
    vectors, cost = line.embed_images(embedder, [good], store)
    assert embedder.sent == [good] and cost == pytest.approx(0.01)


def test_steps_are_idempotent(hitline_env: Path, demo_data: tuple[Path, Path]) -> None:
    catalog, new = _small_copy(demo_data, hitline_env, n_new=1)
    ctx = get_runtime()
    sub = submit_batch(ctx, catalog, new, hitline_env / "out", options=OPTIONS)
    _run_all(ctx, sub)
    job_id = sub.sku_jobs[0]
    files = sorted((hitline_env / "out" / sub.batch_id).rglob("*.png"))
    # a redelivered message runs each step again: nothing is redone, nothing new is written
    for st in SKU_LINE:
        outcome = st.run(ctx, job_id)
        assert outcome.status == "skipped" and outcome.moved_on, st.name
    assert sorted((hitline_env / "out" / sub.batch_id).rglob("*.png")) == files
    with session_scope(ctx.db_url) as s:
        job = crud.jobs(s, sub.batch_id, ids=[job_id])[0]
    assert job.attempts == len(SKU_LINE) and job.state == "done"  # one per stage, none redone


def test_unreadable_catalog_fails_the_submission_not_a_crash(hitline_env: Path) -> None:
    import pytest

    from hitline.errors import InputError

    (hitline_env / "cat").mkdir()
    (hitline_env / "cat" / "products.csv").write_text("product_id,image_path\nA,a.jpg\n")
    (hitline_env / "new").mkdir()
    (hitline_env / "new" / "new_products.csv").write_text("new_id,image_path,category,style,season,prompt_hint\n")
    with pytest.raises(InputError, match="category"):
        submit_batch(get_runtime(), hitline_env / "cat", hitline_env / "new", hitline_env / "out", options=OPTIONS)


def test_a_worker_without_the_batch_provider_fails_its_jobs_visibly(hitline_env: Path, demo_data, monkeypatch) -> None:  # noqa: ANN001
    """The batch asks for OpenRouter; this worker has no key (and the real API URL): the jobs fail with
    what to set, catalog jobs included - none is left 'running', nothing hangs."""
    catalog, new = _small_copy(demo_data, hitline_env, n_new=1)
    rt = get_runtime()
    sub = submit_batch(rt, catalog, new, hitline_env / "out", options=OPTIONS)
    with session_scope(rt.db_url) as s:  # the submitter had a key; this worker's settings do not
        from db.models import Batch

        s.get(Batch, sub.batch_id).options = {**OPTIONS, "provider": "openrouter"}
    chunk = sub.hit_chunks[0]
    CATALOG_LINE[0].run(rt, sub.batch_id, chunk)
    for job_id in sub.sku_jobs:
        sku = SKU_LINE[0].run(rt, job_id)
        assert sku.status == "failed" and "HITLINE_OPENROUTER_API_KEY" in sku.reason
    with session_scope(rt.db_url) as s:
        jobs = crud.jobs(s, sub.batch_id, ids=chunk + sub.sku_jobs)
    assert {j.state for j in jobs} == {"failed"}, [
        (j.kind, j.item_id, j.stage, j.state, j.error) for j in jobs if j.state != "failed"
    ][:5]
    assert all("HITLINE_OPENROUTER_API_KEY" in j.error for j in jobs)


def test_a_cache_of_plain_lists_from_an_earlier_version_gives_the_same_retrievals(
    hitline_env: Path, demo_data: tuple[Path, Path], monkeypatch
) -> None:  # noqa: ANN001
    """The embed, index and retrieve stages read vectors cached as plain JSON lists (hitline before compact
    vectors): nothing is embedded again and each SKU finds the same hits, scores and ranks."""
    from sqlalchemy import select, update

    from db.models import CacheEntry
    from hitline.domain.vectors import decode_vector
    from hitline.providers.local.embed import LocalEmbedder

    catalog, new = _small_copy(demo_data, hitline_env, n_new=2)
    rt = get_runtime()

    def retrievals() -> dict[str, dict]:
        sub = submit_batch(rt, catalog, new, hitline_env / "out", options=OPTIONS)
        for chunk in sub.hit_chunks:
            for st in CATALOG_LINE:
                st.run(rt, sub.batch_id, chunk)
        for j in sub.sku_jobs:
            for st in SKU_LINE[:3]:  # embed, index, retrieve
                if st.run(rt, j).status != "done":
                    break
        with session_scope(rt.db_url) as s:
            return {
                j.item_id: j.result["retrieve"] for j in crud.jobs(s, sub.batch_id, "sku") if "retrieve" in j.result
            }

    compact = retrievals()
    assert len(compact) == 2
    with session_scope(rt.db_url) as s:
        entries = dict(s.execute(select(CacheEntry.key, CacheEntry.value).where(CacheEntry.key.like("emb:%"))).all())
        assert len(entries) > 40 and all(set(v) == {"f32", "dim"} for v in entries.values())
        for key, value in entries.items():  # what the earlier version wrote: [float(x) for x in vector]
            s.execute(
                update(CacheEntry).where(CacheEntry.key == key).values(value=[float(x) for x in decode_vector(value)])
            )

    def embedded_again(self, images):  # noqa: ANN001, ANN202
        raise AssertionError(f"embedded again: {images}")

    monkeypatch.setattr(LocalEmbedder, "embed_images", embedded_again)
    assert retrievals() == compact
