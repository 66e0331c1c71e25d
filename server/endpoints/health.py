"""Health checks for load balancers and orchestrators. Liveness: the process answers. Readiness:
the identity database answers a trivial query and the primary keystore is loaded; the Redis
counters of [oauth.rate_limit] are reported too, without failing readiness, since the token
endpoint keeps serving on per-process counters while Redis is away (README, "Security").
WSO2's health-check API answers like readiness. No version, URL or error text is shown."""

from __future__ import annotations

from flask import Blueprint

from server import current
from server.render import json_response
from storage.database import UNAVAILABLE

bp = Blueprint("health", __name__)


def _answer(checks: list[dict]) -> object:
    down = any(c["status"] == "DOWN" and c.get("required", True) for c in checks)
    return json_response({"status": "DOWN" if down else "UP", "checks": checks}, 503 if down else 200)


@bp.get("/health/live")
def live():
    return _answer([{"name": "process", "status": "UP"}])


@bp.get("/health/ready")
@bp.get("/api/health-check/v1.0/health")  # WSO2 Identity Server's path, for existing load balancers
def ready():
    services = current.services()
    try:
        services.db.execute_sql("SELECT 1").fetchone()
        database = "UP"
    except UNAVAILABLE:
        database = "DOWN"
    keystore = services.keystore()
    checks = [{"name": "database", "status": database},
              {"name": "keystore", "status": "UP" if keystore.private_key and keystore.certificate else "DOWN"}]
    counters = services.limiter.counters
    if hasattr(counters, "ping"):  # store = "redis://…"
        checks.append({"name": "rate_limit_store", "status": "UP" if counters.ping() else "DOWN", "required": False})
    return _answer(checks)
