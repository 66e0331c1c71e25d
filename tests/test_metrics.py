"""GET /metrics: the counters in-process (exact values after known requests), who may read them,
[monitoring] mistakes, and the real thing — a two-worker gunicorn server scraped by Debian's
Prometheus, the counter read back through Prometheus's HTTP API."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from core import config, metrics as core_metrics
from keystore.jwks_uri import fetch_outcome
from storage.replay import ReplayStore
from support import (JWKSServer, Server, assert_oauth_error, claims_for, dpop_proof, free_port, jwks_of, register_in_database,
                     rsa_key, session_from, shared_keystore, sign, token_form, write_config)

PROMETHEUS = "/usr/bin/prometheus"
TOKEN_REQUESTS = 24
DASHBOARD = Path(__file__).resolve().parent.parent / "docs" / "grafana-dashboard.json"


# --- helpers --------------------------------------------------------------------------------------

def samples(text: str) -> dict[tuple, float]:
    """(sample name, sorted label pairs) -> value of a text-format answer."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(text: str, name: str, **labels) -> float:
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


def scrape(env, **environ) -> str:
    r = env.app.test_client().get("/metrics", environ_base={"REMOTE_ADDR": "127.0.0.1", **environ})
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert r.headers["Cache-Control"] == "no-store"
    return r.text


def label_values(text: str) -> set[str]:
    return {v for (_, labels) in samples(text) for _, v in labels}


# --- fixed label sets -----------------------------------------------------------------------------

@pytest.mark.parametrize("raw, label", [("client_credentials", "client_credentials"), ("", "none"), (None, "none"),
                                        ("urn:example:my-own-grant", "other"), ("client-1", "other")])
def test_grant_types_come_from_a_fixed_set(raw, label):
    assert core_metrics.grant_type_label(raw) == label


@pytest.mark.parametrize("reason, label", [("signature", "signature"), ("aud", "audience"), ("expired", "expired"),
                                           ("replay", "replay"), ("unknown_client", "unknown_client"),
                                           ("jwks_uri", "keys_unavailable"), ("rate_limited", "rate_limited"),
                                           ("a reason of my own", "other"), (None, "other")])
def test_authentication_reasons_are_grouped(reason, label):
    assert core_metrics.reason_label(reason) == label


@pytest.mark.parametrize("description, outcome", [
    ("jwks_uri fetch timed out", "timeout"), ("jwks_uri host name resolution timed out", "timeout"),
    ("jwks_uri host resolves to a non-public address", "refused"), ("jwks_uri host name could not be resolved", "dns"),
    ("jwks_uri server certificate verification failed", "tls"), ("jwks_uri connection refused", "connection"),
    ("jwks_uri responded with a redirect, which is not followed", "http_status"),
    ("jwks_uri response is too large", "too_large"), ("jwks_uri response could not be parsed (ValueError)", "invalid"),
])
def test_jwks_fetch_failures_have_a_fixed_outcome(description, outcome):
    assert fetch_outcome(description) == outcome


# --- in-process: exact counts ---------------------------------------------------------------------

def test_token_requests_authentication_failures_and_issued_tokens_are_counted(idp):
    for _ in range(3):
        assert idp.token(idp.assertion()).status_code == 200
    assert idp.token(idp.assertion(aud="https://elsewhere.example/token")).status_code == 401
    assert idp.token(idp.assertion(client_id="nobody-registered")).status_code == 401
    replayed = idp.assertion()
    assert idp.token(replayed).status_code == 200
    assert idp.token(replayed).status_code == 401
    assert idp.post({"grant_type": "urn:example:client-1-secret"}).status_code == 400
    text = scrape(idp)
    assert value(text, "idp_token_requests_total", grant_type="client_credentials", outcome="success") == 4
    assert value(text, "idp_token_requests_total", grant_type="client_credentials", outcome="invalid_client") == 3
    assert value(text, "idp_token_requests_total", grant_type="other", outcome="unsupported_grant_type") == 1
    assert value(text, "idp_client_authentication_failures_total", method="private_key_jwt", reason="audience") == 1
    assert value(text, "idp_client_authentication_failures_total", method="private_key_jwt",
                 reason="unknown_client") == 1
    assert value(text, "idp_client_authentication_failures_total", method="private_key_jwt", reason="replay") == 1
    assert value(text, "idp_tokens_issued_total", grant_type="client_credentials", format="opaque",
                 binding="bearer") == 4
    assert value(text, "idp_http_requests_total", endpoint="token", status="200") == 4
    assert value(text, "idp_http_requests_total", endpoint="token", status="401") == 3
    assert value(text, "idp_http_request_duration_seconds_count", endpoint="token") == 8
    assert value(text, "idp_worker_processes") == 1
    # Never a client id, a claimed one or a grant_type a client made up.
    assert not {"client-1", "nobody-registered", "urn:example:client-1-secret"} & label_values(text)
    for family in text_string_to_metric_families(text):
        assert family.name.startswith("idp_"), family.name


