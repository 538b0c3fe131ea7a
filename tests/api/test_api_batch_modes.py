"""`mode` (direct|staged) and `escalate` (pro|none) are a batch's own choice from every entry point: the
HTTP API's batch request, the Celery contract's payload (docs/contract/submit_batch.schema.json) and
`hitline run --mode/--escalate` accept the same values, refuse the same others with a sentence, and
the batch row records what was asked (the settings' value when nothing was)."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from conftest import api_test_client
from fastapi.testclient import TestClient

from db.models import Batch
from db.session import session_scope
from hitline.errors import InputError
from hitline.jobs.context import get_runtime
from hitline.jobs.requests import BatchRequest
from hitline.jobs.submit import ESCALATIONS, MODES, batch_options


@pytest.fixture
def client(hitline_env: Path):  # noqa: ANN201
    with api_test_client() as c:
        yield c


def _options(batch_id: str) -> dict:  # type: ignore[type-arg]
    with session_scope(get_runtime().db_url) as s:
        batch = s.get(Batch, batch_id)
        assert batch is not None
        return dict(batch.options)


def test_the_api_records_mode_and_escalate_and_refuses_others(
    client: TestClient, demo_data: tuple[Path, Path], tmp_path: Path
) -> None:
    from hitline_cluster import subset

    catalog, new = demo_data
    new = subset(new, tmp_path / "new", 1)  # one SKU: the batches run in the embedded worker meanwhile
    base = {"catalog": str(catalog), "new": str(new), "presets": ["thumbnail"]}
    for field, value in (("mode", "fast"), ("escalate", "max"), ("mode", "")):
        r = client.post("/batches", json={**base, field: value})
        assert r.status_code == 422, (field, value, r.text[:300])
        assert field in r.json()["error"]["message"]
    staged = client.post("/batches", json={**base, "mode": "staged", "escalate": "pro"})
    assert staged.status_code == 201, staged.text[:300]
    options = _options(staged.json()["batch_id"])
    assert (options["mode"], options["escalate"]) == ("staged", "pro")
    default = client.post("/batches", json={**base, "top_k": 2})
    options = _options(default.json()["batch_id"])
    assert (options["mode"], options["escalate"]) == ("direct", "none")  # the settings' defaults


def test_the_contract_passes_mode_and_escalate_and_refuses_others(
    hitline_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hitline.jobs import verbs
    from tasks import contract

    seen: dict[str, object] = {}

    class Sub:
        batch_id = "b1"

    def fake_submit(*args: object, **kwargs: object) -> Sub:
        seen.update(kwargs)
        return Sub()

    monkeypatch.setattr(verbs, "submit", fake_submit)
    rt = get_runtime()
    monkeypatch.setattr(
        contract, "get_runtime", lambda: type("Rt", (), {"settings": rt.settings, "db_url": rt.db_url})()
    )
    # folders under the tests' HITLINE_API_SHARED_DIRS (the contract checks them as the API does)
    payload = {"catalog": str(hitline_env / "c"), "new": str(hitline_env / "n")}
    assert contract.submit_batch.run({**payload, "mode": "staged", "escalate": "pro"}) == "b1"
    assert (seen["mode"], seen["escalate"]) == ("staged", "pro")
    for field, value in (("mode", "fast"), ("escalate", "max")):
        with pytest.raises(InputError, match=f"{field}.*docs/contract"):
            contract.submit_batch.run({**payload, field: value})


def test_every_entry_point_accepts_the_same_values(hitline_env: Path) -> None:
    from hitline import cli

    schema = BatchRequest.model_json_schema()["properties"]
    enum = {f: {e for alt in schema[f]["anyOf"] for e in alt.get("enum", [])} for f in ("mode", "escalate")}
    assert enum == {"mode": set(MODES), "escalate": set(ESCALATIONS)}
    settings = get_runtime().settings
    for mode in MODES:
        for escalate in ESCALATIONS:
            got = batch_options(settings, presets=["thumbnail"], mode=mode, escalate=escalate)
            assert (got["mode"], got["escalate"]) == (mode, escalate)
    with pytest.raises(InputError, match="mode must be direct or staged"):
        batch_options(settings, presets=["thumbnail"], mode="fast")
    with pytest.raises(InputError, match="escalate must be pro or none"):
        batch_options(settings, presets=["thumbnail"], escalate="max")
    with pytest.raises(typer.BadParameter, match="--mode must be direct or staged"):
        cli.run(catalog=Path("/c"), new=Path("/n"), mode="fast")  # type: ignore[call-arg]
