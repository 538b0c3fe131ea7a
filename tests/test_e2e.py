"""The whole line from the CLI: a real Celery worker (in-process, memory broker), Milvus Lite, SQLite."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from db import crud
from db.session import session_scope
from hitline.cli import app
from hitline.jobs.context import get_runtime

pytestmark = pytest.mark.slow


def test_demo_runs_end_to_end_through_celery(hitline_env: Path) -> None:
    runner = CliRunner()
    out = hitline_env / "out"
    res = runner.invoke(app, ["demo", "--out", str(out), "--data", str(hitline_env / "demo")])
    assert res.exit_code == 0, res.output
    batch = re.search(r"batch (\S+):", res.output).group(1)
    ctx = get_runtime()
    with session_scope(ctx.db_url) as s:
        skus = crud.jobs(s, batch, "sku")
        hits = crud.jobs(s, batch, "hit")
    assert len(hits) >= 40 and all(h.state == "done" for h in hits)
    assert len(skus) >= 4 and all(j.state == "done" for j in skus), [(j.item_id, j.error) for j in skus]
    for j in skus:
        outputs = j.result["render"]["outputs"]
        assert len(outputs) >= 4
        for o in outputs:
            with Image.open(o["path"]) as im:
                assert im.size == (o["width"], o["height"])
    report = out / batch / "report.html"
    html = report.read_text()
    assert html.count("<section>") >= len(skus)
    assert "contact_sheet.png" in html
    # status shows the table, and the same rows as JSON for other services
    res = runner.invoke(app, ["status", batch, "--kind", "sku"])
    assert res.exit_code == 0 and "done" in res.output
    res = runner.invoke(app, ["status", batch, "--kind", "sku", "--json"])
    data = json.loads(res.output)
    assert data["batch"] == batch and len(data["jobs"]) == len(skus)
    assert all(j["state"] == "done" and len(j["outputs"]) >= 4 and "render" in j["seconds"] for j in data["jobs"])


def test_interrupted_embedded_batch_resumes_from_the_table(hitline_env: Path, demo_data) -> None:  # noqa: ANN001
    """A batch whose process died (nothing enqueued any more, one job left 'running') finishes with
    `hitline resume`: the job table, not the broker, knows what is left."""
    from hitline.jobs.submit import batch_options, submit_batch

    catalog, new = demo_data
    ctx = get_runtime()
    options = batch_options(ctx.settings, presets=["thumbnail"])
    sub = submit_batch(ctx, catalog, new, hitline_env / "out", options=options)  # submitted, never enqueued
    with session_scope(ctx.db_url) as s:
        victim = crud.claim(s, sub.sku_jobs[0], "embed")  # a worker took it, then the process died
        assert victim is not None
    res = CliRunner().invoke(app, ["resume", sub.batch_id])
    assert res.exit_code == 0, res.output
    with session_scope(ctx.db_url) as s:
        jobs = crud.jobs(s, sub.batch_id)
    assert all(j.state == "done" for j in jobs), [(j.item_id, j.stage, j.state, j.error) for j in jobs]
    assert (hitline_env / "out" / sub.batch_id / "report.html").exists()
