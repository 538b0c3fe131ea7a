"""What a retrieval is, independent of the vector store: safe filter strings, the widening steps, the
version scope a batch searches in, and the RRF fusion of the dense and sparse paths' ranks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from hitline.domain.models import Hit

__all__ = ["RRF_K", "FALLBACKS", "OPEN_END", "Scope", "Retrieval", "quote", "build_filter", "scope_filter", "fuse"]

RRF_K = 60
# valid_to of a row no version has replaced yet
OPEN_END = 2**62

# Widening steps when the strict filter leaves fewer than k hits (documented in README):
# 1) same category and sales above the threshold, 2) same category at any sales,
# 3) any category above the threshold, 4) the whole catalog version.
FALLBACKS = ("category+sales", "category", "sales", "any")


@dataclass(frozen=True)
class Scope:
    """One catalog version: the rows of `catalog` whose [valid_from, valid_to) holds `seq`. Every
    search of a batch runs inside its pinned scope, whatever the widening step."""

    catalog: str
    seq: int


@dataclass
class Retrieval:
    hits: list[Hit]
    filter: str
    fallback: str  # which step of FALLBACKS produced the hits
    notes: list[str] = field(default_factory=list)


def quote(value: str) -> str:
    """A Milvus string literal: backslashes and double quotes escaped, so a value can't widen a filter."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def build_filter(category: str | None, min_sales: int | None) -> str:
    parts = []
    if category is not None:
        parts.append(f"category == {quote(category)}")
    if min_sales is not None:
        parts.append(f"sales_count > {int(min_sales)}")
    return " and ".join(parts)


def scope_filter(scope: Scope | None) -> str:
    if scope is None:
        return ""
    seq = int(scope.seq)
    return f"catalog == {quote(scope.catalog)} and valid_from <= {seq} and valid_to > {seq}"


def fuse(ranks: Sequence[dict[Any, int]], top_k: int, per_path: int) -> list[tuple[Any, float]]:
    """RRF (k=60, ranks from 1, as Milvus' RRFRanker) over each path's {id: rank}: the top_k ids with
    their fused score, ties broken by the best single rank, then the id."""
    ids = {pid for path in ranks for pid in path}
    fused = {pid: sum(1.0 / (RRF_K + path[pid]) for path in ranks if pid in path) for pid in ids}
    order = sorted(fused, key=lambda pid: (-fused[pid], min(p.get(pid, per_path + 1) for p in ranks), str(pid)))
    return [(pid, fused[pid]) for pid in order[:top_k]]
