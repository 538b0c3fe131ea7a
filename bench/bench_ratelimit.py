"""Global rate limit across processes: client retries alone vs a shared RedisLimiter, against the fake.

The fake OpenRouter runs in this process with a per-model limit of R requests per W seconds. N worker
processes x T threads send embedding requests through OpenRouterClient until a fixed number of
requests has been answered (or a deadline passes):

  (a) baseline: no shared limiter; each client only retries its 429s (Retry-After wins);
  (b) RedisLimiter(Limit(rpm=R, window_s=W)) shared by all processes, same clients otherwise.

Reported: requests completed / given up, the 429s the fake answered (its own stats), the achieved rate
against the limit, and the ratio of 429s (b)/(a), measured in the same run.

    python bench/bench_ratelimit.py                       # 4 processes x 4 threads, 10 per 2 s, 60 requests
    python bench/bench_ratelimit.py --requests 120 --processes 8 --redis-url redis://127.0.0.1:6379/0
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import random
import threading
import time
import uuid
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

MODEL = "nvidia/llama-nemotron-embed-vl-1b-v2"
console = Console(width=150)


def _worker(
    wid: int,
    base_url: str,
    mode: str,
    args: dict[str, Any],
    tickets: Any,
    deadline_v: Any,
    ready: Any,
    go: Any,
    out: Any,
) -> None:
    """One worker process: T threads, each with its own client, taking tickets until none are left."""
    import logging

    from hitline.errors import ProviderError, RetryableProviderError
    from hitline.providers.openrouter.client import OpenRouterClient
    from hitline.providers.ratelimit import Limit, RedisLimiter

    logging.getLogger("hitline.openrouter").setLevel(logging.ERROR)  # one warning per retry: noise here
    limiter = None
    if mode == "redis":
        import redis

        lim = Limit(rpm=args["rpm"], max_in_flight=args["max_in_flight"], window_s=args["window_s"])
        limiter = RedisLimiter(
            redis.Redis.from_url(args["redis_url"]), {"default": lim, MODEL: lim}, key_prefix=args["key_prefix"]
        )
    lock = threading.Lock()
    result: dict[str, Any] = {"ok": 0, "gave_up": 0, "other_errors": 0, "done_at": [], "errors": []}

    def take() -> bool:
        with tickets.get_lock():
            if tickets.value <= 0:
                return False
            tickets.value -= 1
            return True

    def thread_main(tid: int) -> None:
        # one HTTP attempt per post; retries as the stage task does them (Retry-After wins, else capped
        # exponential backoff with jitter), within the same budget of attempts
        client = OpenRouterClient(base_url, "sk-bench", timeout_s=30, limiter=limiter, rate_wait_max_s=30)
        payload = {"model": MODEL, "input": [f"worker {wid} thread {tid} bench text"]}
        deadline = deadline_v.value
        while time.time() < deadline and take():
            for attempt in range(args["max_retries"] + 1):
                try:
                    client.post("/embeddings", payload, MODEL)
                    with lock:
                        result["ok"] += 1
                        result["done_at"].append(time.time())
                    break
                except RetryableProviderError as exc:
                    if attempt == args["max_retries"]:
                        with lock:
                            result["gave_up" if getattr(exc, "status", None) == 429 else "other_errors"] += 1
                        break
                    wait = exc.retry_after if exc.retry_after is not None else min(30.0, 0.2 * 2**attempt)
                    time.sleep(wait * (1.0 + 0.1 * random.random()))
                except ProviderError as exc:
                    with lock:
                        result["other_errors"] += 1
                        result["errors"].append(str(exc)[:200])
                    break

    threads = [threading.Thread(target=thread_main, args=(t,), daemon=True) for t in range(args["threads"])]
    ready.wait()  # every process imported and built its clients: start together
    go.wait()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=max(1.0, deadline_v.value - time.time() + 60))
    out.put(result)


def run_mode(mode: str, fake: Any, opts: argparse.Namespace, margin: float = 0.0) -> dict[str, Any]:
    ctx = mp.get_context("spawn")  # the fake's server thread lives in this process: do not fork it
    tickets = ctx.Value("i", opts.requests)
    ready = ctx.Barrier(opts.processes + 1)
    go = ctx.Event()
    out = ctx.Queue()
    fake.reset()
    key_prefix = f"bench:rl:{uuid.uuid4().hex[:8]}"
    shared = {
        "rpm": opts.rpm,
        "window_s": opts.window + margin,
        "max_in_flight": opts.max_in_flight,
        "redis_url": opts.redis_url,
        "key_prefix": key_prefix,
        "threads": opts.threads,
        "max_retries": opts.max_retries,
    }
    deadline = ctx.Value("d", 0.0)  # set once every process is up, read after `go`
    procs = []
    for w in range(opts.processes):
        p = ctx.Process(
            target=_worker, args=(w, fake.base_url, mode, shared, tickets, deadline, ready, go, out), daemon=True
        )
        p.start()
        procs.append(p)
    ready.wait(timeout=120)
    start = time.time()
    deadline.value = start + opts.max_seconds
    go.set()
    results = []
    for _ in procs:
        results.append(out.get(timeout=opts.max_seconds + 120))
    for p in procs:
        p.join(timeout=10)
    done_at = sorted(t for r in results for t in r["done_at"])
    elapsed = (done_at[-1] - start) if done_at else time.time() - start
    stats = fake.stats()
    if mode == "redis":
        import redis

        r = redis.Redis.from_url(opts.redis_url)
        keys = list(r.scan_iter(f"{key_prefix}:*"))
        if keys:
            r.delete(*keys)
    ok = sum(r["ok"] for r in results)
    # a sliding window lets R requests through at once at the start; the steady rate leaves that burst out
    span = done_at[-1] - done_at[0] if len(done_at) > 1 else 0.0
    steady = (ok - opts.rpm) / span if ok > opts.rpm and span > 0 else None
    return {
        "mode": mode,
        "limiter_window_s": opts.window + margin if mode == "redis" else None,
        "ok": ok,
        "gave_up": sum(r["gave_up"] for r in results),
        "other_errors": sum(r["other_errors"] for r in results),
        "errors_sample": [e for r in results for e in r["errors"]][:3],
        "provider_429": int(stats["statuses"].get("429", 0)),
        "provider_requests": int(stats["total"]),
        "elapsed_s": elapsed,
        "rate_per_s": ok / elapsed if elapsed > 0 else 0.0,
        "steady_rate_per_s": steady,
        "provider_requests_per_ok": stats["total"] / ok if ok else None,
        "unfinished": max(
            0, opts.requests - ok - sum(r["gave_up"] for r in results) - sum(r["other_errors"] for r in results)
        ),
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--processes", type=int, default=4)
    ap.add_argument("--threads", type=int, default=4, help="threads per process")
    ap.add_argument("--requests", type=int, default=60, help="requests to complete per mode (all processes)")
    ap.add_argument("--rpm", type=int, default=10, help="requests allowed per window (fake and limiter)")
    ap.add_argument("--window", type=float, default=2.0, help="window W in seconds")
    ap.add_argument(
        "--retry-after",
        type=float,
        default=0.5,
        help="Retry-After the fake sends on 429 (negative = until the window frees a slot)",
    )
    ap.add_argument("--max-retries", type=int, default=5, help="OpenRouterClient retries per request")
    ap.add_argument("--max-in-flight", type=int, default=64, help="limiter in-flight cap (high: rate only)")
    ap.add_argument(
        "--latency",
        type=float,
        nargs=2,
        default=(0.01, 0.03),
        metavar=("MIN", "MAX"),
        help="fake embeddings latency, seconds",
    )
    ap.add_argument("--max-seconds", type=float, default=50.0, help="deadline per mode")
    ap.add_argument(
        "--margin",
        type=float,
        default=0.1,
        help="extra row (c): the limiter's window is W + MARGIN s (0 = skip the row)",
    )
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    ap.add_argument("--json", type=Path, default=None, help="write the results as JSON here")
    opts = ap.parse_args(argv)
    if min(opts.processes, opts.threads, opts.requests, opts.rpm) < 1 or opts.window <= 0:
        ap.error("processes, threads, requests, rpm must be >= 1 and window > 0")

    import redis

    from hitline.fake.server import FakeConfig, running_fake

    redis.Redis.from_url(opts.redis_url).ping()  # fail fast, before any process starts
    cfg = FakeConfig(
        rpm={MODEL: opts.rpm},
        rpm_window_s=opts.window,
        retry_after_s=None if opts.retry_after < 0 else opts.retry_after,
        latency={"embeddings": tuple(opts.latency)},
    )
    limit_rate = opts.rpm / opts.window
    rows = []
    with running_fake(cfg) as fake:
        modes = [("none", 0.0), ("redis", 0.0)] + ([("redis", opts.margin)] if opts.margin > 0 else [])
        for mode, margin in modes:
            rows.append(run_mode(mode, fake, opts, margin))
            time.sleep(opts.window)  # let the provider window drain between modes
    base, lim = rows[0], rows[1]
    names = ["(a) retries only", "(b) RedisLimiter", f"(c) RedisLimiter W+{opts.margin:g}s"]
    table = Table(
        title=f"{opts.processes} processes x {opts.threads} threads, {opts.requests} requests, "
        f"limit {opts.rpm} per {opts.window:g} s ({limit_rate:.2f}/s), Retry-After "
        f"{'window' if opts.retry_after < 0 else f'{opts.retry_after:g} s'}"
    )
    for col in (
        "mode",
        "completed",
        "gave up (429)",
        "other errors",
        "provider 429s",
        "provider requests",
        "provider calls per ok",
        "seconds",
        "ok /s",
        "steady ok /s",
        "steady / limit",
        "429s vs (a)",
    ):
        table.add_column(col, justify="left" if col == "mode" else "right", no_wrap=col == "mode")
    for name, r in zip(names, rows):
        ratio = r["provider_429"] / base["provider_429"] if base["provider_429"] else None
        r["ratio_429_vs_a"] = ratio
        steady = r["steady_rate_per_s"]
        r["steady_vs_limit"] = None if steady is None else steady / limit_rate
        per_ok = r["provider_requests_per_ok"]
        table.add_row(
            name,
            str(r["ok"]),
            str(r["gave_up"]),
            str(r["other_errors"]),
            str(r["provider_429"]),
            str(r["provider_requests"]),
            "-" if per_ok is None else f"{per_ok:.2f}",
            f"{r['elapsed_s']:.1f}",
            f"{r['rate_per_s']:.2f}",
            "-" if steady is None else f"{steady:.2f}",
            "-" if steady is None else f"{r['steady_vs_limit']:.2f}",
            "-" if ratio is None else f"{ratio:.3f}",
        )
    console.print(table)
    for r in rows:
        if r["errors_sample"]:
            console.print(f"[yellow]{r['mode']}: sample errors: {r['errors_sample']}[/]")
    console.print(
        "[dim]provider 429s / requests: the fake's own counters. ok /s = completed / (last answer - "
        "start); steady ok /s = (completed - R) / (last - first answer), i.e. without the first "
        "window's free burst; a perfect limiter scores 1.00 steady / limit.[/]"
    )
    if opts.json:
        opts.json.parent.mkdir(parents=True, exist_ok=True)
        opts.json.write_text(
            json.dumps(
                {
                    "bench": "ratelimit",
                    "date": date.today().isoformat(),
                    "machine": platform.platform(),
                    "params": {
                        k: (list(v) if isinstance(v, tuple) else str(v) if isinstance(v, Path) else v)
                        for k, v in vars(opts).items()
                    },
                    "limit_per_s": limit_rate,
                    "baseline": base,
                    "redis_limiter": lim,
                    "redis_limiter_margin": rows[2] if len(rows) > 2 else None,
                    "ratio_429_b_over_a": lim.get("ratio_429_vs_a"),
                },
                indent=2,
            )
        )
        console.print(f"wrote {opts.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
