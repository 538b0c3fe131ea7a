"""The Celery tasks made from the stage registry: retries within one budget (Retry-After wins, capped
backoff), FAILURE with the reason when a job fails, chains that stop or go on, ids-only messages."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from db import crud
from db.session import session_scope
from hitline.errors import NotReady, RetryableProviderError
from hitline.jobs.context import get_runtime
from hitline.jobs.runner import Outcome
from hitline.jobs.stages import SKU_LINE, stage
from hitline.jobs.submit import Dispatch
from tasks.chains import chain_for
from tasks.stages import TASKS, JobFailed, _finish, backoff


def _job(stage_name: str = "render", state: str = "pending") -> int:
    rt = get_runtime()
    with session_scope(rt.db_url) as s:
        crud.create_batch(s, "b", catalog_dir="c", new_dir="n", out_dir="o", options={}, budget_usd=None, notes=[])
        j = crud.add_job(s, "b", "sku", "X", 1, {"image_path": "x.png"}, stage_name, state=state)
        s.flush()
        return j.id


def test_retry_after_wins_over_backoff() -> None:
    assert backoff(stage("sku", "render"), 0, retry_after=7.0) >= 7.0


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    st = stage("sku", "render")
    seen = [backoff(st, n) for n in (0, 3, 20)]
    assert 0.5 <= seen[0] <= 1.5 and 4 <= seen[1] <= 12 and seen[2] <= st.retry.max_backoff_s * 1.5


@pytest.fixture
def patched_work(monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    """Swap the analyze stage's work for the test's (the registry's Stage objects are frozen)."""
    st = stage("sku", "analyze")
    original = st.work

    def use(fn) -> None:  # noqa: ANN001
        object.__setattr__(st, "work", fn)

    yield use
    object.__setattr__(st, "work", original)


def test_provider_errors_retry_within_the_budget_then_the_task_fails_with_the_reason(
    hitline_env: Path, patched_work
) -> None:  # noqa: ANN001
    job_id = _job("analyze")
    calls = []

    def flaky(jc):  # noqa: ANN001, ANN202
        calls.append(jc.job_id)
        raise RetryableProviderError("upstream 503", status=503, retry_after=0)

    patched_work(flaky)
    result = TASKS[("sku", "analyze")].apply(args=(job_id,))  # eager: Celery runs each retry at once
    attempts = get_runtime().settings.provider_attempts
    assert len(calls) == attempts == 7
    assert result.state == "FAILURE" and isinstance(result.result, JobFailed)
    assert "gave up after 7 attempts: upstream 503" in str(result.result)
    with session_scope(get_runtime().db_url) as s:
        job = crud.job(s, job_id)
        assert job.state == "failed" and "gave up after 7 attempts: upstream 503" in job.error
        # every attempt is on the record: 6 retries and the last failure
        assert job.attempts == 7


def test_a_wait_for_the_catalog_is_not_an_attempt(hitline_env: Path, patched_work) -> None:  # noqa: ANN001
    job_id = _job("analyze")
    calls = []

    def waits_twice(jc):  # noqa: ANN001, ANN202
        calls.append(1)
        if len(calls) < 3:
            raise NotReady("catalog still indexing")
        # what an analyze stage writes must fit its model (hitline.jobs.results.AnalyzeResult)
        return {"style": {"scene": "s", "lighting": "l", "pose": "p", "mood": "m", "prompt": "p"}}

    patched_work(waits_twice)
    result = TASKS[("sku", "analyze")].apply(args=(job_id,))
    assert result.state == "SUCCESS" and len(calls) == 3
    with session_scope(get_runtime().db_url) as s:
        job = crud.job(s, job_id)
        assert job.stage == "render" and job.state == "pending" and job.attempts == 1


def test_failed_job_ends_the_task_as_failure_and_stops_the_chain() -> None:
    task = SimpleNamespace(request=SimpleNamespace(chain=["next"]))
    with pytest.raises(JobFailed, match="bad image"):
        _finish(task, stage("sku", "embed"), Outcome("failed", "bad image"))


def test_chain_goes_on_when_an_earlier_delivery_did_the_stage_and_stops_otherwise() -> None:
    st = stage("sku", "analyze")
    task = SimpleNamespace(request=SimpleNamespace(chain=["next"]))
    assert _finish(task, st, Outcome("skipped", moved_on=True)) == "skipped" and task.request.chain == ["next"]
    assert _finish(task, st, Outcome("done")) == "done" and task.request.chain == ["next"]
    _finish(task, st, Outcome("skipped"))  # running elsewhere: this copy stops, the other goes on
    assert task.request.chain is None
    task.request.chain = ["next"]
    assert _finish(task, st, Outcome("held", "budget $1.00 reached")).startswith("held") and task.request.chain is None


def test_chains_carry_ids_only_and_follow_the_registry() -> None:
    c = chain_for(Dispatch("b", "sku", "retrieve", (42,)))
    # a SKU chain goes on from its stage and ends with its contact sheet, at the lowest priority (off the
    # critical path)
    rest = [st.task_name for st in SKU_LINE[[st.name for st in SKU_LINE].index("retrieve") :]]
    assert [s.task for s in c.tasks] == [*rest, "hitline.contact_sheet"]
    assert c.tasks[-1].options["priority"] == 9
    assert all(tuple(s.args) == (42,) and not s.kwargs for s in c.tasks)
    full = chain_for(Dispatch("b", "sku", "embed", (7,)))
    assert [s.task for s in full.tasks] == [st.task_name for st in SKU_LINE] + ["hitline.contact_sheet"]
    hits = chain_for(Dispatch("b", "hit", "embed", (1, 2, 3)))
    assert [s.task for s in hits.tasks] == ["hitline.embed_hits", "hitline.index_hits"]
    assert all(tuple(s.args) == ("b", [1, 2, 3]) for s in hits.tasks)
