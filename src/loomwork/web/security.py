"""Safe by default: loopback only, Host and Origin checked, and an access token when bound anywhere else.

- Host: a request must name one of the addresses the server was started for. A DNS-rebinding page reaches us with
  its own host name in Host, and is refused.
- Origin: a request that changes something and says where it comes from must come from one of our own origins,
  so another site open in the same browser cannot post to the loom.
- Token: when the server listens on a non-loopback address, every request needs the token printed at start, as
  ``?token=`` (once: it is then kept in a same-site cookie), an ``Authorization: Bearer`` header, or the cookie.
"""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse
from starlette.types import ASGIApp, Receive, Scope, Send

COOKIE = "loomwork_token"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass
class Guard:
    host: str
    port: int
    token: str | None = None
    extra_hosts: tuple[str, ...] = ()
    allowed: set[str] = field(init=False)

    def __post_init__(self) -> None:
        names = {self.host, *self.extra_hosts}
        if is_loopback(self.host) or self.host in ("0.0.0.0", "::"):
            names |= {"127.0.0.1", "localhost", "[::1]"}
        self.allowed = {f"{n}:{self.port}" for n in names} | (names if self.port == 80 else set())

    def origins(self) -> set[str]:
        return {f"http://{h}" for h in self.allowed} | {f"https://{h}" for h in self.allowed}

    def token_ok(self, request: Request) -> bool:
        if self.token is None:
            return True
        given = (request.query_params.get("token") or request.cookies.get(COOKIE)
                 or request.headers.get("authorization", "").removeprefix("Bearer ").strip())
        return bool(given) and hmac.compare_digest(given, self.token)


class GuardMiddleware:
    def __init__(self, app: ASGIApp, guard: Guard):
        self.app, self.guard = app, guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        host = request.headers.get("host", "")
        if host not in self.guard.allowed:
            await JSONResponse({"error": f"unexpected Host header {host!r}"}, status_code=400)(scope, receive, send)
            return
        origin = request.headers.get("origin")
        if request.method not in SAFE_METHODS and origin is not None and origin not in self.guard.origins():
            await JSONResponse({"error": f"cross-origin request from {origin} refused"}, status_code=403)(
                scope, receive, send)
            return
        if not self.guard.token_ok(request):
            await JSONResponse({"error": "this server needs its access token (see the URL it printed)"},
                               status_code=401)(scope, receive, send)
            return
        if self.guard.token and request.query_params.get("token") and request.method == "GET" \
                and not request.url.path.startswith(("/api/", "/static/")):
            # Swap the token in the address bar for a cookie, so it does not linger in history or get shared.
            response = RedirectResponse(request.url.path, status_code=303)
            response.set_cookie(COOKIE, self.guard.token, httponly=True, samesite="strict")
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
