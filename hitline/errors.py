"""Every exception hitline raises, in one tree.

    HitlineError
    +-- InputError              bad row, image or option: terminal for that SKU, never retried
    |   +-- NotFound            an id that names no batch, job or output (HTTP 404)
    +-- Conflict                the request contradicts the job table (HTTP 409)
    |   +-- IdempotencyConflict an Idempotency-Key already used for another request
    +-- ConfigError             settings that cannot work (e.g. mixing embedders in one collection)
    |   +-- UnroutedTask        a hitline task with no queue: it would never be consumed (start-up)
    +-- EnqueueFailed           the broker refused the messages: the jobs are in the table, resume sends them
    +-- JobFailed               a task's job failed for good: the Celery task ends FAILURE, the chain stops
    +-- TransientError          a service is unreachable for now: retried without a bound, never fails a SKU
    |   +-- IndexUnavailable    Milvus unreachable (mapped in hitline.store.index by gRPC status / pymilvus type)
    +-- BudgetExceeded          the next paid call would pass the batch budget: job is held, resumable
    +-- ProviderError           a model provider failed
        +-- RetryableProviderError      408/429/5xx, timeouts, connection errors, 200 without an image
        |   +-- RateLimited             429; carries retry_after seconds when the provider sent it
        |       +-- RateWait            our own limiter had no slot within the bounded wait: the task
        |                               retries after retry_after, not counted against the retry budget
        +-- TerminalProviderError       400/401/402/403/404, content refusal: the message is the reason
    NotReady (not a HitlineError)   another chain is still preparing what this stage needs (the catalog):
                                    try again shortly; not an attempt, never a failure

Tasks map RetryableProviderError to Celery retries (a bounded budget), unreachable infrastructure to
retries without a bound, and every other HitlineError to a failed job with its reason. Unreachable
infrastructure is decided by type at each boundary, never by message text: Milvus in hitline.store.index
(IndexUnavailable), SQLAlchemy and Redis by their exception types (hitline.jobs.runner.is_transient),
HTTP providers in hitline.providers (RetryableProviderError); the API answers TransientError with a 503.
"""

from __future__ import annotations

__all__ = [
    "HitlineError",
    "InputError",
    "ConfigError",
    "BudgetExceeded",
    "ProviderError",
    "RetryableProviderError",
    "RateLimited",
    "RateWait",
    "TerminalProviderError",
    "NotReady",
    "NotFound",
    "Conflict",
    "IdempotencyConflict",
    "UnroutedTask",
    "EnqueueFailed",
    "JobFailed",
    "TransientError",
    "IndexUnavailable",
]


class HitlineError(Exception):
    """Base of everything hitline raises on purpose."""


class InputError(HitlineError):
    """A row, an image or an option is unusable; the message says why in the user's words."""


class ConfigError(HitlineError):
    """Configuration that cannot work."""


class BudgetExceeded(HitlineError):
    """The next paid call would exceed the batch budget."""


class ProviderError(HitlineError):
    """A model provider call failed."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RetryableProviderError(ProviderError):
    """Worth trying again later (429, 5xx, timeouts, connection errors, no image in a 200)."""

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class RateLimited(RetryableProviderError):
    """429 from the provider (or our own limiter said wait)."""


class RateWait(RateLimited):
    """hitline's own rate limiter had no slot for this model within the bounded wait (nothing was sent)."""


class TerminalProviderError(ProviderError):
    """Trying again will not help (400/401/402/403/404, refusal)."""


class NotReady(Exception):
    """A stage's precondition is being finished by another chain (e.g. the batch's catalog is still being
    indexed): give the claim back and try again shortly."""


class NotFound(InputError):
    """An id that names no batch or job."""


class Conflict(HitlineError):
    """The request contradicts what the table holds (e.g. a token name in use)."""


class IdempotencyConflict(Conflict):
    """An Idempotency-Key already used for a different request."""


class UnroutedTask(ConfigError):
    """A hitline task with no queue in the stage registry: it would sit in a queue no worker reads."""


class EnqueueFailed(HitlineError):
    """The broker refused the messages: the batch exists in the job table and `hitline resume` finishes it."""


class JobFailed(HitlineError):
    """The job failed for good (bad input, a terminal provider answer, the retry budget spent): the task
    ends as FAILURE with the reason, and the chain stops."""


class TransientError(HitlineError):
    """A service hitline depends on is unreachable for now (Milvus, the job table, Redis): worth retrying for
    as long as it takes, never a reason to fail a SKU."""


class IndexUnavailable(TransientError):
    """Milvus did not answer (gRPC UNAVAILABLE / DEADLINE_EXCEEDED, pymilvus' retry timeout, a closed channel,
    no connection): raised from the pymilvus exception by hitline.store.index."""
