"""Words on the picture end to end through the CLI and an embedded worker: one output per (preset,
locale), read back by OCR; a text-free preset once with no text; an unreadable script sent to review;
bad copy refused for its (SKU, locale) alone; in text mode `model` the fake image model writes the words
and a misread is re-rendered once with the misread quoted, then goes to review."""

from __future__ import annotations

import csv
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
RENDER_MODEL = "google/gemini-3.1-flash-image-preview"


def _one_sku(demo_data: tuple[Path, Path], dest: Path, **cells: str) -> tuple[Path, Path]:
    catalog, new = demo_data
    shutil.copytree(new, dest)
    with open(new / "new_products.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    row = {**rows[0], **cells}
    with open(dest / "new_products.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(row))
        w.writeheader()
        w.writerow(row)
    return catalog, dest


def _run(catalog: Path, new: Path, out: Path, *extra: str) -> str:
    res = CliRunner().invoke(app, ["run", "--catalog", str(catalog), "--new", str(new), "--out", str(out), *extra])
    assert res.exit_code == 0, res.output
    return re.search(r"batch (\S+):", res.output).group(1)


def _render(batch: str) -> dict:
    with session_scope(get_runtime().db_url) as s:
        job = crud.jobs(s, batch, "sku")[0]
        assert job.state == "done", job.error
        return job.result["render"]


@pytest.mark.timeout(900)  # rapidocr on a shared 2-core machine: seconds per slot under load
def test_overlay_words_in_each_locale_read_back_and_the_main_image_stays_text_free(
    demo_data, hitline_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # noqa: ANN001
    monkeypatch.setenv("HITLINE_QUALITY_GATE", "1")
    reset_runtime()
    catalog, new = _one_sku(demo_data, tmp_path / "new", headline_ko="여름 티셔츠", price_ko="29000", currency_ko="KRW")
    batch = _run(
        catalog, new, hitline_env / "out", "--presets", "amazon_main,banner", "--locales", "en-US,ko-KR,fr-FR"
    )  # ja-JP/zh read back: tests/domain/test_textcheck.py
    render = _render(batch)
    by = {(o["preset"], o.get("locale")): o for o in render["outputs"]}
    # amazon_main: one output for every locale, no words, its no-text rule passed
    assert ("amazon_main", None) in by and not any(p == "amazon_main" and loc for p, loc in by)
    no_text = [c for c in by["amazon_main", None]["quality"]["checks"] if c["name"] == "no_text"]
    assert no_text and no_text[0]["passed"]
    for loc, headline, price in [("en-US", "Crisp white tee", "$19.99")]:
        o = by["banner", loc]
        assert o["text"]["texts"] == {"headline": headline, "price": price}
        assert o["text"]["status"] == "verified", o["text"]["readings"]
        assert all(r["exact"] and r["cer"] == 0.0 for r in o["text"]["readings"])
        assert Path(o["path"]).exists() and o["path"] != o["text_base"]
    ko = by["banner", "ko-KR"]  # Hangul: the bundled OCR cannot read it -> review, never a silent pass
    assert ko["text"]["status"] == "unverified" and ko["quality"]["status"] == "needs_review"
    assert any("text unverified" in r for r in ko["quality"]["reasons"])
    # fr-FR: no headline_fr and the batch refuses machine translation: that (SKU, locale) alone fails
    assert ("banner", "fr-FR") not in by
    (refused,) = render["text"]["failures"]
    assert refused["locale"] == "fr-FR" and "no headline_fr" in refused["reason"]
    assert render["text"]["saving"]["locales"] == 5 and render["text"]["saving"]["saving_usd"] > 0
    report = (hitline_env / "out" / batch / "report.html").read_text()
    assert "banner in 2 locale(s)" in report and "class='locales'" in report and "no headline_fr" in report


@pytest.fixture
def fake(hitline_env: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    with running_fake(FakeConfig(max_image_side=None)) as srv:
        monkeypatch.setenv("HITLINE_OPENROUTER_API_KEY", "sk-test")
        monkeypatch.setenv("HITLINE_QUALITY_GATE", "1")
        reset_runtime()
        yield srv


def _renders(fake) -> list[str]:  # noqa: ANN001
    return [r["text"] for r in fake.stats()["recent"] if r["model"] == RENDER_MODEL and r.get("status") == 200]


def _model_run(fake, demo_data, tmp_path: Path, out: Path, *extra: str) -> dict:  # noqa: ANN001
    catalog, new = _one_sku(demo_data, tmp_path / out.name)
    batch = _run(
        catalog,
        new,
        out,
        "--provider",
        "openrouter",
        "--openrouter-base-url",
        fake.base_url,
        "--presets",
        "banner",
        "--locales",
        "de-DE",
        "--text-mode",
        "model",
        *extra,
    )
    return _render(batch)


@pytest.mark.timeout(900)
def test_model_mode_misread_is_rerendered_once_with_the_misread_quoted(
    fake, demo_data, hitline_env: Path, tmp_path: Path
) -> None:  # noqa: ANN001
    fake.configure(misspell_text="first")  # the first render misspells, the re-render is right
    render = _model_run(fake, demo_data, tmp_path, hitline_env / "out")
    (o,) = render["outputs"]
    assert o["locale"] == "de-DE" and o["text"]["mode"] == "model"
    assert o["text"]["status"] == "verified" and o["quality"]["status"] == "passed_after_rerender"
    assert o["text"]["first_readings"][0]["exact"] is False
    prompts = _renders(fake)
    assert len(prompts) == 2  # the render and one re-render, not more
    assert "«Klassisches weißes T-Shirt»" in prompts[0]
    assert "previous attempt misspelt" in prompts[1] and "but read «" in prompts[1]
    assert o["cost_usd"] == pytest.approx(2 * 0.101)


@pytest.mark.timeout(900)
def test_model_mode_misread_twice_goes_to_review_with_the_diff(
    fake, demo_data, hitline_env: Path, tmp_path: Path
) -> None:  # noqa: ANN001
    fake.configure(misspell_text="always")
    render = _model_run(fake, demo_data, tmp_path, hitline_env / "out2")
    (o,) = render["outputs"]
    assert o["text"]["status"] == "misread" and o["quality"]["status"] == "needs_review"
    assert any("misread: asked 'Klassisches weißes T-Shirt'" in r for r in o["quality"]["reasons"])
    assert len(_renders(fake)) == 2
