"""The HTTP API as deployed: a `hitline serve` uvicorn process on PostgreSQL and Redis, a real `hitline
worker` process, a milvus-lite server, and the fake OpenRouter switched into faults and back."""

from __future__ import annotations

import io
import time
import zipfile
from pathlib import Path

import pytest
import requests
import sqlalchemy
from PIL import Image

from hitline_cluster import subset

# the first test also pays for starting the cluster (a minute on a loaded 2-core machine)
pytestmark = [pytest.mark.distributed, pytest.mark.slow, pytest.mark.timeout(600)]


def _zip_folder(folder: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for p in folder.rglob("*"):
            if p.is_file() and p.name != "new_products.csv":
                z.write(p, p.relative_to(folder).as_posix())
    return buf.getvalue()


def test_json_batch_runs_to_done_and_serves_its_images(api_cluster, tmp_path: Path) -> None:  # noqa: ANN001
    c = api_cluster
    new = subset(c.new, tmp_path / "new", 3)
    r = c.post("/batches", json={"catalog": str(c.catalog), "new": str(new)})
    assert r.status_code == 201, r.text
    batch_id = r.json()["batch_id"]
    b = c.wait_batch(batch_id)
    assert b["counts"]["sku"] == {"done": 3} and b["status"] == "finished", b
    assert b["spent_usd"] > 0  # the fake OpenRouter reports a cost per call, like the real one
    jobs = c.get(f"/batches/{batch_id}/jobs", params={"kind": "sku"}).json()["jobs"]
    job = c.get(jobs[0]["url"]).json()
    deadline = time.monotonic() + 60  # the contact sheet is the chain's last, lowest-priority link: after "done"
    while job["contact_sheet_url"] is None and time.monotonic() < deadline:
        time.sleep(0.5)
        job = c.get(jobs[0]["url"]).json()
    assert [o["preset"] for o in job["outputs"]] == ["thumbnail"] and job["style"] and len(job["hits"]) == 3
    assert [h["stage"] for h in job["history"]] == ["embed", "index", "retrieve", "analyze", "render"]
    out = c.get(job["outputs"][0]["url"])
    assert out.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(out.content)).size == (512, 512)
    for url in (job["contact_sheet_url"], job["flatlay_url"], job["hits"][0]["image_url"]):
        img = c.get(url)
        assert img.status_code == 200 and img.headers["content-type"].startswith("image/"), url
        Image.open(io.BytesIO(img.content)).verify()
    assert requests.get(c.url + job["outputs"][0]["url"], timeout=10).status_code == 401  # images need a token too


def test_provider_fault_fails_skus_then_retry_after_the_fault_finishes_them(
    api_cluster,
    fake_fault,  # noqa: ANN001
    tmp_path: Path,
) -> None:
    c = api_cluster
    new = subset(c.new, tmp_path / "new", 4, corrupt=3)
    fake_fault(fail={"image": "402"})  # the render model answers "no credit" until switched off
    r = c.post(
        "/batches",
        data={"catalog": str(c.catalog)},
        files={
            "new_products": ("new_products.csv", (new / "new_products.csv").read_bytes()),
            "images": ("images.zip", _zip_folder(new)),
        },
    )
    assert r.status_code == 201, r.text
    batch_id = r.json()["batch_id"]
    b = c.wait_batch(batch_id)
    assert b["counts"]["sku"] == {"failed": 4}, b
    groups = {f["stage"]: f for f in b["failures"]}
    assert groups["render"]["count"] == 3 and "402" in groups["render"]["reason"]
    assert groups["embed"]["count"] == 1  # the corrupt flat-lay fails on its own, with its own reason
    failed = c.get(f"/batches/{batch_id}/jobs", params={"state": "failed", "stage": "render"}).json()["jobs"]
    assert len(failed) == 3

    fake_fault(fail={})
    r = c.post(f"/batches/{batch_id}/retry", json={"reason": groups["render"]["reason"]})
    assert r.status_code == 200 and r.json()["jobs"] == 3, r.text
    b = c.wait_batch(batch_id)
    assert b["counts"]["sku"] == {"done": 3, "failed": 1}, b
    job = c.get(failed[0]["url"]).json()
    outcomes = [(h["stage"], h["outcome"]) for h in job["history"] if h["stage"] == "render"]
    assert outcomes == [("render", "failed"), ("render", "ok")] and job["outputs"]
    # nothing left to retry but the corrupt image, which retrying cannot fix... and does not re-run
    assert c.post(f"/batches/{batch_id}/retry", json={"stage": "render"}).json()["jobs"] == 0


