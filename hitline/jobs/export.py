"""Export: a batch's approved outputs (or, when the batch has no review, every output the gate passed) as
one zip a marketplace or a shop takes, streamed, with each image's provenance as JSON beside it.

    amazon   <SKU>.MAIN.jpg, <SKU>.PT01.jpg ...: JPEG, sRGB, long side 1000-10000 px, under 10 MB
    shopify  products.csv (Handle, Image Src, Image Position, Image Alt Text; URLs under the configured
             public base URL) and images/<SKU>-<n>.png
    folder   <SKU>/<preset>.png as rendered

Alt text comes from the style analysis (garment, colour, scene). plan_export() checks the request (one
sentence when it cannot be done); zip_stream() writes the zip a piece at a time.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db import crud
from db.models import Job, Output
from hitline.config import Settings
from hitline.errors import InputError
from hitline.jobs.options import BatchOptions
from hitline.jobs.control import Conflict, get_batch
from hitline.jobs.results import AnalyzeResult, read
from hitline.jobs.review import decisions_of

__all__ = ["MARKETPLACES", "ExportItem", "ExportPlan", "plan_export", "zip_stream", "alt_text", "AMAZON_LIMITS"]

MARKETPLACES = ("amazon", "shopify", "folder")
# Amazon's image requirements (seller help): JPEG/PNG/TIFF/GIF, at least 1000 px on the longest side for
# zoom (500 px at the least), at most 10,000 px, files up to 10 MB; sRGB
AMAZON_LIMITS = {"min_long_side": 1000, "max_long_side": 10_000, "max_bytes": 10 * 1024 * 1024}
SHOPIFY_COLUMNS = ("Handle", "Image Src", "Image Position", "Image Alt Text")


@dataclass
class ExportItem:
    name: str  # the image's name in the zip
    source: Path
    sku: str
    preset: str
    position: int  # 1 = the main image of its SKU
    alt: str
    provenance: dict[str, Any]


@dataclass
class ExportPlan:
    batch_id: str
    marketplace: str
    items: list[ExportItem]
    skipped: list[dict[str, str]] = field(default_factory=list)  # outputs left out, with why
    public_base_url: str = ""


def _colour_name(hex_colour: str) -> str | None:
    """The nearest plain colour word for a palette entry (#rrggbb)."""
    names = {
        "black": (20, 20, 20),
        "white": (245, 245, 245),
        "grey": (128, 128, 128),
        "red": (200, 30, 40),
        "orange": (240, 130, 30),
        "yellow": (240, 210, 50),
        "green": (40, 140, 60),
        "blue": (40, 80, 190),
        "navy": (25, 35, 90),
        "purple": (120, 50, 150),
        "pink": (240, 150, 180),
        "brown": (120, 75, 40),
        "beige": (220, 200, 170),
        "cream": (245, 235, 210),
    }
    try:
        rgb = tuple(int(hex_colour.lstrip("#")[i : i + 2], 16) for i in (0, 2, 4))
    except ValueError:
        return None
    return min(names, key=lambda n: sum((a - b) ** 2 for a, b in zip(names[n], rgb)))


def alt_text(row: dict[str, Any], style: dict[str, Any] | None, preset: str) -> str:
    """'Casual dress, navy, studio set with soft light' from the SKU's row and its style analysis (the
    garment and its colour come first: that is what a shopper using a screen reader needs)."""
    garment = " ".join(w for w in (row.get("style"), row.get("category")) if w).strip() or "product"
    words = [garment[:1].upper() + garment[1:]]
    style = style or {}
    colour = _colour_name((style.get("palette") or [""])[0]) if style.get("palette") else None
    if colour:
        words.append(colour)
    scene = "on a white background" if preset == "amazon_main" else style.get("scene")
    if scene:
        words.append(str(scene).strip().rstrip("."))
    return ", ".join(words)[:500]


def _handle(sku: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", sku.lower()).strip("-") or "product"


def _safe(sku: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", sku) or "product"


def plan_export(s: Session, settings: Settings, batch_id: str, marketplace: str) -> ExportPlan:
    """What the export holds, or one sentence why it cannot be made."""
    if marketplace not in MARKETPLACES:
        raise InputError(f"unknown marketplace {marketplace!r}: export --for amazon, shopify or folder")
    b = get_batch(s, batch_id)
    open_jobs = (
        s.scalar(select(func.count()).select_from(Job).where(Job.batch_id == batch_id, Job.state.in_(crud.OPEN))) or 0
    )
    redoing = (
        s.scalar(select(func.count()).select_from(Output).where(Output.batch_id == batch_id, Output.review == "redo"))
        or 0
    )
    if open_jobs or redoing:
        raise Conflict(
            f"batch {batch_id} is still running ({open_jobs} jobs open, {redoing} new takes being "
            "rendered): export it when it has finished"
        )
    if marketplace == "shopify" and not settings.public_base_url:
        raise InputError(
            "a Shopify CSV needs the images' public address: set HITLINE_PUBLIC_BASE_URL to where "
            "the zip's images/ folder will be served"
        )
    opts = BatchOptions.read(b.options)
    reviewed = opts.review == "all"
    # with review: what a person approved; without: what needs no person (the gate passed it) or was approved
    wanted = ("approved",) if reviewed else ("approved", "none")
    rows = list(
        s.execute(
            select(Output, Job.row, Job.result)
            .join(Job, Job.id == Output.job_id)
            .where(Output.batch_id == batch_id, Output.review.in_(wanted))
            .order_by(Output.item_id, Output.id)
        )
    )
    if not rows:
        raise Conflict(
            f"batch {batch_id} has no {'approved' if reviewed else 'approved or passed'} output to "
            f"export: approve some first (`hitline review {batch_id} --approve ...`)"
        )
    order = list(opts.presets)
    history = decisions_of(s, [o.id for o, _, _ in rows])
    plan = ExportPlan(batch_id, marketplace, [], public_base_url=settings.public_base_url.rstrip("/"))
    by_sku: dict[str, list[tuple[Output, dict[str, Any], dict[str, Any]]]] = {}
    for o, row, result in rows:
        by_sku.setdefault(o.item_id, []).append((o, row or {}, result or {}))
    for sku, outs in by_sku.items():
        # amazon_main first (the MAIN image), then the batch's preset order
        outs.sort(
            key=lambda t: (
                t[0].preset != "amazon_main",
                order.index(t[0].preset) if t[0].preset in order else len(order),
                t[0].id,
            )
        )
        n = 0
        for o, row, result in outs:
            analysis = read(result, AnalyzeResult)
            style = analysis.style.model_dump() if analysis else None
            prov = {
                **(o.provenance or {}),
                "output_id": o.id,
                "sku": sku,
                "preset": o.preset,
                "take": o.take,
                "cost_usd": o.cost_usd,
                "gate": o.gate,
                "gate_reasons": list(o.reasons or []),
                "review": o.review,
                "decisions": history[o.id],
            }
            if marketplace == "amazon":
                long_side = max((o.provenance or {}).get("width") or 0, (o.provenance or {}).get("height") or 0)
                if long_side and long_side < AMAZON_LIMITS["min_long_side"]:
                    plan.skipped.append(
                        {
                            "sku": sku,
                            "preset": o.preset,
                            "why": f"{long_side} px is under Amazon's {AMAZON_LIMITS['min_long_side']} px",
                        }
                    )
                    continue
                name = f"{_safe(sku)}.{'MAIN' if n == 0 else f'PT{n:02d}'}.jpg"
            elif marketplace == "shopify":
                name = f"images/{_safe(sku)}-{n + 1}.png"
            else:
                name = f"{_safe(sku)}/{o.preset}.png"
            n += 1
            plan.items.append(ExportItem(name, Path(o.path), sku, o.preset, n, alt_text(row, style, o.preset), prov))
    if not plan.items:
        raise Conflict(
            f"batch {batch_id} has nothing {marketplace} accepts: "
            + "; ".join(f"{k['sku']} {k['preset']}: {k['why']}" for k in plan.skipped[:3])
        )
    return plan


def _amazon_jpeg(path: Path) -> bytes:
    """JPEG in sRGB (the profile embedded), within Amazon's size limits."""
    from PIL import Image, ImageCms

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    with Image.open(path) as im:
        rgb = im.convert("RGB")
    if max(rgb.size) > AMAZON_LIMITS["max_long_side"]:
        rgb.thumbnail((AMAZON_LIMITS["max_long_side"],) * 2)
    for quality in (92, 85, 75, 65):
        buf = io.BytesIO()
        rgb.save(buf, "JPEG", quality=quality, icc_profile=srgb, optimize=True)
        if buf.tell() <= AMAZON_LIMITS["max_bytes"]:
            return buf.getvalue()
    raise InputError(f"{path.name} stays over Amazon's 10 MB even as a quality-65 JPEG")


class _Pipe(io.RawIOBase):
    """A write-only stream zipfile writes into; what it wrote is taken out piece by piece."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.pos = 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        self.buf += b
        self.pos += len(b)
        return len(b)

    def tell(self) -> int:
        return self.pos

    def take(self) -> bytes:
        out, self.buf = bytes(self.buf), bytearray()
        return out


def zip_stream(plan: ExportPlan) -> Iterator[bytes]:
    """The zip, one image (and its provenance) at a time: an export of thousands of images is never held
    in memory whole."""
    pipe = _Pipe()
    csv_rows = []
    with zipfile.ZipFile(pipe, "w", compression=zipfile.ZIP_STORED) as z:  # images are compressed already
        for it in plan.items:
            data = _amazon_jpeg(it.source) if plan.marketplace == "amazon" else it.source.read_bytes()
            z.writestr(it.name, data)
            z.writestr(
                it.name.rsplit(".", 1)[0] + ".provenance.json",
                json.dumps({**it.provenance, "file": it.name, "alt": it.alt}, indent=2, default=str),
                compress_type=zipfile.ZIP_DEFLATED,
            )
            csv_rows.append(it)
            yield pipe.take()
        if plan.marketplace == "shopify":
            import csv

            text = io.StringIO()
            w = csv.writer(text)
            w.writerow(SHOPIFY_COLUMNS)
            for it in csv_rows:
                w.writerow([_handle(it.sku), f"{plan.public_base_url}/{plan.batch_id}/{it.name}", it.position, it.alt])
            z.writestr("products.csv", text.getvalue(), compress_type=zipfile.ZIP_DEFLATED)
        z.writestr(
            "export.json",
            json.dumps(
                {
                    "batch_id": plan.batch_id,
                    "for": plan.marketplace,
                    "images": len(plan.items),
                    "skipped": plan.skipped,
                },
                indent=2,
            ),
            compress_type=zipfile.ZIP_DEFLATED,
        )
    yield pipe.take()
