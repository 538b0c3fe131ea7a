"""A multipart submission (new_products.csv + a zip of its images) stored under the data dir.

The folder is named by a hash of the uploaded bytes, so the same upload lands in the same folder (and an
idempotent resubmission names the same paths). Zip members are checked before anything is written:
no absolute paths, no `..`, no links, and the unpacked total stays under the upload limit."""

from __future__ import annotations

import hashlib
import io
import shutil
import stat
import zipfile
from pathlib import Path, PurePosixPath

from hitline.errors import InputError

MAX_MEMBERS = 100_000


def store_upload(root: Path, csv_bytes: bytes, zip_bytes: bytes, max_unpacked: int) -> Path:
    """Write new_products.csv and the zip's files under root/<hash>/ and return that folder."""
    digest = hashlib.sha256(hashlib.sha256(csv_bytes).digest() + hashlib.sha256(zip_bytes).digest()).hexdigest()
    dest = root / digest[:32]
    if (dest / "new_products.csv").exists():
        return dest
    try:
        archive = zipfile.ZipFile(io.BytesIO(zip_bytes))
    except zipfile.BadZipFile:
        raise InputError("images is not a zip file: send the flat-lays as one .zip (paths as in image_path)") from None
    members = [m for m in archive.infolist() if not m.is_dir()]
    if len(members) > MAX_MEMBERS:
        raise InputError(f"the zip has {len(members)} files; at most {MAX_MEMBERS} per batch")
    total = 0
    for m in members:
        name = PurePosixPath(m.filename)
        if name.is_absolute() or ".." in name.parts or "\\" in m.filename:
            raise InputError(f"zip member {m.filename!r} points outside the upload: use relative paths")
        if stat.S_ISLNK(m.external_attr >> 16):
            raise InputError(f"zip member {m.filename!r} is a symbolic link: zip the image files themselves")
        total += m.file_size
    if total > max_unpacked:
        raise InputError(f"the zip unpacks to {total:,} bytes, over the {max_unpacked:,} byte limit: split the batch")
    tmp = root / (digest[:32] + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for m in members:
        target = tmp / m.filename
        target.parent.mkdir(parents=True, exist_ok=True)
        with archive.open(m) as src, open(target, "wb") as out:
            shutil.copyfileobj(src, out)
    (tmp / "new_products.csv").write_bytes(csv_bytes)
    try:
        tmp.rename(dest)
    except OSError:  # a concurrent identical upload won the rename: same bytes, keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
    return dest
