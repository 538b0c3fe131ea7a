"""The CLI's answers to a user's mistakes: a clear message and a non-zero exit, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from hitline.cli import app


@pytest.mark.parametrize(
    "argv, message",
    [
        (["status", "nosuch"], "no batch 'nosuch'"),
        (["report", "nosuch"], "no batch 'nosuch'"),
        (["resume", "nosuch"], "no batch 'nosuch'"),
        (["run", "--catalog", "/nonexistent-hitline", "--new", "/tmp"], "catalog folder not found"),
        (["drop-collection", "nosuch"], "--yes"),
    ],
)
def test_mistakes_get_a_clear_message(hitline_env: Path, argv: list[str], message: str) -> None:
    res = CliRunner().invoke(app, argv)
    assert res.exit_code != 0
    assert message in " ".join(res.output.split()), res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unknown_preset_is_refused_before_a_worker_starts(
    hitline_env: Path,
    demo_data,  # noqa: ANN001
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import workers.embedded

    def no_worker(*a, **k):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("the embedded worker was started before the input was checked")

    monkeypatch.setattr(workers.embedded, "embedded_worker", no_worker)
    catalog, new = demo_data
    res = CliRunner().invoke(app, ["run", "--catalog", str(catalog), "--new", str(new), "--presets", "thumbnail,nope"])
    assert res.exit_code == 2 and "unknown preset" in res.output, res.output
    res = CliRunner().invoke(app, ["run", "--catalog", str(hitline_env / "nope"), "--new", str(new)])
    assert res.exit_code == 2 and "catalog folder not found" in " ".join(res.output.split()), res.output
    res = CliRunner().invoke(app, ["status"])
    assert "no batch yet" in res.output


@pytest.mark.parametrize(
    "env, message",
    [
        ({}, "set HITLINE_BROKER_URL"),
        ({"HITLINE_BROKER_URL": "redis://127.0.0.1:6379/15"}, "set HITLINE_MILVUS_URI"),
        (
            {"HITLINE_BROKER_URL": "redis://127.0.0.1:6379/15", "HITLINE_MILVUS_URI": "http://127.0.0.1:19530"},
            "set HITLINE_DATABASE_URL",
        ),
        (
            {
                "HITLINE_BROKER_URL": "redis://127.0.0.1:6379/15",
                "HITLINE_MILVUS_URI": "http://127.0.0.1:19530",
                "HITLINE_DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:{closed}/test",
            },
            "cannot reach the job table at postgresql+psycopg://postgres@127.0.0.1:{closed}/test",
        ),
        (
            {
                "HITLINE_BROKER_URL": "redis://127.0.0.1:{closed}/0",
                "HITLINE_MILVUS_URI": "http://127.0.0.1:19530",
                "HITLINE_DATABASE_URL": "sqlite:///{tmp}/jobs.sqlite",
            },
            "cannot reach the broker at redis://127.0.0.1:{closed}/0",
        ),
        (
            {
                "HITLINE_BROKER_URL": "redis://127.0.0.1:6379/15",
                "HITLINE_MILVUS_URI": "http://127.0.0.1:{closed}",
                "HITLINE_DATABASE_URL": "sqlite:///{tmp}/jobs.sqlite",
            },
            "cannot reach the Milvus server at http://127.0.0.1:{closed}",
        ),
    ],
)
def test_worker_refuses_to_start_with_one_line_when_a_service_is_missing_or_down(
    hitline_env: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    import workers.app

    started = []
    monkeypatch.setattr(workers.app.app, "worker_main", lambda argv: started.append(argv))
    closed = _closed_port()
    for k, v in env.items():
        monkeypatch.setenv(k, v.format(closed=closed, tmp=hitline_env))
    res = CliRunner().invoke(app, ["worker", "--queues", "render"])
    assert res.exit_code == 2, res.output
    out = " ".join(res.output.split())
    assert message.format(closed=closed, tmp=hitline_env) in out and "Traceback" not in out, out
    assert res.output.count("error:") == 1 and not started


def test_unreachable_job_table_is_one_line_not_a_traceback(hitline_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    closed = _closed_port()
    monkeypatch.setenv("HITLINE_DATABASE_URL", f"postgresql+psycopg://postgres@127.0.0.1:{closed}/test")
    res = CliRunner().invoke(app, ["status"])
    assert res.exit_code == 2 and isinstance(res.exception, SystemExit), res.output
    assert f"cannot reach the job table at postgresql+psycopg://postgres@127.0.0.1:{closed}/test" in " ".join(
        res.output.split()
    ), res.output
