"""Review verbs on the embedded job table: which outputs wait for review, approve / reject / redo by id
and by filter, who and when recorded, and a redo's new take rendered, charged and pending again."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import render_result


def _batch(url: str, out: Path, *, review: str | None, n: int = 3) -> list[int]:
    from db import crud
    from db.session import init_db, session_scope
    from hitline.jobs.options import BatchOptions
    from hitline.jobs.review import record_outputs

    init_db(url)
    ids = []
    with session_scope(url) as s:
        crud.create_batch(
            s,
            "R",
            catalog_dir="c",
            new_dir="n",
            out_dir=str(out),
            options={
                "presets": ["amazon_main", "shopify", "thumbnail", "banner"],
                **({"review": review} if review else {}),
            },
            budget_usd=None,
            notes=[],
        )
        for i in range(n):
            j = crud.add_job(s, "R", "sku", f"SKU{i}", i, {}, "done", "done")
            s.flush()
            r = render_result(out=out, statuses=("passed", "passed", "passed", "needs_review"))
            j.result = {"render": r}
            assert record_outputs(s, "R", j.id, j.item_id, r, BatchOptions(review=review)) == 4
            # the same stage finishing twice (a redelivery) writes nothing again
            assert record_outputs(s, "R", j.id, j.item_id, r, BatchOptions()) == 0
            ids.append(j.id)
    return ids


def test_only_gate_failures_wait_without_review_all_and_every_output_with_it(hitline_env: Path) -> None:
    from db.session import session_scope
    from hitline.jobs.context import get_runtime
    from hitline.jobs.review import review_counts

    url = get_runtime().db_url
    _batch(url, hitline_env / "out", review=None)
    with session_scope(url) as s:
        assert review_counts(s, "R") == {"none": 9, "pending": 3, "approved": 0, "rejected": 0, "redo": 0, "final": 0}
        s.execute(__import__("sqlalchemy").text("DELETE FROM output"))
        s.execute(__import__("sqlalchemy").text("DELETE FROM job"))
        s.execute(__import__("sqlalchemy").text("DELETE FROM batch"))
    _batch(url, hitline_env / "out", review="all")
    with session_scope(url) as s:
        assert review_counts(s, "R")["pending"] == 12


def test_decisions_by_id_and_filter_record_who_and_when(hitline_env: Path) -> None:
    from db.models import Output, ReviewDecision
    from db.session import session_scope
    from hitline.errors import InputError
    from hitline.jobs.context import get_runtime
    from hitline.jobs.review import OutputFilter, decide, review_counts

    url = get_runtime().db_url
    _batch(url, hitline_env / "out", review="all")
    with session_scope(url) as s:
        first = s.query(Output).order_by(Output.id).first()
        d = decide(s, "R", OutputFilter(output_ids=(first.id,)), "reject", by="ana", note="sleeve cut off")
        assert d.changed == [first.id]
        d = decide(s, "R", OutputFilter(review="pending", preset="banner"), "approve", by="bo")
        assert len(d.changed) == 3
        d = decide(s, "R", OutputFilter(review="pending"), "approve", by="bo")
        assert len(d.changed) == 8 and d.skipped == 0
        # again: nothing pending is left, and approved ones are not approved twice
        assert decide(s, "R", OutputFilter(preset="banner"), "approve", by="bo").skipped == 3
        with pytest.raises(InputError, match="redo needs a note"):
            decide(s, "R", OutputFilter(), "redo", by="bo")
        assert review_counts(s, "R") == {"none": 0, "pending": 0, "approved": 11, "rejected": 1, "redo": 0, "final": 0}
        rows = s.query(ReviewDecision).order_by(ReviewDecision.id).all()
        assert (rows[0].by, rows[0].decision, rows[0].note) == ("ana", "rejected", "sleeve cut off")
        assert len(rows) == 12 and all(r.at is not None for r in rows)
        o = s.get(Output, first.id, populate_existing=True)
        assert (o.review, o.reviewed_by, o.note) == ("rejected", "ana", "sleeve cut off")
