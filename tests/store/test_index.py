from pathlib import Path

import numpy as np
import pytest
from pymilvus.exceptions import MilvusException

from hitline.domain.models import Hit, HitProduct
from hitline.errors import ConfigError
from hitline.store.index import HitIndex, Scope, build_filter, quote

HOSTILE = 'x" or "1"=="1'


def _products(n: int) -> list[HitProduct]:
    cats = ["dress", "jacket", HOSTILE]
    return [
        HitProduct(
            f"P{i:03d}", Path(f"/img/{i}.jpg"), cats[i % 3], "red", "boho", "summer", i * 200, f"product {i}", 10.0 + i
        )
        for i in range(n)
    ]


@pytest.fixture
def index(tmp_path: Path) -> HitIndex:
    ix = HitIndex(str(tmp_path / "m.db"), "hits", 8, "test/model")
    ix.ensure()
    ps = _products(30)
    rng = np.random.default_rng(1)
    ix.upsert(ps, [rng.random(8) for _ in ps], [{i % 7: 1.0} for i in range(30)])
    ix.flush()
    return ix


def test_quote_escapes_quotes_and_backslashes() -> None:
    assert quote('a"b\\c') == '"a\\"b\\\\c"'
    assert build_filter("dress", 1500) == 'category == "dress" and sales_count > 1500'


def test_upsert_is_idempotent(index: HitIndex) -> None:
    ps = _products(30)
    index.upsert(ps[:5], [np.ones(8)] * 5, [{1: 1.0}] * 5)
    index.flush()
    assert index.count() == 30


def test_filter_keeps_category_and_sales(index: HitIndex) -> None:
    r = index.search(np.ones(8), {1: 1.0}, "dress", 1500, 3)
    assert len(r.hits) == 3 and r.fallback == "category+sales"
    assert all(h.category == "dress" and h.sales_count > 1500 for h in r.hits)
    assert all(h.found_by for h in r.hits)
    assert r.hits[0].score >= r.hits[-1].score


def test_hostile_category_cannot_widen_the_filter(index: HitIndex) -> None:
    r = index.search(np.ones(8), {1: 1.0}, HOSTILE, 0, 10)
    # only the products whose category is literally the hostile string
    assert r.hits and all(h.category == HOSTILE for h in r.hits)
    assert len(r.hits) == 10
    r = index.search(np.ones(8), {1: 1.0}, 'nothing" or category != "', 0, 3)
    assert r.fallback in ("sales", "any")  # strict steps found nothing, so the fallback had to widen


def test_fallback_is_recorded_when_filter_is_too_strict(index: HitIndex) -> None:
    r = index.search(np.ones(8), {1: 1.0}, "dress", 5000, 3)  # dresses above 5000: P027 only... none > 5800
    assert len(r.hits) == 3
    assert r.fallback != "category+sales"
    assert any("left" in n for n in r.notes) and any("widened" in n for n in r.notes)


def test_empty_sparse_query_uses_dense_only(index: HitIndex) -> None:
    r = index.search(np.ones(8), {}, "dress", 0, 3)
    assert len(r.hits) == 3 and all(h.found_by == ("dense",) for h in r.hits)
    assert "dense search only" in r.notes[0]


def test_mixing_embedders_is_refused(index: HitIndex, tmp_path: Path) -> None:
    other = HitIndex(index.uri, "hits", 16, "other/model", client=index.client)
    with pytest.raises(ConfigError, match="Mixing embedders"):
        other.ensure()
    assert index.ensure() == "exists"
    assert index.count() == 30


