"""Staged generation (`hitline run --mode staged`): a scene plate per (references, ratio group) made once
per batch and reused by every SKU with the same references, then the product placed into it (an image
edit call on the fake OpenRouter: the plate + the flat-lay)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from PIL import Image, ImageOps
from typer.testing import CliRunner

from db import crud
from db.session import session_scope
from hitline.cli import app
from hitline.domain.pricing import PriceTable
from hitline.fake.server import FakeConfig, running_fake
from hitline.jobs.context import get_runtime, reset_runtime

pytestmark = pytest.mark.slow
RENDER_MODEL = "google/gemini-3.1-flash-image-preview"


@pytest.fixture
def twins(demo_data: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    """Two SKUs (different flat-lays) that retrieve the same references: a catalog of t-shirts only, top_k
    covering all of them."""
    catalog, new = demo_data
    cat2, new2 = tmp_path / "cat", tmp_path / "new"
    shutil.copytree(catalog, cat2)
    shutil.copytree(new, new2)
    rows = (cat2 / "products.csv").read_text().splitlines()
    (cat2 / "products.csv").write_text("\n".join([rows[0], *[r for r in rows[1:] if ",tshirt," in r]]) + "\n")
    lines = (new2 / "new_products.csv").read_text().splitlines()
    first = lines[1]
    src = new2 / first.split(",")[1]
    ImageOps.mirror(Image.open(src).convert("RGB")).save(src.with_name("TWIN.jpg"), quality=92)
    twin = first.replace("NEW001", "TWIN001", 1).replace(src.name, "TWIN.jpg", 1)
    (new2 / "new_products.csv").write_text("\n".join([lines[0], first, twin]) + "\n")
    return cat2, new2


@pytest.fixture
def fake(hitline_env: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    with running_fake(FakeConfig(max_image_side=512)) as srv:
        monkeypatch.setenv("HITLINE_OPENROUTER_API_KEY", "sk-test")
        monkeypatch.setenv("HITLINE_QUALITY_GATE", "0")
        monkeypatch.setenv("HITLINE_MODE", "direct")  # the CLI flag sets it: restored after the test
        reset_runtime()
        yield srv


def _run(fake, catalog: Path, new: Path, out: Path, *extra: str) -> str:  # noqa: ANN001
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
            "thumbnail,live_stream",
            "--top-k",
            "10",
            "--min-sales",
            "0",
            *extra,
        ],
    )
    assert res.exit_code == 0, res.output
    return re.search(r"batch (\S+):", res.output).group(1)


def _image_calls(fake) -> list[str]:  # noqa: ANN001
    return [r["text"] for r in fake.stats()["recent"] if r["model"] == RENDER_MODEL]


def test_staged_makes_one_plate_per_ratio_group_and_every_sku_reuses_it(fake, twins, hitline_env: Path) -> None:  # noqa: ANN001
    batch = _run(fake, *twins, hitline_env / "out", "--mode", "staged")
    with session_scope(get_runtime().db_url) as s:
        jobs = crud.jobs(s, batch, "sku")
    assert [j.state for j in jobs] == ["done", "done"], [j.error for j in jobs]
    refs = [sorted(h["product_id"] for h in j.result["retrieve"]["hits"]) for j in jobs]
    assert refs[0] == refs[1]  # same references: the case staged mode shares plates in
    calls = _image_calls(fake)
    plates = [t for t in calls if "Background scene plate" in t]
    edits = [t for t in calls if "Edit the first image (a scene plate)" in t]
    assert len(plates) == 2  # one per ratio group (1:1 thumbnail, 9:16 live_stream), not one per SKU
    assert len(edits) == 4  # each SKU's product placed into each plate
    assert len(calls) == 6
    for t in plates + edits:
        assert "fits the body naturally" in t and "No labels" in t and "No extra elements" in t
    outputs = [o for j in jobs for o in j.result["render"]["outputs"]]
    keys = {o["preset"]: set() for o in outputs}
    for o in outputs:
        keys[o["preset"]].add(o["plate"])
    assert all(len(k) == 1 for k in keys.values()) and len(set.union(*keys.values())) == 2
    plate_files = sorted((hitline_env / "out" / batch / "plates").glob("*.png"))
    assert len(plate_files) == 2
    # each plate charged once: per ratio group 1 plate + 2 placements, at 512px (thumbnail) and 1K (live_stream)
    prices = PriceTable.load()
    expected = 3 * prices.image_cost(RENDER_MODEL, "512px") + 3 * prices.image_cost(RENDER_MODEL, "1K")
    assert sum(o["cost_usd"] for o in outputs) == pytest.approx(expected)
    with session_scope(get_runtime().db_url) as s:
        assert sum(j.cost_usd for j in crud.jobs(s, batch, "sku")) >= expected  # + the embed/analyze tokens
    report = (hitline_env / "out" / batch / "report.html").read_text()
    assert f"scene plate {next(iter(keys['thumbnail']))[:12]}" in report


def test_direct_stays_the_default() -> None:
    from hitline.config import Settings
    from hitline.jobs.submit import batch_options

    assert batch_options(Settings(), presets=["thumbnail"])["mode"] == "direct"


def test_staged_on_the_local_provider_composites_onto_one_plate(twins, hitline_env: Path, monkeypatch) -> None:  # noqa: ANN001
    """Local provider: the plate is the compositor's scene without the product, made once for both SKUs;
    each product composited onto it."""
    from hitline.providers.local.render import LocalRenderer

    monkeypatch.setenv("HITLINE_MODE", "direct")
    reset_runtime()
    calls: list[str] = []
    real_plate, real_place = LocalRenderer.render_plate, LocalRenderer.place
    monkeypatch.setattr(LocalRenderer, "render_plate", lambda self, *a: calls.append("plate") or real_plate(self, *a))
    monkeypatch.setattr(LocalRenderer, "place", lambda self, *a: calls.append("place") or real_place(self, *a))
    catalog, new = twins
    res = CliRunner().invoke(
        app,
        [
            "run",
            "--catalog",
            str(catalog),
            "--new",
            str(new),
            "--out",
            str(hitline_env / "out"),
            "--presets",
            "thumbnail",
            "--top-k",
            "10",
            "--min-sales",
            "0",
            "--mode",
            "staged",
        ],
    )
    assert res.exit_code == 0, res.output
    assert sorted(calls) == ["place", "place", "plate"]
