"""create_app: the FastAPI application over a Store. No logic lives here that the library lacks."""

from __future__ import annotations

from contextlib import asynccontextmanager
from importlib.resources import files

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from .. import config
from ..errors import BackendError, Busy, Conflict, Forbidden, InvalidInput, LoomworkError, NotFound, Unsupported
from ..store import Store
from ..store.journal import acting_as, clean_actor
from ..backends.pool import PROCESS
from .api import router
from .common import offered
from .audit_api import router as audit_router
from .lens_api import router as lens_router
from .grader_api import router as grader_router
from .steer_api import router as steer_router
from .tune_api import router as tune_router
from .auth import Authenticator, RateLimit
from .live import Hub
from .team_api import router as team_router
from .permissions import Roles, authorize
from .security import SIGN_IN, Guard, GuardMiddleware

STATIC = files("loomwork.web") / "static"
_STATUS = {Forbidden: 403, NotFound: 404, InvalidInput: 400, Unsupported: 400, Conflict: 409, Busy: 503, BackendError: 502}
USER_HEADER = "x-loomwork-user"


class ActorMiddleware:
    """Operations a request logs are attributed to the name in its X-Loomwork-User header (the page sends the
    name its person chose), else to ``default``: on a local server the server's own user (the person at its
    terminal, as the page assumes), on a shared one "web"; undo uses it to tell your operations from others'."""

    def __init__(self, app: ASGIApp, default: str = "web"):
        self.app = app
        self.default = default.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or "loomwork.principal" in scope:  # an account acts as itself, whatever it says
            await self.app(scope, receive, send)
            return
        raw = dict(scope["headers"]).get(USER_HEADER.encode(), self.default)
        try:
            name = clean_actor(raw.decode("utf-8"))
        except (UnicodeDecodeError, InvalidInput) as exc:
            message = str(exc) if isinstance(exc, InvalidInput) else "the X-Loomwork-User header is not UTF-8"
            await JSONResponse({"error": message}, status_code=400)(scope, receive, send)
            return
        with acting_as(name):
            await self.app(scope, receive, send)


def _local_user(host: str, token: str | None, accounts: bool) -> str | None:
    """On a loopback server without a token, the server's own user (the CLI's person): who a request that names
    nobody acts as, and the name the page starts with (curl, a script and the page then agree). None elsewhere."""
    from ..store.journal import default_actor
    from .security import is_loopback

    if accounts or token or not is_loopback(host):
        return None
    try:
        return default_actor()
    except InvalidInput:  # a LOOMWORK_USER that is no name: the CLI says so; the server still serves
        return None


def create_app(store: Store, *, host: str = "127.0.0.1", port: int = 8765, token: str | None = None,
               default_model: str | None = None, allow_hosts: tuple[str, ...] = (),
               allowed_models: set[str] | None = None, accounts: bool = False,
               rate_limit: int | None = None) -> FastAPI:
    """The web loom over ``store``. ``allowed_models``: when given, the only model references requests may name
    besides the packaged ones and the mock (see api.allowed_model); None allows any. ``accounts``: every request
    signs in with an account's token and acts as it (docs/teams.md); ``rate_limit``: calls of model work per
    account and minute (accounts only)."""
    # no docs_url: FastAPI's docs page loads its script from a CDN; the schema is at /api/openapi.json
    hub = Hub(store)

    @asynccontextmanager
    async def lifespan(_app):
        hub.start()
        yield
        hub.stop()

    app = FastAPI(title="loomwork", docs_url=None, openapi_url="/api/openapi.json", redoc_url=None,
                  dependencies=[Depends(authorize)], lifespan=lifespan)
    app.state.accounts = accounts
    app.state.hub, app.state.streams, app.state.roles = hub, {}, Roles()
    app.state.rate_limit = RateLimit(rate_limit) if accounts and rate_limit else None
    app.state.store = store
    app.state.default_model = default_model or config.default_model()
    app.state.allowed_models = None if allowed_models is None else {*allowed_models, app.state.default_model}
    # the app's models: the process's loaded ones, under this server's policy of what it offers
    app.state.models = PROCESS.with_policy(offered(app.state.allowed_models), default=app.state.default_model)
    local_user = _local_user(host, token, accounts)
    app.add_middleware(ActorMiddleware, default=local_user or "web")
    app.add_middleware(GuardMiddleware, guard=Guard(host, port, None if accounts else token, tuple(allow_hosts),
                                                    Authenticator(store) if accounts else None))

    @app.exception_handler(LoomworkError)
    async def loomwork_error(_request: Request, exc: LoomworkError) -> JSONResponse:
        status = next((code for cls, code in _STATUS.items() if isinstance(exc, cls)), 500)
        return JSONResponse({"error": str(exc)}, status_code=status)

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        # the documented {"error": …} body for Starlette's own errors too (unknown route, unparsable body, …)
        message = {"There was an error parsing the body": "the request body is not valid JSON in UTF-8 (or is "
                   "nested too deeply)"}.get(str(exc.detail), str(exc.detail))
        return JSONResponse({"error": message}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def bad_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = [f"{'.'.join(str(p) for p in e['loc'] if p != 'body')}: {e['msg']}" for e in exc.errors()[:5]]
        return JSONResponse({"error": "invalid request: " + "; ".join(parts)[:2000]}, status_code=400)

    app.include_router(router)
    app.include_router(audit_router)
    app.include_router(lens_router)
    app.include_router(steer_router)
    app.include_router(grader_router)
    app.include_router(tune_router)
    app.include_router(team_router)

    @app.get("/api/config")
    def app_config() -> dict:
        # the page acts as the server's own user on loopback (the same person as at its terminal); elsewhere
        # each browser picks a name
        from ..store.access import current

        me = current()
        if me is not None:
            return {"default_model": app.state.default_model, "db": store.label, "user": me.name, "accounts": True,
                    "admin": me.admin}
        return {"default_model": app.state.default_model, "db": store.label, "accounts": False, "user": local_user}

    @app.get("/login", include_in_schema=False)
    def login():
        # with accounts, reached without a token (with one, the guard signs in and redirects first); without
        # accounts there is nobody to sign in as
        if accounts:
            return HTMLResponse(SIGN_IN, headers={"Cache-Control": "no-store"})
        return RedirectResponse("/", status_code=303)

    @app.get("/logout", include_in_schema=False)
    def logout() -> RedirectResponse:  # the guard answers it on a server with accounts
        return RedirectResponse("/", status_code=303)

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(str(STATIC / "index.html"), headers={"Cache-Control": "no-store"})

    @app.get("/audit", include_in_schema=False)
    def audit_page() -> FileResponse:
        return FileResponse(str(STATIC / "audit.html"), headers={"Cache-Control": "no-store"})

    @app.get("/compare", include_in_schema=False)
    def compare_page() -> FileResponse:
        return FileResponse(str(STATIC / "compare.html"), headers={"Cache-Control": "no-store"})

    @app.get("/tune", include_in_schema=False)
    def tune_page() -> FileResponse:
        return FileResponse(str(STATIC / "tune.html"), headers={"Cache-Control": "no-store"})

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    return app
