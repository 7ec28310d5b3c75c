"""create_app: the FastAPI application over a Store. No logic lives here that the library lacks."""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from .. import config
from ..errors import BackendError, InvalidInput, LoomworkError, NotFound, Unsupported
from ..store import Store
from .api import router
from .audit_api import router as audit_router
from .lens_api import router as lens_router
from .security import Guard, GuardMiddleware

STATIC = files("loomwork.web") / "static"
_STATUS = {NotFound: 404, InvalidInput: 400, Unsupported: 400, BackendError: 502}


def create_app(store: Store, *, host: str = "127.0.0.1", port: int = 8765, token: str | None = None,
               default_model: str | None = None) -> FastAPI:
    app = FastAPI(title="loomwork", docs_url="/api/docs", openapi_url="/api/openapi.json", redoc_url=None)
    app.state.store = store
    app.state.default_model = default_model or config.default_model()
    app.add_middleware(GuardMiddleware, guard=Guard(host, port, token))

    @app.exception_handler(LoomworkError)
    async def loomwork_error(_request: Request, exc: LoomworkError) -> JSONResponse:
        status = next((code for cls, code in _STATUS.items() if isinstance(exc, cls)), 500)
        return JSONResponse({"error": str(exc)}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def bad_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = [f"{'.'.join(str(p) for p in e['loc'] if p != 'body')}: {e['msg']}" for e in exc.errors()]
        return JSONResponse({"error": "invalid request: " + "; ".join(parts)}, status_code=400)

    app.include_router(router)
    app.include_router(audit_router)
    app.include_router(lens_router)

    @app.get("/api/config")
    def app_config() -> dict:
        return {"default_model": app.state.default_model, "db": store.label}

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(str(STATIC / "index.html"), headers={"Cache-Control": "no-store"})

    @app.get("/audit", include_in_schema=False)
    def audit_page() -> FileResponse:
        return FileResponse(str(STATIC / "audit.html"), headers={"Cache-Control": "no-store"})

    @app.get("/compare", include_in_schema=False)
    def compare_page() -> FileResponse:
        return FileResponse(str(STATIC / "compare.html"), headers={"Cache-Control": "no-store"})

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    return app