def test_every_endpoint_has_a_fixed_name(idp):
    client = idp.app.test_client()
    for path in ("/health/live", "/oauth2/jwks", "/.well-known/openid-configuration", "/no/such/page/client-1"):
        client.get(path)
    text = scrape(idp)
    assert value(text, "idp_http_requests_total", endpoint="health", status="200") == 1
    assert value(text, "idp_http_requests_total", endpoint="jwks", status="200") == 1
    assert value(text, "idp_http_requests_total", endpoint="discovery", status="200") == 1
    assert value(text, "idp_http_requests_total", endpoint="other", status="404") == 1
    assert not any("/" in v for v in label_values(text))


def test_dpop_bound_tokens_are_counted_by_binding(idp):
    proof_key = rsa_key()
    r = idp.post(token_form(idp.assertion()), headers={"DPoP": dpop_proof(proof_key, idp.settings.token_endpoint)})
    assert r.status_code == 200, r.json
    assert value(scrape(idp), "idp_tokens_issued_total", grant_type="client_credentials", format="opaque",
                 binding="dpop") == 1


def test_rate_limit_refusals_are_counted(make_idp):
    env = make_idp(rate_limit={"failures_per_address": 1})
    env.register()
    bad = {"aud": "https://elsewhere.example/token"}
    assert env.token(env.assertion(**bad)).status_code == 401
    assert_oauth_error(env.token(env.assertion(**bad)), 429, "invalid_client")
    text = scrape(env)
    assert value(text, "idp_rate_limit_refusals_total", kind="client_authentication") == 1
    assert value(text, "idp_token_requests_total", grant_type="client_credentials", outcome="rate_limited") == 1
    assert value(text, "idp_client_authentication_failures_total", method="private_key_jwt",
                 reason="rate_limited") == 1


def test_503s_are_counted_by_cause(make_idp):
    env = make_idp()
    env.register()
    assertion = env.assertion()
    services = env.app.extensions["idp"].services
    services.db.close()
    services.db.init("/nonexistent/dir/identity.db")  # cannot be opened
    assert_oauth_error(env.token(assertion), 503, "temporarily_unavailable")
    assert env.app.test_client().get("/health/ready").status_code == 503
    text = scrape(env)
    assert value(text, "idp_unavailable_responses_total", cause="database") == 1
    assert value(text, "idp_unavailable_responses_total", cause="not_ready") == 1
    assert value(text, "idp_token_requests_total", grant_type="client_credentials",
                 outcome="temporarily_unavailable") == 1


def test_jwks_uri_fetches_and_key_set_age(make_idp):
    env = make_idp()
    key = rsa_key()
    served = JWKSServer(jwks_of((key, "k1")))
    try:
        env.register("uri-client", keys=False, jwks_uri=served.url())
        env.register("dead-uri-client", keys=False, jwks_uri=f"http://127.0.0.1:{free_port()}/jwks.json")
        for _ in range(2):
            assert env.token(env.assertion("uri-client", key=key)).status_code == 200
        r = env.token(env.assertion("dead-uri-client", key=key))
        assert_oauth_error(r, 401, "invalid_client")
    finally:
        served.close()
    text = scrape(env)
    assert value(text, "idp_jwks_uri_fetches_total", outcome="success") == 1
    assert value(text, "idp_jwks_uri_fetches_total", outcome="connection") == 1
    assert value(text, "idp_jwks_uri_key_set_age_seconds_count") == 2
    assert value(text, "idp_jwks_uri_cached_key_sets") == 2
    assert value(text, "idp_client_authentication_failures_total", method="private_key_jwt",
                 reason="keys_unavailable") == 1


