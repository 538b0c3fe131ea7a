"""The line's operations as plain functions (embed, index, retrieve, analyze, render one preset): no Celery,
no job table. Providers and stores come in as arguments; hitline.jobs.stages runs them for jobs."""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

from hitline.domain.catalog import verify_image_data
from hitline.domain.images import file_sha256
from hitline.domain.models import Hit, HitProduct, NewProduct, Preset, StyleAnalysis
from hitline.domain.retrieval import Retrieval, Scope
from hitline.domain.staged import STAGED_REFINEMENTS, plate_prompt
from hitline.domain.vectors import Vector, as_vector, decode_vector, encode_vector
from hitline.providers.base import Analysis, ImageEmbedder, ImageRenderer, Judgement, OutputJudge, StyleAnalyzer
from hitline.domain.sparse import TextVocabulary
from hitline.errors import InputError
from hitline.store.index import HitIndex

__all__ = [
    "Cache",
    "embed_key",
    "cached_vector",
    "embed_images",
    "fit_vocabulary",
    "index_hits",
    "retrieve",
    "analyze",
    "render_key",
    "render_preset",
    "derived_key",
    "derive_preset",
    "retrieved_record",
    "judge_output",
    "plate_prompt",
    "STAGED_REFINEMENTS",
]


class Cache(Protocol):
    def get(self, key: str) -> Any | None: ...
    def put(self, key: str, value: Any) -> None: ...


def embed_key(model: str, image_sha: str) -> str:
    return f"emb:{model}:{image_sha}"


def cached_vector(cache: Cache, key: str) -> Vector | None:
    """The vector stored under key (hitline.domain.vectors), None when there is none.
    A value that is not a vector raises InputError naming the key."""
    value = cache.get(key)
    if value is None:
        return None
    try:
        return decode_vector(value)
    except InputError as e:
        raise InputError(f"cache entry {key!r} is not a usable vector: {e}") from None


def embed_images(
    embedder: ImageEmbedder, paths: Sequence[Path], cache: Cache, shas: Sequence[str] | None = None
) -> tuple[list[Vector], float]:
    """Dense float32 vectors for images, from the cache when the same bytes were embedded by the same model.
    `shas`: the images' content hashes when the caller has them. Returns (vectors, cost of the calls made).
    A corrupt or truncated image raises InputError (cached bytes were verified before their first embedding)."""
    keys = [embed_key(embedder.model, h) for h in (shas or [file_sha256(p) for p in paths])]
    vectors: list[Vector | None] = [cached_vector(cache, k) for k in keys]
    todo = [i for i, v in enumerate(vectors) if v is None]
    cost = 0.0
    if todo:
        if not getattr(embedder, "checks_images", False):
            for i in todo:  # submit checked headers only: decode here, before anything is sent or paid for
                verify_image_data(paths[i])
        emb = embedder.embed_images([paths[i] for i in todo])
        cost = emb.cost_usd
        for i, v in zip(todo, emb.vectors, strict=True):
            vectors[i] = vec = as_vector(v)  # the float32 values a later cache hit returns
            cache.put(keys[i], encode_vector(vec))
    return [v for v in vectors if v is not None], cost


def fit_vocabulary(products: Sequence[HitProduct]) -> TextVocabulary:
    return TextVocabulary.fit([p.text() for p in products])


def index_hits(
    index: HitIndex,
    vocab: TextVocabulary,
    products: Sequence[HitProduct],
    vectors: Sequence[Vector],
    scope: Scope | None = None,
) -> int:
    """Write hit rows live from catalog version `scope` on."""
    return index.upsert(products, vectors, vocab.doc_vectors([p.text() for p in products]), scope)


def retrieve(
    index: HitIndex,
    vocab: TextVocabulary,
    product: NewProduct,
    vector: Vector,
    top_k: int,
    min_sales: int,
    scope: Scope | None = None,
) -> Retrieval:
    """The top_k hits for a new product, inside catalog version `scope` only."""
    return index.search(vector, vocab.query_vector(product.text()), product.category, min_sales, top_k, scope)


def retrieved_record(r: Retrieval) -> dict[str, Any]:
    return {"filter": r.filter, "fallback": r.fallback, "notes": r.notes, "hits": [asdict(h) for h in r.hits]}


def analysis_key(model: str, hits: Sequence[Hit], product: NewProduct) -> str:
    h = hashlib.sha256()
    for hit in hits:
        h.update(file_sha256(Path(hit.image_path)).encode())
    h.update(json.dumps([product.category, product.style, product.season, product.prompt_hint]).encode())
    return f"analysis:{model}:{h.hexdigest()}"


