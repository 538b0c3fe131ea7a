"""The CLI's answers to a user's mistakes: a clear message and a non-zero exit, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from hitline.cli import app


@pytest.mark.parametrize("argv, message", [
    (["status", "nosuch"], "no batch 'nosuch'"),
    (["report", "nosuch"], "no batch 'nosuch'"),
    (["resume", "nosuch"], "no batch 'nosuch'"),
    (["run", "--catalog", "/nonexistent-hitline", "--new", "/tmp"], "catalog folder not found"),
    (["drop-collection", "nosuch"], "--yes"),
])
def test_mistakes_get_a_clear_message(hitline_env: Path, argv: list[str], message: str) -> None:
    res = CliRunner().invoke(app, argv)
    assert res.exit_code != 0
    assert message in " ".join(res.output.split()), res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)


def test_unknown_preset_is_refused_before_anything_is_queued(hitline_env: Path, demo_data) -> None:  # noqa: ANN001
    catalog, new = demo_data
    res = CliRunner().invoke(app, ["run", "--catalog", str(catalog), "--new", str(new), "--presets", "thumbnail,nope"])
    assert res.exit_code == 2 and "unknown preset" in res.output
    res = CliRunner().invoke(app, ["status"])
    assert "no batch yet" in res.output


def test_worker_refuses_to_start_without_broker_or_shared_milvus(hitline_env: Path, monkeypatch) -> None:  # noqa: ANN001
    res = CliRunner().invoke(app, ["worker", "--queues", "render"])
    assert res.exit_code == 2 and "HITLINE_BROKER_URL" in res.output
