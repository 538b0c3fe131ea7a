"""The operator dashboard: server-rendered pages (Jinja2) whose buttons and live numbers use the JSON
API with the same tokens. Login keeps the token in an HttpOnly, SameSite=Strict cookie; every unsafe
request from the page carries the CSRF header derived from it (deps.current_token checks it)."""

from __future__ import annotations

from importlib import resources
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from hitline.api import present
from hitline.api.routes import BatchId, Filter, JobId
from hitline.api.deps import COOKIE, SessionDep, SettingsDep, csrf_for
from hitline.jobs import control

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(resources.files("hitline.api") / "templates"))
PAGE_SIZE = 50
REVIEW_PAGE = 200  # cards per review page (thumbnails load lazily)


def _login(request: Request, s: Any) -> str | None:
    token = request.cookies.get(COOKIE)
    row = control.verify_token(s, token) if token else None
    if row is None:
        return None
    request.state.tenant = row.tenant_id  # the pages show only this tenant's batches and jobs
    return token


def _page(request: Request, name: str, settings: Any, token: str, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(
        request, name, {"csrf": csrf_for(token), "flower_url": settings.flower_url, **context}
    )


def _to_login() -> RedirectResponse:
    return RedirectResponse("/ui/login", status_code=303)


@router.get("/")
@router.get("/ui")
@router.get("/ui/")
def root() -> RedirectResponse:
    return RedirectResponse("/ui/batches", status_code=303)


@router.get("/ui/login")
def login_form(request: Request) -> HTMLResponse:
    return templates.TemplateResponse(request, "login.html", {"error": None})


@router.post("/ui/login")
def login(request: Request, s: SessionDep, token: Annotated[str, Form()]) -> Response:
    if control.verify_token(s, token.strip()) is None:
        return templates.TemplateResponse(
            request,
            "login.html",
            {"error": "That token is not valid (or was revoked). Create one with `hitline token create NAME`."},
            status_code=401,
        )
    resp = RedirectResponse("/ui/batches", status_code=303)
    resp.set_cookie(
        COOKIE,
        token.strip(),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        max_age=12 * 3600,
        path="/",
    )
    return resp


@router.post("/ui/logout")
def logout() -> RedirectResponse:
    resp = _to_login()
    resp.delete_cookie(COOKIE, path="/")
    return resp


@router.get("/ui/batches")
def batches_page(request: Request, s: SessionDep, settings: SettingsDep, cursor: Filter = None) -> Response:
    token = _login(request, s)
    if token is None:
        return _to_login()
    rows, nxt = control.list_batches(s, cursor=cursor, limit=PAGE_SIZE, tenant=request.state.tenant)
    return _page(
        request,
        "batches.html",
        settings,
        token,
        batches=[present.batch(control.summary(s, b.id)) for b in rows],
        next_cursor=nxt,
    )


@router.get("/ui/batches/{batch_id}")
def batch_page(
    request: Request,
    batch_id: BatchId,
    s: SessionDep,
    settings: SettingsDep,
    state: Filter = None,
    cursor: Filter = None,
) -> Response:
    token = _login(request, s)
    if token is None:
        return _to_login()
    control.get_batch(s, batch_id, request.state.tenant)
    batch = present.batch(control.summary(s, batch_id))
    page = control.list_jobs(
        s, batch_id, control.JobFilter(kind="sku", state=state or None), cursor=cursor, limit=PAGE_SIZE
    )
    from hitline.jobs.webhooks import delivery_counts

    return _page(
        request,
        "batch.html",
        settings,
        token,
        batch=batch,
        jobs=[present.job_row(j) for j in page.jobs],
        next_cursor=page.next_cursor,
        state=state or "",
        webhooks=delivery_counts(s, batch_id),
    )


@router.get("/ui/batches/{batch_id}/review")
def review_page(
    request: Request,
    batch_id: str,
    s: SessionDep,
    settings: SettingsDep,
    review: str = "pending",
    cursor: str | None = None,
) -> Response:
    """The review grid: flat-lay and output side by side, the gate's reasons, keys and bulk actions
    (static/review.js); decisions go through POST /batches/{id}/review like any client's."""
    from hitline.jobs import review as reviews

    token = _login(request, s)
    if token is None:
        return _to_login()
    out_dir = control.get_batch(s, batch_id, request.state.tenant).out_dir
    rows, nxt = reviews.list_outputs(
        s, batch_id, reviews.OutputFilter(review=review or None), cursor=cursor, limit=REVIEW_PAGE
    )
    return _page(
        request,
        "review.html",
        settings,
        token,
        batch_id=batch_id,
        review=review,
        outputs=[present.output_row(o, out_dir) for o in rows],
        next_cursor=nxt,
        counts=reviews.review_counts(s, batch_id),
    )


@router.get("/ui/jobs/{job_id}")
def job_page(request: Request, job_id: JobId, s: SessionDep, settings: SettingsDep) -> Response:
    token = _login(request, s)
    if token is None:
        return _to_login()
    job, attempts = control.job_detail(s, job_id, request.state.tenant)
    detail = present.job_detail(job, attempts, control.get_batch(s, job.batch_id).out_dir)
    return _page(request, "job.html", settings, token, job=detail)
