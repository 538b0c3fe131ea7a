"""The quality gate inside the render stage, end to end through the CLI and a real (embedded) worker:
input checks recorded, a verdict per output, one re-render with the failed checks in the prompt
(paid and recorded), `needs_review` with reasons, badges and counts in the report."""

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
from hitline.jobs.quality import summarise

pytestmark = pytest.mark.slow
RENDER_MODEL = "google/gemini-3.1-flash-image-preview"


@pytest.fixture
def one_sku(demo_data: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    catalog, new = demo_data
    new2 = tmp_path / "new1"
    shutil.copytree(new, new2)
    lines = (new2 / "new_products.csv").read_text().splitlines()
    (new2 / "new_products.csv").write_text("\n".join(lines[:2]) + "\n")
    return catalog, new2


def _run(catalog: Path, new: Path, out: Path, *extra: str) -> str:
    res = CliRunner().invoke(app, ["run", "--catalog", str(catalog), "--new", str(new), "--out", str(out), *extra])
    assert res.exit_code == 0, res.output
    return re.search(r"batch (\S+):", res.output).group(1)


def _sku(batch: str):  # noqa: ANN202
    with session_scope(get_runtime().db_url) as s:
        return crud.jobs(s, batch, "sku")[0]


def test_local_gate_checks_inputs_and_every_output(one_sku, hitline_env: Path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("HITLINE_QUALITY_GATE", "1")
    reset_runtime()
    catalog, new = one_sku
    batch = _run(catalog, new, hitline_env / "out", "--presets", "amazon_main,banner")
    job = _sku(batch)
    assert job.state == "done", job.error
    render = job.result["render"]
    assert set(render["inputs"]["checks"]) == {"amazon_main", "banner"}
    for o in render["outputs"]:
        q = o["quality"]
        assert q["status"] in ("passed", "needs_review") and q["judge"] == "local/quality-gate-v1"
        names = {c["name"] for c in q["checks"]}
        assert {"size", "silhouette", "colour"} <= names
    amazon = next(o for o in render["outputs"] if o["preset"] == "amazon_main")["quality"]["checks"]
    # the local compositor meets Amazon's rules by construction
    assert all(c["passed"] for c in amazon if c["name"] in ("size", "pure_white", "fill", "no_text")), amazon
    report = (hitline_env / "out" / batch / "report.html").read_text()
    assert "Quality gate:" in report and "badge q-" in report


@pytest.fixture
def fake(hitline_env: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    with running_fake(FakeConfig(max_image_side=512)) as srv:
        monkeypatch.setenv("HITLINE_OPENROUTER_API_KEY", "sk-test")
        monkeypatch.setenv("HITLINE_QUALITY_GATE", "1")
        reset_runtime()
        yield srv


def _renders(fake) -> int:  # noqa: ANN001
    return fake.stats()["requests"].get("chat/completions", {}).get(RENDER_MODEL, 0)


def _api(fake, catalog: Path, new: Path, out: Path, *extra: str) -> str:  # noqa: ANN001
    return _run(
        catalog,
        new,
        out,
        "--provider",
        "openrouter",
        "--openrouter-base-url",
        fake.base_url,
        "--presets",
        "thumbnail",
        *extra,
    )


def test_failed_output_is_rerendered_once_with_the_reasons(fake, one_sku, hitline_env: Path) -> None:  # noqa: ANN001
    fake.configure(judge_fail=["colour_match"], judge_fail_count=1)  # the first verdict fails, the next pass
    batch = _api(fake, *one_sku, hitline_env / "out")
    job = _sku(batch)
    assert job.state == "done", job.error
    (o,) = job.result["render"]["outputs"]
    assert o["quality"]["status"] == "passed_after_rerender", [c for c in o["quality"]["checks"] if not c["passed"]]
    assert _renders(fake) == 2  # the render and one re-render
    rerender_prompt = [r for r in fake.stats()["recent"] if r["model"] == RENDER_MODEL][-1]["text"]
    assert "Fix these problems" in rerender_prompt and "colour differs" in rerender_prompt
    assert o["cost_usd"] == pytest.approx(2 * 0.045) and o["quality"]["rerender_cost_usd"] == pytest.approx(0.045)
    assert job.cost_usd >= 2 * 0.045  # both renders (and the judge's tokens) are on the job


def test_output_failing_twice_needs_review_and_budget_is_respected(fake, one_sku, hitline_env: Path) -> None:  # noqa: ANN001
    fake.configure(judge_fail=["text_or_logo"])  # every verdict fails
    batch = _api(fake, *one_sku, hitline_env / "out")
    (o,) = _sku(batch).result["render"]["outputs"]
    assert o["quality"]["status"] == "needs_review" and _renders(fake) == 2  # re-rendered once, not more
    assert any("text" in r for r in o["quality"]["reasons"])
    report = (hitline_env / "out" / batch / "report.html").read_text()
    assert "needs review" in report and "text, logo or watermark" in report
    assert summarise([_sku(batch).result["render"]["outputs"]])["needs_review"] == 1

    fake.reset()
    batch2 = _api(fake, *one_sku, hitline_env / "out2", "--budget", "0.05")  # room for one render, not two
    (o2,) = _sku(batch2).result["render"]["outputs"]
    assert o2["quality"]["status"] == "needs_review" and "budget" in o2["quality"]["rerender"]
    assert _renders(fake) == 1


def _count_local_renders(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The presets the local compositor is asked for (the embedded worker runs in this process)."""
    from hitline.providers.local.render import LocalRenderer

    calls: list[str] = []
    real = LocalRenderer.render

    def counted(self, flatlay, references, style, product, preset):  # noqa: ANN001, ANN202
        calls.append(f"{preset.name}@{preset.size}")
        return real(self, flatlay, references, style, product, preset)

    monkeypatch.setattr(LocalRenderer, "render", counted)
    return calls


def _local_gated_run(one_sku, out: Path, monkeypatch: pytest.MonkeyPatch, presets: str):  # noqa: ANN001, ANN202
    """One demo SKU through the line with the gate on: its job (done) and the compositor's calls."""
    monkeypatch.setenv("HITLINE_QUALITY_GATE", "1")
    reset_runtime()
    calls = _count_local_renders(monkeypatch)
    batch = _run(*one_sku, out, "--presets", presets)
    job = _sku(batch)
    assert job.state == "done", job.error
    return batch, job, calls


def test_local_render_plan_after_the_input_checks(one_sku, hitline_env: Path, monkeypatch) -> None:  # noqa: ANN001
    """The demo flat-lay is too small for amazon_main at 2K: the input checks downsize it to 1K first, and the
    plan then resizes the 512 px thumbnail from that 1K render. 3 renders for 4 outputs, every output gated
    under its own preset's rules; the status summary counts the input checks and the gate."""
    from PIL import Image

    batch, job, calls = _local_gated_run(
        one_sku, hitline_env / "out", monkeypatch, "amazon_main,shopify,thumbnail,banner"
    )
    render = job.result["render"]
    assert render["inputs"]["downsized"] == {"amazon_main": "1K"}
    assert sorted(calls) == ["amazon_main@1K", "banner@2K", "shopify@2K"]
    thumb = next(o for o in render["outputs"] if o["preset"] == "thumbnail")
    assert thumb["derived_from"] == "amazon_main" and Image.open(thumb["path"]).size == (512, 512)
    assert thumb["quality"]["status"] == "passed", thumb["quality"]
    assert {c["name"] for c in thumb["quality"]["checks"]} >= {"size", "fill", "colour"}  # thumbnail's own rules
    res = CliRunner().invoke(app, ["status", batch], env={"COLUMNS": "80"}, terminal_width=80)
    assert res.exit_code == 0 and max(map(len, res.output.splitlines())) <= 80, res.output
    flat = " ".join(res.output.split())
    assert "input checks: 1 SKU low_res (amazon_main downsized to 1K)" in flat, res.output
    assert "render plan: 3 renders for 4 outputs (1 resized)" in flat and "quality gate (outputs):" in flat


def test_a_resized_output_that_fails_its_gate_is_rendered_on_its_own(
    one_sku, hitline_env: Path, monkeypatch, tmp_path: Path
) -> None:  # noqa: ANN001
    """A thumbnail whose rule the resized main image does not meet (the product spanning 95% of the frame):
    it is rendered on its own at 512 px, even by the local compositor (its own composition differs from a
    resize), and the record says it was resized first."""
    (tmp_path / "presets.toml").write_text(
        '[amazon_main]\naspect_ratio = "1:1"\nsize = "2K"\nbackground = "white"\n'
        "[amazon_main.rules]\nmin_side = 1000\npure_white = true\nmin_fill = 0.85\n"
        '[thumbnail]\naspect_ratio = "1:1"\nsize = "512px"\n[thumbnail.rules]\nmin_fill = 0.95\n'
    )
    monkeypatch.setenv("HITLINE_PRESETS_FILE", str(tmp_path / "presets.toml"))
    _, job, calls = _local_gated_run(one_sku, hitline_env / "out", monkeypatch, "amazon_main,thumbnail")
    thumb = next(o for o in job.result["render"]["outputs"] if o["preset"] == "thumbnail")
    q = thumb["quality"]
    assert sorted(calls) == ["amazon_main@1K", "thumbnail@512px"], (calls, q)
    assert q["first_derived_from"] == "amazon_main" and "thumbnail-" in q["first_path"]
    assert any(c["name"] == "fill" and not c["passed"] for c in q["first_checks"]), q["first_checks"]
    assert thumb["cost_usd"] == 0  # the local compositor is free; a paid re-render is reserved and charged


def test_a_judge_without_a_verdict_costs_no_render(fake, one_sku, hitline_env: Path, monkeypatch) -> None:  # noqa: ANN001
    """The judge answers JSON of the wrong shape (an outage, a model change): it is asked again as a transient
    error (the task's retry budget, here 2 runs), then the output is kept for review - not re-rendered."""
    monkeypatch.setenv("HITLINE_PROVIDER_ATTEMPTS", "2")
    reset_runtime()
    fake.configure(judge_wrong_shape=-1)
    batch = _api(fake, *one_sku, hitline_env / "out")
    job = _sku(batch)
    assert job.state == "done", job.error
    (o,) = job.result["render"]["outputs"]
    assert o["quality"]["status"] == "needs_review" and o["quality"]["reasons"] == ["judge gave no verdict"]
    assert _renders(fake) == 1  # the render itself; the second run of the stage reused it
    judge_asks = fake.stats()["faults"].get("judge_wrong_shape", 0)
    assert judge_asks == 2 * 3, fake.stats()["faults"]  # 2 runs x (1 ask + 2 re-asks for JSON)


PRO_MODEL = "google/gemini-3-pro-image-preview"


def test_escalate_pro_renders_a_twice_failed_output_once_more_and_charges_it(
    fake, one_sku, hitline_env: Path, monkeypatch
) -> None:  # noqa: ANN001
    """--escalate pro: the first verdict and the re-render's fail, Nano Banana Pro renders it once (the
    tutorial's refinements in the prompt), its verdict passes; reserved, charged at its price, in the report."""
    monkeypatch.setenv("HITLINE_ESCALATE", "none")  # the CLI flag sets it: restored after the test
    fake.configure(judge_fail=["pattern_match"], judge_fail_count=2)
    batch = _api(fake, *one_sku, hitline_env / "out", "--escalate", "pro")
    job = _sku(batch)
    assert job.state == "done", job.error
    (o,) = job.result["render"]["outputs"]
    esc = o["quality"]["escalated"]
    assert esc["model"] == PRO_MODEL and esc["passed"] and o["quality"]["status"] == "passed_after_rerender"
    pro = fake.stats()["requests"]["chat/completions"].get(PRO_MODEL, 0)
    assert (_renders(fake), pro) == (2, 1)  # render, re-render, one escalation
    assert esc["cost_usd"] == pytest.approx(0.134) and o["path"] == esc["path"]  # Pro at 1K, resized to 512
    prompt = [r for r in fake.stats()["recent"] if r["model"] == PRO_MODEL][-1]["text"]
    assert "no labels" in prompt and "fits the body naturally" in prompt
    assert job.cost_usd >= 2 * 0.045 + 0.134
    report = (hitline_env / "out" / batch / "report.html").read_text()
    assert f"escalated to {PRO_MODEL} ($0.134): passed" in report

    fake.reset()
    fake.configure(judge_fail=["pattern_match"], judge_fail_count=2)
    monkeypatch.delenv("HITLINE_ESCALATE")
    reset_runtime()
    batch2 = _api(fake, *one_sku, hitline_env / "out2")  # default: none
    assert "escalated" not in _sku(batch2).result["render"]["outputs"][0]["quality"]
    assert fake.stats()["requests"]["chat/completions"].get(PRO_MODEL, 0) == 0
