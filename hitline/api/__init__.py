"""The HTTP API and the operator dashboard (`hitline serve`): the top floor, over hitline.jobs.control."""

from hitline.api.app import create_app

__all__ = ["create_app"]
