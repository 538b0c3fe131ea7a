"""The Milvus collection of hit products (pymilvus): hybrid schema, versioned rows, upsert, flush, filtered
hybrid search inside one catalog version.

One collection per embedder holds every catalog's rows; `catalog` is the partition key (a search scoped to
one catalog reads its partition only) and a row is live in the versions [valid_from, valid_to) of its
catalog. A catalog update writes only its new and changed rows (valid_from = the new version) and closes
the rows they replace (valid_to = the new version), so a batch pinned to an older version keeps seeing
exactly that version's products while a newer one is built. bench/bench_catalog.py measured this against
one collection per catalog version."""

from __future__ import annotations

import json
import logging
import os
import functools
import threading
from typing import Any, Callable, Iterable, Sequence, TypeVar

import grpc
from numpy.typing import ArrayLike
from pymilvus import DataType, MilvusClient
from pymilvus.client.types import Status
from pymilvus.exceptions import (
    ConnectError,
    ConnectionNotExistException,
    ErrorCode,
    MilvusException,
    MilvusUnavailableException,
)

from hitline.domain.models import Hit, HitProduct
from hitline.domain.retrieval import (
    FALLBACKS,
    OPEN_END,
    RRF_K,
    Retrieval,
    Scope,
    build_filter,
    fuse,
    quote,
    scope_filter,
)
from hitline.domain.vectors import as_vector
from hitline.errors import ConfigError, IndexUnavailable

__all__ = [
    "HitIndex",
    "client_for",
    "unavailable",
    "not_loaded",
    "row_key",
    "RRF_K",
    "FALLBACKS",
    "build_filter",
    "quote",
    "Retrieval",
    "Scope",
]

log = logging.getLogger(__name__)
# Milvus Lite's in-process gRPC server logs a traceback for every RPC it does not implement
# (AllocTimestamp, which pymilvus probes and then works without): noise, not an error
logging.getLogger("grpc._server").setLevel(logging.CRITICAL)

META_KEY = "hitline.meta"  # collection property: embedder, dimension and row layout
LAYOUT = "versioned-v1"  # rows keyed by catalog + valid_from + product, live in [valid_from, valid_to); sparse
# vectors under hashed term ids (hitline.domain.sparse.doc_vector)
_clients: dict[tuple[int, str], MilvusClient] = {}
_clients_lock = threading.Lock()
# Milvus Lite runs in-process and is not safe for concurrent calls from our worker threads
_call_lock = threading.RLock()

VARCHAR = {
    "pk": 256,
    "catalog": 64,
    "product_id": 64,
    "category": 128,
    "color": 128,
    "style": 128,
    "season": 64,
    "description": 4096,
    "image_path": 1024,
}
_SEARCH_FIELDS = ["product_id", "category", "sales_count", "description", "image_path"]

# gRPC statuses that say "the server is not there (yet)", not "this request is wrong"
_DOWN = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED, grpc.StatusCode.ABORTED}
)
# pymilvus' code for "Fail connecting to server" (grpc_handler._wait_for_channel_ready, its reconnect)
_CONNECT_FAILED = Status.CONNECT_FAILED
# Milvus' status codes (pkg/util/merr) for a collection that is there but not (fully) loaded for search:
# ErrCollectionNotLoaded (Milvus Lite: "in state 'released'") and ErrCollectionNotFullyLoaded
_NOT_LOADED = frozenset({101, 103})
_F = TypeVar("_F", bound=Callable[..., Any])


def _from_grpc(e: BaseException) -> bool:
    """The exception was raised inside the grpc package (its last traceback frame is there)."""
    tb = e.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and f"{os.sep}grpc{os.sep}" in tb.tb_frame.f_code.co_filename


