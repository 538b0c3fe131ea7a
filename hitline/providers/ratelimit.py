"""Global per-model limits shared by every worker: requests per window (rpm) and requests in flight.

Celery's `rate_limit` counts per worker; these limiters count per model across all processes and hosts
(`RedisLimiter`) or across the threads of one process (`LocalLimiter`, embedded mode).

    limiter = build_limiter(settings)
    with limiter.acquire(model, timeout=30):      # raises RateWait(retry_after=...) after 30 s
        provider.render(...)
"""

from __future__ import annotations

import logging
import math
import os
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from hitline.config import Settings, get_settings, load_data_file
from hitline.errors import ConfigError, RateWait

if TYPE_CHECKING:
    import redis

__all__ = ["Limit", "Limiter", "Clock", "SystemClock", "RedisLimiter", "LocalLimiter", "load_limits", "build_limiter"]

log = logging.getLogger(__name__)

# Called after each grant with (model, granted_at, waited_s); granted_at is the limiter's clock in
# seconds (Redis server time for RedisLimiter, time.monotonic() for LocalLimiter). For metrics and tests.
OnAcquire = Callable[[str, float, float], None]


@dataclass(frozen=True)
class Limit:
    """One model's limit: at most `rpm` starts in any `window_s` seconds and `max_in_flight` at once."""

    rpm: int
    max_in_flight: int
    # "per minute" by default; tests shorten it
    window_s: float = 60.0
    # a crashed worker's in-flight slot frees itself after at most this long: a live holder renews its
    # lease every lease_s / 3 for as long as its call runs, so the lease need not outlast the call
    lease_s: float = 30.0
    # the provider counts arrivals, we count grants: network jitter puts a request granted at the very
    # end of our window into the provider's next one. Holding the window this much longer (fraction)
    # removed the 429s at window edges in bench/bench_ratelimit.py.
    margin: float = 0.05

    @property
    def held_window_s(self) -> float:
        return self.window_s * (1.0 + self.margin)

    def __post_init__(self) -> None:
        if self.rpm < 1 or self.max_in_flight < 1 or self.window_s <= 0 or self.lease_s <= 0 or self.margin < 0:
            raise ConfigError(f"rate limit needs rpm >= 1, max_in_flight >= 1 and positive durations: {self}")


def load_limits(override: Path | None = None) -> dict[str, Limit]:
    """Limits by model from limits.toml; each model table inherits missing keys from `[default]`."""
    table = load_data_file("limits.toml", override)
    if "default" not in table:
        raise ConfigError(f"{override or 'limits.toml'}: a [default] table is required")
    known = {f.name for f in fields(Limit)}

    def build(name: str, values: Mapping[str, Any]) -> Limit:
        unknown = set(values) - known
        if unknown:
            raise ConfigError(f"limits [{name}]: unknown keys {sorted(unknown)} (known: {sorted(known)})")
        try:
            return Limit(**values)
        except TypeError as exc:
            raise ConfigError(f"limits [{name}]: {exc}") from exc

    base = table["default"]
    return {name: build(name, {**base, **values}) for name, values in table.items()}


class Clock(Protocol):
    """Where a limiter reads the time and how it waits; tests pass a manual clock."""

    def now(self) -> float: ...
    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class Limiter(Protocol):
    def acquire(self, model: str, timeout: float | None = None) -> AbstractContextManager[None]:
        """Block until a rate slot and an in-flight slot are free; hold the in-flight slot inside.

        Raises RateWait(retry_after=...) when no slot is free within `timeout` seconds
        (None = wait as long as it takes, 0 = try once).
        """
        ...


@dataclass(frozen=True)
class _Attempt:
    granted: bool
    # why not: "rate" (wait_s is exact: the oldest start leaves the window) or "busy" (all slots in
    # flight; wait_s is only an upper bound, the earliest lease expiry)
    reason: str = ""
    wait_s: float = 0.0
    granted_at: float = 0.0


_KEEPER_LOCK = threading.Lock()


