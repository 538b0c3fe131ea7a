"""How a bulk submission scales with the number of new SKUs (distributed mode, submission only).

Generates the demo data once (`hitline.demo.sampledata.generate_demo`: 48 hits, 6 new flat-lays), then for
each size N writes a `new_products.csv` with N rows NEW00001.. whose images are **hard links** to the 6
demo flat-lays (each row has its own file path, the bytes are shared; `--copy` copies instead). For each
N, in a fresh `HITLINE_DATA_DIR` (Milvus Lite file), a fresh PostgreSQL database created here
(`HITLINE_DATABASE_URL`, dropped afterwards) and `HITLINE_BROKER_URL=redis://127.0.0.1:6379/12`
(flushed before each size and at the end), a child process (`bench_submit.py --child ...`) calls
`tasks.chains.submit(...)` once. **No worker is started**: only submission is measured.

The child times the parts of submit() by wrapping, in its own process only, the functions submit()
calls (nothing in hitline is changed): CSV load + validation (`load_catalog` + `load_new_products`,
each image's header read; with `--full-decode` also each image decoded, the old path), vocabulary fit, Milvus collection ensure, the job-row
transaction (the rest of `submit_batch`), and `enqueue`. Peak RSS is the child's
`resource.getrusage(RUSAGE_SELF).ru_maxrss` (the Milvus Lite server process is not included).
Afterwards the parent counts job rows in PostgreSQL and messages in the Redis lists of the five
queues. Per-SKU times are reported as ratios against the first (smallest) size: ~1.0 = linear.

    python bench/bench_submit.py                        # N = 100, 1000, 3000
    python bench/bench_submit.py --sizes 100,10000 --json bench/results/submit.json
    python bench/bench_submit.py --skus 10000 --full-decode   # N = 100, 10000, each also with the old path
"""

from __future__ import annotations

import sys
from pathlib import Path as _P

sys.path.insert(0, str(_P(__file__).resolve().parent))
from _common import write_results  # noqa: E402

import argparse
import csv
import json
import os
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console(width=200)
QUEUES = ("embed", "index", "retrieve", "analyze", "render")
REDIS_DB = 12
BROKER = f"redis://127.0.0.1:6379/{REDIS_DB}"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
PG_APP = "postgresql+psycopg://postgres@127.0.0.1:5432/{db}"


# --- child: one submission, timed ---------------------------------------------------------------


def pg_backend_cpu(db_url: str) -> dict[int, float]:
    """CPU seconds (user+sys) of each PostgreSQL backend serving this database, but the asking one: the
    server's share of the submission (same machine; /proc)."""
    import psycopg

    tick = os.sysconf("SC_CLK_TCK")
    with psycopg.connect(db_url.replace("+psycopg", "")) as con:
        pids = [
            pid
            for (pid,) in con.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ]
    cpu = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # another machine or gone
            continue
        cpu[pid] = (int(fields[11]) + int(fields[12])) / tick
    return cpu