def unavailable(e: BaseException) -> bool:
    """Milvus is unreachable, by type and status code (pymilvus 3.x), never by message text:
    a grpc.RpcError with an UNAVAILABLE/DEADLINE_EXCEEDED/CANCELLED/ABORTED status; pymilvus' retry timeout
    (a MilvusException whose code is that gRPC status); its connection exceptions; a MilvusException the
    server marked retriable or rate-limited (and not an input error); and pymilvus' "unexpected error"
    wrapping the ValueError grpc raises on a closed channel (the client of a restarted Milvus Lite).
    The exception's causes are looked at too (pymilvus re-raises `e from e`: a chain may loop)."""
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if _down(cur, wrapped=cur is not e):
            return True
        cur = cur.__cause__
    return False


def _down(e: BaseException, wrapped: bool) -> bool:
    if isinstance(
        e,
        (
            ConnectError,
            MilvusUnavailableException,
            ConnectionNotExistException,
            ConnectionError,
            TimeoutError,
            grpc.FutureTimeoutError,
        ),
    ):
        return True
    if isinstance(e, grpc.RpcError):
        code = getattr(e, "code", None)
        return callable(code) and code() in _DOWN
    if isinstance(e, MilvusException):
        return (
            e.code in _DOWN
            or e.code == ErrorCode.RATE_LIMIT
            or e.code == _CONNECT_FAILED
            or (e.retriable and not e.is_input_error)
        )
    return wrapped and isinstance(e, ValueError) and _from_grpc(e)


def not_loaded(e: MilvusException) -> bool:
    """The collection exists but is not loaded for search (released by a restart): by status code."""
    return e.code in _NOT_LOADED


def _mapped(fn: _F) -> _F:
    """The Milvus boundary: an unreachable Milvus leaves as IndexUnavailable (hitline's transient error);
    every other pymilvus error (a bad filter, a missing collection) passes unchanged."""

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except IndexUnavailable:
            raise
        except Exception as e:
            if unavailable(e):
                raise IndexUnavailable(f"Milvus unreachable: {type(e).__name__}: {e}") from e
            raise

    return call  # type: ignore[return-value]


@_mapped
def client_for(uri: str) -> MilvusClient:
    """One client per process and uri (Milvus Lite lets one process open a data file)."""
    key = (os.getpid(), uri)
    with _clients_lock:
        if key not in _clients:
            if not uri.startswith(("http://", "https://", "tcp://", "unix:")):
                os.makedirs(os.path.dirname(os.path.abspath(uri)), exist_ok=True)
            _clients[key] = MilvusClient(uri)
        return _clients[key]


def row_key(catalog: str, valid_from: int, product_id: str) -> str:
    """A row's primary key: the same product in two versions with different content is two rows."""
    return f"{catalog}:{int(valid_from)}:{product_id}"


def _dense(v: ArrayLike) -> list[float]:
    """A dense vector as Milvus stores it (FLOAT_VECTOR: float32), as a list: pymilvus packs a list's floats
    faster than a numpy array's scalars (search), and turns an array into a list on upsert anyway."""
    return as_vector(v).tolist()


def _and(*parts: str) -> str:
    return " and ".join(p for p in parts if p)