def test_a_version_sees_its_own_rows_only(index: HitIndex) -> None:
    """Two catalogs and two versions of one in the same collection: each scope returns its own rows,
    whatever the widening step, and closing a row hides it from later versions only."""
    rng = np.random.default_rng(3)
    a1 = _products(6)
    b1 = [
        HitProduct(f"P{i:03d}", Path(f"/b/{i}.jpg"), "dress", "red", "boho", "summer", 9000, "b", 1.0) for i in range(6)
    ]
    index.upsert(a1, [rng.random(8) for _ in a1], [{1: 1.0}] * 6, Scope("ca", 1))
    index.upsert(b1, [rng.random(8) for _ in b1], [{1: 1.0}] * 6, Scope("cb", 1))
    changed = [HitProduct("P000", Path("/a/new0.jpg"), "dress", "red", "boho", "summer", 7777, "a2", 1.0)]
    index.upsert(changed, [rng.random(8)], [{1: 1.0}], Scope("ca", 2))
    index.close(["ca:1:P000"], 2)
    index.flush()
    seen = {}
    for scope in (Scope("ca", 1), Scope("ca", 2), Scope("cb", 1)):
        r = index.search(np.ones(8), {1: 1.0}, "dress", -1, 20, scope)
        assert len(r.hits) == 6 and "filter [none] left 6 of 20 hits" in r.notes  # widened to the version only
        seen[scope] = {(h.product_id, h.image_path) for h in r.hits}
    assert seen[Scope("ca", 1)] == {(p.product_id, str(p.image_path)) for p in a1}
    assert seen[Scope("ca", 2)] == {(p.product_id, str(p.image_path)) for p in changed + a1[1:]}
    assert seen[Scope("cb", 1)] == {(p.product_id, str(p.image_path)) for p in b1}
    assert index.count(Scope("ca", 2)) == 6
    index.drop_before("ca", 2)  # version 1 unused: its closed row goes
    index.flush()
    assert index.count(Scope("ca", 1)) == 5 and index.count(Scope("ca", 2)) == 6


def test_the_fusion_ranks_as_milvus_rrf_ranker(index: HitIndex) -> None:
    """One search per path, fused locally: the same hits in the same order with the same scores as
    Milvus' own hybrid_search with RRFRanker(60) over the same two requests."""
    from pymilvus import AnnSearchRequest, RRFRanker

    from hitline.store.index import RRF_K

    rng = np.random.default_rng(7)
    for _ in range(8):
        dense = rng.random(8).tolist()
        sparse = {int(k): 1.0 for k in rng.choice(7, size=2, replace=False)}
        expr = build_filter(None, int(rng.integers(0, 3000)))
        per_path = max(5 * 3, 10)
        reqs = [
            AnnSearchRequest(
                data=[dense], anns_field="dense", param={"metric_type": "COSINE"}, limit=per_path, expr=expr
            ),
            AnnSearchRequest(
                data=[sparse], anns_field="sparse", param={"metric_type": "IP"}, limit=per_path, expr=expr
            ),
        ]
        milvus = index.client.hybrid_search(index.collection, reqs, RRFRanker(RRF_K), limit=5)[0]
        ours = index._hybrid_once(dense, sparse, expr, 5)
        theirs = [((h.get("id") or h.get("pk")).rsplit(":", 1)[-1], round(float(h["distance"]), 6)) for h in milvus]
        assert [(h.product_id, round(h.score, 6)) for h in ours] == theirs
        assert all(h.found_by for h in ours)


def test_a_released_collection_is_loaded_again_by_status_code(index: HitIndex, monkeypatch: pytest.MonkeyPatch) -> None:
    """_hybrid reloads on Milvus' 'collection not loaded' codes (101/103), whatever the message says, and
    lets any other error through even when its text mentions 'released' or 'not loaded'."""
    index.client.release_collection("hits")  # as a restarted Milvus Lite comes back: code 101
    assert len(index.search(np.ones(8), {1: 1.0}, "dress", 0, 3).hits) == 3

    real = HitIndex._hybrid_once
    raised: list[MilvusException] = []

    def once(self: HitIndex, dense: list[float], sparse: dict[int, float], expr: str, top_k: int) -> list[Hit]:
        if raised:
            return real(self, dense, sparse, expr, top_k)
        raised.append(err)
        raise err

    monkeypatch.setattr(HitIndex, "_hybrid_once", once)
    err = MilvusException(code=101, message="query node gone")
    assert len(index.search(np.ones(8), {1: 1.0}, "dress", 0, 3).hits) == 3
    raised.clear()
    err = MilvusException(code=1, message="segment released: not loaded (a different failure)")
    with pytest.raises(MilvusException, match="a different failure"):
        index.search(np.ones(8), {1: 1.0}, "dress", 0, 3)
