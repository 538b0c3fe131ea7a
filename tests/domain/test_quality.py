"""Input checks and the output gate (hitline.domain.quality): a good output passes every check; an
output made to fail one check is caught by that check. CIEDE2000 against the published pairs."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from hitline.domain.colour import ciede2000
from hitline.domain.compose import compose, compose_placed
from hitline.domain.models import Preset, StyleAnalysis
from hitline.domain.quality import (
    MAX_UPSCALE,
    check_background,
    check_resolution,
    check_touching,
    failed,
    gate,
    input_checks,
    resolve_preset,
)

STYLE = StyleAnalysis(scene="studio", lighting="soft", pose="flat", mood="calm", prompt="p", palette=["#d8cfc4"])
AMAZON = Preset.build(
    "amazon_main",
    "1:1",
    "1K",
    "white",
    low_res="fail",
    rules={"pure_white": True, "min_fill": 0.85, "no_text": True, "max_colour_delta": 10.0},
)
BANNER = Preset.build(
    "banner", "4:1", "1K", "scene", rules={"min_height_fill": 0.6, "no_text": True, "max_colour_delta": 12.0}
)
SHOPIFY_2K = Preset.build("shopify", "3:4", "2K", "scene", rules={"min_fill": 0.5})


def _flatlay(
    size: tuple[int, int] = (480, 640),
    paper: tuple[int, int, int] = (246, 246, 244),
    colour: tuple[int, int, int] = (190, 40, 50),
    margin: int = 80,
) -> tuple[Image.Image, np.ndarray]:
    """A T-shirt polygon on paper with its exact mask."""
    w, h = size
    pts = [
        (0.36, 0),
        (0.5, 0.08),
        (0.64, 0),
        (0.82, 0.05),
        (1.0, 0.25),
        (0.88, 0.38),
        (0.78, 0.3),
        (0.78, 1.0),
        (0.22, 1.0),
        (0.22, 0.3),
        (0.12, 0.38),
        (0.0, 0.25),
        (0.18, 0.05),
    ]
    poly = [(margin + x * (w - 2 * margin), margin + y * (h - 2 * margin)) for x, y in pts]
    img = Image.new("RGB", size, paper)
    ImageDraw.Draw(img).polygon(poly, fill=colour)
    m = Image.new("L", size, 0)
    ImageDraw.Draw(m).polygon(poly, fill=255)
    return img, np.asarray(m) > 127


def _product(flatlay: Image.Image, mask: np.ndarray) -> Image.Image:
    """The exact cut-out (the gate is under test here, not the cut-out)."""
    rgba = flatlay.convert("RGBA")
    rgba.putalpha(Image.fromarray((mask * 255).astype(np.uint8)))
    return rgba.crop(Image.fromarray((mask * 255).astype(np.uint8)).getbbox())


@pytest.fixture(scope="module")
def case() -> dict:
    flat, mask = _flatlay()
    product = _product(flat, mask)
    return {
        "flat": flat,
        "mask": mask,
        "amazon": compose(product, None, STYLE, AMAZON),
        "banner": compose(product, None, STYLE, BANNER),
    }


def _names(checks) -> set[str]:  # noqa: ANN001
    return {c.name for c in failed(checks)}


def test_ciede2000_matches_sharma_pairs() -> None:
    pairs = [
        ((50, 2.6772, -79.7751), (50, 0, -82.7485), 2.0425),
        ((50, 2.5, 0), (50, 0, -2.5), 4.3065),
        ((50, 2.5, 0), (73, 25, -18), 27.1492),
        ((60.2574, -34.0099, 36.2677), (60.4626, -34.1751, 39.4387), 1.2644),
        ((90.8027, -2.0831, 1.441), (91.1528, -1.6435, 0.0447), 1.4441),
        ((2.0776, 0.0795, -1.135), (0.9033, -0.0636, -0.5514), 0.9082),
    ]
    got = ciede2000(np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs]))
    assert np.allclose(got, [p[2] for p in pairs], atol=1e-4)


def test_good_amazon_output_passes_every_check(case: dict) -> None:
    checks = gate(case["amazon"], AMAZON, case["flat"], case["mask"])
    assert {c.name for c in checks} == {"size", "silhouette", "pure_white", "fill", "no_text", "colour", "compression"}
    assert not failed(checks), [c.message for c in failed(checks)]


def test_good_banner_passes_and_the_product_reads_at_thumbnail_size(case: dict) -> None:
    checks = gate(case["banner"], BANNER, case["flat"], case["mask"], text_finder=None)
    assert not failed(checks), [c.message for c in failed(checks)]
    assert next(c for c in checks if c.name == "height_fill").measured >= 0.8


def test_wrong_size_is_caught(case: dict) -> None:
    bad = case["amazon"].resize((1000, 1000))
    assert "size" in _names(gate(bad, AMAZON, case["flat"], case["mask"], text_finder=None))


def test_off_white_background_is_caught(case: dict) -> None:
    arr = np.asarray(case["amazon"]).copy()
    arr[(arr == 255).all(axis=2)] = (251, 251, 251)
    checks = gate(Image.fromarray(arr), AMAZON, case["flat"], case["mask"], text_finder=None)
    assert _names(checks) == {"pure_white"}


def test_small_product_is_caught(case: dict) -> None:
    small = case["amazon"].resize((700, 700))
    canvas = Image.new("RGB", case["amazon"].size, (255, 255, 255))
    canvas.paste(small, (162, 162))
    checks = gate(canvas, AMAZON, case["flat"], case["mask"], text_finder=None)
    assert _names(checks) == {"fill"}
    assert next(c for c in checks if c.name == "fill").measured < 0.85


def test_text_is_caught(case: dict) -> None:
    bad = case["amazon"].copy()
    font = ImageFont.truetype("DejaVuSans.ttf", 48) if _has_font() else ImageFont.load_default()
    ImageDraw.Draw(bad).text((40, 40), "SALE 50% OFF", fill=(20, 20, 20), font=font)
    checks = gate(bad, AMAZON, case["flat"], case["mask"])
    assert "no_text" in _names(checks)
    assert any("SALE" in t for t in next(c for c in checks if c.name == "no_text").measured)


def test_words_pass_only_in_the_text_slots_of_a_preset_that_has_them(case: dict) -> None:
    import dataclasses

    from hitline.domain.imaging import load_presets
    from hitline.domain.typeset import _font, check_copy, draw_slots

    slotted = dataclasses.replace(BANNER, slots=load_presets(["banner"])[0].slots)  # the shipped slots, at 1K
    copy = check_copy({"headline": "Crisp white tee", "price": "$19.99"}, slotted, "en-US")
    worded, _ = draw_slots(case["banner"], copy)
    assert "no_text" not in _names(gate(worded, slotted, case["flat"], case["mask"]))  # its words, its slots
    # the same picture judged as a preset without slots: words anywhere fail it
    assert "no_text" in _names(gate(worded, BANNER, case["flat"], case["mask"]))
    # words outside the slots (over the product's side of the banner) fail the preset that has slots
    stray = worded.copy()
    ImageDraw.Draw(stray).text((20, 200), "SALE 50% OFF", fill=(20, 20, 20), font=_font(-1, 36))
    found = next(c for c in gate(stray, slotted, case["flat"], case["mask"]) if c.name == "no_text")
    assert not found.passed and any("SALE" in t for t in found.measured), found.measured


def test_wrong_colour_is_caught(case: dict) -> None:
    r, g, b = case["amazon"].split()
    bad = Image.merge("RGB", (b, g, r))  # red garment turned blue; white stays white
    assert _names(gate(bad, AMAZON, case["flat"], case["mask"], text_finder=None)) == {"colour"}


def test_cropped_garment_is_caught(case: dict) -> None:
    bad = Image.new("RGB", case["amazon"].size, (255, 255, 255))
    bad.paste(case["amazon"], (-300, 0))  # the left third of the garment is off the frame
    checks = gate(bad, AMAZON, case["flat"], case["mask"], text_finder=None)
    assert "silhouette" in _names(checks)
    assert "left" in next(c for c in checks if c.name == "silhouette").measured["touches"]


def test_missing_product_is_caught(case: dict) -> None:
    blank = Image.new("RGB", case["amazon"].size, (255, 255, 255))
    assert "silhouette" in _names(gate(blank, AMAZON, case["flat"], case["mask"], text_finder=None))


def test_small_banner_product_is_caught(case: dict) -> None:
    bad = case["banner"].copy()
    arr = np.asarray(bad).copy()
    h = arr.shape[0]
    bg = arr[:, -5:].mean(axis=(0, 1)).astype(np.uint8)
    shrunk = bad.crop((0, 0, h, h)).resize((h // 2, h // 2))
    arr[:, : h + 20] = bg
    bad = Image.fromarray(arr)
    bad.paste(shrunk, (60, h // 4))
    assert "height_fill" in _names(gate(bad, BANNER, case["flat"], case["mask"], text_finder=None))


# input checks -------------------------------------------------------------------------------------
def test_resolution_fail_and_downsize_say_by_how_much() -> None:
    fail = check_resolution(300, AMAZON)  # 1K needs 0.85 * 1024 = 870 px: 2.9x
    assert not fail.passed and fail.action == "fail" and fail.measured == pytest.approx(2.9, abs=0.05)
    assert "2.9x" in fail.message and resolve_preset(AMAZON, fail) is None
    down = check_resolution(342, SHOPIFY_2K)  # 2K needs 768 px (2.2x); 1K needs 384 px (1.1x)
    assert not down.passed and down.action == "downsize:1K"
    smaller = resolve_preset(SHOPIFY_2K, down)
    assert smaller is not None and (smaller.size, smaller.width, smaller.height) == ("1K", 768, 1024)
    ok = check_resolution(1600, SHOPIFY_2K)
    assert ok.passed and ok.measured <= MAX_UPSCALE and resolve_preset(SHOPIFY_2K, ok) is SHOPIFY_2K
    tiny = check_resolution(40, SHOPIFY_2K)  # even 512px would need 6.4x: nothing to downsize to
    assert tiny.action == "fail"
    amazon = Preset.build("amazon_main", "1:1", "2K", "white", rules={"min_fill": 0.85, "min_side": 1000})
    assert check_resolution(600, amazon).action == "downsize:1K"  # 1K needs 870 px: 1.45x
    assert check_resolution(300, amazon).action == "fail"  # 512px would do, but Amazon wants 1000+ px


def test_non_white_background_is_flagged_for_white_presets_only() -> None:
    flat, mask = _flatlay(paper=(225, 205, 170))
    assert not check_background(flat, mask, AMAZON).passed
    assert check_background(flat, mask, BANNER).passed
    white, wmask = _flatlay()
    assert check_background(white, wmask, AMAZON).passed


def test_garment_touching_the_frame_is_flagged() -> None:
    _, mask = _flatlay(margin=0)
    touching = check_touching(mask)
    assert not touching.passed and "bottom" in touching.measured  # the hem runs off the photo
    flat, ok_mask = _flatlay()
    amazon_2k = Preset.build("amazon_main", "1:1", "2K", "white", low_res="fail", rules=dict(AMAZON.rules))
    checks = input_checks(flat, ok_mask, [amazon_2k, BANNER])  # a 480 px product: 1K fine, 2K needs 3.6x
    assert set(checks) == {"amazon_main", "banner"}
    assert not failed(checks["banner"])
    assert [(c.name, c.action) for c in failed(checks["amazon_main"])] == [("resolution", "fail")]


def _has_font() -> bool:
    try:
        ImageFont.truetype("DejaVuSans.ttf", 10)
        return True
    except OSError:
        return False


# the checks that see what a shopper sees, against where the compositor placed the product ---------
SHOPIFY = Preset.build("shopify", "3:4", "1K", "scene", rules={"min_fill": 0.5, "max_colour_delta": 12.0})


def _textured_flatlay() -> tuple[Image.Image, np.ndarray]:
    """The T-shirt in a grainy weave (fine detail the sharpness check can lose) on paper."""
    flat, mask = _flatlay(colour=(60, 90, 160))
    arr = np.asarray(flat).astype(np.int16)
    grain = np.random.default_rng(7).normal(0, 16, (arr.shape[0] // 2 + 1, arr.shape[1] // 2 + 1))
    weave = np.kron(grain, np.ones((2, 2)))[: arr.shape[0], : arr.shape[1], None].astype(np.int16)
    arr = np.where(mask[..., None], np.clip(arr + weave, 0, 255), arr)
    return Image.fromarray(arr.astype(np.uint8)), mask


@pytest.fixture(scope="module")
def placed_case() -> dict:
    flat, mask = _textured_flatlay()
    product = _product(flat, mask)
    out = {"flat": flat, "mask": mask}
    for name, preset in (("amazon", AMAZON), ("shopify", SHOPIFY)):
        out[name], out[f"{name}_placed"] = compose_placed(product, None, STYLE, preset)
    return out


def _judge(case: dict, image: Image.Image, which: str) -> set[str]:
    preset = AMAZON if which == "amazon" else SHOPIFY
    return _names(gate(image, preset, case["flat"], case["mask"], text_finder=None, placed=case[f"{which}_placed"]))


def _product_box(case: dict, which: str) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(case[f"{which}_placed"])
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


@pytest.mark.parametrize("which", ["amazon", "shopify"])
def test_a_good_compositor_output_passes_the_shopper_checks(placed_case: dict, which: str) -> None:
    preset = AMAZON if which == "amazon" else SHOPIFY
    checks = gate(
        placed_case[which],
        preset,
        placed_case["flat"],
        placed_case["mask"],
        text_finder=None,
        placed=placed_case[f"{which}_placed"],
    )
    assert {"clean_background", "matches_product", "sharp", "compression"} <= {c.name for c in checks}
    assert not failed(checks), [c.message for c in failed(checks)]


@pytest.mark.parametrize("which", ["amazon", "shopify"])
def test_a_frame_line_around_the_product_is_caught(placed_case: dict, which: str) -> None:
    bad = placed_case[which].copy()
    x0, y0, x1, y1 = _product_box(placed_case, which)
    ImageDraw.Draw(bad).rectangle([x0 - 14, y0 - 14, x1 + 14, y1 + 14], outline=(150, 150, 150), width=2)
    names = _judge(placed_case, bad, which)
    assert "clean_background" in names
    assert names <= {"clean_background", "pure_white"}  # nothing else is wrong with the picture


def test_a_scrap_of_the_photos_paper_beside_the_product_is_caught(placed_case: dict) -> None:
    bad = placed_case["shopify"].copy()
    x0, y0, x1, y1 = _product_box(placed_case, "shopify")
    ImageDraw.Draw(bad).rectangle([x1 + 10, y1 - 80, x1 + 50, y1 - 50], fill=(236, 235, 230))
    assert _judge(placed_case, bad, "shopify") == {"clean_background"}


def test_a_prop_beside_the_product_is_caught(placed_case: dict) -> None:
    bad = placed_case["shopify"].copy()
    x0, y0, x1, y1 = _product_box(placed_case, "shopify")
    ImageDraw.Draw(bad).ellipse([x0 - 60, y0, x0 - 10, y0 + 25], fill=(30, 30, 35))
    assert _judge(placed_case, bad, "shopify") == {"clean_background"}


def test_a_product_running_off_the_frame_is_caught_against_its_placement(placed_case: dict) -> None:
    good = placed_case["shopify"]
    bad = Image.new("RGB", good.size, good.getpixel((1, good.height // 2)))
    bad.paste(good, (good.width // 3, 0))  # the picture slid right: the product off the frame
    names = _judge(placed_case, bad, "shopify")
    assert "silhouette" not in names  # the placement says it was placed whole: the segmenting check is blind
    assert {"clean_background", "matches_product"} <= names


def test_a_mark_or_shadow_painted_over_the_product_is_caught(placed_case: dict) -> None:
    bad = placed_case["amazon"].copy()
    x0, y0, x1, y1 = _product_box(placed_case, "amazon")
    cx, cy = (x0 + x1) // 2, (y0 + y1) // 2 + 100
    ImageDraw.Draw(bad).rectangle([cx - 60, cy - 12, cx + 60, cy + 12], fill=(235, 235, 235))
    assert _judge(placed_case, bad, "amazon") == {"matches_product"}


def test_a_blurred_output_is_caught(placed_case: dict) -> None:
    bad = placed_case["shopify"].filter(ImageFilter.GaussianBlur(3))
    assert _judge(placed_case, bad, "shopify") == {"sharp"}


@pytest.mark.parametrize("which", ["amazon", "shopify"])
def test_jpeg_blocks_are_caught(placed_case: dict, which: str) -> None:
    buf = io.BytesIO()
    placed_case[which].save(buf, "JPEG", quality=70)
    bad = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    names = _judge(placed_case, bad, which)
    assert "compression" in names
    assert names <= {"compression", "pure_white"}
