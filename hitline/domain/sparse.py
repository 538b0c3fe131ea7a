"""The sparse text side: a TF-IDF vocabulary fitted on the hit catalog, saved as JSON with a version.

What the index stores does not depend on the vocabulary: a hit's row holds `doc_vector` (sublinear term
frequencies under stable hashed term ids, L2-normalised), and the catalog version's IDF weights go into
the query (`query_vector`), as BM25 weighs a query's terms. So a catalog update that changes the IDF
(new products, removed ones, edited descriptions) rewrites only the rows that changed, and each version
ranks with its own vocabulary.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import unicodedata
import zlib
from collections import Counter
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import sklearn
from sklearn.feature_extraction.text import TfidfVectorizer

from hitline.errors import ConfigError, InputError

__all__ = ["TextVocabulary", "SparseVector", "normalise_text", "term_id"]

SparseVector = dict[int, float]  # term id -> weight; the shape Milvus takes for SPARSE_FLOAT_VECTOR

FORMAT = "hitline-tfidf-v1"
_MAX_CHARS = 20_000  # a description is a sentence; anything longer is truncated, not tokenised whole
_SEPARATORS = re.compile(r"[_\-/]+")  # "midi_dress", "all-season" -> separate words


def normalise_text(text: str) -> str:
    """Lowercase, fold accents and split snake_case / kebab-case so catalog codes match prose."""
    text = unicodedata.normalize("NFKD", text[:_MAX_CHARS])
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return _SEPARATORS.sub(" ", text.lower())


def term_id(term: str) -> int:
    """A term's id in stored vectors: the same in every version and process (CRC-32, 31 bits)."""
    return zlib.crc32(term.encode("utf-8")) & 0x7FFFFFFF


def _unit(weights: dict[int, float]) -> SparseVector:
    norm = math.sqrt(sum(w * w for w in weights.values()))
    return {k: weights[k] / norm for k in sorted(weights)} if norm > 0 else {}


# the TfidfVectorizer settings; they are part of the version (change one = a new vocabulary)
_PARAMS: dict[str, Any] = {
    "stop_words": "english",
    "ngram_range": [1, 2],
    "sublinear_tf": True,
    "min_df": 1,
    "norm": "l2",
    "preprocessor": "normalise_text",
}


def _vectorizer(params: dict[str, Any], vocabulary: dict[str, int] | None = None) -> TfidfVectorizer:
    if params.get("preprocessor") != "normalise_text":
        raise ConfigError(f"unknown text preprocessor {params.get('preprocessor')!r}")
    return TfidfVectorizer(
        preprocessor=normalise_text,  # also lowercases: sklearn ignores `lowercase` when this is set
        stop_words=params["stop_words"],
        ngram_range=tuple(params["ngram_range"]),
        sublinear_tf=bool(params["sublinear_tf"]),
        min_df=params["min_df"],
        norm=params["norm"],
        vocabulary=vocabulary,
        dtype=np.float64,
    )


def _version(vocabulary: dict[str, int], idf: list[float], params: dict[str, Any]) -> str:
    # canonical JSON: sorted keys, exact float repr; same content -> same hash in every process
    blob = json.dumps(
        {"format": FORMAT, "vocabulary": vocabulary, "idf": idf, "params": params},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
        allow_nan=False,
    )
    return hashlib.sha256(blob.encode("ascii")).hexdigest()[:16]


