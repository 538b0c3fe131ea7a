"""Tenants: a token acts only inside its tenant. EVERY route of the OpenAPI document is called with another
tenant's token and this tenant's ids (not a sample: a route added later fails here until it is scoped);
roles, expiry, revocation, listings and idempotency keys per tenant."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from db.models import ApiToken, Batch, CatalogVersion, Output, WebhookEndpoint
from db.session import session_scope
from hitline.jobs import control


@pytest.fixture
def world(rendered_batch: str, hitline_env: Path):  # noqa: ANN201
    """Batch Q (8 rendered SKUs) in the default tenant, its ids, and tokens of two tenants."""
    from hitline.api import create_app
    from hitline.jobs.context import get_runtime

    ctx = get_runtime()
    with session_scope(ctx.db_url) as s:
        mine = control.create_token(s, "mine")
        other = control.create_token(s, "other", tenant="acme", role="operate")
        page = control.list_jobs(s, rendered_batch, control.JobFilter(kind="sku"))
        job = page.jobs[0]
        s.add(
            Output(
                batch_id=rendered_batch,
                job_id=job.id,
                item_id=job.item_id,
                preset="thumbnail",
                path=str(hitline_env / "out" / rendered_batch / job.item_id / "thumbnail.png"),
            )
        )
        s.add(WebhookEndpoint(batch_id=rendered_batch, url="http://127.0.0.1:9/hook", events=["batch.finished"]))
        s.flush()
        ids = {
            "batch_id": rendered_batch,
            "job_id": job.id,
            "output_id": s.query(Output.id).scalar(),
            "endpoint_id": s.query(WebhookEndpoint.id).scalar(),
            "n": 0,
            "path": f"{job.item_id}/thumbnail.png",
            # the catalog the batch's folder resolved to (hitline/jobs/catalogs.py)
            "ref": s.query(CatalogVersion.catalog_id)
            .join(Batch, Batch.catalog_version_id == CatalogVersion.id)
            .filter(Batch.id == rendered_batch)
            .scalar(),
        }
    with TestClient(create_app(ctx.settings)) as c:
        yield c, mine, other, ids


def _body(spec: dict, op: dict) -> dict | None:
    content = (op.get("requestBody") or {}).get("content", {})
    if "application/json" not in content:
        return None
    schema = content["application/json"]["schema"]
    if "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].split("/")[-1]]
    # the smallest valid body of each request model: what the route needs to reach its work
    body = {"decision": "approve", "url": "http://127.0.0.1:9/hook", "catalog": "/x", "new": "/y"}
    return {k: v for k, v in body.items() if k in schema.get("properties", {})}


def test_every_route_refuses_another_tenants_ids(world) -> None:  # noqa: ANN001
    client, mine, other, ids = world
    spec = client.get("/openapi.json", headers={"Authorization": f"Bearer {mine}"}).json()
    walked = 0
    for path, ops in spec["paths"].items():
        names = re.findall(r"{(\w+)(?::path)?}", path)
        url = path
        for name in names:
            url = re.sub(r"{%s(:path)?}" % name, str(ids[name]), url)
        for method, op in ops.items():
            body = _body(spec, op)
            takes_batch = any(p["name"] == "batch_id" for p in op.get("parameters", []))
            params = {"batch_id": ids["batch_id"]} if takes_batch and not names else {}
            r = client.request(
                method.upper(), url, json=body, params=params, headers={"Authorization": f"Bearer {other}"}
            )
            walked += 1
            # another tenant's id is answered like an unknown one; a route without an id in its path got
            # ?batch_id= (where it filters by it) or must not show the batch at all
            if names or takes_batch:
                assert r.status_code == 404, (method, path, r.status_code, r.text[:200])
            else:
                assert f'"{ids["batch_id"]}"' not in r.text, (method, path, r.text[:200])
            # and the owner reaches the same route (it is the tenant check that refused, not the ids)
            mine_r = client.request(
                method.upper(), url, json=body, params=params, headers={"Authorization": f"Bearer {mine}"}
            )
            if names:
                assert not re.search(r"no (batch|job|output|webhook endpoint) ", mine_r.text), (
                    method,
                    path,
                    mine_r.text[:200],
                )
    assert walked == sum(len(ops) for ops in spec["paths"].values()) >= 20
    # the dashboard's pages too
    ui = TestClient(client.app)
    ui.post("/ui/login", data={"token": other})
    assert ids["batch_id"] not in ui.get("/ui/batches").text
    for page in (
        f"/ui/batches/{ids['batch_id']}",
        f"/ui/jobs/{ids['job_id']}",
        f"/ui/batches/{ids['batch_id']}/review",
    ):
        assert ui.get(page).status_code == 404, page


def test_listings_and_idempotency_keys_are_per_tenant(world, demo_data: tuple[Path, Path]) -> None:  # noqa: ANN001
    client, mine, other, ids = world
    catalog, new = demo_data
    body = {"catalog": str(catalog), "new": str(new), "presets": ["thumbnail"]}
    a = client.post("/batches", json=body, headers={"Authorization": f"Bearer {mine}", "Idempotency-Key": "k1"})
    b = client.post("/batches", json=body, headers={"Authorization": f"Bearer {other}", "Idempotency-Key": "k1"})
    assert a.status_code == 201 and b.status_code == 201, (a.text, b.text)
    assert a.json()["batch_id"] != b.json()["batch_id"] and not b.json()["existing"]
    again = client.post("/batches", json=body, headers={"Authorization": f"Bearer {other}", "Idempotency-Key": "k1"})
    assert again.json()["batch_id"] == b.json()["batch_id"] and again.json()["existing"]
    theirs = {x["id"] for x in client.get("/batches", headers={"Authorization": f"Bearer {other}"}).json()["batches"]}
    ours = {x["id"] for x in client.get("/batches", headers={"Authorization": f"Bearer {mine}"}).json()["batches"]}
    assert theirs == {b.json()["batch_id"]} and ours == {ids["batch_id"], a.json()["batch_id"]}


def test_roles_expiry_and_revocation(world) -> None:  # noqa: ANN001
    client, _mine, _other, ids = world
    url = client.app.state.settings.db_url()
    with session_scope(url) as s:
        reader = control.create_token(s, "reader", tenant="default", role="read")
        submitter = control.create_token(s, "submitter", tenant="default", role="submit")
        old = control.create_token(s, "old", tenant="default", expires_in=timedelta(seconds=-1))
        gone = control.create_token(s, "gone")
        control.revoke_token(s, "gone")
    batch = ids["batch_id"]
    assert client.get(f"/batches/{batch}", headers={"Authorization": f"Bearer {reader}"}).status_code == 200
    r = client.post("/batches", json={"catalog": "/x", "new": "/y"}, headers={"Authorization": f"Bearer {reader}"})
    assert r.status_code == 403 and "role" in r.json()["error"]["message"]
    r = client.post("/batches", json={"catalog": "/x", "new": "/y"}, headers={"Authorization": f"Bearer {submitter}"})
    assert r.status_code == 422  # allowed to submit: the folders are what is wrong
    for t in (reader, submitter):
        r = client.post(f"/batches/{batch}/cancel", headers={"Authorization": f"Bearer {t}"})
        assert r.status_code == 403, r.text
    for t in (old, gone):
        assert client.get("/batches", headers={"Authorization": f"Bearer {t}"}).status_code == 401
    with session_scope(url) as s:
        assert {t.name: (t.tenant_id, t.role) for t in s.query(ApiToken)}["submitter"] == ("default", "submit")
