"""An OpenRouter-compatible fake server on loopback, for tests, benchmarks and offline tries of the API path.

It validates requests like the real API (400/401), rate-limits per model (429 + Retry-After), injects
faults (500, 502, hangs, malformed JSON, a 200 without an image) and answers with real content:
pixel-derived embeddings, style JSON from the images' colours, and PNGs of the requested size.
Knobs change at runtime (`POST /_fake/config`); counters at `GET /_fake/stats`, `POST /_fake/reset`.
"""

from __future__ import annotations

import argparse
import base64
import functools
import hashlib
import ipaddress
import json
import socket
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from hitline.domain.models import ASPECT_RATIOS, IMAGE_SIZES
from hitline.domain.vectors import f32_base64
from hitline.errors import ConfigError
from hitline.fake.answers import (
    BadRequest,
    analysis_answer,
    decode_image,
    image_summary,
    is_judge_request,
    judge_answer,
    render_png,
    translation_answer,
)
from hitline.fake.state import FAULTS, FORCED, FakeConfig, FakeState

if TYPE_CHECKING:
    from hitline.domain.pricing import PriceTable

__all__ = ["FakeConfig", "FakeServer", "serve", "running_fake", "main", "parse_args", "FAULTS", "API_PREFIX"]

API_PREFIX = "/api/v1"
MAX_IMAGES = 14


