"""Infrastructure restarted mid-batch: Redis (every message lost), PostgreSQL (every connection cut),
the milvus-lite server. Workers stay up and reconnect by themselves, nobody runs `hitline resume`, and
every SKU ends done with one paid render."""

from __future__ import annotations

import json
import time
from pathlib import Path

from .conftest import Line, check_no_double_render

N_SKUS = 12
BOUND_S = 120.0  # from the restart to the last SKU done (lease 6 s, grace 4 s, a pass every 2 s)


def _one_worker(line: Line) -> None:
    line.workers.start("embed,index,retrieve,analyze,render", concurrency=6, name="all")


def _outputs_agree(line: Line, batch: str) -> None:
    """No job contradicts its outputs: each done SKU lists files that exist at their preset's size, and
    every image on disk belongs to a done SKU."""
    from PIL import Image

    listed = set()
    for (result,) in line.sql("SELECT result FROM job WHERE batch_id = :b AND kind = 'sku'", b=batch):
        result = json.loads(result) if isinstance(result, str) else result
        for o in result["render"]["outputs"]:
            with Image.open(o["path"]) as im:
                assert im.size == (o["width"], o["height"]), o
            listed.add(Path(o["path"]).resolve())
    on_disk = {p.resolve() for p in (line.root / "out" / batch).rglob("*.png") if p.name != "contact_sheet.png"}
    assert on_disk == listed, on_disk ^ listed


def test_redis_restart_loses_messages_and_reconciliation_resends_them(make_line, skus_factory) -> None:  # noqa: ANN001
    line = make_line(fake_args=("--latency", "image=0.8:1.2"))
    _one_worker(line)
    batch = line.submit(skus_factory(N_SKUS))
    line.wait_until("renders under way", lambda: line.states(batch)[("done", "done")] >= 2, 180)
    before = line.states(batch)
    line.redis.restart(down_s=1.0)  # no persistence: queued and unacked messages are gone
    restarted = time.monotonic()
    took = line.wait_terminal(batch, BOUND_S)
    assert line.states(batch) == {("done", "done"): N_SKUS}, (before, line.states(batch))
    assert all(w.alive() for w in line.workers.procs.values())  # reconnected, not restarted
    check_no_double_render(line, batch, N_SKUS)
    _outputs_agree(line, batch)
    print(f"\nRedis restart with {dict(before)}: batch done {time.monotonic() - restarted:.1f} s later ({took:.1f})")


def test_postgres_restart_cuts_every_connection(make_line, skus_factory) -> None:  # noqa: ANN001
    line = make_line(fake_args=("--latency", "image=0.8:1.2"))
    _one_worker(line)
    batch = line.submit(skus_factory(N_SKUS))
    line.wait_until("renders under way", lambda: line.states(batch)[("done", "done")] >= 2, 180)
    before = line.states(batch)
    line.pg.restart(down_s=3.0)  # immediate: transactions in flight are cut, every pooled connection dies
    restarted = time.monotonic()
    line.wait_terminal(batch, BOUND_S)
    assert line.states(batch) == {("done", "done"): N_SKUS}, (before, line.states(batch))
    assert all(w.alive() for w in line.workers.procs.values())  # same processes: their pools recovered
    # a render whose call finished while the table was down may be repeated once (its reservation
    # was never settled); it is charged once either way
    check_no_double_render(line, batch, N_SKUS, cut_mid_flight=6)
    _outputs_agree(line, batch)
    print(f"\nPostgreSQL restart with {dict(before)}: batch done {time.monotonic() - restarted:.1f} s later")


def test_milvus_restart_is_retried(make_line, skus_factory) -> None:  # noqa: ANN001
    line = make_line(fake_args=("--latency", "chat=0.3:0.5", "--latency", "image=0.5:0.8"))
    _one_worker(line)
    batch = line.submit(skus_factory(N_SKUS))
    line.wait_until(
        "SKUs at retrieve",
        lambda: sum(n for (st, _), n in line.states(batch).items() if st in ("analyze", "render", "done")) >= 2,
        180,
    )
    before = line.states(batch)
    line.milvus.restart(down_s=3.0)
    restarted = time.monotonic()
    line.wait_terminal(batch, BOUND_S)
    states = line.states(batch)
    failed = line.sql("SELECT item_id, error FROM job WHERE batch_id = :b AND state = 'failed'", b=batch)
    assert states == {("done", "done"): N_SKUS}, (before, states, failed)
    check_no_double_render(line, batch, N_SKUS)
    print(f"\nmilvus-lite restart with {dict(before)}: batch done {time.monotonic() - restarted:.1f} s later")
