"""Bad input is a 4xx with a sentence, never a 500: every case issue 21 found (a NUL in a path, ids and
cursors past 64 bits, zips with impossible or lying members, a 5,000-character folder, a budget of
"Infinity", min_sales 2^70), and 20 submissions at once on the embedded job table."""

from __future__ import annotations

import io
import struct
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from db.session import session_scope
from hitline.jobs import control


@pytest.fixture
def client(hitline_env: Path):  # noqa: ANN201
    from hitline.api import create_app
    from hitline.jobs.context import get_runtime, reset_runtime

    reset_runtime()
    ctx = get_runtime()
    with session_scope(ctx.db_url) as s:
        token = control.create_token(s, "tests")
    with TestClient(create_app(ctx.settings), raise_server_exceptions=False) as c:
        c.headers["Authorization"] = f"Bearer {token}"
        yield c


def _sentence(r, status: int) -> str:  # noqa: ANN001
    assert r.status_code == status, (r.status_code, r.text[:300])
    message = r.json()["error"]["message"]
    assert len(message) > 20 and "internal error" not in message
    return message


def _zip(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members:
            z.writestr(zipfile.ZipInfo(name), data)
    return buf.getvalue()


def _lying_zip() -> bytes:
    """One member whose header says 3 bytes (and their CRC) while 100,000 follow."""
    data = _zip([("a.jpg", b"x" * 100_000)])
    # local header: sizes at offset 18/22; central directory entry: 20/24 after its signature
    data = bytearray(data)
    data[18:26] = struct.pack("<II", 3, 3)
    cd = data.rfind(b"PK\x01\x02")
    data[cd + 20 : cd + 28] = struct.pack("<II", 3, 3)
    return bytes(data)


def test_paths_ids_and_cursors_out_of_range(client: TestClient) -> None:
    assert "NUL" in _sentence(client.get("/files/x/a%00b.png"), 400)
    assert "NUL" in _sentence(client.get("/batches/x%00/jobs"), 400)
    assert "NUL" in _sentence(client.get("/batches", params={"cursor": "a\x00"}), 400)
    for path in (f"/jobs/{2**63}", f"/jobs/{2**64}/flatlay", f"/jobs/1/hits/{2**63}", f"/ui/jobs/{2**70}", "/jobs/-1"):
        assert client.get(path).status_code == 422, path
    _sentence(client.get(f"/jobs/{2**63}"), 422)
    assert "no job" in _sentence(client.get(f"/jobs/{2**63 - 1}"), 404)
    _sentence(client.get(f"/batches/{'x' * 2000}"), 422)
    # a list of ids in the query (schemathesis found this one: 500 OverflowError)
    _sentence(client.post("/webhooks/redeliver", params={"delivery_id": [1, 2**64]}), 422)
    assert client.post("/webhooks/redeliver", params={"delivery_id": [2**63 - 1]}).status_code == 200


def test_cursor_above_64_bits_is_a_sentence(client: TestClient, demo_data: tuple[Path, Path]) -> None:
    catalog, new = demo_data
    batch = client.post("/batches", json={"catalog": str(catalog), "new": str(new)}).json()["batch_id"]
    for cursor in (str(2**63), str(2**70), "-5", "abc"):
        assert "next_cursor" in _sentence(client.get(f"/batches/{batch}/jobs", params={"cursor": cursor}), 422)
    assert client.get(f"/batches/{batch}/jobs", params={"cursor": str(2**63 - 1)}).json()["jobs"] == []
    r = client.post(f"/batches/{batch}/retry", json={"job_ids": [2**64]})
    _sentence(r, 422)


def test_request_fields_out_of_range(client: TestClient, demo_data: tuple[Path, Path]) -> None:
    catalog, new = demo_data
    base = {"catalog": str(catalog), "new": str(new)}
    for field, value in (
        ("budget_usd", "Infinity"),
        ("budget_usd", "NaN"),
        ("min_sales", 2**70),
        ("catalog", "/" + "a" * 5000),
        ("new", "/tmp/a\x00b"),
        ("presets", ["x" * 500]),
    ):
        assert field in _sentence(client.post("/batches", json={**base, field: value}), 422), field
    r = client.post(
        "/batches",
        content=b'{"catalog": "/x", "new": "/y", "budget_usd": Infinity}',
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code in (400, 422)
    r = client.post(
        "/batches",
        data={"catalog": "/" + "a" * 5000},
        files={"new_products": ("n.csv", b"new_id\n"), "images": ("i.zip", _zip([("a.jpg", b"x")]))},
    )
    assert "catalog" in _sentence(r, 422)


@pytest.mark.parametrize(
    "members, words",
    [
        ([(".", b"x")], "not a file name"),
        ([("a", b"x"), ("a/b.jpg", b"y")], "needs it to be a folder"),
        ([("a.jpg", b"x"), ("a.jpg", b"y")], "twice"),
        ([("x" * 256 + ".jpg", b"x")], "over 255 bytes"),
        ([("d/" + "y" * 300, b"x")], "over 255 bytes"),
    ],
)
def test_zip_members_a_file_system_refuses(
    client: TestClient, demo_data: tuple[Path, Path], members: list, words: str
) -> None:
    catalog, _ = demo_data
    r = client.post(
        "/batches",
        data={"catalog": str(catalog)},
        files={"new_products": ("n.csv", b"new_id\n"), "images": ("i.zip", _zip(members))},
    )
    assert words in _sentence(r, 422)


def test_a_zip_that_lies_about_its_sizes(client: TestClient, demo_data: tuple[Path, Path]) -> None:
    catalog, _ = demo_data
    r = client.post(
        "/batches",
        data={"catalog": str(catalog)},
        files={"new_products": ("n.csv", b"new_id\n"), "images": ("i.zip", _lying_zip())},
    )
    assert "lies about" in _sentence(r, 422)
    uploads = Path(client.app.state.settings.data_dir) / "uploads"
    assert not list(uploads.glob("*.part")), "the partial unpack is removed at once"


def test_twenty_concurrent_submissions_on_the_embedded_job_table(
    client: TestClient, demo_data: tuple[Path, Path]
) -> None:
    catalog, new = demo_data
    body = {"catalog": str(catalog), "new": str(new), "presets": ["thumbnail"]}
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda i: client.post("/batches", json=body), range(20)))
    assert [r.status_code for r in answers] == [201] * 20, [r.text[:200] for r in answers if r.status_code != 201]
    assert len({r.json()["batch_id"] for r in answers}) == 20