def analyze(analyzer: StyleAnalyzer, hits: Sequence[Hit], product: NewProduct, cache: Cache) -> tuple[Analysis, bool]:
    """StyleAnalysis of the retrieved hits; (analysis, came_from_cache)."""
    key = analysis_key(analyzer.model, hits, product)
    cached = cache.get(key)
    if cached is not None:
        return Analysis(
            style=StyleAnalysis.model_validate(cached["style"]), cost_usd=0.0, raw=cached.get("raw", "")
        ), True
    a = analyzer.analyze([Path(h.image_path) for h in hits], product)
    cache.put(key, {"style": a.style.model_dump(), "raw": a.raw})
    return a, False


def render_key(model: str, flatlay_sha: str, refs: Sequence[str], style: StyleAnalysis, preset: Preset) -> str:
    """Content hash of everything that decides one output image: same inputs, same file, one charge."""
    blob = json.dumps([model, flatlay_sha, list(refs), style.prompt, asdict(preset)], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def plate_key(model: str, ref_shas: Sequence[str], preset: Preset, prompt: str) -> str:
    """Content key of a scene plate: the references (in any order), the ratio group and the prompt."""
    blob = json.dumps(
        ["plate", model, sorted(ref_shas), preset.aspect_ratio, preset.size, preset.background, prompt], sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def render_preset(
    renderer: ImageRenderer,
    product: NewProduct,
    references: Sequence[Path],
    style: StyleAnalysis,
    preset: Preset,
    dest: Path,
    *,
    before_call: Callable[[], None] = lambda: None,
) -> tuple[Path, float, bool]:
    """Render one preset to dest (written atomically). Returns (path, cost, rendered_now).
    An existing dest is the result of an earlier identical call: nothing is called or paid again."""
    if dest.exists():
        return dest, 0.0, False
    before_call()
    img = renderer.render(product.image_path, list(references), style, product, preset)
    from PIL import Image

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".part")
    with Image.open(io.BytesIO(img.data)) as im:
        if im.size != (preset.width, preset.height):
            raise ValueError(
                f"{renderer.model} returned {im.size[0]}x{im.size[1]} for {preset.name} "
                f"({preset.width}x{preset.height})"
            )
        if im.format == "PNG" and im.mode == "RGB":
            tmp.write_bytes(img.data)  # already what we store: no second encode
        else:
            im.convert("RGB").save(tmp, format="PNG")
    tmp.replace(dest)
    return dest, img.cost_usd, True


def derived_key(source_key: str, preset: Preset) -> str:
    """Content key of a preset resized from the image under source_key (hitline.domain.render_plan)."""
    blob = json.dumps(["derived", source_key, asdict(preset)], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def derive_preset(source: Path, preset: Preset, dest: Path) -> Path:
    """A rendered image resized to the preset's exact pixels, written atomically to dest (no provider call).
    An existing dest is the same resize done before."""
    if dest.exists():
        return dest
    from PIL import Image

    from hitline.domain.placement import png_info, read_placement, resized_placement
    from hitline.domain.render_plan import derive

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".part")
    with Image.open(source) as im:
        placed = read_placement(im)  # a compositor's output: where the product is travels with the resize
        out = derive(im, preset)
        mask = resized_placement(placed, out.size) if placed is not None else None
        out.save(tmp, format="PNG", **({"pnginfo": png_info(mask)} if mask is not None else {}))
    tmp.replace(dest)
    return dest


def judge_key(model: str, flatlay: Path, output: Path, preset: Preset) -> str:
    blob = json.dumps([file_sha256(flatlay), file_sha256(output), asdict(preset)], sort_keys=True)
    return f"judge:{model}:{hashlib.sha256(blob.encode()).hexdigest()}"


def judge_output(
    judge: OutputJudge, flatlay: Path, output: Path, preset: Preset, cache: Cache
) -> tuple[Judgement, bool]:
    """The judge's verdict on one output, from the cache when the same images were judged by the same
    model for the same preset; (judgement, came_from_cache). A cached verdict costs nothing."""
    key = judge_key(judge.model, flatlay, output, preset)
    cached = cache.get(key)
    if cached is not None:
        return Judgement(
            checks=cached["checks"], cost_usd=0.0, model=cached.get("model", judge.model), raw=cached.get("raw", "")
        ), True
    j = judge.judge(flatlay, output, preset)
    if j.verdict:  # no verdict is not worth keeping
        cache.put(key, {"checks": j.checks, "model": j.model, "raw": j.raw})
    return j, False
