"""Issue 15's scenario again, as a user runs it (README "Distributed mode" and "The OpenRouter path,
distributed, against the shipped fake"), with faults: 200 SKUs (100 distinct inputs, each twice: the
twins must be paid once), one preset, the README's two workers (`embed,index,retrieve` prefork x2;
`analyze,render` threads x4), Flower behind basic auth, `hitline run` waiting for the batch, a 25 s
milvus-lite outage mid-batch and random provider 429/500 answers.

Every service is a private process (tests/reliability/services.py): redis-server, a PostgreSQL cluster,
`milvus-lite server`, the fake OpenRouter. Reported: SKUs done/failed; images the fake served vs render
charges recorded vs what `hitline status` says was spent; Flower's RETRY and FAILURE events per task
against the job table (attempts refused, jobs failed) and the workers' own retry log lines; any task
left STARTED/RECEIVED/RETRY in Flower at the end; load average and the workers' CPU time.

    python bench/issue15_scenario.py --json bench/results/issue15_scenario.json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_results  # noqa: E402
from soak import RENDER_MODEL, make_data, sql, stop_services  # noqa: E402
from testkit.services import (  # noqa: E402
    BIN,
    FakeProvider,
    Flower,
    MilvusServer,
    PgCluster,
    RedisServer,
    Workers,
)

RETRY_LINE = re.compile(r"Task (hitline\.\w+)\[[^\]]+\] retry: Retry in [\d.]+s: (?:Retry\(Retry\(\.\.\.\), )?(\w+)\(")


def twins(new: Path, broken: int) -> int:
    """Every row of new_products.csv twice (the second copy has its own id, the same image and text),
    plus `broken` SKUs whose flat-lay is cut in half (they pass the submission check, fail at embed)."""
    rows = list(csv.DictReader(open(new / "new_products.csv", encoding="utf-8")))
    doubled = rows + [{**r, "new_id": r["new_id"] + "B"} for r in rows]
    for i in range(broken):
        data = (new / rows[i]["image_path"]).read_bytes()
        (new / "new_products" / f"cut{i}.png").write_bytes(data[: len(data) // 2])
        doubled.append({**rows[i], "new_id": f"BROKEN{i}", "image_path": f"new_products/cut{i}.png"})
    with open(new / "new_products.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(doubled)
    return len(doubled)


def cpu_s(pgid: int) -> float:
    """user+sys seconds of every live process in this process group (a worker and its pool children)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields after the name: state ppid pgrp ...
            total += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
    return total / tick


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--distinct", type=int, default=100, help="distinct SKUs (each is submitted twice)")
    ap.add_argument("--broken", type=int, default=2, help="SKUs with a truncated flat-lay (fail at embed)")
    ap.add_argument("--outage-s", type=float, default=25.0)
    ap.add_argument("--outage-at", type=float, default=0.2, help="share of SKUs past retrieve when Milvus dies")
    ap.add_argument("--p-fault", type=float, default=0.03, help="probability of a 429 and of a 500 per request")
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--json", type=Path, default=None)
    opts = ap.parse_args()

    root = Path(f"/tmp/hitline-issue15-{uuid.uuid4().hex[:6]}")
    (root / "logs").mkdir(parents=True)
    catalog, new = make_data(root, opts.distinct)
    n = twins(new, opts.broken)
    redis, pg, milvus = RedisServer(root).start(), PgCluster().init().start(), MilvusServer(root).start()
    fake = FakeProvider(
        root,
        "--latency",
        "embeddings=0.1:0.2",
        "--latency",
        "chat=0.5:1.0",
        "--latency",
        "image=1.0:2.0",
        "--p-429",
        str(opts.p_fault),
        "--p-500",
        str(opts.p_fault),
        "--retry-after",
        "1",
        "--seed",
        "15",
    ).start()
    db_url = pg.createdb("hitline")
    # the shipped limits (20 renders/min) would make this a 10-minute run; the fake has no limit here
    (root / "limits.toml").write_text(
        f'[default]\nrpm = 600\nmax_in_flight = 8\n\n["{RENDER_MODEL}"]\nrpm = 300\nmax_in_flight = 4\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("HITLINE_")}
    env.update(
        HITLINE_BROKER_URL=redis.url(0),
        HITLINE_DATABASE_URL=db_url,
        HITLINE_MILVUS_URI=milvus.uri,
        HITLINE_DATA_DIR=str(root / "data"),
        HITLINE_PROVIDER="openrouter",
        HITLINE_OPENROUTER_BASE_URL=fake.base_url,
        HITLINE_LIMITS_FILE=str(root / "limits.toml"),
        HITLINE_QUALITY_GATE="0",
    )
    flower = Flower(root, env).start()
    workers = Workers(env, root / "logs")
    summary: dict[str, object] = {}
    try:
        front = workers.start("embed,index,retrieve", concurrency=2, pool="prefork", name="front")
        back = workers.start("analyze,render", concurrency=4, pool="threads", name="back")
        deadline = time.monotonic() + 120
        while flower.metric("flower_worker_online") < 2:
            assert time.monotonic() < deadline, workers.tails()
            time.sleep(0.5)
        load0, t0 = os.getloadavg(), time.monotonic()
        run_log = open(root / "logs" / "hitline-run.log", "w")
        run = subprocess.Popen(
            [
                str(BIN / "hitline"),
                "run",
                "--catalog",
                str(catalog),
                "--new",
                str(new),
                "--out",
                str(root / "out"),
                "--presets",
                "thumbnail",
            ],
            env=env,
            stdout=run_log,
            stderr=subprocess.STDOUT,
        )
        batch, events, outage_done = None, [], False
        while run.poll() is None and time.monotonic() - t0 < opts.timeout:
            time.sleep(1)
            if batch is None:
                found = (
                    sql(db_url, "SELECT id FROM batch ORDER BY created_at DESC LIMIT 1") if _has_tables(db_url) else []
                )
                batch = found[0][0] if found else None
                continue
            stages = Counter(
                dict(
                    sql(
                        db_url,
                        "SELECT stage, count(*) FROM job WHERE batch_id = :b AND kind = 'sku' GROUP BY stage",
                        b=batch,
                    )
                )
            )
            past = stages["analyze"] + stages["render"] + stages["done"]
            if not outage_done and past >= opts.outage_at * n:
                before = {k: stages[k] for k in ("embed", "index", "retrieve")}
                milvus.stop()
                events.append((round(time.monotonic() - t0, 1), f"milvus-lite killed, {before} SKUs not past retrieve"))
                print(events[-1], flush=True)
                time.sleep(opts.outage_s)
                milvus.start()
                events.append((round(time.monotonic() - t0, 1), "milvus-lite back"))
                print(events[-1], flush=True)
                outage_done = True
        wall = time.monotonic() - t0
        load1 = os.getloadavg()
        cpu = {"front": cpu_s(front.pid), "back": cpu_s(back.pid)}
        run.wait(60)
        run_out = (root / "logs" / "hitline-run.log").read_text()
        status = subprocess.run(
            [str(BIN / "hitline"), "status", batch], env=env, capture_output=True, text=True, timeout=120
        )
        spent = re.search(r"cost \$([\d.]+)", status.stdout)
        time.sleep(5)  # Flower's last events

        states = dict(
            sql(db_url, "SELECT state, count(*) FROM job WHERE batch_id = :b AND kind = 'sku' GROUP BY state", b=batch)
        )
        failed = Counter(
            (e or "")[:70]
            for (e,) in sql(db_url, "SELECT error FROM job WHERE batch_id = :b AND state = 'failed'", b=batch)
        )
        refused = {
            f"{k} {st}": c
            for k, st, c in sql(
                db_url,
                "SELECT j.kind, a.stage, count(*) FROM attempt a JOIN job j ON j.id = a.job_id "
                "WHERE j.batch_id = :b AND a.outcome = 'retry' GROUP BY j.kind, a.stage",
                b=batch,
            )
        }
        failed_jobs = dict(
            sql(
                db_url,
                "SELECT stage, count(*) FROM job WHERE batch_id = :b AND state = 'failed' GROUP BY stage",
                b=batch,
            )
        )
        charge = sql(
            db_url,
            "SELECT count(*), coalesce(sum(cost_usd), 0) FROM charge WHERE batch_id = :b "
            "AND stage = 'render' AND state = 'charged'",
            b=batch,
        )[0]
        all_charges = sql(
            db_url, "SELECT coalesce(sum(cost_usd), 0) FROM charge WHERE batch_id = :b AND state = 'charged'", b=batch
        )[0][0]
        records = fake.records()
        images = [r for r in records if "image" in (r.get("modalities") or [])]
        served = Counter(r["input_sha"] for r in images if r["status"] == 200 and not r.get("fault"))
        tasks = flower.tasks()
        flower_retry = {
            t: int(flower.metric("flower_events_total", type="task-retried", task=t))
            for t in sorted({t["name"] for t in tasks.values()})
        }
        flower_fail = {t: int(flower.metric("flower_events_total", type="task-failed", task=t)) for t in flower_retry}
        logged = Counter()
        for w in workers.procs.values():
            logged.update(f"{m.group(1)} {m.group(2)}" for m in RETRY_LINE.finditer(w.log.read_text(errors="replace")))
        summary = {
            "skus": n,
            "distinct_inputs": opts.distinct,
            "wall_s": round(wall, 1),
            "hitline_run_rc": run.returncode,
            "hitline_run_tail": run_out.strip().splitlines()[-3:],
            "states": states,
            "failed_reasons": dict(failed),
            "images_served": sum(served.values()),
            "distinct_images_served": len(served),
            "render_charges": charge[0],
            "render_charged_usd": round(float(charge[1]), 4),
            "all_charged_usd": round(float(all_charges), 4),
            "hitline_status_spent_usd": float(spent.group(1)) if spent else status.stdout[:300],
            "faults_served": dict(
                Counter(
                    f"{r['endpoint']}{' image' if r in images else ''} {r['fault']}" for r in records if r.get("fault")
                )
            ),
            "job_table_refused_attempts": refused,
            "flower_task_retried": {k: v for k, v in flower_retry.items() if v},
            "worker_log_retries": dict(sorted(logged.items())),
            "flower_task_failed": {k: v for k, v in flower_fail.items() if v},
            "job_table_failed": failed_jobs,
            "flower_failure_reasons": [t["exception"] for t in tasks.values() if t["state"] == "FAILURE"],
            "flower_left_open": Counter(
                f"{t['name']} {t['state']}"
                for t in tasks.values()
                if t["state"] in ("STARTED", "RECEIVED", "RETRY", "PENDING")
            ),
            "events": events,
            "loadavg_start": load0,
            "loadavg_end": load1,
            "worker_cpu_s": cpu,
        }
        print(json.dumps(summary, indent=2, default=str))
        write_results(opts.json, "issue15_scenario", opts, summary)
    finally:
        flower.proc.stop()
        stop_services(workers, fake, milvus, redis, pg)


def _has_tables(db_url: str) -> bool:
    return bool(sql(db_url, "SELECT 1 FROM information_schema.tables WHERE table_name = 'batch'"))


if __name__ == "__main__":
    main()
