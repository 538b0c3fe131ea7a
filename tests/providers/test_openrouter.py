"""hitline/providers/openrouter*.py over real HTTP against the shipped fake OpenRouter."""

from __future__ import annotations

import io
import json
import logging
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import requests
from PIL import Image
from pydantic import SecretStr

from hitline.config import Settings
from hitline.domain.models import NewProduct, Preset, StyleAnalysis
from hitline.errors import ConfigError, RateLimited, RetryableProviderError, TerminalProviderError
from hitline.fake.server import FakeServer, running_fake
from hitline.fake.state import FakeConfig
from hitline.domain.pricing import PriceTable
from hitline.providers.openrouter.providers import (
    OpenRouterAnalyzer,
    OpenRouterEmbedder,
    OpenRouterRenderer,
    extract_json_object,
)
from hitline.providers.openrouter.client import OpenRouterClient, parse_retry_after

KEY = "sk-or-v1-TOPSECRET-0123456789abcdef"
EMBED = "nvidia/llama-nemotron-embed-vl-1b-v2"
CHAT = "qwen/qwen3.5-397b-a17b"
NANO = "google/gemini-3.1-flash-image-preview"
RED, BLUE, GREEN = (210, 40, 40), (40, 60, 210), (40, 190, 60)
CALM = dict(
    script=[],
    p_429=0.0,
    p_500=0.0,
    p_502=0.0,
    p_timeout=0.0,
    p_malformed=0.0,
    p_no_image=0.0,
    p_bad_analysis=0.0,
    rpm={},
    rpm_window_s=60.0,
    retry_after_s=None,
    hang_s=0.5,
    require_key=True,
    api_key=KEY,
    images_in_content=False,
    max_image_side=256,
    use_local_renderer=False,
    latency={"embeddings": (0, 0), "chat": (0, 0), "image": (0, 0)},
)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeServer]:
    with running_fake(FakeConfig(**CALM)) as server:
        yield server


@pytest.fixture(autouse=True)
def calm(fake: FakeServer) -> None:
    fake.configure(**CALM)
    fake.reset()


@pytest.fixture
def client(fake: FakeServer) -> OpenRouterClient:
    return OpenRouterClient(fake.base_url, SecretStr(KEY), timeout_s=2.0)


@pytest.fixture(scope="module")
def prices() -> PriceTable:
    return PriceTable.load()


def _photo(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (300, 400), noise: int = 0) -> Path:
    pixels = np.zeros((size[1], size[0], 3), dtype=np.int16) + np.array(colour, dtype=np.int16)
    pixels[size[1] // 4 : size[1] * 3 // 4, size[0] // 4 : size[0] * 3 // 4] = 240  # a "garment" block
    if noise:
        pixels += np.random.default_rng(1).integers(-noise, noise + 1, pixels.shape, dtype=np.int16)
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path)
    return path


@pytest.fixture
def photos(tmp_path: Path) -> dict[str, Path]:
    return {
        "flatlay": _photo(tmp_path / "flatlay.png", RED),
        "blue": _photo(tmp_path / "blue.jpg", BLUE),
        "green": _photo(tmp_path / "green.jpg", GREEN),
        "red_noisy": _photo(tmp_path / "red_noisy.png", RED, noise=6),
    }


@pytest.fixture
def product(photos: dict[str, Path]) -> NewProduct:
    return NewProduct("N1", photos["flatlay"], "dress", "boho", "summer", "red linen midi dress")


STYLE = StyleAnalysis(
    scene="beach",
    lighting="golden hour",
    pose="walking",
    mood="carefree",
    prompt="Model walking on a beach at golden hour.",
)


def _call(client: OpenRouterClient, model: str = CHAT) -> dict[str, Any]:
    return client.post("/chat/completions", {"model": model, "messages": [{"role": "user", "content": "hi"}]}, model)


def _recent(fake: FakeServer) -> list[dict[str, Any]]:
    return fake.stats()["recent"]


# terminal errors ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "status, text", [("400", "bad request"), ("402", "no credit"), ("403", "moderation"), ("404", "Not found")]
)
def test_terminal_statuses_raise_with_the_providers_message(
    fake: FakeServer, client: OpenRouterClient, status: str, text: str
) -> None:
    fake.configure(script=[status])
    with pytest.raises(TerminalProviderError, match=text) as info:
        _call(client)
    assert info.value.status == int(status) and not isinstance(info.value, RetryableProviderError)
    assert fake.stats()["total"] == 1


