"""Soak: thousands of SKUs, unattended, through faults, at the provider's render ceiling.

Starts everything as real processes on private ports (tests/reliability/services.py): redis-server
(broker + limiter, no persistence), a PostgreSQL cluster (initdb + pg_ctl), `milvus-lite server`, the
fake OpenRouter with realistic latencies (embed 0.2-0.4 s, analyze 2-4 s, render 6-10 s), a render limit
it enforces itself (R per W s, the same limit hitline is configured with), FAULT_P of every request
faulty (500, 502, a hang past the read timeout, malformed JSON, a 200 without an image, 429), one
front worker and two render workers. During the run it SIGKILLs one render worker (a supervisor
restarts it 10 s later, as docker's restart policy would) and restarts Redis (every message lost).
Nobody runs `hitline resume`: the workers' reconciliation must find what was lost.

Reported: wall time; renders answered with an image and the ceiling over their whole span,
R x (floor(span / W) + 1); the provider's own 429s for the render limit (must be 0: the limiter keeps
under it); jobs lost (not done/failed at the end: must be 0); renders paid twice per (SKU, preset), and
how many of those were calls cut by the kill (each may be repeated once).

    python bench/soak.py --skus 2000 --json bench/results/soak.json
    python bench/soak.py --skus 300                         # ~8 min on 2 cores
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_results  # noqa: E402
from testkit.services import (  # noqa: E402
    BIN,
    FakeProvider,
    MilvusServer,
    PgCluster,
    RedisServer,
    Workers,
    stamp_id,
)

RENDER_MODEL = "google/gemini-3.1-flash-image-preview"
SIDE = 320


def make_data(root: Path, n: int) -> tuple[Path, Path]:
    """A 21-product hit catalog and n SKUs, each with its own flat-lay bytes and its own hint (so every
    SKU's analysis is a real call, not a cache hit)."""
    from PIL import Image

    from hitline.demo.sampledata import generate_demo

    demo_cat, demo_new = generate_demo(root / "demo")
    cat = root / "catalog"
    (cat / "images").mkdir(parents=True)
    lines = (demo_cat / "products.csv").read_text().splitlines()[:22]
    (cat / "products.csv").write_text("\n".join(lines) + "\n")
    for row in lines[1:]:
        name = row.split(",")[1]
        with Image.open(demo_cat / name) as im:
            im.thumbnail((SIDE, SIDE))
            im.save(cat / name, quality=90)
    new = root / "new"
    (new / "new_products").mkdir(parents=True)
    rows = list(csv.DictReader(open(demo_new / "new_products.csv", encoding="utf-8")))
    out = []
    for i in range(n):
        src = rows[i % len(rows)]
        with Image.open(demo_new / src["image_path"]) as im:
            img = im.convert("RGB")
        img.thumbnail((SIDE, SIDE))
        stamp_id(img, i)  # a unique stamp in the corner: distinct bytes, same garment
        sid = f"SOAK{i:05d}"
        img.save(new / "new_products" / f"{sid}.png")
        out.append(
            {
                **src,
                "new_id": sid,
                "image_path": f"new_products/{sid}.png",
                "prompt_hint": f"{src['prompt_hint']} (lot {i})",
            }
        )
    with open(new / "new_products.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(out)
    return cat, new


def sql(url: str, query: str, **params: object) -> list[tuple]:  # type: ignore[type-arg]
    import sqlalchemy

    eng = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with eng.connect() as c:
            return [tuple(r) for r in c.execute(sqlalchemy.text(query), params)]
    finally:
        eng.dispose()


def stop_services(
    workers: Workers, fake: FakeProvider, milvus: MilvusServer, redis: RedisServer, pg: PgCluster
) -> None:
    workers.stop_all()
    fake.proc.stop()
    milvus.proc.stop()
    redis.proc.kill9()
    try:
        pg.stop("fast")
    finally:
        pg.remove()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skus", type=int, default=2000)
    ap.add_argument("--render-rpm", type=int, default=120, help="R: renders per window (fake and limiter)")
    ap.add_argument("--window", type=float, default=60.0, help="W seconds")
    ap.add_argument("--fault-p", type=float, default=0.05, help="share of faulty requests")
    ap.add_argument("--render-threads", type=int, default=12, help="per render worker (two of them)")
    ap.add_argument("--kill-at", type=float, default=0.3, help="kill a render worker at this share of renders")
    ap.add_argument("--redis-restart-at", type=float, default=0.6)
    ap.add_argument("--timeout", type=float, default=7200)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    opts = ap.parse_args()

    root = opts.workdir or Path(f"/tmp/hitline-soak-{uuid.uuid4().hex[:6]}")
    (root / "logs").mkdir(parents=True, exist_ok=True)
    catalog, new = make_data(root, opts.skus)
    p = opts.fault_p / 6
    redis = RedisServer(root).start()
    pg = PgCluster().init().start()
    milvus = MilvusServer(root).start()
    fake = FakeProvider(
        root,
        "--latency",
        "embeddings=0.2:0.4",
        "--latency",
        "chat=2:4",
        "--latency",
        "image=6:10",
        "--rpm",
        f"{RENDER_MODEL}={opts.render_rpm}",
        "--rpm-window",
        str(opts.window),
        "--p-500",
        str(p),
        "--p-502",
        str(p),
        "--p-timeout",
        str(p),
        "--p-malformed",
        str(p),
        "--p-429",
        str(p),
        "--p-no-image",
        str(p),
        "--hang-s",
        "40",
        "--retry-after",
        "2",
        "--seed",
        "2026",
    ).start()
    db_url = pg.createdb("soak")
    (root / "limits.toml").write_text(f"""[default]
rpm = 100000
max_in_flight = 64

["{RENDER_MODEL}"]
rpm = {opts.render_rpm}
window_s = {opts.window}
max_in_flight = {2 * opts.render_threads}
""")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HITLINE_")}
    env.update(
        HITLINE_BROKER_URL=redis.url(0),
        HITLINE_REDIS_URL=redis.url(1),
        HITLINE_DATABASE_URL=db_url,
        HITLINE_MILVUS_URI=milvus.uri,
        HITLINE_DATA_DIR=str(root / "data"),
        HITLINE_PROVIDER="openrouter",
        HITLINE_OPENROUTER_BASE_URL=fake.base_url,
        HITLINE_OPENROUTER_API_KEY="sk-or-v1-soak",
        HITLINE_OPENROUTER_TIMEOUT_S="30",
        HITLINE_LIMITS_FILE=str(root / "limits.toml"),
        HITLINE_TOP_K="2",
        HITLINE_QUALITY_GATE=os.environ.get("HITLINE_QUALITY_GATE", "0"),
    )
    workers = Workers(env, root / "logs")
    summary: dict[str, object] = {}
    try:
        # name -> (queues, threads): a worker that exits is started again 10 s later, as the compose file's
        # `restart: unless-stopped` does; its calls in flight were cut like the killed one's
        specs = {
            "front": ("embed,index,retrieve,analyze", 24),
            "render-a": ("render", opts.render_threads),
            "render-b": ("render", opts.render_threads),
        }
        for name, (queues, threads) in specs.items():
            workers.start(queues, concurrency=threads, name=name)
        victim = workers.procs["render-a"]
        exits: list[str] = []
        loads: list[float] = []  # the machine's 1-minute load average at every poll
        deaths: list[float] = []  # wall clock (the fake's log clock) of each worker death
        t0 = time.monotonic()
        code = (
            f"from tasks.chains import submit\ns = submit({str(catalog)!r}, {str(new)!r}, "
            f"{str(root / 'out')!r}, presets=['thumbnail'])\nprint('BATCH', s.batch_id)"
        )
        import subprocess

        res = subprocess.run([str(BIN / "python"), "-c", code], env=env, capture_output=True, text=True, timeout=900)
        assert res.returncode == 0, res.stderr
        batch = res.stdout.split("BATCH")[1].split()[0]
        submit_s = time.monotonic() - t0
        print(f"submitted {opts.skus} SKUs as {batch} in {submit_s:.1f} s", flush=True)
        events: list[tuple[float, str]] = []
        killed = redis_restarted = False
        cut = 0
        while True:
            try:
                counts = Counter(
                    dict(
                        sql(
                            db_url,
                            "SELECT state, count(*) FROM job WHERE batch_id = :b AND kind = 'sku' GROUP BY state",
                            b=batch,
                        )
                    )
                )
                rendering = sql(
                    db_url,
                    "SELECT count(*) FROM job WHERE batch_id = :b AND stage = 'render' AND state = 'running'",
                    b=batch,
                )[0][0]
            except Exception as e:  # noqa: BLE001 - Redis restart does not touch PostgreSQL, but be safe
                print(f"poll failed: {e}", flush=True)
                time.sleep(5)
                continue
            finished = counts["done"] + counts["failed"]
            loads.append(os.getloadavg()[0])
            elapsed = time.monotonic() - t0
            if not killed and counts["done"] >= opts.kill_at * opts.skus:
                cut = opts.render_threads  # at most every thread of the victim was in a call
                victim.kill9()
                deaths.append(time.time())
                killed = True
                events.append((elapsed, f"kill -9 render-a ({rendering} renders running)"))
                print(f"{elapsed:.0f} s: killed render-a with {rendering} renders running", flush=True)
            for name, proc in list(workers.procs.items()):
                if not proc.alive():
                    if proc is not victim:
                        code = proc.popen.returncode if proc.popen else None
                        exits.append(name)
                        cut += specs[name][1] if name in specs else opts.render_threads
                        deaths.append(time.time())
                        events.append((elapsed, f"worker {name} exited by itself (code {code}): restarted"))
                        print(f"{elapsed:.0f} s: worker {name} exited (code {code}); restarting it", flush=True)
                    time.sleep(10)
                    base = name.split("#")[0]
                    queues, threads = specs[base]
                    del workers.procs[name]
                    workers.start(queues, concurrency=threads, name=f"{base}#{len(exits) + int(killed)}")
            if not redis_restarted and counts["done"] >= opts.redis_restart_at * opts.skus:
                redis.restart(down_s=2.0)
                redis_restarted = True
                events.append((elapsed, "Redis restarted (messages lost)"))
                print(f"{elapsed:.0f} s: restarted Redis", flush=True)
            if finished >= opts.skus or elapsed > opts.timeout:
                break
            if int(elapsed) % 60 < 5:
                print(f"{elapsed:.0f} s: {dict(counts)}", flush=True)
            time.sleep(5)
        wall = time.monotonic() - t0
        records = fake.records()
        renders = [r for r in records if r["model"] == RENDER_MODEL]
        served = Counter(r["input_sha"] for r in renders if r["status"] == 200 and not r.get("fault"))
        stamps = sorted(r["t"] for r in renders if r["status"] == 200 and not r.get("fault"))
        span = stamps[-1] - stamps[0] if stamps else 0.0
        ceiling = opts.render_rpm * (int(span // opts.window) + 1)
        states = dict(
            sql(db_url, "SELECT state, count(*) FROM job WHERE batch_id = :b AND kind = 'sku' GROUP BY state", b=batch)
        )
        charges = dict(
            sql(
                db_url,
                "SELECT state, count(*) FROM charge WHERE batch_id = :b AND stage = 'render' GROUP BY state",
                b=batch,
            )
        )
        repeats = sum(n - 1 for n in served.values())
        # a render answered to a client that had gone (its read timeout on a loaded machine, a dying worker)
        # was paid and never received: its retry is the documented repeat of a call cut mid-flight
        undelivered = Counter(
            r["input_sha"] for r in records if (r.get("undelivered") or {}).get("model") == RENDER_MODEL
        )
        repeats_after_undelivered = sum(min(n - 1, undelivered[sha]) for sha, n in served.items())
        # a repeat whose first answer came in the read timeout before a worker died was that worker's call
        first = {}
        for r in sorted(renders, key=lambda r: r["t"]):
            if r["status"] == 200 and not r.get("fault"):
                first.setdefault(r["input_sha"], r["t"])
        at_a_death = sum(
            n - 1
            for sha, n in served.items()
            if n > 1 and not undelivered[sha] and any(d - 45.0 <= first[sha] <= d for d in deaths)
        )
        unexplained = repeats - repeats_after_undelivered - at_a_death
        failed_reasons = Counter(
            (e or "")[:60]
            for (e,) in sql(
                db_url, "SELECT error FROM job WHERE batch_id = :b AND kind = 'sku' AND state = 'failed'", b=batch
            )
        )
        summary = {
            "skus": opts.skus,
            "wall_s": round(wall, 1),
            "submit_s": round(submit_s, 1),
            "states": states,
            "jobs_lost": opts.skus - states.get("done", 0) - states.get("failed", 0),
            "renders_served": len(stamps),
            "render_span_s": round(span, 1),
            "render_ceiling": ceiling,
            "render_rate_vs_ceiling": round(len(stamps) / ceiling, 3) if ceiling else None,
            "renders_per_min": round(60 * len(stamps) / span, 1) if span else None,
            "provider_rpm_429s": sum(1 for r in renders if r.get("fault") == "rpm"),
            "injected_faults": dict(Counter(r["fault"] for r in records if r.get("fault") and r["fault"] != "rpm")),
            "renders_paid_twice": repeats,
            "calls_cut_by_worker_deaths_max": cut,
            "renders_repeated_after_an_undelivered_answer": repeats_after_undelivered,
            "renders_repeated_after_a_worker_death": at_a_death,
            "renders_paid_twice_unexplained": unexplained,  # must be 0
            "worker_exits": exits,
            "load_average": {
                "min": round(min(loads), 1),
                "mean": round(sum(loads) / len(loads), 1),
                "max": round(max(loads), 1),
            }
            if loads
            else None,
            "render_charges": charges,
            "failed_reasons": dict(failed_reasons),
            "events": events,
        }
        print(json.dumps(summary, indent=2))
        write_results(opts.json, "soak", opts, summary)
    finally:
        stop_services(workers, fake, milvus, redis, pg)


if __name__ == "__main__":
    main()
