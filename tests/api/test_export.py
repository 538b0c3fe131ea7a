"""Export through the HTTP API (in-process): unzip each marketplace's zip and check names, formats, sizes,
the Shopify CSV's columns and URLs, provenance beside every image, and the one-sentence 4xx answers."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageCms


@pytest.fixture
def client_and_batch(hitline_env: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    from db import crud
    from db.session import init_db, session_scope
    from hitline.api.app import create_app
    from hitline.jobs import control
    from hitline.jobs.context import get_runtime, reset_runtime
    from hitline.jobs.options import BatchOptions
    from hitline.jobs.review import record_outputs

    monkeypatch.setenv("HITLINE_PUBLIC_BASE_URL", "https://cdn.example.com/shop/")
    reset_runtime()
    rt = get_runtime()
    init_db(rt.db_url)
    out = hitline_env / "out"
    flat = hitline_env / "new" / "flat.jpg"
    flat.parent.mkdir(parents=True)
    Image.new("RGB", (600, 800), (250, 250, 250)).save(flat)
    style = {
        "scene": "sunlit loft with a linen sofa",
        "lighting": "soft",
        "pose": "flat",
        "mood": "calm",
        "prompt": "p",
        "palette": ["#1b2a5c"],
    }
    with session_scope(rt.db_url) as s:
        crud.create_batch(
            s,
            "E",
            catalog_dir=str(hitline_env),
            new_dir=str(flat.parent),
            out_dir=str(out),
            options={"presets": ["amazon_main", "shopify", "thumbnail"], "review": "all"},
            budget_usd=None,
            notes=[],
        )
        for sku in ("TOP-1", "SKIRT-2"):
            outputs = []
            for preset, size in (("amazon_main", (1024, 1024)), ("shopify", (768, 1024)), ("thumbnail", (512, 512))):
                p = out / "E" / sku / f"{preset}.png"
                p.parent.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", size, (255, 255, 255)).save(p)
                outputs.append(
                    {
                        "preset": preset,
                        "path": str(p),
                        "width": size[0],
                        "height": size[1],
                        "cost_usd": 0.1,
                        "key": preset,
                        "quality": {"status": "passed"},
                    }
                )
            j = crud.add_job(
                s,
                "E",
                "sku",
                sku,
                0,
                {"new_id": sku, "image_path": str(flat), "category": "skirt", "style": "casual"},
                "done",
                "done",
            )
            s.flush()
            render = {
                "outputs": outputs,
                "provenance": {
                    "flatlay_sha256": "abc",
                    "references": [{"product_id": "H1", "sha256": "def"}],
                    "prompt": "p",
                    "model": "local/compositor",
                    "model_version": "hitline 0.1",
                },
            }
            j.result = {"analyze": {"style": style}, "render": render}
            record_outputs(s, "E", j.id, sku, render, BatchOptions(review="all"))
        tok = control.create_token(s, "exporter")
    client = TestClient(create_app())
    client.headers["Authorization"] = f"Bearer {tok}"
    return client, "E"


def _zip(resp) -> zipfile.ZipFile:  # noqa: ANN001
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/zip"
    return zipfile.ZipFile(io.BytesIO(resp.content))


def test_bad_requests_are_one_sentence_and_nothing_approved_is_refused(client_and_batch) -> None:  # noqa: ANN001
    c, b = client_and_batch
    r = c.get(f"/batches/{b}/export", params={"for": "ebay"})
    assert r.status_code == 422 and "unknown marketplace 'ebay'" in r.json()["error"]["message"]
    r = c.get(f"/batches/{b}/export", params={"for": "amazon"})
    assert r.status_code == 409 and "no approved output" in r.json()["error"]["message"]
    assert c.get("/batches/nope/export", params={"for": "amazon"}).status_code == 404


def test_amazon_shopify_and_folder_zips(client_and_batch) -> None:  # noqa: ANN001
    c, b = client_and_batch
    r = c.post(f"/batches/{b}/review", json={"decision": "approve", "review": "pending"})
    assert len(r.json()["changed"]) == 6
    c.post(
        f"/batches/{b}/review", json={"decision": "reject", "sku": "SKIRT-2", "preset": "shopify", "note": "creased"}
    )

    z = _zip(c.get(f"/batches/{b}/export", params={"for": "amazon"}))
    images = sorted(n for n in z.namelist() if n.endswith(".jpg"))
    # the rejected take is not exported, the 512 px thumbnail is under Amazon's 1000 px
    assert images == ["SKIRT-2.MAIN.jpg", "TOP-1.MAIN.jpg", "TOP-1.PT01.jpg"]
    for n in images:
        data = z.read(n)
        assert len(data) <= 10 * 1024 * 1024
        with Image.open(io.BytesIO(data)) as im:
            assert im.format == "JPEG" and im.mode == "RGB" and max(im.size) >= 1000
            profile = ImageCms.ImageCmsProfile(io.BytesIO(im.info["icc_profile"]))
            assert "sRGB" in ImageCms.getProfileDescription(profile)
    prov = json.loads(z.read("TOP-1.MAIN.provenance.json"))
    assert prov["flatlay_sha256"] == "abc" and prov["model"] == "local/compositor" and prov["references"]
    assert prov["decisions"][0]["decision"] == "approved" and prov["decisions"][0]["by"] == "exporter"
    assert prov["cost_usd"] == 0.1 and prov["prompt"] == "p"
    assert json.loads(z.read("export.json"))["skipped"][0]["preset"] == "thumbnail"

    z = _zip(c.get(f"/batches/{b}/export", params={"for": "shopify"}))
    rows = list(csv.DictReader(io.StringIO(z.read("products.csv").decode())))
    assert list(rows[0]) == ["Handle", "Image Src", "Image Position", "Image Alt Text"]
    assert [(r["Handle"], r["Image Position"]) for r in rows] == [
        ("skirt-2", "1"),
        ("skirt-2", "2"),
        ("top-1", "1"),
        ("top-1", "2"),
        ("top-1", "3"),
    ]
    assert rows[0]["Image Src"] == f"https://cdn.example.com/shop/{b}/images/SKIRT-2-1.png"
    assert all(r["Image Src"].split(f"/{b}/", 1)[1] in z.namelist() for r in rows)
    assert rows[0]["Image Alt Text"] == "Casual skirt, navy, on a white background"
    assert rows[1]["Image Alt Text"] == "Casual skirt, navy, sunlit loft with a linen sofa"

    z = _zip(c.get(f"/batches/{b}/export", params={"for": "folder"}))
    assert "TOP-1/thumbnail.png" in z.namelist() and "TOP-1/thumbnail.provenance.json" in z.namelist()
    with Image.open(io.BytesIO(z.read("TOP-1/thumbnail.png"))) as im:
        assert im.format == "PNG" and im.size == (512, 512)


def test_a_running_batch_is_not_exported(client_and_batch) -> None:  # noqa: ANN001
    from db import crud
    from db.session import session_scope
    from hitline.jobs.context import get_runtime

    c, b = client_and_batch
    c.post(f"/batches/{b}/review", json={"decision": "approve"})
    with session_scope(get_runtime().db_url) as s:
        crud.add_job(s, b, "sku", "LATE", 9, {}, "render", "running")
    r = c.get(f"/batches/{b}/export", params={"for": "folder"})
    assert r.status_code == 409 and "still running (1 jobs open" in r.json()["error"]["message"]


def test_the_cli_reviews_and_exports_the_same(client_and_batch, tmp_path: Path) -> None:  # noqa: ANN001
    from typer.testing import CliRunner

    from hitline.cli import app

    _, b = client_and_batch

    def run(*a, **k):  # noqa: ANN002, ANN003, ANN202
        return CliRunner().invoke(*a, env={"COLUMNS": "160"}, terminal_width=160, **k)

    r = run(app, ["review", b, "--approve", "--state", "pending", "--preset", "amazon_main", "--by", "cli-user"])
    assert r.exit_code == 0 and "2 outputs approved" in r.output, r.output
    r = run(app, ["review", b, "--redo", "--sku", "TOP-1"])
    assert r.exit_code != 0 and "a redo needs a note" in r.output
    r = run(app, ["outputs", b, "--state", "approved"])
    assert r.output.count("by cli-user") == 2, r.output
    dest = tmp_path / "amazon.zip"
    r = run(app, ["export", b, "--for", "amazon", "--out", str(dest)])
    assert r.exit_code == 0, r.output
    assert sorted(n for n in zipfile.ZipFile(dest).namelist() if n.endswith(".jpg")) == [
        "SKIRT-2.MAIN.jpg",
        "TOP-1.MAIN.jpg",
    ]
    r = run(app, ["export", b, "--for", "ebay"])
    assert r.exit_code != 0 and "unknown marketplace" in r.output
