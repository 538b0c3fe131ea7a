"""The redo task: renders the next take of an output a reviewer sent back with a note
(hitline.jobs.review.rerender), on the render queue; provider errors retry with the stages' backoff."""

from __future__ import annotations

from celery import Task

from hitline.errors import NotReady, RateWait, RetryableProviderError
from hitline.jobs.context import get_runtime
from hitline.jobs.review import redo_failed, rerender
from hitline.jobs.stages import OUTPUT_QUEUE
from workers.app import app

__all__ = ["redo", "after_review"]


@app.task(name="hitline.redo_output", bind=True, max_retries=None)
def redo(self: Task, output_id: int, take: int, provider_retries: int = 0) -> str:
    rt = get_runtime()
    try:
        result = rerender(rt, output_id)
    except (NotReady, RateWait) as e:
        raise self.retry(exc=e, countdown=getattr(e, "retry_after", None) or 1.0)
    except RetryableProviderError as e:
        if provider_retries + 1 >= rt.settings.provider_attempts:
            return redo_failed(
                rt,
                output_id,
                take,
                f"new take not rendered: gave up after {rt.settings.provider_attempts} attempts: {e}",
            )
        raise self.retry(
            exc=e,
            kwargs={"provider_retries": provider_retries + 1},
            countdown=max(e.retry_after or 0.0, min(60.0, 2.0**provider_retries)),
        )
    except Exception as e:  # noqa: BLE001 - a terminal answer or a bug: the take is not made, say why
        from hitline.jobs.runner import is_transient

        if is_transient(e):
            raise self.retry(exc=e, countdown=5.0)
        return redo_failed(rt, output_id, take, f"new take not rendered: {type(e).__name__}: {e}")
    _kick()
    return result


def _kick() -> None:
    from tasks.webhooks import kick

    kick()


def after_review(redo_ids: list[int]) -> None:
    """After a decision's commit (hitline.jobs.review.review): one redo task per output sent back, and the
    webhook deliveries the decision wrote (output.approved)."""
    for oid in redo_ids:
        redo.apply_async((oid, _take(oid)), queue=OUTPUT_QUEUE)
    _kick()


def _take(output_id: int) -> int:
    from db.models import Output
    from db.session import session_scope

    with session_scope(get_runtime().db_url) as s:
        o = s.get(Output, output_id)
        return o.take if o is not None else 0
