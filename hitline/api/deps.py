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
        raise _unauthorized("authentication required: send `Authorization: Bearer <token>` "
                            "(create one with `hitline token create NAME`)")
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
