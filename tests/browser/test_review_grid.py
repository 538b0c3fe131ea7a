"""The review grid in a real browser (Debian's chromium, playwright) against the real cluster: 50 outputs
reviewed with one key or one click each (approve, reject, redo with a note typed once), then the table
says who decided what, and the redone outputs come back from the worker as a new, pending take.
Saves docs/review.png for the README."""

from __future__ import annotations

import csv
import uuid
from pathlib import Path

import pytest

from test_dashboard import DOCS, browser  # noqa: F401 - the module's browser fixture

pytestmark = [pytest.mark.distributed, pytest.mark.slow, pytest.mark.timeout(600)]
N = 50


def seed_review_batch(c, n: int = N) -> str:  # noqa: ANN001
    """A finished batch in the cluster's job table whose n outputs wait for review (review: all): real
    flat-lays, retrieved hits and a style, so the worker can render a redo's new take."""
    from PIL import Image, ImageDraw

    from db import crud
    from db.session import session_scope
    from hitline.jobs.options import BatchOptions
    from hitline.jobs.review import record_outputs

    batch_id = "rv-" + uuid.uuid4().hex[:8]
    out = Path(c.env["HITLINE_API_OUT_DIR"])
    flats = [c.new / r["image_path"] for r in csv.DictReader((c.new / "new_products.csv").open())]
    hits = [
        {
            "product_id": r["product_id"],
            "score": 0.5,
            "image_path": str(c.catalog / r["image_path"]),
            "category": r["category"],
            "sales_count": int(r["sales_count"]),
            "description": r["description"],
            "found_by": ["dense"],
        }
        for r in list(csv.DictReader((c.catalog / "products.csv").open()))[:2]
    ]
    style = {
        "scene": "studio",
        "lighting": "soft",
        "pose": "flat",
        "mood": "calm",
        "prompt": "the garment on a light studio set",
    }
    options = {
        "provider": "openrouter",
        "presets": ["thumbnail"],
        "review": "all",
        "top_k": 2,
        "min_sales": 0,
        "models": {
            "embed_model": "nvidia/llama-nemotron-embed-vl-1b-v2",
            "analyze_model": "qwen/qwen3.5-397b-a17b",
            "render_model": "google/gemini-3.1-flash-image-preview",
        },
    }
    with session_scope(c.db_url) as s:
        crud.create_batch(
            s,
            batch_id,
            catalog_dir=str(c.catalog),
            new_dir=str(c.new),
            out_dir=str(out),
            options=options,
            budget_usd=None,
            notes=[],
        )
        for i in range(n):
            sku = f"SKU{i:03d}"
            path = out / batch_id / sku / "thumbnail-first.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            im = Image.new("RGB", (512, 512), (240, 238, 235))
            ImageDraw.Draw(im).rectangle([120, 90, 392, 430], fill=(40 + 4 * i, 90, 160))
            im.save(path)
            flat = flats[i % len(flats)]
            row = {
                "new_id": sku,
                "image_path": str(flat),
                "category": "dress",
                "style": "casual",
                "season": "summer",
                "prompt_hint": "",
            }
            j = crud.add_job(s, batch_id, "sku", sku, i, row, "done", "done")
            s.flush()
            render = {
                "outputs": [
                    {
                        "preset": "thumbnail",
                        "path": str(path),
                        "width": 512,
                        "height": 512,
                        "size": "512px",
                        "cost_usd": 0.045,
                        "key": f"k{i}",
                        "reused_from": None,
                        "derived_from": None,
                        "quality": {
                            "status": "needs_review" if i % 5 == 0 else "passed",
                            "checks": [],
                            "reasons": ["sleeve colour differs from the flat-lay"] if i % 5 == 0 else [],
                        },
                    }
                ],
                "provenance": {
                    "flatlay_sha256": "x",
                    "prompt": style["prompt"],
                    "model": options["models"]["render_model"],
                },
            }
            j.result = {"retrieve": {"hits": hits}, "analyze": {"style": style}, "render": render}
            record_outputs(s, batch_id, j.id, sku, render, BatchOptions.read(options))
    return batch_id


def test_fifty_outputs_reviewed_with_one_key_or_click_each(browser, api_cluster) -> None:  # noqa: ANN001, F811
    c = api_cluster
    batch_id = seed_review_batch(c)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(c.url + "/ui/login")
    page.fill("input[name=token]", c.token)
    page.click("button[type=submit]")
    page.wait_for_url("**/ui/batches")
    page.goto(f"{c.url}/ui/batches/{batch_id}/review")
    page.wait_for_selector(".card.cursor")
    assert page.locator(".card").count() == N
    assert "sleeve colour differs" in page.inner_text(".card >> nth=0")
    page.wait_for_load_state("networkidle")
    thumbs = page.evaluate(
        "() => [...document.querySelectorAll('.card img')].slice(0, 8).map(i => i.complete && i.naturalWidth > 0)"
    )
    assert all(thumbs), thumbs  # flat-lay and output side by side, both loaded
    page.screenshot(path=str(DOCS / "review.png"))

    page.fill("#note", "make the sleeves longer")
    page.keyboard.press("Escape")  # leave the note box: keys now go to the grid
    actions = 0
    plan = []
    for i in range(N):
        plan.append("d" if i in (3, 17) else "r" if i % 10 == 9 else "a")
    for i, key in enumerate(plan):
        if i % 7 == 6:  # every seventh by a click on the card's button instead of its key
            sign = {"a": "✓", "r": "✗", "d": "↻"}[key]
            page.locator(".card").nth(i).locator("button", has_text=sign).click()
        else:
            page.keyboard.press(key)
        actions += 1
        # the cursor moved on to the next card by itself
        page.wait_for_function(
            f"() => document.querySelectorAll('.card')[{min(i + 1, N - 1)}].classList.contains('cursor')"
            f" || {i} === {N - 1}"
        )
    assert actions == N
    page.wait_for_function(
        "() => document.querySelector('[data-count=pending]').textContent.startsWith('0 ')"
        " || document.querySelector('[data-count=pending]').textContent.startsWith('2 ')",
        timeout=30_000,
    )
    page.wait_for_load_state("networkidle")

    counts = c.get(f"/batches/{batch_id}/outputs").json()["counts"]
    assert counts["approved"] == plan.count("a") and counts["rejected"] == plan.count("r"), counts
    rows = c.get(f"/batches/{batch_id}/outputs", params={"review": "approved"}).json()["outputs"]
    assert all(r["reviewed_by"] == "api-tests" and r["decisions"][0]["by"] == "api-tests" for r in rows)

    # the two redos: rendered by the worker with the note in the prompt, charged, pending again as take 2
    import time

    deadline = time.monotonic() + 120
    while True:
        redone = [
            o
            for o in c.get(f"/batches/{batch_id}/outputs", params={"sku": None}).json()["outputs"]
            if o["sku"] in ("SKU003", "SKU017")
        ]
        if all(o["take"] == 2 and o["review"] == "pending" for o in redone):
            break
        assert time.monotonic() < deadline, (redone, c.log_tail())
        time.sleep(0.5)
    assert all(
        o["decisions"][0]["decision"] == "redo" and o["decisions"][0]["note"] == "make the sleeves longer"
        for o in redone
    )
    assert all(o["cost_usd"] > 0 for o in redone)
    assert c.get(f"/batches/{batch_id}").json()["spent_usd"] > 0  # the new takes were charged to the batch
    page.close()