def test_cancel_stops_a_running_batch_and_keeps_what_was_paid(
    api_cluster,
    fake_fault,  # noqa: ANN001
    tmp_path: Path,
) -> None:
    c = api_cluster
    new = subset(c.new, tmp_path / "new", 5)
    fake_fault(latency={"image": (1.0, 1.0)})  # renders slow enough to cancel in the middle
    batch_id = c.post("/batches", json={"catalog": str(c.catalog), "new": str(new)}).json()["batch_id"]
    c.wait_batch(batch_id, lambda b: b["stages"].get("sku", {}).get("render", {}).get("running", 0) > 0)
    r = c.post(f"/batches/{batch_id}/cancel")
    assert r.status_code == 200 and r.json()["jobs"] >= 1, r.text
    b = c.wait_batch(batch_id)
    counts = b["counts"]["sku"]
    assert b["status"] == "cancelled" and counts.get("cancelled", 0) >= 1, b
    assert set(counts) <= {"done", "cancelled"}, b
    engine = sqlalchemy.create_engine(c.db_url)
    with engine.connect() as conn:
        charged = dict(
            conn.execute(
                sqlalchemy.text(
                    "SELECT j.state, count(*) FROM charge c JOIN job j ON j.id = c.job_id "
                    "WHERE c.batch_id = :b AND c.stage = 'render' GROUP BY j.state"
                ),
                {"b": batch_id},
            ).all()
        )
    engine.dispose()
    # every render that was paid for belongs to a finished SKU with its image
    assert set(charged) <= {"done"} and charged.get("done", 0) == counts.get("done", 0), (charged, counts)

    fake_fault(latency={"image": (0.2, 0.3)})
    assert c.post(f"/batches/{batch_id}/resume").status_code == 200
    b = c.wait_batch(batch_id)
    assert b["counts"]["sku"] == {"done": 5} and not b["cancelled"], b


def test_idempotent_resubmission_over_http(api_cluster, tmp_path: Path) -> None:  # noqa: ANN001
    c = api_cluster
    new = subset(c.new, tmp_path / "new", 2)
    body = {"catalog": str(c.catalog), "new": str(new)}
    first = c.post("/batches", json=body, headers={"Idempotency-Key": "k-1"})
    again = c.post("/batches", json=body, headers={"Idempotency-Key": "k-1"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["batch_id"] == again.json()["batch_id"]
    clash = c.post("/batches", json={**body, "top_k": 2}, headers={"Idempotency-Key": "k-1"})
    assert clash.status_code == 409 and "new key" in clash.json()["error"]["message"]
    b = c.wait_batch(first.json()["batch_id"])
    assert b["counts"]["sku"] == {"done": 2}  # sent once: each SKU rendered once
    jobs = c.get(f"/batches/{first.json()['batch_id']}/jobs", params={"kind": "sku"}).json()["jobs"]
    assert all(j["attempts"] == 5 for j in jobs), jobs


def test_errors_from_the_server_process_are_json(api_cluster) -> None:  # noqa: ANN001
    c = api_cluster
    cases = [
        (requests.get(c.url + "/batches", timeout=10), 401),
        (requests.get(c.url + "/batches", headers={"Authorization": "Bearer hl_nope"}, timeout=10), 401),
        (c.get("/batches/20000101-000000-abcdef"), 404),
        (c.get("/jobs/987654"), 404),
        (c.post("/batches", data=b"{not json", headers={"Content-Type": "application/json"}), 400),
        (c.post("/batches", json={"catalog": "/nowhere", "new": "/nowhere"}), 422),
        (c.post("/batches/20000101-000000-abcdef/retry", json={}), 404),
        (
            c.post(
                "/batches",
                data={"catalog": str(c.catalog)},
                files={"new_products": ("n.csv", b"x"), "images": ("i.zip", b"\0" * 5_100_000)},
            ),
            413,
        ),
    ]
    for r, status in cases:
        assert r.status_code == status, (r.request.method, r.request.url, r.text)
        assert r.headers["content-type"] == "application/json"
        assert r.json()["error"]["status"] == status and len(r.json()["error"]["message"]) > 20


def test_flower_beside_the_api_is_behind_basic_auth(api_cluster) -> None:  # noqa: ANN001
    flower = api_cluster.flower_url
    assert requests.get(f"{flower}/healthcheck", timeout=10).status_code == 200  # probes need no password
    assert requests.get(f"{flower}/api/workers", timeout=10).status_code == 401
    auth = ("ops", "flower-pass")
    r = requests.get(f"{flower}/api/workers?refresh=1", auth=auth, timeout=30)
    assert r.status_code == 200 and len(r.json()) == 1  # its API works with the credentials
    # the Celery contract through Flower's task API: retry_jobs reaches a worker and answers
    r = requests.post(
        f"{flower}/api/task/send-task/hitline.retry_jobs",
        auth=auth,
        timeout=30,
        json={"args": [{"batch_id": "no-such-batch"}]},
    )
    assert r.status_code == 200, r.text
    result: dict = {}
    for _ in range(60):
        result = requests.get(f"{flower}/api/task/result/{r.json()['task-id']}", auth=auth, timeout=30).json()
        if result.get("state") in ("SUCCESS", "FAILURE"):
            break
        time.sleep(0.5)
    assert result["state"] == "FAILURE" and "no batch 'no-such-batch'" in str(result["result"]), result
