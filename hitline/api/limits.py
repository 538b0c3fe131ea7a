"""Request limits: body sizes, enforced while the body streams in (a missing or lying Content-Length does not
get past them; JSON bodies and uploads have separate caps), and no NUL character in a path or query (no
file name, id or database text can hold one: PostgreSQL refuses it, the file system too)."""

from __future__ import annotations

import json
from typing import Any, Awaitable, Callable

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class BodyLimit:
    def __init__(self, app: Any, *, max_body: int, max_upload: int) -> None:
        self.app, self.max_body, self.max_upload = app, max_body, max_upload

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if (
            "\x00" in scope.get("path", "")
            or b"%00" in scope.get("query_string", b"")
            or b"\x00" in scope.get("query_string", b"")
        ):
            return await _refuse(
                send, 400, "the path or query holds a NUL character (%00): no id, file name or filter can contain one"
            )
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        upload = headers.get("content-type", "").startswith("multipart/")
        limit = self.max_upload if upload else self.max_body
        what = "upload" if upload else "request body"
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            return await _too_large(send, what, limit)
        seen = 0
        state = {"started": False, "refused": False}

        async def counted() -> dict[str, Any]:
            nonlocal seen
            if state["refused"]:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit and not state["started"]:
                    # answer now, then tell the app the client left: whatever it does next is dropped
                    state["refused"] = True
                    await _too_large(send, what, limit)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: dict[str, Any]) -> None:
            if state["refused"]:
                return
            state["started"] = state["started"] or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, guarded_send)
        except Exception:
            if not state["refused"]:
                raise


async def _too_large(send: Send, what: str, limit: int) -> None:
    await _refuse(
        send,
        413,
        f"{what} larger than {limit:,} bytes: split the batch or raise "
        "HITLINE_API_MAX_UPLOAD_BYTES / HITLINE_API_MAX_BODY_BYTES",
    )


async def _refuse(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": {"status": status, "message": message}}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
