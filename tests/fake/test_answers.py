"""hitline/fake/answers.py: what the fake answers with, and what that costs the process it runs in."""

from __future__ import annotations

import time

import numpy as np
from PIL import Image

from hitline.fake.answers import Projector


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
