"""FastAPI dependencies: the settings, a database session, and the caller's token (Bearer header for
services; an HttpOnly cookie plus a CSRF header for the dashboard)."""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated, Iterator

from fastapi import Depends, HTTPException, Request
from sqlalchemy.orm import Session

from db.models import ApiToken
from db.session import session_scope
from hitline.config import Settings
from hitline.jobs import control

COOKIE = "hitline_token"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_session(request: Request) -> Iterator[Session]:
    """One session per request; endpoints that enqueue work commit before they send anything."""
    with session_scope(request.app.state.settings.db_url()) as s:
        yield s


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]


def csrf_for(token: str) -> str:
    """The CSRF value that goes with a dashboard login: derived from the token, so a page from another
    site (which cannot read the HttpOnly cookie) cannot produce it."""
    return hashlib.sha256(b"hitline-csrf:" + token.encode()).hexdigest()


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(401, message, headers={"WWW-Authenticate": "Bearer"})


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def current_token(request: Request) -> ApiToken:
    token = bearer(request)
    from_cookie = False
    if token is None:
        token = request.cookies.get(COOKIE)
        from_cookie = token is not None
    if token is None:
        raise _unauthorized(
            "authentication required: send `Authorization: Bearer <token>` "
            "(create one with `hitline token create NAME`)"
        )
    # its own short transaction: a request that then works for seconds (a submission) must not keep the
    # token row or SQLite's write lock
    with session_scope(request.app.state.settings.db_url()) as s:
        row = control.verify_token(s, token)
    if row is None:
        raise _unauthorized("invalid or revoked token: create a new one with `hitline token create NAME`")
    if from_cookie and request.method not in SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent, csrf_for(token)):
            raise HTTPException(403, f"missing or wrong {CSRF_HEADER} header: reload the dashboard page")
    return row


TokenDep = Annotated[ApiToken, Depends(current_token)]


def current_tenant(token: TokenDep) -> str:
    """The tenant the caller acts in: every batch, job, output and file it names must be that tenant's.
    Tables that gain a tenant (catalogs, webhooks) filter on this."""
    return token.tenant_id


TenantDep = Annotated[str, Depends(current_tenant)]


def _role_for(request: Request) -> str:
    if request.method in SAFE_METHODS:
        return "read"
    if request.method == "POST" and request.url.path.rstrip("/") == "/batches":
        return "submit"
    return "operate"  # retry, cancel, resume, review, webhooks


MAX_BATCH_ID_CHARS = 64  # routes.BatchId's max_length


def tenant_scope(request: Request, token: TokenDep) -> None:
    """One door for every API route (a router dependency): the token's role allows the method, and each
    id in the path or the query (batch, job, output, webhook endpoint) belongs to the token's tenant -
    another tenant's is answered exactly like an unknown id (404)."""
    from db.models import Job, Output, WebhookEndpoint

    need = _role_for(request)
    if not control.can(token, need):
        raise HTTPException(
            403,
            f"this token's role is {token.role!r}; {request.method} {request.url.path} needs "
            f"{need!r} (`hitline token create NAME --tenant T --role {need}`)",
        )
    params = {**request.query_params, **request.path_params}
    tenant = token.tenant_id
    batch_id = params.get("batch_id")
    with session_scope(request.app.state.settings.db_url()) as s:
        if batch_id and len(str(batch_id)) <= MAX_BATCH_ID_CHARS:  # a longer one: the route's own 422
            control.get_batch(s, str(batch_id), tenant)
        for key, model, label in (
            ("job_id", Job, "job"),
            ("output_id", Output, "output"),
            ("endpoint_id", WebhookEndpoint, "webhook endpoint"),
        ):
            raw = params.get(key)
            if raw is None or not str(raw).isdigit() or int(raw) > control.MAX_ID:
                continue  # the route's own validation answers a malformed id
            row = s.get(model, int(raw))
            if row is None:
                continue  # the route answers its own 404
            owner = getattr(row, "batch_id", None)
            # an endpoint for every batch has no batch: its own tenant says whose it is
            owned = (
                (control.batch_tenant(s, owner) == tenant)
                if owner
                else getattr(row, "tenant_id", control.DEFAULT_TENANT) == tenant
            )
            if not owned:
                raise control.NotFound(f"no {label} {raw}")