def child(catalog: Path, new: Path, out: Path, presets: str, result: Path, mode: str) -> None:
    t_start = time.perf_counter()
    import hitline.domain.catalog as cat
    import hitline.jobs.context as pl
    import hitline.jobs.submit as sb
    import tasks.chains as ch
    from hitline.store.index import HitIndex

    if mode == "full-decode":
        # the old path, as a baseline: every image decoded at submit (now done in the embed stage)
        header_only = cat.check_image

        def check_and_decode(path: Path, root: Path) -> Path:
            found = header_only(path, root)
            cat.verify_image_data(found)
            return found

        cat.check_image = check_and_decode

    names = ("load_catalog", "load_new", "vocab", "index_open", "milvus_ensure", "submit_batch", "enqueue")
    timings = dict.fromkeys(names, 0.0)
    cpu_timings = dict.fromkeys(names, 0.0)  # CPU of this process in each part

    def timed(name: str, fn):
        def wrapper(*a, **kw):
            t, c = time.perf_counter(), time.process_time()
            try:
                return fn(*a, **kw)
            finally:
                timings[name] += time.perf_counter() - t
                cpu_timings[name] += time.process_time() - c

        return wrapper

    sb.load_catalog = timed("load_catalog", sb.load_catalog)
    sb.load_new_products = timed("load_new", sb.load_new_products)
    sb.fit_vocabulary = timed("vocab", sb.fit_vocabulary)
    pl.Runtime.index = timed("index_open", pl.Runtime.index)  # builds the providers (local: imports its stack)
    HitIndex.ensure = timed("milvus_ensure", HitIndex.ensure)
    ch.submit_batch = timed("submit_batch", ch.submit_batch)
    ch.send = timed("enqueue", ch.send)  # the messages and the enqueued_at stamps

    t = time.perf_counter()
    ctx = pl.get_runtime()  # settings + Alembic migrations on the fresh database
    init_s = time.perf_counter() - t
    import_s = t - t_start
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    profiler = None
    if os.environ.get("BENCH_SUBMIT_PROFILE"):
        import cProfile

        profiler = cProfile.Profile()
    pg_before = pg_backend_cpu(ctx.db_url)
    t, cpu = time.perf_counter(), time.process_time()
    if profiler:
        profiler.enable()
    sub = ch.submit(catalog, new, out, presets=presets.split(","), rt=ctx)
    if profiler:
        profiler.disable()
        profiler.dump_stats(os.environ["BENCH_SUBMIT_PROFILE"])
    submit_s = time.perf_counter() - t
    # CPU of this process only (not Redis' or PostgreSQL's): on a shared, loaded machine wall time
    # stretches with the load, this much less
    submit_cpu_s = time.process_time() - cpu
    pg_cpu_s = sum(c - pg_before.get(pid, 0.0) for pid, c in pg_backend_cpu(ctx.db_url).items())
    rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result.write_text(
        json.dumps(
            {
                "mode": mode,
                "batch_id": sub.batch_id,
                "hit_chunks": len(sub.hit_chunks),
                "hit_jobs": sum(map(len, sub.hit_chunks)),
                "sku_jobs": len(sub.sku_jobs),
                "rejected": sub.rejected,
                "chains": len(sub.hit_chunks) + len(sub.sku_jobs),
                "import_s": import_s,
                "init_db_s": init_s,
                "submit_s": submit_s,
                "submit_cpu_s": submit_cpu_s,
                "pg_cpu_s": pg_cpu_s,
                **{f"{k}_s": v for k, v in timings.items()},
                **{f"{k}_cpu_s": v for k, v in cpu_timings.items()},
                "rss_before_submit_mb": rss_before / 1024,
                "rss_peak_mb": rss_peak / 1024,
            }
        )
    )


# --- parent ---------------------------------------------------------------------------------------