class TextVocabulary:
    """Fitted TF-IDF vocabulary: text -> sparse L2-normalised vector; JSON save/load; content version."""

    def __init__(self, vocabulary: dict[str, int], idf: Iterable[float], params: dict[str, Any] | None = None) -> None:
        self.params: dict[str, Any] = dict(params if params is not None else _PARAMS)
        self.vocabulary: dict[str, int] = {str(k): int(v) for k, v in vocabulary.items()}
        self.idf: list[float] = [float(x) for x in idf]
        n = len(self.vocabulary)
        if len(self.idf) != n or sorted(self.vocabulary.values()) != list(range(n)):
            raise ConfigError(
                f"vocabulary is inconsistent: {n} terms, {len(self.idf)} idf weights, ids must be 0..{n - 1}"
            )
        if not all(np.isfinite(self.idf)):
            raise ConfigError("vocabulary has non-finite idf weights")
        self._vec = _vectorizer(self.params, self.vocabulary)
        self._vec.idf_ = np.asarray(self.idf, dtype=np.float64)
        self.version = _version(self.vocabulary, self.idf, self.params)

    @classmethod
    def fit(cls, texts: list[str]) -> "TextVocabulary":
        """Learn terms and idf from the hit catalog's texts (HitProduct.text())."""
        docs = [t if isinstance(t, str) else "" for t in texts]
        vec = _vectorizer(_PARAMS)
        try:
            vec.fit(docs)
        except ValueError as exc:  # sklearn: "empty vocabulary; perhaps the documents only contain stop words"
            raise InputError(
                f"cannot build a text vocabulary from {len(docs)} texts: no usable words ({exc})"
            ) from None
        vocabulary = {term: int(i) for term, i in vec.vocabulary_.items()}
        return cls(vocabulary, vec.idf_.tolist(), _PARAMS)

    def __len__(self) -> int:
        return len(self.vocabulary)

    def transform(self, text: str | None) -> SparseVector:
        """Sparse vector of one text; {} when nothing in it is in the vocabulary (callers decide)."""
        return self.transform_many([text])[0]

    def transform_many(self, texts: Iterable[str | None]) -> list[SparseVector]:
        docs = []
        for t in texts:
            if t is None:
                t = ""
            if not isinstance(t, str):
                raise InputError(f"text must be a string, got {type(t).__name__}")
            docs.append(t)
        if not docs:
            return []
        # the texts are checked above and the fitted vectorizer is ours: scikit-learn's own argument checks
        # (sklearn.config_context) were a third of a one-text transform, once per SKU
        with sklearn.config_context(skip_parameter_validation=True, assume_finite=True):
            matrix = self._vec.transform(docs).tocsr()
        out: list[SparseVector] = []
        for row in range(matrix.shape[0]):
            start, end = matrix.indptr[row], matrix.indptr[row + 1]
            idx, val = matrix.indices[start:end], matrix.data[start:end]
            order = np.argsort(idx, kind="stable")
            out.append({int(idx[k]): float(val[k]) for k in order if val[k] != 0.0})
        return out

    def _terms(self, text: str | None) -> Counter[str]:
        if text is None:
            text = ""
        if not isinstance(text, str):
            raise InputError(f"text must be a string, got {type(text).__name__}")
        if not hasattr(self, "_analyze"):
            self._analyze = self._vec.build_analyzer()
            self._idf_of = {term: self.idf[i] for term, i in self.vocabulary.items()}
        return Counter(self._analyze(text))

    def doc_vector(self, text: str | None) -> SparseVector:
        """A hit's stored sparse vector: 1 + log(tf) per term (every term, in the vocabulary or not) under
        its stable id, L2-normalised. Independent of the vocabulary's IDF: it stays valid across versions."""
        return _unit({term_id(t): 1.0 + math.log(n) for t, n in self._terms(text).items()})

    def doc_vectors(self, texts: Iterable[str | None]) -> list[SparseVector]:
        return [self.doc_vector(t) for t in texts]

    def query_vector(self, text: str | None) -> SparseVector:
        """A query's sparse vector for this version: (1 + log tf) x idf for the terms in the vocabulary,
        L2-normalised; {} when none is (dense search only)."""
        counts = self._terms(text)
        return _unit(
            {term_id(t): (1.0 + math.log(n)) * self._idf_of[t] for t, n in counts.items() if t in self._idf_of}
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": self.version,
            "params": self.params,
            "vocabulary": self.vocabulary,
            "idf": self.idf,
        }

    def save(self, path: Path | str) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_json(), sort_keys=True, ensure_ascii=False), encoding="utf-8")
        tmp.replace(path)  # atomic: a reader never sees half a vocabulary

    @classmethod
    def load(cls, path: Path | str) -> "TextVocabulary":
        """Read a saved vocabulary; ConfigError if it is unreadable or its version does not match its content."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"text vocabulary not found: {path}") from None
        except (OSError, ValueError) as exc:
            raise ConfigError(f"text vocabulary {path} is not readable JSON: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ConfigError(f"text vocabulary {path}: not a {FORMAT} file")
        try:
            vocab = cls(data["vocabulary"], data["idf"], data["params"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(f"text vocabulary {path} is malformed: {exc!r}") from None
        if vocab.version != data.get("version"):
            raise ConfigError(
                f"text vocabulary {path}: stored version {data.get('version')!r} does not match its content "
                f"({vocab.version}); the file was edited or corrupted - refit it and reindex"
            )
        return vocab

    def __repr__(self) -> str:
        return f"TextVocabulary(terms={len(self)}, version={self.version!r})"