def test_replay_purges_are_reported_through_the_services(idp):
    services = idp.app.extensions["idp"].services
    services.replay.periodic.every = 1  # a purge after every recorded jti
    with idp.app.app_context():
        services.replay.use("client-1", "old", exp_time=1, prevent_reuse=True, now=0)
    services.replay.periodic.wait()  # each batch runs on a thread of its own
    assert idp.token(idp.assertion()).status_code == 200
    services.replay.periodic.wait()
    text = scrape(idp)
    assert value(text, "idp_replay_purges_total", table="IDN_OIDC_JTI", outcome="success") == 2
    assert value(text, "idp_replay_purged_rows_total", table="IDN_OIDC_JTI") == 1


def test_a_failed_purge_is_reported(idp):
    results = []
    store = ReplayStore(idp.app.extensions["idp"].services.db, purge_every=1, on_purge=lambda *r: results.append(r))
    store.purge = lambda now, limit: 1 / 0  # e.g. a lock timeout
    with idp.app.app_context():
        assert store.use("client-1", "jti-1", exp_time=int(time.time()) + 60, prevent_reuse=True)
    store.periodic.wait()
    assert results == [("IDN_OIDC_JTI", None)]


# --- the Grafana dashboard -------------------------------------------------------------------------

def dashboard_queries() -> list[str]:
    """Every PromQL expression of docs/grafana-dashboard.json, its Grafana variables filled in."""
    model = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in model["panels"] for t in p.get("targets", [])]
    return [e.replace("$__rate_interval", "1m").replace("$instance", ".*") for e in exprs]


def test_the_dashboard_queries_only_metrics_the_server_has(idp):
    model = json.loads(DASHBOARD.read_text())
    assert [i["name"] for i in model["__inputs"]] == ["DS_PROMETHEUS"]
    panels = [p for p in model["panels"] if p["type"] != "row"]
    assert panels and all(p["datasource"]["uid"] == "${DS_PROMETHEUS}" for p in panels)
    assert len({p["id"] for p in model["panels"]}) == len(model["panels"])
    assert idp.token(idp.assertion()).status_code == 200
    families = {f.name for f in text_string_to_metric_families(scrape(idp))}
    used = {re.sub(r"_(total|bucket|sum|count)$", "", name) for e in dashboard_queries()
            for name in re.findall(r"\bidp_[a-z_]+", e)}
    assert used and used <= families, used - families


# --- who may read it --------------------------------------------------------------------------------

def test_other_addresses_get_403_as_json(idp):
    r = idp.app.test_client().get("/metrics", environ_base={"REMOTE_ADDR": "192.0.2.7"})
    assert_oauth_error(r, 403, "access_denied")
    for address in ("127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"):
        assert idp.app.test_client().get("/metrics", environ_base={"REMOTE_ADDR": address}).status_code == 200


def test_behind_a_trusted_proxy_the_forwarded_address_counts(make_idp):
    env = make_idp(server_extra='trusted_proxies = ["127.0.0.1"]')
    client = env.app.test_client()
    forwarded = client.get("/metrics", environ_base={"REMOTE_ADDR": "127.0.0.1"},
                           headers={"X-Forwarded-For": "127.0.0.1, 203.0.113.9"})
    assert_oauth_error(forwarded, 403, "access_denied")
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "127.0.0.1"}).status_code == 200


def test_other_methods_are_405(idp):
    r = idp.app.test_client().post("/metrics", environ_base={"REMOTE_ADDR": "127.0.0.1"})
    assert_oauth_error(r, 405, "invalid_request")
    assert r.headers["Allow"] == "GET, HEAD"


