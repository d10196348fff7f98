"""Access with a token: a bearer header for machines, a login cookie for browsers.

A browser cannot send an ``Authorization`` header with an ``<img>`` request,
so with ``--auth-token`` set a shifter signs in once on ``/login``: the token
typed there is checked and answered with an HttpOnly, SameSite=Strict cookie
that every later request of the page (gallery, images, its ``/api/plots``
polls) carries. The cookie holds an HMAC of the token, never the token: it
stays valid across restarts and is revoked by changing the token.

The probes (``/healthz``, ``/readyz``) and the login page need nothing.
"""

from __future__ import annotations

import hashlib
import hmac
from html import escape
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from starlette.types import ASGIApp, Receive, Scope, Send

SESSION_COOKIE = "larpix_monitor_session"
OPEN_PATHS = ("/healthz", "/readyz", "/login")
#: A signed-in browser stays signed in this long (a shift and then some).
SESSION_SECONDS = 7 * 24 * 3600
LOGIN_POLICY = ("default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                "base-uri 'none'; frame-ancestors 'none'")

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>larpix-monitor: sign in</title>
<style>body{{font-family:sans-serif;margin:4em auto;max-width:24em}}
input{{font-size:1.1em;width:100%;margin:.4em 0}}.error{{color:#b00}}</style></head>
<body><h1>larpix-monitor</h1>{error}
<form method="post" action="/login">
<input type="hidden" name="next" value="{next}">
<label for="token">Access token</label>
<input id="token" name="token" type="password" autocomplete="current-password" autofocus>
<input type="submit" value="Sign in"></form></body></html>
"""


def session_value(token: str) -> str:
    return hmac.new(token.encode(), b"larpix-monitor session", hashlib.sha256).hexdigest()


def _safe_next(target: str) -> str:
    """Only a path of this service (never ``//host`` or a full URL) is a place to go back to."""
    return target if target.startswith("/") and not target.startswith("//") else "/"


def _page(next_path: str, error: str = "", status: int = 200) -> HTMLResponse:
    html = _PAGE.format(next=escape(next_path), error=error)
    return HTMLResponse(html, status_code=status,
                        headers={"Content-Security-Policy": LOGIN_POLICY,
                                 "Cache-Control": "no-store"})


def login_router(token: str) -> APIRouter:
    router = APIRouter()
    expected = session_value(token)

    @router.get("/login", response_class=HTMLResponse, summary="Sign-in form for browsers")
    async def login_form(next: str = "/") -> HTMLResponse:
        return _page(_safe_next(next))

    @router.post("/login", response_class=HTMLResponse,
                 summary="Check the token; set the session cookie")
    async def login(request: Request) -> Response:
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        typed = form.get("token", [""])[0]
        next_path = _safe_next(form.get("next", ["/"])[0])
        if not hmac.compare_digest(session_value(typed), expected):
            return _page(next_path, '<p class="error">Wrong token.</p>', status=401)
        response = RedirectResponse(next_path, status_code=303)
        response.set_cookie(SESSION_COOKIE, expected, max_age=SESSION_SECONDS, path="/",
                            httponly=True, samesite="strict",
                            secure=request.url.scheme == "https")
        return response

    @router.get("/logout", summary="Forget the session cookie")
    async def logout() -> Response:
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    return router


class TokenAuth:
    """Lets a request through with ``Authorization: Bearer <token>`` or the session cookie;
    sends a browser asking for a page to ``/login``, anything else gets 401."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()
        self.session = session_value(token).encode()

    def _authorised(self, headers: dict[bytes, bytes]) -> bool:
        scheme, _, credentials = headers.get(b"authorization", b"").partition(b" ")
        # compare_digest on every request, so timing says nothing about the token
        bearer = hmac.compare_digest(credentials.strip(), self.token)
        cookie = hmac.compare_digest(_cookie(headers.get(b"cookie", b"")), self.session)
        return (bearer and scheme.lower() == b"bearer") or cookie

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in OPEN_PATHS:
            headers = dict(scope["headers"])
            if not self._authorised(headers):
                await _refused(scope, headers)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _cookie(header: bytes) -> bytes:
    for part in header.split(b";"):
        name, _, value = part.strip().partition(b"=")
        if name == SESSION_COOKIE.encode():
            return value
    return b""


def _refused(scope: Scope, headers: dict[bytes, bytes]) -> Response:
    if scope["method"] == "GET" and b"text/html" in headers.get(b"accept", b""):
        path = scope["path"] + ("?" + scope["query_string"].decode() if scope["query_string"]
                                else "")
        return RedirectResponse("/login?next=" + quote(path, safe=""), status_code=303)
    return JSONResponse({"detail": "missing or wrong bearer token"}, status_code=401,
                        headers={"WWW-Authenticate": 'Bearer realm="larpix-monitor"'})
