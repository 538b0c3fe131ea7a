"""The API serves only files inside the folders a batch was given, and only images (the type their bytes
have): the attacks of issue 21 (a CSV naming .env, /etc/passwd, the job table, another upload's HTML),
symlinks out of a folder, and the headers every answer carries."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from conftest import api_test_client
from fastapi.testclient import TestClient

from db.models import Job
from db.session import session_scope

SECRET = "HITLINE_OPENROUTER_API_KEY=sk-or-secret-issue-21"
EVIL = b"<html><script>alert(document.cookie)</script></html>"


@pytest.fixture
def client(hitline_env: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    monkeypatch.chdir(hitline_env)  # the server's working folder holds a .env with the key
    (hitline_env / ".env").write_text(SECRET + "\n")
    with api_test_client() as c:
        yield c


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


def _upload(client: TestClient, catalog: Path, rows: list[tuple[str, str]], files: dict[str, bytes]) -> str:
    csv = "new_id,image_path,category,style,season,prompt_hint\n" + "".join(
        f"{i},{p},tshirt,basic,summer,x\n" for i, p in rows
    )
    r = client.post(
        "/batches",
        data={"catalog": str(catalog), "presets": "thumbnail"},
        files={"new_products": ("new_products.csv", csv.encode()), "images": ("i.zip", _zip(files))},
    )
    assert r.status_code == 201, r.text
    return r.json()["batch_id"]


def _jobs(client: TestClient, batch: str) -> dict[str, dict]:
    return {j["item_id"]: j for j in client.get(f"/batches/{batch}/jobs", params={"kind": "sku"}).json()["jobs"]}


def _refused(r, *secrets: bytes) -> None:  # noqa: ANN001
    assert r.status_code == 404, (r.status_code, r.text[:200])
    assert r.headers["content-type"] == "application/json"
    for s in secrets:
        assert s not in r.content


def _rewrite_row(client: TestClient, job_id: int, image_path: str) -> None:
    """What a row that passed validation could still say (an older version's check, a crafted table)."""
    with session_scope(client.app.state.settings.db_url()) as s:
        job = s.get(Job, job_id)
        job.row = {**job.row, "image_path": image_path}


def test_a_csv_naming_server_files_gets_none_of_them(
    client: TestClient, demo_data: tuple[Path, Path], hitline_env: Path
) -> None:
    catalog, new = demo_data
    image = next(p for p in new.rglob("*.jpg"))
    db_file = hitline_env / "data" / "jobs.sqlite"
    rows = [
        ("env", ".env"),
        ("env_up", "../../../.env"),
        ("passwd", "/etc/passwd"),
        ("db", str(db_file)),
        ("db_rel", "data/jobs.sqlite"),
        ("real", "real.jpg"),
        ("dup", "real.jpg"),
        ("dup", "real.jpg"),
    ]
    batch = _upload(client, catalog, rows, {"real.jpg": image.read_bytes()})
    jobs = _jobs(client, batch)
    assert jobs["real"]["state"] == "pending", sorted(jobs)
    assert client.get(f"/jobs/{jobs['real']['id']}/flatlay").headers["content-type"] == "image/jpeg"
    # a row rejected for another reason (a second "dup") with a real image in its folder: not opened either
    for name in ("env", "env_up", "passwd", "db", "db_rel", "dup@row8"):
        detail = client.get(f"/jobs/{jobs[name]['id']}").json()
        assert detail["state"] == "failed" and detail["flatlay_url"] is None
        _refused(client.get(f"/jobs/{jobs[name]['id']}/flatlay"), b"sk-or-secret", b"root:", b"SQLite format")

    # even a row that passed validation is opened only inside the batch's folders
    real = jobs["real"]["id"]
    for path in (str(hitline_env / ".env"), "/etc/passwd", str(db_file)):
        _rewrite_row(client, real, path)
        _refused(client.get(f"/jobs/{real}/flatlay"), b"sk-or-secret", b"root:", b"SQLite format")


def test_a_rejected_rows_path_is_never_opened(client: TestClient, demo_data: tuple[Path, Path], tmp_path: Path) -> None:
    """Even a real image inside the batch's own folder: a rejected row keeps the CSV's words, unchecked."""
    catalog, new = demo_data
    folder = tmp_path / "new"
    folder.mkdir()
    image = folder / "a.jpg"
    image.write_bytes(next(new.rglob("*.jpg")).read_bytes())
    (folder / "new_products.csv").write_text(
        "new_id,image_path,category,style,season,prompt_hint\n"
        f"ok,a.jpg,tshirt,basic,summer,x\nabs,{image},tshirt,basic,summer,x\n"
    )
    batch = client.post("/batches", json={"catalog": str(catalog), "new": str(folder)}).json()["batch_id"]
    jobs = _jobs(client, batch)
    assert jobs["abs"]["state"] == "failed" and jobs["ok"]["state"] == "pending"
    assert client.get(f"/jobs/{jobs['ok']['id']}/flatlay").status_code == 200
    _refused(client.get(f"/jobs/{jobs['abs']['id']}/flatlay"), b"JFIF")


def test_another_uploads_html_is_never_served(client: TestClient, demo_data: tuple[Path, Path]) -> None:
    catalog, new = demo_data
    image = next(p for p in new.rglob("*.jpg")).read_bytes()
    first = _upload(client, catalog, [("a", "a.jpg")], {"a.jpg": image, "evil.html": EVIL, "evil.png": EVIL})
    first_dir = Path(client.app.state.settings.data_dir).resolve() / "uploads"
    evil = next(first_dir.rglob("evil.html"))
    second = _upload(client, catalog, [("b", str(evil)), ("c", "c.jpg")], {"c.jpg": image})
    jobs = _jobs(client, second)
    _refused(client.get(f"/jobs/{jobs['b']['id']}/flatlay"), b"<script>")
    # accepted rows pointing at it: outside this batch's folders (the first upload), or not an image
    c = jobs["c"]["id"]
    for path in (str(evil), str(evil.with_name("a.jpg")), str(evil.with_name("evil.png"))):
        _rewrite_row(client, c, path)
        _refused(client.get(f"/jobs/{c}/flatlay"), b"<script>")
    own = _jobs(client, first)["a"]["id"]
    _rewrite_row(client, own, str(evil.with_name("evil.png")))  # inside its own folder, HTML bytes named .png
    r = client.get(f"/jobs/{own}/flatlay")
    _refused(r, b"<script>")
    assert "only images" in r.json()["error"]["message"]


def test_symlinks_out_of_a_batch_folder_are_followed_then_refused(
    client: TestClient, demo_data: tuple[Path, Path], hitline_env: Path
) -> None:
    catalog, new = demo_data
    image = next(p for p in new.rglob("*.jpg")).read_bytes()
    batch = _upload(client, catalog, [("a", "a.jpg")], {"a.jpg": image})
    job = _jobs(client, batch)["a"]["id"]
    folder = next((Path(client.app.state.settings.data_dir) / "uploads").rglob("a.jpg")).parent
    outside = hitline_env / "outside.jpg"
    outside.write_bytes(image)
    (folder / "link.png").symlink_to(outside)
    _rewrite_row(client, job, str(folder / "link.png"))
    _refused(client.get(f"/jobs/{job}/flatlay"))
    out = Path(client.app.state.settings.out_dir_for_api()) / batch
    out.mkdir(parents=True, exist_ok=True)
    (out / "link.png").symlink_to(outside)
    (out / "page.html").write_bytes(EVIL)
    (out / "x.jpg").write_bytes(image)
    _refused(client.get(f"/files/{batch}/link.png"))
    _refused(client.get(f"/files/{batch}/page.html"), b"<script>")
    assert client.get(f"/files/{batch}/x.jpg").headers["content-type"] == "image/jpeg"


def test_hit_images_come_only_from_the_batch_catalog(
    client: TestClient, demo_data: tuple[Path, Path], hitline_env: Path
) -> None:
    catalog, new = demo_data
    batch = client.post("/batches", json={"catalog": str(catalog), "new": str(new)}).json()["batch_id"]
    job = _jobs(client, batch)
    jid = next(iter(job.values()))["id"]
    hit_image = next(catalog.rglob("*.jpg"))
    with session_scope(client.app.state.settings.db_url()) as s:
        j = s.get(Job, jid)
        hit = {"product_id": "p", "score": 1.0, "found_by": ["dense"], "sales_count": 1}
        j.result = {
            "retrieve": {
                "hits": [{**hit, "image_path": str(hit_image)}, {**hit, "image_path": str(hitline_env / ".env")}]
            }
        }
    assert client.get(f"/jobs/{jid}/hits/0").headers["content-type"] == "image/jpeg"
    _refused(client.get(f"/jobs/{jid}/hits/1"), b"sk-or-secret")


def test_every_answer_says_nosniff_and_pages_have_a_policy(client: TestClient, demo_data: tuple[Path, Path]) -> None:
    catalog, new = demo_data
    batch = client.post("/batches", json={"catalog": str(catalog), "new": str(new)}).json()["batch_id"]
    anon = TestClient(client.app)
    for r in (
        client.get("/batches"),
        client.get("/batches/nope"),
        anon.get("/batches"),
        client.get("/healthz"),
        anon.get("/ui/login"),
        client.get("/docs"),
        client.get("/openapi.json"),
        client.get("/static/dashboard.js"),
    ):
        assert r.headers["x-content-type-options"] == "nosniff", r.url
    for page in (anon.get("/ui/login"), client.get("/docs")):
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "object-src 'none'" in csp and "frame-ancestors 'none'" in csp
    out = Path(client.app.state.settings.out_dir_for_api()) / batch
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.html").write_text("<html><body>report</body></html>")
    r = client.get(f"/files/{batch}/report.html")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert (
        "sandbox" in r.headers["content-security-policy"] and "script-src" not in r.headers["content-security-policy"]
    )


def test_docs_work_offline(client: TestClient) -> None:
    page = client.get("/docs").text
    assert "cdn" not in page.lower() and "//" not in page.replace("://", "")
    for src in ("/docs-assets/swagger-ui-bundle.js", "/docs-assets/swagger-ui.css", "/static/docs.js"):
        assert src in page
        r = client.get(src)
        assert r.status_code == 200 and len(r.content) > 100, src
    assert "<script>" not in page  # no inline script: the page's policy allows only this origin's files


def test_a_finished_batch_has_its_report_whatever_door_it_came_through(
    client: TestClient, demo_data: tuple[Path, Path]
) -> None:
    catalog, new = demo_data
    batch = client.post("/batches", json={"catalog": str(catalog), "new": str(new)}).json()["batch_id"]
    assert client.get(f"/files/{batch}/report.html").status_code == 404  # still running: no report yet
    client.post(f"/batches/{batch}/cancel")  # every job stops: the batch is finished
    r = client.get(f"/files/{batch}/report.html")
    assert r.status_code == 200 and f"hitline batch {batch}" in r.text
    assert (Path(client.app.state.settings.out_dir_for_api()) / batch / "report.html").is_file()
