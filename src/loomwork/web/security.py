"""Safe by default: loopback only, Host and Origin checked, an access token when bound anywhere else, bounded
request bodies and headers that keep the pages out of frames (docs/web.md, "Safety").

- Host: a request must name an address the server answers to. On loopback that is only 127.0.0.1, localhost and
  [::1] on our port: a DNS-rebinding page reaches us with its own host name in Host, and is refused. Bound to all
  interfaces, the machine's own names and addresses count too, and ``--allow-host NAME`` adds a name (any port:
  for a reverse proxy) or ``*`` (any Host, when a proxy in front checks it).
- Origin: a request that changes something and says where it comes from must come from an allowed host, so
  another site open in the same browser cannot post to the loom.
- Token: off loopback, every request needs the token printed at start: an ``Authorization: Bearer`` header or
  the cookie. ``?token=`` is accepted only on a page address, which answers with a redirect that moves it into
  the cookie (named per port, so two servers on one host keep their own) and out of the address bar.
- Bodies over MAX_BODY bytes are refused with 413 before the application reads them.
"""

from __future__ import annotations

import hmac
import ipaddress
import socket
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..store.access import Principal, as_principal

MAX_BODY = 8 * 1024 * 1024  # bytes; a node's text is at most 1,000,000 characters (validate.MAX_TEXT)
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
HEADERS = [
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: "
                                 b"blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
                                 b"frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _split_host(value: str) -> tuple[str, int | None]:
    """``name[:port]`` or ``[v6][:port]`` -> (lower-case name, port or None)."""
    value = value.strip().lower()
    if value.startswith("["):
        name, _, rest = value.partition("]")
        name += "]"
        port = rest[1:] if rest.startswith(":") else ""
    else:
        name, _, port = value.rpartition(":") if value.count(":") == 1 else (value, "", "")
    return name, (int(port) if port.isdigit() else None)


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name.strip("[]"))
        return True
    except ValueError:
        return False


def own_addresses() -> list[str]:
    """The address other machines most likely reach this one at (the interface of the default route), found by
    "connecting" a UDP socket, which sends nothing; and the host name."""
    out = [socket.gethostname()]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: never routed anywhere, only used to pick an interface
            out.insert(0, s.getsockname()[0])
        except OSError:
            pass
    return out


def _own_names() -> set[str]:
    """This machine's host names and addresses, for a server bound to every interface."""
    names = {socket.gethostname().lower(), socket.getfqdn().lower()}
    for name in list(names):
        try:
            names |= {info[4][0] for info in socket.getaddrinfo(name, None)}
        except OSError:
            pass
    return {f"[{n}]" if ":" in n else n for n in names}


@dataclass
class Guard:
    host: str
    port: int
    token: str | None = None
    extra_hosts: tuple[str, ...] = ()
    # with accounts: the account a token belongs to, or None (web/auth.py); replaces the one shared token
    authenticate: Callable[[str | None], Awaitable[Principal | None]] | None = None
    names: set[str] = field(init=False)  # answered on our port
    anywhere: set[str] = field(init=False)  # answered on any port (--allow-host: a proxy may use its own)
    any_host: bool = field(init=False)

    def __post_init__(self) -> None:
        self.names = {_split_host(self.host)[0]} | {"127.0.0.1", "localhost", "[::1]"}
        if self.host in ("0.0.0.0", "::"):
            self.names |= _own_names()
        self.any_host = "*" in self.extra_hosts
        self.anywhere = {_split_host(h)[0] for h in self.extra_hosts if h != "*"}

    @property
    def cookie(self) -> str:
        return f"loomwork_token_{self.port}"

    def host_ok(self, value: str) -> bool:
        if self.any_host:
            return bool(value)
        name, port = _split_host(value)
        if name in self.anywhere:
            return True
        ours = port == self.port or (port is None and self.port == 80)
        # Bound to every interface, any address literal of ours is fine: the machine's interfaces cannot be listed
        # portably, and DNS rebinding needs a host *name* (the attacker's), never an address, in Host.
        return ours and (name in self.names or (self.host in ("0.0.0.0", "::") and _is_address(name)))

    def origin_ok(self, origin: str) -> bool:
        scheme, sep, rest = origin.partition("://")
        return bool(sep) and scheme in ("http", "https") and self.host_ok(rest)

    def token_given(self, request: Request, page: bool) -> str | None:
        bearer = request.headers.get("authorization", "")
        return (bearer[7:].strip() if bearer.lower().startswith("bearer ") else None) \
            or request.cookies.get(self.cookie) or (request.query_params.get("token") if page else None)

    def token_ok(self, given: str | None) -> bool:
        if self.token is None:
            return True
        # bytes, not str: compare_digest refuses non-ASCII str (a 500 before any auth for ?token=é)
        return bool(given) and hmac.compare_digest(given.encode("utf-8", "surrogateescape"), self.token.encode())


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers={"cache-control": "no-store"})


