"""A redo of one localised output (`banner@de-DE`): that (preset, locale) alone is rendered again with
the reviewer's note, its locale's words typeset on the new picture and read back by OCR, charged and
pending again; the other locale's output is left as it was."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from test_stages import _run_all, _small_copy

pytestmark = pytest.mark.slow  # OCR of the words: one read per take


def test_redo_of_a_localised_output_retypesets_that_locale_and_reads_it_back(
    hitline_env: Path, demo_data: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from db.models import Output
    from db.session import session_scope
    from hitline.domain.imaging import load_presets
    from hitline.domain.textcheck import normalise, read_region
    from hitline.jobs.context import get_runtime, reset_runtime
    from hitline.jobs.review import OutputFilter, decide, rerender
    from hitline.jobs.submit import batch_options, submit_batch

    monkeypatch.setenv("HITLINE_QUALITY_GATE", "1")
    reset_runtime()
    rt = get_runtime()
    catalog, new = _small_copy(demo_data, hitline_env, n_new=1)
    options = batch_options(rt.settings, presets=["banner"], locales="en-US,de-DE")
    sub = submit_batch(rt, catalog, new, hitline_env / "out", options={**options, "provider": "local"})
    _run_all(rt, sub)
    with session_scope(rt.db_url) as s:
        outs = {o.preset: o for o in s.query(Output).all()}
        assert set(outs) == {"banner@en-US", "banner@de-DE"}
        de, en = outs["banner@de-DE"], outs["banner@en-US"]
        first_path, en_path = de.path, en.path
        done = decide(s, sub.batch_id, OutputFilter(output_ids=(de.id,)), "redo", by="ana", note="warmer light")
        assert done.redo == [de.id]
        de_id, en_id = de.id, en.id
    msg = rerender(rt, de_id)
    assert msg.startswith(f"take 2 of output {de_id}: "), msg
    assert rerender(rt, de_id) == "nothing to redo"  # a second delivery of the same task does nothing
    with session_scope(rt.db_url) as s:
        de, en = s.get(Output, de_id), s.get(Output, en_id)
        assert de.take == 2 and de.review == "pending" and de.error is None
        assert de.path != first_path and Path(de.path).name.startswith("banner-de-DE-")
        last = de.provenance["takes"][-1]
        assert last["locale"] == "de-DE" and "warmer light" in last["prompt"]
        words = last["text"]
        assert words["mode"] == "overlay" and words["status"] == "verified"
        assert [r["exact"] for r in words["readings"]] == [True, True]
        assert words["texts"]["headline"] == "Klassisches weißes T-Shirt" and words["texts"]["price"] == "19,99\xa0€"
        assert Path(words["text_base"]).exists() and words["text_base"] != de.path
        # the words are on the new take's picture, in the price slot: the test reads them itself
        banner = load_presets(["banner"])[0]
        box = next(sl for sl in banner.slots if sl.name == "price").pixels(banner.width, banner.height)
        assert normalise(read_region(Image.open(de.path).crop(box))) == normalise("19,99 €")
        assert en.take == 1 and en.path == en_path  # the other locale is untouched
