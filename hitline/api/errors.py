"""Every error leaves the API as JSON `{"error": {"status": N, "message": "..."}}`, with a message that
says what to do next."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from hitline.errors import HitlineError, InputError, TransientError
from hitline.jobs.control import Conflict, NotFound
from hitline.jobs.submit import IdempotencyConflict

log = logging.getLogger(__name__)


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"status": status, "message": message}}, status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> tuple[int, str]:
    errors = exc.errors()
    for e in errors:
        if e.get("type") == "json_invalid":
            ctx = e.get("ctx") or {}
            return 400, (
                f"the request body is not valid JSON ({ctx.get('error', 'parse error')}); "
                "send Content-Type: application/json with a JSON object"
            )
    parts = []
    for e in errors[:10]:
        where = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {e.get('msg', 'invalid')}")
    return 422, "invalid request: " + "; ".join(parts)


def install(app: FastAPI) -> None:
    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = "no such endpoint: /docs lists them"
        if exc.status_code == 405:
            message = "method not allowed on this endpoint: /docs lists what each accepts"
        return error_response(exc.status_code, message, getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        status, message = _validation_message(exc)
        return error_response(status, message)

    @app.exception_handler(HitlineError)
    async def domain_error(_request: Request, exc: HitlineError) -> JSONResponse:
        if isinstance(exc, NotFound):
            return error_response(404, str(exc))
        if isinstance(exc, (Conflict, IdempotencyConflict)):
            return error_response(409, str(exc))
        if isinstance(exc, InputError):
            return error_response(422, str(exc))
        if isinstance(exc, TransientError):
            return error_response(503, str(exc))
        return error_response(400, str(exc))

    @app.exception_handler(Exception)
    async def crash(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return error_response(500, f"internal error ({type(exc).__name__}); the server log has the details")
