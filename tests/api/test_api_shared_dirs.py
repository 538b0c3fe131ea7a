"""Which folders an outside caller may name (hitline.jobs.shared): HITLINE_API_SHARED_DIRS, empty by default
(uploads and the tenant's catalogs by name only), one rule for the HTTP API and the Celery contract."""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import pytest
from conftest import api_test_client
from typer.testing import CliRunner

from db.models import Batch, Catalog
from db.session import session_scope
from hitline.cli import app
from hitline.errors import InputError
from hitline.jobs import control
from hitline.jobs.context import get_runtime


SHARED = "HITLINE_API_SHARED_DIRS"


def _zip_of(new: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for p in new.rglob("*"):
            if p.is_file() and p.suffix != ".csv":
                z.writestr(str(p.relative_to(new)), p.read_bytes())
    return buf.getvalue()


def _contract_submit(payload: dict) -> str:  # type: ignore[type-arg]
    from tasks import contract

    return contract.submit_batch(payload)  # the task body, in process, on the embedded runtime


def _catalog_named(name: str, folder: Path, tenant: str = "default") -> None:
    """A catalog the server's admin added (`hitline catalog add`): only its row matters to the rule."""
    with session_scope(get_runtime().db_url) as s:
        s.add(Catalog(id="c" + name.replace("-", "")[:11], tenant=tenant, name=name, source_dir=str(folder)))


def test_unset_shared_dirs_refuse_named_folders_over_http_and_the_contract(
    hitline_env: Path, monkeypatch: pytest.MonkeyPatch, demo_data: tuple[Path, Path]
) -> None:
    monkeypatch.delenv("HITLINE_API_SHARED_DIRS")  # the default: nothing shared but uploads
    catalog, new = demo_data
    body = {"catalog": str(catalog), "new": str(new), "presets": ["thumbnail"]}
    with api_test_client() as client:
        r = client.post("/batches", json=body)
        assert r.status_code == 422, r.text
        message = r.json()["error"]["message"]
        assert f"catalog: {catalog} is not under a folder this server shares" in message
        assert "HITLINE_API_SHARED_DIRS: none set" in message
        # the Celery contract: the same sentence, nothing submitted
        with pytest.raises(InputError, match="not under a folder this server shares"):
            _contract_submit(body)
        assert client.post("/catalogs", json={"folder": str(catalog)}).status_code == 422

        # a catalog the admin added may be named; the new products must still be shared or uploaded
        _catalog_named("demo-hits", catalog)
        r = client.post("/batches", json={**body, "catalog": "demo-hits"})
        assert r.status_code == 422 and f"new: {new} is not under" in r.json()["error"]["message"], r.text
        with pytest.raises(InputError, match="not under a folder"):
            _contract_submit({**body, "catalog": "demo-hits"})
        up = client.post(
            "/batches",
            data={"catalog": "demo-hits", "presets": "thumbnail"},
            files={
                "new_products": ("new_products.csv", (new / "new_products.csv").read_bytes()),
                "images": ("images.zip", _zip_of(new)),
            },
        )
        assert up.status_code == 201, up.text  # an upload passes: it lives under the tenant's uploads
        with session_scope(get_runtime().db_url) as s:
            upload_dir = s.get(Batch, up.json()["batch_id"]).new_dir
        assert Path(upload_dir).is_relative_to(Path(hitline_env, "data", "uploads", "default").resolve())
        # and may be named again by its tenant (JSON or contract)...
        again = client.post("/batches", json={**body, "catalog": "demo-hits", "new": upload_dir})
        assert again.status_code == 201, again.text
        assert _contract_submit({**body, "catalog": "demo-hits", "new": upload_dir})

        # ...but not by another tenant, whose catalogs do not include demo-hits either
        with session_scope(get_runtime().db_url) as s:
            other = control.create_token(s, "other", tenant="other", role="submit")
        client.headers["Authorization"] = f"Bearer {other}"
        for named in ({"new": upload_dir, "catalog": "demo-hits"}, {"new": upload_dir, "catalog": str(catalog)}):
            r = client.post("/batches", json={**body, **named})
            assert r.status_code == 422 and "not under a folder" in r.json()["error"]["message"], r.text
        with pytest.raises(InputError, match="not under a folder"):
            _contract_submit({**body, "catalog": "demo-hits", "new": upload_dir, "tenant": "other"})


def test_shared_dirs_are_resolved_and_bound_the_contract_by_tenant(
    hitline_env: Path, monkeypatch: pytest.MonkeyPatch, demo_data: tuple[Path, Path]
) -> None:
    catalog, new = demo_data
    shared = hitline_env / "shared"
    shutil.copytree(new, shared / "new")  # new products on the shared storage
    (shared / "out-link").symlink_to(catalog)  # a symlink inside the shared folder to a folder outside it
    monkeypatch.setenv("HITLINE_API_SHARED_DIRS", json.dumps([str(shared)]))
    with api_test_client() as client:
        for folder in (shared / "out-link", shared / ".." / catalog.name, Path("relative")):
            r = client.post("/batches", json={"catalog": str(folder), "new": str(shared / "new")})
            assert r.status_code == 422, (folder, r.text)
            message = r.json()["error"]["message"]
            assert message.startswith(
                f"catalog: {folder} is not under a folder this server shares ({SHARED}: {shared.resolve()})"
            )
        with pytest.raises(InputError, match="out-link is not under a folder"):
            _contract_submit({"catalog": str(shared / "out-link"), "new": str(shared / "new")})

    # the contract names its tenant: it must exist, and the batch is that tenant's
    monkeypatch.setenv("HITLINE_API_SHARED_DIRS", json.dumps([str(catalog.parent), str(new.parent)]))
    from hitline.jobs.context import reset_runtime

    reset_runtime()
    payload = {"catalog": str(catalog), "new": str(new), "presets": ["thumbnail"]}
    with pytest.raises(InputError, match="no tenant 'acme' on this server.*hitline tenant create acme"):
        _contract_submit({**payload, "tenant": "acme"})
    with pytest.raises(InputError, match="tenant: String should match pattern"):
        _contract_submit({**payload, "tenant": "../x"})
    made = CliRunner().invoke(app, ["tenant", "create", "acme"])  # the server's admin makes the tenant
    assert made.exit_code == 0, made.output
    acme = _contract_submit({**payload, "tenant": "acme"})
    plain = _contract_submit(payload)
    with session_scope(get_runtime().db_url) as s:
        assert (s.get(Batch, acme).tenant_id, s.get(Batch, plain).tenant_id) == ("acme", "default")

    # retry, cancel and resume act for a tenant too: another tenant's batch is not found, nothing changes
    from tasks import contract

    verbs = (contract.retry_jobs, contract.cancel_batch, contract.resume_batch)
    with session_scope(get_runtime().db_url) as s:
        before = s.get(Batch, acme).cancelled_at
    for task in verbs:
        with pytest.raises(InputError, match=f"no batch '{acme}' in tenant 'default'"):
            task({"batch_id": acme})  # the default tenant may not touch acme's batch
        with pytest.raises(InputError, match=f"no batch '{plain}' in tenant 'acme'"):
            task({"batch_id": plain, "tenant": "acme"})
        with pytest.raises(InputError, match="no tenant 'nobody'"):
            task({"batch_id": acme, "tenant": "nobody"})
    with session_scope(get_runtime().db_url) as s:
        assert s.get(Batch, acme).cancelled_at == before
    assert contract.cancel_batch({"batch_id": acme, "tenant": "acme"}) >= 0  # its own tenant may
    assert contract.resume_batch({"batch_id": acme, "tenant": "acme"}) >= 0
