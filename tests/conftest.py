"""Shared fixtures: an isolated data dir per test, demo data generated once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest




def _shared_catalog() -> Path:
    """The real product photos of the hit catalog in ../shared beside the checkout (a CI clone may sit one
    or two folders deeper, so the folders above the repo are searched too; never an absolute path)."""
    repo = Path(__file__).resolve().parents[1]
    for up in repo.parents[:3]:
        candidate = up / "shared" / "data" / "hit-catalog"
        if candidate.is_dir():
            return candidate
    return repo.parent / "shared" / "data" / "hit-catalog"


SHARED_CATALOG = _shared_catalog()

# the longest files first: tests/test_distributed.py (several clusters one after the other), the fault
# tests, then the other slow ones
_LONG = ("distributed", "reliability", "slow")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files with long tests first: pytest-xdist (`--dist loadfile`) hands files out in this order, so
    the suite's tail is short files, not a 5-minute one started last."""
    rank: dict[Path, int] = {}
    for item in items:
        mine = min((i for i, m in enumerate(_LONG) if item.get_closest_marker(m)), default=len(_LONG))
        rank[item.path] = min(rank.get(item.path, mine), mine)
    items.sort(key=lambda item: rank[item.path])  # stable: each file keeps its own order
