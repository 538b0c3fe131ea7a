"""Draft, then final, offline with the local provider: every ratio group is rendered at 512px first and
every output waits for a person; an approved draft is rendered at its final size with the draft as a
reference; a rejected draft gets no final, and the summary counts the finals not paid for."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from test_stages import _run_all, _small_copy


def test_drafts_first_then_finals_only_for_approved(hitline_env: Path, demo_data: tuple[Path, Path]) -> None:
    from db.models import Output
    from db.session import session_scope
    from hitline.jobs import control
    from hitline.jobs.context import get_runtime
    from hitline.jobs.review import OutputFilter, decide, draft_summary, rerender
    from hitline.jobs.submit import batch_options, submit_batch

    rt = get_runtime()
    catalog, new = _small_copy(demo_data, hitline_env, n_new=1)
    options = batch_options(rt.settings, presets=["amazon_main", "thumbnail", "banner"], draft="512px")
    assert options["review"] == "all" and options["draft"] == "512px"
    sub = submit_batch(rt, catalog, new, hitline_env / "out", options={**options, "provider": "local"})
    _run_all(rt, sub)
    with session_scope(rt.db_url) as s:
        outs = s.query(Output).order_by(Output.id).all()
        assert len(outs) == 3 and {o.review for o in outs} == {"pending"}
        sizes = {o.preset: Image.open(o.path).size for o in outs}
        # drafts: amazon_main and banner at 512px (one render per ratio group; thumbnail is already 512px)
        assert sizes == {"amazon_main": (512, 512), "thumbnail": (512, 512), "banner": (512, 128)}
        drafts = [o for o in outs if o.provenance.get("draft")]
        assert {o.preset for o in drafts} == {"amazon_main", "banner"}
        assert {o.provenance["draft"]["final_size"] for o in drafts} == {"2K"}
        first = [o for o in drafts if o.preset == "amazon_main"]
        rest = [o for o in drafts if o.preset == "banner"]
        approve = decide(s, sub.batch_id, OutputFilter(output_ids=tuple(o.id for o in first)), "approve", by="ana")
        assert sorted(approve.redo) == sorted(o.id for o in first)  # finals to render, not approved yet
        decide(s, sub.batch_id, OutputFilter(output_ids=tuple(o.id for o in rest)), "reject", by="ana")
        draft_paths = {o.id: o.path for o in first}
    for oid in approve.redo:
        assert rerender(rt, oid).startswith("take 2")
        assert rerender(rt, oid) == "nothing to redo"  # a second delivery of the same task does nothing
    with session_scope(rt.db_url) as s:
        for oid, draft_path in draft_paths.items():
            o = s.get(Output, oid)
            assert o.review == "approved" and o.take == 2
            final = Image.open(o.path).size
            assert final == (2048, 2048)
            last = o.provenance["takes"][-1]
            assert last["final"] and last["draft_path"] == draft_path  # the approved draft was a reference
            assert "approved draft" in last["prompt"]
        rejected = [s.get(Output, o.id) for o in rest]
        assert all(o.review == "rejected" and o.take == 1 for o in rejected)  # no final for a rejected draft
        d = draft_summary(s, sub.batch_id, rt.prices)
        assert (d["drafts"], d["finals"], d["rejected"], d["waiting"]) == (2, 1, 1, 0)
        assert control.summary(s, sub.batch_id).quality.drafts.model_dump() == d
        assert d["finals_not_paid_usd"] == 0.0  # the local provider costs nothing
        # at Nano Banana 2's list price, each rejected draft saved its 2K final ($0.101)
        for o in rejected:
            o.provenance = {**o.provenance, "model": "google/gemini-3.1-flash-image-preview"}
        s.flush()
        assert draft_summary(s, sub.batch_id, rt.prices)["finals_not_paid_usd"] == 0.101
