"""The stages as plain functions over the job table (no Celery), incl. bad rows and idempotency."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

from PIL import Image

from db import crud
from db.session import session_scope
from hitline.domain.index import FALLBACKS
from hitline.jobs.stages import CATALOG_LINE, SKU_LINE
from hitline.jobs.context import get_runtime
from hitline.jobs.submit import submit_batch

OPTIONS = {"provider": "local", "top_k": 3, "min_sales": 1500, "presets": ["amazon_main", "thumbnail", "banner"],
           "models": {}}


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
    bad = [
        {**rows[0], "new_id": "BAD-MISSING", "image_path": "new_products/nope.jpg"},
        {**rows[0], "new_id": "BAD-ESCAPE", "image_path": "../../etc/passwd"},
        {**rows[0], "new_id": "BAD-NOTIMG", "image_path": "new_products/notes.jpg"},
        {**rows[0], "new_id": "BAD-LIAR", "image_path": "new_products/liar.jpg"},
        {**rows[0]},  # duplicate id
    ]
    with open(new2 / "new_products.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows + bad)
    return cat2, new2


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
            assert st.run(rt, j).status == "done", st.name


def test_line_as_plain_functions(hitline_env: Path, demo_data: tuple[Path, Path]) -> None:
    catalog, new = _small_copy(demo_data, hitline_env)
    ctx = get_runtime()
    out = hitline_env / "out"
    sub = submit_batch(ctx, catalog, new, out, options=OPTIONS)
    assert sub.rejected == 5
    _run_all(ctx, sub)
    with session_scope(ctx.db_url) as s:
        skus = crud.jobs(s, sub.batch_id, "sku")
        hits = crud.jobs(s, sub.batch_id, "hit")
    assert all(h.state == "done" and h.stage == "done" for h in hits)
    good = [j for j in skus if j.state == "done"]
    bad = {j.item_id: j.error for j in skus if j.state == "failed"}
    assert len(good) == 2
    assert "escapes" in bad["BAD-ESCAPE"]
    assert "image file not found" in bad["BAD-MISSING"]
    assert "PNG" in bad["BAD-LIAR"]
    assert any("duplicate" in (e or "") for e in bad.values())
    assert "is not an image" in bad["BAD-NOTIMG"]
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
        assert (d / "style.json").exists() and (d / "retrieved.json").exists() and (d / "contact_sheet.png").exists()


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
    assert job.attempts == 5 and job.state == "done"


def test_unreadable_catalog_fails_the_submission_not_a_crash(hitline_env: Path) -> None:
    import pytest

    from hitline.errors import InputError

    (hitline_env / "cat").mkdir()
    (hitline_env / "cat" / "products.csv").write_text("product_id,image_path\nA,a.jpg\n")
    (hitline_env / "new").mkdir()
    (hitline_env / "new" / "new_products.csv").write_text("new_id,image_path,category,style,season,prompt_hint\n")
    with pytest.raises(InputError, match="category"):
        submit_batch(get_runtime(), hitline_env / "cat", hitline_env / "new", hitline_env / "out", options=OPTIONS)