class GuardMiddleware:
    def __init__(self, app: ASGIApp, guard: Guard):
        self.app, self.guard = app, guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + HEADERS
            await send(message)

        refusal, receive = await self._check(scope, receive)
        if refusal is not None:
            await refusal(scope, receive, send_with_headers)
        elif (principal := scope.get("loomwork.principal")) is not None:
            with as_principal(principal):  # every write checked against its roles, recorded under its name
                await self.app(scope, receive, send_with_headers)
        else:
            await self.app(scope, receive, send_with_headers)

    async def _check(self, scope: Scope, receive: Receive):
        request = Request(scope)
        if "\x00" in scope["path"] or b"%00" in scope.get("query_string", b""):
            # PostgreSQL cannot take NUL in any string: refuse it at the door, whatever the route
            return _error(400, "the address contains a NUL character"), receive
        host = request.headers.get("host", "")
        if not self.guard.host_ok(host):
            hint = "" if is_loopback(self.guard.host) else " (start the server with --allow-host NAME to add it)"
            return _error(400, f"unexpected Host header {host[:100]!r}{hint}"), receive
        origin = request.headers.get("origin")
        if request.method not in SAFE_METHODS and origin is not None and not self.guard.origin_ok(origin):
            return _error(403, f"cross-origin request from {origin[:100]} refused"), receive
        page = request.method == "GET" and not request.url.path.startswith(("/api/", "/static/"))
        given = self.guard.token_given(request, page)
        if self.guard.authenticate is not None:
            return await self._account(scope, request, page, given, receive)
        if not self.guard.token_ok(given):
            return _error(401, "this server needs its access token: open the address it printed, or send "
                               "'Authorization: Bearer TOKEN'"), receive
        if self.guard.token and page and request.query_params.get("token"):
            # Swap the token in the address bar for a cookie, so it does not linger in history or get shared.
            response = RedirectResponse(request.url.path, status_code=303)
            response.set_cookie(self.guard.cookie, self.guard.token, httponly=True, samesite="strict", path="/")
            return response, receive
        return await _bounded_body(scope, receive)


    async def _account(self, scope: Scope, request: Request, page: bool, given: str | None, receive: Receive):
        """A server with accounts: find the account of the token; run the request as it (scope["loomwork.principal"])."""
        path = request.url.path
        if path == "/logout":
            response = RedirectResponse("/login", status_code=303)
            response.delete_cookie(self.guard.cookie, path="/")
            return response, receive
        if path.startswith("/static/") or (path == "/login" and not request.query_params.get("token")):
            return await _bounded_body(scope, receive)  # the page's files and the sign-in page hold nothing
        principal = await self.guard.authenticate(given)
        if principal is None:  # one answer for a missing, malformed, unknown, revoked or expired token
            if page:
                return HTMLResponse(SIGN_IN, status_code=401, headers={"cache-control": "no-store"}), receive
            return _error(401, "sign in first: open the link with your token (/login?token=…), or send "
                               "'Authorization: Bearer TOKEN' (an admin makes one: loomwork user add NAME)"), receive
        if page and request.query_params.get("token"):
            response = RedirectResponse("/" if path == "/login" else path, status_code=303)
            response.set_cookie(self.guard.cookie, given, httponly=True, samesite="strict", path="/")
            return response, receive
        scope["loomwork.principal"] = principal
        return await _bounded_body(scope, receive)


SIGN_IN = """<!doctype html><meta charset="utf-8"><title>loomwork: sign in</title>
<body style="font: 16px system-ui; max-width: 36em; margin: 4em auto">
<h1>Sign in to loomwork</h1>
<p>This server has accounts. Open the link your administrator gave you (it ends in <code>/login?token=…</code>),
or ask them for one: <code>loomwork user add NAME</code> prints it once.</p>
"""


async def _bounded_body(scope: Scope, receive: Receive):
    """Refuse bodies over MAX_BODY: by Content-Length at once, or while reading a body sent without one (it is
    then buffered, at most MAX_BODY bytes, and replayed to the application)."""
    length = Headers(scope=scope).get("content-length")
    if length is not None:
        if not length.isdigit():
            return _error(400, "Content-Length is not a number"), receive
        if int(length) > MAX_BODY:
            return _error(413, f"request body of {int(length):,} bytes is over the limit of {MAX_BODY:,}"), receive
        return None, receive
    if scope["method"] in SAFE_METHODS:
        return None, receive
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None, _replay([message], receive)
        chunks.append(message)
        size += len(message.get("body", b""))
        if size > MAX_BODY:
            return _error(413, f"request body is over the limit of {MAX_BODY:,} bytes"), receive
        if not message.get("more_body"):
            return None, _replay(chunks, receive)


def _replay(messages: list[Message], then: Receive) -> Receive:
    """The buffered messages, then the connection's own (a streaming response listens there for a disconnect)."""
    queue = list(messages)

    async def receive() -> Message:
        return queue.pop(0) if queue else await then()

    return receive
