"""The render plan (hitline.domain.render_plan): one paid render per aspect ratio, the rest derived."""

from __future__ import annotations

import pytest
from PIL import Image

from hitline.domain.imaging import load_presets
from hitline.domain.pricing import PriceTable
from hitline.domain.render_plan import derive, plan_renders

MODEL = "google/gemini-3.1-flash-image-preview"


def _cost():  # noqa: ANN202
    prices = PriceTable.load()
    return lambda size: prices.image_cost(MODEL, size)


def test_default_presets_derive_thumbnail_from_amazon_main() -> None:
    presets = load_presets(["amazon_main", "shopify", "thumbnail", "banner"])
    plan = plan_renders(presets, _cost())
    assert [p.name for p in plan.renders] == ["amazon_main", "shopify", "banner"]
    assert plan.derived == {"thumbnail": "amazon_main"}
    assert plan.naive_cost_usd == pytest.approx(0.348)  # the figure: 3 x 2K + 1 x 512px
    assert plan.cost_usd == pytest.approx(0.303) and plan.saving_usd == pytest.approx(0.045)
    assert plan.summary()["saving_usd"] == pytest.approx(0.045)


def test_all_shipped_presets_one_render_per_ratio() -> None:
    presets = load_presets()
    plan = plan_renders(presets, _cost())
    ratios = {p.aspect_ratio for p in presets}
    assert len(plan.renders) == len(ratios)
    by_name = {p.name: p for p in presets}
    for target, source in plan.derived.items():
        t, s = by_name[target], by_name[source]
        assert t.aspect_ratio == s.aspect_ratio and s.width * s.height >= t.width * t.height
    assert by_name["story"] in plan.renders and plan.derived["live_stream"] == "story"  # 9:16: 2K over 1K
    assert plan.saving_usd == pytest.approx(plan.naive_cost_usd - plan.cost_usd) and plan.saving_usd > 0


def test_distinct_ratios_save_nothing() -> None:
    plan = plan_renders(load_presets(["shopify", "banner"]), _cost())
    assert plan.derived == {} and plan.saving_usd == 0


def test_derive_gives_exact_pixels() -> None:
    thumb = load_presets(["thumbnail"])[0]
    out = derive(Image.new("RGB", (2048, 2048), (10, 200, 30)), thumb)
    assert out.size == (thumb.width, thumb.height) and out.getpixel((5, 5)) == (10, 200, 30)


def test_white_preset_is_never_derived_from_a_scene_render() -> None:
    from hitline.domain.models import Preset

    small_white = Preset.build("white_thumb", "1:1", "512px", "white")
    big_scene = Preset.build("square", "1:1", "2K", "scene")
    plan = plan_renders([small_white, big_scene], _cost())
    assert plan.derived == {} and [p.name for p in plan.renders] == ["white_thumb", "square"]
    # the other way round is fine: a scene thumbnail from a white render
    plan = plan_renders([Preset.build("white_main", "1:1", "2K", "white"), Preset.build("t", "1:1", "512px")], _cost())
    assert plan.derived == {"t": "white_main"}