class _LeaseKeeper:
    """One thread per limiter (a worker process has one) renews every in-flight lease it holds, each every
    lease_s / 3: a thread per call cost a thread start for each paid call (bench/overhead.py). A lease of a
    dead process is renewed by nobody and frees itself after lease_s."""

    def __init__(self, renew: Callable[[str, Limit, str], None]) -> None:
        self.pid = os.getpid()
        self._renew = renew
        self._held: dict[str, tuple[str, Limit, threading.Event, float]] = {}  # token -> model, limit, done, due
        self._cond = threading.Condition()
        self._sleeping_until = math.inf
        threading.Thread(target=self._run, name="hitline-leases", daemon=True).start()

    def hold(self, token: str, model: str, limit: Limit, done: threading.Event) -> None:
        due = time.monotonic() + limit.lease_s / 3
        with self._cond:
            self._held[token] = (model, limit, done, due)
            if due < self._sleeping_until:  # only when nothing else is held (or a shorter lease): no wake per call
                self._cond.notify()

    def drop(self, token: str) -> None:
        with self._cond:
            self._held.pop(token, None)

    def _run(self) -> None:
        while True:
            with self._cond:
                now = time.monotonic()
                due = [(t, m, lim, d) for t, (m, lim, d, at) in self._held.items() if at <= now]
                for t, m, lim, d in due:
                    self._held[t] = (m, lim, d, now + lim.lease_s / 3)
                if not due:
                    self._sleeping_until = min((at for *_, at in self._held.values()), default=math.inf)
                    self._cond.wait(None if self._sleeping_until == math.inf else self._sleeping_until - now)
                    self._sleeping_until = -math.inf  # awake: a hold() need not notify
                    continue
            for token, model, limit, done in due:
                if done.is_set():
                    continue
                try:
                    self._renew(model, limit, token)
                except Exception as exc:  # noqa: BLE001 - a broker blip: the lease holds until the next try
                    log.warning("could not renew the in-flight lease of %s: %s", model, exc)


class _PollingLimiter:
    """The waiting loop both limiters share; subclasses only try, wait and release."""

    def __init__(
        self,
        limits: Mapping[str, Limit],
        *,
        poll_s: float = 0.05,
        busy_retry_s: float = 1.0,
        on_acquire: OnAcquire | None = None,
        clock: Clock | None = None,
    ) -> None:
        if "default" not in limits:
            raise ConfigError("limits need a 'default' entry for models without their own")
        self.limits = dict(limits)
        # how often a waiter re-checks when all in-flight slots are taken (their end is unknown)
        self.poll_s = poll_s
        # retry_after suggested when the in-flight cap, not the rate, was the obstacle
        self.busy_retry_s = busy_retry_s
        self.on_acquire = on_acquire
        self.clock: Clock = clock or SystemClock()
        self._injected_clock = clock is not None

    def limit_for(self, model: str) -> Limit:
        return self.limits.get(model) or self.limits["default"]

    @contextmanager
    def acquire(self, model: str, timeout: float | None = None) -> Iterator[None]:
        limit = self.limit_for(model)
        token = uuid.uuid4().hex
        started = self.clock.now()
        deadline = math.inf if timeout is None else started + max(timeout, 0.0)
        while True:
            attempt = self._try_acquire(model, limit, token)
            if attempt.granted:
                break
            remaining = deadline - self.clock.now()
            if attempt.reason == "rate":
                wait, retry_after = attempt.wait_s, attempt.wait_s
            else:
                wait, retry_after = min(attempt.wait_s, self.poll_s), min(attempt.wait_s, self.busy_retry_s)
            # a rate wait is exact: when it outlasts the timeout, hand the worker thread back at once
            if remaining <= 0 or (attempt.reason == "rate" and wait > remaining):
                raise RateWait(
                    f"{model}: no {'rate' if attempt.reason == 'rate' else 'in-flight'} slot within "
                    f"{timeout} s (limit {limit.rpm}/{limit.window_s:g} s, {limit.max_in_flight} in flight)",
                    status=429,
                    retry_after=max(retry_after, 0.001),
                )
            # jitter spreads the waiters that wake for the same freed slot
            self._wait(min(wait + random.uniform(0, 0.01), remaining))
        renewing = self._keep_lease(model, limit, token)
        try:
            if self.on_acquire is not None:
                self.on_acquire(model, attempt.granted_at, self.clock.now() - started)
            yield
        finally:
            renewing.set()
            if self._keeper is not None:
                self._keeper.drop(token)
            self._release(model, limit, token)

    def _keep_lease(self, model: str, limit: Limit, token: str) -> threading.Event:
        """Renew the in-flight lease of `token` every lease_s / 3 until the returned event is set."""
        done = threading.Event()
        if self._renews:
            with _KEEPER_LOCK:  # the threads of a process share one (two calls at once started two)
                if self._keeper is None or self._keeper.pid != os.getpid():  # a forked child starts its own
                    self._keeper = _LeaseKeeper(self._renew)
                keeper = self._keeper
            keeper.hold(token, model, limit, done)
        return done

    _keeper: _LeaseKeeper | None = None
    _renews = False  # LocalLimiter: nothing outlives the process, nothing to renew

    def _renew(self, model: str, limit: Limit, token: str) -> None:
        raise NotImplementedError

    def _try_acquire(self, model: str, limit: Limit, token: str) -> _Attempt:
        raise NotImplementedError

    def _wait(self, seconds: float) -> None:
        self.clock.sleep(seconds)

    def _release(self, model: str, limit: Limit, token: str) -> None:
        raise NotImplementedError


