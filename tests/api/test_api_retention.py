"""Retention of uploads: a refused upload's files go at once, uploads older than
HITLINE_UPLOAD_RETENTION_DAYS and partial unpacks (*.part) left by a crash go before the next upload."""

from __future__ import annotations

import io
import os
import time
import zipfile
from pathlib import Path

import pytest
from conftest import api_test_client
from fastapi.testclient import TestClient


@pytest.fixture
def client(hitline_env: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    monkeypatch.setenv("HITLINE_UPLOAD_RETENTION_DAYS", "2")

    with api_test_client() as c:
        yield c


def _post(client: TestClient, catalog: Path, new: Path, **form: str):  # noqa: ANN202
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for p in new.rglob("*.jpg"):
            z.writestr(str(p.relative_to(new)), p.read_bytes())
    return client.post(
        "/batches",
        data={"catalog": str(catalog), **form},
        files={
            "new_products": ("new_products.csv", (new / "new_products.csv").read_bytes()),
            "images": ("i.zip", buf.getvalue()),
        },
    )


def test_refused_old_and_partial_uploads_are_removed(client: TestClient, demo_data: tuple[Path, Path]) -> None:
    catalog, new = demo_data
    root = Path(client.app.state.settings.data_dir) / "uploads" / "default"
    r = _post(client, catalog, new, presets="no_such_preset")
    assert r.status_code == 422, r.text
    assert not root.exists() or not any(root.iterdir()), "a refused upload's files stay"

    old, part, fresh = root / "old-upload", root / "crashed.part", root / "fresh-upload"
    for d in (old, part, fresh):
        d.mkdir(parents=True)
        (d / "new_products.csv").write_text("x")
    three_days = time.time() - 3 * 86400
    os.utime(old, (three_days, three_days))
    os.utime(part, (time.time() - 7200, time.time() - 7200))
    r = _post(client, catalog, new, presets="thumbnail")
    assert r.status_code == 201, r.text
    left = {p.name for p in root.iterdir()}
    assert "old-upload" not in left and "crashed.part" not in left and "fresh-upload" in left
    assert len(left) == 2  # fresh-upload and the batch's own upload, which stays while the batch is young
