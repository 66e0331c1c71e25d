"""Failure budgets shared through Redis by every worker and node, and what happens when Redis is
down. The Redis server on 127.0.0.1:6379 is real; these tests own its database 7 and empty it."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from support import (Server, assert_oauth_error, claims_for, free_port, jwks_of, rsa_key, session_from, sign,
                     token_form, write_config)

REDIS_URL = "redis://127.0.0.1:6379/7"


@pytest.fixture
def redis_db():
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def limiter(store=REDIS_URL, window=60, **limits):
    from core.ratelimit import FailureLimiter
    return FailureLimiter(limits, window, store=store)


def test_two_limiters_share_one_budget(redis_db):
    a, b = limiter(address=3), limiter(address=3)           # two workers, or two nodes
    assert [a.client_failed("192.0.2.1"), b.client_failed("192.0.2.1"), a.client_failed("192.0.2.1")] == [None] * 3
    assert b.client_retry("192.0.2.1") == 60 and a.client_retry("192.0.2.1") == 60
    assert b.client_failed("192.0.2.1") == 60                # the fourth, wherever it lands, is beyond
    assert a.client_retry("192.0.2.9") is None
    assert 59_000 <= redis_db.pttl("pkjwt:failures:address:192.0.2.1") <= 60_000


def test_the_count_decides_atomically(redis_db):
    """40 failures at once through four limiters: exactly the budget of them get through."""
    limiters = [limiter(client_address=10) for _ in range(4)]
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda n: limiters[n % 4].client_failed("192.0.2.1", "victim"), range(40)))
    assert answers.count(None) == 10 and all(a and 59 <= a <= 60 for a in answers if a is not None)


def test_retry_after_is_the_time_left_in_the_window(redis_db):
    one = limiter(client=1, window=100)
    one.client_failed("192.0.2.1", "c")
    redis_db.pexpire("pkjwt:failures:client:c", 42_300)      # as if 57.7 s had passed
    assert one.client_retry("198.51.100.1", "c") == 43
    assert one.client_failures("c") == (1, 43)


@pytest.mark.parametrize("credentials", ["user:secret@", ":secret@"])
@pytest.mark.parametrize("query", ["", "?password=secret&socket_timeout=1"])
def test_redis_down_falls_back_to_this_process_and_says_so_once(caplog, credentials, query):
    closed = free_port()
    down = limiter(store=f"redis://{credentials}127.0.0.1:{closed}/0{query}", address=2)
    with caplog.at_level(logging.WARNING, logger="core.ratelimit"):
        assert down.client_failed("192.0.2.1") is None
        assert down.client_failed("192.0.2.1") is None
        assert down.client_failed("192.0.2.1") == 60          # counted in memory meanwhile
        assert down.client_retry("192.0.2.1") == 60
    warnings = [r.getMessage() for r in caplog.records if r.name == "core.ratelimit"]
    assert len(warnings) == 1 and f"store redis://127.0.0.1:{closed}/0 is unreachable" in warnings[0]
    assert "secret" not in warnings[0] and "user" not in warnings[0]
    assert down.counters.available is False


# --- two real nodes, two workers each, one Redis ------------------------------------------------

def start_node(tmp_path, name: str, key, store: str, **limits) -> Server:
    from storage import clients
    from storage.database import close_all, open_database
    from storage.schema import upgrade
    directory = tmp_path / name
    port = free_port()
    path = write_config(directory, port, rate_limit={"store": store, "window": 60, **limits},
                        extra='[oauth.oidc.id_token]\nissuer = "https://idp.example.test/oauth2/token"\n')
    db = open_database("sqlite:///var/identity.db", directory)
    upgrade(db)
    clients.create("victim", "private_key_jwt", grant_types=("client_credentials",), scopes=("read",),
                   jwks=jwks_of((key, "k1")))
    close_all(db)
    return Server(path, port).start()


def assertion(key, **claims) -> str:
    return sign(key, claims_for("victim", "https://idp.example.test/oauth2/token", **claims), "RS256", {"kid": "k1"})


def test_two_nodes_share_the_attackers_budget_and_serve_the_victim(tmp_path, redis_db):
    key = rsa_key()
    nodes = [start_node(tmp_path, name, key, REDIS_URL, failures_per_address=10, failures_per_client_address=10,
                        failures_per_client=10) for name in ("a", "b")]
    attacker, victim = session_from("127.0.0.3"), session_from("127.0.0.4")
    try:
        forged = rsa_key()
        answers = []
        for n in range(40):
            node = nodes[n % 2]
            form = token_form(assertion(forged))
            answers.append(attacker.post(node.base + "/oauth2/token", data=form, verify=node.ca, timeout=15))
        statuses = [r.status_code for r in answers]
        assert statuses.count(401) == 10 and statuses.count(429) == 30, statuses
        assert_oauth_error(answers[-1], 429, "invalid_client")
        # The client id is over its budget on both nodes; its holder is served on both.
        for node in nodes:
            r = victim.post(node.base + "/oauth2/token", data=token_form(assertion(key)), verify=node.ca, timeout=15)
            assert r.status_code == 200, r.text
        assert int(redis_db.get("pkjwt:failures:address:127.0.0.3")) == 10
    finally:
        for node in nodes:
            node.stop()


def test_a_node_whose_redis_is_down_keeps_serving(tmp_path):
    key = rsa_key()
    node = start_node(tmp_path, "alone", key, f"redis://127.0.0.1:{free_port()}/0", failures_per_address=2)
    try:
        assert node.post(data=token_form(assertion(key))).status_code == 200
        statuses = [node.post(data=token_form(assertion(rsa_key()))).status_code for _ in range(8)]
        # Each worker counts on its own meanwhile (2 workers: up to 2 × 2 failures get their 401).
        assert 2 <= statuses.count(401) <= 4 and statuses.count(429) == 8 - statuses.count(401), statuses
        assert node.post(data=token_form(assertion(key))).status_code == 200
    finally:
        node.stop()
    log = node.log()
    assert "rate-limit store" in log and "is unreachable" in log and "Traceback" not in log