# One atomic step: drop expired leases and old starts, then take both slots or say how long to wait.
# Times are Redis server microseconds (TIME), so client clocks never matter. Integers only in the reply.
_ACQUIRE_LUA = """
local now
if ARGV[6] and ARGV[6] ~= '' then
  now = tonumber(ARGV[6])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local rpm, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local max_in_flight, lease = tonumber(ARGV[3]), tonumber(ARGV[4])
-- KEYS[3]: this model's epoch, {id = when the log started, hold = no grant before}. A Redis that lost
-- its data (a restart without persistence) has no epoch: a caller that knew one (ARGV[7]) holds every
-- grant for one window, since the starts of the last window are gone and the provider still counts them.
local epoch = redis.call('HGET', KEYS[3], 'id')
if not epoch then
  epoch = string.format('%.0f', now)
  redis.call('HSET', KEYS[3], 'id', epoch)
  if ARGV[7] ~= '' then redis.call('HSET', KEYS[3], 'hold', string.format('%.0f', now + window)) end
elseif ARGV[7] ~= '' and ARGV[7] ~= epoch and not redis.call('HGET', KEYS[3], 'hold') then
  -- recreated by a caller that knew none: hold for the rest of the window after the loss
  redis.call('HSET', KEYS[3], 'hold', string.format('%.0f', tonumber(epoch) + window))
end
local hold = tonumber(redis.call('HGET', KEYS[3], 'hold') or '0')
if hold > now then
  return {0, 1, hold - now, now, epoch}
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local busy = redis.call('ZCARD', KEYS[2])
if busy >= max_in_flight then
  local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  return {0, 2, tonumber(first[2]) - now, now, epoch}
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local used = redis.call('ZCARD', KEYS[1])
if used >= rpm then
  local oldest = redis.call('ZRANGE', KEYS[1], used - rpm, used - rpm, 'WITHSCORES')
  return {0, 1, tonumber(oldest[2]) + window - now, now, epoch}
end
redis.call('ZADD', KEYS[1], now, ARGV[5])
redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000))
redis.call('ZADD', KEYS[2], now + lease, ARGV[5])
redis.call('PEXPIRE', KEYS[2], math.ceil(lease / 1000))
return {1, 0, 0, now, epoch}
"""


# Push a held lease's expiry to now + lease (only if it is still held: XX never re-creates a released one).
_RENEW_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local lease = tonumber(ARGV[1])
if redis.call('ZSCORE', KEYS[1], ARGV[2]) then
  redis.call('ZADD', KEYS[1], 'XX', now + lease, ARGV[2])
  redis.call('PEXPIRE', KEYS[1], math.ceil(lease / 1000))
  return 1
