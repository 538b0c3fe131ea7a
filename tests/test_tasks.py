"""Thin tasks: provider errors become Celery retries (Retry-After wins, capped), then a failed job."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from celery.exceptions import Ignore

from db import crud
from db.session import session_scope
from hitline.errors import RateLimited, RetryableProviderError
from hitline.jobs.context import get_context
from tasks import stages as t
from tasks.chains import sku_chain


class _Retry(Exception):
    pass


def _fake_task(retries: int) -> SimpleNamespace:
    calls: dict = {}

    def retry(exc=None, countdown=None):  # noqa: ANN001, ANN202
        calls.update(exc=exc, countdown=countdown)
        return _Retry()

    return SimpleNamespace(request=SimpleNamespace(retries=retries), retry=retry, calls=calls)


def _job(stage: str = "render") -> int:
    ctx = get_context()
    with session_scope(ctx.db_url) as s:
        crud.create_batch(s, "b", catalog_dir="c", new_dir="n", out_dir="o", options={}, budget_usd=None, notes=[])
        j = crud.add_job(s, "b", "sku", "X", 1, {}, stage, state="retrying")
        s.flush()
        return j.id


def test_retry_after_wins_over_backoff(hitline_env: Path) -> None:
    task = _fake_task(retries=0)
    with pytest.raises(_Retry):
        t._retry(task, RateLimited("slow down", status=429, retry_after=7.0), [1], "render")
    assert task.calls["countdown"] >= 7.0


def test_backoff_grows_with_jitter_and_is_capped(hitline_env: Path) -> None:
    seen = []
    for n in (0, 3, 5):
        task = _fake_task(retries=n)
        with pytest.raises(_Retry):
            t._retry(task, RetryableProviderError("502", status=502), [1], "render")
        seen.append(task.calls["countdown"])
    assert 0.5 <= seen[0] <= 1.5 and 4 <= seen[1] <= 12 and seen[2] <= 300


def test_after_the_last_retry_the_job_fails_with_the_reason(hitline_env: Path) -> None:
    job_id = _job()
    task = _fake_task(retries=t.MAX_RETRIES)
    with pytest.raises(Ignore):
        t._retry(task, RetryableProviderError("upstream 503", status=503), [job_id], "render")
    with session_scope(get_context().db_url) as s:
        job = crud.jobs(s, "b", ids=[job_id])[0]
    assert job.state == "failed" and "gave up after 7 attempts: upstream 503" in job.error


def test_chain_stops_on_failure_and_goes_on_when_an_earlier_delivery_did_the_stage(hitline_env: Path) -> None:
    job_id = _job("analyze")
    with pytest.raises(Ignore):
        t._continue_or_stop(job_id, "analyze", "failed")
    t._continue_or_stop(job_id, "embed", "skipped")  # the job is past embed: the chain continues
    with pytest.raises(Ignore):
        t._continue_or_stop(job_id, "analyze", "skipped")  # running elsewhere: this copy stops


def test_chains_carry_ids_only() -> None:
    c = sku_chain(42, "retrieve")
    assert [s.task for s in c.tasks] == ["hitline.retrieve", "hitline.analyze", "hitline.render"]
    assert all(tuple(s.args) == (42,) and not s.kwargs for s in c.tasks)
