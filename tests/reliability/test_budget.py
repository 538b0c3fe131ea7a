"""The budget on real processes: two render workers (4 threads each) reserve against one PostgreSQL
charge table. The budget bounds the calls the provider actually answered (the fake's log), every paid
call is a settled charge, the rest is held; `hitline resume --budget` finishes the batch and pays each
image once."""

from __future__ import annotations

import subprocess

import pytest

from .conftest import TERMINAL, check_no_double_render
from testkit.services import BIN

N_SKUS = 8
BUDGET = 0.20  # thumbnail renders are $0.045 each: the batch needs more than twice this


@pytest.mark.timeout(300)
def test_budget_bounds_the_calls_made_across_render_workers(make_line, skus_factory, tmp_path) -> None:  # noqa: ANN001
    line = make_line(fake_args=("--latency", "image=0.5:1.0"))
    line.workers.start("embed,index,retrieve,analyze", concurrency=4, name="front")
    run = subprocess.run(
        [
            str(BIN / "hitline"),
            "run",
            "--catalog",
            str(line.catalog),
            "--new",
            str(skus_factory(N_SKUS)),
            "--out",
            str(tmp_path / "out"),
            "--presets",
            "thumbnail",
            "--budget",
            str(BUDGET),
            "--no-wait",
        ],
        env=line.env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    batch = run.stdout.split("batch ", 1)[1].split(":", 1)[0]
    line._batch = batch
    # the render workers start once every SKU waits for its render: all eight reserve at the same moment
    line.wait_until("every SKU at render", lambda: line.states(batch) == {("render", "pending"): N_SKUS}, 120)
    for name in ("render-a", "render-b"):
        line.workers.start("render", concurrency=4, name=name)
    line.wait_until(
        "every SKU done or held",
        lambda: all(st in (*TERMINAL, "budget_exceeded") for (_, st) in line.states(batch)),
        180,
    )
    held = [st for (_, st) in line.states(batch).elements() if st == "budget_exceeded"]
    spent = line.sql("SELECT coalesce(sum(cost_usd), 0) FROM charge WHERE batch_id = :b", b=batch)[0][0]
    charges = line.render_charges(batch)
    served = line.served_renders()
    assert held and spent <= BUDGET + 1e-9, (held, spent)
    # every render the provider answered is a settled charge, and no other was made
    assert sum(served.values()) == len(charges) == N_SKUS - len(held), (served, charges, held)
    assert all(st == "charged" for _, st, _ in charges), charges

    resume = subprocess.run(
        [str(BIN / "hitline"), "resume", batch, "--budget", "5"],
        env=line.env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert resume.returncode == 0, resume.stdout + resume.stderr
    assert line.states(batch) == {("done", "done"): N_SKUS}
    check_no_double_render(line, batch, N_SKUS)  # held renders were made once, after the resume
