"""Catalog isolation on real services (milvus-lite server, PostgreSQL, Redis broker, the fake OpenRouter,
`hitline worker`): two batches over two catalogs submitted one second apart, and an update of the first
catalog while its batch runs. Every hit in every retrieved.json must come from its batch's own catalog
version (product, sales count and image as that version had them), and no SKU fails."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from testkit.services import BIN

N_SKUS = 4


def _copy_catalog(src: Path, dest: Path, *, prefix: str, sales_add: int, extra: int = 0) -> Path:
    """A catalog folder from src: ids prefixed, sales counts shifted (so a hit names its version), and
    `extra` new products at the end."""
    dest.mkdir(parents=True)
    shutil.copytree(src / "images", dest / "images")
    rows = list(csv.DictReader(open(src / "products.csv", encoding="utf-8")))
    out = [
        {**r, "product_id": prefix + r["product_id"], "sales_count": str(int(r["sales_count"]) + sales_add)}
        for r in rows
    ]
    out += [
        {
            **rows[i],
            "product_id": f"{prefix}NEW{i}",
            "sales_count": "99999",
            "description": "brand new " + rows[i]["description"],
        }
        for i in range(extra)
    ]
    with open(dest / "products.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(out)
    return dest


def _rows(folder: Path) -> set[tuple[str, int, str]]:
    return {
        (r["product_id"], int(r["sales_count"]), str((folder / r["image_path"]).resolve()))
        for r in csv.DictReader(open(folder / "products.csv", encoding="utf-8"))
    }


def _submit(line, catalog: Path, new: Path, out: Path) -> str:  # noqa: ANN001
    code = (
        f"from tasks.chains import submit\n"
        f"s = submit({str(catalog)!r}, {str(new)!r}, {str(out)!r}, presets=['thumbnail'])\n"
        f"print('BATCH', s.batch_id)\n"
    )
    res = subprocess.run([str(BIN / "python"), "-c", code], env=line.env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout.split("BATCH ")[1].split()[0]


def _hitline(line, *args: str) -> str:  # noqa: ANN001
    res = subprocess.run([str(BIN / "hitline"), *args], env=line.env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


def test_batches_retrieve_only_their_own_catalog_version(make_line, skus_factory, small_catalog) -> None:  # noqa: ANN001
    # slow renders: batch A is still running while its catalog is updated (~10 s for the CLI)
    # slow renders (4-5 s): batch A is still running when the update starts
    line = make_line(fake_args=("--latency", "image=4:5"), env={"HITLINE_OPENROUTER_TIMEOUT_S": "30"})
    root = line.root
    cat_a = _copy_catalog(small_catalog, root / "cat_a", prefix="A-", sales_add=0)
    cat_b = _copy_catalog(small_catalog, root / "cat_b", prefix="B-", sales_add=500)
    # the update: every sales count changed and two new best-sellers (a new vocabulary too)
    cat_a2 = _copy_catalog(small_catalog, root / "cat_a2", prefix="A-", sales_add=1000, extra=2)
    worker = line.workers.start("embed,index,retrieve,analyze,render", concurrency=2, name="all")
    new = skus_factory(N_SKUS)
    # two submissions one second apart, each in its own process (as two clients would)
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(_submit, line, cat_a, new, root / "out_a")
        time.sleep(1.0)
        second = pool.submit(_submit, line, cat_b, new, root / "out_b")
        batch_a = first.result()
    line.catalog = cat_a  # the fixture's default folder for later submissions
    # catalog A gets a new version while its batch runs
    line.wait_until(
        "batch A past its catalog",
        lambda: (
            line.sql(
                "SELECT count(*) FROM job WHERE batch_id = :b AND kind = 'sku' AND stage IN ('analyze', 'render', 'done')",
                b=batch_a,
            )[0][0]
            >= 1
        ),
        180,
    )
    name_a = line.sql(
        "SELECT c.name FROM catalog c JOIN catalog_version v ON v.catalog_id = c.id "
        "JOIN batch b ON b.catalog_version_id = v.id WHERE b.id = :b",
        b=batch_a,
    )[0][0]
    # the worker is held still while the update runs, so batch A is certainly mid-way through it
    os.killpg(worker.pid, signal.SIGSTOP)
    try:
        assert (
            line.sql("SELECT count(*) FROM job WHERE batch_id = :b AND state NOT IN ('done', 'failed')", b=batch_a)[0][
                0
            ]
            > 0
        ), f"batch A finished before the update (the test proves nothing): {line.states(batch_a)}"
        updated = json.loads(_hitline(line, "catalog", "update", name_a, "--from", str(cat_a2), "--json"))
    finally:
        os.killpg(worker.pid, signal.SIGCONT)
    assert updated["version"]["seq"] == 2 and updated["version"]["state"] == "ready"
    # every row changed (sales counts) + 2 new ones; their images were embedded before (the cache)
    assert updated["version"]["written"] == len(_rows(cat_a2))
    batch_a2 = _submit(line, cat_a2, skus_factory(1), root / "out_a2")
    batch_b = second.result()
    for b in (batch_a, batch_b, batch_a2):
        line.wait_terminal(b, 240)
    expected = {batch_a: _rows(cat_a), batch_b: _rows(cat_b), batch_a2: _rows(cat_a2)}
    for batch, out in ((batch_a, root / "out_a"), (batch_b, root / "out_b"), (batch_a2, root / "out_a2")):
        files = list((out / batch).glob("*/retrieved.json"))
        assert len(files) == (1 if batch == batch_a2 else N_SKUS)
        for f in files:
            for h in json.loads(f.read_text())["hits"]:
                got = (h["product_id"], h["sales_count"], str(Path(h["image_path"]).resolve()))
                assert got in expected[batch], f"{batch} retrieved {got}, not from its own catalog version"
        assert line.states(batch) == {("done", "done"): 1 if batch == batch_a2 else N_SKUS}, line.sql(
            "SELECT item_id, stage, error FROM job WHERE batch_id = :b AND state = 'failed'", b=batch
        )
    assert batch_a2 and any(
        int(h["sales_count"]) >= 1000
        for f in (root / "out_a2" / batch_a2).glob("*/retrieved.json")
        for h in json.loads(f.read_text())["hits"]
    )
    # version 1 of A is dropped once no batch uses it (the next catalog operation collects it)
    _hitline(line, "catalog", "update", name_a, "--from", str(cat_a2))
    states = dict(
        line.sql(
            "SELECT v.seq, v.state FROM catalog_version v JOIN catalog c ON c.id = v.catalog_id WHERE c.name = :n",
            n=name_a,
        )
    )
    assert states == {1: "dropped", 2: "ready"}, states
