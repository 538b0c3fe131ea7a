"""Knobs and shared state of the fake OpenRouter: fault draws, per-model rpm windows, counters."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import random
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from hitline.fake.answers import Projector

__all__ = ["FakeConfig", "FakeState", "FAULTS", "FORCED"]

FAULTS = ("429", "500", "502", "timeout", "malformed", "no_image", "bad_analysis")
FORCED = {
    "400": "bad request (scripted)",
    "401": "No auth credentials found",
    "402": "Insufficient credits",
    "403": "Input flagged by moderation",
    "404": "Not found (scripted)",
}
_RECENT = 2000
_LOGGED = ("endpoint", "model", "status", "fault", "input_sha", "image_config", "modalities", "undelivered")


@dataclass
class FakeConfig:
    """Knobs of the fake. Latencies are uniform (min_s, max_s) per endpoint: embeddings, chat, image."""

    latency: dict[str, tuple[float, float]] = field(
        default_factory=lambda: {"embeddings": (0.0, 0.0), "chat": (0.0, 0.0), "image": (0.0, 0.0)}
    )
    rpm: dict[str, int] = field(default_factory=dict)  # per model; "*" applies to every other model
    rpm_window_s: float = 60.0
    retry_after_s: float | None = None  # fixed Retry-After on 429; None = until the window frees a slot
    p_429: float = 0.0
    p_500: float = 0.0
    p_502: float = 0.0
    p_timeout: float = 0.0  # hang for hang_s, then drop the connection without an answer
    p_malformed: float = 0.0  # 200 with a truncated JSON body
    p_no_image: float = 0.0  # 200 to an image request, with text but no image
    p_bad_analysis: float = 0.0  # analysis answered in prose instead of JSON
    hang_s: float = 5.0
    # faults (FAULTS or a forced status "400".."404", or "ok") for the next requests, in order
    script: list[str] = field(default_factory=list)
    # a fault for every request of an endpoint ("embeddings", "chat", "image") until cleared, e.g.
    # {"image": "402"}: an outage of one capability that an operator later retries past
    fail: dict[str, str] = field(default_factory=dict)
    require_key: bool = False  # 401 without `Authorization: Bearer <something>`
    api_key: str | None = field(default=None, repr=False)  # when set, only this key passes
    seed: int = 0
    max_image_side: int | None = 1024  # cap on the returned long side (clients resize to the preset)
    images_in_content: bool = False  # put images in content parts instead of message.images
    report_cost: bool = True  # include usage.cost like OpenRouter does
    # the judge: answer keys to report as failed (see hitline.fake.answers.JUDGE_FAILS), for how many
    # judge requests (-1 = every one; n = the next n, then verdicts pass again)
    judge_fail: list[str] = field(default_factory=list)
    judge_fail_count: int = -1
    # the judge answered with JSON of the wrong shape (an outage, a model change) for this many judge
    # requests (-1 = every one; 0 = none)
    judge_wrong_shape: int = 0
    use_local_renderer: bool = True  # hitline.providers.local.render when importable
    # the words a render prompt asks for are written into the image; misspelt: never | first (unless the
    # prompt says the previous attempt misspelt them: the re-render gets them right) | always
    misspell_text: str = "never"
    # answer at once, for benchmarks of the client's own cost (bench/overhead.py): images sent are read
    # at 1/8 scale (every byte still checked to decode), once per distinct data URI (the catalog photos
    # come back as references for every SKU), and a render is a plain PNG of the requested size in the
    # scene's colour, encoded once per size and colour
    instant: bool = False
    # append one JSON line per API request (endpoint, model, status, fault, input hash, image_config):
    # the record tests and the soak use to count paid renders per (SKU, preset)
    log_path: str | None = None
    embed_models: dict[str, int] = field(default_factory=lambda: {"nvidia/llama-nemotron-embed-vl-1b-v2": 2048})
    chat_models: list[str] = field(default_factory=lambda: ["qwen/qwen3.5-397b-a17b"])
    image_models: list[str] = field(
        default_factory=lambda: ["google/gemini-3.1-flash-image-preview", "google/gemini-3-pro-image-preview"]
    )

    def updated(self, **knobs: Any) -> "FakeConfig":
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(knobs) - names)
        if unknown:
            raise ValueError(f"unknown fake knob(s): {', '.join(unknown)}")
        if "latency" in knobs:
            knobs["latency"] = {**self.latency, **{k: (float(v[0]), float(v[1])) for k, v in knobs["latency"].items()}}
        if "script" in knobs:
            bad = [s for s in knobs["script"] if str(s) not in (*FAULTS, *FORCED, "ok")]
            if bad:
                raise ValueError(f"unknown scripted fault(s): {bad}")
            knobs["script"] = [str(s) for s in knobs["script"]]
        if "judge_fail" in knobs:
            from hitline.fake.answers import JUDGE_FAILS

            bad = [k for k in knobs["judge_fail"] if k not in JUDGE_FAILS]
            if bad:
                raise ValueError(f"unknown judge failure(s) {bad}; known: {', '.join(JUDGE_FAILS)}")
        if "fail" in knobs:
            bad = {
                k: v
                for k, v in knobs["fail"].items()
                if k not in ("embeddings", "chat", "image") or str(v) not in (*FAULTS, *FORCED)
            }
            if bad:
                raise ValueError(f"unknown endpoint or fault in fail: {bad}")
            knobs["fail"] = {k: str(v) for k, v in knobs["fail"].items()}
        return dataclasses.replace(self, **knobs)

    def public(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["api_key"] = "***" if self.api_key else None
        return data


class FakeState:
    """Everything the handler threads share, behind one lock."""

    def __init__(self, config: FakeConfig) -> None:
        self.lock = threading.Lock()
        self.config = copy.deepcopy(config)  # the script is consumed; leave the caller's object alone
        self.rng = random.Random(config.seed)
        self.projector = Projector(config.seed)
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.requests: Counter[tuple[str, str]] = Counter()
            self.statuses: Counter[int] = Counter()
            self.faults: Counter[str] = Counter()
            self.windows: dict[str, deque[float]] = {}
            self.recent: deque[dict[str, Any]] = deque(maxlen=_RECENT)

    def configure(self, **knobs: Any) -> FakeConfig:
        with self.lock:
            self.config = self.config.updated(**knobs)
            if "seed" in knobs:
                self.rng = random.Random(self.config.seed)
                self.projector = Projector(self.config.seed)
            return self.config

    def log(self, record: dict[str, Any]) -> None:
        """Append `record` to the request log (caller holds the lock, so lines never interleave)."""
        if not self.config.log_path:
            return
        line = {k: record.get(k) for k in _LOGGED if k in record}
        line["t"] = round(time.time(), 3)
        with open(self.config.log_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")

    def log_undelivered(self, record: dict[str, Any], status: int) -> None:
        """A line of its own for an answer the client never read (the request's line is already written):
        request counts skip it (no endpoint, model or status); a log reader pairs it by input_sha."""
        with self.lock:
            self.log(
                {
                    "endpoint": None,
                    "model": None,
                    "status": None,
                    "fault": None,
                    "input_sha": record.get("input_sha"),
                    "undelivered": {"endpoint": record.get("endpoint"), "model": record.get("model"), "status": status},
                }
            )

    def stats(self) -> dict[str, Any]:
        with self.lock:
            by_endpoint: dict[str, dict[str, int]] = {}
            for (endpoint, model), n in sorted(self.requests.items()):
                by_endpoint.setdefault(endpoint, {})[model] = n
            return {
                "total": sum(self.requests.values()),
                "requests": by_endpoint,
                "statuses": {str(k) if k else "dropped": v for k, v in sorted(self.statuses.items())},
                "faults": dict(self.faults),
                "recent": list(self.recent),
            }

    def pick_fault(self, kind: str) -> str | None:
        """The fault for this request: the next scripted one, else a random draw."""
        with self.lock:
            cfg = self.config
            if kind in cfg.fail:
                return cfg.fail[kind]
            if cfg.script:
                fault = cfg.script.pop(0)
                return None if fault == "ok" else fault
            for name, p in (
                ("429", cfg.p_429),
                ("500", cfg.p_500),
                ("502", cfg.p_502),
                ("timeout", cfg.p_timeout),
                ("malformed", cfg.p_malformed),
            ):
                if p and self.rng.random() < p:
                    return name
            if kind == "image" and cfg.p_no_image and self.rng.random() < cfg.p_no_image:
                return "no_image"
            if kind == "chat" and cfg.p_bad_analysis and self.rng.random() < cfg.p_bad_analysis:
                return "bad_analysis"
            return None

    def judge_failures(self) -> list[str]:
        """The answer keys this judge request fails (consumes one of judge_fail_count)."""
        with self.lock:
            cfg = self.config
            if not cfg.judge_fail or cfg.judge_fail_count == 0:
                return []
            if cfg.judge_fail_count > 0:
                self.config = dataclasses.replace(cfg, judge_fail_count=cfg.judge_fail_count - 1)
            self.faults["judge_fail"] += 1
            return list(cfg.judge_fail)

    def judge_wrong_shape(self) -> bool:
        """Whether this judge request gets JSON of the wrong shape (consumes one of judge_wrong_shape)."""
        with self.lock:
            cfg = self.config
            if cfg.judge_wrong_shape == 0:
                return False
            if cfg.judge_wrong_shape > 0:
                self.config = dataclasses.replace(cfg, judge_wrong_shape=cfg.judge_wrong_shape - 1)
            self.faults["judge_wrong_shape"] += 1
            return True

    def rate_limit(self, model: str) -> float | None:
        """Seconds to wait when `model` is over its rpm; records the request otherwise."""
        with self.lock:
            cfg = self.config
            limit = cfg.rpm.get(model, cfg.rpm.get("*"))
            if not limit:
                return None
            now = time.monotonic()
            window = self.windows.setdefault(model, deque())
            while window and window[0] <= now - cfg.rpm_window_s:
                window.popleft()
            if len(window) >= limit:
                if cfg.retry_after_s is not None:
                    return cfg.retry_after_s
                return max(1.0, math.ceil(window[0] + cfg.rpm_window_s - now))
            window.append(now)
            return None

    def latency(self, kind: str) -> float:
        with self.lock:
            low, high = self.config.latency.get(kind, (0.0, 0.0))
            return self.rng.uniform(low, high) if high > 0 else max(0.0, low)
