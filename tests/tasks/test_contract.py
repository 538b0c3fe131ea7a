"""The Celery contract (tasks/contract.py): other services send `hitline.submit_batch` and
`hitline.retry_jobs` by name, from a process that has only Celery, with JSON payloads described by
docs/contract/*.schema.json."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hitline.jobs.requests import SCHEMAS, json_schema

ROOT = Path(__file__).resolve().parents[2]

# a client service: nothing of hitline is importable on purpose (-I: isolated, no cwd on sys.path)
CLIENT = textwrap.dedent("""
    import json, sys
    from celery import Celery
    broker, name, payload = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    assert not any(m.split(".")[0] in ("hitline", "tasks", "workers", "db") for m in sys.modules), "imported hitline"
    client = Celery(broker=broker, backend=broker)
    try:
        print(json.dumps({"result": client.send_task(name, args=[payload]).get(timeout=120)}))
    except Exception as e:
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}))
""")


def _send(broker: str, name: str, payload: dict) -> dict:  # type: ignore[type-arg]
    res = subprocess.run(
        [sys.executable, "-I", "-c", CLIENT, broker, name, json.dumps(payload)],
        capture_output=True,
        text=True,
        timeout=180,
        cwd="/",
    )
    assert res.returncode == 0, res.stdout + res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_schema_files_are_the_models_schemas(name: str) -> None:
    on_disk = json.loads((ROOT / "docs" / "contract" / name).read_text())
    assert on_disk == json_schema(SCHEMAS[name]), f"regenerate: python -m hitline.jobs.requests ({name})"


@pytest.mark.distributed
@pytest.mark.slow
@pytest.mark.timeout(600)  # may be the test that starts the shared cluster
def test_send_task_submits_and_retries_from_a_celery_only_process(
    api_cluster,
    fake_fault,  # noqa: ANN001
    tmp_path: Path,
) -> None:
    from hitline_cluster import subset

    c = api_cluster
    broker = c.env["HITLINE_BROKER_URL"]
    new = subset(c.new, tmp_path / "new", 2)
    bad = _send(broker, "hitline.submit_batch", {"catalog": str(c.catalog)})
    assert "new: Field required" in bad["error"] and "docs/contract" in bad["error"]

    fake_fault(fail={"image": "402"})
    batch_id = _send(broker, "hitline.submit_batch", {"catalog": str(c.catalog), "new": str(new)})["result"]
    b = c.wait_batch(batch_id)
    assert b["counts"]["sku"] == {"failed": 2}, b
    fake_fault(fail={})
    assert _send(broker, "hitline.retry_jobs", {"batch_id": batch_id, "stage": "render"}) == {"result": 2}
    b = c.wait_batch(batch_id)
    assert b["counts"]["sku"] == {"done": 2}, b
    assert "no batch" in _send(broker, "hitline.retry_jobs", {"batch_id": "nope"})["error"]
