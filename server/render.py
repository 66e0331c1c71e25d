"""The one place that turns a result or an OAuthError into an HTTP response."""

from __future__ import annotations

import json
import logging
from typing import Any

from flask import Response
from werkzeug.exceptions import HTTPException
from werkzeug.http import HTTP_STATUS_CODES

from core.errors import OAuthError, temporarily_unavailable
from storage.database import UNAVAILABLE

log = logging.getLogger("server.render")

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def json_parts(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None,
               cacheable: bool = False) -> tuple[str, list[tuple[str, str]], bytes]:
    """A JSON answer as WSGI hands it on: the status line, the header list and the body.
    `headers` add to (or replace) the JSON and no-store headers; the body's length is always
    the one sent."""
    data = json.dumps(body, separators=(",", ":")).encode()
    fields = {"Content-Type": "application/json", "Content-Length": str(len(data))}
    if not cacheable:
        fields.update(NO_STORE)
    if headers:
        for name, value in headers.items():   # one spelling per name, whatever the caller's case
            if name.lower() == "content-length":
                continue
            fields.pop(next((k for k in fields if k.lower() == name.lower()), name), None)
            fields[name] = str(value)
    return f"{status} {HTTP_STATUS_CODES.get(status, 'UNKNOWN').upper()}", list(fields.items()), data


def json_response(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None,
                  cacheable: bool = False) -> Response:
    status_line, fields, data = json_parts(body, status, headers, cacheable)
    return Response(data, status=status_line, headers=fields)


def error_parts(exc: OAuthError) -> tuple[str, list[tuple[str, str]], bytes]:
    return json_parts({"error": exc.error, "error_description": exc.description}, exc.status, exc.headers)


def error_response(exc: OAuthError) -> Response:
    status_line, fields, data = error_parts(exc)
    return Response(data, status=status_line, headers=fields)


def raw_error(status: int, reason: str) -> bytes:
    """A complete HTTP/1.1 error response for errors gunicorn answers before the app runs
    (request line or headers too large, malformed HTTP): JSON like every other error."""
    error = "server_error" if status >= 500 else "invalid_request"
    body = json.dumps({"error": error, "error_description": f"The HTTP request was refused: {reason}"},
                      separators=(",", ":")).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Cache-Control: no-store\r\nPragma: no-cache\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode("latin-1") + body


def as_oauth_error(exc: Exception) -> OAuthError:
    """The OAuth error an exception other than OAuthError is answered with (logged when it is
    the server's fault): Werkzeug's HTTP errors keep their status, a database that cannot
    serve is 503, anything else 500."""
    if isinstance(exc, HTTPException):
        status = exc.code or 500
        headers = {}
        description = exc.name or "HTTP error"
        if status == 405 and getattr(exc, "valid_methods", None):
            headers["Allow"] = ", ".join(exc.valid_methods)
            description = "This endpoint accepts only " + headers["Allow"]
        error = "not_found" if status == 404 else "invalid_request"
        return OAuthError(error, description, status, headers)
    if isinstance(exc, UNAVAILABLE):
        log.error("database unavailable: %s", exc.__class__.__name__)
        return temporarily_unavailable("The service is temporarily unavailable")
    log.exception("unexpected error", exc_info=exc)
    return OAuthError("server_error", "The server could not process the request", 500)
