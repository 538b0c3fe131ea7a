"""Resume and submission against the job table: nothing with a message in flight is sent twice; a
submission the broker refused is finished by `hitline resume`; an idempotency key returns the same batch."""

from __future__ import annotations

from pathlib import Path

import pytest

from db import crud
from db.session import session_scope
from hitline.jobs.context import get_runtime
from hitline.jobs.resume import plan_resume
from hitline.jobs.submit import IdempotencyConflict, batch_options, submit_batch


def _submit(demo_data: tuple[Path, Path], out: Path, key: str | None = None, presets: list[str] | None = None):  # noqa: ANN202
    rt = get_runtime()
    options = batch_options(rt.settings, presets=presets or ["thumbnail"])
    return submit_batch(rt, demo_data[0], demo_data[1], out, options=options, idempotency_key=key)


def test_resume_leaves_queued_jobs_alone_and_sends_the_lost(hitline_env: Path, demo_data, monkeypatch) -> None:  # noqa: ANN001
    import tasks.chains as chains

    sent = []
    monkeypatch.setattr(chains, "publish", lambda sender, d, priority=None: sent.append(d))
    rt = get_runtime()
    sub = _submit(demo_data, hitline_env / "out")
    chains.send(rt, sub.dispatches)
    assert len(sent) == len(sub.dispatches)
    # every job has a message in flight: a resume sends nothing (it used to re-send all 54 chains)
    assert plan_resume(rt, sub.batch_id) == []
    # a worker died holding one job; another job's message was lost long ago
    with session_scope(rt.db_url) as s:
        crud.claim(s, sub.sku_jobs[0], "embed", token="dead-task")
        lost = crud.job(s, sub.sku_jobs[1])
        lost.enqueued_at = crud.now().replace(year=2020)
    todo = plan_resume(rt, sub.batch_id, stale_after_s=60)
    assert [d.job_ids for d in todo] == [(sub.sku_jobs[1],)]  # the running claim is younger than 60 s
    todo = plan_resume(rt, sub.batch_id, stale_after_s=0)
    assert {d.job_ids[0] for d in todo if d.kind == "sku"} == set(sub.sku_jobs)  # stale_after 0: all unfinished


def test_a_refused_enqueue_names_the_batch_and_resume_finishes_it(hitline_env: Path, demo_data, monkeypatch) -> None:  # noqa: ANN001
    from kombu.exceptions import OperationalError

    import tasks.chains as chains

    sent = []

    def flaky(sender, d, priority=None):  # noqa: ANN001, ANN202
        if len(sent) == 3:
            raise OperationalError("Error 111 connecting to 127.0.0.1:6390. Connection refused.")
        sent.append(d)

    monkeypatch.setattr(chains, "publish", flaky)
    rt = get_runtime()
    sub = _submit(demo_data, hitline_env / "out")
    with pytest.raises(chains.EnqueueFailed) as info:
        chains.send(rt, sub.dispatches)
    msg = str(info.value)
    assert sub.batch_id in msg and f"hitline resume {sub.batch_id}" in msg and "Connection refused" in msg
    # what the broker took is stamped; the rest is exactly what resume sends (nothing twice)
    todo = plan_resume(rt, sub.batch_id)
    sent_ids = {i for d in sent for i in d.job_ids}
    todo_ids = {i for d in todo for i in d.job_ids}
    assert todo_ids and not (todo_ids & sent_ids)
    assert todo_ids | sent_ids == {i for d in sub.dispatches for i in d.job_ids}


def test_same_idempotency_key_same_batch_other_request_conflicts(hitline_env: Path, demo_data) -> None:  # noqa: ANN001
    first = _submit(demo_data, hitline_env / "out", key="order-42")
    again = _submit(demo_data, hitline_env / "out", key="order-42")
    assert again.batch_id == first.batch_id and again.existing and not first.existing
    assert again.sku_jobs == first.sku_jobs and again.hit_chunks == first.hit_chunks
    # nothing was sent the first time, so a repeat sends it (once): every job appears in its dispatches
    assert {i for d in again.dispatches for i in d.job_ids} == {i for d in first.dispatches for i in d.job_ids}
    with session_scope(get_runtime().db_url) as s:
        crud.mark_enqueued(s, [i for d in first.dispatches for i in d.job_ids])
    assert _submit(demo_data, hitline_env / "out", key="order-42").dispatches == []  # all sent: nothing again
    with pytest.raises(IdempotencyConflict, match="order-42"):
        _submit(demo_data, hitline_env / "out", key="order-42", presets=["banner"])
    with session_scope(get_runtime().db_url) as s:
        assert crud.latest_batch_id(s) == first.batch_id


def test_broker_url_in_messages_keeps_the_db_number_and_hides_the_password() -> None:
    from hitline.cli import _safe_url

    assert _safe_url("redis://:s3cret@127.0.0.1:6379/3") == "redis://:**@127.0.0.1:6379/3"
    assert _safe_url("amqp://guest:guest@127.0.0.1:5672/hitline") == "amqp://guest:**@127.0.0.1:5672/hitline"
