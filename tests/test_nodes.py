"""Several server nodes on one PostgreSQL or MariaDB database: one replay store, one token store.

Each node is a real `python app.py` (gunicorn, HTTPS) with its own directory, keystore and
port; they share only the database, as nodes behind a load balancer do. All nodes carry the
same issuer, as they must (README, "Running several nodes")."""

from __future__ import annotations

import hashlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest
import requests

from support import Server, assert_oauth_error, claims_for, free_port, jwks_of, rsa_key, sign, token_form, write_config
from tcp_proxy import TCPProxy

ISSUER = "https://idp.example.test/oauth2/token"
SHARED = f'[oauth.oidc.id_token]\nissuer = "{ISSUER}"\n'


@dataclass
class Cluster:
    kind: str
    url: str
    nodes: list[Server]
    key: object

    def assertion(self, client_id: str = "node-client", **claims) -> str:
        return sign(self.key, claims_for(client_id, ISSUER, **claims), "RS256", {"kid": "k1"})

    def db(self, tmp):
        from storage.database import open_database
        return open_database(self.url, tmp)


def start_node(tmp_path_factory, name: str, url: str, **config) -> Server:
    directory = tmp_path_factory.mktemp(name)
    port = free_port()
    return Server(write_config(directory, port, database_url=url, extra=SHARED, **config), port).start()


@pytest.fixture(scope="module", params=["postgresql", "mysql"])
def cluster(request, tmp_path_factory, database_urls):
    from storage import clients
    from storage.database import close_all, open_database
    from storage.schema import upgrade
    url = database_urls(request.param)
    key = rsa_key()
    db = open_database(url, tmp_path_factory.mktemp("registry"))
    upgrade(db)
    clients.delete("node-client")
    clients.create("node-client", "private_key_jwt", grant_types=("client_credentials",), scopes=("read",),
                   jwks=jwks_of((key, "k1")))
    close_all(db)
    nodes: list[Server] = []
    try:
        for name in ("a", "b"):
            nodes.append(start_node(tmp_path_factory, f"node-{name}-{request.param}", url))
        yield Cluster(request.param, url, nodes, key)
    finally:
        for node in nodes:
            node.stop()


def test_jti_used_on_one_node_is_refused_on_the_other(cluster):
    a, b = cluster.nodes
    assertion = cluster.assertion()
    assert a.post(data=token_form(assertion)).status_code == 200
    body = assert_oauth_error(b.post(data=token_form(assertion)), 401, "invalid_client")
    assert "already been used" in body["error_description"]


def test_concurrent_requests_over_both_nodes_one_success(cluster):
    for _ in range(2):
        assertion = cluster.assertion()
        with ThreadPoolExecutor(max_workers=50) as pool:
            responses = list(pool.map(lambda i: cluster.nodes[i % 2].post(data=token_form(assertion)), range(50)))
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [200] + [401] * 49, statuses


def test_token_from_one_node_introspects_and_revokes_on_the_other(cluster):
    a, b = cluster.nodes
    token = a.post(data=token_form(cluster.assertion())).json()["access_token"]
    introspect = lambda node: node.post("/oauth2/introspect", data=token_form(cluster.assertion(), token=token))
    body = introspect(b).json()
    assert body["active"] is True and body["client_id"] == "node-client" and body["scope"] == "read"
    assert b.post("/oauth2/revoke", data=token_form(cluster.assertion(), token=token)).status_code == 200
    assert introspect(a).json() == {"active": False}


def test_client_registered_on_one_node_is_seen_by_the_other(cluster, tmp_path):
    a, b = cluster.nodes
    key = rsa_key()
    jwks = tmp_path / "jwks.json"
    jwks.write_text(jwks_of((key, "k1")))
    client_id = f"late-{cluster.kind}-{time.time_ns()}"
    a.cli("clients", "create", "--client-id", client_id, "--auth-method", "private_key_jwt",
          "--jwks-file", str(jwks))
    assertion = sign(key, claims_for(client_id, ISSUER), "RS256", {"kid": "k1"})
    assert b.post(data=token_form(assertion)).status_code == 200
    a.cli("clients", "delete", client_id)
    assertion = sign(key, claims_for(client_id, ISSUER), "RS256", {"kid": "k1"})
    assert_oauth_error(b.post(data=token_form(assertion)), 401, "invalid_client")