def make_data(work: Path, sizes: list[int], copy: bool) -> tuple[Path, dict[int, Path]]:
    """The demo catalog, and one new-products folder per size (rows cycle through the 6 demo flat-lays)."""
    from hitline.demo.sampledata import generate_demo

    catalog, demo_new = generate_demo(work / "demo")
    with open(demo_new / "new_products.csv", newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header, demo_rows = next(reader), list(reader)
    folders = {}
    for n in sizes:
        folder = work / f"new-{n}"
        (folder / "new_products").mkdir(parents=True)
        rows = []
        for i in range(n):
            src_row = demo_rows[i % len(demo_rows)]
            new_id = f"NEW{i + 1:05d}"
            src = demo_new / src_row[1]
            dst = folder / "new_products" / f"{new_id}{src.suffix}"
            (shutil.copyfile if copy else os.link)(src, dst)
            rows.append([new_id, f"new_products/{dst.name}", *src_row[2:]])
        with open(folder / "new_products.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(rows)
        folders[n] = folder
    return catalog, folders


def _admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as con:
        con.execute(sql)


def _redis():
    import redis

    return redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB)


def queue_lengths(r) -> tuple[dict[str, int], int]:
    """LLEN of each queue (kombu's Redis transport: one list per queue, plus one per priority step),
    and the messages in any list key at all (to catch messages routed elsewhere)."""
    sep = "\x06\x16"
    per_queue = {q: 0 for q in QUEUES}
    total = 0
    for key in r.scan_iter(count=1000):
        if r.type(key) != b"list":
            continue
        n = r.llen(key)
        total += n
        name = key.decode().split(sep)[0]
        if name in per_queue:
            per_queue[name] += n
    return per_queue, total


def run_size(
    work: Path,
    catalog: Path,
    new: Path,
    n: int,
    presets: str,
    timeout: float,
    mode: str = "header",
    src: Path | None = None,
    label: str | None = None,
    profile: Path | None = None,
) -> dict[str, Any]:
    """One submission of N SKUs in a child process; `src` runs another checkout's code (the baseline)."""
    import psycopg

    label = label or mode
    dbname = f"bench_submit_{secrets.token_hex(3)}_{n}"
    tag = label.replace(":", "-").replace("/", "-")
    data_dir, out, result = work / f"data-{n}-{tag}", work / f"out-{n}-{tag}", work / f"result-{n}-{tag}.json"
    r = _redis()
    r.flushdb()
    _admin(f'CREATE DATABASE "{dbname}"')
    try:
        env = {
            **os.environ,
            "HITLINE_DATA_DIR": str(data_dir),
            "HITLINE_DATABASE_URL": PG_APP.format(db=dbname),
            "HITLINE_BROKER_URL": BROKER,
            "HITLINE_PROVIDER": "local",
        }
        for key in ("HITLINE_MILVUS_URI", "HITLINE_OPENROUTER_API_KEY", "HITLINE_REDIS_URL", "HITLINE_COLLECTION"):
            env.pop(key, None)
        if src is not None:  # found before the editable install of this checkout
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), env.get("PYTHONPATH")]))
        if profile is not None:
            env["BENCH_SUBMIT_PROFILE"] = str(profile.parent / f"{profile.stem}-{n}-{tag}{profile.suffix or '.prof'}")
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            str(catalog),
            str(new),
            str(out),
            presets,
            str(result),
            mode,
        ]
        t = time.perf_counter()
        proc = subprocess.run(
            cmd,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=src or Path(__file__).resolve().parent.parent,
        )
        wall = time.perf_counter() - t
        if proc.returncode != 0:
            raise SystemExit(f"N={n}: child failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
        res = json.loads(result.read_text())
        per_queue, in_lists = queue_lengths(r)
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{dbname}") as con:
            counts = dict(con.execute("select kind, count(*) from job group by kind").fetchall())
            batches = con.execute("select count(*) from batch").fetchone()[0]
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        r.flushdb()
        shutil.rmtree(data_dir, ignore_errors=True)
    messages = sum(per_queue.values())
    res.update(
        {
            "n": n,
            "label": label,
            "load_avg_after": os.getloadavg(),
            "wall_s": wall,
            "queues": per_queue,
            "messages": messages,
            "messages_in_any_list": in_lists,
            "db_hit_rows": counts.get("hit", 0),
            "db_sku_rows": counts.get("sku", 0),
            "db_batches": batches,
            "load_s": res["load_catalog_s"] + res["load_new_s"],
            **{
                f"db{c}_s": res[f"submit_batch{c}_s"]
                - sum(res[f"{k}{c}_s"] for k in ("load_catalog", "load_new", "vocab", "index_open", "milvus_ensure"))
                for c in ("", "_cpu")
            },
        }
    )
    res["ok_rows"] = res["db_sku_rows"] == n and res["db_hit_rows"] == res["hit_jobs"] and res["rejected"] == 0
    res["ok_messages"] = messages == res["chains"] == in_lists
    return res


def baseline_tree(work: Path, ref: str) -> Path:
    """The code of git `ref` (e.g. main) as files, for the child's PYTHONPATH: the old code, same run."""
    root = Path(__file__).resolve().parent.parent
    dest = work / "baseline-src"
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", str(root), "archive", ref, "hitline", "db", "tasks", "workers"], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--child":
        catalog, new, out, presets, result, mode = sys.argv[2:8]
        child(Path(catalog), Path(new), Path(out), presets, Path(result), mode)
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100,1000,3000", help="comma list of SKU counts; the first is the baseline")
    ap.add_argument("--skus", type=int, default=None, help="shorthand for --sizes 100,N")
    ap.add_argument(
        "--full-decode",
        action="store_true",
        help="also run every size with the old submit path (every image fully decoded), as a baseline",
    )
    ap.add_argument(
        "--baseline",
        metavar="GIT_REF",
        default=None,
        help="also run every size with the code of this git ref (e.g. main), right before this tree's",
    )
    ap.add_argument(
        "--profile", type=Path, default=None, help="cProfile each submission; stats go to PROFILE-<N>-<mode>.prof"
    )
    ap.add_argument(
        "--target-s", type=float, default=10.0, help="report whether the largest size is submitted within this"
    )
    ap.add_argument("--presets", default="thumbnail,banner")
    ap.add_argument("--copy", action="store_true", help="copy the images instead of hard-linking them")
    ap.add_argument("--timeout", type=float, default=600.0, help="per size, seconds")
    ap.add_argument("--workdir", type=Path, default=None, help="data (default: a temp dir, removed)")
    ap.add_argument("--json", type=Path, default=None, help="write the results as JSON here")
    opts = ap.parse_args(argv)
    sizes = [100, opts.skus] if opts.skus else [int(s) for s in opts.sizes.split(",") if s.strip()]
    if not sizes or min(sizes) < 1:
        ap.error("--sizes must be >= 1")

    work = opts.workdir or Path(tempfile.mkdtemp(prefix="bench-submit-"))
    work.mkdir(parents=True, exist_ok=True)
    runs = []
    load_before = os.getloadavg()
    try:
        t = time.perf_counter()
        catalog, folders = make_data(work, sizes, opts.copy)
        src = baseline_tree(work, opts.baseline) if opts.baseline else None
        console.print(
            f"[dim]data: 48 hits, sizes {sizes} ({'copied' if opts.copy else 'hard-linked'} images), "
            f"{time.perf_counter() - t:.1f} s[/]"
        )
        variants = [("header", None, f"baseline:{opts.baseline}")] if src else []
        variants += [("header", None, "header")] + ([("full-decode", None, "full-decode")] if opts.full_decode else [])
        for n in sizes:
            for mode, _, label in variants:
                r = run_size(
                    work,
                    catalog,
                    folders[n],
                    n,
                    opts.presets,
                    opts.timeout,
                    mode,
                    src=src if label.startswith("baseline:") else None,
                    label=label,
                    profile=opts.profile,
                )
                console.print(
                    f"[dim]N={n} {label}: submit {r['submit_s']:.2f} s (CPU {r['submit_cpu_s']:.2f} s), "
                    f"{r['messages']} messages, rows ok {r['ok_rows']}, messages ok {r['ok_messages']}, "
                    f"load {r['load_avg_after'][0]:.1f}[/]"
                )
                runs.append(r)
    finally:
        try:
            _redis().flushdb()
        finally:
            if opts.workdir is None:
                shutil.rmtree(work, ignore_errors=True)

    table = Table(
        title=f"tasks.chains.submit: 48 hits + N new SKUs, PostgreSQL + Redis broker, no workers, "
        f"{os.cpu_count()} cores"
    )
    for c in (
        "N",
        "code",
        "wall: load new",
        "fixed",
        "rows",
        "enqueue",
        "total",
        "CPU: load new",
        "fixed",
        "rows",
        "enqueue",
        "total",
        "µs/SKU",
        "marginal µs/SKU",
        "PG CPU s",
        "wall vs old",
        "CPU vs old",
        f"<= {opts.target_s:g} s",
        "msgs (embed)",
        "rows sku+hit",
        "RSS MB peak (pre)",
        "load",
    ):
        table.add_column(c, justify="right")
    for r in runs:
        n = r["n"]
        base = next(b for b in runs if b["label"] == r["label"])  # the first size of the same code
        old = next(
            (
                b
                for b in runs
                if b["n"] == n
                and b["label"] != r["label"]
                and b["label"] in (f"baseline:{opts.baseline}", "full-decode")
            ),
            None,
        )
        for c in ("", "_cpu"):
            r[f"fixed{c}_s"] = sum(r[f"{k}{c}_s"] for k in ("load_catalog", "vocab", "index_open", "milvus_ensure"))
            r[f"variable{c}_s"] = r[f"load_new{c}_s"] + r[f"db{c}_s"] + r[f"enqueue{c}_s"]
        r["us_per_sku"] = {
            "load_new": r["load_new_s"] / n * 1e6,
            "rows": r["db_s"] / n * 1e6,
            "enqueue": r["enqueue_s"] / n * 1e6,
            "variable": r["variable_s"] / n * 1e6,
            "variable_cpu": r["variable_cpu_s"] / n * 1e6,
            "total": r["submit_s"] / n * 1e6,
        }
        r["ratio_vs_first"] = {k: v / base["us_per_sku"][k] for k, v in r["us_per_sku"].items()}
        r["old_label"] = old["label"] if old else None
        r["wall_vs_old"] = r["submit_s"] / old["submit_s"] if old else None
        r["cpu_vs_old"] = r["submit_cpu_s"] / old["submit_cpu_s"] if old else None
        r["within_target"] = r["submit_s"] <= opts.target_s
        # CPU of each SKU beyond the first size: fixed per-submission costs cancel out
        r["marginal_us_per_sku_variable_cpu"] = (
            (r["variable_cpu_s"] - base["variable_cpu_s"]) / (n - base["n"]) * 1e6 if n != base["n"] else None
        )
        marginal = r["marginal_us_per_sku_variable_cpu"]
        table.add_row(
            str(n),
            r["label"],
            *(
                f"{r[k]:.2f}"
                for k in (
                    "load_new_s",
                    "fixed_s",
                    "db_s",
                    "enqueue_s",
                    "submit_s",
                    "load_new_cpu_s",
                    "fixed_cpu_s",
                    "db_cpu_s",
                    "enqueue_cpu_s",
                    "submit_cpu_s",
                )
            ),
            f"{r['us_per_sku']['variable_cpu']:.0f}",
            "-" if marginal is None else f"{marginal:.0f}",
            f"{r['pg_cpu_s']:.2f}",
            "-" if old is None else f"{r['wall_vs_old']:.2f}x",
            "-" if old is None else f"{r['cpu_vs_old']:.2f}x",
            "yes" if r["within_target"] else "no",
            f"{r['messages']} ({r['queues']['embed']})",
            f"{r['db_sku_rows']}+{r['db_hit_rows']}" + ("" if r["ok_rows"] else " !"),
            f"{r['rss_peak_mb']:.0f} ({r['rss_before_submit_mb']:.0f})",
            f"{r['load_avg_after'][0]:.1f}",
        )
    console.print(table)
    first = runs[0]
    console.print(
        "[dim]code header = this tree (submit reads image headers, pixels decoded in the embed stage); "
        "baseline:REF = the code of git REF, run just before it; full-decode = this tree with every image "
        "decoded at submit. load new = load_new_products; fixed = load_catalog + "
        "fit_vocabulary + Runtime.index (builds the providers) + HitIndex.ensure (48 hits, independent of N); rows = the rest of submit_batch "
        "(one transaction); enqueue = send (messages + enqueued_at stamps); CPU = user+sys of the "
        "submitting process during submit(); PG CPU = the PostgreSQL backends of its database; µs/SKU = CPU of load new + rows + enqueue per SKU; marginal = the same "
        "beyond the first size, (var - first var) / (N - first N); "
        "load = 1-min load average after the run. Start-up (imports, "
        f"migrations) excluded: {first['import_s']:.1f} s + {first['init_db_s']:.1f} s at N={first['n']}. "
        f"Load average before/after: {load_before} / {os.getloadavg()}.[/]"
    )
    bad = [(r["n"], r["label"]) for r in runs if not (r["ok_rows"] and r["ok_messages"])]
    if bad:
        console.print(f"[red]correctness check failed for {bad}[/]")
    write_results(opts.json, "submit", opts, runs, load_before=load_before, load_after=os.getloadavg())
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
