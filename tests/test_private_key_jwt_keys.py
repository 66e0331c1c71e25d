"""Where the private_key_jwt authenticator finds a client's keys, in-process: a caller over a
failure budget is served with the client's current keys (fetches are throttled per URI, never
refused per caller); a keystore certificate whose key cryptography cannot load is
invalid_client, not a server error."""

from __future__ import annotations

import json
import time

import pytest

from support import JWKSServer, assert_oauth_error, jwks_of, rsa_key, token_form
from x509_support import GOST_SPKI, OFF_CURVE_SPKI, certificate_with_spki

@pytest.fixture
def key_server():
    key = rsa_key()
    server = JWKSServer(jwks_of((key, "k1")), cache_control="max-age=3600")
    server.key = key
    yield server
    server.close()


def test_over_a_failure_budget_a_jwks_uri_client_is_still_served_and_its_new_key_seen(make_idp, key_server):
    """Forgeries that never reach the keys (a bad typ) put the client id over its budget before
    anything was fetched: the holder of the key is served all the same, and after it rotated to
    a new kid too (fetches are throttled per URI, one per refresh_interval, whoever asks)."""
    idp = make_idp(rate_limit={"failures_per_client": 3, "window": 600}, jwks_fetch_extra="refresh_interval = 1")
    idp.register("uri-client", keys=False, jwks_uri=key_server.url())
    attacker = {"REMOTE_ADDR": "203.0.113.66"}
    for _ in range(4):
        forged = token_form(idp.assertion("uri-client", key=rsa_key(), headers={"typ": "bogus"}))
        idp.post(forged, environ_base=attacker)
    assert_oauth_error(idp.post(token_form(idp.assertion("uri-client", key=rsa_key())), environ_base=attacker),
                       429, "invalid_client")
    # One fetch at most per refresh_interval, whoever causes it: here the over-budget forgery.
    assert key_server.hits == 1
    assert idp.token(idp.assertion("uri-client", key=key_server.key)).status_code == 200
    assert key_server.hits == 1
    rotated = rsa_key()
    key_server.default = json.loads(jwks_of((key_server.key, "k1"), (rotated, "k2")))
    time.sleep(1.1)
    assert idp.token(idp.assertion("uri-client", key=rotated, headers={"kid": "k2"})).status_code == 200
    assert key_server.hits == 2


@pytest.mark.parametrize("key_info,why", [
    (GOST_SPKI, "the key algorithm or curve is not supported"),
    (OFF_CURVE_SPKI, "the public key is malformed"),
], ids=["gost", "ec-point-off-curve"])
def test_a_keystore_certificate_whose_key_cannot_be_loaded_is_invalid_client(idp, key_info, why):
    services = idp.app.extensions["idp"].services
    services.keystore().import_certificate("odd-key-client", certificate_with_spki(key_info, "odd-key-client"))
    idp.register("odd-key-client", keys=False)
    response = idp.token(idp.assertion("odd-key-client", headers={"kid": ...}))
    body = assert_oauth_error(response, 401, "invalid_client")
    assert body["error_description"] == "The client certificate in the keystore is not usable"
    from handlers import failure_log
    with idp.app.app_context():
        assert [(f.reason, f.detail) for f in failure_log.recent("odd-key-client")] == [
            ("certificate_key", f"keystore certificate key: {why}")]
