"""The one place that turns a result or an OAuthError into an HTTP response."""

from __future__ import annotations

import json
from typing import Any

from flask import Response

from core.errors import OAuthError

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def json_response(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None,
                  cacheable: bool = False) -> Response:
    response = Response(json.dumps(body, separators=(",", ":")), status=status,
                        content_type="application/json")
    if not cacheable:
        response.headers.update(NO_STORE)
    response.headers.update(headers or {})
    return response


def error_response(exc: OAuthError) -> Response:
    return json_response({"error": exc.error, "error_description": exc.description}, exc.status, exc.headers)


def raw_error(status: int, reason: str) -> bytes:
    """A complete HTTP/1.1 error response for errors gunicorn answers before the app runs
    (request line or headers too large, malformed HTTP): JSON like every other error."""
    error = "server_error" if status >= 500 else "invalid_request"
    body = json.dumps({"error": error, "error_description": f"The HTTP request was refused: {reason}"},
                      separators=(",", ":")).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Cache-Control: no-store\r\nPragma: no-cache\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode("latin-1") + body
