"""Which files the API may serve, and as what.

A batch was given three folders (its catalog, its new products - an upload's folder for an upload - and
its outputs). A path is served only when it resolves (symlinks followed) inside one of them, and only
when its bytes are an image: the content type comes from the bytes, never from the name, so an HTML
or text file cannot come back from the dashboard's origin whatever it is called. The one page served
from a batch's outputs is the report hitline wrote itself (OUT/<batch>/report.html), under a
Content-Security-Policy that runs no script."""

from __future__ import annotations

from pathlib import Path

from fastapi.responses import FileResponse

from db.models import Batch
from hitline.jobs.control import NotFound

__all__ = ["batch_roots", "inside", "image_type", "serve_image", "serve_report", "REPORT_CSP"]

# what each image format's first bytes are (PNG, JPEG, GIF, WebP): all the line reads or writes
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)
# a report is a static page: images from its own folder, its own inline styles, no script at all
REPORT_CSP = (
    "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'; sandbox"
)


def batch_roots(b: Batch) -> list[Path]:
    """The folders a batch was given, resolved: files outside them are never served for it."""
    return [Path(b.catalog_dir).resolve(), Path(b.new_dir).resolve(), (Path(b.out_dir) / b.id).resolve()]


def inside(path: str | Path, roots: list[Path]) -> Path | None:
    """`path` resolved (symlinks followed), if that lies inside one of `roots`; else None."""
    try:
        target = Path(path).resolve()
    except (OSError, RuntimeError, ValueError):  # a symlink loop, a NUL byte
        return None
    return target if any(target.is_relative_to(r) for r in roots) else None


def image_type(path: Path) -> str | None:
    """The image content type the file's bytes have, or None when they are not an image we serve."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        return None
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return next((mime for sig, mime in _SIGNATURES if head.startswith(sig)), None)


def _checked(path: str | Path, roots: list[Path], what: str) -> Path:
    target = inside(path, roots)
    if target is None:
        # the same answer as a missing file: a caller learns nothing about what lies outside
        raise NotFound(f"{what} is not a file of this batch")
    if not target.is_file():
        raise NotFound(f"{what} is not on disk (yet): the job may not have reached that stage")
    return target


def serve_image(path: str | Path, roots: list[Path], what: str) -> FileResponse:
    """The file at `path` as an image, if it lies inside `roots` and its bytes are an image."""
    target = _checked(path, roots, what)
    mime = image_type(target)
    if mime is None:
        raise NotFound(f"{what} is not an image: the API serves only images (PNG, JPEG, GIF, WebP)")
    return FileResponse(target, media_type=mime)


def serve_report(b: Batch) -> FileResponse:
    """The batch's own report.html, with a policy that runs no script and loads nothing from elsewhere."""
    from hitline.jobs.context import get_runtime
    from hitline.jobs.report import report_when_finished

    report_when_finished(get_runtime(), b.id)  # a finished batch's report, written now if no task wrote it
    out = (Path(b.out_dir) / b.id).resolve()
    target = _checked(out / "report.html", [out], "report.html")
    return FileResponse(target, media_type="text/html; charset=utf-8", headers={"Content-Security-Policy": REPORT_CSP})