class _Handler(BaseHTTPRequestHandler):
    server: "_FakeHTTPServer"
    protocol_version = "HTTP/1.1"
    # the headers and the body are two writes: with Nagle the body waits for the client's delayed ACK of
    # the headers, 40 ms on every answer of a kept-alive connection (the line's Session)
    disable_nagle_algorithm = True
    _record: dict[str, Any] | None = None  # the API request being answered (one handler serves a connection)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # the stats endpoint is the record; stderr noise slows tests

    # plumbing ----------------------------------------------------------------------------------
    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None, raw: bytes | None = None) -> None:
        record = self._record
        self._commit(status)
        data = raw if raw is not None else json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            if record is not None:  # the client had gone (its read timeout, a killed worker): served, not received
                self.server.state.log_undelivered(record, status)

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        self._send(status, {"error": {"code": status, "message": message}}, headers)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw or b"null")
        except ValueError:
            raise BadRequest("request body is not valid JSON") from None

    # fake control ------------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        state = self.server.state
        if self.path == "/_fake/stats":
            return self._send(200, state.stats())
        if self.path == "/_fake/config":
            return self._send(200, state.config.public())
        if self.path == f"{API_PREFIX}/models":
            cfg = state.config
            models = [*cfg.embed_models, *cfg.chat_models, *cfg.image_models]
            return self._send(200, {"data": [{"id": m} for m in models]})
        self._error(404, f"no route for GET {self.path}")

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        state = self.server.state
        try:
            if self.path == "/_fake/reset":
                state.reset()
                return self._send(200, {"ok": True})
            if self.path == "/_fake/config":
                body = self._body()
                if not isinstance(body, dict):
                    raise BadRequest("config body must be a JSON object of knobs")
                return self._send(200, state.configure(**body).public())
            if self.path == f"{API_PREFIX}/embeddings":
                return self._api("embeddings")
            if self.path == f"{API_PREFIX}/chat/completions":
                return self._api("chat/completions")
            self._error(404, f"no route for POST {self.path}")
        except (BadRequest, ValueError, TypeError) as exc:
            self._error(400, str(exc))

    # the API -----------------------------------------------------------------------------------
    def _api(self, endpoint: str) -> None:
        state = self.server.state
        # arrival time (monotonic): tests measure the rate the provider actually saw
        self._record = {"endpoint": endpoint, "model": None, "status": None, "fault": None, "t": time.monotonic()}
        try:
            self._api_inner(endpoint, state, state.config, self._record)
        except BadRequest as exc:
            self._error(400, str(exc))
        except Exception as exc:  # noqa: BLE001 - a bug in the fake must not look like a hang
            self._error(500, f"fake OpenRouter internal error: {type(exc).__name__}: {exc}")

    def _commit(self, status: int) -> None:
        """Count the current API request; done before the answer is written so stats never lag it."""
        record, self._record = self._record, None
        if record is None:
            return
        state = self.server.state
        with state.lock:
            state.requests[(record["endpoint"], str(record["model"]))] += 1
            state.statuses[status] += 1
            if record["fault"]:
                state.faults[record["fault"]] += 1
            record["status"] = status
            state.recent.append(record)
            state.log(record)

    def _api_inner(self, endpoint: str, state: FakeState, cfg: FakeConfig, record: dict[str, Any]) -> None:
        auth = self.headers.get("Authorization", "")
        token = auth[7:].strip() if auth.startswith("Bearer ") else ""
        if cfg.require_key and (not token or (cfg.api_key is not None and token != cfg.api_key)):
            return self._error(401, "No auth credentials found" if not token else "User not found.")
        body = self._body()
        if not isinstance(body, dict):
            raise BadRequest("request body must be a JSON object")
        model = body.get("model")
        record["model"] = model
        if not isinstance(model, str) or not model:
            raise BadRequest("'model' is required")
        if endpoint == "embeddings":
            kind, work = "embeddings", self._embeddings(body, model, cfg, state, record)
        else:
            kind, work = self._chat(body, model, cfg, state, record)
        wait = state.rate_limit(model)
        if wait is not None:
            record["fault"] = "rpm"
            retry_after = str(int(wait)) if float(wait).is_integer() else f"{wait:.3f}"
            return self._error(429, f"Rate limit exceeded: {model}", {"Retry-After": retry_after})
        fault = state.pick_fault(kind)
        record["fault"] = fault
        if fault in FORCED:
            return self._error(int(fault), FORCED[fault])  # type: ignore[index]
        if fault == "429":
            after = cfg.retry_after_s if cfg.retry_after_s is not None else 1
            return self._error(429, f"Rate limit exceeded: {model}", {"Retry-After": f"{after:g}"})
        if fault in ("500", "502"):
            return self._error(int(fault), "Internal Server Error" if fault == "500" else f"{model} is down (upstream)")
        if fault == "timeout":
            self._commit(0)  # "dropped"
            time.sleep(cfg.hang_s)
            self.close_connection = True
            return
        time.sleep(state.latency(kind))
        if fault == "malformed":
            return self._send(200, None, raw=b'{"id": "gen-fake", "choices": [{"message": {"content": "')
        self._send(200, work(fault))

    def _embeddings(
        self, body: dict[str, Any], model: str, cfg: FakeConfig, state: FakeState, record: dict[str, Any]
    ) -> Any:
        if model not in cfg.embed_models:
            raise BadRequest(f"{model} is not a valid embedding model ID")
        dim = cfg.embed_models[model]
        fmt = body.get("encoding_format", "float")
        if fmt not in ("float", "base64"):
            raise BadRequest("'encoding_format' must be 'float' or 'base64'")
        items = body.get("input")
        items = [items] if isinstance(items, str) else items
        if not isinstance(items, list) or not items:
            raise BadRequest("'input' must be a string or a non-empty list")
        decoded: list[Any] = []
        for item in items:
            if isinstance(item, str):
                decoded.append(item)
                continue
            parts = item.get("content") if isinstance(item, dict) else None
            urls = [p.get("image_url", {}).get("url") for p in parts or [] if isinstance(p, dict)]
            if not urls:
                raise BadRequest("each input must be a string or {'content': [{'type': 'image_url', ...}]}")
            decoded.append(decode_image(urls[0], reduced=cfg.instant))
        record["images"] = [image_summary(x) for x in decoded if not isinstance(x, str)]
        record["inputs"] = len(decoded)

        def answer(_fault: str | None) -> dict[str, Any]:
            vectors = [
                state.projector.text_vector(x, model, dim)
                if isinstance(x, str)
                else state.projector.image_vector(x, model, dim)
                for x in decoded
            ]
            data = [
                {"object": "embedding", "index": i, "embedding": f32_base64(v) if fmt == "base64" else v}
                for i, v in enumerate(vectors)
            ]
            data.reverse()  # OpenRouter does not promise order; clients sort by index
            tokens = sum(len(x.split()) if isinstance(x, str) else 256 for x in decoded)
            return {"object": "list", "model": model, "data": data, "usage": _usage(model, tokens, 0, cfg, None)}

        return answer

    def _chat(
        self, body: dict[str, Any], model: str, cfg: FakeConfig, state: FakeState, record: dict[str, Any]
    ) -> tuple[str, Any]:
        if model not in cfg.chat_models and model not in cfg.image_models:
            raise BadRequest(f"{model} is not a valid model ID")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise BadRequest("'messages' is required and must be a non-empty list")
        images, texts, first_url = [], [], None
        for message in messages:
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, str):
                texts.append(content)
            for part in content if isinstance(content, list) else []:
                if isinstance(part, dict) and part.get("type") == "image_url":
                    url = part.get("image_url")
                    url = url.get("url") if isinstance(url, dict) else url
                    first_url = first_url or url
                    images.append(decode_image(url, reduced=cfg.instant))
                elif isinstance(part, dict) and part.get("type") == "text":
                    texts.append(str(part.get("text", "")))
        if len(images) > MAX_IMAGES:
            raise BadRequest(f"too many images: {len(images)} (this model accepts at most {MAX_IMAGES})")
        modalities = body.get("modalities") or ["text"]
        image_config = body.get("image_config") or {}
        # the first image names the request's input (the flat-lay of a render): a log counts calls per SKU
        input_sha = hashlib.sha256(str(first_url).encode()).hexdigest()[:16] if first_url else None
        record.update(
            images=[image_summary(im) for im in images],
            modalities=modalities,
            image_config=image_config,
            input_sha=input_sha,
            response_format=body.get("response_format"),
            text=" ".join(texts)[-600:],
        )
        prompt_tokens = 258 * len(images) + sum(len(t) for t in texts) // 4
        if "image" not in modalities:
            judging = is_judge_request(" ".join(texts))

            def analysis(fault: str | None) -> dict[str, Any]:
                if fault == "bad_analysis":
                    content = "Sure! These photos share a lovely warm look with soft light and happy models."
                elif judging and state.judge_wrong_shape():
                    content = json.dumps({"verdict": "looks fine", "score": 0.93})  # JSON, not the verdict's keys
                elif judging:
                    content = json.dumps(judge_answer(images, state.judge_failures()))
                elif (translation := translation_answer(" ".join(texts))) is not None:
                    content = json.dumps(translation)
                else:
                    content = json.dumps(analysis_answer(images, " ".join(texts)))
                return _completion(model, content, None, _usage(model, prompt_tokens, len(content) // 4, cfg, None))

            return "chat", analysis
        if model not in cfg.image_models:
            raise BadRequest(f"{model} does not support image output")
        ratio = image_config.get("aspect_ratio", "1:1")
        size = image_config.get("image_size", "1K")
        if ratio not in ASPECT_RATIOS:
            raise BadRequest(f"unsupported aspect_ratio {ratio!r}; supported: {', '.join(ASPECT_RATIOS)}")
        if size not in IMAGE_SIZES:
            raise BadRequest(f"unsupported image_size {size!r}; supported: {', '.join(IMAGE_SIZES)}")
        prompt = "\n".join(texts)

        def image(fault: str | None) -> dict[str, Any]:
            if fault == "no_image":
                return _completion(
                    model, "I can't help with that image.", None, _usage(model, prompt_tokens, 12, cfg, None)
                )
            png = render_png(
                images, prompt, ratio, size, cfg.max_image_side, cfg.use_local_renderer, cfg.instant, cfg.misspell_text
            )
            url = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
            return _completion(
                model,
                "Here is your image.",
                url,
                _usage(model, prompt_tokens, 1290, cfg, size),
                in_content=cfg.images_in_content,
            )

        return "image", image


def _usage(model: str, prompt: int, completion: int, cfg: FakeConfig, image_size: str | None) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if cfg.report_cost:
        try:
            prices = _prices()
            usage["cost"] = (
                prices.image_cost(model, image_size)
                if image_size
                else prices.token_cost(model, {"prompt_tokens": prompt, "completion_tokens": completion})
            )
        except ConfigError:
            usage["cost"] = 0.0
    return usage


@functools.lru_cache(maxsize=1)
def _prices() -> PriceTable:
    """The shipped price table, read once: it is package data, the same for every answer."""
    from hitline.domain.pricing import PriceTable

    return PriceTable.load()


def _completion(
    model: str, text: str, image_url: str | None, usage: dict[str, Any], in_content: bool = False
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if image_url is not None:
        part = {"type": "image_url", "image_url": {"url": image_url}}
        if in_content:
            message["content"] = [{"type": "text", "text": text}, part]
        else:
            message["images"] = [part]
    return {
        "id": f"gen-fake-{time.monotonic_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "finish_reason": "stop", "message": message}],
        "usage": usage,
    }


class _FakeHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    state: FakeState


def _check_loopback(host: str) -> int:
    """The address family for `host`; ConfigError unless it is a loopback address."""
    if host == "localhost":
        return socket.AF_INET
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is None or not address.is_loopback:
        raise ConfigError(f"the fake OpenRouter binds to loopback only (127.0.0.1, ::1); refusing {host!r}")
    return socket.AF_INET6 if address.version == 6 else socket.AF_INET


def serve(
    host: str = "127.0.0.1", port: int = 0, config: FakeConfig | None = None
) -> tuple[ThreadingHTTPServer, threading.Thread]:
    """Start the fake on a daemon thread; returns the server (its `.state` holds knobs and counters)."""
    family = _check_loopback(host)
    server_cls = type(
        "_FakeServerV6" if family == socket.AF_INET6 else "_FakeServerV4",
        (_FakeHTTPServer,),
        {"address_family": family},
    )
    server = server_cls((host, port), _Handler)
    server.state = FakeState(config or FakeConfig())
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        daemon=True,
        name=f"fake-openrouter:{server.server_address[1]}",
    )
    thread.start()
    return server, thread


class FakeServer:
    """A running fake: `base_url` (ends in /api/v1), `stats()`, `configure(**knobs)`, `reset()`, `close()`."""

    def __init__(self, server: ThreadingHTTPServer, thread: threading.Thread) -> None:
        self.server, self.thread = server, thread
        host, port = server.server_address[:2]
        host = f"[{host}]" if ":" in str(host) else host
        self.root_url = f"http://{host}:{port}"
        self.base_url = f"{self.root_url}{API_PREFIX}"

    @property
    def state(self) -> FakeState:
        return self.server.state  # type: ignore[attr-defined, no-any-return]

    def stats(self) -> dict[str, Any]:
        return self.state.stats()

    def configure(self, **knobs: Any) -> FakeConfig:
        return self.state.configure(**knobs)

    def reset(self) -> None:
        self.state.reset()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def __enter__(self) -> "FakeServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def running_fake(config: FakeConfig | None = None, host: str = "127.0.0.1", port: int = 0) -> Iterator[FakeServer]:
    fake = FakeServer(*serve(host, port, config))
    try:
        yield fake
    finally:
        fake.close()


def _pairs(values: Sequence[str], convert: Any, what: str) -> dict[str, Any]:
    out = {}
    for value in values:
        name, sep, rest = value.rpartition("=")
        if not sep or not name:
            raise SystemExit(f"--{what} expects NAME=VALUE, got {value!r}")
        out[name] = convert(rest)
    return out


def parse_args(argv: Sequence[str] | None = None) -> tuple[str, int, FakeConfig]:
    """Host, port and knobs from `hitline fake-openrouter` options."""
    parser = argparse.ArgumentParser(prog="hitline fake-openrouter", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="loopback address only")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument(
        "--latency",
        action="append",
        default=[],
        metavar="ENDPOINT=MIN:MAX",
        help="uniform latency in seconds for embeddings, chat or image (repeatable)",
    )
    parser.add_argument("--rpm", action="append", default=[], metavar="MODEL=N", help="requests per minute ('*' = any)")
    parser.add_argument("--rpm-window", type=float, default=60.0)
    parser.add_argument("--retry-after", type=float, default=None)
    for fault in ("429", "500", "502", "timeout", "malformed", "no-image", "bad-analysis"):
        parser.add_argument(f"--p-{fault}", type=float, default=0.0, help=f"probability of a {fault} fault")
    parser.add_argument("--hang-s", type=float, default=5.0, help="how long a timeout fault hangs")
    parser.add_argument("--require-key", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-image-side", type=int, default=1024, help="0 = full size")
    parser.add_argument("--images-in-content", action="store_true")
    parser.add_argument("--no-cost", action="store_true", help="omit usage.cost")
    parser.add_argument("--no-local-renderer", action="store_true")
    parser.add_argument(
        "--instant",
        action="store_true",
        help="answer at once: images read at 1/8 scale, renders a plain PNG (for benchmarks)",
    )
    parser.add_argument("--log", default=None, metavar="FILE", help="append one JSON line per API request")
    parser.add_argument(
        "--misspell-text",
        choices=("never", "first", "always"),
        default="never",
        help="misspell the words a render prompt asks for (first: until a re-render quotes the misread)",
    )
    args = parser.parse_args(argv)
    latency = _pairs(args.latency, lambda v: tuple(float(x) for x in (v.split(":") * 2)[:2]), "latency")
    config = FakeConfig().updated(
        latency=latency,
        rpm=_pairs(args.rpm, int, "rpm"),
        rpm_window_s=args.rpm_window,
        retry_after_s=args.retry_after,
        p_429=args.p_429,
        p_500=args.p_500,
        p_502=args.p_502,
        p_timeout=args.p_timeout,
        p_malformed=args.p_malformed,
        p_no_image=args.p_no_image,
        p_bad_analysis=args.p_bad_analysis,
        hang_s=args.hang_s,
        require_key=args.require_key,
        seed=args.seed,
        max_image_side=args.max_image_side or None,
        images_in_content=args.images_in_content,
        report_cost=not args.no_cost,
        use_local_renderer=not args.no_local_renderer,
        instant=args.instant,
        log_path=args.log,
        misspell_text=args.misspell_text,
    )
    return args.host, args.port, config


def main(argv: Sequence[str] | None = None) -> int:
    """`hitline fake-openrouter`: serve the fake until interrupted."""
    host, port, config = parse_args(argv)
    fake = FakeServer(*serve(host, port, config))
    print(f"fake OpenRouter listening on {fake.base_url} (stats: {fake.root_url}/_fake/stats)", flush=True)
    try:
        while fake.thread.is_alive():
            fake.thread.join(timeout=1.0)
    except KeyboardInterrupt:
        pass
    finally:
        fake.close()
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
