"""The contact-sheet task: the last link of a SKU's chain, sent at the lowest priority so that workers
take it only when no stage of any SKU is waiting (Redis: a worker pops priority 0 of every queue it reads
before any priority-9 message). On RabbitMQ without x-max-priority queues it is simply FIFO."""

from __future__ import annotations

from celery import Task

from hitline.domain.fairness import SHEET_PRIORITY
from hitline.jobs.context import get_runtime
from hitline.jobs.sheets import draw_contact_sheet
from hitline.jobs.stages import OUTPUT_QUEUE
from workers.app import app

__all__ = ["contact_sheet", "SHEET_PRIORITY", "SHEET_QUEUE"]

# SHEET_PRIORITY (9): kombu's Redis transport serves 0 first, 9 last (hitline/domain/fairness.py)
SHEET_QUEUE = OUTPUT_QUEUE  # the workers that wrote the outputs; no queue of its own for workers to forget


@app.task(name="hitline.contact_sheet", bind=True, max_retries=3, default_retry_delay=5)
def contact_sheet(self: Task, job_id: int) -> str:
    try:
        path = draw_contact_sheet(get_runtime(), job_id)
    except OSError as e:  # an output not visible yet on a shared disk; the report draws it otherwise
        raise self.retry(exc=e)
    _report_if_last(job_id)
    return str(path) if path else "no outputs"


def _report_if_last(job_id: int) -> None:
    """The batch's report.html once its last job is done, however the batch was submitted (HTTP, Celery
    contract, CLI): the report is the batch's, so a failure to write it does not fail this SKU's sheet."""
    import logging

    from db.models import Job
    from db.session import session_scope
    from hitline.jobs.report import report_when_finished

    rt = get_runtime()
    try:
        with session_scope(rt.db_url) as s:
            batch_id = s.get(Job, job_id).batch_id
        report_when_finished(rt, batch_id, wait_for_sheets=True)
    except Exception:  # noqa: BLE001 - logged; the API writes it on demand otherwise
        logging.getLogger(__name__).exception("report of the batch of job %s not written", job_id)
