"""A multipart submission (new_products.csv + a zip of its images) stored under the data dir.

The folder is named by a hash of the uploaded bytes, so the same upload lands in the same folder (and an
idempotent resubmission names the same paths). Zip members are checked before anything is written:
no absolute paths, no `..`, no links, no names a file system refuses (`.`, over 255 bytes, a file where
another member needs a folder), and the unpacked total stays under the upload limit. A zip whose bytes
do not match what it declares (sizes, CRCs) is refused while unpacking; the partial folder goes at once."""

from __future__ import annotations

import hashlib
import io
import shutil
import stat
import time
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from hitline.errors import InputError

MAX_MEMBERS = 100_000
MAX_NAME_BYTES = 255  # one path component (ext4, xfs, APFS)
MAX_PATH_CHARS = 1024


def store_upload(
    root: Path, csv_bytes: bytes, zip_bytes: bytes, max_unpacked: int, csv_name: str = "new_products.csv"
) -> Path:
    """Write the CSV (new_products.csv, or a catalog's products.csv) and the zip's files under root/<hash>/
    and return that folder."""
    digest = hashlib.sha256(hashlib.sha256(csv_bytes).digest() + hashlib.sha256(zip_bytes).digest()).hexdigest()
    dest = root / digest[:32]
    if (dest / csv_name).exists():
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
        _check_name(m.filename, name)
        total += m.file_size
    _check_tree([PurePosixPath(m.filename) for m in members])
    if total > max_unpacked:
        raise InputError(f"the zip unpacks to {total:,} bytes, over the {max_unpacked:,} byte limit: split the batch")
    tmp = root / (digest[:32] + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        for m in members:
            target = tmp / m.filename
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(m) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise InputError(
            f"zip member {m.filename!r} cannot be unpacked ({e}): the zip is damaged or lies about "
            "its contents; zip the images again"
        ) from None
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise InputError(f"zip member {m.filename!r} cannot be written ({e.strerror or e}): rename it") from None
    (tmp / csv_name).write_bytes(csv_bytes)
    try:
        tmp.rename(dest)
    except OSError:  # a concurrent identical upload won the rename: same bytes, keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _check_name(raw: str, name: PurePosixPath) -> None:
    if "\x00" in raw or len(raw) > MAX_PATH_CHARS:
        raise InputError(f"zip member {raw[:80]!r}: a name over {MAX_PATH_CHARS} characters or with a NUL character")
    parts = raw.split("/")
    if not name.parts or any(p in ("", ".") for p in parts) or name.name == "new_products.csv":
        raise InputError(
            f"zip member {raw!r} is not a file name (empty, '.', or new_products.csv, which is "
            "sent as its own part): zip the image files with relative paths"
        )
    for p in parts:
        if len(p.encode()) > MAX_NAME_BYTES:
            raise InputError(f"zip member {raw[:80]!r}...: a name part is over {MAX_NAME_BYTES} bytes; shorten it")


def _check_tree(names: list[PurePosixPath]) -> None:
    """Two members that want the same path, or a file where another member needs a folder."""
    files = set()
    for n in names:
        if n in files:
            raise InputError(f"zip member {n.as_posix()!r} appears twice: keep one")
        files.add(n)
    for n in names:
        for parent in n.parents:
            if parent in files:
                raise InputError(
                    f"zip member {parent.as_posix()!r} is a file, but {n.as_posix()!r} needs it to be "
                    "a folder: rename one of them"
                )


def prune(root: Path, retention_days: float, *, part_grace_s: float = 3600.0) -> int:
    """Remove uploads older than `retention_days` under root (root/<tenant>/<hash>/), and partial unpacks
    (*.part) a crash left behind (older than part_grace_s: a younger one may be unpacking right now; a
    failed unpack removes its own at once). Returns how many folders went."""
    if not root.is_dir():
        return 0
    now = time.time()
    gone = 0
    for folder in (p for tenant in root.iterdir() if tenant.is_dir() for p in tenant.iterdir() if p.is_dir()):
        age = now - folder.stat().st_mtime
        if age > (part_grace_s if folder.name.endswith(".part") else retention_days * 86400):
            shutil.rmtree(folder, ignore_errors=True)
            gone += 1
    return gone


def discard(folder: Path) -> None:
    """An upload whose submission was refused (bad CSV, unknown preset): its files go at once."""
    shutil.rmtree(folder, ignore_errors=True)
