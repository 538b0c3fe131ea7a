"""Review, webhooks and export over HTTP: thin routes over hitline.jobs.review, hitline.jobs.webhooks and
hitline.jobs.export (the CLI and the dashboard call the same functions)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import FileResponse, StreamingResponse
from pydantic import Field

from hitline.api import present, schemas
from hitline.api.deps import SessionDep, SettingsDep, TenantDep, TokenDep, tenant_scope
from hitline.jobs import control, review, webhooks
from hitline.jobs.requests import ReviewRequest, WebhookRequest

ERRORS = {
    401: {"model": schemas.Error},
    404: {"model": schemas.Error},
    409: {"model": schemas.Error},
    422: {"model": schemas.Error},
}
# every route: role and tenant checked once, as for routes.py (deps.tenant_scope)
router = APIRouter(responses={**ERRORS, 403: {"model": schemas.Error}}, dependencies=[Depends(tenant_scope)])


@router.get(
    "/batches/{batch_id}/outputs",
    response_model=schemas.OutputPage,
    tags=["review"],
    summary="A batch's outputs with their review state, filtered, one page at a time",
)
def list_outputs(
    batch_id: str,
    s: SessionDep,
    _t: TokenDep,
    review_state: str | None = Query(None, alias="review"),
    gate: str | None = None,
    preset: str | None = None,
    sku: str | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> schemas.OutputPage:
    out_dir = control.get_batch(s, batch_id).out_dir
    rows, nxt = review.list_outputs(
        s,
        batch_id,
        review.OutputFilter(review=review_state, gate=gate, preset=preset, item_id=sku),
        cursor=cursor,
        limit=limit,
    )
    history = review.decisions_of(s, [o.id for o in rows])
    return schemas.OutputPage(
        outputs=[present.output_row(o, out_dir, history[o.id]) for o in rows],
        counts=review.review_counts(s, batch_id),
        next_cursor=nxt,
    )


def _decide(s: SessionDep, batch_id: str, body: ReviewRequest, by: str) -> schemas.Reviewed:
    from hitline.jobs.context import get_runtime
    from tasks.review import after_review

    s.commit()  # end this request's read: the verb writes in its own transaction (SQLite has one writer)
    done = review.review(
        get_runtime(), batch_id, body.to_filter(), body.decision, by=by, note=body.note, after=after_review
    )
    return schemas.Reviewed(
        batch_id=batch_id, decision=done.decision, changed=done.changed, skipped=done.skipped, message=done.message
    )


@router.post(
    "/batches/{batch_id}/review",
    response_model=schemas.Reviewed,
    tags=["review"],
    summary="Approve, reject or redo (with a note) outputs of a batch: by ids or by filter",
)
def review_batch(batch_id: str, body: ReviewRequest, s: SessionDep, t: TokenDep) -> schemas.Reviewed:
    return _decide(s, batch_id, body, t.name)


@router.post(
    "/outputs/{output_id}/review",
    response_model=schemas.Reviewed,
    tags=["review"],
    summary="Approve, reject or redo (with a note) one output",
)
def review_output(output_id: int, body: ReviewRequest, s: SessionDep, t: TokenDep) -> schemas.Reviewed:
    from db.models import Output

    o = s.get(Output, output_id)
    if o is None:
        raise control.NotFound(f"no output {output_id}: GET /batches/{{id}}/outputs lists a batch's outputs")
    return _decide(s, o.batch_id, body.model_copy(update={"output_ids": [output_id]}), t.name)


# --- webhooks --------------------------------------------------------------------------------------


def _webhook_out(r: webhooks.Registered | object, secret: str | None = None) -> schemas.WebhookOut:
    return schemas.WebhookOut(
        id=r.id,
        url=r.url,
        batch_id=r.batch_id,
        events=list(r.events),  # type: ignore[attr-defined]
        secret=secret,
    )


@router.post(
    "/batches/{batch_id}/webhooks",
    response_model=schemas.WebhookOut,
    status_code=201,
    tags=["webhooks"],
    summary="Send this batch's events to a URL (the signing secret is in the answer, once)",
)
def add_batch_webhook(
    batch_id: str, body: WebhookRequest, s: SessionDep, settings: SettingsDep, tenant: TenantDep, _t: TokenDep
) -> schemas.WebhookOut:
    r = webhooks.register(s, settings, body.url, batch_id=batch_id, events=body.events, tenant=tenant)
    return _webhook_out(r, r.secret)


@router.post(
    "/webhooks",
    response_model=schemas.WebhookOut,
    status_code=201,
    tags=["webhooks"],
    summary="Send every batch's events to a URL (the signing secret is in the answer, once)",
)
def add_webhook(
    body: WebhookRequest, s: SessionDep, settings: SettingsDep, _t: TokenDep, tenant: TenantDep
) -> schemas.WebhookOut:
    r = webhooks.register(s, settings, body.url, events=body.events, tenant=tenant)
    return _webhook_out(r, r.secret)


@router.get("/webhooks", response_model=list[schemas.WebhookOut], tags=["webhooks"], summary="Live endpoints")
def list_webhooks(
    s: SessionDep, _t: TokenDep, tenant: TenantDep, batch_id: str | None = None
) -> list[schemas.WebhookOut]:
    return [_webhook_out(e) for e in webhooks.endpoints(s, batch_id, tenant)]


@router.delete("/webhooks/{endpoint_id}", status_code=204, tags=["webhooks"], summary="Stop sending to an endpoint")
def remove_webhook(endpoint_id: int, s: SessionDep, _t: TokenDep) -> None:
    webhooks.remove(s, endpoint_id)


@router.get(
    "/webhooks/deliveries",
    response_model=list[schemas.DeliveryOut],
    tags=["webhooks"],
    summary="Deliveries, newest first: pending, delivered, or dead (redeliver those)",
)
def list_deliveries(
    s: SessionDep,
    _t: TokenDep,
    tenant: TenantDep,
    batch_id: str | None = None,
    state: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[schemas.DeliveryOut]:
    return [
        schemas.DeliveryOut(**d)
        for d in webhooks.deliveries(s, batch_id=batch_id, state=state, limit=limit, tenant=tenant)
    ]


@router.post(
    "/webhooks/redeliver",
    response_model=schemas.Enqueued,
    tags=["webhooks"],
    summary="Send dead deliveries again (of a batch, or these ids)",
)
def redeliver(
    s: SessionDep,
    _t: TokenDep,
    tenant: TenantDep,
    batch_id: Annotated[str | None, Query(max_length=64)] = None,
    # ids past 64 bits are no delivery's (a 422, not the database's OverflowError)
    delivery_id: Annotated[
        list[Annotated[int, Field(ge=1, le=control.MAX_ID)]] | None, Query(max_length=10_000)
    ] = None,
) -> schemas.Enqueued:
    n = webhooks.redeliver(s, batch_id=batch_id, delivery_ids=delivery_id, tenant=tenant)
    s.commit()
    from tasks.webhooks import kick

    kick()
    return schemas.Enqueued(batch_id=batch_id or "", jobs=n, message=f"{n} dead deliveries sent again")


# --- images for the review grid --------------------------------------------------------------------


def _thumb(s: SessionDep, settings: SettingsDep, batch_id: str, path: Path, w: int | None, what: str) -> FileResponse:
    """The image (only inside the batch's folders and only an image: hitline.api.files), or a JPEG at most
    w px wide made once and kept under the data dir (a 2K PNG per card would make a 50-card grid slow)."""
    from hitline.api.files import batch_roots, serve_image

    resp = serve_image(path, batch_roots(control.get_batch(s, batch_id)), what)
    if not w:
        return resp
    path = Path(resp.path)
    st = path.stat()
    key = hashlib.sha256(f"{path.resolve()}|{st.st_mtime_ns}|{st.st_size}|{w}".encode()).hexdigest()[:32]
    dest = Path(settings.data_dir) / "thumbs" / f"{key}.jpg"
    if not dest.exists():
        from PIL import Image

        dest.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(path) as im:
            im.thumbnail((w, w * 4))
            tmp = dest.with_suffix(f".{os.getpid()}.part")
            im.convert("RGB").save(tmp, "JPEG", quality=85)
            tmp.replace(dest)
    return FileResponse(dest, media_type="image/jpeg")


def _output(s: SessionDep, output_id: int):  # noqa: ANN202
    from db.models import Output

    o = s.get(Output, output_id)
    if o is None:
        raise control.NotFound(f"no output {output_id}: GET /batches/{{id}}/outputs lists a batch's outputs")
    return o


@router.get(
    "/outputs/{output_id}/image",
    tags=["files"],
    response_class=FileResponse,
    summary="An output's current take (w: a JPEG at most w px wide)",
)
def output_image(
    output_id: int,
    s: SessionDep,
    settings: SettingsDep,
    _t: TokenDep,
    w: Annotated[int | None, Query(ge=16, le=2048)] = None,
) -> FileResponse:
    o = _output(s, output_id)
    return _thumb(s, settings, o.batch_id, Path(o.path), w, f"output {output_id}")


@router.get(
    "/outputs/{output_id}/flatlay",
    tags=["files"],
    response_class=FileResponse,
    summary="The flat-lay an output was made from (w: a JPEG at most w px wide)",
)
def output_flatlay(
    output_id: int,
    s: SessionDep,
    settings: SettingsDep,
    _t: TokenDep,
    w: Annotated[int | None, Query(ge=16, le=2048)] = None,
) -> FileResponse:
    from db.models import Job

    o = _output(s, output_id)
    job = s.get(Job, o.job_id)
    return _thumb(s, settings, o.batch_id, Path((job.row or {}).get("image_path", "")), w, "the flat-lay")


# --- export ----------------------------------------------------------------------------------------


@router.get(
    "/batches/{batch_id}/export",
    tags=["export"],
    response_class=StreamingResponse,
    summary="A zip for a marketplace: approved outputs (every passed one without review), provenance JSON "
    "beside each image",
    responses={200: {"content": {"application/zip": {}}}},
)
def export(
    batch_id: str,
    s: SessionDep,
    settings: SettingsDep,
    _t: TokenDep,
    marketplace: str = Query(..., alias="for", description="amazon | shopify | folder"),
) -> StreamingResponse:
    from hitline.jobs.export import plan_export, zip_stream

    plan = plan_export(s, settings, batch_id, marketplace)  # a bad request is answered before any byte is sent
    return StreamingResponse(
        zip_stream(plan),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{batch_id}-{marketplace}.zip"'},
    )
