"""The one HTTP client for OpenRouter: auth headers, timeouts, the rate limiter, error mapping.

One call is one HTTP attempt. A retryable failure (429, 5xx, timeout, reset, malformed body) is raised
as RetryableProviderError carrying the provider's Retry-After; the stage's Celery task retries it
within the one budget of Settings.provider_attempts, so every retry shows in Flower and the HTTP attempts
per image are bounded by that number. The API key never leaves this module: it is masked in reprs and
scrubbed from every message that could reach a log.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import time
from contextlib import nullcontext
from datetime import timezone
from typing import Any, Mapping

import orjson
import requests
from pydantic import SecretStr

from hitline.errors import ProviderError, RateLimited, RetryableProviderError, TerminalProviderError
from hitline.providers.ratelimit import Limiter

__all__ = ["OpenRouterClient", "parse_retry_after", "error_for_status", "session_for"]

log = logging.getLogger("hitline.openrouter")

TERMINAL_STATUSES = frozenset({400, 401, 402, 403, 404})
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_MASK = "***"


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or an HTTP date); None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = when.timestamp() - (time.time() if now is None else now)
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)


def error_for_status(status: int, message: str, *, retry_after: float | None = None) -> ProviderError:
    """The hitline error for an OpenRouter error status (HTTP status or `error.code` in a 200 body)."""
    if status == 429:
        return RateLimited(f"rate limited (429): {message}", status=status, retry_after=retry_after)
    if status == 402:
        return TerminalProviderError(f"no credit (402): {message}", status=status)
    if status in TERMINAL_STATUSES:
        return TerminalProviderError(f"rejected ({status}): {message}", status=status)
    if status in RETRYABLE_STATUSES or status >= 500:
        return RetryableProviderError(f"provider error ({status}): {message}", status=status, retry_after=retry_after)
    # other 4xx (413 payload too large, 422 ...) will fail the same way next time
    return TerminalProviderError(f"rejected ({status}): {message}", status=status)


def session_for(base_url: str) -> requests.Session:
    """A Session with the environment's proxy and CA bundle for base_url, read once. requests otherwise
    scans the environment and ~/.netrc on every call (~5 ms: more than the rest of a call to a provider
    on loopback), and a ~/.netrc entry would replace the Bearer key with Basic auth."""
    session = requests.Session()
    env = session.merge_environment_settings(base_url, {}, None, None, None)
    session.proxies.update(env["proxies"])
    session.verify = env["verify"]
    session.trust_env = False
    return session


class OpenRouterClient:
    """POSTs JSON to OpenRouter and returns the decoded body, or raises a hitline ProviderError."""

    def __init__(
        self,
        base_url: str,
        api_key: SecretStr,
        timeout_s: float = 120.0,
        limiter: Limiter | None = None,
        session: requests.Session | None = None,
        *,
        connect_timeout_s: float = 10.0,
        rate_wait_max_s: float = 5.0,
        app_url: str = "https://github.com/hitline",
        app_title: str = "hitline",
    ) -> None:
        if not isinstance(api_key, SecretStr):
            api_key = SecretStr(str(api_key))
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self.timeout = (min(connect_timeout_s, timeout_s), timeout_s)  # (connect, read)
        self.limiter = limiter
        self.session = session or session_for(self.base_url)
        # a longer rate wait hands the worker back: RateLimited(retry_after) -> the task retries later
        self.rate_wait_max_s = rate_wait_max_s
        self._app_headers = {"HTTP-Referer": app_url, "X-Title": app_title}

    def __repr__(self) -> str:
        return f"OpenRouterClient(base_url={self.base_url!r}, api_key={_MASK!r}, timeout={self.timeout})"

    def _headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self._api_key.get_secret_value()}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            **self._app_headers,
        }

    def scrub(self, text: str) -> str:
        """`text` with the API key masked (providers sometimes echo what they were sent)."""
        key = self._api_key.get_secret_value()
        return text.replace(key, _MASK) if key else text

    def post(self, path: str, payload: Mapping[str, Any], model: str) -> dict[str, Any]:
        """POST `payload` to `path` (e.g. "/chat/completions") once; the decoded body or a ProviderError."""
        url = f"{self.base_url}/{path.lstrip('/')}"
        slot = self.limiter.acquire(model, timeout=self.rate_wait_max_s) if self.limiter is not None else nullcontext()
        with slot:
            try:
                # orjson, not requests' json=: the standard encoder scans every character of the base64
                # images for escapes (1.2 ms for a render's ~600 KB body, orjson 0.02 ms). The payloads hold
                # strings, ints and lists only (orjson writes a NaN float as null)
                body = orjson.dumps(payload)
                response = self.session.post(url, data=body, headers=self._headers(), timeout=self.timeout)
            except requests.Timeout as exc:
                raise RetryableProviderError(self.scrub(f"timed out calling {model}: {exc}")) from None
            except requests.RequestException as exc:  # connection refused/reset, dropped mid-response
                raise RetryableProviderError(self.scrub(f"connection error calling {model}: {exc}")) from None
        return self._decode(response, model)

    def _decode(self, response: requests.Response, model: str) -> dict[str, Any]:
        status = response.status_code
        text = self.scrub(response.text)
        try:
            body: Any = json.loads(text) if text else None
        except ValueError:
            body = None
        error = body.get("error") if isinstance(body, dict) else None
        ok = 200 <= status < 300
        if not ok or error:
            code = status
            if ok:  # errors raised mid-generation come back inside a 200; no usable code = upstream fault
                code = error.get("code") if isinstance(error, dict) else None
                code = code if isinstance(code, int) and code >= 400 else 502
            message = _error_message(error, text, status)
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            raise error_for_status(code, f"{model}: {message}", retry_after=retry_after)
        if not isinstance(body, dict):
            raise RetryableProviderError(
                f"malformed response from {model}: not a JSON object ({len(text)} bytes)", status=status
            )
        return body


def _error_message(error: Any, text: str, status: int) -> str:
    if isinstance(error, dict) and error.get("message"):
        message = str(error["message"])
        metadata = error.get("metadata")
        if isinstance(metadata, dict) and metadata.get("raw"):
            message += f" ({str(metadata['raw'])[:200]})"
        return message
    if isinstance(error, str):
        return error
    snippet = " ".join(text.split())[:200]
    return f"HTTP {status}" + (f": {snippet}" if snippet else "")
