"""Fair sharing of the line between batches: start-time fair queuing on the broker's message priorities.

Each batch is a flow (its fairness key, as Temporal's fairness keys and Hatchet's concurrency keys name
one). The k-th SKU a send makes for a batch is tagged with its position k in that batch, the start tag
of start-time fair queuing when every batch starts at virtual time 0: a worker serves the smallest tag
first, so a batch just submitted (small tags) goes before the tail of a batch that has thousands of SKUs
queued (large tags), while batches of the same size interleave. The tag is bucketed on a log scale into
the broker's priority levels (Redis: one list per level, a worker pops the best level of every queue it
reads first) and set on every stage of the SKU's chain, so the SKU keeps its place at every queue.

    position  0-3  4-11  12-27  28-59  60-123  124-251  252-507  508+
    priority   1    2     3      4      5       6        7        8

Priority 0 is the catalog's (every SKU of a batch waits for it), 9 the contact sheets' (off the critical
path). Within a level the queue is first come, first served: two batches of thousands share FIFO beyond
their first 508 SKUs. No work is held back: a lone batch runs exactly as fast as before.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["CATALOG_PRIORITY", "SHEET_PRIORITY", "DEFAULT_SKU_PRIORITY", "PRIORITY_STEPS", "sku_priority", "tag"]

CATALOG_PRIORITY = 0
SHEET_PRIORITY = 9
# a SKU message sent without a position (a task sent by name, outside tasks.chains)
DEFAULT_SKU_PRIORITY = 3
# every level a message may have (kombu's Redis transport maps a priority down to the nearest step)
PRIORITY_STEPS: tuple[int, ...] = tuple(range(SHEET_PRIORITY + 1))
_FIRST, _LAST = CATALOG_PRIORITY + 1, SHEET_PRIORITY - 1
_BUCKET = 4  # SKUs in the first level; each next level holds twice as many


def sku_priority(position: int) -> int:
    """The priority (lower is served first) of the SKU at `position` (0-based) among its batch's SKUs sent
    together: level 1 + floor(log2(1 + position / 4)), capped at 8."""
    if position < 0:
        raise ValueError(f"position {position} < 0")
    level = (1 + position // _BUCKET).bit_length() - 1  # floor(log2(1 + position // 4)), exact in integers
    return min(_LAST, _FIRST + level)


def tag(keys: Iterable[str | None]) -> list[int | None]:
    """The priority of each message of one send, in order: the n-th SKU (key = its batch id) of a batch in
    this send gets sku_priority(n); None (a catalog chunk, which keeps its stage's priority) gets None."""
    seen: dict[str, int] = {}
    out: list[int | None] = []
    for key in keys:
        if key is None:
            out.append(None)
            continue
        n = seen.get(key, 0)
        seen[key] = n + 1
        out.append(sku_priority(n))
    return out