end
return 0
"""


class RedisLimiter(_PollingLimiter):
    """Limits shared by every process that talks to the same Redis.

        Rate: a sliding-window log (ZSET of start times), exact: no `window_s` span ever holds more than
        `rpm` starts. In flight: a ZSET of leases token -> expiry, renewed every lease_s / 3 while the call
        runs, so a killed worker's slot comes back within `lease_s` (30 s by default). After Redis lost its data
    (a restart without persistence: the log of the last window is gone), the first process that notices holds
    every grant of that model for one window. Keys are `<prefix>:{<model>}:rate|inflight|epoch` (one hash
    slot per model for Cluster).
    """

    def __init__(
        self, redis_client: redis.Redis, limits: Mapping[str, Limit], key_prefix: str = "hitline:rl", **options: Any
    ) -> None:
        super().__init__(limits, **options)
        self.redis = redis_client
        self.key_prefix = key_prefix
        self._acquire_script = redis_client.register_script(_ACQUIRE_LUA)
        self._epochs: dict[str, str] = {}  # model -> the epoch this process saw: detects a Redis that lost its data
        self._renew_script = redis_client.register_script(_RENEW_LUA)

    _renews = True

    def _renew(self, model: str, limit: Limit, token: str) -> None:
        self._renew_script(keys=[self.keys(model)[1]], args=[round(limit.lease_s * 1e6), token])

    def keys(self, model: str) -> tuple[str, str, str]:
        base = f"{self.key_prefix}:{{{model}}}"
        return f"{base}:rate", f"{base}:inflight", f"{base}:epoch"

    def _try_acquire(self, model: str, limit: Limit, token: str) -> _Attempt:
        # Redis server time unless a clock was injected (tests), so client clocks never matter
        now_us = round(self.clock.now() * 1e6) if self._injected_clock else ""
        args = [
            limit.rpm,
            round(limit.held_window_s * 1e6),
            limit.max_in_flight,
            round(limit.lease_s * 1e6),
            token,
            now_us,
            self._epochs.get(model, ""),
        ]
        *numbers, epoch = self._acquire_script(keys=self.keys(model), args=args)
        self._epochs[model] = epoch.decode() if isinstance(epoch, bytes) else str(epoch)
        granted, why, wait_us, now_us = (int(v) for v in numbers)
        if granted:
            return _Attempt(True, granted_at=now_us / 1e6)
        return _Attempt(False, "rate" if why == 1 else "busy", max(wait_us, 1) / 1e6)

    def _release(self, model: str, limit: Limit, token: str) -> None:
        try:
            self.redis.zrem(self.keys(model)[1], token)
        except Exception as exc:  # noqa: BLE001 - never mask the caller's own exception; the lease expires
            log.warning("could not release in-flight slot of %s (frees itself in %g s): %s", model, limit.lease_s, exc)


@dataclass
class _LocalState:
    starts: deque[float]
    in_flight: int = 0


class LocalLimiter(_PollingLimiter):
    """The same limits for the threads of one process (embedded mode); nothing outlives the process."""

    def __init__(self, limits: Mapping[str, Limit], **options: Any) -> None:
        super().__init__(limits, **options)
        self._cond = threading.Condition()
        self._state: dict[str, _LocalState] = {}

    def _try_acquire(self, model: str, limit: Limit, token: str) -> _Attempt:
        with self._cond:
            state = self._state.setdefault(model, _LocalState(deque()))
            now = self.clock.now()
            if state.in_flight >= limit.max_in_flight:
                return _Attempt(False, "busy", math.inf)
            while state.starts and state.starts[0] <= now - limit.held_window_s:
                state.starts.popleft()
            if len(state.starts) >= limit.rpm:
                oldest = state.starts[len(state.starts) - limit.rpm]
                return _Attempt(False, "rate", max(oldest + limit.held_window_s - now, 1e-6))
            state.starts.append(now)
            state.in_flight += 1
            return _Attempt(True, granted_at=now)

    def _wait(self, seconds: float) -> None:
        if self._injected_clock:
            self.clock.sleep(seconds)
            return
        # a release wakes busy waiters early; a missed notify costs at most one poll
        with self._cond:
            self._cond.wait(seconds)

    def _release(self, model: str, limit: Limit, token: str) -> None:
        with self._cond:
            self._state[model].in_flight -= 1
            self._cond.notify_all()


def build_limiter(settings: Settings | None = None, **options: Any) -> Limiter:
    """RedisLimiter when a Redis is configured (redis_url, or a redis broker), else LocalLimiter."""
    settings = settings or get_settings()
    limits = load_limits(settings.limits_file)
    url = settings.redis_url or (
        settings.broker_url if settings.broker_url.startswith(("redis://", "rediss://")) else ""
    )
    if not url:
        return LocalLimiter(limits, **options)
    import redis  # only distributed mode needs the client

    return RedisLimiter(redis.Redis.from_url(url), limits, **options)