def test_402_says_no_credit(fake: FakeServer, client: OpenRouterClient) -> None:
    fake.configure(script=["402"])
    with pytest.raises(TerminalProviderError) as info:
        _call(client)
    assert "no credit" in str(info.value) and "Insufficient credits" in str(info.value)


def test_validation_400_carries_the_api_message(client: OpenRouterClient) -> None:
    with pytest.raises(TerminalProviderError, match="acme/nope is not a valid model ID"):
        _call(client, "acme/nope")


def test_wrong_key_is_401_terminal_and_the_key_is_not_echoed(fake: FakeServer) -> None:
    other = "sk-or-v1-WRONG-key-987654321"
    bad = OpenRouterClient(fake.base_url, SecretStr(other), timeout_s=2)
    with pytest.raises(TerminalProviderError) as info:
        _call(bad)
    assert info.value.status == 401 and other not in str(info.value)


# retryable errors: one HTTP attempt per call; the stage's task retries (tests/test_tasks.py) --------
def test_429_carries_retry_after(fake: FakeServer, client: OpenRouterClient) -> None:
    fake.configure(script=["429"], retry_after_s=3)
    with pytest.raises(RateLimited) as info:
        _call(client)
    assert info.value.retry_after == 3.0 and info.value.status == 429
    assert _call(client)["choices"]  # the next attempt (the task's retry) goes through
    assert fake.stats()["statuses"] == {"200": 1, "429": 1}


def test_rpm_limit_answers_with_the_window_left(fake: FakeServer, client: OpenRouterClient) -> None:
    fake.configure(rpm={CHAT: 1})  # 60 s window
    _call(client)
    with pytest.raises(RateLimited) as info:
        _call(client)
    assert info.value.retry_after is not None and info.value.retry_after >= 59


@pytest.mark.parametrize(
    "fault, match",
    [("500", "provider error \\(500\\)"), ("502", "provider error \\(502\\)"), ("malformed", "malformed")],
)
def test_5xx_and_malformed_bodies_are_retryable_and_one_call_is_one_attempt(
    fake: FakeServer, client: OpenRouterClient, fault: str, match: str
) -> None:
    fake.configure(script=[fault])
    with pytest.raises(RetryableProviderError, match=match) as info:
        _call(client)
    assert not isinstance(info.value, RateLimited)
    assert fake.stats()["total"] == 1  # no hidden retries inside the client
    assert _call(client)["choices"]


def test_a_hang_times_out_at_the_read_timeout(fake: FakeServer) -> None:
    fake.configure(script=["timeout"], hang_s=0.6)
    client = OpenRouterClient(fake.base_url, SecretStr(KEY), timeout_s=0.2)
    started = time.monotonic()
    with pytest.raises(RetryableProviderError, match="timed out"):
        _call(client)
    assert time.monotonic() - started < 0.6


def test_dropped_connection_is_retryable(fake: FakeServer) -> None:
    fake.configure(script=["timeout"], hang_s=0.05)  # the fake drops the connection before the read timeout
    client = OpenRouterClient(fake.base_url, SecretStr(KEY), timeout_s=2)
    with pytest.raises(RetryableProviderError, match="connection error"):
        _call(client)


def test_connection_refused_is_retryable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = OpenRouterClient(f"http://127.0.0.1:{port}/api/v1", SecretStr(KEY), timeout_s=1)
    with pytest.raises(RetryableProviderError, match="connection error") as info:
        _call(client)
    assert KEY not in str(info.value)


def test_error_inside_a_200_body_is_mapped() -> None:
    body = {"error": {"code": 502, "message": "upstream died mid-generation"}}
    client = OpenRouterClient(
        "http://127.0.0.1:9/api/v1", SecretStr(KEY), session=_CannedSession(200, json.dumps(body))
    )
    with pytest.raises(RetryableProviderError, match="upstream died"):
        _call(client)


def test_parse_retry_after_seconds_and_http_dates() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == pytest.approx(10.0)
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490.0) == 0.0  # in the past


# the limiter -------------------------------------------------------------------------------------
class _RecordingLimiter:
    def __init__(self, refuse: bool = False) -> None:
        self.calls: list[tuple[str, float | None]] = []
        self.refuse = refuse

    @contextmanager
    def acquire(self, model: str, timeout: float | None = None) -> Iterator[None]:
        self.calls.append((model, timeout))
        if self.refuse:
            raise RateLimited("our own limiter says wait", retry_after=12.0)
        yield


