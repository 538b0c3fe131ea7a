"""hitline/providers/local_analyze.py: measured look -> rule-worded StyleAnalysis."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from hitline.domain.models import NewProduct
from hitline.providers.local.analyze import MAX_PROMPT_WORDS, LocalAnalyzer, colour_name

HINT = "linen shirt dress with shell buttons"


def product(tmp_path: Path, hint: str = HINT, image: Path | None = None) -> NewProduct:
    return NewProduct("N1", image or tmp_path / "none.png", "midi_dress", "casual", "summer", hint)


def photo(path: Path, bg, garment, size=(480, 640), noise: float = 0.0, seed: int = 0) -> Path:
    """A model-shot-like frame: plain backdrop, a garment shape spanning most of the height."""
    w, h = size
    im = Image.new("RGB", size, bg)
    d = ImageDraw.Draw(im)
    d.polygon([(0.4 * w, 0.1 * h), (0.6 * w, 0.1 * h), (0.75 * w, 0.9 * h), (0.25 * w, 0.9 * h)], fill=garment)
    if noise:
        arr = np.asarray(im, dtype=np.float32)
        arr += np.random.default_rng(seed).normal(0, noise, arr.shape)
        im = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    im.save(path)
    return path


def analyze(refs, tmp_path: Path, **kw):
    return LocalAnalyzer().analyze(refs, product(tmp_path, **kw))


def test_answers_like_a_style_analyzer_free_and_deterministic(tmp_path: Path):
    bright = [photo(tmp_path / f"w{i}.png", (246, 246, 244), (200, 190, 180)) for i in range(2)]
    dark = [photo(tmp_path / f"d{i}.png", (25, 25, 30), (150, 40, 40)) for i in range(2)]
    first, again, other = analyze(bright, tmp_path), analyze(bright, tmp_path), analyze(dark, tmp_path)
    assert LocalAnalyzer.model == "local/stats-analyzer-v1" and first.cost_usd == 0.0
    assert all(getattr(first.style, k).strip() for k in ("scene", "lighting", "pose", "mood", "prompt"))
    assert first.style == again.style  # same photos, same analysis
    assert other.style.lighting != first.style.lighting and other.style.prompt != first.style.prompt


def test_bright_plain_image_is_high_key_studio(tmp_path: Path):
    refs = [photo(tmp_path / f"b{i}.png", (246, 246, 244), (200, 190, 180)) for i in range(2)]
    out = analyze(refs, tmp_path)
    s = out.style
    assert "high-key" in s.lighting and "high-key" in s.scene and "plain" in s.scene
    assert "studio" in s.scene and "outdoor" not in s.scene
    assert s.measurements["n_references"] == 2.0 and s.measurements["key_l"] > 80
    assert out.cost_usd == 0.0 and not out.warnings


def test_dark_image_is_low_key(tmp_path: Path):
    out = analyze([photo(tmp_path / "d.png", (18, 18, 22), (70, 20, 30))], tmp_path)
    assert "low-key" in out.style.lighting and "dark" in out.style.scene
    assert "dramatic" in out.style.mood


def cluttered(path: Path, size=(480, 640), seed: int = 0) -> Path:
    """A street/garden-like frame: many shapes of many colours everywhere, garment in the middle."""
    rng = np.random.default_rng(seed)
    w, h = size
    im = Image.new("RGB", size, (120, 140, 100))
    d = ImageDraw.Draw(im)
    for _ in range(400):
        x, y, r = rng.integers(0, w), rng.integers(0, h), rng.integers(4, 30)
        d.ellipse([x - r, y - r, x + r, y + r], fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
    d.polygon([(0.4 * w, 0.1 * h), (0.6 * w, 0.1 * h), (0.75 * w, 0.9 * h), (0.25 * w, 0.9 * h)], fill=(200, 60, 60))
    im.save(path)
    return path


def test_busy_background_is_environmental(tmp_path: Path):
    out = analyze([cluttered(tmp_path / "n.png")], tmp_path)
    assert "outdoor/environmental" in out.style.scene
    assert out.style.measurements["border_std"] > 14


def test_warm_vs_cool(tmp_path: Path):
    warm = analyze([photo(tmp_path / "w.png", (250, 225, 180), (180, 120, 70))], tmp_path).style
    cool = analyze([photo(tmp_path / "c.png", (200, 215, 245), (60, 80, 140))], tmp_path).style
    assert "warm" in warm.lighting and "warm" in warm.mood
    assert "cool" in cool.lighting
    assert warm.measurements["background_b"] > 6 > -3 > cool.measurements["background_b"]
    assert warm.measurements["red_blue_balance"] > 0 > cool.measurements["red_blue_balance"]


def test_palette_is_measured_and_ordered(tmp_path: Path):
    s = analyze([photo(tmp_path / "r.png", (250, 250, 250), (200, 20, 30))], tmp_path).style
    assert 1 <= len(s.palette) <= 5 and all(re.fullmatch(r"#[0-9a-f]{6}", c) for c in s.palette)
    first = tuple(int(s.palette[0][i : i + 2], 16) for i in (1, 3, 5))
    assert min(first) > 230  # the white backdrop covers most of the frame: first
    assert any(int(c[1:3], 16) > 150 and int(c[3:5], 16) < 80 for c in s.palette)  # the red garment is there
    shares = [s.measurements[f"palette_share_{i}"] for i in range(len(s.palette))]
    assert shares == sorted(shares, reverse=True)


def test_prompt_short_uses_product_and_measured_look(tmp_path: Path):
    s = analyze([photo(tmp_path / "b.png", (246, 246, 244), (200, 190, 180))], tmp_path).style
    words = s.prompt.split()
    assert len(words) < 100
    assert HINT in s.prompt and "midi dress" in s.prompt and "summer" in s.prompt and "casual" in s.prompt
    assert "high-key" in s.prompt


def test_prompt_stays_short_with_a_long_hint(tmp_path: Path):
    ref = photo(tmp_path / "b.png", (246, 246, 244), (200, 190, 180))
    long_hint = " ".join(["flowing"] * 70)
    s = analyze([ref], tmp_path, hint=long_hint).style
    assert len(s.prompt.split()) <= MAX_PROMPT_WORDS and long_hint in s.prompt
    huge = analyze([ref], tmp_path, hint="word " * 500).style
    assert len(huge.prompt.split()) <= MAX_PROMPT_WORDS


def test_deterministic(tmp_path: Path):
    refs = [
        photo(tmp_path / "a.png", (246, 246, 244), (200, 30, 40)),
        photo(tmp_path / "b.png", (30, 30, 30), (30, 60, 190), noise=10),
    ]
    a, b = analyze(refs, tmp_path), analyze(refs, tmp_path)
    assert a.style == b.style and a.raw == b.raw


def test_no_references_gives_neutral_analysis_with_warning(tmp_path: Path):
    flat = photo(tmp_path / "flat.png", (240, 240, 240), (30, 60, 190))
    out = LocalAnalyzer().analyze([], product(tmp_path, image=flat))
    assert out.warnings and "no usable reference" in out.warnings[0]
    assert out.style.measurements["n_references"] == 0.0
    assert out.style.palette and HINT in out.style.prompt and len(out.style.prompt.split()) < 100
    # the flat-lay unreadable too: still an analysis, one more warning, no palette
    out2 = LocalAnalyzer().analyze([tmp_path / "missing.jpg"], product(tmp_path))
    assert out2.style.palette == [] and len(out2.warnings) == 3


def test_bad_reference_is_skipped_not_fatal(tmp_path: Path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"nope")
    good = photo(tmp_path / "g.png", (246, 246, 244), (200, 190, 180))
    out = analyze([bad, good], tmp_path)
    assert out.style.measurements["n_references"] == 1.0
    assert any("bad.jpg" in w for w in out.warnings)


@pytest.mark.parametrize(
    "lab,name",
    [
        ((97, 0, 0), "white"),
        ((5, 0, 0), "black"),
        ((50, 70, 50), "red"),
        ((25, 10, -40), "navy"),
        ((85, 2, 18), "cream"),
        ((60, -50, 40), "green"),
    ],
)
def test_colour_names(lab, name):
    assert colour_name(*lab) == name
