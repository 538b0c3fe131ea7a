"""The API path end to end against the shipped fake OpenRouter over real HTTP: cost, budget hold and
resume, caches, error classes at batch level, and the key never leaking."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from db import crud
from db.session import session_scope
from hitline.cli import app
from hitline.fake.server import FakeConfig, running_fake
from hitline.jobs.context import get_runtime, reset_runtime

pytestmark = pytest.mark.slow
KEY = "sk-or-v1-TESTSECRET-0123456789abcdef"
PRESETS = "thumbnail,banner"  # 512px $0.045 + 2K $0.101 per SKU


@pytest.fixture
def fake(hitline_env: Path, monkeypatch: pytest.MonkeyPatch):
    with running_fake(FakeConfig(api_key=KEY, require_key=True, max_image_side=512)) as srv:
        monkeypatch.setenv("HITLINE_OPENROUTER_API_KEY", KEY)
        reset_runtime()
        yield srv


@pytest.fixture
def small_demo(demo_data: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    catalog, new = demo_data
    new2 = tmp_path / "new2"
    shutil.copytree(new, new2)
    lines = (new2 / "new_products.csv").read_text().splitlines()
    (new2 / "new_products.csv").write_text("\n".join(lines[:4]) + "\n")  # 3 SKUs
    return catalog, new2


def _run(fake, catalog: Path, new: Path, out: Path, *extra: str):  # noqa: ANN001
    res = CliRunner().invoke(
        app,
        [
            "run",
            "--catalog",
            str(catalog),
            "--new",
            str(new),
            "--out",
            str(out),
            "--provider",
            "openrouter",
            "--openrouter-base-url",
            fake.base_url,
            "--presets",
            PRESETS,
            *extra,
        ],
    )
    assert res.exit_code == 0, res.output
    return re.search(r"batch (\S+):", res.output).group(1), res.output


def _jobs(batch: str, kind: str = "sku"):
    with session_scope(get_runtime().db_url) as s:
        return crud.jobs(s, batch, kind), crud.spent(s, batch)


def _count(stats: dict, endpoint: str, model: str | None = None) -> int:
    models = stats["requests"].get(endpoint, {})
    return sum(n for m, n in models.items() if model is None or m == model)


RENDER_MODEL = "google/gemini-3.1-flash-image-preview"
ANALYZE_MODEL = "qwen/qwen3.5-397b-a17b"


def test_openrouter_line_costs_caches_and_secret(fake, small_demo, hitline_env: Path, caplog) -> None:  # noqa: ANN001
    caplog.set_level("DEBUG")
    catalog, new = small_demo
    batch, output = _run(fake, catalog, new, hitline_env / "out")
    skus, spent = _jobs(batch)
    assert [j.state for j in skus] == ["done"] * 3, [(j.item_id, j.error) for j in skus]
    for j in skus:
        assert j.cost_usd == pytest.approx(0.045 + 0.101 + j.result["analyze"]["cost_usd"], abs=1e-6)
    assert spent == pytest.approx(
        sum(j.cost_usd for j in skus) + sum(h.cost_usd for h in _jobs(batch, "hit")[0]), abs=1e-6
    )
    first = fake.stats()
    assert _count(first, "embeddings") > 0 and _count(first, "chat/completions", ANALYZE_MODEL) == 3
    assert _count(first, "chat/completions", RENDER_MODEL) == 6
    report = (hitline_env / "out" / batch / "report.html").read_text()
    assert "$" in report and batch in report

    # second batch on the same inputs: no embedding or analysis request is sent again
    fake.reset()
    batch2, _ = _run(fake, catalog, new, hitline_env / "out2")
    second = fake.stats()
    assert _count(second, "embeddings") == 0, second["requests"]
    assert _count(second, "chat/completions", ANALYZE_MODEL) == 0, second["requests"]
    assert all(j.state == "done" for j in _jobs(batch2)[0])

    # the key is nowhere: job table, outputs, logs, CLI output
    blobs = [p.read_bytes() for p in (hitline_env / "data").rglob("*") if p.is_file()]
    blobs += [p.read_bytes() for p in (hitline_env / "out").rglob("*") if p.is_file()]
    assert not any(KEY.encode() in b for b in blobs)
    assert KEY not in caplog.text and KEY not in output


def test_budget_holds_renders_and_resume_finishes_them(fake, small_demo, hitline_env: Path) -> None:  # noqa: ANN001
    catalog, new = small_demo
    batch, _ = _run(fake, catalog, new, hitline_env / "out", "--budget", "0.30")
    skus, spent = _jobs(batch)
    states = sorted(j.state for j in skus)
    assert "budget_exceeded" in states, states
    assert spent <= 0.30 + 1e-9
    held = [j for j in skus if j.state == "budget_exceeded"]
    assert all("budget" in (j.error or "") for j in held)
    renders_before = _count(fake.stats(), "chat/completions", RENDER_MODEL)

    res = CliRunner().invoke(app, ["resume", batch, "--budget", "5"])
    assert res.exit_code == 0, res.output
    skus, spent = _jobs(batch)
    assert all(j.state == "done" for j in skus), [(j.item_id, j.state, j.error) for j in skus]
    n_images = sum(len(j.result["render"]["outputs"]) for j in skus)
    assert n_images == 6
    renders_after = _count(fake.stats(), "chat/completions", RENDER_MODEL)
    # each image paid and requested exactly once across hold + resume
    assert renders_after == 6 and renders_before < 6
    render_spend = sum(o["cost_usd"] for j in skus for o in j.result["render"]["outputs"])
    assert render_spend == pytest.approx(3 * (0.045 + 0.101))  # every image charged once, none twice


def test_terminal_and_retryable_errors_at_batch_level(fake, small_demo, hitline_env: Path) -> None:  # noqa: ANN001
    catalog, new = small_demo
    # embeddings/analysis fine; renders: the first answers 402, later ones hit 500/429 before succeeding
    fake.configure(script=[], p_500=0.0)
    batch, _ = _run(fake, catalog, new, hitline_env / "warm")  # warm the caches: only renders below
    fake.reset()
    fake.configure(script=["402"], p_500=0.25, p_429=0.15, retry_after_s=0.2)
    batch, _ = _run(fake, catalog, new, hitline_env / "out")
    skus, _ = _jobs(batch)
    failed = [j for j in skus if j.state == "failed"]
    assert len(failed) == 1 and "credit" in failed[0].error.lower()
    assert sum(j.state == "done" for j in skus) == 2
    stats = fake.stats()
    assert stats["statuses"].get("402") == 1


def test_identical_skus_are_rendered_and_paid_once(fake, small_demo, hitline_env: Path) -> None:  # noqa: ANN001
    """Four SKUs with the same flat-lay and text: every paid call the fake served is on the record, and
    the identical images are rendered once and reused (cost 0, `reused_from`), not requested again."""
    from sqlalchemy import func, select

    from db.models import Charge

    catalog, new = small_demo
    lines = (new / "new_products.csv").read_text().splitlines()
    header, row = lines[0], lines[1].split(",", 1)
    (new / "new_products.csv").write_text("\n".join([header] + [f"TWIN{i},{row[1]}" for i in range(4)]) + "\n")
    batch, _ = _run(fake, catalog, new, hitline_env / "out")
    skus, spent = _jobs(batch)
    assert [j.state for j in skus] == ["done"] * 4, [(j.item_id, j.error) for j in skus]
    stats = fake.stats()
    renders = _count(stats, "chat/completions", RENDER_MODEL)
    analyses = _count(stats, "chat/completions", ANALYZE_MODEL)
    assert renders == 2  # one per preset, not one per SKU
    outputs = [o for j in skus for o in j.result["render"]["outputs"]]
    assert sum(o["reused_from"] is None for o in outputs) == 2 and sum(o["cost_usd"] > 0 for o in outputs) == 2
    assert all(o["cost_usd"] == 0 for o in outputs if o["reused_from"])
    assert all(Path(o["path"]).exists() for o in outputs)
    with session_scope(get_runtime().db_url) as s:
        by_stage = dict(
            s.execute(select(Charge.stage, func.count()).where(Charge.batch_id == batch).group_by(Charge.stage)).all()
        )
        render_cost = s.scalar(
            select(func.sum(Charge.cost_usd)).where(Charge.batch_id == batch, Charge.stage == "render")
        )
    # every call the fake served is one charge: renders and analyses alike
    assert by_stage["render"] == renders and by_stage.get("analyze", 0) == analyses
    assert render_cost == pytest.approx(0.045 + 0.101)
    assert spent == pytest.approx(sum(j.cost_usd for j in skus) + sum(h.cost_usd for h in _jobs(batch, "hit")[0]))


def test_render_plan_one_paid_call_per_aspect_ratio(fake, small_demo, hitline_env: Path) -> None:  # noqa: ANN001
    """The default presets: amazon_main, shopify and banner are rendered (3 calls a SKU, each reserved and
    charged once); the 512 px thumbnail is resized from amazon_main (same 1:1 ratio), cost 0."""
    from PIL import Image
    from sqlalchemy import func, select

    from db.models import Charge
    from hitline.jobs import control

    catalog, new = small_demo
    batch, _ = _run(fake, catalog, new, hitline_env / "out", "--presets", "amazon_main,shopify,thumbnail,banner")
    skus, spent = _jobs(batch)
    assert [j.state for j in skus] == ["done"] * 3, [(j.item_id, j.error) for j in skus]
    renders = _count(fake.stats(), "chat/completions", RENDER_MODEL)
    assert renders == 3 * 3  # not 4 a SKU
    with session_scope(get_runtime().db_url) as s:
        charges, render_cost = s.execute(
            select(func.count(), func.sum(Charge.cost_usd)).where(Charge.batch_id == batch, Charge.stage == "render")
        ).one()
        quality = control.summary(s, batch).quality
    assert charges == renders and render_cost == pytest.approx(3 * 3 * 0.101)
    for j in skus:
        outputs = {o["preset"]: o for o in j.result["render"]["outputs"]}
        assert list(outputs) == ["amazon_main", "shopify", "thumbnail", "banner"]
        thumb = outputs["thumbnail"]
        assert thumb["derived_from"] == "amazon_main" and thumb["cost_usd"] == 0
        assert Image.open(thumb["path"]).size == (512, 512)
        assert all(
            outputs[p]["derived_from"] is None and outputs[p]["cost_usd"] == pytest.approx(0.101)
            for p in ("amazon_main", "shopify", "banner")
        )
        assert j.result["render"]["plan"]["derived"] == {"thumbnail": "amazon_main"}
    plan = quality.render_plan
    assert plan.skus == 3 and plan.renders == 9 and plan.derived == 3
    assert plan.naive_usd == pytest.approx(3 * 0.348) and plan.cost_usd == pytest.approx(3 * 0.303)
    assert plan.saving_usd == pytest.approx(3 * 0.045) and plan.paid_usd == pytest.approx(render_cost)
    report = (hitline_env / "out" / batch / "report.html").read_text()
    assert "resized from amazon_main" in report and "saved $0.135 ($0.045 a SKU)" in report
