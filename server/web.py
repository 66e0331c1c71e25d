"""Browser pages: sign-in sessions, CSRF protection and HTML rendering, shared by the
authorization endpoint (/oauth2/authorize) and the management console (/console).

Sessions live in the database (storage.users): the cookie holds 256 random bits, the table their
hash, so a sign-out or a deleted user ends the session on every worker and node at once. CSRF
uses a double-submit cookie: every form carries the value of a `__Host-` cookie that another
site can neither read nor set.
"""

from __future__ import annotations

import hmac
import re
import secrets
from typing import Any

from flask import Flask, Response, g, render_template, request
from werkzeug.exceptions import HTTPException

from core.errors import OAuthError
from server import current
from server.endpoints.metrics import note_unavailable
from server.forms import check_media_type, parse_form, read_body
from server.render import as_oauth_error, error_response
from storage import users as user_store
from storage.users import Account

SESSION_COOKIE = "__Host-idp_session"
CSRF_COOKIE = "__Host-idp_csrf"
_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")

# Pages render no script and are never framed; styles are inline in the base template.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",   # own forms keep their Origin; codes in URLs never leave
}


class PageError(Exception):
    """An error shown to a person as an HTML page (never a redirect to an unverified URI)."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message


class SignInError(Exception):
    """A refused sign-in; the message is generic: it never says whether the user exists.
    `retry_after` (seconds) is set when the failure limits refused it (a 429 page)."""

    def __init__(self, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


# --- rendering ----------------------------------------------------------------------------------

def render_page(template: str, status: int = 200, **context: Any) -> Response:
    # No database access here: error pages render this way too, also when the database is down.
    html = render_template(template, csrf_token=csrf_token(), **context)
    response = Response(html, status=status, content_type="text/html; charset=utf-8")
    response.headers.update(PAGE_HEADERS)
    return response


def error_page(exc: PageError) -> Response:
    return render_page("error.html", exc.status, title=exc.title, message=exc.message)


def http_error_page(exc: HTTPException) -> Response:
    status = exc.code or 500
    response = render_page("error.html", status, title=exc.name or "Error",
                           message="The page does not exist." if status == 404 else "The request could not be served.")
    if status == 405 and getattr(exc, "valid_methods", None):
        response.headers["Allow"] = ", ".join(exc.valid_methods)  # RFC 9110 §15.5.6
    return response


def html_pages() -> bool:
    """Whether the current request is for a browser page (errors then render as HTML)."""
    # A routing error (an unknown page under /console, a PUT to /oauth2/authorize) has no
    # blueprint, but is still an answer to a browser.
    return (request.blueprint in ("authorize", "console") or request.path.startswith("/console/")
            or request.path in ("/console", "/oauth2/authorize", "/oauth2/logout"))


def read_form() -> dict[str, str]:
    """A browser form, parsed by the same strict parser as OAuth requests."""
    try:
        check_media_type(request.headers.get("Content-Type"))
        return parse_form(read_body(request.stream))
    except OAuthError as exc:
        raise PageError(exc.status, "Bad request", exc.description) from None  # 400, or 413 for a large body


# --- CSRF -------------------------------------------------------------------------------------

def csrf_token() -> str:
    """The token forms carry; set as a cookie with the response when the browser has none."""
    if "csrf_token" not in g:
        value = request.cookies.get(CSRF_COOKIE, "")
        if not _TOKEN.fullmatch(value):
            value = secrets.token_urlsafe(32)
            g.csrf_new = True
        g.csrf_token = value
    return g.csrf_token


def check_csrf(form: dict[str, str]) -> None:
    cookie = request.cookies.get(CSRF_COOKIE, "")
    sent = form.get("csrf_token", "")
    if not _TOKEN.fullmatch(cookie) or not hmac.compare_digest(sent.encode(), cookie.encode()):
        raise PageError(400, "Form expired", "The form expired or came from another site. "
                                             "Go back, reload the page and try again.")
    # A browser says where a form came from; a cross-site origin is refused even with a token.
    # Our pages send Referrer-Policy: same-origin, so their own forms never carry Origin: null.
    origin = request.headers.get("Origin")
    if (origin is not None and origin != current.services().settings.base_url) \
            or request.headers.get("Sec-Fetch-Site") == "cross-site":
        raise PageError(403, "Forbidden", "The form was sent from another site.")


def set_cookies(response: Response) -> Response:
    """after_request: the CSRF cookie, when this response created one."""
    if g.get("csrf_new"):
        response.set_cookie(CSRF_COOKIE, g.csrf_token, secure=True, httponly=True, samesite="Lax", path="/")
    return response


# --- sessions and sign-in ---------------------------------------------------------------------

def signed_in() -> tuple[Account, int] | None:
    """The account signed in on this browser and its auth_time, or None."""
    if "session_account" not in g:
        g.session_account = user_store.session_account(request.cookies.get(SESSION_COOKIE))
    return g.session_account


def sign_in(username: str, password: str, remote_addr: str, purpose: str) -> Account:
    """Check a user name and password, with failures limited per user name and per address."""
    limiter = current.services().limiter
    # A name that cannot exist is counted against the address only: arbitrary strings must not
    # become keys of the (bounded, per-process) failure table.
    user_key = username if user_store.check_username(username) is None else None
    retry = limiter.blocked("signin_address", remote_addr) or limiter.blocked("user", user_key)
    if retry is not None:
        _audit(username, remote_addr, purpose, "failure", "rate_limited")
        raise SignInError(f"Too many failed sign-ins. Try again in {retry} seconds.", retry_after=retry)
    account = user_store.authenticate(username, password)
    if account is None or (purpose == "console" and not account.is_admin):
        limiter.failed("user", user_key)
        limiter.failed("signin_address", remote_addr)
        _audit(username, remote_addr, purpose, "failure", "credentials")
        raise SignInError("The user name or password is incorrect.")
    _audit(username, remote_addr, purpose, "success", None)
    return account


def start_session(response: Response, account: Account, auth_time: int | None = None) -> None:
    """A fresh session cookie for this sign-in (a new value each time: no session fixation); the
    browser's previous session, if any, ends. `auth_time` (default: now) lets a caller that
    already used the time record the same value."""
    user_store.end_session(request.cookies.get(SESSION_COOKIE))
    lifetime = current.services().settings.session_lifetime
    value = user_store.start_session(account, lifetime, auth_time)
    response.set_cookie(SESSION_COOKIE, value, max_age=lifetime, secure=True, httponly=True, samesite="Lax", path="/")


def end_session(response: Response) -> None:
    user_store.end_session(request.cookies.get(SESSION_COOKIE))
    response.delete_cookie(SESSION_COOKIE, secure=True, httponly=True, samesite="Lax", path="/")


def _audit(username: str, remote_addr: str, purpose: str, outcome: str, reason: str | None) -> None:
    current.chain().emit("user_authentication", {"username": username[:255], "purpose": purpose, "outcome": outcome,
                                          "reason": reason, "remote_addr": remote_addr})


def register_error_handlers(app: Flask) -> None:
    """Every error leaves as JSON: OAuth errors, Werkzeug's HTTP errors, and anything unexpected."""

    @app.errorhandler(OAuthError)
    def oauth_error(exc: OAuthError):
        note_unavailable(request.environ, exc)
        if html_pages():
            return error_page(PageError(exc.status, "Bad request", exc.description))
        return error_response(exc)

    @app.errorhandler(PageError)
    def page_error(exc: PageError):
        return error_page(exc)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        if html_pages():
            return http_error_page(exc)
        return error_response(as_oauth_error(exc))

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        error = as_oauth_error(exc)
        note_unavailable(request.environ, exc)
        if html_pages():
            return error_page(PageError(error.status, "Service unavailable" if error.status == 503
                                                else "Server error", error.description))
        return error_response(error)
