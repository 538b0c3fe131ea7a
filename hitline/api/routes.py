"""The JSON API: batches (submit, list, show, retry, cancel, resume), jobs, and output files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, Response
from pydantic import ValidationError

from hitline.api import files, present, schemas
from hitline.api.deps import SessionDep, SettingsDep, TenantDep, TokenDep, tenant_scope
from hitline.api.uploads import discard, prune, store_upload
from hitline.config import Settings
from hitline.errors import HitlineError, InputError
from hitline.jobs import control, verbs
from hitline.jobs.context import get_runtime
from hitline.jobs.requests import BatchRequest, RetryFilter
from hitline.jobs.results import RetrieveResult, read
from hitline.jobs.shared import catalog_uploads_root, check_shared, uploads_root
from tasks.chains import send

ERRORS = {
    401: {"model": schemas.Error},
    404: {"model": schemas.Error},
    409: {"model": schemas.Error},
    413: {"model": schemas.Error},
    422: {"model": schemas.Error},
}
# every route: the token's role allows the method, every id named is the token's tenant's (deps.tenant_scope)
router = APIRouter(responses={**ERRORS, 403: {"model": schemas.Error}}, dependencies=[Depends(tenant_scope)])
JobId = Annotated[int, PathParam(ge=1, le=control.MAX_ID, description="a job id (GET /batches/{id}/jobs)")]
BatchId = Annotated[str, PathParam(max_length=64, description="a batch id (GET /batches)")]
Filter = Annotated[str | None, Query(max_length=1000)]
IdempotencyKey = Annotated[
    str | None, Header(alias="Idempotency-Key", max_length=200, description="same key + same body = the same batch")
]


def _submit(settings: Settings, req: BatchRequest, idempotency_key: str | None, tenant: str) -> schemas.Submitted:
    sub = verbs.submit(
        get_runtime(),
        req.catalog,
        req.new,
        settings.out_dir_for_api(),
        send=send,
        top_k=req.top_k,
        min_sales=req.min_sales,
        presets=req.presets,
        budget_usd=req.budget_usd,
        idempotency_key=idempotency_key,
        review=req.review,
        draft=req.draft,
        tenant=tenant,
        locales=req.locales,
        text_mode=req.text_mode,
        missing_translation=req.missing_translation,
        mode=req.mode,
        escalate=req.escalate,
    )
    return schemas.Submitted(
        batch_id=sub.batch_id,
        catalog_products=sum(map(len, sub.hit_chunks)),
        new_skus=len(sub.sku_jobs),
        rejected_rows=sub.rejected,
        existing=sub.existing,
        links={"batch": f"/batches/{sub.batch_id}", "dashboard": f"/ui/batches/{sub.batch_id}"},
    )


_UPLOAD_SCHEMA = {
    "type": "object",
    "required": ["catalog", "new_products", "images"],
    "properties": {
        "catalog": {"type": "string", "description": "hit catalog folder on shared storage"},
        "new_products": {"type": "string", "format": "binary", "description": "new_products.csv"},
        "images": {"type": "string", "format": "binary", "description": "zip of the flat-lays, paths as in image_path"},
        "top_k": {"type": "integer"},
        "min_sales": {"type": "integer"},
        "presets": {"type": "string", "description": "comma-separated preset names"},
        "locales": {"type": "string", "description": "comma-separated locales, e.g. en-US,de-DE"},
        "text_mode": {"type": "string", "enum": ["overlay", "model"]},
        "missing_translation": {"type": "string", "enum": ["refuse", "translate"]},
        "mode": {"type": "string", "enum": ["direct", "staged"]},
        "escalate": {"type": "string", "enum": ["pro", "none"]},
        "budget_usd": {"type": "number"},
    },
}


@router.post(
    "/batches",
    status_code=201,
    response_model=schemas.Submitted,
    tags=["batches"],
    summary="Submit a batch: JSON naming shared folders, or a multipart upload",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": BatchRequest.model_json_schema()},
                "multipart/form-data": {"schema": _UPLOAD_SCHEMA},
            },
        }
    },
)
async def submit_batch(
    request: Request,
    response: Response,
    settings: SettingsDep,
    tenant: TenantDep,
    idempotency_key: IdempotencyKey = None,
) -> schemas.Submitted:
    upload = None
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        req = await _from_upload(request, settings, tenant)
        upload = Path(req.new)
    else:
        try:
            req = BatchRequest.model_validate_json(await request.body())
        except ValidationError as e:
            raise RequestValidationError(e.errors()) from None
    # the same rule as the Celery contract's: shared folders, the tenant's uploads, or its catalog by name
    await run_in_threadpool(check_shared, settings, tenant, catalog=req.catalog, new=req.new)
    try:
        sub = await run_in_threadpool(_submit, settings, req, idempotency_key, tenant)
    except HitlineError:
        if upload is not None:  # a refused upload's files go now (unless an earlier batch uses the same bytes)
            await run_in_threadpool(_discard_unused, settings, upload)
        raise
    if sub.existing:
        response.status_code = 200  # the batch an earlier request with this key created
    return sub


def _discard_unused(settings: Settings, folder: Path) -> None:
    from sqlalchemy import select

    from db.models import Batch
    from db.session import session_scope

    with session_scope(settings.db_url()) as s:
        used = s.scalar(select(Batch.id).where(Batch.new_dir == str(folder.resolve())).limit(1))
    if used is None:
        discard(folder)


async def _from_upload(request: Request, settings: Settings, tenant: str) -> BatchRequest:
    form = await request.form(max_part_size=settings.api_max_upload_bytes)
    missing = [k for k in ("catalog", "new_products", "images") if k not in form]
    if missing:
        raise InputError(
            f"the upload lacks {', '.join(missing)}: send catalog (a folder path), new_products "
            "(new_products.csv) and images (a zip)"
        )
    files = {k: form[k] for k in ("new_products", "images")}
    if any(isinstance(v, str) for v in files.values()):
        raise InputError("new_products and images must be files (multipart file parts)")
    csv_bytes, zip_bytes = await files["new_products"].read(), await files["images"].read()
    await run_in_threadpool(check_shared, settings, tenant, catalog=str(form["catalog"]))
    # each tenant's uploads in its own folder; old ones and crashed partial unpacks go first
    await run_in_threadpool(prune, settings.data_dir.resolve() / "uploads", settings.upload_retention_days)
    folder = await run_in_threadpool(
        store_upload,
        uploads_root(settings, tenant),
        csv_bytes,
        zip_bytes,
        settings.api_max_upload_bytes,
    )
    fields = {
        k: form[k]
        for k in ("top_k", "min_sales", "budget_usd", "text_mode", "missing_translation", "mode", "escalate")
        if form.get(k) not in (None, "")
    }
    locales = [p.strip() for p in str(form.get("locales") or "").split(",") if p.strip()]
    presets = str(form.get("presets") or "")
    try:
        return BatchRequest.model_validate(
            {
                "catalog": str(form["catalog"]),
                "new": str(folder),
                **fields,
                "presets": [p.strip() for p in presets.split(",") if p.strip()] or None,
                "locales": locales or None,
            }
        )
    except ValidationError as e:
        raise RequestValidationError(e.errors()) from None


@router.get("/batches", response_model=schemas.BatchList, tags=["batches"], summary="Batches, newest first")
def list_batches(
    s: SessionDep, tenant: TenantDep, cursor: Filter = None, limit: Annotated[int, Query(ge=1, le=200)] = 20
) -> schemas.BatchList:
    rows, nxt = control.list_batches(s, cursor=cursor, limit=limit, tenant=tenant)
    return schemas.BatchList(batches=[present.batch(control.summary(s, b.id)) for b in rows], next_cursor=nxt)


@router.get(
    "/batches/{batch_id}",
    response_model=schemas.Batch,
    tags=["batches"],
    summary="Counts by stage and state, failures grouped by reason, cost and budget",
)
def get_batch(batch_id: BatchId, s: SessionDep, _t: TokenDep) -> schemas.Batch:
    return present.batch(control.summary(s, batch_id))


@router.get(
    "/batches/{batch_id}/jobs",
    response_model=schemas.JobPage,
    tags=["jobs"],
    summary="A batch's jobs, filtered, one page at a time (cursor)",
)
def list_jobs(
    batch_id: BatchId,
    s: SessionDep,
    _t: TokenDep,
    state: Filter = None,
    stage: Filter = None,
    reason: str | None = Query(None, max_length=1000, description="substring of the reason, case-insensitive"),
    reason_group: str | None = Query(None, max_length=1000, description="a failure group label from GET /batches/{id}"),
    kind: str | None = Query(None, description="sku | hit"),
    cursor: Filter = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> schemas.JobPage:
    page = control.list_jobs(
        s,
        batch_id,
        control.JobFilter(state=state, stage=stage, reason=reason, kind=kind, reason_group=reason_group),
        cursor=cursor,
        limit=limit,
    )
    return schemas.JobPage(jobs=[present.job_row(j) for j in page.jobs], next_cursor=page.next_cursor)


@router.get(
    "/jobs/{job_id}",
    response_model=schemas.JobDetail,
    tags=["jobs"],
    summary="One job: stages, attempts, reason, outputs with URLs, retrieved hits, style",
)
def get_job(job_id: JobId, s: SessionDep, _t: TokenDep) -> schemas.JobDetail:
    job, attempts = control.job_detail(s, job_id)
    return present.job_detail(job, attempts, control.get_batch(s, job.batch_id).out_dir)


def _enqueued(a: verbs.Answer) -> schemas.Enqueued:
    return schemas.Enqueued(batch_id=a.batch_id, jobs=a.jobs, message=a.message)


# the verbs write in their own transaction: the request's session (token check) is committed first,
# as SQLite has one writer
@router.post(
    "/batches/{batch_id}/retry",
    response_model=schemas.Enqueued,
    tags=["operations"],
    summary="Retry failed jobs: all, or by stage, reason or job ids",
)
def retry(batch_id: BatchId, s: SessionDep, _t: TokenDep, body: RetryFilter | None = None) -> schemas.Enqueued:
    s.commit()
    return _enqueued(verbs.retry(get_runtime(), batch_id, (body or RetryFilter()).to_filter(), send=send))


@router.post(
    "/batches/{batch_id}/cancel",
    response_model=schemas.Enqueued,
    tags=["operations"],
    summary="Cancel: queued jobs stop now, running ones after their current stage",
)
def cancel(batch_id: BatchId, s: SessionDep, _t: TokenDep) -> schemas.Enqueued:
    s.commit()
    return _enqueued(verbs.cancel(get_runtime(), batch_id))


@router.post(
    "/batches/{batch_id}/resume",
    response_model=schemas.Enqueued,
    tags=["operations"],
    summary="Resume: reopen a cancelled batch and re-enqueue every unfinished job",
)
def resume(batch_id: BatchId, s: SessionDep, _t: TokenDep) -> schemas.Enqueued:
    s.commit()
    return _enqueued(verbs.resume(get_runtime(), batch_id, send=send))


@router.get(
    "/files/{batch_id}/{path:path}",
    tags=["files"],
    response_class=FileResponse,
    summary="An output image of a batch (PNG, JPEG), or its report.html",
    responses={200: {"content": {"image/png": {}, "image/jpeg": {}, "text/html": {}}}},
)
def output_file(batch_id: BatchId, path: str, s: SessionDep, _t: TokenDep) -> FileResponse:
    b = control.get_batch(s, batch_id)
    if path == "report.html":
        s.commit()  # end this read: the report is read (or written) in its own transactions (SQLite: one writer)
        return files.serve_report(b)
    return files.serve_image(
        Path(b.out_dir) / batch_id / path, [(Path(b.out_dir) / batch_id).resolve()], f"file {path!r}"
    )


@router.get(
    "/jobs/{job_id}/flatlay",
    tags=["files"],
    response_class=FileResponse,
    summary="A SKU's flat-lay",
    responses={200: {"content": {"image/png": {}, "image/jpeg": {}}}},
)
def flatlay(job_id: JobId, s: SessionDep, _t: TokenDep) -> FileResponse:
    job, _ = control.job_detail(s, job_id)
    path = (job.row or {}).get("image_path")
    # a row rejected at validation keeps what the CSV said, which may name any file: never opened
    if job.kind != "sku" or not path or control.is_rejected(job):
        raise control.NotFound(f"job {job_id} has no flat-lay")
    return files.serve_image(path, files.batch_roots(control.get_batch(s, job.batch_id)), "the flat-lay")


@router.get(
    "/jobs/{job_id}/hits/{n}",
    tags=["files"],
    response_class=FileResponse,
    summary="The image of the n-th retrieved hit",
    responses={200: {"content": {"image/png": {}, "image/jpeg": {}}}},
)
def hit_image(job_id: JobId, n: Annotated[int, PathParam(ge=0, le=1000)], s: SessionDep, _t: TokenDep) -> FileResponse:
    job, _ = control.job_detail(s, job_id)
    retrieved = read(job, RetrieveResult)
    hits = retrieved.hits if retrieved else []
    if not 0 <= n < len(hits):
        raise control.NotFound(f"job {job_id} has {len(hits)} retrieved hits; no hit {n}")
    return files.serve_image(
        hits[n].image_path, files.batch_roots(control.get_batch(s, job.batch_id)), f"hit {hits[n].product_id}'s image"
    )


def _catalogs_runtime():  # noqa: ANN202
    from hitline.jobs.context import get_runtime

    return get_runtime()


_CATALOG_UPLOAD_SCHEMA = {
    "type": "object",
    "required": ["products", "images"],
    "properties": {
        "products": {"type": "string", "format": "binary", "description": "products.csv"},
        "images": {"type": "string", "format": "binary", "description": "a zip of the images (paths as in image_path)"},
        "name": {
            "type": "string",
            "maxLength": 128,
            "description": "catalog name; an existing name gets a new version",
        },
    },
}


@router.post(
    "/catalogs",
    status_code=201,
    response_model=schemas.CatalogOut,
    tags=["catalogs"],
    summary="Add a hit catalog (a shared folder, or an upload), or a new version of it (indexed before the answer)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": schemas.CatalogRequest.model_json_schema()},
                "multipart/form-data": {"schema": _CATALOG_UPLOAD_SCHEMA},
            },
        }
    },
)
async def add_catalog(
    request: Request, response: Response, settings: SettingsDep, tenant: TenantDep
) -> schemas.CatalogOut:
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        body = await _catalog_upload(request, settings, tenant)
    else:
        try:
            body = schemas.CatalogRequest.model_validate_json(await request.body())
        except ValidationError as e:
            raise RequestValidationError(e.errors()) from None
        await run_in_threadpool(check_shared, settings, tenant, folder=body.folder)
    f = await run_in_threadpool(_add_catalog, body, tenant)
    if f["reused"]:
        response.status_code = 200  # the same content was indexed already: nothing written
    return schemas.CatalogOut.model_validate(f)


def _add_catalog(body: schemas.CatalogRequest, tenant: str) -> dict[str, Any]:
    from hitline.jobs import catalogs
    from hitline.jobs.options import BatchOptions
    from hitline.jobs.submit import batch_options

    if not Path(body.folder).is_dir():
        raise InputError(f"{body.folder} is not a folder this server can read")
    rt = _catalogs_runtime()
    return catalogs.facts(
        catalogs.add_or_update(
            rt, Path(body.folder), BatchOptions.of(batch_options(rt.settings)), name=body.name, tenant=tenant
        )
    )


async def _catalog_upload(request: Request, settings: Settings, tenant: str) -> schemas.CatalogRequest:
    """A catalog sent as products.csv + a zip of its images: unpacked under the tenant's catalog uploads
    (hitline.jobs.shared.catalog_uploads_root; the same bytes again land in the same folder)."""
    form = await request.form(max_part_size=settings.api_max_upload_bytes)
    missing = [k for k in ("products", "images") if k not in form]
    if missing:
        raise InputError(f"the upload lacks {', '.join(missing)}: send products (products.csv) and images (a zip)")
    files = {k: form[k] for k in ("products", "images")}
    if any(isinstance(v, str) for v in files.values()):
        raise InputError("products and images must be files (multipart file parts)")
    csv_bytes, zip_bytes = await files["products"].read(), await files["images"].read()
    folder = await run_in_threadpool(
        store_upload,
        catalog_uploads_root(settings, tenant),
        csv_bytes,
        zip_bytes,
        settings.api_max_upload_bytes,
        "products.csv",
    )
    name = form.get("name")
    try:
        return schemas.CatalogRequest.model_validate(
            {"folder": str(folder), "name": str(name) if name not in (None, "") else None}
        )
    except ValidationError as e:
        raise RequestValidationError(e.errors()) from None


@router.get(
    "/catalogs",
    response_model=list[schemas.CatalogOut],
    tags=["catalogs"],
    summary="The catalogs and their newest version",
)
def list_catalogs(tenant: TenantDep) -> list[schemas.CatalogOut]:
    from hitline.jobs import catalogs

    return [
        schemas.CatalogOut.model_validate(catalogs.facts(f))
        for f in catalogs.list_catalogs(_catalogs_runtime(), tenant)
    ]


@router.get(
    "/catalogs/{ref}",
    response_model=schemas.CatalogOut,
    tags=["catalogs"],
    summary="One catalog (by id or name) and its newest version",
)
def get_catalog(ref: str, tenant: TenantDep) -> schemas.CatalogOut:
    from hitline.jobs import catalogs

    try:
        f = catalogs.get_catalog(_catalogs_runtime(), ref, tenant=tenant)
    except InputError as e:
        raise control.NotFound(str(e)) from None
    return schemas.CatalogOut.model_validate(catalogs.facts(f))
