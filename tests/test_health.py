"""Health checks: /health/live, /health/ready and WSO2's /api/health-check/v1.0/health. The
database outage is in test_nodes.py (a real node behind a TCP proxy that is cut)."""

from __future__ import annotations

import pytest
import redis

from support import free_port

READY_UP = {"status": "UP", "checks": [{"name": "database", "status": "UP"}, {"name": "keystore", "status": "UP"}]}


def get(env, path: str):
    return env.app.test_client().get(path)


def test_live(idp):
    r = get(idp, "/health/live")
    assert (r.status_code, r.json) == (200, {"status": "UP", "checks": [{"name": "process", "status": "UP"}]})
    assert r.headers["Cache-Control"] == "no-store" and r.headers["Content-Type"] == "application/json"


@pytest.mark.parametrize("path", ["/health/ready", "/api/health-check/v1.0/health"])
def test_ready(idp, path):
    r = get(idp, path)
    assert (r.status_code, r.json) == (200, READY_UP)
    assert r.headers["Cache-Control"] == "no-store"


def test_ready_without_the_database_is_503_naming_it(make_idp):
    env = make_idp()
    services = env.app.extensions["idp"].services
    services.db.close()
    services.db.init("/nonexistent/dir/identity.db")  # cannot be opened
    r = get(env, "/health/ready")
    assert r.status_code == 503
    assert r.json == {"status": "DOWN", "checks": [{"name": "database", "status": "DOWN"},
                                                  {"name": "keystore", "status": "UP"}]}
    assert r.headers["Cache-Control"] == "no-store"
    assert get(env, "/health/live").status_code == 200


def test_a_redis_store_is_reported_and_never_fails_readiness(make_idp):
    down = make_idp(rate_limit={"store": f"redis://127.0.0.1:{free_port()}/7"})
    r = get(down, "/health/ready")
    assert r.status_code == 200
    assert r.json["checks"][-1] == {"name": "rate_limit_store", "status": "DOWN", "required": False}
    redis.Redis.from_url("redis://127.0.0.1:6379/7").ping()
    up = make_idp(rate_limit={"store": "redis://127.0.0.1:6379/7"})
    assert get(up, "/health/ready").json["checks"][-1] == {"name": "rate_limit_store", "status": "UP", "required": False}


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_other_methods_are_405(idp, method):
    r = idp.app.test_client().open("/health/ready", method=method)
    assert r.status_code == 405 and r.json["error"] == "invalid_request"
