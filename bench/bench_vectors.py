"""One embedding's put + get in the job table's cache: the plain JSON list earlier versions stored vs the
compact float32 form (hitline.domain.vectors), for a 2048-d vector (a provider's float64 unit vector).

  (a) codec: the value through json.dumps / json.loads, as the JSON column does in this process
  (b) PostgreSQL: DbCache.put + DbCache.get on a fresh database on 127.0.0.1:5432 (created and dropped here)
  (c) SQLite: the same on an embedded job-table file

Each op writes a new key (the line caches each image once) and reads it back into what the index is given
(old: the list; new: the decoded float32 array). Modes alternate in rounds, so machine load hits both;
reported: the median over rounds of wall and client-CPU microseconds per put+get, and the stored JSON size.

    python bench/bench_vectors.py                      # 2048-d, 7 rounds x 200 ops per mode and store
    python bench/bench_vectors.py --dim 272 --json bench/results/vectors.json
"""

from __future__ import annotations

import sys
from pathlib import Path as _P

sys.path.insert(0, str(_P(__file__).resolve().parent))
from _common import scratch_database, write_results  # noqa: E402

import argparse
import json
import secrets
import statistics
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
from rich.console import Console
from rich.table import Table

from hitline.domain.vectors import decode_vector, encode_vector

console = Console(width=140)

# what each mode stores for a provider's vector, and what a reader gets back from the stored value
MODES: dict[str, tuple[Callable[[np.ndarray], Any], Callable[[Any], Any]]] = {
    "old: JSON list": (lambda v: [float(x) for x in v], lambda value: value),
    "new: f32 base64": (encode_vector, decode_vector),
}


class JsonCodec:
    """The JSON column's work in this process, without a database."""

    def __init__(self) -> None:
        self.text: dict[str, str] = {}

    def put(self, key: str, value: Any) -> None:
        self.text[key] = json.dumps(value)

    def get(self, key: str) -> Any:
        return json.loads(self.text[key])


@contextmanager
def fresh_pg() -> Iterator[str]:
    with scratch_database("bench_vectors") as url:
        try:
            yield url
        finally:
            from db.session import engine_for

            engine_for(url)[0].dispose()


def db_cache(url: str) -> Any:
    from db.session import init_db
    from hitline.jobs.context import DbCache

    init_db(url)
    return DbCache(url)


def one_round(cache: Any, mode: str, vectors: list[np.ndarray], tag: str) -> tuple[float, float]:
    """(wall us, client CPU us) per put + get."""
    store, read = MODES[mode]
    keys = [f"emb:bench/{tag}:{secrets.token_hex(8)}" for _ in vectors]
    w0, c0 = time.perf_counter(), time.process_time()
    for key, v in zip(keys, vectors):
        cache.put(key, store(v))
        got = read(cache.get(key))
    w1, c1 = time.perf_counter(), time.process_time()
    assert len(got) == len(vectors[-1])
    n = len(vectors)
    return (w1 - w0) / n * 1e6, (c1 - c0) / n * 1e6


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--ops", type=int, default=200, help="put+get per round, mode and store")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--stores", default="codec,postgresql,sqlite")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    rng = np.random.default_rng(0)
    raw = rng.standard_normal((args.ops, args.dim))
    vectors = list(raw / np.linalg.norm(raw, axis=1, keepdims=True))  # float64, as OpenRouter's answer
    sizes = {m: len(json.dumps(store(vectors[0]))) for m, (store, _) in MODES.items()}

    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, fresh_pg() as pg_url:
        stores = {
            "codec": lambda: JsonCodec(),
            "postgresql": lambda: db_cache(pg_url),
            "sqlite": lambda: db_cache(f"sqlite:///{tmp}/jobs.db"),
        }
        for name in args.stores.split(","):
            cache = stores[name]()
            for mode in MODES:  # warm-up: connections, statement caches
                one_round(cache, mode, vectors[:20], "warm")
            times: dict[str, list[tuple[float, float]]] = {m: [] for m in MODES}
            for r in range(args.rounds):
                for mode in list(MODES) if r % 2 == 0 else list(reversed(MODES)):
                    times[mode].append(one_round(cache, mode, vectors, f"{name}{r}"))
            for mode, ts in times.items():
                runs.append(
                    {
                        "store": name,
                        "mode": mode,
                        "wall_us": statistics.median(t[0] for t in ts),
                        "cpu_us": statistics.median(t[1] for t in ts),
                        "json_bytes": sizes[mode],
                    }
                )

    table = Table(title=f"put + get of one {args.dim}-d vector (median of {args.rounds} rounds x {args.ops})")
    for col in ("store", "mode", "JSON bytes", "wall us", "client CPU us", "old / new wall"):
        table.add_column(col, justify="left" if col in ("store", "mode") else "right")
    for r in runs:
        old = next(x for x in runs if x["store"] == r["store"] and x["mode"].startswith("old"))
        ratio = f"{old['wall_us'] / r['wall_us']:.1f}x" if r["mode"].startswith("new") else ""
        table.add_row(
            r["store"], r["mode"], f"{r['json_bytes']:,}", f"{r['wall_us']:,.0f}", f"{r['cpu_us']:,.0f}", ratio
        )
    console.print(table)
    write_results(args.json, "vectors", args, runs)


if __name__ == "__main__":
    main()
