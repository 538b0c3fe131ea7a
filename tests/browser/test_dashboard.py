"""The dashboard in a real browser (Debian's chromium driven by playwright) against the real server:
log in, watch a batch, retry a failed reason group, open a SKU's gallery. Saves docs/dashboard.png and
docs/dashboard-sku.png for the README."""

from __future__ import annotations

import shutil
import os
import tempfile
from pathlib import Path

import pytest

# the first test also pays for starting the cluster (a minute on a loaded 2-core machine)
pytestmark = [pytest.mark.distributed, pytest.mark.slow, pytest.mark.timeout(600)]

# the README's screenshots: `HITLINE_SCREENSHOT_DIR=docs pytest tests/browser` refreshes them; a plain run
# (CI) writes them to a temporary folder and leaves the checkout clean
DOCS = Path(os.environ.get("HITLINE_SCREENSHOT_DIR") or tempfile.mkdtemp(prefix="hitline-screens-"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():  # noqa: ANN201
    playwright = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    exe = shutil.which("chromium")
    if exe is None:
        pytest.skip("chromium not installed (apt-get install -y chromium; .ci/run does it)")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        yield b
        b.close()


def test_login_watch_retry_a_reason_group_and_open_a_gallery(
    browser,
    api_cluster,
    fake_fault,  # noqa: ANN001
    tmp_path: Path,
) -> None:
    from hitline_cluster import subset

    c = api_cluster
    new = subset(c.new, tmp_path / "new", 4, corrupt=3)
    fake_fault(fail={"image": "402"})
    batch_id = c.post("/batches", json={"catalog": str(c.catalog), "new": str(new)}).json()["batch_id"]

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(c.url + "/ui/batches")
    assert page.url.endswith("/ui/login")
    page.fill("input[name=token]", "hl_not-a-token")
    page.click("button[type=submit]")
    assert "not valid" in page.inner_text("p.error")
    page.fill("input[name=token]", c.token)
    page.click("button[type=submit]")
    page.wait_for_url("**/ui/batches")
    cookie = next(k for k in page.context.cookies() if k["name"] == "hitline_token")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert page.locator(f'[data-bar="{batch_id}"]').count() == 1
    assert page.get_attribute("nav a[target=_blank]", "href") == c.flower_url

    page.click(f"text={batch_id}")
    page.wait_for_url(f"**/ui/batches/{batch_id}")
    # the page follows the batch live: wait until every SKU has failed (3 renders refused, 1 corrupt image)
    page.wait_for_function(
        f"""() => document.querySelector('[data-counts="{batch_id}"]').textContent
                               .startsWith("0 done, 4 failed, 0 to go")""",
        timeout=120_000,
    )
    group = page.locator("tr[data-reason-group]", has_text="402")
    group.wait_for()
    assert "3 SKUs" in group.inner_text() and "render" in group.inner_text()
    not_retryable = page.locator("tr[data-reason-group]", has_text="fix the CSV row")
    assert not_retryable.count() == 1

    fake_fault(fail={})
    group.locator("button", has_text="retry these").click()
    page.wait_for_selector("#toast.show", timeout=10_000)
    assert "re-enqueued 3 failed jobs" in page.inner_text("#toast")
    page.wait_for_function(
        f"""() => document.querySelector('[data-counts="{batch_id}"]').textContent
                               .startsWith("3 done, 1 failed, 0 to go")""",
        timeout=120_000,
    )
    page.reload()  # the SKU table is server-rendered: show the finished states in the screenshot
    page.wait_for_selector("tr[data-reason-group]")
    page.screenshot(path=str(DOCS / "dashboard.png"), full_page=True)

    done = page.locator("table.jobs tr", has_text="done").first
    done.locator("a").click()
    page.wait_for_selector(".gallery img")
    page.wait_for_load_state("networkidle")
    images = page.evaluate("""() => [...document.querySelectorAll('.gallery img')]
                                     .map(i => [i.alt, i.complete && i.naturalWidth > 0])""")
    alts = [a for a, _ in images]
    assert all(ok for _, ok in images), images
    assert {"contact sheet", "flat-lay", "thumbnail"} <= set(alts) and sum(a.startswith("hit ") for a in alts) == 3
    assert "$" in page.inner_text("main") and "Style" in page.inner_text("main")
    page.screenshot(path=str(DOCS / "dashboard-sku.png"), full_page=True)
    page.close()
