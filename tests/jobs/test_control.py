"""hitline/jobs/control.py on a real job table (SQLite here; the API tests run it on PostgreSQL):
summaries, pages, retry, cancel, reopen and tokens."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select, text

from db import crud
from db.models import ApiToken
from db.session import engine_for, init_db, session_scope
from hitline.jobs import control
from hitline.jobs.control import JobFilter
from hitline.jobs.submit import Dispatch


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    # both job tables: the claim and advance are one statement each on PostgreSQL, several on SQLite
    url = f"sqlite:///{tmp_path / 'jobs.sqlite'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    init_db(url)
    with session_scope(url) as s:
        crud.create_batch(
            s,
            "B",
            catalog_dir="c",
            new_dir="n",
            out_dir="o",
            options={"presets": ["thumbnail"]},
            budget_usd=2.0,
            notes=[],
        )
        for i in range(10):
            crud.add_job(s, "B", "sku", f"SKU{i:02d}", i, {}, "embed")
        crud.add_job(s, "B", "hit", "H1", 0, {}, "index", state="done")
        # a row rejected at validation: failed, never attempted
        crud.add_job(s, "B", "sku", "row@row12", 12, {}, "embed", "failed", "row 12: missing image_path")
    yield url
    engine_for(url)[0].dispose()


def _fail(url: str, item: str, stage: str, reason: str) -> int:
    with session_scope(url) as s:
        job = next(j for j in crud.jobs(s, "B") if j.item_id == item)
        job.stage = stage
        s.flush()
        assert crud.claim(s, job.id, stage) is not None
        crud.set_state(s, job.id, stage, "failed", reason)
        return job.id


def test_summary_counts_and_failures_grouped_by_reason(db: str) -> None:
    for i in range(3):
        _fail(db, f"SKU0{i}", "render", "provider 402: Insufficient credits")
    _fail(db, "SKU05", "analyze", "provider 403: Input flagged by moderation")
    with session_scope(db) as s:
        summ = control.summary(s, "B")
    assert summ.by_state["sku"] == {"pending": 6, "failed": 5}
    assert summ.by_state["hit"] == {"done": 1}
    assert summ.by_stage["sku"]["render"] == {"failed": 3}
    assert summ.budget_usd == 2.0 and summ.spent_usd == 0.0 and summ.open == 6
    assert summ.failures[0] == {
        "reason": "provider 402: Insufficient credits",
        "stage": "render",
        "kind": "sku",
        "count": 3,
        "retryable": True,
        "example": "provider 402: Insufficient credits",
    }
    rejected = [f for f in summ.failures if f["reason"] == "row <n>: missing image_path"]
    assert rejected and rejected[0]["retryable"] is False


def test_pages_cover_every_job_once_and_filters_apply(db: str) -> None:
    _fail(db, "SKU03", "render", "Provider 402: Insufficient CREDITS")
    seen, cursor = [], None
    with session_scope(db) as s:
        while True:
            page = control.list_jobs(s, "B", JobFilter(kind="sku"), cursor=cursor, limit=4)
            seen += [j.item_id for j in page.jobs]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert len(seen) == len(set(seen)) == 11
        hits = control.list_jobs(s, "B", JobFilter(reason="insufficient credits")).jobs
        assert [j.item_id for j in hits] == ["SKU03"]
        assert control.list_jobs(s, "B", JobFilter(reason="%")).jobs == []  # LIKE wildcards are escaped
        with pytest.raises(control.NotFound):
            control.list_jobs(s, "nope")
        with pytest.raises(control.InputError):
            control.list_jobs(s, "B", cursor="abc")


def test_retry_resets_matching_failed_jobs_once_and_skips_rejected_rows(db: str) -> None:
    a = _fail(db, "SKU01", "render", "402 Insufficient credits")
    b = _fail(db, "SKU02", "analyze", "403 flagged")
    with session_scope(db) as s:
        assert control.retry_failed(s, "B", JobFilter(reason="402")) == [Dispatch("B", "sku", "render", (a,))]
    with session_scope(db) as s:
        assert control.retry_failed(s, "B", JobFilter(reason="402")) == []  # already pending: not twice
        job = crud.jobs(s, "B", ids=[a])[0]
        assert (job.state, job.stage, job.error) == ("pending", "render", None)
        todo = control.retry_failed(s, "B")  # all failed: b, but not the rejected row
    assert todo == [Dispatch("B", "sku", "analyze", (b,))]


def test_cancel_stops_waiting_jobs_and_running_ones_at_their_next_stage(db: str) -> None:
    with session_scope(db) as s:
        jobs = crud.jobs(s, "B", "sku")
        running = crud.claim(s, jobs[0].id, "embed")
        waiting = crud.claim(s, jobs[2].id, "embed")  # will give its claim back (catalog not ready)
        assert running is not None and waiting is not None
    with session_scope(db) as s:
        stopped = control.cancel(s, "B")
    assert stopped == 8  # the other pending SKUs; the rejected row stays failed
    with session_scope(db) as s:
        crud.release(s, waiting)  # pending again, but the batch is cancelled
    with session_scope(db) as s:
        assert crud.claim(s, waiting.id, "embed") is None
        assert crud.jobs(s, "B", ids=[waiting.id])[0].state == "cancelled"
    with session_scope(db) as s:
        assert crud.claim(s, jobs[1].id, "embed") is None  # a queued message arriving after the cancel
        # the running job finishes its stage: its result is kept, the next stage is not started
        crud.advance(s, running, "index", {"key": "paid-for"})
    with session_scope(db) as s:
        job = crud.jobs(s, "B", ids=[running.id])[0]
        assert (job.stage, job.state, job.result["embed"]) == ("index", "cancelled", {"key": "paid-for"})
        assert crud.claim(s, running.id, "index") is None
        with pytest.raises(control.Conflict):
            control.retry_failed(s, "B")
    with session_scope(db) as s:
        crud.mark_enqueued(s, [j.id for j in jobs])  # as if their messages had been sent before the cancel
        assert control.reopen(s, "B") == 10
    with session_scope(db) as s:
        # resume re-sends jobs with no message in flight: the reopened ones must count as never sent
        assert all(j.enqueued_at is None for j in crud.jobs(s, "B", "sku") if j.state == "pending")
        assert crud.claim(s, running.id, "index") is not None  # resumable where it stopped


def test_tokens_store_only_a_hash(db: str) -> None:
    with session_scope(db) as s:
        token = control.create_token(s, "shop-service")
        with pytest.raises(control.Conflict):
            control.create_token(s, "shop-service")
    with session_scope(db) as s:
        assert control.verify_token(s, token).name == "shop-service"
        assert control.verify_token(s, token + "x") is None and control.verify_token(s, "") is None
        dump = " ".join(str(v) for row in s.execute(text("SELECT * FROM api_token")) for v in row)
        assert token not in dump and token[3:] not in dump
        control.revoke_token(s, "shop-service")
    with session_scope(db) as s:
        assert control.verify_token(s, token) is None
        assert s.scalar(select(ApiToken.revoked_at)) is not None


def test_reasons_that_differ_only_by_file_or_row_are_one_group_and_retry_together(db: str) -> None:
    ids = [
        _fail(db, f"SKU0{i}", "embed", f"cannot read image NEW00{i}.jpg: cannot identify image file") for i in range(4)
    ]
    _fail(db, "SKU05", "embed", "cannot read image x.png: 100%_ truncated")  # another group, LIKE-hostile
    with session_scope(db) as s:
        groups = {f["reason"]: f for f in control.summary(s, "B").failures}
        label = "cannot read image <file>: cannot identify image file"
        assert groups[label]["count"] == 4 and groups[label]["example"].startswith("cannot read image NEW00")
        assert groups["cannot read image <file>: 100%_ truncated"]["count"] == 1
        page = control.list_jobs(s, "B", JobFilter(reason_group=label))
        assert sorted(j.id for j in page.jobs) == sorted(ids)
        todo = control.retry_failed(s, "B", JobFilter(reason_group=label))
    assert sorted(i for d in todo for i in d.job_ids) == sorted(ids)


def test_summary_counts_input_checks_gate_outcomes_and_the_render_plan(rendered_batch: str) -> None:
    from hitline.jobs.context import get_runtime

    with session_scope(get_runtime().db_url) as s:
        q = control.summary(s, rendered_batch).quality
        job = next(j for j in crud.jobs(s, rendered_batch) if j.item_id == "SKU0")
        facts = control.render_facts(job)
        waiting = control.render_facts(next(j for j in crud.jobs(s, rendered_batch) if j.item_id == "WAITING"))
    assert q.input_checks.model_dump() == {
        "low_res": 7,
        "downsized": {"amazon_main": {"1K": 6}},
        "failed": {"banner": 1},
        "background": 1,
        "background_presets": {"amazon_main": 1},
        "touches_frame": 1,
    }
    # 8 SKUs x 4 outputs, minus the failed banner; SKU0 has one of each outcome but passed twice
    assert q.gate == {"passed": 29, "passed_after_rerender": 1, "needs_review": 1}
    plan = q.render_plan
    assert plan.skus == 8 and plan.renders == 24 and plan.derived == 8
    assert plan.naive_usd == pytest.approx(8 * 0.348) and plan.saving_usd == pytest.approx(8 * 0.045)
    assert plan.paid_usd == 0.0  # no charge rows in this table
    from hitline.jobs.quality import plan_text

    assert "(8 resized)" in plan_text(plan) and plan_text(plan.model_copy(update={"derived": 0})) == ""
    # a provider without prices (local): the plan without a row of $0.000 figures
    assert (
        plan_text(plan.model_copy(update={"naive_usd": 0.0, "cost_usd": 0.0}))
        == "render plan: 24 renders for 32 outputs (8 resized)"
    )
    assert facts.input_checks.downsized == {"amazon_main": "1K"} and facts.input_checks.touches_frame
    assert facts.gate == {"passed": 2, "passed_after_rerender": 1, "needs_review": 1}
    assert facts.render_plan.derived == {"thumbnail": "amazon_main"} and waiting is None
