"""Contact sheets (flat-lay | retrieved hits | outputs), drawn after a SKU is done, off its critical path.

Drawing and PNG-encoding a sheet took more of the render stage than the render itself with a fast
provider (bench/overhead.py). A sheet is a review picture, not an output a marketplace gets: the SKU's
chain ends with a low-priority sheet task (tasks/sheets.py), and the report draws any sheet still
missing when it is written. Both are idempotent: an existing sheet is kept.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from db.models import Job
from db.session import session_scope
from hitline.domain.images import load_image
from hitline.domain.imaging import contact_sheet
from hitline.jobs.context import Runtime, load_batch
from hitline.jobs.results import RenderResult, RetrieveResult, read

__all__ = ["SHEET_NAME", "sheet_path", "draw_sheet", "draw_contact_sheet", "draw_missing_sheets", "missing_sheets"]

SHEET_NAME = "contact_sheet.png"


def sheet_path(out_dir: Path, batch_id: str, item_id: str) -> Path:
    return out_dir / batch_id / item_id / SHEET_NAME


def _has_sheet(job: Job) -> bool:
    """Whether the job gets a sheet: a done SKU with outputs and the hits it took the look from."""
    render, retrieved = read(job, RenderResult), read(job, RetrieveResult)
    return job.kind == "sku" and job.state == "done" and bool(render and render.outputs) and retrieved is not None


def missing_sheets(jobs: list[Job], out_dir: Path) -> int:
    """How many of the jobs should have a sheet and have none yet (their sheet tasks are still queued)."""
    return sum(_has_sheet(j) and not sheet_path(out_dir, j.batch_id, j.item_id).exists() for j in jobs)


def draw_sheet(job: Job, out_dir: Path) -> Path | None:
    """The sheet of a rendered SKU job (drawn now unless it exists); None when the job has no outputs."""
    if not _has_sheet(job):
        return None
    render, retrieved = read(job, RenderResult), read(job, RetrieveResult)
    assert render is not None and retrieved is not None  # _has_sheet
    dest = sheet_path(out_dir, job.batch_id, job.item_id)
    if dest.exists():
        return dest
    img = contact_sheet(
        load_image(job.row["image_path"]),
        [load_image(Path(h.image_path)) for h in retrieved.hits],
        [(o.preset + (f" {o.locale}" if o.locale else ""), load_image(o.path)) for o in render.outputs],
    )
    # the sheet task and the report may draw the same sheet at once: each writes its own temporary file
    tmp = dest.with_name(f"{dest.stem}.{job.id}.{os.getpid()}.{threading.get_ident()}.part")
    # a review picture: fast zlib level (the default level 6 took ~4x longer for ~10% smaller files)
    img.save(tmp, format="PNG", compress_level=1)
    tmp.replace(dest)
    return dest


def draw_contact_sheet(rt: Runtime, job_id: int) -> Path | None:
    """The sheet of one job, by id (the Celery task's body)."""
    with session_scope(rt.db_url) as s:
        job = s.get(Job, job_id)
        if job is None:
            return None
        out_dir = load_batch(s, job.batch_id).out_dir
    return draw_sheet(job, out_dir)


def draw_missing_sheets(jobs: list[Job], out_dir: Path) -> int:
    """Draw the sheets of rendered jobs that have none yet (their low-priority tasks are still queued,
    or nobody consumed them). Returns how many were drawn."""
    drawn = 0
    for job in jobs:
        if _has_sheet(job) and not sheet_path(out_dir, job.batch_id, job.item_id).exists():
            drawn += draw_sheet(job, out_dir) is not None
    return drawn
