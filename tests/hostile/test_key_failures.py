"""Client keys that fail or lapse, against the real server: a jwks_uri that fails after the client's
registration changed (fetches stay throttled, whoever asks), a jwks_uri failure as an unauthenticated
caller sees it (nothing about the infrastructure) and as the operator sees it (audit log, failure
list), a certificate uploaded for the client outside its validity period, and keystore certificates
whose public key cryptography cannot load."""

from __future__ import annotations

import datetime
import json
import time

import pytest
from cryptography.hazmat.primitives import serialization

from hostile_support import assert_error
from support import JWKSServer, audit_records, free_port, jwks_of, rsa_key
from x509_support import DAY, GOST_SPKI, NOW, OFF_CURVE_SPKI, certificate, certificate_with_spki, dsa_certificate

KEYS_UNAVAILABLE = "The client's keys could not be obtained"
WORKERS = 2  # support.write_config: every worker has its own jwks_uri cache


# --- what the operator sees -------------------------------------------------------------------------

def audit_events(env, client_id: str) -> list[dict]:
    """The audit log's client_authentication lines for this client."""
    return audit_records(env.server.log(), client_id=client_id)


def failure_rows(env, client_id: str) -> list[tuple[str, str | None]]:
    """(reason, detail) of the client's rows in the failure list the console shows, oldest first."""
    from storage.database import open_database
    from storage.models import AuthFailure
    db = open_database("sqlite:///var/identity.db", env.directory)
    try:
        rows = AuthFailure.select().where(AuthFailure.client_id == client_id).order_by(AuthFailure.id)
        return [(row.reason, row.detail) for row in rows]
    finally:
        db.close()


def save_registration_again(env, client_id: str) -> None:
    """What a console save or an RFC 7592 PUT does: the registration is rewritten, updated_at moves on."""
    from storage import clients
    from storage.database import open_database
    time.sleep(1.1)  # updated_at has a resolution of one second
    db = open_database("sqlite:///var/identity.db", env.directory)
    try:
        client = clients.get(client_id)
        assert clients.update(client_id, client.auth_method, client_name="renamed", grant_types=client.grant_types,
                              scopes=client.scopes, jwks_uri=client.jwks_uri) is not None
    finally:
        db.close()


# --- a failing jwks_uri after the registration changed --------------------------------------------

def test_a_failing_jwks_uri_is_not_fetched_per_request_after_the_registration_changed(env):
    """Cached sets are too old for the new registration and every fetch fails: each worker tries
    once for the new registration, then answers at once until refresh_interval has passed — however
    many callers ask, with or without a valid signature."""
    key = rsa_key()
    keys = JWKSServer(json.loads(jwks_of((key, "k1"))))
    try:
        env.register("uri-throttled", jwks_uri=keys.url())
        for _ in range(4):
            assert env.token(env.assertion("uri-throttled", key=key)).status_code == 200
        assert 1 <= keys.hits <= WORKERS
        keys.default = b"{not json"  # every fetch fails from now on
        save_registration_again(env, "uri-throttled")
        before = keys.hits
        bodies = [assert_error(env.token(env.assertion("uri-throttled", key=env.keys.rsa_other)), 401,
                               "invalid_client") for _ in range(12)]
        assert 1 <= keys.hits - before <= WORKERS, keys.requests[before:]
        assert {body["error_description"] for body in bodies} == {KEYS_UNAVAILABLE}
        assert {e["reason"] for e in audit_events(env, "uri-throttled")[-12:]} == {"jwks_uri"}
    finally:
        keys.close()


# --- what a jwks_uri failure tells the caller, and the operator -------------------------------------

def _refused_uri(_keys: JWKSServer) -> tuple[str, str]:
    return f"http://127.0.0.1:{free_port()}/jwks.json", "jwks_uri connection refused"


def _tls_to_plain_http(keys: JWKSServer) -> tuple[str, str]:
    return keys.url().replace("http://", "https://"), "jwks_uri TLS handshake failed"


@pytest.mark.parametrize("target", [_refused_uri, _tls_to_plain_http], ids=["connection-refused", "tls-error"])
def test_jwks_uri_failure_detail_goes_to_the_operator_not_the_caller(env, target):
    keys = JWKSServer()
    try:
        uri, detail = target(keys)
        client_id = "uri-detail-" + target.__name__.strip("_")
        env.register(client_id, jwks_uri=uri)
        response = env.token(env.assertion(client_id, key=env.keys.rsa_other))
        body = assert_error(response, 401, "invalid_client")
        assert body == {"error": "invalid_client", "error_description": KEYS_UNAVAILABLE}
        assert response.headers["WWW-Authenticate"] == 'Basic realm="oauth2", error="invalid_client"'
        for word in ("refused", "TLS", "handshake", "127.0.0.1", "jwks_uri"):
            assert word not in response.text
        event = audit_events(env, client_id)[-1]
        assert (event["outcome"], event["reason"], event["detail"]) == ("failure", "jwks_uri", detail)
        assert failure_rows(env, client_id) == [("jwks_uri", detail)]
    finally:
        keys.close()


