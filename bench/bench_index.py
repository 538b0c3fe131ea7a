"""Hybrid search latency and quality: HitIndex (FLAT, as shipped) vs unflushed vs HNSW vs exact NumPy/SciPy.

All variants answer the same queries: a dense request (272-d COSINE) and a sparse request (IP), each
filtered by `category == X and sales_count > N`, each asking for the top L = max(3k, 10), fused by RRF
(k=60) into the top k. Latencies are per query; results are reported as ratios against (a), HitIndex as
shipped, measured in the same run. overlap@k compares each Milvus variant with the exact reference (d).

    python bench/bench_index.py                      # 10k rows, 200 queries
    python bench/bench_index.py --rows 100000        # the 100k case (a few minutes)
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from pymilvus import AnnSearchRequest, DataType, MilvusClient, RRFRanker
from rich.console import Console
from rich.table import Table

from hitline.domain.models import HitProduct
from hitline.store.index import RRF_K, HitIndex, build_filter

logging.getLogger("grpc._server").setLevel(logging.CRITICAL)
console = Console(width=150)
DIM = 272


# --- data ----------------------------------------------------------------------------------------
def make_data(n: int, vocab: int, nnz: int, n_cat: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    dense = rng.standard_normal((n, DIM), dtype=np.float32)
    dense /= np.linalg.norm(dense, axis=1, keepdims=True)
    # Zipf-like term popularity so that queries share terms with a realistic number of rows
    p = 1.0 / (np.arange(vocab) + 10.0)
    p /= p.sum()
    rows, cols, vals = [], [], []
    for i in range(n):
        k = max(1, int(rng.poisson(nnz)))
        terms = np.unique(rng.choice(vocab, size=k, p=p))
        w = rng.uniform(0.1, 1.0, size=len(terms)).astype(np.float32)
        w /= np.linalg.norm(w)
        rows.extend([i] * len(terms)), cols.extend(terms.tolist()), vals.extend(w.tolist())
    sparse = sp.csr_matrix((np.asarray(vals, np.float32), (rows, cols)), shape=(n, vocab), dtype=np.float32)
    cats = np.asarray([f"cat{c:02d}" for c in rng.integers(0, n_cat, size=n)])
    sales = np.clip(rng.lognormal(np.log(2200), 1.0, size=n), 10, 100000).astype(np.int64)
    return {"dense": dense, "sparse": sparse, "category": cats, "sales": sales}


def sparse_row(m: sp.csr_matrix, i: int) -> dict[int, float]:
    lo, hi = m.indptr[i], m.indptr[i + 1]
    return {int(c): float(v) for c, v in zip(m.indices[lo:hi], m.data[lo:hi])}


def make_queries(data: dict[str, Any], q: int, vocab: int, seed: int) -> list[dict[str, Any]]:
    """Queries near existing rows (a new product resembles some hits): noisy dense copy, half its terms
    plus one random term, and a category drawn from the catalog."""
    rng = np.random.default_rng(seed + 1)
    n = len(data["category"])
    out = []
    for _ in range(q):
        i = int(rng.integers(n))
        d = data["dense"][i] + 0.8 * rng.standard_normal(DIM).astype(np.float32) / np.sqrt(DIM)
        d = (d / np.linalg.norm(d)).astype(np.float32)
        terms = sparse_row(data["sparse"], i)
        keep = dict(list(terms.items())[: max(1, len(terms) // 2)])
        keep[int(rng.integers(vocab))] = 0.5
        cat = str(data["category"][int(rng.integers(n))])
        out.append({"dense": d, "sparse": keep, "category": cat})
    return out


def products(data: dict[str, Any], lo: int, hi: int) -> list[HitProduct]:
    return [
        HitProduct(
            product_id=f"P{i:07d}",
            image_path=Path(f"/bench/P{i:07d}.jpg"),
            category=str(data["category"][i]),
            color="c",
            style="s",
            season="x",
            sales_count=int(data["sales"][i]),
            description=f"bench row {i}",
            price=9.99,
        )
        for i in range(lo, hi)
    ]


def rows_for(data: dict[str, Any], lo: int, hi: int) -> list[dict[str, Any]]:
    return [
        {
            "product_id": f"P{i:07d}",
            "dense": data["dense"][i].tolist(),
            "sparse": sparse_row(data["sparse"], i) or {0: 1e-6},
            "category": str(data["category"][i]),
            "color": "c",
            "style": "s",
            "season": "x",
            "description": f"bench row {i}",
            "image_path": f"/bench/P{i:07d}.jpg",
            "sales_count": int(data["sales"][i]),
            "price": 9.99,
        }
        for i in range(lo, hi)
    ]


# --- search variants -----------------------------------------------------------------------------
def milvus_hybrid(
    client: MilvusClient, coll: str, query: dict[str, Any], expr: str, k: int, dense_param: dict[str, Any]
) -> list[str]:
    """The same two requests HitIndex._hybrid sends (limit L per path, RRF k=60, top k)."""
    per_path = max(k * 3, 10)
    reqs = [
        AnnSearchRequest(
            data=[query["dense"].tolist()], anns_field="dense", param=dense_param, limit=per_path, expr=expr
        ),
        AnnSearchRequest(
            data=[query["sparse"]], anns_field="sparse", param={"metric_type": "IP"}, limit=per_path, expr=expr
        ),
    ]
    res = client.hybrid_search(coll, reqs, RRFRanker(RRF_K), limit=k, output_fields=["sales_count"])[0]
    return [h.get("product_id", h.get("id")) for h in res]


def exact_hybrid(data: dict[str, Any], query: dict[str, Any], min_sales: int, k: int, vocab: int) -> list[str]:
    """The top k ids (then any ids tied with the k-th). Brute force: filtered dense top-L (cosine = dot on unit vectors), filtered sparse top-L (IP > 0), RRF."""
    per_path = max(k * 3, 10)
    idx = np.flatnonzero((data["category"] == query["category"]) & (data["sales"] > min_sales))
    if idx.size == 0:
        return []
    ds = data["dense"][idx] @ query["dense"]
    top_d = idx[np.argsort(-ds, kind="stable")[:per_path]]
    qv = np.zeros(vocab, np.float32)
    for t, v in query["sparse"].items():
        qv[t] = v
    ss = data["sparse"][idx] @ qv
    pos = np.flatnonzero(ss > 0)
    top_s = idx[pos[np.argsort(-ss[pos], kind="stable")[:per_path]]]
    score: dict[int, float] = {}
    for ranked in (top_d, top_s):
        for r, i in enumerate(ranked):
            score[int(i)] = score.get(int(i), 0.0) + 1.0 / (RRF_K + r + 1)
    best = sorted(score, key=lambda i: -score[i])[:k]
    # RRF ties are common (rank r on one path only scores the same on either path): every id scoring at
    # least the k-th fused score is an equally correct answer, kept after the top k for overlap()
    cut = score[best[-1]] - 1e-12
    tied = [i for i in score if score[i] >= cut and i not in best]
    return [f"P{i:07d}" for i in best + tied]


def time_queries(
    fn: Callable[[dict[str, Any]], list[str]], queries: Sequence[dict[str, Any]], warmup: int = 3
) -> tuple[np.ndarray, list[list[str]]]:
    for q in queries[:warmup]:
        fn(q)
    lat, results = [], []
    for q in queries:
        t = time.perf_counter()
        results.append(fn(q))
        lat.append((time.perf_counter() - t) * 1000)
    return np.asarray(lat), results


def overlap(a: list[list[str]], ref: list[list[str]], k: int) -> float:
    """Share of the exact top k found; ids tied with the exact k-th score (listed after it) count too."""
    vals = [min(1.0, len(set(x[:k]) & set(r)) / min(k, len(r))) for x, r in zip(a, ref) if r]
    return float(np.mean(vals)) if vals else float("nan")


# --- main ----------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=10_000, help="catalog rows (10000; try 100000)")
    ap.add_argument("--queries", type=int, default=200, help="timed queries per variant")
    ap.add_argument(
        "--growing-queries",
        type=int,
        default=20,
        help="queries for the unflushed variant (it is slow; a subset of the same queries)",
    )
    ap.add_argument("--top-k", type=int, default=10)
    ap.add_argument("--min-sales", type=int, default=1500)
    ap.add_argument("--vocab", type=int, default=2000)
    ap.add_argument("--nnz", type=int, default=8, help="mean non-zeros per sparse vector")
    ap.add_argument("--categories", type=int, default=12)
    ap.add_argument("--batch", type=int, default=2000, help="rows per insert call")
    ap.add_argument("--hnsw-m", type=int, default=16)
    ap.add_argument("--hnsw-ef-construction", type=int, default=200)
    ap.add_argument("--hnsw-ef", type=int, default=64)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workdir", type=Path, default=None, help="where the Milvus Lite file goes (temp dir)")
    ap.add_argument("--json", type=Path, default=None, help="write the results as JSON here")
    args = ap.parse_args(argv)
    n, k = args.rows, args.top_k
    if n < 100 or args.queries < 1 or k < 1:
        ap.error("need --rows >= 100, --queries >= 1, --top-k >= 1")

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-index-"))
    work.mkdir(parents=True, exist_ok=True)
    uri = str((work / "bench.db").resolve())
    t0 = time.perf_counter()
    data = make_data(n, args.vocab, args.nnz, args.categories, args.seed)
    queries = make_queries(data, args.queries, args.vocab, args.seed)
    console.print(
        f"[dim]data: {n} rows, {data['sparse'].nnz / n:.1f} sparse nnz/row, generated in "
        f"{time.perf_counter() - t0:.1f} s; Milvus Lite file {uri}[/]"
    )
    client = MilvusClient(uri)
    times: dict[str, float] = {}
    try:
        # (a)/(b): the shipped collection, searched before flush (growing segments), then flushed + loaded
        hit = HitIndex(uri, "bench_flat", DIM, "bench/random-272", client=client)
        hit.drop()
        hit.ensure()
        t = time.perf_counter()
        for lo in range(0, n, args.batch):
            hit.upsert(
                products(data, lo, min(n, lo + args.batch)),
                data["dense"][lo : lo + args.batch],
                [sparse_row(data["sparse"], i) for i in range(lo, min(n, lo + args.batch))],
            )
        times["flat_insert_s"] = time.perf_counter() - t
        flat = {"metric_type": "COSINE"}
        g = min(args.growing_queries, len(queries))
        lat_b, res_b = time_queries(
            lambda q: milvus_hybrid(client, "bench_flat", q, build_filter(q["category"], args.min_sales), k, flat),
            queries[:g],
            warmup=0,
        )
        t = time.perf_counter()
        hit.flush()
        times["flat_flush_load_s"] = time.perf_counter() - t
        lat_a, res_a = time_queries(
            lambda q: milvus_hybrid(client, "bench_flat", q, build_filter(q["category"], args.min_sales), k, flat),
            queries,
        )
        lat_a2, _ = time_queries(
            lambda q: [
                h.product_id for h in hit.search(q["dense"], q["sparse"], q["category"], args.min_sales, k).hits
            ],
            queries,
        )

        # (c): HNSW, same schema, built with pymilvus directly
        hn = "bench_hnsw"
        if client.has_collection(hn):
            client.drop_collection(hn)
        schema = client.create_schema(auto_id=False)
        schema.add_field("product_id", DataType.VARCHAR, is_primary=True, max_length=64)
        schema.add_field("dense", DataType.FLOAT_VECTOR, dim=DIM)
        schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        for name, ml in (
            ("category", 128),
            ("color", 128),
            ("style", 128),
            ("season", 64),
            ("description", 4096),
            ("image_path", 1024),
        ):
            schema.add_field(name, DataType.VARCHAR, max_length=ml)
        schema.add_field("sales_count", DataType.INT64)
        schema.add_field("price", DataType.DOUBLE)
        idx = client.prepare_index_params()
        idx.add_index(
            "dense",
            index_type="HNSW",
            metric_type="COSINE",
            params={"M": args.hnsw_m, "efConstruction": args.hnsw_ef_construction},
        )
        idx.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="IP")
        client.create_collection(hn, schema=schema, index_params=idx)
        t = time.perf_counter()
        for lo in range(0, n, args.batch):
            client.insert(hn, rows_for(data, lo, min(n, lo + args.batch)))
        times["hnsw_insert_s"] = time.perf_counter() - t
        t = time.perf_counter()
        client.flush(hn)
        client.load_collection(hn)
        times["hnsw_flush_load_s"] = time.perf_counter() - t
        hp = {"metric_type": "COSINE", "params": {"ef": args.hnsw_ef}}
        lat_c, res_c = time_queries(
            lambda q: milvus_hybrid(client, hn, q, build_filter(q["category"], args.min_sales), k, hp), queries
        )
    finally:
        client.close()
        try:  # stop the in-process Milvus Lite server now, or it writes into the folder at exit
            from milvus_lite.server_manager import server_manager_instance

            server_manager_instance.release_server(uri)
        except Exception:  # noqa: BLE001, S110 - cleanup only
            pass
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)

    # (d): exact reference
    lat_d, res_d = time_queries(lambda q: exact_hybrid(data, q, args.min_sales, k, args.vocab), queries)
    sel = float(
        np.mean([np.mean((data["category"] == q["category"]) & (data["sales"] > args.min_sales)) for q in queries])
    )

    base_p50, base_p95 = float(np.percentile(lat_a, 50)), float(np.percentile(lat_a, 95))
    variants = [
        (
            "a",
            "HitIndex FLAT (flushed + loaded), hybrid_search",
            lat_a,
            overlap(res_a, res_d, k),
            times["flat_insert_s"],
            times["flat_flush_load_s"],
        ),
        ("a'", "HitIndex.search() as shipped (+2 per-path rank searches)", lat_a2, float("nan"), None, None),
        ("b", "same FLAT collection BEFORE flush (growing)", lat_b, overlap(res_b, res_d[: len(res_b)], k), None, None),
        (
            "c",
            f"HNSW M={args.hnsw_m} efC={args.hnsw_ef_construction} ef={args.hnsw_ef}",
            lat_c,
            overlap(res_c, res_d, k),
            times["hnsw_insert_s"],
            times["hnsw_flush_load_s"],
        ),
        ("d", "NumPy/SciPy exact brute force (reference)", lat_d, 1.0, None, None),
    ]
    table = Table(
        title=f"hybrid search, {n} rows, top {k} (L={max(3 * k, 10)} per path), filter keeps {sel:.1%} of rows"
    )
    for col in (
        "",
        "variant",
        "queries",
        "p50 ms",
        "p95 ms",
        "p50 / (a)",
        "p95 / (a)",
        f"overlap@{k} vs (d)",
        "insert s",
        "flush+load s",
    ):
        table.add_column(col, justify="left" if col in ("", "variant") else "right")
    out_variants = []
    for key, name, lat, ov, ins, fl in variants:
        p50, p95 = float(np.percentile(lat, 50)), float(np.percentile(lat, 95))
        table.add_row(
            key,
            name,
            str(len(lat)),
            f"{p50:.2f}",
            f"{p95:.2f}",
            f"{p50 / base_p50:.2f}x",
            f"{p95 / base_p95:.2f}x",
            "-" if np.isnan(ov) else f"{ov:.3f}",
            "-" if ins is None else f"{ins:.1f}",
            "-" if fl is None else f"{fl:.2f}",
        )
        out_variants.append(
            {
                "key": key,
                "name": name,
                "queries": len(lat),
                "p50_ms": p50,
                "p95_ms": p95,
                "p50_ratio_vs_a": p50 / base_p50,
                "p95_ratio_vs_a": p95 / base_p95,
                "overlap_vs_exact": None if np.isnan(ov) else ov,
                "insert_s": ins,
                "flush_load_s": fl,
            }
        )
    console.print(table)
    console.print(
        "[dim]ratios < 1 are faster than (a). insert: (a) HitIndex.upsert, (c) client.insert, "
        f"{args.batch} rows per call. (b) used the first {len(lat_b)} queries.[/]"
    )
    if args.json:
        import pymilvus

        try:
            from importlib.metadata import version

            lite = version("milvus-lite")
        except Exception:  # noqa: BLE001
            lite = "?"
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "bench": "index",
                    "date": date.today().isoformat(),
                    "machine": platform.platform(),
                    "pymilvus": pymilvus.__version__,
                    "milvus_lite": lite,
                    "params": {k2: (str(v) if isinstance(v, Path) else v) for k2, v in vars(args).items()},
                    "filter_selectivity": sel,
                    "variants": out_variants,
                },
                indent=2,
            )
        )
        console.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
