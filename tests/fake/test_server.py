"""hitline/fake/server.py: the fake validates, limits, fails and answers like OpenRouter, over real HTTP."""

from __future__ import annotations

import base64
import io
import threading
import time
from typing import Any, Iterator

import numpy as np
import pytest
import requests
from PIL import Image

from hitline.errors import ConfigError
from hitline.fake.server import FakeServer, parse_args, running_fake, serve
from hitline.fake.state import FakeConfig

EMBED = "nvidia/llama-nemotron-embed-vl-1b-v2"
CHAT = "qwen/qwen3.5-397b-a17b"
NANO = "google/gemini-3.1-flash-image-preview"
AUTH = {"Authorization": "Bearer sk-or-v1-test"}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeServer]:
    with running_fake(FakeConfig(use_local_renderer=False, max_image_side=256)) as server:
        yield server


@pytest.fixture(autouse=True)
def fresh(fake: FakeServer) -> None:
    fake.configure(
        script=[],
        rpm={},
        retry_after_s=None,
        require_key=False,
        p_500=0.0,
        p_no_image=0.0,
        latency={"embeddings": (0, 0), "chat": (0, 0), "image": (0, 0)},
        max_image_side=256,
        use_local_renderer=False,
        report_cost=True,
        fail={},
        instant=False,
    )
    fake.reset()


def _uri(colour: tuple[int, int, int], size: tuple[int, int] = (64, 96)) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _part(colour: tuple[int, int, int]) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": _uri(colour)}}


def _post(fake: FakeServer, path: str, body: Any, headers: dict[str, str] | None = None) -> requests.Response:
    return requests.post(f"{fake.base_url}{path}", json=body, headers=headers or AUTH, timeout=10)


def _image_request(parts: list[dict[str, Any]], ratio: str = "3:4", size: str = "1K", **extra: Any) -> dict[str, Any]:
    return {
        "model": NANO,
        "modalities": ["image", "text"],
        "image_config": {"aspect_ratio": ratio, "image_size": size},
        "messages": [{"role": "user", "content": [*parts, {"type": "text", "text": "make it nice"}]}],
        **extra,
    }


def _png(body: dict[str, Any]) -> Image.Image:
    url = body["choices"][0]["message"]["images"][0]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))


# binding -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "example.com", "::"])
def test_refuses_non_loopback_addresses(host: str) -> None:
    with pytest.raises(ConfigError, match="loopback only"):
        serve(host, 0)


def test_base_url_ends_in_api_v1(fake: FakeServer) -> None:
    assert fake.base_url.startswith("http://127.0.0.1:") and fake.base_url.endswith("/api/v1")
    models = requests.get(f"{fake.base_url}/models", timeout=5).json()["data"]
    assert {"id": NANO} in models


def test_answers_on_a_kept_alive_connection_are_not_held_back(fake: FakeServer) -> None:
    """The headers and the body of an answer are two writes; with Nagle's algorithm on, the body waits
    for the client's delayed ACK of the headers, 40 ms a call on a Session like the line's."""
    with requests.Session() as session:
        for _ in range(5):  # past the connection's first exchanges, which are ACKed at once
            session.get(f"{fake.base_url}/models", timeout=5).raise_for_status()
        started = time.monotonic()
        for _ in range(10):
            session.get(f"{fake.base_url}/models", timeout=5).raise_for_status()
        assert time.monotonic() - started < 0.2


# validation like the real API ---------------------------------------------------------------------
def test_require_key_gives_401_with_an_error_body(fake: FakeServer) -> None:
    fake.configure(require_key=True)
    response = _post(fake, "/embeddings", {"model": EMBED, "input": "x"}, headers={"X-Title": "t"})
    assert response.status_code == 401
    assert response.json() == {"error": {"code": 401, "message": "No auth credentials found"}}
    assert _post(fake, "/embeddings", {"model": EMBED, "input": "x"}).status_code == 200