def _load(node: Server, cluster: Cluster, stop: threading.Event, results: list, threads: int = 4) -> list[threading.Thread]:
    """Fresh assertions as fast as `threads` clients can send them; records (status, jti, token)."""
    def run():
        session = requests.Session()
        while not stop.is_set():
            claims = claims_for("node-client", ISSUER)
            assertion = sign(cluster.key, claims, "RS256", {"kid": "k1"})
            try:
                r = session.post(node.base + "/oauth2/token", data=token_form(assertion), verify=node.ca, timeout=10)
            except requests.RequestException as exc:
                results.append((None, claims["jti"], repr(exc)[:200]))
                time.sleep(0.05)
                continue
            body = r.json()  # always JSON, also for errors
            results.append((r.status_code, claims["jti"], body.get("access_token")))
    workers = [threading.Thread(target=run) for _ in range(threads)]
    [w.start() for w in workers]
    return workers


def _stored(cluster: Cluster, tmp, tokens: list[str], jtis: list[str]) -> tuple[int, int]:
    from storage.database import close_all
    from storage.models import JTI, AccessToken
    db = cluster.db(tmp)
    try:
        hashes = [hashlib.sha256(t.encode()).hexdigest() for t in tokens]
        found_tokens = sum(AccessToken.select().where(AccessToken.token_hash.in_(hashes[i:i + 500])).count()
                           for i in range(0, len(hashes), 500))
        found_jtis = sum(JTI.select().where((JTI.client_id == "node-client") & JTI.jwt_id.in_(jtis[i:i + 500])).count()
                         for i in range(0, len(jtis), 500))
        return found_tokens, found_jtis
    finally:
        close_all(db)


def test_database_outage_fails_closed_and_recovers(cluster, tmp_path_factory, tmp_path):
    parts = urlsplit(cluster.url)
    proxy = TCPProxy(parts.hostname, parts.port).start()
    proxied = cluster.url.replace(f"{parts.hostname}:{parts.port}", f"127.0.0.1:{proxy.port}")
    node = start_node(tmp_path_factory, f"node-proxied-{cluster.kind}", proxied + "?connect_timeout=2&statement_timeout=3000")
    stop, results = threading.Event(), []
    try:
        workers = _load(node, cluster, stop, results)
        assert node.get("/health/ready").status_code == 200
        time.sleep(1.5)
        proxy.cut()
        time.sleep(3)
        during = len(results)
        # What a load balancer polling the node sees.
        polls = [node.get("/health/ready") for _ in range(4)]
        proxy.restore()
        deadline = time.time() + 20
        while time.time() < deadline and not any(s == 200 for s, _, _ in results[during:]):
            time.sleep(0.2)
        time.sleep(1)
        stop.set()
        [w.join() for w in workers]
    finally:
        stop.set()
        node.stop()
        proxy.stop()
    assert [p.status_code for p in polls] == [503] * 4, [p.text for p in polls]
    assert polls[-1].json()["checks"][0] == {"name": "database", "status": "DOWN"}
    statuses = {s for s, _, _ in results}
    assert statuses <= {200, 503}, [r for r in results if r[0] is None][:3]  # never a 500, never a hang
    assert 503 in statuses                            # the outage was seen and reported as such
    assert any(s == 200 for s, _, _ in results[during:]), "the node did not recover"
    errors = [r for r in results if r[0] == 503]
    assert all(t is None for _, _, t in errors)
    tokens = [t for s, _, t in results if s == 200]
    assert _stored(cluster, tmp_path, tokens, [])[0] == len(tokens)  # every token a client got exists
    assert "Traceback" not in node.log()


def test_restart_under_load_loses_nothing(cluster, tmp_path):
    node = cluster.nodes[0]
    stop, results = threading.Event(), []
    workers = _load(node, cluster, stop, results)
    try:
        time.sleep(1.5)
        node.restart()
        time.sleep(1.5)
    finally:
        stop.set()
        [w.join() for w in workers]
    accepted = [(j, t) for s, j, t in results if s == 200]
    assert {s for s, _, _ in results} <= {200, None}, {s for s, _, _ in results}
    assert len(accepted) > 10
    tokens, jtis = _stored(cluster, tmp_path, [t for _, t in accepted], [j for j, _ in accepted])
    assert (tokens, jtis) == (len(accepted), len(accepted))
