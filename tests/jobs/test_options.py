"""Batch options record the presets the batch was checked against (hitline/jobs/options.py): a worker
whose HITLINE_PRESETS_FILE says otherwise renders the recorded sizes; a batch from before they were
recorded still runs on the worker's file."""

from __future__ import annotations

from pathlib import Path

import pytest

from hitline.jobs.context import BatchInfo, JobContext, get_runtime, reset_runtime
from hitline.jobs.options import BatchOptions
from hitline.jobs.submit import batch_options


def _presets_file(path: Path, size: str) -> Path:
    path.write_text(f'[thumbnail]\naspect_ratio = "1:1"\nsize = "{size}"\n\n[thumbnail.rules]\nmin_fill = 0.8\n')
    return path


def _presets(options: dict[str, object], out: Path) -> list[tuple[str, int, int]]:
    jc = JobContext(get_runtime(), BatchInfo("B", options, out, None, None), 1, "sku", "SKU1", "render", {}, {})
    return [(p.name, p.width, p.height) for p in jc.presets]


def test_workers_render_the_presets_the_batch_was_checked_against(
    hitline_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HITLINE_PRESETS_FILE", str(_presets_file(hitline_env / "submit.toml", "1K")))
    reset_runtime()
    options = batch_options(get_runtime().settings, presets=["thumbnail"])
    assert BatchOptions.of(options).resolved_presets()[0].rule("min_fill") == 0.8
    # the worker's own file says 512px
    monkeypatch.setenv("HITLINE_PRESETS_FILE", str(_presets_file(hitline_env / "worker.toml", "512px")))
    reset_runtime()
    assert _presets(options, hitline_env) == [("thumbnail", 1024, 1024)]
    # a batch submitted before the presets were recorded: the worker's file, as before
    old = {k: v for k, v in options.items() if k != "preset_specs"}
    assert _presets(old, hitline_env) == [("thumbnail", 512, 512)]
