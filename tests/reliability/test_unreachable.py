"""Unreachable services as real processes meet them: a `hitline worker` refuses to start with one line
and exit 2 (job table, broker, Milvus on a closed port; a provider queue without its key), and a
`hitline run` whose broker is down says so in one line with the batch id and the command that finishes
it; `hitline resume` then finishes that batch once the broker is back."""

from __future__ import annotations

import re
import subprocess

import pytest

from .conftest import check_no_double_render, standard_workers
from testkit.services import BIN, free_port


def _one_line_error(res: subprocess.CompletedProcess[str]) -> str:
    out = (res.stdout + res.stderr).strip()
    assert res.returncode == 2 and "Traceback" not in out and len(out.splitlines()) == 1, (res.returncode, out)
    return out


@pytest.mark.timeout(300)
def test_a_worker_refuses_unreachable_services_in_one_line(make_line) -> None:  # noqa: ANN001
    line = make_line()
    closed = free_port()
    cases = [
        (
            {"HITLINE_DATABASE_URL": line.pg.url("nowhere").replace(str(line.pg.port), str(closed))},
            "cannot reach the job table",
        ),
        (
            {"HITLINE_BROKER_URL": f"redis://127.0.0.1:{closed}/0"},
            f"cannot reach the broker at redis://127.0.0.1:{closed}/0",
        ),
        (
            {"HITLINE_MILVUS_URI": f"http://127.0.0.1:{closed}"},
            f"cannot reach the Milvus server at http://127.0.0.1:{closed}",
        ),
        # the real API without a key (the fake on loopback needs none)
        (
            {"HITLINE_OPENROUTER_BASE_URL": "https://openrouter.ai/api/v1", "HITLINE_OPENROUTER_API_KEY": None},
            "HITLINE_OPENROUTER_API_KEY",
        ),
    ]
    for extra, says in cases:
        env = {k: v for k, v in {**line.env, **extra}.items() if v is not None}
        res = subprocess.run(
            [str(BIN / "hitline"), "worker", "--queues", "analyze,render"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert says in _one_line_error(res), (extra, res.stdout + res.stderr)


@pytest.mark.timeout(300)
def test_a_submission_with_the_broker_down_names_its_batch_and_resume_finishes_it(
    make_line,
    skus_factory,  # noqa: ANN001
    tmp_path,
) -> None:  # noqa: ANN001
    line = make_line()
    line.redis.stop()
    run = subprocess.run(
        [
            str(BIN / "hitline"),
            "run",
            "--catalog",
            str(line.catalog),
            "--new",
            str(skus_factory(4)),
            "--out",
            str(tmp_path / "out"),
            "--presets",
            "thumbnail",
        ],
        env=line.env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    out = _one_line_error(run)
    batch = re.search(r"batch (\S+?):", out).group(1)
    assert f"hitline resume {batch}" in out, out
    line.redis.start()
    standard_workers(line)
    resume = subprocess.run(
        [str(BIN / "hitline"), "resume", batch], env=line.env, capture_output=True, text=True, timeout=240
    )
    assert resume.returncode == 0, resume.stdout + resume.stderr + line.workers.tails()
    assert line.states(batch) == {("done", "done"): 4}
    check_no_double_render(line, batch, 4)