def test_disabled_there_is_no_metrics_endpoint(make_idp):
    env = make_idp(extra="[monitoring]\nenabled = false\n")
    env.register()
    assert env.app.extensions["idp"].services.metrics is None
    assert env.token(env.assertion()).status_code == 200
    assert_oauth_error(env.app.test_client().get("/metrics"), 404, "not_found")


def test_with_a_port_of_its_own_it_is_404_on_the_servers_port(make_idp):
    metrics_port = free_port()
    env = make_idp(extra=f"[monitoring]\nport = {metrics_port}\n")
    client = env.app.test_client()
    assert_oauth_error(client.get("/metrics", base_url="https://localhost:9443"), 404, "not_found")
    assert client.get("/metrics", base_url=f"https://localhost:{metrics_port}").status_code == 200
    assert_oauth_error(client.get("/oauth2/jwks", base_url=f"https://localhost:{metrics_port}"), 404, "not_found")


@pytest.mark.parametrize("section, message", [
    ('allowed_addresses = ["localhost"]', "monitoring.allowed_addresses: must list IP addresses or networks"),
    ('allowed_addresses = ["10.0.0.1/8"]', "monitoring.allowed_addresses: must list IP addresses or networks"),
    ("port = 70000", "monitoring.port: must be between 1 and 65535"),
    ("port = 9443", "monitoring.port: must differ from [server] port"),
    ('enabled = "yes"', "monitoring.enabled: the value must be true or false"),
    ("path = \"/metrics\"", "monitoring.path: unknown key"),
])
def test_mistakes_stop_start_up_naming_the_key_and_line(tmp_path, section, message):
    path = tmp_path / "deployment.toml"
    path.write_text(f'[keystore.primary]\npassword = "x"\n\n[monitoring]\n{section}\n')
    with pytest.raises(config.ConfigError) as caught:
        config.load(path)
    assert str(caught.value).startswith(f"deployment.toml:5: {message}"), str(caught.value)


# --- the real server: two workers, Prometheus ---------------------------------------------------------

@contextlib.contextmanager
def running(directory: Path, **config):
    shared_keystore(directory)
    port = free_port()
    server = Server(write_config(directory, port, **config), port)
    try:
        yield server.start()
    finally:
        server.stop()