@pytest.mark.parametrize(
    "path, body, message",
    [
        (
            "/chat/completions",
            {"model": "acme/nope", "messages": [{"role": "user", "content": "hi"}]},
            "not a valid model",
        ),
        ("/chat/completions", {"model": CHAT}, "'messages' is required"),
        ("/chat/completions", {"model": CHAT, "messages": []}, "'messages' is required"),
        ("/chat/completions", _image_request([_part((1, 2, 3))] * 15), "too many images: 15"),
        ("/chat/completions", _image_request([], ratio="7:3"), "unsupported aspect_ratio '7:3'"),
        ("/chat/completions", _image_request([], size="8K"), "unsupported image_size '8K'"),
        ("/chat/completions", {**_image_request([]), "model": CHAT}, "does not support image output"),
        (
            "/chat/completions",
            _image_request([{"type": "image_url", "image_url": {"url": "http://x/y.png"}}]),
            "base64 data URI",
        ),
        ("/embeddings", {"model": CHAT, "input": "x"}, "not a valid embedding model"),
        ("/embeddings", {"model": EMBED, "input": []}, "non-empty list"),
        ("/embeddings", {"model": EMBED, "input": [{"content": []}]}, "each input"),
        ("/embeddings", {"model": EMBED, "input": "x", "encoding_format": "int8"}, "'encoding_format' must be"),
    ],
)
def test_invalid_requests_are_400_with_an_error_body(
    fake: FakeServer, path: str, body: dict[str, Any], message: str
) -> None:
    response = _post(fake, path, body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == 400 and message in error["message"]


def test_fourteen_images_are_accepted(fake: FakeServer) -> None:
    assert _post(fake, "/chat/completions", _image_request([_part((9, 9, 9))] * 14)).status_code == 200


# rate limits and faults ---------------------------------------------------------------------------
def test_rpm_limit_per_model_with_retry_after(fake: FakeServer) -> None:
    fake.configure(rpm={CHAT: 2})
    chat = {"model": CHAT, "messages": [{"role": "user", "content": "hi"}]}
    assert [_post(fake, "/chat/completions", chat).status_code for _ in range(2)] == [200, 200]
    limited = _post(fake, "/chat/completions", chat)
    assert limited.status_code == 429 and 1 <= int(limited.headers["Retry-After"]) <= 60
    assert limited.json()["error"]["code"] == 429 and CHAT in limited.json()["error"]["message"]
    assert _post(fake, "/embeddings", {"model": EMBED, "input": "x"}).status_code == 200  # other model unaffected


def test_scripted_faults_then_normal_service(fake: FakeServer) -> None:
    fake.configure(script=["500", "502", "429", "malformed", "402", "ok"], retry_after_s=2)
    answers = [_post(fake, "/embeddings", {"model": EMBED, "input": "x"}) for _ in range(7)]
    assert [a.status_code for a in answers] == [500, 502, 429, 200, 402, 200, 200]
    assert answers[2].headers["Retry-After"] == "2"
    with pytest.raises(ValueError):
        answers[3].json()
    assert fake.stats()["faults"] == {"500": 1, "502": 1, "429": 1, "malformed": 1, "402": 1}


def test_timeout_fault_hangs_then_drops_the_connection(fake: FakeServer) -> None:
    fake.configure(script=["timeout"], hang_s=0.3)
    with pytest.raises(requests.ReadTimeout):
        requests.post(f"{fake.base_url}/embeddings", json={"model": EMBED, "input": "x"}, timeout=(1, 0.1))
    fake.configure(script=["timeout"], hang_s=0.05)
    with pytest.raises(requests.ConnectionError):
        requests.post(f"{fake.base_url}/embeddings", json={"model": EMBED, "input": "x"}, timeout=(1, 2))


def test_fault_rates_are_seeded_and_roughly_right() -> None:
    def statuses() -> list[int]:
        with running_fake(FakeConfig(p_500=0.3, seed=7)) as server:
            return [_post(server, "/embeddings", {"model": EMBED, "input": "x"}).status_code for _ in range(40)]

    first = statuses()
    assert first == statuses()  # same seed, same faults
    assert 4 <= first.count(500) <= 20


def test_no_image_fault(fake: FakeServer) -> None:
    fake.configure(p_no_image=1.0)
    body = _post(fake, "/chat/completions", _image_request([_part((200, 0, 0))])).json()
    message = body["choices"][0]["message"]
    assert "images" not in message and message["content"] and body["usage"]["completion_tokens"] > 0


def test_latency_distribution_is_applied(fake: FakeServer) -> None:
    fake.configure(latency={"chat": (0.2, 0.25)})
    started = time.monotonic()
    _post(fake, "/chat/completions", {"model": CHAT, "messages": [{"role": "user", "content": "hi"}]})
    assert time.monotonic() - started >= 0.2
    started = time.monotonic()
    _post(fake, "/embeddings", {"model": EMBED, "input": "x"})
    assert time.monotonic() - started < 0.2


# answers -----------------------------------------------------------------------------------------
def test_embeddings_have_the_models_dimension_and_follow_the_pixels(fake: FakeServer) -> None:
    inputs = [{"content": [_part(c)]} for c in [(200, 30, 30), (203, 32, 29), (30, 30, 200)]] + ["a red dress"]
    body = _post(fake, "/embeddings", {"model": EMBED, "input": inputs}).json()
    rows = sorted(body["data"], key=lambda r: r["index"])
    vectors = [np.array(r["embedding"]) / np.linalg.norm(r["embedding"]) for r in rows]
    assert [r["index"] for r in rows] == [0, 1, 2, 3] and all(len(v) == 2048 for v in vectors)
    assert vectors[0] @ vectors[1] > 0.99 > vectors[0] @ vectors[2]
    again = _post(fake, "/embeddings", {"model": EMBED, "input": inputs[:1]}).json()["data"][0]["embedding"]
    assert again == rows[0]["embedding"]
    assert body["usage"]["prompt_tokens"] > 0 and "cost" in body["usage"]


def test_analysis_follows_the_colours(fake: FakeServer) -> None:
    import json

    def mood(colour: tuple[int, int, int]) -> dict[str, Any]:
        body = _post(
            fake,
            "/chat/completions",
            {
                "model": CHAT,
                "response_format": {"type": "json_object"},
                "messages": [{"role": "user", "content": [_part(colour)] * 2}],
            },
        ).json()
        assert body["usage"]["prompt_tokens"] >= 2 * 258 and body["usage"]["cost"] > 0
        return json.loads(body["choices"][0]["message"]["content"])

    warm, cool = mood((220, 120, 40)), mood((40, 90, 220))
    assert warm["mood"] == "warm, inviting" and cool["mood"] == "calm, fresh"
    assert set(warm) == {"scene", "lighting", "pose", "mood", "palette", "prompt"}
    assert warm["palette"][0] == "#dc7828" and len(warm["prompt"].split()) < 100


@pytest.mark.parametrize(
    "ratio, size, cap, expected",
    [
        ("3:4", "1K", 256, (192, 256)),
        ("4:1", "2K", 256, (256, 64)),
        ("1:1", "512px", None, (512, 512)),
        ("9:16", "1K", None, (576, 1024)),
    ],
)
def test_images_are_real_pngs_of_the_requested_shape(
    fake: FakeServer, ratio: str, size: str, cap: int | None, expected: tuple[int, int]
) -> None:
    fake.configure(max_image_side=cap)
    body = _post(
        fake, "/chat/completions", _image_request([_part((200, 0, 0)), _part((0, 0, 200))], ratio, size)
    ).json()
    image = _png(body)
    assert image.size == expected
    centre = image.convert("RGB").getpixel((expected[0] // 2, expected[1] // 2))
    corner = image.convert("RGB").getpixel((1, 1))
    assert centre[0] > 150 and corner[2] > 150  # flat-lay pasted on a canvas coloured from the reference
    assert body["usage"]["cost"] > 0


def test_white_background_prompt_gives_a_white_canvas(fake: FakeServer) -> None:
    request = _image_request([_part((200, 0, 0))], "1:1", "512px")
    request["messages"][0]["content"][-1]["text"] = "Pure white #FFFFFF background, product only."
    image = _png(_post(fake, "/chat/completions", request).json()).convert("RGB")
    assert image.getpixel((1, 1)) == (255, 255, 255)


def _jpeg_uri(colour: tuple[int, int, int], size: tuple[int, int] = (64, 96), cut: int = 0) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "JPEG")
    data = buffer.getvalue()
    return "data:image/jpeg;base64," + base64.b64encode(data[: len(data) - cut]).decode()


def test_instant_mode_answers_a_plain_png_of_the_shape_and_still_checks_the_images(fake: FakeServer) -> None:
    fake.configure(instant=True)
    parts = [{"type": "image_url", "image_url": {"url": _jpeg_uri(c)}} for c in ((200, 0, 0), (0, 0, 200))]
    body = _post(fake, "/chat/completions", _image_request(parts, "3:4", "1K")).json()
    image = _png(body).convert("RGB")
    assert image.size == (192, 256) and image.getcolors() is not None and len(image.getcolors()) == 1
    assert image.getpixel((96, 128))[2] > 150  # the scene's colour, from the reference
    emb = _post(fake, "/embeddings", {"model": EMBED, "input": [{"content": parts[:1]}]}).json()
    assert len(emb["data"][0]["embedding"]) == 2048
    truncated = {"type": "image_url", "image_url": {"url": _jpeg_uri((200, 0, 0), (640, 640), cut=400)}}
    assert _post(fake, "/chat/completions", _image_request([truncated], "3:4", "1K")).status_code == 400


def test_local_renderer_is_used_when_available(fake: FakeServer) -> None:
    pytest.importorskip("hitline.providers.local.render")
    fake.configure(use_local_renderer=True, max_image_side=256)
    body = _post(fake, "/chat/completions", _image_request([_part((200, 0, 0)), _part((0, 0, 200))], "3:4", "1K"))
    assert body.status_code == 200 and _png(body.json()).size == (192, 256)


# control endpoints -------------------------------------------------------------------------------
def test_stats_reset_and_config_over_http(fake: FakeServer) -> None:
    root = fake.root_url
    _post(fake, "/embeddings", {"model": EMBED, "input": "x"})
    _post(fake, "/chat/completions", {"model": CHAT, "messages": []})
    stats = requests.get(f"{root}/_fake/stats", timeout=5).json()
    assert stats["total"] == 2 and stats["statuses"] == {"200": 1, "400": 1}
    assert stats["requests"] == {"embeddings": {EMBED: 1}, "chat/completions": {CHAT: 1}}
    config = requests.post(f"{root}/_fake/config", json={"p_500": 1.0, "latency": {"image": [0, 0.01]}}, timeout=5)
    assert config.json()["p_500"] == 1.0 and config.json()["latency"]["image"] == [0, 0.01]
    assert _post(fake, "/embeddings", {"model": EMBED, "input": "x"}).status_code == 500
    assert requests.post(f"{root}/_fake/config", json={"p_nonsense": 1}, timeout=5).status_code == 400
    assert requests.post(f"{root}/_fake/config", json={"script": ["boom"]}, timeout=5).status_code == 400
    requests.post(f"{root}/_fake/reset", timeout=5)
    assert requests.get(f"{root}/_fake/stats", timeout=5).json()["total"] == 0


def test_config_endpoint_masks_the_api_key(fake: FakeServer) -> None:
    fake.configure(api_key="sk-or-v1-secret-for-fake")
    try:
        text = requests.get(f"{fake.root_url}/_fake/config", timeout=5).text
        assert "sk-or-v1-secret-for-fake" not in text and "secret" not in repr(fake.state.config)
    finally:
        fake.configure(api_key=None)


def test_counters_are_thread_safe(fake: FakeServer) -> None:
    def hit() -> None:
        for _ in range(5):
            _post(fake, "/embeddings", {"model": EMBED, "input": "x"})

    threads = [threading.Thread(target=hit) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert fake.stats()["total"] == 40 and fake.stats()["statuses"] == {"200": 40}


def test_the_callers_config_is_not_consumed() -> None:
    config = FakeConfig(script=["500"])
    with running_fake(config) as server:
        assert _post(server, "/embeddings", {"model": EMBED, "input": "x"}).status_code == 500
    assert config.script == ["500"]


def test_cli_options_become_knobs() -> None:
    host, port, config = parse_args(
        [
            "--port",
            "9911",
            "--latency",
            "image=0.5:2",
            "--latency",
            "chat=0.1",
            "--rpm",
            f"{NANO}=20",
            "--p-500",
            "0.1",
            "--p-no-image",
            "0.05",
            "--require-key",
            "--max-image-side",
            "0",
            "--seed",
            "3",
        ]
    )
    assert (host, port) == ("127.0.0.1", 9911)
    assert config.latency["image"] == (0.5, 2.0) and config.latency["chat"] == (0.1, 0.1)
    assert config.rpm == {NANO: 20} and config.p_500 == 0.1 and config.p_no_image == 0.05
    assert config.require_key and config.max_image_side is None and config.seed == 3


def test_an_endpoint_fails_until_the_fault_is_cleared(fake: FakeServer) -> None:
    fake.configure(fail={"image": "402"})
    image = _image_request([_part((200, 30, 30))])
    assert _post(fake, "/chat/completions", image).status_code == 402
    assert _post(fake, "/chat/completions", image).status_code == 402
    assert _post(fake, "/embeddings", {"model": EMBED, "input": "x"}).status_code == 200  # other endpoints work
    fake.configure(fail={})
    assert _post(fake, "/chat/completions", image).status_code == 200
    with pytest.raises(ValueError):
        fake.configure(fail={"image": "418"})


def test_an_answer_the_client_never_read_is_logged_as_undelivered(tmp_path) -> None:  # noqa: ANN001
    """A render the provider finished after the client's read timeout is paid but never received: the
    request log says so (a soak tells these repeats from a double charge by it)."""
    import json

    log = tmp_path / "requests.jsonl"
    with running_fake(FakeConfig(use_local_renderer=False, max_image_side=256, log_path=str(log))) as server:
        server.configure(latency={"embeddings": (0, 0), "chat": (0, 0), "image": (0.8, 0.8)})
        body = _image_request([_part((200, 30, 30))], ratio="1:1", size="2K")
        with pytest.raises(requests.Timeout):
            requests.post(f"{server.base_url}/chat/completions", json=body, headers=AUTH, timeout=(2, 0.2))
        requests.post(f"{server.base_url}/chat/completions", json=body, headers=AUTH, timeout=10).raise_for_status()
        time.sleep(1.0)  # the first answer is written after its latency, to a closed socket
        lines = [json.loads(x) for x in log.read_text().splitlines()]
    served = [x for x in lines if x["status"] == 200]
    undelivered = [x for x in lines if x.get("undelivered")]
    assert len(served) == 2 and served[0]["input_sha"] == served[1]["input_sha"]
    assert [(u["input_sha"], u["undelivered"]["status"]) for u in undelivered] == [(served[0]["input_sha"], 200)]
    assert undelivered[0]["endpoint"] is None and undelivered[0]["model"] is None  # counts skip it


def test_embeddings_as_base64_are_the_float_answer_in_float32(fake: FakeServer) -> None:
    """OpenAI's encoding_format "base64": little-endian float32 bytes of the same vector."""
    request = {"model": EMBED, "input": ["red dress", {"content": [_part((200, 30, 40))]}]}
    floats = _post(fake, "/embeddings", request).json()["data"]
    packed = _post(fake, "/embeddings", {**request, "encoding_format": "base64"}).json()["data"]
    assert [r["index"] for r in packed] == [r["index"] for r in floats]
    for f, b in zip(floats, packed):
        assert isinstance(b["embedding"], str)
        decoded = np.frombuffer(base64.b64decode(b["embedding"]), dtype="<f4")
        assert np.array_equal(decoded, np.asarray(f["embedding"], dtype=np.float32))
