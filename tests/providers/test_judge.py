"""The output judges: OpenRouterJudge against the shipped fake over real HTTP (verdicts, scripted
failures, re-asks on prose, the cache), and the free LocalJudge (the quality gate)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from pydantic import SecretStr

from hitline.domain.compose import compose
from hitline.domain.models import Preset, StyleAnalysis
from hitline.domain.pricing import PriceTable
from hitline.fake.server import FakeConfig, running_fake
from hitline.line import judge_output
from hitline.providers.base import OutputJudge
from hitline.providers.local.judge import LocalJudge
from hitline.providers.openrouter.client import OpenRouterClient
from hitline.providers.openrouter.judge import OpenRouterJudge

MODEL = "qwen/qwen3.5-397b-a17b"
AMAZON = Preset.build(
    "amazon_main", "1:1", "1K", "white", rules={"pure_white": True, "min_fill": 0.85, "max_colour_delta": 10.0}
)
STYLE = StyleAnalysis(scene="studio", lighting="soft", pose="flat", mood="calm", prompt="p")


class DictCache:
    def __init__(self) -> None:
        self.data: dict = {}

    def get(self, key: str):  # noqa: ANN201
        return self.data.get(key)

    def put(self, key: str, value) -> None:  # noqa: ANN001
        self.data[key] = value


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("judge")
    flat = Image.new("RGB", (480, 640), (246, 246, 244))
    poly = [(120, 100), (360, 100), (420, 250), (360, 260), (350, 560), (130, 560), (120, 260), (60, 250)]
    ImageDraw.Draw(flat).polygon(poly, fill=(40, 90, 170))
    mask = Image.new("L", flat.size, 0)
    ImageDraw.Draw(mask).polygon(poly, fill=255)
    product = flat.convert("RGBA")
    product.putalpha(mask)
    good = compose(product.crop(mask.getbbox()), None, STYLE, AMAZON)
    r, g, b = good.split()
    paths = {"flat": d / "flat.png", "good": d / "good.png", "recoloured": d / "recoloured.png"}
    flat.save(paths["flat"])
    good.save(paths["good"])
    Image.merge("RGB", (b, g, r)).save(paths["recoloured"])
    return paths


@pytest.fixture
def fake():  # noqa: ANN201
    with running_fake(FakeConfig()) as srv:
        yield srv


def _judge(fake) -> OpenRouterJudge:  # noqa: ANN001
    client = OpenRouterClient(fake.base_url, SecretStr("sk-test"), timeout_s=10)
    return OpenRouterJudge(client, MODEL, PriceTable.load())


def _judge_requests(fake) -> int:  # noqa: ANN001
    return fake.stats()["requests"].get("chat/completions", {}).get(MODEL, 0)


def test_openrouter_judge_passes_a_good_output_and_costs_tokens(fake, images) -> None:  # noqa: ANN001
    judge = _judge(fake)
    assert isinstance(judge, OutputJudge)
    verdict = judge.judge(images["flat"], images["good"], AMAZON)
    assert verdict.passed and verdict.cost_usd > 0 and verdict.model == MODEL
    assert {c["name"] for c in verdict.checks} == {
        "judge_same_garment",
        "judge_colour",
        "judge_pattern",
        "judge_artefacts",
        "judge_text",
        "judge_background",
    }
    sent = fake.stats()["recent"][-1]
    assert len(sent["images"]) == 2 and sent["response_format"] == {"type": "json_object"}


def test_fake_told_to_fail_outputs_and_the_judge_reports_why(fake, images) -> None:  # noqa: ANN001
    fake.configure(judge_fail=["colour_match", "text_or_logo"], judge_fail_count=1)
    judge = _judge(fake)
    bad = judge.judge(images["flat"], images["good"], AMAZON)
    assert not bad.passed
    assert {c["name"] for c in bad.checks if not c["passed"]} == {"judge_colour", "judge_text"}
    assert any("scripted" in r for r in bad.reasons)
    assert judge.judge(images["flat"], images["good"], AMAZON).passed  # only the next 1 was told to fail
    with pytest.raises(ValueError, match="unknown judge failure"):
        fake.configure(judge_fail=["vibes"])


def test_prose_is_asked_again_and_no_verdict_is_not_a_pass(fake, images) -> None:  # noqa: ANN001
    fake.configure(script=["bad_analysis"])
    judge = _judge(fake)
    assert judge.judge(images["flat"], images["good"], AMAZON).passed
    assert _judge_requests(fake) == 2  # the prose answer, then the re-ask
    fake.configure(script=["bad_analysis"] * 3)
    none = judge.judge(images["flat"], images["good"], AMAZON)
    assert not none.passed and none.checks[0]["name"] == "judge_answer"


def test_verdicts_are_cached_like_analyses(fake, images) -> None:  # noqa: ANN001
    judge, cache = _judge(fake), DictCache()
    first, hit1 = judge_output(judge, images["flat"], images["good"], AMAZON, cache)
    second, hit2 = judge_output(judge, images["flat"], images["good"], AMAZON, cache)
    assert (hit1, hit2) == (False, True) and _judge_requests(fake) == 1
    assert second.cost_usd == 0 and second.checks == first.checks
    judge_output(judge, images["flat"], images["recoloured"], AMAZON, cache)  # other output, other key
    assert _judge_requests(fake) == 2


def test_local_judge_runs_the_gate(images) -> None:  # noqa: ANN001
    judge = LocalJudge(text_finder=None)
    assert isinstance(judge, OutputJudge)
    good = judge.judge(images["flat"], images["good"], AMAZON)
    assert good.passed and good.cost_usd == 0, good.reasons
    bad = judge.judge(images["flat"], images["recoloured"], AMAZON)
    assert [c["name"] for c in bad.checks if not c["passed"]] == ["colour"]
    assert np.isfinite([c["measured"] for c in bad.checks if c["name"] == "colour"][0])


def test_local_judge_reads_the_compositors_placement_and_text_once(images, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """A compositor's output carries where the product went (PNG text chunk; a resize carries it resized):
    the judge does not segment it again, and reads the product's text once per flat-lay, not per output."""
    from hitline import line
    from hitline.domain import quality
    from hitline.domain.models import NewProduct
    from hitline.providers.local.render import LocalRenderer

    scene = Preset.build("shopify", "3:4", "1K", "scene", rules={"min_fill": 0.5, "no_text": True})
    wide = Preset.build("banner", "4:1", "1K", "scene", rules={"min_height_fill": 0.6, "no_text": True})
    small = Preset.build("thumbnail", "3:4", "512px", "scene", rules={"min_fill": 0.5, "no_text": True})
    product = NewProduct("s1", images["flat"], "tee", "casual", "summer", "")
    paths = []
    for p in (scene, wide):
        img = LocalRenderer().render(images["flat"], [], STYLE, product, p)
        paths.append(tmp_path / f"{p.name}.png")
        paths[-1].write_bytes(img.data)
    paths.append(line.derive_preset(paths[0], small, tmp_path / "thumbnail.png"))
    reads: list[tuple[int, int]] = []

    def finder(im: Image.Image) -> list:
        reads.append(im.size)
        return []

    def no_segmenting(*_a, **_k):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("the output was segmented again")

    monkeypatch.setattr(quality, "output_mask", no_segmenting)
    judge = LocalJudge(text_finder=finder)
    for p, path in zip((scene, wide, small), paths):
        j = judge.judge(images["flat"], path, p)
        assert j.passed, j.reasons
    assert len(reads) == 1 and max(reads[0]) < 1024, reads  # the product's box, once
