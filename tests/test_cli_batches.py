"""`hitline status | retry | cancel | token` on a job table of thousands of SKUs: a summary that fits 80
columns, rows a page at a time, and the operations of hitline/jobs/control.py from the terminal."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from db import crud
from db.session import init_db, session_scope
from hitline.cli import app

LONG = (
    "provider 402: Insufficient credits - the account behind HITLINE_OPENROUTER_API_KEY has no credit "
    "left for google/gemini-3.1-flash-image-preview; add credit at openrouter.ai/settings/credits"
)


@pytest.fixture
def big_batch(hitline_env: Path) -> str:
    from hitline.jobs.context import get_runtime

    url = get_runtime().db_url
    init_db(url)
    with session_scope(url) as s:
        crud.create_batch(
            s,
            "B",
            catalog_dir="c",
            new_dir="n",
            out_dir=str(hitline_env / "out"),
            options={"presets": ["thumbnail"]},
            budget_usd=None,
            notes=[],
        )
        for i in range(3000):
            crud.add_job(
                s,
                "B",
                "sku",
                f"SKU{i:04d}",
                i,
                {},
                "render" if i < 1200 else "done",
                "failed" if i < 1000 else ("pending" if i < 1200 else "done"),
                LONG if i < 1000 else None,
            )
        s.flush()
        s.execute(text("UPDATE job SET attempts = 1 WHERE state = 'failed'"))
    return "B"


def _run(*argv: str):  # noqa: ANN202
    return CliRunner().invoke(app, list(argv), env={"COLUMNS": "80"}, terminal_width=80)


def test_status_is_a_summary_that_fits_80_columns(big_batch: str) -> None:
    res = _run("status", big_batch)
    assert res.exit_code == 0, res.output
    lines = res.output.rstrip("\n").splitlines()
    assert len(lines) < 20, res.output  # not one row per SKU
    assert max(map(len, lines)) <= 80, res.output
    assert "3000: 1800 done, 1000 failed, 200 pending" in res.output
    assert "1000 SKUs at render" in res.output
    reason = " ".join(line.strip() for line in lines if line.startswith("        "))
    assert "add credit at openrouter.ai/settings/credits" in reason  # wrapped by words, all of it there
    assert "hitline retry B" in res.output


def test_status_jobs_are_paged_with_a_cursor(big_batch: str) -> None:
    res = _run("status", big_batch, "--jobs", "--state", "failed", "--limit", "10")
    assert res.exit_code == 0 and max(map(len, res.output.splitlines())) <= 80, res.output
    assert res.output.count("SKU0") == 10 and "SKU0009" in res.output and "SKU0010" not in res.output
    cursor = res.output.split("--cursor ")[1].split()[0]
    nxt = _run("status", big_batch, "--jobs", "--state", "failed", "--limit", "10", "--cursor", cursor)
    assert "SKU0010" in nxt.output and "SKU0009" not in nxt.output


def test_cancel_then_status_and_unknown_batches(big_batch: str) -> None:
    res = _run("cancel", big_batch)
    assert res.exit_code == 0 and "200 waiting jobs stopped" in res.output, res.output
    assert "200 cancelled" in _run("status", big_batch).output
    for argv in (("cancel", "nope"), ("retry", "nope"), ("status", "nope")):
        res = _run(*argv)
        assert res.exit_code == 2 and "no batch 'nope'" in res.output, (argv, res.output)


def test_retry_by_job_runs_only_that_job_again(big_batch: str) -> None:
    res = _run("retry", big_batch, "--job", "SKU0007")
    assert res.exit_code == 0 and "re-enqueued 1 failed jobs" in res.output, res.output
    from hitline.jobs.context import get_runtime

    with session_scope(get_runtime().db_url) as s:
        attempts = dict(
            s.execute(text("SELECT item_id, attempts FROM job WHERE item_id IN ('SKU0007', 'SKU0008')")).all()
        )
    assert attempts == {"SKU0007": 2, "SKU0008": 1}  # ran once more (and failed again: its row is empty)
    assert "no retryable failed job" in _run("retry", big_batch, "--reason", "no such reason").output


def test_token_create_prints_the_token_once_and_stores_a_hash(hitline_env: Path) -> None:
    res = CliRunner().invoke(app, ["token", "create", "shop"])
    assert res.exit_code == 0, res.output
    token = res.stdout.strip().splitlines()[0]
    assert token.startswith("hl_") and len(token) > 40
    from hitline.jobs.context import get_runtime

    with session_scope(get_runtime().db_url) as s:
        stored = " ".join(str(v) for row in s.execute(text("SELECT * FROM api_token")) for v in row)
    assert token not in stored
    again = CliRunner().invoke(app, ["token", "create", "shop"])
    assert again.exit_code == 2 and "exists" in again.output
    assert "shop" in CliRunner().invoke(app, ["token", "list"]).output
    assert CliRunner().invoke(app, ["token", "revoke", "shop"]).exit_code == 0


def test_status_shows_input_checks_gate_and_render_plan_in_80_columns(rendered_batch: str) -> None:
    import json

    res = _run("status", rendered_batch)
    assert res.exit_code == 0 and max(map(len, res.output.splitlines())) <= 80, res.output
    flat = " ".join(res.output.split())
    assert (
        "input checks: 7 SKUs low_res (6 amazon_main downsized to 1K, 1 banner failed), 1 touches frame, "
        "1 background not white (amazon_main)"
    ) in flat, res.output
    assert "quality gate (outputs): 29 passed, 1 passed after re-render, 1 needs review" in flat
    assert "render plan: 24 renders for 32 outputs (8 resized): $2.424 instead of $2.784" in flat
    assert "saved $0.360 ($0.045 a SKU)" in flat

    rows = _run("status", rendered_batch, "--jobs")
    assert rows.exit_code == 0 and max(map(len, rows.output.splitlines())) <= 80, rows.output
    flat = " ".join(rows.output.split())
    assert (
        "input checks: amazon_main downsized to 1K (low_res); touches frame. gate: 2 passed, 1 passed after "
        "re-render, 1 needs review"
    ) in flat
    assert "banner failed: product is 160 px, banner at 2K needs 1229 px (7.7x upscale)" in flat

    data = json.loads(_run("status", rendered_batch, "--json").output)
    assert data["input_checks"]["low_res"] == 7 and data["gate"]["needs_review"] == 1
    assert data["render_plan"]["derived"] == 8
    sku0 = next(j for j in data["jobs"] if j["id"] == "SKU0")
    assert sku0["input_checks"]["downsized"] == {"amazon_main": "1K"} and sku0["gate"]["needs_review"] == 1
    assert sku0["render_plan"]["derived"] == {"thumbnail": "amazon_main"}
    assert "input_checks" not in next(j for j in data["jobs"] if j["id"] == "WAITING")
