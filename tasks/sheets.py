"""The contact-sheet task: the last link of a SKU's chain, sent at the lowest priority so that workers
take it only when no stage of any SKU is waiting (Redis: a worker pops priority 0 of every queue it reads
before any priority-9 message). On RabbitMQ without x-max-priority queues it is simply FIFO."""

from __future__ import annotations

from celery import Task

from hitline.jobs.context import get_runtime
from hitline.jobs.sheets import draw_contact_sheet
from hitline.jobs.stages import OUTPUT_QUEUE
from workers.app import app

__all__ = ["contact_sheet", "SHEET_PRIORITY", "SHEET_QUEUE"]

SHEET_PRIORITY = 9  # kombu's Redis transport: 0 is served first, 9 last
SHEET_QUEUE = OUTPUT_QUEUE  # the workers that wrote the outputs; no queue of its own for workers to forget


@app.task(name="hitline.contact_sheet", bind=True, max_retries=3, default_retry_delay=5)
def contact_sheet(self: Task, job_id: int) -> str:
    try:
        path = draw_contact_sheet(get_runtime(), job_id)
    except OSError as e:  # an output not visible yet on a shared disk; the report draws it otherwise
        raise self.retry(exc=e)
    return str(path) if path else "no outputs"
