"""hitline/sparse.py: TF-IDF vectors for Milvus, JSON round-trip, content version."""

from __future__ import annotations

import json
import re
import math
import subprocess
import sys
from pathlib import Path

import pytest

from hitline.errors import ConfigError, InputError
from hitline.domain.sparse import TextVocabulary

TEXTS = [
    "Pink midi length dress with drawstring waist detail and flowing skirt midi_dress pink drawstring summer",
    "Green boho print maxi dress with bell sleeves and tie waist maxi_dress green boho spring",
    "Black pleated skirt with high waist and flowy drape skirt black pleated all_season",
    "Camel wool coat with belted waist and oversized collar coat wool camel winter",
]


@pytest.fixture()
def vocab() -> TextVocabulary:
    return TextVocabulary.fit(TEXTS)


def test_vectors_are_sparse_l2_normalised_int_keys(vocab: TextVocabulary):
    v = vocab.transform("pink midi dress for summer with drawstring")
    assert v and all(isinstance(k, int) and isinstance(x, float) and x > 0 for k, x in v.items())
    assert math.isclose(math.sqrt(sum(x * x for x in v.values())), 1.0, rel_tol=1e-9)
    assert all(0 <= k < len(vocab) for k in v)


def test_ranking_and_underscore_categories(vocab: TextVocabulary):
    q = vocab.transform("midi_dress drawstring summer")
    docs = vocab.transform_many(TEXTS)
    scores = [sum(q.get(k, 0.0) * x for k, x in d.items()) for d in docs]
    assert max(range(len(TEXTS)), key=scores.__getitem__) == 0
    # "midi_dress" is split, so it matches prose "midi ... dress" and the bigram "midi dress"
    terms = {t for t in vocab.vocabulary}
    assert {"midi", "dress", "midi dress", "season"} <= terms and "midi_dress" not in terms
    assert "and" not in terms and "with" not in terms  # english stop words


@pytest.mark.parametrize("text", ["", "   ", None, "the and of with", "zzzz qqqq", "\x00\x1b[31m", "💥🔥" * 50])
def test_empty_stopword_and_unknown_text_gives_empty(vocab: TextVocabulary, text):
    assert vocab.transform(text) == {}


def test_hostile_text(vocab: TextVocabulary):
    huge = "dress " * 500_000 + "<script>alert(1)</script>" + ' "); drop table x; --'
    v = vocab.transform(huge)
    assert v and math.isclose(math.sqrt(sum(x * x for x in v.values())), 1.0, rel_tol=1e-9)
    assert vocab.transform("DRESS") == vocab.transform("dress") == vocab.transform("drèss")
    with pytest.raises(InputError):
        vocab.transform(123)  # type: ignore[arg-type]


def test_fit_with_no_usable_words_is_an_input_error():
    with pytest.raises(InputError, match="vocabulary"):
        TextVocabulary.fit(["the and", "", "of"])
    with pytest.raises(InputError):
        TextVocabulary.fit([])


def test_save_load_round_trip(vocab: TextVocabulary, tmp_path: Path):
    path = tmp_path / "sub" / "vocab.json"
    vocab.save(path)
    data = json.loads(path.read_text())
    assert data["version"] == vocab.version and "idf" in data and "vocabulary" in data
    loaded = TextVocabulary.load(path)
    assert loaded.version == vocab.version
    for text in TEXTS + ["camel coat winter", "nothing known"]:
        assert loaded.transform(text) == vocab.transform(text)


def test_version_is_stable_across_processes(vocab: TextVocabulary, tmp_path: Path):
    code = (
        "import sys, json; from hitline.domain.sparse import TextVocabulary; "
        "print(TextVocabulary.fit(json.loads(sys.argv[1])).version)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(TEXTS)],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "123", "PATH": "", **_pythonpath()},
    )
    assert out.stdout.strip() == vocab.version
    assert re.fullmatch(r"[0-9a-f]{16}", vocab.version), vocab.version


def _pythonpath() -> dict[str, str]:
    return {"PYTHONPATH": str(Path(__file__).resolve().parents[2])}


def test_version_changes_with_texts(vocab: TextVocabulary):
    assert TextVocabulary.fit(TEXTS[:3]).version != vocab.version
    assert TextVocabulary.fit(TEXTS + ["red blouse"]).version != vocab.version
    assert TextVocabulary.fit(list(TEXTS)).version == vocab.version


def test_tampered_or_broken_file_is_refused(vocab: TextVocabulary, tmp_path: Path):
    path = tmp_path / "vocab.json"
    vocab.save(path)
    data = json.loads(path.read_text())
    data["idf"][0] += 0.5
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="does not match"):
        TextVocabulary.load(path)
    path.write_text("{not json")
    with pytest.raises(ConfigError):
        TextVocabulary.load(path)
    path.write_text(json.dumps({"format": "hitline-tfidf-v1", "vocabulary": {"a": 5}, "idf": [1.0], "params": {}}))
    with pytest.raises(ConfigError):
        TextVocabulary.load(path)
    with pytest.raises(ConfigError, match="not found"):
        TextVocabulary.load(tmp_path / "missing.json")


def test_stored_vectors_do_not_depend_on_the_vocabulary_and_the_query_carries_its_idf() -> None:
    """A hit's stored vector is the same under two vocabularies (an update need not rewrite it); each
    version's IDF weighs the query, so a rare term of that version outweighs a common one."""
    v1, v2 = TextVocabulary.fit(TEXTS), TextVocabulary.fit(TEXTS + ["velvet cape", "velvet dress"])
    assert v1.version != v2.version
    assert v1.doc_vector(TEXTS[0]) == v2.doc_vector(TEXTS[0])
    doc = v1.doc_vector(TEXTS[0])
    assert math.isclose(math.sqrt(sum(x * x for x in doc.values())), 1.0, rel_tol=1e-9)
    q = v1.query_vector("pink dress")  # "dress" is in 2 of 4 texts, "pink" in 1: pink weighs more
    from hitline.domain.sparse import term_id

    assert q[term_id("pink")] > q[term_id("dress")]
    assert v1.query_vector("zzzz qqqq") == {} and v1.query_vector(None) == {}
    docs = v1.doc_vectors(TEXTS)
    scores = [sum(q.get(k, 0.0) * x for k, x in d.items()) for d in docs]
    assert max(range(len(TEXTS)), key=scores.__getitem__) == 0
