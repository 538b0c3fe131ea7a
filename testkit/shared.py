"""Where the shared data sits beside the checkout (tests and benchmarks find it relative to the repo)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["SHARED_CATALOG"]


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
