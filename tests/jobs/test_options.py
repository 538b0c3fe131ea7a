"""Batch options record the presets the batch was checked against (hitline/jobs/options.py): a worker
whose HITLINE_PRESETS_FILE says otherwise renders the recorded sizes; a batch from before they were
recorded still runs on the worker's file."""

from __future__ import annotations

from pathlib import Path

import pytest

from hitline.jobs.context import BatchInfo, JobContext, get_runtime, reset_runtime
from hitline.jobs.options import BatchOptions
from hitline.jobs.submit import batch_options


def _presets_file(path: Path, size: str) -> Path:
    path.write_text(f'[thumbnail]\naspect_ratio = "1:1"\nsize = "{size}"\n\n[thumbnail.rules]\nmin_fill = 0.8\n')
    return path


def _presets(options: dict[str, object], out: Path) -> list[tuple[str, int, int]]:
    jc = JobContext(
        get_runtime(), BatchInfo("B", BatchOptions.read(options), out, None, None), 1, "sku", "SKU1", "render", {}, {}
    )
    return [(p.name, p.width, p.height) for p in jc.presets]


def test_workers_render_the_presets_the_batch_was_checked_against(
    hitline_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HITLINE_PRESETS_FILE", str(_presets_file(hitline_env / "submit.toml", "1K")))
    reset_runtime()
    options = batch_options(get_runtime().settings, presets=["thumbnail"])
    assert BatchOptions.of(options).resolved_presets()[0].rule("min_fill") == 0.8
    # the worker's own file says 512px
    monkeypatch.setenv("HITLINE_PRESETS_FILE", str(_presets_file(hitline_env / "worker.toml", "512px")))
    reset_runtime()
    assert _presets(options, hitline_env) == [("thumbnail", 1024, 1024)]
    # a batch submitted before the presets were recorded: the worker's file, as before
    old = {k: v for k, v in options.items() if k != "preset_specs"}
    assert _presets(old, hitline_env) == [("thumbnail", 512, 512)]


def _small_demo(demo_data: tuple[Path, Path], dest: Path, n_hits: int = 8, n_new: int = 2) -> tuple[Path, Path]:
    import csv
    import shutil

    catalog, new = demo_data
    cat2, new2 = dest / "catalog", dest / "new"
    shutil.copytree(catalog, cat2)
    shutil.copytree(new, new2)
    for path, n in ((cat2 / "products.csv", n_hits), (new2 / "new_products.csv", n_new)):
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows[:n])
    return cat2, new2


