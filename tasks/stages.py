"""One Celery task per registered stage (hitline.jobs.stages), all made the same way: take ids, run the
stage, and tell Celery the truth - SUCCESS when the stage is done, FAILURE with the reason when the job
failed, RETRY (visible in Flower) for a provider error, an unreachable store, or a catalog still indexing."""

from __future__ import annotations

import logging
import random

from celery import Task

from hitline.errors import JobFailed, NotReady, RateWait, RetryableProviderError
from hitline.jobs.context import get_runtime
from hitline.jobs.runner import Outcome, fail_jobs, is_transient
from hitline.jobs.stages import SKU_LINE, STAGES, Stage
from tasks.webhooks import kick as kick_webhooks
from workers.app import app

log = logging.getLogger(__name__)

# unreachable infrastructure is retried for as long as it takes, at most this far apart
INFRA_BACKOFF_MAX_S = 30.0


def backoff(stage: Stage, retries: int, retry_after: float | None = None) -> float:
    """Exponential backoff with jitter, capped; the provider's Retry-After wins."""
    pol = stage.retry
    wait = min(pol.max_backoff_s, pol.backoff_s * 2.0**retries) * (0.5 + random.random())
    return max(retry_after or 0.0, wait)


def _job_ids(stage: Stage, args: tuple) -> list[int]:  # type: ignore[type-arg]
    return [args[0]] if stage.kind == "sku" else list(args[1])


def _finish(task: Task, stage: Stage, outcome: Outcome | dict[int, Outcome]) -> str:
    """Map the job layer's outcome to the task's end state; stop the chain unless the stage is done."""
    if isinstance(outcome, dict):  # a catalog chunk goes on if any of its jobs is done
        done = sum(o.status == "done" for o in outcome.values())
        if not done:
            task.request.chain = None
        return f"{done}/{len(outcome)} done"
    if outcome.status == "failed":
        raise JobFailed(outcome.reason)
    if outcome.status == "done" or (outcome.status == "skipped" and outcome.moved_on):
        return outcome.status
    task.request.chain = None  # held by the budget, or another delivery has it: this copy stops here
    return f"{outcome.status}: {outcome.reason}" if outcome.reason else outcome.status


def make_task(stage: Stage) -> Task:
    # max_retries=None: the bound on provider retries is the Settings budget, checked below
    @app.task(name=stage.task_name, bind=True, max_retries=None, throws=(JobFailed,))
    def run(self: Task, *args: object, provider_retries: int = 0) -> str:
        rt = get_runtime()
        try:
            outcome = stage.run(rt, *args, token=self.request.id, attempt=provider_retries)
        except NotReady as e:
            # not an attempt: another chain is finishing what this needs. Back off (0.5 s .. 10 s) so that
            # thousands of waiting SKUs do not flood the broker while a large catalog is indexed
            raise self.retry(exc=e, countdown=min(stage.retry.not_ready_s * 1.5 ** min(self.request.retries, 20), 10.0))
        except RateWait as e:
            # our own limiter: nothing was sent, so nothing is spent from the retry budget
            raise self.retry(exc=e, countdown=(e.retry_after or 1.0) * (1.0 + 0.2 * random.random()))
        except RetryableProviderError as e:
            # counted apart from waits and outages: the budget is for calls the provider refused
            attempts = rt.settings.provider_attempts
            if provider_retries + 1 >= attempts:
                reason = f"gave up after {attempts} attempts: {e}"
                fail_jobs(rt, _job_ids(stage, args), stage.name, reason)
                kick_webhooks()
                raise JobFailed(reason) from None
            raise self.retry(
                exc=e,
                kwargs={"provider_retries": provider_retries + 1},
                countdown=backoff(stage, provider_retries, e.retry_after),
            )
        except Exception as e:
            if not is_transient(e):
                raise
            log.warning("%s %s: %s unreachable, retrying: %s", stage.task_name, args, type(e).__name__, e)
            raise self.retry(exc=e, countdown=min(INFRA_BACKOFF_MAX_S, 2.0 ** min(self.request.retries, 5)))
        if _may_have_events(stage, outcome):
            kick_webhooks()
        return _finish(self, stage, outcome)

    return run


def _may_have_events(stage: Stage, outcome: Outcome | dict[int, Outcome]) -> bool:
    """A failed job, or a SKU's last stage done (outputs to review, the batch maybe finished): the outbox
    may have new events (hitline/jobs/webhooks.py), so deliveries are sent now, not at the next sweep."""
    outcomes = outcome.values() if isinstance(outcome, dict) else (outcome,)
    return any(o.status == "failed" for o in outcomes) or (
        stage.kind == "sku" and stage.name == SKU_LINE[-1].name and any(o.status == "done" for o in outcomes)
    )


TASKS: dict[tuple[str, str], Task] = {(st.kind, st.name): make_task(st) for st in STAGES}
