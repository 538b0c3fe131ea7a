"""The Milvus collection of hit products: hybrid schema, upsert, flush, filtered hybrid search."""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass, field
from typing import Any, Sequence

from numpy.typing import ArrayLike
from pymilvus import AnnSearchRequest, DataType, MilvusClient
from pymilvus.exceptions import MilvusException

from hitline.domain.models import Hit, HitProduct
from hitline.domain.vectors import as_vector
from hitline.errors import ConfigError

log = logging.getLogger(__name__)
# Milvus Lite's in-process gRPC server logs a traceback for every RPC it does not implement
# (AllocTimestamp, which pymilvus probes and then works without): noise, not an error
logging.getLogger("grpc._server").setLevel(logging.CRITICAL)

RRF_K = 60
META_KEY = "hitline.meta"  # collection property: embedder, dimension and text vocabulary version
_clients: dict[tuple[int, str], MilvusClient] = {}
_clients_lock = threading.Lock()
# Milvus Lite runs in-process and is not safe for concurrent calls from our worker threads
_call_lock = threading.RLock()

VARCHAR = {"product_id": 64, "category": 128, "color": 128, "style": 128, "season": 64,
           "description": 4096, "image_path": 1024}


def client_for(uri: str) -> MilvusClient:
    """One client per process and uri (Milvus Lite lets one process open a data file)."""
    key = (os.getpid(), uri)
    with _clients_lock:
        if key not in _clients:
            if not uri.startswith(("http://", "https://", "tcp://", "unix:")):
                os.makedirs(os.path.dirname(os.path.abspath(uri)), exist_ok=True)
            _clients[key] = MilvusClient(uri)
        return _clients[key]


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


def _dense(v: ArrayLike) -> list[float]:
    """A dense vector as Milvus stores it (FLOAT_VECTOR: float32), as a list: pymilvus packs a list's floats
    faster than a numpy array's scalars (search), and turns an array into a list on upsert anyway."""
    return as_vector(v).tolist()


# Widening steps when the strict filter leaves fewer than k hits (documented in README):
# 1) same category and sales above the threshold, 2) same category at any sales,
# 3) any category above the threshold, 4) the whole catalog.
FALLBACKS = ("category+sales", "category", "sales", "any")


@dataclass
class Retrieval:
    hits: list[Hit]
    filter: str
    fallback: str  # which step of FALLBACKS produced the hits
    notes: list[str] = field(default_factory=list)


