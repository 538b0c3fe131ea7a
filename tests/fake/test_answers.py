"""hitline/fake/answers.py: what the fake answers with, and what that costs the process it runs in."""

from __future__ import annotations

import base64
import io
import time

import numpy as np
import pytest
from PIL import Image

from hitline.fake import answers
from hitline.fake.answers import BadRequest, Projector, decode_image


def _jpeg_uri(colour: tuple[int, int, int], size: tuple[int, int] = (64, 96), cut: int = 0) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "JPEG")
    data = buffer.getvalue()
    return "data:image/jpeg;base64," + base64.b64encode(data[: len(data) - cut]).decode()


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The data URIs actually decoded (not answered from the instant mode's images), in order."""
    seen: list[str] = []
    real = answers._decode

    def spy(url: str, reduced: bool) -> Image.Image:
        seen.append(url)
        return real(url, reduced)

    monkeypatch.setattr(answers, "_decode", spy)
    monkeypatch.setattr(answers, "_reduced_images", answers._ReducedImages(2))
    return seen


def test_instant_mode_decodes_the_same_image_once_and_a_bad_one_every_time(decodes: list[str]) -> None:
    red, blue = _jpeg_uri((200, 0, 0)), _jpeg_uri((0, 0, 200))
    first = decode_image(red, reduced=True)
    assert decode_image(red, reduced=True) is first and decodes == [red]
    assert first.size == (8, 12) and first.getpixel((4, 6))[0] > 150  # 1/8 scale, the image's own pixels
    truncated = _jpeg_uri((0, 200, 0), (640, 640), cut=400)
    for _ in range(2):
        with pytest.raises(BadRequest, match="invalid image data"):
            decode_image(truncated, reduced=True)
    assert decodes == [red, truncated, truncated]
    decode_image(blue, reduced=True)
    decode_image(_jpeg_uri((0, 200, 0)), reduced=True)  # a third image: the least recently used one goes
    decode_image(red, reduced=True)
    assert decodes[-1] == red and len(decodes) == 6


def test_full_mode_decodes_every_image_it_is_sent(decodes: list[str]) -> None:
    red = _jpeg_uri((200, 0, 0))
    assert decode_image(red).size == decode_image(red).size == (64, 96)
    assert decodes == [red, red]


def test_a_projection_keeps_to_the_calling_thread() -> None:
    """numpy's OpenBLAS would hand a 768 x 2048 product to a second thread that spins ~60 ms after it:
    the fake's CPU on the cores the client under test runs on. Here: CPU of other threads, 5 products."""
    projector = Projector(seed=0)
    image = Image.new("RGB", (32, 32), (120, 30, 200))
    projector.image_vector(image, "m", 2048)  # the matrix is drawn once, not measured
    time.sleep(0.2)  # a spin left by an earlier test's product ends
    process, thread = time.process_time(), time.thread_time()
    for _ in range(5):
        projector.image_vector(image, "m", 2048)
        projector.text_vector("a red dress", "m", 2048)
        time.sleep(0.1)  # the spinning thread would burn through these pauses
    elsewhere = (time.process_time() - process) - (time.thread_time() - thread)
    assert elsewhere < 0.1


def test_one_blas_thread_gives_the_same_vectors() -> None:
    projector = Projector(seed=3)
    rng = np.random.default_rng(1)
    for _ in range(5):
        image = Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8))
        pixels = np.asarray(image.resize((16, 16), Image.Resampling.BILINEAR), dtype=np.float32)
        features = pixels.reshape(-1) / 255.0 - 0.5
        threaded = (features @ projector._matrix("m", 2048, "image")).tolist()
        assert projector.image_vector(image, "m", 2048) == threaded
