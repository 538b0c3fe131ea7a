"""Catalog versions in Milvus: one collection with `catalog` as partition key and rows live in
[valid_from, valid_to) (as shipped, hitline/store/index.py) against one collection per catalog version.

For each design, in its own process (so peak RSS is its own; Milvus Lite runs in-process): build two
catalogs of N products (random 272-d vectors, hashed-term sparse vectors), then update catalog A with 1%
of its products changed, then search catalog A's new version with the category + sales filter.
Reported: build time of a catalog, update time (partition key: write 1% + close 1% + flush; per-version
collection: a whole new collection), search p50/p95, peak RSS. Ratios against the partition-key design,
measured in the same run. Usage: bench_catalog.py [--rows N] [--queries Q] [--json PATH]
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000, help="products per catalog")
    ap.add_argument("--queries", type=int, default=40)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
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