def test_every_call_goes_through_the_limiter_with_a_bounded_wait(fake: FakeServer) -> None:
    limiter = _RecordingLimiter()
    client = OpenRouterClient(fake.base_url, SecretStr(KEY), limiter=limiter, rate_wait_max_s=5.0)
    _call(client)
    assert limiter.calls == [(CHAT, 5.0)]


def test_a_long_rate_wait_gives_the_worker_back(fake: FakeServer) -> None:
    """The limiter refuses (the wait is longer than rate_wait_max_s): nothing is sent, and the error
    carries the wait so the task retries after it instead of holding a worker thread."""
    client = OpenRouterClient(fake.base_url, SecretStr(KEY), limiter=_RecordingLimiter(refuse=True))
    with pytest.raises(RateLimited) as info:
        _call(client)
    assert info.value.retry_after == 12.0 and fake.stats()["total"] == 0


# the key never leaks -----------------------------------------------------------------------------
class _CannedSession(requests.Session):
    """A session answering every POST with one canned response (no network)."""

    def __init__(self, status: int, text: str, headers: dict[str, str] | None = None) -> None:
        super().__init__()
        self.status, self.text, self.extra = status, text, headers or {}

    def post(self, url: Any, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        response = requests.Response()
        response.status_code = self.status
        response._content = self.text.encode()
        response.headers.update({"Content-Type": "application/json", **self.extra})
        response.url = url
        return response


def test_key_is_masked_in_reprs_logs_errors_and_data(
    fake: FakeServer,
    client: OpenRouterClient,
    prices: PriceTable,
    caplog: pytest.LogCaptureFixture,
    photos: dict[str, Path],
    product: NewProduct,
) -> None:
    caplog.set_level(logging.DEBUG)
    fake.configure(script=["500", "timeout", "malformed", "429"], retry_after_s=0.01, hang_s=0.05)
    errors = []
    for _ in range(4):
        with pytest.raises(RetryableProviderError) as failed:
            _call(client)
        errors.append(failed.value)
    body = _call(client)
    fake.configure(script=["401"])
    with pytest.raises(TerminalProviderError) as info:
        _call(client)
    providers = [
        OpenRouterEmbedder(client, EMBED, 2048, prices),
        OpenRouterAnalyzer(client, CHAT, prices),
        OpenRouterRenderer(client, NANO, prices),
    ]
    analysis = providers[1].analyze([photos["blue"]], product)
    texts = [
        caplog.text,
        str(info.value),
        repr(info.value),
        repr(client),
        json.dumps(body),
        *map(repr, providers),
        repr(analysis),
        str(vars(client)),
        *map(str, errors),
    ]
    for text in texts:
        assert KEY not in text
    assert "***" in repr(client)


def test_a_provider_echoing_the_key_is_scrubbed() -> None:
    echo = json.dumps({"error": {"code": 400, "message": f"bad header: Bearer {KEY}"}})
    client = OpenRouterClient("http://127.0.0.1:9/api/v1", SecretStr(KEY), session=_CannedSession(400, echo))
    with pytest.raises(TerminalProviderError) as info:
        _call(client)
    assert KEY not in str(info.value) and "Bearer ***" in str(info.value)
    ok = json.dumps({"choices": [{"message": {"content": f"your key is {KEY}"}}]})
    body = OpenRouterClient("http://127.0.0.1:9/api/v1", SecretStr(KEY), session=_CannedSession(200, ok)).post(
        "/chat/completions", {}, CHAT
    )
    assert KEY not in json.dumps(body)


# embeddings --------------------------------------------------------------------------------------
def _cos(a: list[float], b: list[float]) -> float:
    return float(np.dot(a, b))


def test_embeddings_are_2048_d_normalised_in_order_and_pixel_derived(
    fake: FakeServer, client: OpenRouterClient, prices: PriceTable, photos: dict[str, Path]
) -> None:
    embedder = OpenRouterEmbedder(client, EMBED, 2048, prices, batch_size=2)
    order = [photos["flatlay"], photos["blue"], photos["flatlay"], photos["red_noisy"], photos["green"]]
    result = embedder.embed_images(order)
    vectors = result.vectors
    assert len(vectors) == 5 and all(len(v) == 2048 for v in vectors)
    assert all(v.dtype == np.float32 and abs(np.linalg.norm(v) - 1) < 1e-6 for v in vectors)  # float32 precision
    assert np.array_equal(vectors[0], vectors[2])  # same image, same vector (and order survived the shuffled answer)
    assert _cos(vectors[0], vectors[3]) > 0.95 > _cos(vectors[0], vectors[1])  # near-duplicates are near
    assert fake.stats()["requests"]["embeddings"][EMBED] == 3  # batches of 2
    assert result.cost_usd == 0.0
    sent = _recent(fake)[0]["images"][0]
    assert max(sent["w"], sent["h"]) <= 512


def test_images_are_downscaled_to_512(
    tmp_path: Path, fake: FakeServer, client: OpenRouterClient, prices: PriceTable
) -> None:
    big = _photo(tmp_path / "big.png", GREEN, size=(1600, 1200))
    OpenRouterEmbedder(client, EMBED, 2048, prices).embed_images([big])
    sent = _recent(fake)[0]["images"][0]
    assert (sent["w"], sent["h"]) == (512, 384)


def test_text_embeddings(fake: FakeServer, client: OpenRouterClient, prices: PriceTable) -> None:
    result = OpenRouterEmbedder(client, EMBED, 2048, prices).embed_texts(["red dress", "blue coat", "red dress"])
    v = result.vectors
    assert len(v) == 3 and np.array_equal(v[0], v[2]) and not np.array_equal(v[0], v[1])


def test_dimension_mismatch_is_a_config_error(
    client: OpenRouterClient, prices: PriceTable, photos: dict[str, Path]
) -> None:
    with pytest.raises(ConfigError, match="2048-d embeddings but 1024"):
        OpenRouterEmbedder(client, EMBED, 1024, prices).embed_images([photos["blue"]])


def test_count_mismatch_is_retryable(prices: PriceTable) -> None:
    one = json.dumps({"data": [{"index": 0, "embedding": [1.0, 0.0]}], "usage": {"cost": 0.0}})
    client = OpenRouterClient("http://127.0.0.1:9/api/v1", SecretStr(KEY), session=_CannedSession(200, one))
    with pytest.raises(RetryableProviderError, match="1 embeddings for 2 inputs"):
        OpenRouterEmbedder(client, EMBED, 2, prices).embed_texts(["a", "b"])


def _b64(values: list[float], dtype: str = "<f4") -> str:
    import base64

    return base64.b64encode(np.asarray(values, dtype=dtype).tobytes()).decode()


class _RecordingSession(_CannedSession):
    def post(self, url: Any, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.sent = json.loads(kwargs["data"]) if "data" in kwargs else kwargs.get("json")
        return super().post(url, *args, **kwargs)


@pytest.mark.parametrize("answer", [[3.0, 4.0], _b64([3.0, 4.0])], ids=["floats", "base64"])
def test_embeddings_are_asked_for_as_base64_and_floats_are_read_too(prices: PriceTable, answer: Any) -> None:
    """base64 float32 is a quarter of the bytes and no float parsing; a server that ignores the field
    answers floats, which are read the same."""
    session = _RecordingSession(200, json.dumps({"data": [{"index": 0, "embedding": answer}], "usage": {"cost": 0.0}}))
    client = OpenRouterClient("http://127.0.0.1:9/api/v1", SecretStr(KEY), session=session)
    (vector,) = OpenRouterEmbedder(client, EMBED, 2, prices).embed_texts(["a"]).vectors
    assert session.sent["encoding_format"] == "base64"
    assert np.allclose(vector, [0.6, 0.8], atol=1e-7)


@pytest.mark.parametrize(
    "answer, reason",
    [
        ("AAAAAAAAAA==", "7 bytes of base64 embedding are not float32"),
        ("not base64 at all!", "malformed embeddings"),
        ([1.0, float("nan")], "non-finite"),
        (_b64([1.0, float("inf")]), "non-finite"),
    ],
)
def test_a_malformed_embedding_is_retryable(prices: PriceTable, answer: Any, reason: str) -> None:
    body = json.dumps({"data": [{"index": 0, "embedding": answer}], "usage": {"cost": 0.0}})
    client = OpenRouterClient("http://127.0.0.1:9/api/v1", SecretStr(KEY), session=_CannedSession(200, body))
    with pytest.raises(RetryableProviderError, match=reason):
        OpenRouterEmbedder(client, EMBED, 2, prices).embed_texts(["a"])


# analysis ----------------------------------------------------------------------------------------
def test_analysis_request_shape_and_parsed_style(
    fake: FakeServer, client: OpenRouterClient, prices: PriceTable, photos: dict[str, Path], product: NewProduct
) -> None:
    big = _photo(photos["blue"].parent / "big_blue.png", BLUE, size=(1000, 1500))
    analysis = OpenRouterAnalyzer(client, CHAT, prices).analyze([big, photos["green"]], product)
    style = analysis.style
    assert style.mood == "calm, fresh" and style.palette and style.palette[0].startswith("#")
    assert len(style.prompt.split()) < 100 and analysis.cost_usd > 0 and not analysis.warnings
    sent = _recent(fake)[0]
    assert sent["response_format"] == {"type": "json_object"}
    assert [max(i["w"], i["h"]) for i in sent["images"]] == [768, 400]
    for word in ("dress", "boho", "summer", "red linen midi dress", "JSON"):
        assert word in sent["text"]


def test_analysis_asks_again_then_parses(
    fake: FakeServer, client: OpenRouterClient, prices: PriceTable, photos: dict[str, Path], product: NewProduct
) -> None:
    fake.configure(script=["bad_analysis", "ok"])
    analysis = OpenRouterAnalyzer(client, CHAT, prices).analyze([photos["blue"]], product)
    assert analysis.style.scene != "unknown" and not analysis.warnings
    assert fake.stats()["total"] == 2
    assert "not a valid JSON object" in _recent(fake)[1]["text"]


def test_analysis_falls_back_to_the_raw_text(
    fake: FakeServer, client: OpenRouterClient, prices: PriceTable, photos: dict[str, Path], product: NewProduct
) -> None:
    fake.configure(p_bad_analysis=1.0)
    analysis = OpenRouterAnalyzer(client, CHAT, prices, max_parse_retries=2).analyze([photos["blue"]], product)
    style = analysis.style
    assert (style.scene, style.lighting, style.pose, style.mood) == ("unknown",) * 4
    assert style.prompt.startswith("Sure! These photos") and style.warnings and analysis.warnings
    assert fake.stats()["total"] == 3 and analysis.cost_usd > 0


def test_extract_json_object_tolerates_fences_and_prose() -> None:
    assert extract_json_object('```json\n{"scene": "beach"}\n```') == {"scene": "beach"}
    assert extract_json_object('Here you go: {"a": {"b": 1}} hope it helps {"c": 2}') == {"a": {"b": 1}}
    assert extract_json_object('{broken {"ok": true}') == {"ok": True}
    assert extract_json_object("no json here") is None
    assert extract_json_object("[1, 2]") is None


# rendering ---------------------------------------------------------------------------------------
def _size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        return image.size


def test_render_request_shape(
    fake: FakeServer, client: OpenRouterClient, prices: PriceTable, photos: dict[str, Path], product: NewProduct
) -> None:
    references = [photos["blue"], photos["green"]] * 10  # 20: more than the model takes
    preset = Preset.build("amazon_main", "1:1", "2K", background="white")
    rendered = OpenRouterRenderer(client, NANO, prices).render(photos["flatlay"], references, STYLE, product, preset)
    sent = _recent(fake)[0]
    assert len(sent["images"]) == 14
    r, g, b = sent["images"][0]["mean"]
    assert r > 150 and b < 120  # the red flat-lay goes first
    assert sent["images"][1]["mean"][2] > 150  # then the (blue) references
    assert sent["modalities"] == ["text", "image"]
    assert sent["image_config"] == {"aspect_ratio": "1:1", "image_size": "2K"}
    for phrase in ("Model walking on a beach", "red linen midi dress", "no exposed labels", "#FFFFFF"):
        assert phrase in sent["text"]
    assert rendered.notes == ["used 13 of 20 references (model limit)"]
    assert rendered.cost_usd == pytest.approx(0.101) and rendered.model == NANO


@pytest.mark.parametrize(
    "preset",
    [
        Preset.build("thumbnail", "1:1", "512px"),
        Preset.build("shopify", "3:4", "2K"),
        Preset.build("banner", "4:1", "2K"),
        Preset.build("strip", "1:8", "1K"),
        Preset.build("pinned", "4:5", "1K", width=1000, height=1250),
    ],
    ids=lambda p: p.name,
)
def test_output_is_exactly_the_preset_size(
    fake: FakeServer,
    client: OpenRouterClient,
    prices: PriceTable,
    photos: dict[str, Path],
    product: NewProduct,
    preset: Preset,
) -> None:
    rendered = OpenRouterRenderer(client, NANO, prices).render(
        photos["flatlay"], [photos["blue"]], STYLE, product, preset
    )
    assert _size(rendered.data) == (preset.width, preset.height)
    assert "#FFFFFF" not in _recent(fake)[0]["text"]


def test_images_in_content_parts_are_found(
    fake: FakeServer, client: OpenRouterClient, prices: PriceTable, photos: dict[str, Path], product: NewProduct
) -> None:
    fake.configure(images_in_content=True)
    preset = Preset.build("thumbnail", "1:1", "512px")
    rendered = OpenRouterRenderer(client, NANO, prices).render(photos["flatlay"], [], STYLE, product, preset)
    assert _size(rendered.data) == (512, 512)


def test_a_200_without_an_image_is_retryable(
    fake: FakeServer, client: OpenRouterClient, prices: PriceTable, photos: dict[str, Path], product: NewProduct
) -> None:
    fake.configure(script=["no_image"])
    with pytest.raises(RetryableProviderError, match="model returned no image"):
        OpenRouterRenderer(client, NANO, prices).render(
            photos["flatlay"], [], STYLE, product, Preset.build("t", "1:1", "512px")
        )


def test_missing_price_fails_before_paying(
    fake: FakeServer, client: OpenRouterClient, photos: dict[str, Path], product: NewProduct
) -> None:
    renderer = OpenRouterRenderer(client, NANO, PriceTable(models={}))
    with pytest.raises(ConfigError):
        renderer.render(photos["flatlay"], [], STYLE, product, Preset.build("t", "1:1", "512px"))
    assert fake.stats()["total"] == 0


# factory -----------------------------------------------------------------------------------------
def test_factory_builds_openrouter_providers_with_one_client(fake: FakeServer) -> None:
    from hitline.providers.factory import build_providers

    settings = Settings(
        _env_file=None,
        provider="openrouter",
        openrouter_api_key=SecretStr(KEY),
        openrouter_base_url=fake.base_url,
        embed_batch_size=4,
    )
    providers = build_providers(settings, limiter=_RecordingLimiter())
    assert providers.embedder.client is providers.analyzer.client is providers.renderer.client  # type: ignore[attr-defined]
    assert providers.embedder.dim == 2048 and providers.embedder.batch_size == 4  # type: ignore[attr-defined]
    assert KEY not in repr(providers)


def test_factory_needs_a_key_for_openrouter() -> None:
    from hitline.providers.factory import build_providers

    with pytest.raises(ConfigError, match="HITLINE_OPENROUTER_API_KEY"):
        build_providers(Settings(_env_file=None, provider="openrouter", openrouter_api_key=None))


def test_factory_needs_no_key_for_a_loopback_stand_in(fake: Any) -> None:
    from hitline.providers.factory import build_providers

    for url in (fake.base_url, "http://localhost:1/api/v1", "http://[::1]:1/api/v1"):
        build_providers(
            Settings(_env_file=None, provider="openrouter", openrouter_api_key=None, openrouter_base_url=url)
        )
    with pytest.raises(ConfigError):
        build_providers(
            Settings(
                _env_file=None,
                provider="openrouter",
                openrouter_api_key=None,
                openrouter_base_url="http://10.0.0.1/api/v1",
            )
        )


def test_factory_local_mode() -> None:
    pytest.importorskip("hitline.providers.local.render")
    pytest.importorskip("hitline.domain.descriptors")
    from hitline.providers.factory import build_providers

    providers = build_providers(Settings(_env_file=None, provider="local"))
    assert type(providers.renderer).__name__ == "LocalRenderer"


def test_the_environment_is_read_once_per_client(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Proxy and CA settings come from the environment when the client is built (requests would scan it,
    and ~/.netrc, on every call); a ~/.netrc entry never replaces the Bearer key."""
    from hitline.providers.openrouter.client import OpenRouterClient

    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "ca.pem"))
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    client = OpenRouterClient("https://openrouter.ai/api/v1", SecretStr(KEY))
    assert client.session.proxies.get("https") == "http://proxy.example:3128"
    assert client.session.verify == str(tmp_path / "ca.pem")
    assert client.session.trust_env is False
