"""The FastAPI app: JSON API (OpenAPI at /docs and /openapi.json) and the dashboard under /ui."""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

from hitline.api.headers import SecurityHeaders

from hitline.config import Settings

# Swagger UI's own files from the installed package: /docs needs no CDN (and no inline script, so the
# pages' Content-Security-Policy holds)
_DOCS_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>hitline API</title>
<link rel="stylesheet" href="/docs-assets/swagger-ui.css"></head><body><div id="swagger-ui"></div>
<script src="/docs-assets/swagger-ui-bundle.js"></script><script src="/static/docs.js"></script></body></html>"""


def create_app(settings: Settings | None = None) -> FastAPI:
    from hitline.api import dashboard, errors, routes, storefront
    from hitline.api.limits import BodyLimit
    from hitline.jobs.context import get_runtime

    settings = settings or get_runtime().settings
    app = FastAPI(
        title="hitline",
        version="0.1.0",
        docs_url=None,
        redoc_url=None,
        description="Submit batches, watch them, retry what failed. Every endpoint but /healthz needs "
        "`Authorization: Bearer <token>` (`hitline token create NAME`).",
    )
    app.state.settings = settings
    from hitline.api.uploads import prune

    prune(settings.data_dir.resolve() / "uploads", settings.upload_retention_days, part_grace_s=300)  # at start-up
    errors.install(app)
    app.include_router(routes.router)
    app.include_router(storefront.router)
    app.include_router(dashboard.router)
    app.mount("/static", StaticFiles(directory=str(resources.files("hitline.api") / "static")), name="static")
    app.mount("/docs-assets", StaticFiles(directory=swagger_ui_path), name="docs-assets")
    app.add_middleware(BodyLimit, max_body=settings.api_max_body_bytes, max_upload=settings.api_max_upload_bytes)
    app.add_middleware(SecurityHeaders)  # outermost: every answer gets them, errors and 413s included

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return HTMLResponse(_DOCS_PAGE)

    return app
