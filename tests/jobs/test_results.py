"""Typed stage results (hitline/jobs/results.py): every stage declares its model on the registry, the
runner validates a result when it is written, and rows the job table already holds (written before the
models existed) read through the one accessor."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from db import crud
from db.session import init_db, session_scope
from hitline.jobs.context import get_runtime
from hitline.jobs.results import (
    AnalyzeResult,
    EmbedResult,
    IndexResult,
    RenderResult,
    RetrieveResult,
    StageResult,
    read,
)
from hitline.jobs.runner import checked, run_step
from hitline.jobs.stages import STAGES

# one SKU's job.result as main wrote it on 2026-12-03 (fcc1753), before the models; the render of a
# batch run with the quality gate off (no "inputs", no "quality") and a key a later version may add
MAIN_ROW = {
    "embed": {"key": "vec:local/descriptor-v2:3f2a", "cost_usd": 0.0},
    "index": {"collection": "hits_local_descriptor_v2", "catalog_rows": 48},
    "retrieve": {
        "filter": 'category == "dress" and sales_count > 1500',
        "fallback": "category+sales",
        "notes": [],
        "hits": [
            {
                "product_id": "HIT0007",
                "score": 0.031,
                "image_path": "/c/images/7.jpg",
                "category": "dress",
                "sales_count": 4100,
                "description": "linen dress",
                "found_by": ["dense", "sparse"],
                "dense_rank": 1,
                "sparse_rank": 2,
            }
        ],
    },
    "analyze": {
        "style": {
            "scene": "beach",
            "lighting": "golden hour",
            "pose": "walking",
            "mood": "calm",
            "prompt": "a linen dress on a beach",
            "palette": ["#f0e0c0"],
            "measurements": {},
            "warnings": [],
        },
        "cached": False,
        "cost_usd": 0.0,
    },
    "render": {
        "outputs": [
            {
                "preset": "thumbnail",
                "path": "/o/B/SKU1/thumbnail-ab12.png",
                "width": 512,
                "height": 512,
                "cost_usd": 0.0,
                "key": "ab12",
                "reused_from": None,
                "derived_from": None,
            }
        ],
        "plan": {"renders": ["thumbnail"], "derived": {}, "cost_usd": 0.0, "naive_cost_usd": 0.0, "saving_usd": 0.0},
        "digest": {
            "inputs": {"downsized": {}, "failed": [], "background": [], "touches_frame": False},
            "gate": {},
            "plan": {"renders": 1, "derived": 0, "naive_usd": 0.0, "cost_usd": 0.0},
        },
        "review": {"state": "approved"},
    },  # written by a later version: kept, not refused
}


def test_every_stage_declares_its_result_model() -> None:
    assert all(st.result is not StageResult for st in STAGES)
    declared = {st.name: st.result for st in STAGES if st.kind == "sku"}
    assert {
        "embed": EmbedResult,
        "index": IndexResult,
        "retrieve": RetrieveResult,
        "analyze": AnalyzeResult,
        "render": RenderResult,
    }.items() <= declared.items()


def test_rows_main_wrote_read_as_typed_results(hitline_env: Path) -> None:
    url = get_runtime().db_url
    init_db(url)
    with session_scope(url) as s:
        crud.create_batch(
            s,
            "B",
            catalog_dir="c",
            new_dir="n",
            out_dir="o",
            options={"presets": ["thumbnail"]},
            budget_usd=None,
            notes=[],
        )
        job = crud.add_job(s, "B", "sku", "SKU1", 1, {}, "done", "done")
        job.result = MAIN_ROW
        s.flush()
        render = read(job, RenderResult)
        assert render is not None and render.outputs[0].preset == "thumbnail" and render.outputs[0].quality is None
        assert render.inputs is None and render.digest is not None and render.digest.plan.renders == 1
        assert render.model_extra == {"review": {"state": "approved"}}
        assert read(job, RetrieveResult).hits[0].found_by == ["dense", "sparse"]
        assert read(job, AnalyzeResult).style.scene == "beach"
        assert read(job, IndexResult).catalog_rows == 48
        assert read({"embed": MAIN_ROW["embed"]}, RenderResult) is None  # the stage has not run yet
    # written again, a result keeps the shape it was given (the batch summary reads render.digest in SQL)
    assert checked(RenderResult, MAIN_ROW["render"]) == MAIN_ROW["render"]


def test_a_result_that_does_not_fit_its_model_fails_the_job(hitline_env: Path) -> None:
    with pytest.raises(ValidationError):
        checked(RenderResult, {"outputs": [{"preset": "thumbnail"}]})  # no path, no size
    url = get_runtime().db_url
    init_db(url)
    with session_scope(url) as s:
        crud.create_batch(
            s,
            "B",
            catalog_dir="c",
            new_dir="n",
            out_dir="o",
            options={"presets": ["thumbnail"]},
            budget_usd=None,
            notes=[],
        )
        job = crud.add_job(s, "B", "sku", "SKU1", 1, {}, "embed")
        s.flush()
        job_id = job.id
    outcome = run_step(
        get_runtime(), job_id, "embed", lambda jc: {"cost_usd": 0.0}, ["embed", "render"], result=EmbedResult
    )
    assert outcome.status == "failed" and "key" in (outcome.reason or "")
    with session_scope(url) as s:
        job = crud.job(s, job_id)
        assert (job.stage, job.state, job.result or {}) == ("embed", "failed", {})


def test_the_words_on_the_pictures_sum_into_the_batch_summary(hitline_env: Path) -> None:
    """Digest.text (hitline.jobs.quality._text_digest) read by field: per SKU what 5 locales cost."""
    from hitline.jobs.control import quality_summary

    url = get_runtime().db_url
    init_db(url)
    with session_scope(url) as s:
        crud.create_batch(
            s, "B", catalog_dir="c", new_dir="n", out_dir="o", options={"presets": []}, budget_usd=None, notes=[]
        )
        for i, (refused, mt, model_usd) in enumerate([(1, 2, 1.0), (0, 1, 3.0)]):
            text = {
                "mode": "overlay",
                "locales": 5,
                "refused": refused,
                "machine_translated": mt,
                "saving": {"locales": 5, "model_usd": model_usd, "overlay_usd": 0.5, "saving_usd": model_usd - 0.5},
            }
            job = crud.add_job(s, "B", "sku", f"SKU{i}", i, {}, "done", "done")
            job.result = {"render": {**MAIN_ROW["render"], "digest": {**MAIN_ROW["render"]["digest"], "text": text}}}
        s.flush()
        words = quality_summary(s, "B").text
    assert words == {
        "mode": "overlay",
        "skus": 2,
        "refused": 1,
        "machine_translated": 3,
        "model_usd_5_locales_per_sku": 2.0,
        "overlay_usd_5_locales_per_sku": 0.5,
        "saving_usd_5_locales_per_sku": 1.5,
    }


def test_outputs_are_recorded_when_the_render_stage_is_not_the_last(hitline_env: Path) -> None:
    """A stage added after render (the registry plus its work): the SKU's outputs are still recorded for
    review when it finishes, from the render stage's result (looked up by its model, not by name)."""
    from sqlalchemy import select

    from db.models import Output

    url = get_runtime().db_url
    init_db(url)
    with session_scope(url) as s:
        crud.create_batch(
            s, "B", catalog_dir="c", new_dir="n", out_dir="o", options={"presets": []}, budget_usd=None, notes=[]
        )
        job = crud.add_job(s, "B", "sku", "SKU1", 1, {}, "tag")
        job.result = {"render": MAIN_ROW["render"]}
        s.flush()
        job_id = job.id
    outcome = run_step(get_runtime(), job_id, "tag", lambda jc: {}, ["render", "tag"])
    assert outcome.status == "done"
    with session_scope(url) as s:
        assert [o.preset for o in s.scalars(select(Output).where(Output.job_id == job_id))] == ["thumbnail"]
