"""GET /metrics (the Prometheus text format) and the per-request measurements behind it.

`RequestMetrics` is the outermost WSGI middleware: it times and counts every request by a fixed
endpoint name (never the raw path) and status, counts 503 answers by cause, and answers
/metrics itself — on the server's port, or with [monitoring] port set on that port only (a
second gunicorn listener; every other path there is 404, and /metrics on the server's port too).

Who may read it: [monitoring] allowed_addresses, matched against the client's address as the
rate limits and the audit log see it (server.current.client_address): the TCP peer, or behind one
of [server] trusted_proxies the address that proxy forwarded. So a proxy on the loopback
interface does not make every client of the proxy a loopback reader — nor does one that is not
listed (or is, in another spelling): a forwarded request whose client address was not read from
the forwarding (a peer that is not a trusted proxy, or one that sent no X-Forwarded-For) is refused.
"""

from __future__ import annotations

import ipaddress
import time

from werkzeug.wrappers import Request, Response

from core.errors import OAuthError
from server import current
from server.render import as_oauth_error, error_response
from storage.database import UNAVAILABLE

PATH = "/metrics"
# Why a request was answered 503, set where the answer is made (token middleware, error handlers).
UNAVAILABLE_CAUSE = "idp.unavailable_cause"

_EXACT = {
    "/oauth2/token": "token",
    "/oauth2/authorize": "authorize",
    "/oauth2/userinfo": "userinfo",
    "/oauth2/introspect": "introspect",
    "/oauth2/revoke": "revoke",
    "/oauth2/par": "par",
    "/oauth2/logout": "logout",
    "/oauth2/jwks": "jwks",
    "/api/openapi.json": "openapi",
    "/api/health-check/v1.0/health": "health",
    PATH: "metrics",
}
# Longest first where one prefix contains another.
_PREFIXES = (
    ("/oauth2/token/.well-known/", "discovery"),
    ("/.well-known/openid-configuration", "discovery"),
    ("/.well-known/oauth-authorization-server", "discovery"),
    ("/api/identity/oauth2/dcr/", "registration"),
    ("/health/", "health"),
    ("/console", "console"),
)


def endpoint_name(path: str) -> str:
    """The fixed name of the endpoint a path belongs to; "other" for anything else (a 404)."""
    name = _EXACT.get(path)
    if name is not None:
        return name
    for prefix, name in _PREFIXES:
        if path.startswith(prefix):
            return name
    return "other"


def note_unavailable(environ: dict, exc: BaseException) -> None:
    """Remember why the answer to this request is a 503: the database could not serve, or a
    handler said temporarily_unavailable."""
    if isinstance(exc, UNAVAILABLE):
        environ[UNAVAILABLE_CAUSE] = "database"
    elif isinstance(exc, OAuthError) and exc.status == 503:
        environ.setdefault(UNAVAILABLE_CAUSE, "handler")


def _allowed(address: str, networks: tuple) -> bool:
    canonical = current.canonical_address(address)   # a dual-stack listener's ::ffff:a.b.c.d is a.b.c.d
    return canonical is not None and any(ipaddress.ip_address(canonical) in network for network in networks)


# Headers a reverse proxy adds (RFC 7239 and the de facto ones).
_FORWARDING = ("Forwarded", "X-Forwarded-For", "X-Real-IP")


def _forwarded_unread(req: Request, idp) -> bool:
    """The request was forwarded, but the client's address was not read from the forwarding: the
    peer is not a trusted proxy, or is one that sent no X-Forwarded-For (only Forwarded, X-Real-IP)."""
    if not any(name in req.headers for name in _FORWARDING):
        return False
    return not current.trusted_proxy(req.remote_addr or "", idp) or "X-Forwarded-For" not in req.headers


def _error(error: str, description: str, status: int, headers: dict | None = None):
    return error_response(OAuthError(error, description, status, headers))


class RequestMetrics:
    """WSGI middleware around everything else (the token middleware and Flask)."""

    def __init__(self, app, idp) -> None:
        self.app = app
        self.idp = idp
        self.metrics = idp.services.metrics
        monitoring = idp.services.settings.monitoring
        self.port = str(monitoring["port"]) if monitoring["port"] else None
        self.networks = monitoring["allowed_networks"]

    def __call__(self, environ, start_response):
        started = time.perf_counter()
        path = environ.get("PATH_INFO", "")
        if self.port is None:
            own = path == PATH
        else:  # gunicorn's SERVER_PORT is the port of the listener the request came in on
            own = environ.get("SERVER_PORT") == self.port
        statuses: list[str] = []

        def remember(status, headers, exc_info=None):
            statuses.append(status)
            return start_response(status, headers, exc_info)

        try:
            if own:
                result = self.scrape(environ)(environ, remember)
            else:
                result = self.app(environ, remember)
        except BaseException:
            self.metrics.request(endpoint_name(path), 500, time.perf_counter() - started)
            raise
        status = int(statuses[-1][:3]) if statuses else 500
        cause = environ.get(UNAVAILABLE_CAUSE)
        if own:
            endpoint = "metrics" if path == PATH else "other"
        else:  # /metrics here is a 404 when it has a port of its own
            endpoint = endpoint_name(path) if path != PATH else "other"
        if status == 503 and cause is None and endpoint == "health":
            cause = "not_ready"
        self.metrics.request(endpoint, status, time.perf_counter() - started, cause)
        return result

    def scrape(self, environ):
        """The answer on the metrics listener: GET /metrics for allowed addresses, else an error."""
        if environ.get("PATH_INFO") != PATH:
            return _error("not_found", "Not Found", 404)
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return _error("invalid_request", "This endpoint accepts only GET, HEAD", 405, {"Allow": "GET, HEAD"})
        req = Request(environ)
        if (_forwarded_unread(req, self.idp)
                or not _allowed(current.client_address(req, self.idp), self.networks)):
            return _error("access_denied", "The metrics are not available to this address", 403)
        try:
            body, content_type = self.metrics.exposition()
        except Exception as exc:  # e.g. an unreadable file in the metrics directory: JSON, logged
            return error_response(as_oauth_error(exc))
        return Response(body, 200, {"Cache-Control": "no-store"}, content_type=content_type)