def test_two_workers_with_other_presets_files_render_the_batch_at_its_sizes(
    hitline_env: Path, demo_data: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Submitted against a 1K thumbnail; the SKUs' render stages then run on two "workers" whose own
    presets files say 512px and 2K: both render 1024 x 1024, the size the batch was checked against."""
    from PIL import Image

    from db import crud
    from db.session import session_scope
    from hitline.jobs.stages import CATALOG_LINE, SKU_LINE
    from hitline.jobs.submit import submit_batch

    catalog, new = _small_demo(demo_data, hitline_env)
    monkeypatch.setenv("HITLINE_PRESETS_FILE", str(_presets_file(hitline_env / "submit.toml", "1K")))
    reset_runtime()
    rt = get_runtime()
    options = batch_options(rt.settings, presets=["thumbnail"], min_sales=0)
    sub = submit_batch(rt, catalog, new, hitline_env / "out", options=options)
    assert len(sub.sku_jobs) == 2
    for chunk in sub.hit_chunks:
        for st in CATALOG_LINE:
            st.run(rt, sub.batch_id, chunk)
    *before, render = SKU_LINE
    for job_id in sub.sku_jobs:
        for st in before:
            assert st.run(rt, job_id).status == "done"
    for job_id, size in zip(sub.sku_jobs, ("512px", "2K"), strict=True):  # each SKU's render on its own worker
        monkeypatch.setenv("HITLINE_PRESETS_FILE", str(_presets_file(hitline_env / f"worker-{size}.toml", size)))
        reset_runtime()
        assert render.run(get_runtime(), job_id).status == "done"
    with session_scope(rt.db_url) as s:
        outputs = [o for j in crud.jobs(s, sub.batch_id, "sku") for o in j.result["render"]["outputs"]]
    assert len(outputs) == 2
    for o in outputs:
        with Image.open(o["path"]) as im:
            assert (o["width"], o["height"], im.size) == (1024, 1024, (1024, 1024))


def test_the_recorded_presets_are_the_resolved_ones_after_the_job_tables_json(hitline_env: Path) -> None:
    """Every field of a resolved preset (sizes, background, low_res, rules, text slots) survives the batch
    row's JSON: the worker's Preset equals the one submission checked."""
    import json

    from hitline.domain.imaging import load_presets

    names = ["amazon_main", "banner", "thumbnail"]
    options = json.loads(json.dumps(batch_options(get_runtime().settings, presets=names)))
    recorded = BatchOptions.of(options).resolved_presets()
    assert recorded == load_presets(names)
    assert recorded is not None and [s.name for s in recorded[1].slots] == ["headline", "price"]


# a batch row's options as older main wrote them (hitline/jobs/submit.py at 26c68da, 2026-11-26): no
# preset_specs, mode, escalate, text or catalog pin; no escalate_model
_OLD_ROW = {
    "provider": "local",
    "top_k": 2,
    "min_sales": 1,
    "presets": ["thumbnail"],
    "models": {"embed_model": "local/clip", "analyze_model": "local/a", "render_model": "local/r"},
}


def test_a_batch_row_written_by_older_main_reads_as_typed_options(hitline_env: Path) -> None:
    """The tolerant reader (BatchOptions.read, on every load of a batch row): an old row reads with the
    defaults, unknown keys are kept, and the stages behave as they did for it (the worker's presets file,
    direct mode, no escalation, no words; no catalog pin is a sentence, not a KeyError)."""
    from db import crud
    from db.session import session_scope
    from hitline.domain.retrieval import Scope
    from hitline.errors import InputError
    from hitline.jobs import catalogs, localise
    from hitline.jobs.context import load_batch
    from hitline.jobs.review import draft_summary
    from hitline.jobs.stages import catalog_indexed

    rt = get_runtime()
    later = {
        **_OLD_ROW,
        "review": "all",
        "draft": "512px",
        "mode": "staged",
        "escalate": "pro",
        "text": {"locales": ["en-US", "de-DE"], "mode": "overlay", "missing_translation": "refuse"},
        "catalog": {"id": "cat1", "seq": 3, "version_id": 7},
        "a_key_from_a_later_version": {"x": 1},
    }
    with session_scope(rt.db_url) as s:
        for bid, options in (("OLD", {**_OLD_ROW, "unknown_old_key": 5}), ("LATER", later)):
            crud.create_batch(
                s,
                bid,
                catalog_dir="c",
                new_dir="n",
                out_dir=str(hitline_env),
                options=options,
                budget_usd=None,
                notes=[],
            )
    with session_scope(rt.db_url) as s:
        old, new = load_batch(s, "OLD").options, load_batch(s, "LATER").options
        assert draft_summary(s, "OLD", rt.prices) is None
    assert isinstance(old, BatchOptions)
    assert (old.provider, old.top_k, old.min_sales, old.presets) == ("local", 2, 1, ["thumbnail"])
    assert (old.preset_specs, old.mode, old.escalate, old.review, old.draft, old.text, old.catalog) == (None,) * 7
    assert old.models["render_model"] == "local/r" and old.model_extra == {"unknown_old_key": 5}
    assert localise.text_options(old) is None and catalogs.scope_of(old) is None
    jc = JobContext(rt, BatchInfo("OLD", old, hitline_env, None, None), 1, "sku", "SKU1", "render", {}, {})
    assert [(p.name, p.width) for p in jc.presets] == [("thumbnail", rt.presets(["thumbnail"])[0].width)]
    with pytest.raises(InputError, match="names no catalog version"):
        catalog_indexed(rt, "OLD")
    # a row with every key this version knows reads typed, extras kept
    assert (new.review, new.draft, new.mode, new.escalate) == ("all", "512px", "staged", "pro")
    text = localise.text_options(new)
    assert text is not None and (text.locales, text.mode, text.missing_translation) == (
        ["en-US", "de-DE"],
        "overlay",
        "refuse",
    )
    assert catalogs.scope_of(new) == Scope("cat1", 3) and new.catalog is not None and new.catalog.version_id == 7
    assert new.model_extra == {"a_key_from_a_later_version": {"x": 1}}
    assert BatchOptions.read(None) == BatchOptions()
