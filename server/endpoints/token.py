"""The token endpoint (RFC 6749 §3.2): the handler chain behind POST /oauth2/token."""

from __future__ import annotations

from flask import Blueprint, Response, request
from werkzeug.wrappers import Request

from core.errors import OAuthError
from core.request import TOKEN, TokenRequest
from server import current
from server.endpoints.metrics import note_unavailable
from server.forms import token_request
from server.render import as_oauth_error, error_parts, json_parts, json_response

bp = Blueprint("token", __name__)


def token_response(token_req: TokenRequest, idp) -> Response:
    body, headers = idp.chain.token(token_req)
    return json_response(body, headers=headers)


@bp.route("/oauth2/token", methods=["POST"], provide_automatic_options=False)
def token():
    # A POST reaches TokenEndpoint below first; this route gives other methods their 405.
    return token_response(token_request(TOKEN, request, current.idp()), current.idp())


class TokenEndpoint:
    """WSGI middleware: POST /oauth2/token, the hot path, is answered without Flask's
    per-request machinery (request context, routing, hooks: a fifth to a third of the request's
    CPU, bench/README.md); everything else, other methods on this path included, goes to
    Flask. The steps, the errors and their rendering are the view's; each request is also
    counted by grant_type and outcome (core.metrics), the early refusals included."""

    def __init__(self, flask_app, idp, release) -> None:
        self.flask_app, self.idp, self.release = flask_app, idp, release
        self.metrics = idp.services.metrics

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") != "/oauth2/token" or environ.get("REQUEST_METHOD") != "POST":
            return self.flask_app(environ, start_response)
        grant_type = None
        error: OAuthError | None = None
        try:
            token_req = token_request(TOKEN, Request(environ), self.idp)
            grant_type = token_req.form.get("grant_type")
            body, headers = self.idp.chain.token(token_req)
            status_line, fields, data = json_parts(body, headers=headers)
        except OAuthError as exc:
            error = exc
            note_unavailable(environ, exc)
        except Exception as exc:  # every failure leaves as JSON, as under Flask's handlers
            error = as_oauth_error(exc)
            note_unavailable(environ, exc)
        finally:
            self.release()
        if error is not None:
            status_line, fields, data = error_parts(error)
        if self.metrics is not None:
            self.metrics.token_request(grant_type, error.error if error else None, int(status_line[:3]))
        start_response(status_line, fields)
        return [data]
