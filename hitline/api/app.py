"""The FastAPI app: JSON API (OpenAPI at /docs and /openapi.json) and the dashboard under /ui."""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from hitline.config import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    from hitline.api import dashboard, errors, routes
    from hitline.api.limits import BodyLimit
    from hitline.jobs.context import get_runtime

    settings = settings or get_runtime().settings
    app = FastAPI(title="hitline", version="0.1.0",
                  description="Submit batches, watch them, retry what failed. Every endpoint but /healthz needs "
                              "`Authorization: Bearer <token>` (`hitline token create NAME`).")
    app.state.settings = settings
    errors.install(app)
    app.include_router(routes.router)
    app.include_router(dashboard.router)
    app.mount("/static", StaticFiles(directory=str(resources.files("hitline.api") / "static")), name="static")
    app.add_middleware(BodyLimit, max_body=settings.api_max_body_bytes, max_upload=settings.api_max_upload_bytes)
    return app
