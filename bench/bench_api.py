"""The API's pages at scale: GET /batches, GET /batches/{id} and the dashboard's batch page (and list
page) against a 100,000-SKU batch in PostgreSQL, answered by a real `hitline serve` (distributed mode: a
broker it only enqueues to, so nothing runs while it is measured).

The job table is filled directly in bulk (COPY), not by submitting: a scratch database beside `test`
(dropped afterwards) gets the schema by its migrations, then one big batch of --skus SKUs and --hits
catalog jobs plus --others small batches (--other-skus each). The rows are copies of a real rendered SKU
and catalog job (`hitline demo`, bench/data/api_templates.json: ~5 KB of results JSON per SKU) with
their ids, paths, digests and states varied: the big batch is still running (a few SKUs open), 2% failed
in render with ~15 reasons (row numbers and file names inside), 1% rejected at validation, the rest done
with one render charge each. Each page is asked --requests times in a row after one warm-up; reported:
p50 / p95 / max milliseconds (client wall time over HTTP on loopback).

    nice -n 10 python bench/bench_api.py --label before --json bench/results/api.json
    nice -n 10 python bench/bench_api.py --skus 2000 --requests 5                      # a quick look
"""

from __future__ import annotations

import sys
from pathlib import Path as _P

sys.path.insert(0, str(_P(__file__).resolve().parent))
from _common import scratch_database  # noqa: E402