class HitIndex:
    def __init__(self, uri: str, collection: str, dim: int, embed_model: str,
                 client: MilvusClient | None = None) -> None:
        self.uri, self.collection, self.dim, self.embed_model = uri, collection, dim, embed_model
        self.client = client or client_for(uri)

    # --- schema -------------------------------------------------------------------------------
    def meta(self) -> dict[str, Any] | None:
        with _call_lock:
            if not self.client.has_collection(self.collection):
                return None
            props = self.client.describe_collection(self.collection).get("properties") or {}
        try:
            return json.loads(props.get(META_KEY, "{}"))
        except json.JSONDecodeError:
            return {}

    def ensure(self, vocab_version: str) -> str:
        """Make the collection fit this embedder and vocabulary. Returns "exists", "created" or "rebuilt".

        A different embedder is refused (vectors of two models are not comparable); a different text
        vocabulary means the catalog changed, so the collection is rebuilt from the new catalog.
        """
        with _call_lock:
            meta = self.meta()
            if meta is not None:
                if meta.get("embed_model") != self.embed_model or meta.get("dim") != self.dim:
                    raise ConfigError(
                        f"collection {self.collection!r} holds {meta.get('embed_model')} vectors "
                        f"({meta.get('dim')}-d); this run embeds with {self.embed_model} ({self.dim}-d). "
                        "Mixing embedders in one collection is refused: set HITLINE_COLLECTION to another "
                        f"name (e.g. {self.collection}_{self.embed_model.split('/')[0]}) or drop it with "
                        f"`hitline drop-collection {self.collection} --yes`.")
                if meta.get("vocab_version") == vocab_version:
                    return "exists"
                log.info("catalog vocabulary changed (%s -> %s): rebuilding %s",
                         meta.get("vocab_version"), vocab_version, self.collection)
                self.client.drop_collection(self.collection)
                state = "rebuilt"
            else:
                state = "created"
            self._create(vocab_version)
            return state

    def drop(self) -> None:
        with _call_lock:
            if self.client.has_collection(self.collection):
                self.client.drop_collection(self.collection)

    def _create(self, vocab_version: str) -> None:
        meta = json.dumps({"embed_model": self.embed_model, "dim": self.dim, "vocab_version": vocab_version})
        schema = self.client.create_schema(auto_id=False, description="hitline hit products")
        schema.add_field("product_id", DataType.VARCHAR, is_primary=True, max_length=VARCHAR["product_id"])
        schema.add_field("dense", DataType.FLOAT_VECTOR, dim=self.dim)
        schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        for name in ("category", "color", "style", "season", "description", "image_path"):
            schema.add_field(name, DataType.VARCHAR, max_length=VARCHAR[name])
        schema.add_field("sales_count", DataType.INT64)
        schema.add_field("price", DataType.DOUBLE)
        idx = self.client.prepare_index_params()
        # FLAT: exact dense search; measured faster than HNSW under a selective filter (bench/)
        idx.add_index("dense", index_type="FLAT", metric_type="COSINE")
        idx.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="IP")
        self.client.create_collection(self.collection, schema=schema, index_params=idx,
                                      properties={META_KEY: meta})

    # --- writes -------------------------------------------------------------------------------
    def upsert(self, products: Sequence[HitProduct], dense: Sequence[ArrayLike],
               sparse: Sequence[dict[int, float]]) -> int:
        rows = []
        for p, d, sp in zip(products, dense, sparse, strict=True):
            rows.append({
                "product_id": p.product_id, "dense": _dense(d),
                # Milvus rejects an all-zero sparse row; a hit whose text is out of vocabulary gets a tiny
                # marker entry so it stays findable by the dense path
                "sparse": sp or {0: 1e-6},
                "category": p.category[: VARCHAR["category"]], "color": p.color[: VARCHAR["color"]],
                "style": p.style[: VARCHAR["style"]], "season": p.season[: VARCHAR["season"]],
                "description": p.description[: VARCHAR["description"] // 4],
                "image_path": str(p.image_path), "sales_count": int(p.sales_count), "price": float(p.price),
            })
        if not rows:
            return 0
        with _call_lock:
            return int(self.client.upsert(self.collection, rows)["upsert_count"])

    def flush(self) -> None:
        """Flush after bulk insert: searching growing segments was ~50x slower (DESIGN.md)."""
        with _call_lock:
            self.client.flush(self.collection)
            self.client.load_collection(self.collection)

    def count(self) -> int:
        with _call_lock:
            return int(self.client.get_collection_stats(self.collection)["row_count"])

    # --- search -------------------------------------------------------------------------------
    def search(self, dense: ArrayLike, sparse: dict[int, float], category: str, min_sales: int,
               top_k: int) -> Retrieval:
        """Dense + sparse requests with the same filter, fused by RRF(k=60); widened step by step when
        the filter leaves fewer than top_k hits."""
        notes: list[str] = []
        if not sparse:
            notes.append("query text has no word in the catalog vocabulary: dense search only")
        steps = {"category+sales": (category, min_sales), "category": (category, None),
                 "sales": (None, min_sales), "any": (None, None)}
        query = _dense(dense)
        best: Retrieval | None = None
        for name in FALLBACKS:
            expr = build_filter(*steps[name])
            hits = self._hybrid(query, sparse, expr, top_k)
            if best is None or len(hits) > len(best.hits):
                best = Retrieval(hits, expr, name)
            if len(hits) >= top_k:
                break
            notes.append(f"filter [{expr or 'none'}] left {len(hits)} of {top_k} hits")
        assert best is not None
        if best.fallback != FALLBACKS[0]:
            notes.append(f"widened the filter to [{best.filter or 'none'}] ({best.fallback})")
        best.notes = notes
        return best

    def _hybrid(self, dense: list[float], sparse: dict[int, float], expr: str, top_k: int) -> list[Hit]:
        try:
            return self._hybrid_once(dense, sparse, expr, top_k)
        except MilvusException as e:
            # a restarted server (milvus-lite, or a Milvus standalone that lost its query node) comes back
            # with the collection released: load it again instead of failing the SKU
            if "released" not in str(e) and "not loaded" not in str(e):
                raise
            with _call_lock:
                self.client.load_collection(self.collection)
            return self._hybrid_once(dense, sparse, expr, top_k)

    def _hybrid_once(self, dense: list[float], sparse: dict[int, float], expr: str, top_k: int) -> list[Hit]:
        per_path = max(top_k * 3, 10)
        dense_req = AnnSearchRequest(data=[dense], anns_field="dense",
                                     param={"metric_type": "COSINE"}, limit=per_path, expr=expr)
        reqs = [dense_req]
        if sparse:
            reqs.append(AnnSearchRequest(data=[sparse], anns_field="sparse", param={"metric_type": "IP"},
                                         limit=per_path, expr=expr))
        fields = ["category", "sales_count", "description", "image_path"]
        # each path searched once; RRF (k=60, ranks from 1, as Milvus' RRFRanker) fused here: the same
        # hits as a hybrid_search, and each hit's rank per path comes with it (no second round of searches)
        ranks: list[dict[Any, int]] = []
        entities: dict[Any, dict[str, Any]] = {}
        with _call_lock:
            for r in reqs:
                res = self.client.search(self.collection, data=r.data, anns_field=r.anns_field,
                                         search_params=r.param, limit=per_path, filter=expr, output_fields=fields)[0]
                ranks.append({})
                for i, h in enumerate(res):
                    pid = h["id"] if "id" in h else h["product_id"]
                    ranks[-1][pid] = i + 1
                    entities.setdefault(pid, h["entity"])
        fused = {pid: sum(1.0 / (RRF_K + path[pid]) for path in ranks if pid in path) for pid in entities}
        order = sorted(fused, key=lambda pid: (-fused[pid], min(p.get(pid, per_path + 1) for p in ranks), str(pid)))
        hits = []
        for pid in order[:top_k]:
            ent = entities[pid]
            d_rank = ranks[0].get(pid)
            s_rank = ranks[1].get(pid) if len(ranks) > 1 else None
            found = tuple(n for n, r in (("dense", d_rank), ("sparse", s_rank)) if r is not None)
            hits.append(Hit(product_id=pid, score=fused[pid], image_path=ent["image_path"],
                            category=ent["category"], sales_count=int(ent["sales_count"]),
                            description=ent["description"], found_by=found, dense_rank=d_rank,
                            sparse_rank=s_rank))
        return hits
