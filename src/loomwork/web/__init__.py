"""The web loom: ``create_app(store)`` builds the FastAPI application (needs the ``web`` extra)."""

from .app import create_app

__all__ = ["create_app"]