import argparse
import json
import os
import platform
import random
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Sequence
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = ROOT / "bench" / "data" / "api_templates.json"
REASONS = [
    "render: provider answered 502 Bad Gateway after 7 attempts (gave up)",
    "render: provider answered 402 Insufficient credits",
    "render: the image model returned no image for {file}",
    "render: timed out after 120 s waiting for google/gemini-3.1-flash-image-preview",
    "analyze: the analysis model's answer was not JSON for {file}",
    "retrieve: no hit in the catalog for category {cat} (filter widened twice)",
    "render: quality gate: product fill 0.{n} below 0.85 in amazon_main",
    "render: cut-out failed: no foreground in {file}",
    "embed: image {file} could not be decoded",
    "render: budget_exceeded: batch budget $2500.00 reached before amazon_main",
    "render: provider answered 400: image too large ({n} px)",
    "render: provider answered 429 Too Many Requests after 7 attempts (gave up)",
    "analyze: provider answered 500 Internal Server Error after 7 attempts (gave up)",
    "render: the flat-lay {file} touches the frame on {n} sides",
    "render: OCR found text in a no_text preset ({file})",
]
REJECTED = [
    "row {row}: image_path {file} does not exist",
    "row {row}: category is empty",
    "row {row}: duplicate new_id {sku}",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _copy(con: Any, table: str, cols: list[str], rows: Any) -> int:
    """COPY rows (tuples; JSON as text) into table; returns how many."""
    n = 0
    with con.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN") as cp:
        for r in rows:
            cp.write_row(r)
            n += 1
    return n


def _digests(base: dict[str, Any]) -> list[str]:
    """~20 distinct render digests, as a batch's SKUs produce (downsized presets, gate outcomes)."""
    out = []
    for i in range(20):
        d = json.loads(json.dumps(base))
        if i % 4 == 1:
            d["inputs"]["downsized"] = {"amazon_main": "1K"}
        if i % 5 == 2:
            d["inputs"]["background"] = ["amazon_main"]
        if i % 7 == 3:
            d["inputs"]["touches_frame"] = True
        d["gate"] = {"passed": 2 - (i % 3 == 0), "needs_review": int(i % 3 == 0)} if i % 2 else {}
        d["plan"] = {
            "renders": 1 + (i % 2),
            "derived": 1 - (i % 2),
            "naive_usd": 0.146,
            "cost_usd": 0.101 + 0.045 * (i % 2),
        }
        out.append(json.dumps(d))
    return out


def _with_digest(rows: Any) -> Any:
    from db.models import result_digest

    for r in rows:
        yield (*r, result_digest(json.loads(r[9])))


def fill(url: str, opts: argparse.Namespace) -> dict[str, Any]:
    """The batches, jobs and charges, in bulk; returns the ids to ask for."""
    import psycopg

    t = json.loads(TEMPLATES.read_text())
    rnd = random.Random(21)
    sku_row, sku_result, hit_row, hit_result = t["sku"]["row"], t["sku"]["result"], t["hit"]["row"], t["hit"]["result"]
    digests = _digests(sku_result["render"]["digest"])
    now = datetime.now(timezone.utc)
    batches = [
        (f"{(now - timedelta(hours=1 + i)):%Y%m%d-%H%M%S}-o{i:05d}", opts.other_skus, 200) for i in range(opts.others)
    ]
    big = (f"{now:%Y%m%d-%H%M%S}-big000", opts.skus, opts.hits)
    batches.append(big)
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    t0 = time.perf_counter()
    with psycopg.connect(dsn) as con:
        has_digest = con.execute(
            "SELECT 1 FROM information_schema.columns WHERE table_name = 'job' AND column_name = 'digest'"
        ).fetchone()
        for bid, n_sku, n_hit in batches:
            out = f"/shared/out/{bid}"
            con.execute(
                "INSERT INTO batch (id, tenant_id, created_at, catalog_dir, new_dir, out_dir, options, budget_usd,"
                " spent_usd, notes) VALUES (%s, 'default', %s, '/shared/demo/catalog', '/shared/demo/new', %s,"
                " %s, 2500.0, 0, '[]')",
                (bid, now, out, json.dumps(t["batch_options"])),
            )

            def hits(bid: str = bid, n_hit: int = n_hit) -> Any:
                for i in range(n_hit):
                    row = {
                        **hit_row,
                        "product_id": f"H{i:06d}",
                        "image_path": f"/shared/demo/catalog/images/H{i:06d}.jpg",
                    }
                    yield (
                        bid,
                        "hit",
                        f"H{i:06d}",
                        i + 2,
                        json.dumps(row),
                        "done",
                        "done",
                        1,
                        None,
                        json.dumps(hit_result),
                        0.0,
                        now,
                    )

            def skus(bid: str = bid, n_sku: int = n_sku, out: str = out) -> Any:
                for i in range(n_sku):
                    sku, f = f"NEW{i:06d}", f"NEW{i:06d}.jpg"
                    row = {**sku_row, "new_id": sku, "image_path": f"/shared/demo/new/new_products/{f}"}
                    r = rnd.random()
                    if r < 0.01:  # rejected at validation: never ran, raw row
                        err = rnd.choice(REJECTED).format(row=i + 2, file=f, sku=sku)
                        yield (bid, "sku", sku, i + 2, json.dumps(row), "embed", "failed", 0, err, "{}", 0.0, now)
                        continue
                    res = json.loads(json.dumps(sku_result))
                    res["render"]["digest"] = json.loads(rnd.choice(digests))
                    for o in res["render"]["outputs"]:
                        o["path"] = f"{out}/{sku}/{o['preset']}-{rnd.getrandbits(48):012x}.png"
                    if r < 0.03:
                        err = rnd.choice(REASONS).format(file=f, cat=row["category"], n=rnd.randint(2, 9))
                        stage = err.split(":")[0]
                        del res["render"]
                        yield (
                            bid,
                            "sku",
                            sku,
                            i + 2,
                            json.dumps(row),
                            stage,
                            "failed",
                            7,
                            err,
                            json.dumps(res),
                            0.0,
                            now,
                        )
                    elif bid == big[0] and r < 0.03 + 200 / max(n_sku, 1):  # still running: the batch is open
                        del res["render"]
                        state = rnd.choice(["pending", "running", "retrying"])
                        yield (
                            bid,
                            "sku",
                            sku,
                            i + 2,
                            json.dumps(row),
                            "render",
                            state,
                            1,
                            None,
                            json.dumps(res),
                            0.0,
                            now,
                        )
                    else:
                        yield (
                            bid,
                            "sku",
                            sku,
                            i + 2,
                            json.dumps(row),
                            "done",
                            "done",
                            1,
                            None,
                            json.dumps(res),
                            0.101,
                            now,
                        )

            cols = [
                "batch_id",
                "kind",
                "item_id",
                "row_no",
                "row",
                "stage",
                "state",
                "attempts",
                "error",
                "result",
                "cost_usd",
                "updated_at",
            ]
            if has_digest:  # the schema keeps each job's render digest beside its result (i21_job_digest)
                _copy(con, "job", [*cols, "digest"], _with_digest(hits()))
                _copy(con, "job", [*cols, "digest"], _with_digest(skus()))
            else:  # the schema before it
                _copy(con, "job", cols, hits())
                _copy(con, "job", cols, skus())
            con.execute(
                "INSERT INTO charge (batch_id, job_id, stage, key, model, cost_usd, state, created_at)"
                " SELECT batch_id, id, 'render', md5(id::text), 'google/gemini-3.1-flash-image-preview', 0.101,"
                " 'charged', %s FROM job WHERE batch_id = %s AND kind = 'sku' AND state = 'done'",
                (now, bid),
            )
            con.execute(
                "UPDATE batch SET spent_usd = (SELECT COALESCE(SUM(cost_usd), 0) FROM charge WHERE batch_id = %s)"
                " WHERE id = %s",
                (bid, bid),
            )
            con.commit()
        con.commit()
        # what autovacuum does after this many inserts (autovacuum_vacuum_insert_threshold): statistics and
        # the visibility map (index-only scans); --no-vacuum: statistics only
        con.autocommit = True
        con.execute("ANALYZE" if opts.no_vacuum else "VACUUM (ANALYZE)")
        con.autocommit = False
        size = con.execute("SELECT pg_size_pretty(pg_database_size(current_database()))").fetchone()
        jobs = con.execute("SELECT count(*) FROM job").fetchone()
    return {
        "big": big[0],
        "fill_s": round(time.perf_counter() - t0, 1),
        "db_size": size[0] if size else "?",
        "jobs": jobs[0] if jobs else 0,
    }


def _stats(ms: list[float]) -> dict[str, float]:
    q = statistics.quantiles(ms, n=20, method="inclusive") if len(ms) > 1 else ms * 19
    return {
        "p50_ms": round(statistics.median(ms), 1),
        "p95_ms": round(q[18], 1),
        "max_ms": round(max(ms), 1),
        "n": len(ms),
    }


def measure(base: str, token: str, big: str, n: int) -> dict[str, dict[str, float]]:
    import httpx

    api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=120)
    ui = httpx.Client(base_url=base, timeout=120)
    r = ui.post("/ui/login", data={"token": token})
    assert r.status_code == 303, r.text
    pages = {
        "GET /batches": (api, "/batches"),
        "GET /batches/{big}": (api, f"/batches/{big}"),
        "GET /ui/batches/{big}": (ui, f"/ui/batches/{big}"),
        "GET /ui/batches": (ui, "/ui/batches"),
        "GET /batches/{big}/jobs?state=failed": (api, f"/batches/{big}/jobs?state=failed&limit=100"),
    }
    out = {}
    for name, (client, path) in pages.items():
        r = client.get(path)
        assert r.status_code == 200, (path, r.status_code, r.text[:300])
        ms = []
        for _ in range(n):
            t0 = time.perf_counter()
            r = client.get(path)
            ms.append((time.perf_counter() - t0) * 1e3)
            assert r.status_code == 200, (path, r.status_code)
        out[name] = {**_stats(ms), "bytes": len(r.content)}
        print(
            f"{name:<40} p50 {out[name]['p50_ms']:8.1f} ms  p95 {out[name]['p95_ms']:8.1f} ms  "
            f"max {out[name]['max_ms']:8.1f} ms  ({len(r.content)} bytes)",
            flush=True,
        )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--skus", type=int, default=100_000, help="SKUs in the big batch")
    ap.add_argument("--hits", type=int, default=5_000, help="catalog jobs in the big batch")
    ap.add_argument("--others", type=int, default=5, help="other (finished) batches")
    ap.add_argument("--other-skus", type=int, default=300)
    ap.add_argument("--requests", type=int, default=30, help="per page, after one warm-up")
    ap.add_argument("--no-vacuum", action="store_true", help="ANALYZE only after the fill (no visibility map)")
    ap.add_argument(
        "--broker",
        default=os.environ.get("HITLINE_BENCH_BROKER", "redis://127.0.0.1:6379/12"),
        help="a Redis the server only enqueues to (nothing is enqueued by reading pages)",
    )
    ap.add_argument("--label", default="run", help="the run's name in --json (e.g. before, after)")
    ap.add_argument("--json", type=Path, default=None, help="results file; runs with other labels are kept")
    opts = ap.parse_args(argv)

    from db.session import init_db, session_scope
    from hitline.jobs import control

    with scratch_database("hitline_bench_api") as url, tempfile.TemporaryDirectory() as tmp:
        init_db(url)
        with session_scope(url) as s:
            token = control.create_token(s, "bench")
        facts = fill(url, opts)
        print(f"filled: {facts}", flush=True)
        port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("HITLINE_")}
        env.update(
            HITLINE_DATABASE_URL=url,
            HITLINE_BROKER_URL=opts.broker,
            HITLINE_DATA_DIR=str(Path(tmp, "data")),
            HITLINE_RECONCILE_EVERY_S="0",
            HITLINE_PROVIDER="local",
        )
        log = open(Path(tmp, "serve.log"), "w")
        server = subprocess.Popen(
            [str(Path(sys.executable).with_name("hitline")), "serve", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            import httpx

            for _ in range(120):
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.5)
            pages = measure(f"http://127.0.0.1:{port}", token, facts["big"], opts.requests)
        finally:
            server.terminate()
            server.wait(30)
            log.close()
            print(Path(tmp, "serve.log").read_text()[-2000:])
    if opts.json:
        old = json.loads(opts.json.read_text()) if opts.json.exists() else {}
        runs = old.get("runs", {})
        runs[opts.label] = {
            "date": date.today().isoformat(),
            "load_1min": round(os.getloadavg()[0], 1),
            "git": subprocess.run(
                ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
            ).stdout.strip(),
            "data": facts,
            "pages": pages,
        }
        opts.json.parent.mkdir(parents=True, exist_ok=True)
        opts.json.write_text(
            json.dumps(
                {
                    "bench": "bench_api",
                    "machine": platform.platform(),
                    "cores": os.cpu_count(),
                    "params": {
                        k: (str(v) if isinstance(v, Path) else v)
                        for k, v in vars(opts).items()
                        if k not in ("json", "label")
                    },
                    "runs": runs,
                },
                indent=2,
            )
            + "\n"
        )
        print(f"wrote {opts.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
