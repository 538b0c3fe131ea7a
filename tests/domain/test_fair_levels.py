"""hitline.domain.fairness: a SKU's priority from its position in its batch (start-time fair queuing)."""

from __future__ import annotations

import pytest

from hitline.domain.fairness import CATALOG_PRIORITY, PRIORITY_STEPS, SHEET_PRIORITY, sku_priority, tag


def test_levels_double_in_size_between_the_catalog_and_the_sheets() -> None:
    firsts = [n for n in range(5000) if n == 0 or sku_priority(n) != sku_priority(n - 1)]
    assert firsts == [0, 4, 12, 28, 60, 124, 252, 508]
    assert [sku_priority(n) for n in firsts] == list(range(1, 9))
    assert all(CATALOG_PRIORITY < sku_priority(n) < SHEET_PRIORITY for n in range(0, 100_000, 97))
    assert set(PRIORITY_STEPS) == set(range(10))
    with pytest.raises(ValueError):
        sku_priority(-1)


def test_each_batch_counts_its_own_skus_and_catalog_chunks_keep_their_stage_priority() -> None:
    keys = ["big"] * 600 + [None, "small", "small"]
    prios = tag(keys)
    assert prios[:4] == [1, 1, 1, 1] and prios[599] == 8
    assert prios[600:] == [None, 1, 1]  # the small batch starts at the first level, ahead of big's tail