def worker_pids(server: Server) -> set[int]:
    pid = server.proc.pid
    return {int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


def wait_for(condition, timeout: float = 30, what: str = "condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@contextlib.contextmanager
def prometheus(directory: Path, target: str, ca_file: str):
    """Debian's Prometheus scraping https://<target>/metrics every second."""
    if not os.access(PROMETHEUS, os.X_OK):
        pytest.fail(f"{PROMETHEUS} not found: run tests/setup-system.sh (installs Debian's prometheus)",
                    pytrace=False)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "prometheus.yml").write_text(f"""
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: idp
    scheme: https
    tls_config:
      ca_file: {ca_file}
      server_name: localhost
    static_configs:
      - targets: ["{target}"]
""")
    port = free_port()
    log = open(directory / "prometheus.log", "ab")
    proc = subprocess.Popen([PROMETHEUS, f"--config.file={directory / 'prometheus.yml'}",
                             f"--storage.tsdb.path={directory / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def query(api: str, promql: str) -> list:
    try:
        r = requests.get(api + "/api/v1/query", params={"query": promql}, timeout=5)
    except requests.ConnectionError:
        return []
    body = r.json()
    assert body["status"] == "success", body
    return body["data"]["result"]


def test_prometheus_reads_the_exact_count_from_two_workers(tmp_path):
    key = rsa_key()
    with running(tmp_path / "idp", workers=2) as server:
        register_in_database(server.config_path.parent, "metrics-client", "private_key_jwt",
                             grant_types=("client_credentials",), scopes=("openid",), jwks=jwks_of((key, "k1")))
        issuer = server.base + "/oauth2/token"
        statuses: list[int] = []

        def send(count: int) -> None:
            for _ in range(count):
                assertion = sign(key, claims_for("metrics-client", issuer), headers={"kid": "k1"})
                statuses.append(server.post(data=token_form(assertion)).status_code)

        directory = server.config_path.parent / "var" / "metrics"
        # Concurrent connections, in rounds until both workers have answered some (each worker
        # writes its own counter file) and at least TOKEN_REQUESTS were sent.
        for _ in range(20):
            threads = [threading.Thread(target=send, args=(2,)) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            if len(statuses) >= TOKEN_REQUESTS and len(list(directory.glob("counter_*.db"))) == 2:
                break
        assert len(list(directory.glob("counter_*.db"))) == 2
        sent = len(statuses)
        assert statuses == [200] * sent

        text = server.get("/metrics").text
        assert value(text, "idp_token_requests_total", grant_type="client_credentials", outcome="success") == sent
        assert value(text, "idp_worker_processes") == 2
        assert "metrics-client" not in label_values(text)

        with prometheus(tmp_path / "prometheus", f"localhost:{server.port}", server.ca) as api:
            promql = 'sum(idp_token_requests_total{grant_type="client_credentials",outcome="success"})'
            result = wait_for(lambda: query(api, promql), what="Prometheus to scrape the server")
            assert float(result[0]["value"][1]) == sent
            up = query(api, 'up{job="idp"}')
            assert [float(r["value"][1]) for r in up] == [1.0]
            for promql in dashboard_queries():  # each one valid PromQL (query() checks the status)
                query(api, promql)


def test_a_dead_workers_counts_stay_and_its_live_gauge_goes(tmp_path):
    key = rsa_key()
    with running(tmp_path, workers=2) as server:
        register_in_database(tmp_path, "metrics-client", "private_key_jwt", grant_types=("client_credentials",),
                             scopes=("openid",), jwks=jwks_of((key, "k1")))
        issuer = server.base + "/oauth2/token"
        for _ in range(6):
            assertion = sign(key, claims_for("metrics-client", issuer), headers={"kid": "k1"})
            assert server.post(data=token_form(assertion)).status_code == 200
        before = worker_pids(server)
        assert len(before) == 2
        victim = min(before)
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: len(worker_pids(server) - before) == 1 and victim not in worker_pids(server),
                 what="gunicorn to replace the worker")
        directory = tmp_path / "var" / "metrics"
        wait_for(lambda: not (directory / f"gauge_livesum_{victim}.db").exists(), what="the dead worker's gauge file")
        text = wait_for(lambda: (t := server.get("/metrics").text) and value(t, "idp_worker_processes") == 2 and t,
                        what="two live workers in the sum")
        assert value(text, "idp_token_requests_total", grant_type="client_credentials", outcome="success") == 6


def test_disallowed_address_and_a_port_of_its_own_on_the_real_server(tmp_path):
    metrics_port = free_port()
    with running(tmp_path, workers=2,
                 extra=f'[monitoring]\nport = {metrics_port}\nallowed_addresses = ["127.0.0.2"]\n') as server:
        assert_oauth_error(server.get("/metrics"), 404, "not_found")  # the server's own port
        url = f"https://localhost:{metrics_port}/metrics"
        refused = requests.get(url, verify=server.ca, timeout=15)  # from 127.0.0.1
        assert_oauth_error(refused, 403, "access_denied")
        with session_from("127.0.0.2") as session:
            allowed = session.get(url, verify=server.ca, timeout=15)
            assert allowed.status_code == 200
            assert allowed.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
            # Both workers serve the listener (the second may still be starting).
            wait_for(lambda: value(session.get(url, verify=server.ca, timeout=15).text, "idp_worker_processes") == 2,
                     what="two workers")
        assert_oauth_error(requests.get(f"https://localhost:{metrics_port}/oauth2/jwks", verify=server.ca, timeout=15),
                           404, "not_found")
        assert f"  metrics    https://127.0.0.1:{metrics_port}/metrics" in server.log()


# --- what an attacker or an unlucky deployment can do -------------------------------------------------

@contextlib.contextmanager
def multiprocess_values(directory: Path):
    """prometheus_client's multiprocess mode in this process (as under gunicorn), undone after."""
    from prometheus_client import values
    core_metrics.enable_multiprocess(directory)
    try:
        yield
    finally:
        os.environ.pop(core_metrics.MULTIPROC_ENV, None)
        values.ValueClass = values.get_value_class()


def test_a_metrics_directory_that_cannot_be_written_never_fails_a_request(make_idp, tmp_path, caplog):
    directory = tmp_path / "metrics"
    with multiprocess_values(directory):
        env = make_idp()
        env.register()
        assert env.app.extensions["idp"].services.metrics.multiprocess
        for leftover in directory.iterdir():
            leftover.unlink()
        directory.rmdir()   # e.g. removed by a clean-up job: no value file can be created
        for _ in range(2):
            r = env.token(env.assertion())
            assert r.status_code == 200, r.text
        assert_oauth_error(env.app.test_client().get("/no/such/page"), 404, "not_found")
        r = env.app.test_client().get("/metrics", environ_base={"REMOTE_ADDR": "127.0.0.1"})
        assert_oauth_error(r, 500, "server_error")
    assert len([m for m in caplog.messages if m.startswith("metrics not recorded")]) == 1   # not once per request


@pytest.mark.parametrize("headers", [{"X-Forwarded-For": "203.0.113.9"}, {"Forwarded": "for=203.0.113.9"},
                                     {"X-Real-IP": "203.0.113.9"}, {"X-Forwarded-For": "127.0.0.1"}])
def test_a_request_an_unknown_proxy_forwarded_is_refused(idp, headers):
    """A reverse proxy on the loopback interface that is not one of trusted_proxies would make
    every client of it a loopback reader: a forwarded request from such a peer is refused."""
    for address in ("127.0.0.1", "::ffff:127.0.0.1"):
        r = idp.app.test_client().get("/metrics", environ_base={"REMOTE_ADDR": address}, headers=headers)
        assert_oauth_error(r, 403, "access_denied")


def test_a_trusted_proxy_on_a_dual_stack_listener_does_not_open_the_metrics(make_idp):
    env = make_idp(server_extra='trusted_proxies = ["127.0.0.1"]')
    r = env.app.test_client().get("/metrics", environ_base={"REMOTE_ADDR": "::ffff:127.0.0.1"},
                                  headers={"X-Forwarded-For": "203.0.113.9"})
    assert_oauth_error(r, 403, "access_denied")
    # A trusted proxy that says whom it forwarded only in headers the address is not read from.
    for header in ("Forwarded", "X-Real-IP"):
        r = env.app.test_client().get("/metrics", environ_base={"REMOTE_ADDR": "127.0.0.1"},
                                      headers={header: "for=203.0.113.9"})
        assert_oauth_error(r, 403, "access_denied")
    # The proxy's own requests (a Prometheus beside it, no forwarding header) are still served.
    assert env.app.test_client().get("/metrics", environ_base={"REMOTE_ADDR": "::ffff:127.0.0.1"}).status_code == 200


def test_an_unreadable_file_in_the_metrics_directory_does_not_take_the_others_down(make_idp, tmp_path):
    """A worker killed while creating its file leaves it empty; the scrape skips it."""
    directory = tmp_path / "metrics"
    with multiprocess_values(directory):
        env = make_idp()
        env.register()
        assert env.token(env.assertion()).status_code == 200
        (directory / "counter_999999.db").write_bytes(b"")
        (directory / "histogram_999998.db").write_bytes(b"\xff" * 64)
        text = scrape(env)
        assert value(text, "idp_token_requests_total", grant_type="client_credentials", outcome="success") == 1


def test_a_dead_workers_files_that_cannot_be_removed_never_stop_the_master(tmp_path, caplog):
    """gunicorn's master runs child_exit in its main loop: an exception there would stop the server."""
    directory = tmp_path / "metrics"
    with multiprocess_values(directory):
        (directory / "gauge_livesum_424242.db").mkdir()   # os.remove cannot remove it
        core_metrics.worker_exited(424242)
    assert any(m.startswith("metrics of worker 424242 not removed") for m in caplog.messages)
