"""The cut-out on the labelled flat-lays of tests/cutout_cases.py: one case per difficulty (the worst
one where a difficulty has several), each with a floor on IoU against its exact mask. Floors sit a
little under what `bench/bench_cutout.py` measures (see bench/README.md), and above u2netp alone
where the paper model is what helps."""

from __future__ import annotations

import numpy as np
import pytest

from testkit import cutout_cases
from hitline.domain.backdrop import model_backdrop, to_lab
from hitline.domain.cutout import product_mask

# case -> IoU floor (u2netp alone measured in the same bench run, for the record)
FLOORS = {
    # measured 0.965 (0.539 before the frame line's halo was kept out of the paper model); u2netp 0.38:
    # it drops the skirt and half the cardigan
    "pale_two_piece_small": 0.93,
    "cream_knit_on_white": 0.94,  # u2netp 0.92
    "three_piece_set": 0.96,  # u2netp 0.95; the clutch is kept
    "frame_line_dark_edge": 0.98,
    "soft_shadow_tee": 0.98,
    "pleated_highlights": 0.98,
    "beige_on_cream": 0.97,
    "tulle_grey_alone": 0.98,
    # measured 0.801; 0.311 before, 0.460 with the new paper model alone (the grey skirt borders its
    # faint shadow and a paper-like fold softly, and a median outline test dropped it as a shadow);
    # u2netp 0.31
    "pale_set_off_edge": 0.76,
    # issue 26: a print with a mat outside its frame line (0.46 before: the white inside the frame was
    # kept as a rectangle of product) and a studio's watermark plate in a corner (0.964 before: kept)
    "matted_two_piece": 0.97,
    "corner_watermark_coat": 0.98,
}


@pytest.fixture(scope="module")
def results() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for name in FLOORS:
        photo, truth = cutout_cases.build(name)
        out[name] = (product_mask(photo), truth)
    return out


def test_every_difficulty_is_covered() -> None:
    covered = {cutout_cases.CASES[name][0] for name in FLOORS}
    assert covered == set(cutout_cases.DIFFICULTIES)


@pytest.mark.parametrize("name", list(FLOORS))
def test_cutout_iou_floor(results: dict[str, tuple[np.ndarray, np.ndarray]], name: str) -> None:
    mask, truth = results[name]
    assert cutout_cases.iou(mask, truth) >= FLOORS[name], (name, cutout_cases.iou(mask, truth))


def test_several_pieces_are_all_kept(results: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    import cv2

    mask, truth = results["three_piece_set"]
    n_truth, labels = cv2.connectedComponents(truth.astype(np.uint8))
    for i in range(1, n_truth):  # every piece, the small clutch included, is mostly in the mask
        piece = labels == i
        assert (mask & piece).sum() > 0.9 * piece.sum()


def test_frame_line_is_found_and_is_not_product(results: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    photo, _ = cutout_cases.build("frame_line_dark_edge")
    bd = model_backdrop(to_lab(np.asarray(photo)))
    assert bd.frame[0].all() and bd.frame[4].all()  # the dark edge and the grey line 4 px in
    mask, _ = results["frame_line_dark_edge"]
    assert not mask[:6].any() and not mask[-6:].any() and not mask[:, :6].any() and not mask[:, -6:].any()


def test_shadow_is_left_out(results: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    mask, truth = results["soft_shadow_tee"]
    assert (mask & ~truth).sum() < 0.01 * truth.sum()  # the shadow falls outside the tee, on paper


def test_frame_and_corner_mark_are_background(results: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """What travelled into every output as a white rectangle or a white scrap is left out."""
    mask, truth = results["matted_two_piece"]
    assert (mask & ~truth).sum() < 0.03 * truth.sum()  # no rectangle of paper around the garment
    mask, truth = results["corner_watermark_coat"]
    assert not mask[580:, 360:].any()  # the watermark plate's corner
