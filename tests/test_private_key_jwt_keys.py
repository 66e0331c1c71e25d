"""Where the private_key_jwt authenticator finds a client's keys, in-process: a caller over a
failure budget (AuthAttempt.limited) is checked with key sets already cached and never causes a
jwks_uri fetch; a keystore certificate whose key cryptography cannot load is invalid_client, not
a server error."""

from __future__ import annotations

import time

import pytest

from support import JWKSServer, assert_oauth_error, jwks_of, rsa_key
from x509_support import GOST_SPKI, OFF_CURVE_SPKI, certificate_with_spki

KEYS_UNAVAILABLE = "The client's keys could not be obtained"


@pytest.fixture
def key_server():
    key = rsa_key()
    server = JWKSServer(jwks_of((key, "k1")), cache_control="max-age=3600")
    server.key = key
    yield server
    server.close()


def check_signature(idp, client_id: str, assertion: str, limited: int | None):
    """The authenticator's key lookup and signature check for one assertion, as authenticate()
    runs it once the client is known."""
    from keystore.jws import parse_compact_jws
    from server.request import AuthAttempt
    from storage import clients
    authenticator = idp.app.extensions["idp"].chain.authenticators[0]
    jws = parse_compact_jws(assertion)
    with idp.app.app_context():
        client = clients.get(client_id)
    authenticator._check_signature(jws, jws.header["alg"], jws.header.get("kid"), client,
                                   AuthAttempt(client_id=client_id, client_known=True, limited=limited))


def refusal(idp, client_id: str, assertion: str, limited: int | None):
    from server.errors import OAuthError
    with pytest.raises(OAuthError) as info:
        check_signature(idp, client_id, assertion, limited)
    return info.value


def test_over_a_failure_budget_only_a_cached_jwks_uri_set_is_used(idp, key_server):
    idp.register("uri-client", keys=False, jwks_uri=key_server.url())
    good = lambda **kw: idp.assertion("uri-client", key=key_server.key, **kw)  # noqa: E731

    # Nothing cached: refused at once, nothing fetched.
    error = refusal(idp, "uri-client", good(), limited=5)
    assert (error.error, error.status, error.reason) == ("invalid_client", 401, "jwks_uri")
    assert error.description == KEYS_UNAVAILABLE
    assert error.detail == "no key set cached for the jwks_uri (not fetched while over a failure budget)"
    assert key_server.hits == 0

    # A caller within its budget fetches; from then on the cached set serves limited callers too.
    check_signature(idp, "uri-client", good(), limited=None)
    assert key_server.hits == 1
    check_signature(idp, "uri-client", good(), limited=5)
    assert refusal(idp, "uri-client", idp.assertion("uri-client", key=rsa_key()), limited=5).reason == "signature"
    # An unknown kid is not a reason to refetch while limited.
    assert refusal(idp, "uri-client", good(headers={"kid": "k2"}), limited=5).reason == "no_key"
    assert key_server.hits == 1

    # The registration changed: the cached set is too old, and is not fetched again while limited.
    time.sleep(1.1)
    from storage import clients
    with idp.app.app_context():
        client = clients.get("uri-client")
        clients.update("uri-client", "private_key_jwt", client_name="renamed", grant_types=client.grant_types,
                       scopes=client.scopes, jwks_uri=client.jwks_uri)
    assert refusal(idp, "uri-client", good(), limited=5).reason == "jwks_uri"
    assert key_server.hits == 1
    check_signature(idp, "uri-client", good(), limited=None)
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