# --- a certificate uploaded for the client, outside its validity period ------------------------------

def uploaded(key, not_before: datetime.datetime, not_after: datetime.datetime) -> tuple[str, str]:
    """The JWK Set the console and the registration API store for an uploaded certificate (made
    while the certificate was valid), and its one kid."""
    from server.client_metadata import keys_from_certificate
    pem = certificate(key, not_before, not_after).public_bytes(serialization.Encoding.PEM)
    jwks, infos = keys_from_certificate(pem, now=not_before + datetime.timedelta(minutes=1))
    return jwks, infos[0].kid


@pytest.mark.parametrize("not_before,not_after,reason,description", [
    (NOW - 30 * DAY, NOW - DAY, "certificate_expired", "The client's registered certificate has expired"),
    (NOW + DAY, NOW + 30 * DAY, "certificate_not_yet_valid", "The client's registered certificate is not yet valid"),
], ids=["expired", "not-yet-valid"])
def test_an_uploaded_certificate_outside_its_validity_is_refused(env, not_before, not_after, reason, description):
    key = rsa_key()
    jwks, kid = uploaded(key, not_before, not_after)
    client_id = "uploaded-" + reason
    env.register(client_id, jwks)
    body = assert_error(env.token(env.assertion(client_id, key=key, kid=kid)), 401, "invalid_client")
    assert body["error_description"] == description
    assert audit_events(env, client_id)[-1]["reason"] == reason
    assert failure_rows(env, client_id) == [(reason, None)]
    # `flask clients show` says so.
    shown = json.loads(env.server.cli("clients", "show", client_id).stdout)
    assert [(c["kid"], c["status"]) for c in shown["certificates"]] == [
        (kid, "expired" if reason == "certificate_expired" else "not yet valid")]


def test_an_uploaded_certificate_within_its_validity_is_accepted(env):
    key = rsa_key()
    jwks, kid = uploaded(key, NOW - DAY, NOW + DAY)
    env.register("uploaded-valid", jwks)
    assert env.token(env.assertion("uploaded-valid", key=key, kid=kid)).status_code == 200
    shown = json.loads(env.server.cli("clients", "show", "uploaded-valid").stdout)
    assert [(c["kid"], c["status"]) for c in shown["certificates"]] == [(kid, "valid")]


# --- keystore certificates whose key cryptography cannot load ----------------------------------------

@pytest.mark.parametrize("make,why", [
    (lambda cn: certificate_with_spki(GOST_SPKI, cn), "the key algorithm or curve is not supported"),
    (lambda cn: certificate_with_spki(OFF_CURVE_SPKI, cn), "the public key is malformed"),
    (dsa_certificate, "unsupported key type"),
], ids=["gost", "ec-point-off-curve", "dsa"])
def test_a_keystore_certificate_with_an_unusable_key_is_invalid_client(env, tmp_path, make, why, request):
    client_id = "unusable-" + request.node.callspec.id
    path = tmp_path / "client.der"
    path.write_bytes(make(client_id))
    env.server.cli("keystore", "import-cert", "--alias", client_id, "--file", str(path))
    env.register(client_id)  # no JWKS, no jwks_uri: the keystore certificate under the client id
    time.sleep(2.6)  # every worker re-reads the keystore file within two seconds of a change
    for _ in range(4):
        response = env.token(env.assertion(client_id, key=env.keys.rsa, kid=None))
        body = assert_error(response, 401, "invalid_client")
        assert body["error_description"] == "The client certificate in the keystore is not usable"
    detail = f"keystore certificate key: {why}"
    assert {(e["reason"], e["detail"]) for e in audit_events(env, client_id)} == {("certificate_key", detail)}
    assert set(failure_rows(env, client_id)) == {("certificate_key", detail)}
    # `flask keystore list` flags the entry, and lists the others as before.
    entries = {e["alias"]: e for e in json.loads(env.server.cli("keystore", "list").stdout)}
    assert entries[client_id]["problem"] == f"unusable key: {why}"
    assert "problem" not in entries["wso2carbon"]
