"""The HTTP API in-process (FastAPI's TestClient) over an embedded job table: authentication, errors as
JSON, body limits, uploads, CSRF on the dashboard's cookie. The same API against a real server process,
PostgreSQL, Redis and workers is tests/api/test_api_server.py."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import pytest
from conftest import api_test_client
from fastapi.testclient import TestClient


@pytest.fixture
def client(hitline_env: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    monkeypatch.setenv("HITLINE_API_MAX_BODY_BYTES", "20000")
    monkeypatch.setenv("HITLINE_API_MAX_UPLOAD_BYTES", "3000000")
    with api_test_client() as c:
        yield c


def _error(r, status: int) -> str:  # noqa: ANN001
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and body["error"]["status"] == status
    return body["error"]["message"]


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


def test_every_endpoint_but_health_needs_a_valid_token(client: TestClient) -> None:
    anonymous = {"Authorization": ""}
    for method, path in (
        ("GET", "/batches"),
        ("GET", "/batches/x"),
        ("GET", "/batches/x/jobs"),
        ("GET", "/jobs/1"),
        ("POST", "/batches"),
        ("POST", "/batches/x/retry"),
        ("POST", "/batches/x/cancel"),
        ("POST", "/batches/x/resume"),
        ("GET", "/files/x/a.png"),
        ("GET", "/jobs/1/flatlay"),
    ):
        assert "hitline token create" in _error(client.request(method, path, headers=anonymous), 401), path
    r = client.get("/batches", headers={"Authorization": "Bearer hl_wrong"})
    assert "invalid or revoked token" in _error(r, 401)
    assert r.headers["www-authenticate"] == "Bearer"
    assert client.get("/healthz", headers=anonymous).json() == {"status": "ok"}
    assert client.get("/batches").json() == {"batches": [], "next_cursor": None}


def test_errors_are_json_a_person_can_act_on(client: TestClient) -> None:
    assert "GET /batches" in _error(client.get("/batches/nope"), 404)
    assert "no job 999" in _error(client.get("/jobs/999"), 404)
    assert "/docs" in _error(client.get("/no/such/endpoint"), 404)
    r = client.post("/batches", content=b'{"catalog": "x", ', headers={"Content-Type": "application/json"})
    assert "not valid JSON" in _error(r, 400)
    assert "new: Field required" in _error(client.post("/batches", json={"catalog": "/x"}), 422)
    assert "top_k" in _error(client.post("/batches", json={"catalog": "/x", "new": "/y", "top_k": 0}), 422)
    shared = Path(client.app.state.settings.data_dir)  # under the tests' HITLINE_API_SHARED_DIRS
    assert "catalog folder not found" in _error(
        client.post("/batches", json={"catalog": str(shared / "nonexistent"), "new": str(shared / "y")}), 422
    )
    assert "catalog: /nonexistent is not under a folder this server shares" in _error(
        client.post("/batches", json={"catalog": "/nonexistent", "new": "/y"}), 422
    )
    assert "extra" in _error(client.post("/batches", json={"catalog": "/x", "new": "/y", "colour": 1}), 422).lower()


def test_oversized_bodies_are_refused_with_413(client: TestClient, demo_data: tuple[Path, Path]) -> None:
    r = client.post("/batches", content=b"{" + b" " * 30_000 + b"}", headers={"Content-Type": "application/json"})
    assert "HITLINE_API_MAX_BODY_BYTES" in _error(r, 413)

    def chunks():  # noqa: ANN202
        for _ in range(60):  # no Content-Length: counted while it streams
            yield b"x" * 10_000

    r = client.post("/batches", content=chunks(), headers={"Content-Type": "application/octet-stream"})
    _error(r, 413)
    catalog, new = demo_data
    big = _zip({"a.bin": os.urandom(3_100_000)})  # incompressible: the request itself is too large
    r = client.post(
        "/batches",
        data={"catalog": str(catalog)},
        files={"new_products": ("new_products.csv", b"x"), "images": ("images.zip", big)},
    )
    assert "upload larger than" in _error(r, 413)


def test_uploads_refuse_paths_outside_the_folder_and_zip_bombs(
    client: TestClient, demo_data: tuple[Path, Path]
) -> None:
    catalog, _ = demo_data
    for files, message in (
        ({"../evil.jpg": b"x"}, "points outside"),
        ({"/etc/x.jpg": b"x"}, "points outside"),
        ({"a.jpg": b"\0" * 3_100_000}, "unpacks to"),
    ):
        r = client.post(
            "/batches",
            data={"catalog": str(catalog)},
            files={"new_products": ("new_products.csv", b"new_id\n"), "images": ("i.zip", _zip(files))},
        )
        assert message in _error(r, 422)
    r = client.post(
        "/batches",
        data={"catalog": str(catalog)},
        files={"new_products": ("new_products.csv", b"new_id\n"), "images": ("i.zip", b"not a zip")},
    )
    assert "not a zip" in _error(r, 422)
    r = client.post("/batches", data={"catalog": str(catalog)}, files={"new_products": ("n.csv", b"x")})
    assert "lacks images" in _error(r, 422)


def test_submit_by_json_and_by_upload_then_read_the_batch(client: TestClient, demo_data: tuple[Path, Path]) -> None:
    catalog, new = demo_data
    r = client.post("/batches", json={"catalog": str(catalog), "new": str(new), "presets": ["thumbnail"]})
    assert r.status_code == 201, r.text
    sub = r.json()
    n_new = len((new / "new_products.csv").read_text().strip().splitlines()) - 1
    assert sub["new_skus"] == n_new and sub["catalog_products"] > 0
    b = client.get(f"/batches/{sub['batch_id']}").json()
    assert b["progress"]["total"] == n_new and b["options"]["presets"] == ["thumbnail"]
    assert b["counts"]["sku"] == {"pending": n_new} and b["status"] == "running"
    page = client.get(f"/batches/{sub['batch_id']}/jobs", params={"kind": "sku", "limit": 4}).json()
    assert len(page["jobs"]) == 4 and page["next_cursor"]
    rest = client.get(
        f"/batches/{sub['batch_id']}/jobs", params={"kind": "sku", "limit": 100, "cursor": page["next_cursor"]}
    ).json()
    assert len(page["jobs"]) + len(rest["jobs"]) == n_new and rest["next_cursor"] is None
    job = client.get(page["jobs"][0]["url"]).json()
    assert job["state"] == "pending" and job["outputs"] == [] and job["flatlay_url"]
    assert client.get(job["flatlay_url"]).headers["content-type"].startswith("image/")

    # the same new products as an upload: the CSV plus its images zipped with the same relative paths
    csv = (new / "new_products.csv").read_bytes()
    files = {str(p.relative_to(new)): p.read_bytes() for p in new.rglob("*") if p.is_file() and p.suffix != ".csv"}
    r = client.post(
        "/batches",
        data={"catalog": str(catalog), "presets": "thumbnail", "top_k": "2"},
        files={"new_products": ("new_products.csv", csv), "images": ("images.zip", _zip(files))},
    )
    assert r.status_code == 201, r.text
    up = client.get(f"/batches/{r.json()['batch_id']}").json()
    assert up["progress"]["total"] == n_new and up["options"]["top_k"] == 2
    listed = client.get("/batches").json()["batches"]
    assert {x["id"] for x in listed} == {sub["batch_id"], up["id"]}


def test_output_files_stay_inside_the_batch_folder(client: TestClient, demo_data: tuple[Path, Path]) -> None:
    catalog, new = demo_data
    batch = client.post("/batches", json={"catalog": str(catalog), "new": str(new)}).json()["batch_id"]
    out = Path(client.app.state.settings.out_dir_for_api()) / batch
    out.mkdir(parents=True, exist_ok=True)
    (out / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    r = client.get(f"/files/{batch}/x.png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    for path in ("../../jobs.sqlite", "%2e%2e/%2e%2e/jobs.sqlite", "..%2f..%2fjobs.sqlite"):
        assert client.get(f"/files/{batch}/{path}").status_code == 404


def test_dashboard_login_sets_a_strict_httponly_cookie_and_needs_csrf(client: TestClient) -> None:
    anon = TestClient(client.app)
    r = anon.get("/ui/batches", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/ui/login"
    assert anon.post("/ui/login", data={"token": "hl_wrong"}).status_code == 401
    r = anon.post("/ui/login", data={"token": client.token}, follow_redirects=False)
    cookie = r.headers["set-cookie"].lower()
    assert r.status_code == 303 and "httponly" in cookie and "samesite=strict" in cookie
    page = anon.get("/ui/batches")
    assert page.status_code == 200 and 'name="csrf-token"' in page.text
    csrf = page.text.split('name="csrf-token" content="')[1].split('"')[0]
    # the cookie alone reads, but cannot act: a page on another site could send the cookie, not the header
    assert anon.get("/batches").status_code == 200
    assert "X-CSRF-Token" in _error(anon.post("/batches/x/cancel"), 403)
    assert "no batch" in _error(anon.post("/batches/x/cancel", headers={"X-CSRF-Token": csrf}), 404)


def test_openapi_documents_every_endpoint(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for path in (
        "/batches",
        "/batches/{batch_id}",
        "/batches/{batch_id}/jobs",
        "/jobs/{job_id}",
        "/batches/{batch_id}/retry",
        "/batches/{batch_id}/cancel",
        "/batches/{batch_id}/resume",
        "/files/{batch_id}/{path}",
    ):
        assert path in spec["paths"], path
    body = spec["paths"]["/batches"]["post"]["requestBody"]["content"]
    assert {"application/json", "multipart/form-data"} <= set(body)
    assert client.get("/docs").status_code == 200


def test_idempotency_key_returns_the_same_batch_and_409_for_another_body(
    client: TestClient, demo_data: tuple[Path, Path]
) -> None:
    catalog, new = demo_data
    body = {"catalog": str(catalog), "new": str(new), "presets": ["thumbnail"]}
    first = client.post("/batches", json=body, headers={"Idempotency-Key": "order-42"})
    again = client.post("/batches", json=body, headers={"Idempotency-Key": "order-42"})
    assert first.status_code == 201 and again.status_code == 200, again.text
    assert again.json()["batch_id"] == first.json()["batch_id"] and again.json()["existing"] is True
    other = client.post("/batches", json={**body, "presets": ["banner"]}, headers={"Idempotency-Key": "order-42"})
    assert "use a new key" in _error(other, 409)
    assert len(client.get("/batches").json()["batches"]) == 1


def test_cancel_then_resume_on_the_embedded_job_table(client: TestClient, demo_data: tuple[Path, Path]) -> None:
    catalog, new = demo_data
    batch = client.post("/batches", json={"catalog": str(catalog), "new": str(new)}).json()["batch_id"]
    r = client.post(f"/batches/{batch}/cancel")
    assert r.status_code == 200 and r.json()["jobs"] > 0
    b = client.get(f"/batches/{batch}").json()
    assert b["status"] == "cancelled" and set(b["counts"]["sku"]) == {"cancelled"}
    assert "resume it first" in _error(client.post(f"/batches/{batch}/retry", json={}), 409)
    r = client.post(f"/batches/{batch}/resume")  # no worker here: the messages wait in the broker
    assert r.status_code == 200 and r.json()["jobs"] > 0, r.text
    b = client.get(f"/batches/{batch}").json()
    assert not b["cancelled"] and set(b["counts"]["sku"]) == {"pending"}


def test_batch_and_job_show_input_checks_gate_and_render_plan(client: TestClient, rendered_batch: str) -> None:
    b = client.get(f"/batches/{rendered_batch}").json()
    q = b["quality"]
    assert q["input_checks"]["low_res"] == 7 and q["input_checks"]["downsized"] == {"amazon_main": {"1K": 6}}
    assert q["input_checks"]["touches_frame"] == 1 and q["input_checks"]["failed"] == {"banner": 1}
    assert q["gate"] == {"passed": 29, "passed_after_rerender": 1, "needs_review": 1}
    assert q["render_plan"]["derived"] == 8 and q["render_plan"]["saving_usd"] == pytest.approx(0.36)
    assert client.get("/batches").json()["batches"][0]["quality"] == q

    jobs = client.get(f"/batches/{rendered_batch}/jobs", params={"kind": "sku"}).json()["jobs"]
    job = client.get(jobs[0]["url"]).json()
    assert job["input_checks"]["downsized"] == {"amazon_main": "1K"} and job["input_checks"]["touches_frame"]
    assert [c["name"] for c in job["input_checks"]["checks"]["amazon_main"]] == [
        "resolution",
        "background",
        "touches_frame",
    ]
    assert job["gate"] == {"passed": 2, "passed_after_rerender": 1, "needs_review": 1}
    assert job["render_plan"]["derived"] == {"thumbnail": "amazon_main"}
    outputs = {o["preset"]: o for o in job["outputs"]}
    assert outputs["thumbnail"]["derived_from"] == "amazon_main" and outputs["thumbnail"]["cost_usd"] == 0
    assert outputs["banner"]["quality"] == {"status": "needs_review", "reasons": ["colour differs"], "rerender": None}
    failed = client.get(jobs[7]["url"]).json()["input_checks"]["failed"]
    assert failed == {"banner": "product is 160 px, banner at 2K needs 1229 px (7.7x upscale)"}
    waiting = client.get(jobs[8]["url"]).json()
    assert waiting["input_checks"] is None and waiting["render_plan"] is None and waiting["gate"] == {}

    spec = client.get("/openapi.json").json()["components"]["schemas"]
    assert {"input_checks", "gate", "render_plan"} <= set(spec["JobDetail"]["properties"])
    assert "derived_from" in spec["Output"]["properties"] and "quality" in spec["Batch"]["properties"]
    assert {"low_res", "touches_frame", "downsized"} <= set(spec["InputCheckCounts"]["properties"])


def test_the_dashboard_shows_the_quality_gate_input_checks_and_render_plan(
    client: TestClient, rendered_batch: str
) -> None:
    """What the API says of quality, the operator sees on the pages: the batch's gate outcomes, input
    checks and render-plan saving; per output whether it was resized from another preset and its verdict."""
    ui = TestClient(client.app)
    assert ui.post("/ui/login", data={"token": client.token}, follow_redirects=False).status_code == 303
    page = ui.get(f"/ui/batches/{rendered_batch}").text
    quality = page.split('id="quality"')[1].split("</table>")[0]
    assert "29 passed" in quality and "1 passed after rerender" in quality and "1 needs review" in quality
    assert "7 SKU(s) low resolution" in quality and "amazon_main downsized: 6 to 1K" in quality
    assert "banner failed for 1" in quality and "1 touching the frame" in quality
    assert "8 output(s) resized" in quality and "saved $0.360" in quality

    jobs = client.get(f"/batches/{rendered_batch}/jobs", params={"kind": "sku"}).json()["jobs"]
    job = ui.get(f"/ui/jobs/{jobs[0]['id']}").text
    figure = {f.split('"')[0]: f.split("</figure>")[0] for f in job.split('<figure data-output="')[1:]}
    assert "resized from amazon_main" in figure["thumbnail"] and "$0.000" in figure["thumbnail"]
    assert "needs review" in figure["banner"] and "colour differs" in figure["banner"]
    assert "passed after rerender" in "".join(figure.values())
    checks = job.split('id="input-checks"')[1].split("</ul>")[0]
    assert "amazon_main: rendered at 1K" in checks and "touches the photo" in checks
    assert "1 resized" in job.split('id="render-plan"')[1].split("</p>")[0]
    failed = ui.get(f"/ui/jobs/{jobs[7]['id']}").text.split('id="input-checks"')[1].split("</ul>")[0]
    assert "banner: not rendered - product is 160 px" in failed
    waiting = ui.get(f"/ui/jobs/{jobs[8]['id']}").text
    assert 'id="input-checks"' not in waiting and 'id="render-plan"' not in waiting


def test_catalogs_are_added_once_listed_and_shown(client: TestClient, hitline_env: Path, demo_data) -> None:  # noqa: ANN001
    import csv
    import shutil

    cat = hitline_env / "cat"
    shutil.copytree(demo_data[0], cat)
    rows = list(csv.DictReader(open(cat / "products.csv", encoding="utf-8")))[:6]
    with open(cat / "products.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    r = client.post("/catalogs", json={"folder": str(cat), "name": "spring"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["name"] == "spring" and body["tenant"] == "default"
    assert (body["version"]["seq"], body["version"]["state"], body["version"]["written"]) == (1, "ready", 6)
    again = client.post("/catalogs", json={"folder": str(cat), "name": "spring"})
    assert again.status_code == 200 and again.json()["reused"] and again.json()["version"]["seq"] == 1
    assert [c["name"] for c in client.get("/catalogs").json()] == ["spring"]
    assert client.get(f"/catalogs/{body['id']}").json()["name"] == "spring"
    assert "hitline catalog list" in _error(client.get("/catalogs/autumn"), 404)
    assert "not a folder" in _error(client.post("/catalogs", json={"folder": str(hitline_env / "nope")}), 422)


def test_a_catalog_can_be_uploaded_and_a_batch_names_it(client: TestClient, hitline_env: Path, demo_data) -> None:  # noqa: ANN001
    """POST /catalogs multipart (products.csv + a zip of the images), as batches are uploaded: unpacked under
    the tenant's catalog uploads (not pruned with batch uploads), indexed, the same bytes again reused."""
    import csv

    rows = list(csv.DictReader(open(demo_data[0] / "products.csv", encoding="utf-8")))[:4]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    files = {
        "products": ("products.csv", buf.getvalue().encode()),
        "images": ("images.zip", _zip({r["image_path"]: (demo_data[0] / r["image_path"]).read_bytes() for r in rows})),
    }
    r = client.post("/catalogs", files=files, data={"name": "uploaded"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["name"] == "uploaded" and (body["version"]["seq"], body["version"]["written"]) == (1, 4)
    assert Path(body["source_dir"]).parent == (hitline_env / "data" / "catalogs" / "default").resolve()
    again = client.post("/catalogs", files=files, data={"name": "uploaded"})
    assert again.status_code == 200 and again.json()["reused"]
    # a batch names it (its folder is the server's own, not under a shared folder)
    new = demo_data[1]
    images = {str(p.relative_to(new)): p.read_bytes() for p in new.rglob("*") if p.is_file() and p.suffix != ".csv"}
    ok = client.post(
        "/batches",
        files={
            "new_products": ("new_products.csv", (new / "new_products.csv").read_bytes()),
            "images": ("i.zip", _zip(images)),
        },
        data={"catalog": "uploaded", "presets": "thumbnail"},
    )
    assert ok.status_code == 201, ok.text
    # bad uploads are sentences, not 500s
    assert "lacks images" in _error(client.post("/catalogs", files={"products": files["products"]}), 422)
    evil = {**files, "images": ("e.zip", _zip({"../evil.jpg": b"x"}))}
    assert "outside the upload" in _error(client.post("/catalogs", files=evil), 422)
