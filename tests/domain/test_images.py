"""hitline.domain.images.file_sha256: read once per file version, never stale after a change."""

from __future__ import annotations

import builtins
import hashlib
import os
from pathlib import Path

from hitline.domain import images


def test_file_sha256_reads_a_file_once_per_version(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    f = tmp_path / "hit.jpg"
    f.write_bytes(b"first version")
    images._sha256_of.cache_clear()
    opened = []
    real_open = builtins.open
    monkeypatch.setattr(builtins, "open", lambda p, *a, **k: (opened.append(str(p)), real_open(p, *a, **k))[1])
    first = images.file_sha256(f)
    assert images.file_sha256(f) == first == hashlib.sha256(b"first version").hexdigest()
    assert opened.count(str(f)) == 1  # the second SKU rendered with this hit does not read it again
    monkeypatch.setattr(builtins, "open", real_open)
    f.write_bytes(b"second version!")  # another size
    assert images.file_sha256(f) == hashlib.sha256(b"second version!").hexdigest()
    f.write_bytes(b"third  version!")  # same size, a newer mtime
    os.utime(f, ns=(10**18, 10**18))
    assert images.file_sha256(f) == hashlib.sha256(b"third  version!").hexdigest()
