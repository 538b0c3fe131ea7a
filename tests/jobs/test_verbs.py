"""One door per operator verb (hitline/jobs/verbs.py): the same scenario - submit, cancel, resume, then
the batch finishes - through the CLI, the HTTP API and the Celery contract leaves the same job table.

The broker is the in-memory one with no worker while the verbs run (as a distributed set-up whose workers
are busy elsewhere); a worker then drains it. Before the verbs, `hitline resume` after `hitline cancel`
re-enqueued 0 chains (it skipped the reopen the other doors did) and the batch stayed cancelled."""

from __future__ import annotations

import csv
import re
import shutil
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from db.models import Batch, Job
from db.session import session_scope
from hitline.jobs.context import get_runtime, reset_runtime


def _subset(src: Path, dest: Path, csv_name: str, n: int) -> Path:
    rows = list(csv.DictReader((src / csv_name).open()))[:n]
    for row in rows:
        (dest / row["image_path"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src / row["image_path"], dest / row["image_path"])
    with (dest / csv_name).open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return dest


def _purge() -> None:
    """Messages another test left in the process's in-memory broker name job ids of another table."""
    from workers.app import app

    app.control.purge()


def _cli(catalog: Path, new: Path, out: Path) -> str:
    from typer.testing import CliRunner

    from hitline.cli import app

    def run(*argv: str) -> str:
        res = CliRunner().invoke(app, list(argv))
        assert res.exit_code == 0, res.output
        return res.output

    batch = re.search(
        r"batch (\S+):",
        run(
            "run",
            "--catalog",
            str(catalog),
            "--new",
            str(new),
            "--out",
            str(out),
            "--presets",
            "thumbnail",
            "--no-wait",
        ),
    ).group(1)
    assert "waiting jobs stopped" in run("cancel", batch)
    assert "re-enqueued 0 chains" not in run("resume", batch, "--no-wait")
    return batch


def _http(catalog: Path, new: Path, out: Path) -> str:
    from fastapi.testclient import TestClient

    from hitline.api import create_app
    from hitline.jobs import control

    rt = get_runtime()
    with session_scope(rt.db_url) as s:
        token = control.create_token(s, "doors")
    settings = rt.settings.model_copy(update={"api_out_dir": out})
    with TestClient(create_app(settings)) as c:
        c.headers["Authorization"] = f"Bearer {token}"
        r = c.post("/batches", json={"catalog": str(catalog), "new": str(new), "presets": ["thumbnail"]})
        assert r.status_code == 201, r.text
        batch = r.json()["batch_id"]
        assert c.post(f"/batches/{batch}/cancel").json()["jobs"] > 0
        assert c.post(f"/batches/{batch}/resume").json()["jobs"] > 0
    return batch


def _contract(catalog: Path, new: Path, out: Path) -> str:
    from tasks import contract

    batch = contract.submit_batch({"catalog": str(catalog), "new": str(new), "presets": ["thumbnail"]})
    assert contract.cancel_batch({"batch_id": batch}) > 0
    assert contract.resume_batch({"batch_id": batch}) > 0
    return batch


DOORS = {"cli": _cli, "http": _http, "contract": _contract}


def _finish(batch: str, timeout: float = 180.0) -> list[tuple[str, str, str, str, str | None]]:
    """Run a worker until the batch has no open job; the batch's job table, in a comparable form."""
    from db import crud
    from workers.embedded import embedded_worker

    rt = get_runtime()
    deadline = time.monotonic() + timeout
    with embedded_worker(2):
        while True:
            with session_scope(rt.db_url) as s:
                if not any(j.state in crud.OPEN for j in crud.jobs(s, batch)):
                    break
            assert time.monotonic() < deadline, "the batch did not finish"
            time.sleep(0.2)
    with session_scope(rt.db_url) as s:
        assert s.get(Batch, batch).cancelled_at is None
        rows = s.execute(
            select(Job.kind, Job.item_id, Job.stage, Job.state, Job.error)
            .where(Job.batch_id == batch)
            .order_by(Job.kind, Job.item_id)
        ).all()
    return [tuple(r) for r in rows]


@pytest.mark.timeout(600)
def test_submit_cancel_resume_gives_the_same_table_through_every_door(
    hitline_env: Path,
    demo_data,  # noqa: ANN001
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    catalog = _subset(demo_data[0], hitline_env / "catalog", "products.csv", 8)
    new = _subset(demo_data[1], hitline_env / "new", "new_products.csv", 2)
    # a broker (the in-memory one, no worker): the CLI returns at once and `resume` sends instead of running
    monkeypatch.setenv("HITLINE_BROKER_URL", "memory://")
    tables = {}
    for door, scenario in DOORS.items():
        monkeypatch.setenv("HITLINE_DATA_DIR", str(hitline_env / door))
        reset_runtime()
        _purge()
        tables[door] = _finish(scenario(catalog, new, hitline_env / door / "out"))
        _purge()
    skus = [r for r in tables["cli"] if r[0] == "sku"]
    assert len(skus) == 2 and {r[2:] for r in skus} == {("done", "done", None)}, tables["cli"]
    assert tables["cli"] == tables["http"] == tables["contract"]
