"""Flower tells the job table's story, on real processes (private Redis, PostgreSQL, milvus-lite server,
two `hitline worker`s, the fake OpenRouter as its own process, Flower behind basic auth): a provider 500
shows as RETRY events carrying the provider's message while it lasts and the task ends SUCCESS once it
clears, as many RETRY events as the job table has failed render attempts and the fake served 500s; a 402
ends the task as FAILURE with the reason; no task is left STARTED."""

from __future__ import annotations

import csv
import re
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from .conftest import Line, standard_workers
from testkit.services import Flower

RENDER = "hitline.render"
NO_CREDIT = "no credit (402): google/gemini-3.1-flash-image-preview: Insufficient credits"
PROVIDER_500 = "provider error (500): google/gemini-3.1-flash-image-preview: Internal Server Error"


def _rows(src: Path, dest: Path, keep: slice) -> Path:
    """A new-products folder with some rows of `src` (each SKU has its own flat-lay bytes)."""
    rows = list(csv.DictReader(open(src / "new_products.csv", encoding="utf-8")))[keep]
    (dest / "new_products").mkdir(parents=True)
    for r in rows:
        shutil.copy(src / r["image_path"], dest / r["image_path"])
    with open(dest / "new_products.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return dest


def _render_tasks(flower: Flower, job_ids: set[int]) -> dict[int, dict[str, Any]]:
    """Flower's render task of each job (its args are the job id)."""
    out = {}
    for t in flower.tasks(RENDER).values():
        m = re.fullmatch(r"[(\[](\d+),?[)\]]", t.get("args") or "")
        if m and int(m.group(1)) in job_ids:
            out[int(m.group(1))] = t
    return out


def _render_retries(line: Line, batch: str) -> dict[int, int]:
    """Render attempts the provider refused, per job, from the job table's attempt log."""
    return dict(
        line.sql(
            "SELECT j.id, count(a.id) FROM job j LEFT JOIN attempt a ON a.job_id = j.id "
            "AND a.stage = 'render' AND a.outcome = 'retry' WHERE j.batch_id = :b AND j.kind = 'sku' "
            "GROUP BY j.id",
            b=batch,
        )
    )


@pytest.mark.timeout(300)
def test_flower_shows_provider_retries_failures_and_no_task_left_started(
    make_line,
    skus_factory,  # noqa: ANN001
    tmp_path: Path,
) -> None:
    line = make_line()
    flower = Flower(line.root, line.env).start()
    try:
        assert requests.get(flower.url + "/api/tasks", timeout=10).status_code == 401  # no credentials, no API
        standard_workers(line)
        # Flower hears both workers (their events reach it) before anything is submitted
        line.wait_until("Flower hears both workers", lambda: flower.metric("flower_worker_online") >= 2, 90)
        skus = skus_factory(5)

        # 1. every render answers 500 until the fault clears
        line.fake.configure(fail={"image": "500"})
        batch = line.submit(_rows(skus, tmp_path / "retried", slice(0, 3)))
        jobs = set(_render_retries(line, batch))
        # while it lasts, Flower shows each render task as RETRY with the provider's message (polled: a
        # task's state moves on to STARTED when its retry runs)
        seen_retry: set[int] = set()

        def retried_in_flower() -> bool:
            seen_retry.update(
                j
                for j, t in _render_tasks(flower, jobs).items()
                if t["state"] == "RETRY" and t["retries"] >= 1 and PROVIDER_500 in (t["exception"] or "")
            )
            return seen_retry == jobs and min(_render_retries(line, batch).values()) >= 2

        line.wait_until("Flower shows every render as RETRY", retried_in_flower, 60, poll=0.2)
        line.fake.configure(fail={})
        line.wait_terminal(batch, 90)
        assert line.states(batch) == {("done", "done"): len(jobs)}
        line.wait_until(
            "Flower shows the renders done",
            lambda: [t["state"] for t in _render_tasks(flower, jobs).values()] == ["SUCCESS"] * len(jobs),
            30,
        )
        retries = _render_retries(line, batch)
        shown = _render_tasks(flower, jobs)
        # one Celery retry per refused attempt: the task's retry count is the job table's, and each
        # task keeps the provider's error of its last RETRY beside its SUCCESS
        assert {j: t["retries"] for j, t in shown.items()} == retries
        assert all(PROVIDER_500 in t["exception"] for t in shown.values()), shown
        served_500 = sum(1 for r in line.fake.records() if r.get("fault") == "500")
        assert (
            flower.metric("flower_events_total", type="task-retried", task=RENDER)
            == sum(retries.values())
            == served_500
        )

        # 2. a terminal answer: the SKU fails with the reason, its task ends FAILURE with the same reason
        line.fake.configure(fail={"image": "402"})
        failing = line.submit(_rows(skus, tmp_path / "refused", slice(3, 5)))
        line.wait_terminal(failing, 90)
        rows = line.sql("SELECT id, state, error FROM job WHERE batch_id = :b AND kind = 'sku'", b=failing)
        assert [(st, NO_CREDIT in (err or "")) for _, st, err in rows] == [("failed", True)] * 2, rows
        failed_ids = {i for i, _, _ in rows}
        line.wait_until(
            "Flower shows the failures",
            lambda: [t["state"] for t in _render_tasks(flower, failed_ids).values()] == ["FAILURE"] * 2,
            30,
        )
        for t in _render_tasks(flower, failed_ids).values():
            assert NO_CREDIT in t["exception"] and t["retries"] == 0, t
        assert flower.metric("flower_events_total", type="task-failed", task=RENDER) == 2

        # 3. once every job has ended, no task of the line is left STARTED (nor waiting to start)
        def still_open() -> list[tuple[str, str, str]]:
            return [
                (t["name"], t["state"], t["args"])
                for t in flower.tasks().values()
                if t["name"].startswith("hitline.") and t["state"] in ("STARTED", "RECEIVED", "RETRY")
            ]

        deadline = time.monotonic() + 30
        while still_open() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not still_open(), still_open()
        print(
            f"\nFlower: {sum(retries.values())} render RETRY events ({served_500} provider 500s), "
            f"2 FAILURE (402); {len(flower.tasks())} tasks listed"
        )
    finally:
        flower.proc.stop()