class HitIndex:
    def __init__(
        self, uri: str, collection: str, dim: int, embed_model: str, client: MilvusClient | None = None
    ) -> None:
        self.uri, self.collection, self.dim, self.embed_model = uri, collection, dim, embed_model
        self.client = client or client_for(uri)

    # --- schema -------------------------------------------------------------------------------
    @_mapped
    def meta(self) -> dict[str, Any] | None:
        with _call_lock:
            if not self.client.has_collection(self.collection):
                return None
            props = self.client.describe_collection(self.collection).get("properties") or {}
        try:
            return json.loads(props.get(META_KEY, "{}"))
        except json.JSONDecodeError:
            return {}

    @_mapped
    def ensure(self) -> str:
        """Make the collection fit this embedder. Returns "exists", "created" or "rebuilt".

        A different embedder is refused (vectors of two models are not comparable). A collection of the
        unversioned layout (before catalogs had versions) is rebuilt: no catalog version points into it.
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
                        f"`hitline drop-collection {self.collection} --yes`."
                    )
                if meta.get("layout") == LAYOUT:
                    return "exists"
                log.info("collection %s has the unversioned layout: rebuilding it", self.collection)
                self.client.drop_collection(self.collection)
                state = "rebuilt"
            else:
                state = "created"
            self._create()
            return state

    @_mapped
    def drop(self) -> None:
        with _call_lock:
            if self.client.has_collection(self.collection):
                self.client.drop_collection(self.collection)

    def _create(self) -> None:
        meta = json.dumps({"embed_model": self.embed_model, "dim": self.dim, "layout": LAYOUT})
        schema = self.client.create_schema(auto_id=False, description="hitline hit products")
        schema.add_field("pk", DataType.VARCHAR, is_primary=True, max_length=VARCHAR["pk"])
        # the partition key: a search scoped to one catalog reads that catalog's partition only
        schema.add_field("catalog", DataType.VARCHAR, max_length=VARCHAR["catalog"], is_partition_key=True)
        schema.add_field("valid_from", DataType.INT64)
        schema.add_field("valid_to", DataType.INT64)
        schema.add_field("product_id", DataType.VARCHAR, max_length=VARCHAR["product_id"])
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
        self.client.create_collection(self.collection, schema=schema, index_params=idx, properties={META_KEY: meta})

    # --- writes -------------------------------------------------------------------------------
    @_mapped
    def upsert(
        self,
        products: Sequence[HitProduct],
        dense: Sequence[ArrayLike],
        sparse: Sequence[dict[int, float]],
        scope: Scope | None = None,
    ) -> int:
        """Write rows live from version scope.seq of scope.catalog on (default: catalog "" version 0,
        a catalog without versions)."""
        catalog, seq = (scope.catalog, int(scope.seq)) if scope is not None else ("", 0)
        rows = []
        for p, d, sp in zip(products, dense, sparse, strict=True):
            rows.append(
                {
                    "pk": row_key(catalog, seq, p.product_id),
                    "catalog": catalog,
                    "valid_from": seq,
                    "valid_to": OPEN_END,
                    "product_id": p.product_id,
                    "dense": _dense(d),
                    # Milvus rejects an all-zero sparse row; a hit whose text is out of vocabulary gets a tiny
                    # marker entry so it stays findable by the dense path
                    "sparse": sp or {0: 1e-6},
                    "category": p.category[: VARCHAR["category"]],
                    "color": p.color[: VARCHAR["color"]],
                    "style": p.style[: VARCHAR["style"]],
                    "season": p.season[: VARCHAR["season"]],
                    "description": p.description[: VARCHAR["description"] // 4],
                    "image_path": str(p.image_path),
                    "sales_count": int(p.sales_count),
                    "price": float(p.price),
                }
            )
        if not rows:
            return 0
        with _call_lock:
            return int(self.client.upsert(self.collection, rows)["upsert_count"])

    @_mapped
    def close(self, keys: Iterable[str], valid_to: int, batch: int = 1000) -> int:
        """End rows (by primary key) at version valid_to: versions before it still see them, it and later
        ones do not. Rewrites each row with its own vectors (idempotent: closing twice is the same row)."""
        keys = list(keys)
        done = 0
        for i in range(0, len(keys), batch):
            chunk = keys[i : i + batch]
            expr = "pk in [" + ", ".join(quote(k) for k in chunk) + "]"
            with _call_lock:
                self.client.load_collection(self.collection)  # a query needs it loaded (a new process)
                rows = self.client.query(self.collection, filter=expr, output_fields=["*"])
                for r in rows:
                    r["valid_to"] = int(valid_to)
                if rows:
                    done += int(self.client.upsert(self.collection, [dict(r) for r in rows])["upsert_count"])
        return done

    @_mapped
    def drop_before(self, catalog: str, seq: int) -> None:
        """Delete the rows of `catalog` that no version from `seq` on can see (closed at or before it)."""
        with _call_lock:
            self.client.delete(self.collection, filter=f"catalog == {quote(catalog)} and valid_to <= {int(seq)}")

    @_mapped
    def drop_catalog(self, catalog: str) -> None:
        with _call_lock:
            self.client.delete(self.collection, filter=f"catalog == {quote(catalog)}")

    @_mapped
    def flush(self) -> None:
        """Flush after bulk insert: searching growing segments was ~50x slower (DESIGN.md)."""
        with _call_lock:
            self.client.flush(self.collection)
            self.client.load_collection(self.collection)

    @_mapped
    def count(self, scope: Scope | None = None) -> int:
        """Rows in the collection, or live in one catalog version."""
        with _call_lock:
            if scope is None:
                return int(self.client.get_collection_stats(self.collection)["row_count"])
            self.client.load_collection(self.collection)
            res = self.client.query(self.collection, filter=scope_filter(scope), output_fields=["count(*)"])
        return int(res[0]["count(*)"]) if res else 0

    # --- search -------------------------------------------------------------------------------
    @_mapped
    def search(
        self,
        dense: ArrayLike,
        sparse: dict[int, float],
        category: str,
        min_sales: int,
        top_k: int,
        scope: Scope | None = None,
    ) -> Retrieval:
        """Dense + sparse requests with the same filter, fused by RRF(k=60); widened step by step when
        the filter leaves fewer than top_k hits. Every step stays inside `scope` (the batch's catalog
        version): widening relaxes category and sales, never the version."""
        notes: list[str] = []
        if not sparse:
            notes.append("query text has no word in the catalog vocabulary: dense search only")
        steps = {
            "category+sales": (category, min_sales),
            "category": (category, None),
            "sales": (None, min_sales),
            "any": (None, None),
        }
        query = _dense(dense)
        within = scope_filter(scope)
        best: Retrieval | None = None
        for name in FALLBACKS:
            expr = build_filter(*steps[name])
            hits = self._hybrid(query, sparse, _and(within, expr), top_k)
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
            # with the collection released: load it again instead of failing the SKU (by status code)
            if not not_loaded(e):
                raise
            with _call_lock:
                self.client.load_collection(self.collection)
            return self._hybrid_once(dense, sparse, expr, top_k)

    def _hybrid_once(self, dense: list[float], sparse: dict[int, float], expr: str, top_k: int) -> list[Hit]:
        per_path = max(top_k * 3, 10)
        reqs: list[tuple[str, Any, dict[str, str]]] = [("dense", dense, {"metric_type": "COSINE"})]
        if sparse:
            reqs.append(("sparse", sparse, {"metric_type": "IP"}))
        # each path searched once; RRF fused here (hitline.domain.retrieval.fuse): the same hits as a
        # hybrid_search, and each hit's rank per path comes with it (no second round of searches)
        ranks: list[dict[Any, int]] = []
        entities: dict[Any, dict[str, Any]] = {}
        with _call_lock:
            for field_name, data, param in reqs:
                res = self.client.search(
                    self.collection,
                    data=[data],
                    anns_field=field_name,
                    search_params=param,
                    limit=per_path,
                    filter=expr,
                    output_fields=_SEARCH_FIELDS,
                )[0]
                ranks.append({})
                for i, h in enumerate(res):
                    pid = h["entity"]["product_id"]
                    ranks[-1][pid] = i + 1
                    entities.setdefault(pid, h["entity"])
        hits = []
        for pid, score in fuse(ranks, top_k, per_path):
            ent = entities[pid]
            d_rank = ranks[0].get(pid)
            s_rank = ranks[1].get(pid) if len(ranks) > 1 else None
            found = tuple(n for n, r in (("dense", d_rank), ("sparse", s_rank)) if r is not None)
            hits.append(
                Hit(
                    product_id=pid,
                    score=score,
                    image_path=ent["image_path"],
                    category=ent["category"],
                    sales_count=int(ent["sales_count"]),
                    description=ent["description"],
                    found_by=found,
                    dense_rank=d_rank,
                    sparse_rank=s_rank,
                )
            )
        return hits
