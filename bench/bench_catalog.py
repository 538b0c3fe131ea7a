"""Catalog versions in Milvus: one collection with `catalog` as partition key and rows live in
[valid_from, valid_to) (as shipped, hitline/store/index.py) against one collection per catalog version.

For each design, in its own process (so peak RSS is its own; Milvus Lite runs in-process): build two
catalogs of N products (random 272-d vectors, hashed-term sparse vectors), then update catalog A with 1%
of its products changed, then search catalog A's new version with the category + sales filter.
Reported: build time of a catalog, update time (partition key: write 1% + close 1% + flush; per-version
collection: a whole new collection), search p50/p95, peak RSS. Ratios against the partition-key design,
measured in the same run. Usage: bench_catalog.py [--rows N] [--queries Q] [--json PATH]

`--startup 1000,100000`: issue 22 item 3 instead, a batch on an already indexed catalog, timed from submit
to its first SKU past retrieve, per catalog size, with and without the unchanged-folder shortcut
(hitline.jobs.catalogs.unchanged_version); see run_startup.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DIM = 272
CATS = ["dress", "coat", "skirt", "tshirt", "jacket", "trousers", "knit", "shirt"]


def _products(n: int, prefix: str, rng, sales_shift: int = 0):  # noqa: ANN001, ANN202
    from hitline.domain.models import HitProduct

    return [
        HitProduct(
            f"{prefix}{i:06d}",
            Path(f"/img/{prefix}{i}.jpg"),
            CATS[i % len(CATS)],
            "red",
            "boho",
            "summer",
            int(rng.integers(0, 5000)) + sales_shift,
            f"{CATS[i % len(CATS)]} number {i % 97}",
            10.0,
        )
        for i in range(n)
    ]


def _write(ix, products, rng, scope, vocab):  # noqa: ANN001, ANN202
    from hitline.line import index_hits

    for i in range(0, len(products), 2000):
        chunk = products[i : i + 2000]
        index_hits(ix, vocab, chunk, list(rng.random((len(chunk), DIM), dtype="float32")), scope)


def run_design(design: str, n: int, queries: int) -> dict:
    import numpy as np

    from hitline.domain.retrieval import Scope
    from hitline.domain.sparse import TextVocabulary
    from hitline.store.index import HitIndex, client_for

    rng = np.random.default_rng(7)
    d = tempfile.mkdtemp(prefix="bench_catalog_")
    client = client_for(d + "/m.db")
    a, b = _products(n, "A", rng), _products(n, "B", rng)
    vocab = TextVocabulary.fit([p.text() for p in a])
    out: dict = {"design": design, "rows": n}
    changed = [p.__class__(**{**vars(p), "sales_count": p.sales_count + 1}) for p in a[: max(1, n // 100)]]
    if design == "partition_key":
        ix = HitIndex(d + "/m.db", "hits", DIM, "bench/random", client=client)
        ix.ensure()
        t = time.perf_counter()
        _write(ix, a, rng, Scope("A", 1), vocab)
        ix.flush()
        out["build_s"] = time.perf_counter() - t
        _write(ix, b, rng, Scope("B", 1), vocab)
        ix.flush()
        t = time.perf_counter()
        _write(ix, changed, rng, Scope("A", 2), vocab)
        ix.close([f"A:1:{p.product_id}" for p in changed], 2)
        ix.flush()
        out["update_1pct_s"] = time.perf_counter() - t
        search_ix, scope = ix, Scope("A", 2)
    else:

        def build(name: str, products, scope):  # noqa: ANN001, ANN202
            ix = HitIndex(d + "/m.db", name, DIM, "bench/random", client=client)
            ix.ensure()
            _write(ix, products, rng, scope, vocab)
            ix.flush()
            return ix

        t = time.perf_counter()
        build("a_v1", a, None)
        out["build_s"] = time.perf_counter() - t
        build("b_v1", b, None)
        t = time.perf_counter()
        search_ix = build("a_v2", changed + a[len(changed) :], None)  # a new version = a whole collection
        out["update_1pct_s"] = time.perf_counter() - t
        scope = None
    lat = []
    for q in range(queries):
        dense = rng.random(DIM, dtype="float32")
        sparse = vocab.query_vector(f"{CATS[q % len(CATS)]} number {q % 97}")
        t = time.perf_counter()
        r = search_ix.search(dense, sparse, CATS[q % len(CATS)], 1500, 10, scope)
        lat.append(time.perf_counter() - t)
        assert r.hits and all(h.product_id.startswith("A") for h in r.hits)
    lat.sort()
    out["search_p50_ms"] = statistics.median(lat) * 1000
    out["search_p95_ms"] = lat[int(0.95 * (len(lat) - 1))] * 1000
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def _big_catalog(dest: Path, n: int) -> Path:
    """The demo catalog grown to n products: rows cycle through the demo's 48 (ids, sales counts and
    descriptions made unique), each pointing at one of the demo's images."""
    import csv

    from hitline.demo.sampledata import generate_demo

    catalog, _new = generate_demo(dest / "demo")
    with open(catalog / "products.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    with open(catalog / "products.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        for i in range(n):
            r = rows[i % len(rows)]
            w.writerow(
                {
                    **r,
                    "product_id": f"P{i:07d}",
                    "sales_count": str(int(r["sales_count"]) + i % 1000),
                    "description": f"{r['description']} Lot {i}.",
                }
            )
    return catalog


def run_startup(n: int, reps: int) -> dict:
    """Embedded line (SQLite job table, Milvus Lite, local provider) in this process: a catalog of n
    products indexed once (`hitline catalog add`), then `reps` batches of the demo's 6 new SKUs on it, each
    timed from submit to its first SKU past retrieve (submit_batch + that SKU's embed, index, retrieve),
    with the unchanged-folder shortcut (after) and without it (before: the whole products.csv read and
    validated again)."""
    import os

    d = Path(tempfile.mkdtemp(prefix="bench_catalog_start_"))
    os.environ.update(HITLINE_DATA_DIR=str(d / "data"), HITLINE_PROVIDER="local", HITLINE_QUALITY_GATE="0")
    from hitline.jobs import catalogs
    from hitline.jobs.context import get_runtime
    from hitline.jobs.options import BatchOptions
    from hitline.jobs.stages import SKU_LINE
    from hitline.jobs.submit import submit_batch

    catalog = _big_catalog(d, n)
    new = d / "demo" / "new"
    options = {"provider": "local", "top_k": 3, "min_sales": 0, "presets": ["thumbnail"], "models": {}}
    rt = get_runtime()
    t = time.perf_counter()
    catalogs.add_or_update(rt, catalog, BatchOptions.of(options), name="big")
    out: dict = {"products": n, "index_s": time.perf_counter() - t}
    real = catalogs.unchanged_version
    # the first batch loads the embedder and opens the collection: not timed
    for mode in ("warm", *("before", "after") * reps):
        catalogs.unchanged_version = real if mode != "before" else (lambda *a, **k: None)  # type: ignore[assignment]
        t0, c0 = time.perf_counter(), time.process_time()
        sub = submit_batch(rt, catalog, new, d / "out", options=options)
        t1, c1 = time.perf_counter(), time.process_time()
        assert sub.hit_chunks == []  # the catalog is indexed: no catalog work
        for st in SKU_LINE[:3]:  # embed, index (the catalog barrier), retrieve
            outcome = st.run(rt, sub.sku_jobs[0])
            assert outcome.status == "done", outcome
        t2, c2 = time.perf_counter(), time.process_time()
        out.setdefault(mode, []).append(
            {
                "submit_s": t1 - t0,
                "first_retrieved_s": t2 - t0,
                "submit_cpu_s": c1 - c0,
                "first_retrieved_cpu_s": c2 - c0,
            }
        )
    catalogs.unchanged_version = real  # type: ignore[assignment]
    for mode in ("before", "after"):
        for k in ("submit_s", "first_retrieved_s", "submit_cpu_s", "first_retrieved_cpu_s"):
            out[f"{mode}_{k}"] = statistics.median(r[k] for r in out[mode])
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    import shutil

    shutil.rmtree(d, ignore_errors=True)
    return out


def main_startup(sizes: list[int], reps: int, json_path: Path | None) -> None:
    results = []
    for n in sizes:
        res = subprocess.run(
            [sys.executable, __file__, "--one-startup", str(n), "--reps", str(reps)],
            capture_output=True,
            text=True,
            check=True,
        )
        results.append(json.loads(res.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), flush=True)
    print("seconds (wall / CPU of the process), medians; first = submit -> first SKU past retrieve")
    print(
        f"{'products':>9}{'index s':>9}{'submit before':>16}{'submit after':>16}{'first before':>16}{'first after':>16}"
    )
    for r in results:
        cells = [
            f"{r[f'{m}_{k}_s']:.2f}/{r[f'{m}_{k}_cpu_s']:.2f}"
            for k, m in (
                ("submit", "before"),
                ("submit", "after"),
                ("first_retrieved", "before"),
                ("first_retrieved", "after"),
            )
        ]
        print(f"{r['products']:>9}{r['index_s']:>9.1f}" + "".join(f"{c:>16}" for c in cells))
    if len(results) > 1:
        a, b = results[0], results[-1]
        for unit in ("_s", "_cpu_s"):
            print(
                f"{b['products']} vs {a['products']} products, submit -> first SKU past retrieve ({unit[1:-2] or 'wall'}): "
                f"before {b['before_first_retrieved' + unit] / a['before_first_retrieved' + unit]:.2f}x, "
                f"after {b['after_first_retrieved' + unit] / a['after_first_retrieved' + unit]:.2f}x"
            )
    if json_path:
        json_path.write_text(json.dumps(results, indent=2))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000, help="products per catalog")
    ap.add_argument("--queries", type=int, default=40)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument(
        "--startup",
        default=None,
        help="instead: submit -> first SKU past retrieve on indexed catalogs of these sizes, e.g. 1000,100000",
    )
    ap.add_argument("--reps", type=int, default=2, help="--startup: before/after pairs per size")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--one-startup", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one_startup:
        print(json.dumps(run_startup(args.one_startup, args.reps)))
        return
    if args.startup:
        main_startup([int(x) for x in args.startup.split(",")], args.reps, args.json)
        return
    if args.one:
        print(json.dumps(run_design(args.one, args.rows, args.queries)))
        return
    results = []
    for design in ("partition_key", "collection_per_version"):
        res = subprocess.run(
            [sys.executable, __file__, "--one", design, "--rows", str(args.rows), "--queries", str(args.queries)],
            capture_output=True,
            text=True,
            check=True,
        )
        results.append(json.loads(res.stdout.strip().splitlines()[-1]))
    base = results[0]
    print(f"{'design':<24}{'build s':>9}{'update 1% s':>13}{'p50 ms':>9}{'p95 ms':>9}{'peak RSS MB':>13}")
    for r in results:
        print(
            f"{r['design']:<24}{r['build_s']:>9.2f}{r['update_1pct_s']:>13.2f}{r['search_p50_ms']:>9.1f}"
            f"{r['search_p95_ms']:>9.1f}{r['peak_rss_mb']:>13.0f}"
        )
    other = results[1]
    print(
        f"collection per version vs partition key: update {other['update_1pct_s'] / base['update_1pct_s']:.1f}x, "
        f"p50 {other['search_p50_ms'] / base['search_p50_ms']:.2f}x, RSS {other['peak_rss_mb'] / base['peak_rss_mb']:.2f}x; "
        f"partition key: update 1% / full build = {base['update_1pct_s'] / base['build_s']:.3f}"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
