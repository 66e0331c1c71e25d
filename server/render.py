"""The one place that turns a result or an OAuthError into an HTTP response."""

from __future__ import annotations

import json
from typing import Any

from flask import Response

from server.errors import OAuthError

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
