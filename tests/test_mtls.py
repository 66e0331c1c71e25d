"""Mutual TLS (RFC 8705) against the real server: client authentication with tls_client_auth (by
subject DN and by each kind of subject alternative name) and self_signed_tls_client_auth, over
gunicorn's own TLS (client_certificates = "optional", client_ca_file) and through a trusted
proxy's Client-Cert header (RFC 9440); certificate-bound access tokens (opaque and JWT, alone and
with DPoP) at introspection and userinfo; and the FAPI 2.0 TLS rules (BCP 195) in real handshakes.

The CAs and certificates are made here with cryptography; the tests hold the client's side of
every handshake (requests' cert=(certfile, keyfile), or the ssl module for exact TLS versions and
cipher suites)."""

from __future__ import annotations

import base64
import contextlib
import http.client
import ipaddress
import json
import socket
import ssl
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from cryptography import x509

from support import (ASSERTION_TYPE, JWKSServer, Server, assert_oauth_error, audit_records, certificate_authority,
                     cert_der, cert_pem, claims_for, client_cert_header, dpop_proof, ec_key, free_port, jkt_of, jwks_of,
                     register_in_database, rsa_key, session_from, shared_keystore, sign, tls_client_certificate,
                     write_config, write_tls_pair, x5t_s256_of)

REDIRECT = "https://app.example.com/cb"
DN = "CN=dn-client,O=Example Corp,C=DE"
FAILED = "Client authentication failed"
REQUIRED = "Client authentication is required"
MTLS = ('client_certificates = "optional"\nclient_ca_file = "client-ca.pem"\n'
        'client_self_signed_file = "client-self-signed.pem"\n')


@dataclass
class PKI:
    """The CA the servers trust, another one they do not, and the client certificates (as PEM file
    pairs for requests, with the certificate objects)."""

    directory: Path
    ca: tuple = field(default_factory=certificate_authority)
    other_ca: tuple = field(default_factory=lambda: certificate_authority("CN=Untrusted CA"))
    certs: dict = field(default_factory=dict)
    pairs: dict = field(default_factory=dict)
    keys: dict = field(default_factory=dict)

    def add(self, name: str, dn: str, ca="trusted", **kwargs) -> None:
        issuer = {"trusted": self.ca, "other": self.other_ca, "self": None}[ca]
        key, cert = tls_client_certificate(dn, issuer, **kwargs)
        self.keys[name], self.certs[name] = key, cert
        self.pairs[name] = write_tls_pair(self.directory, name, key, cert)

    def write_trust(self, directory: Path, *self_signed: str) -> None:
        """client_ca_file: the CA; client_self_signed_file: the self-signed client certificates
        listed by name (gunicorn's TLS verifies every certificate sent, so a self-signed one must
        be a trust anchor itself)."""
        (directory / "client-ca.pem").write_bytes(cert_pem(self.ca[1]))
        (directory / "client-self-signed.pem").write_bytes(
            b"".join(cert_pem(self.certs[name]) for name in self_signed) or cert_pem(self.ca[1]))


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> PKI:
    pki = PKI(tmp_path_factory.mktemp("pki"))
    pki.add("dn", DN, sans=[x509.DNSName("dn-client.example.com")])
    pki.add("wrong-dn", "CN=someone-else,O=Example Corp,C=DE")
    pki.add("san", "CN=san-client", sans=[
        x509.DNSName("Client.Example.COM"), x509.UniformResourceIdentifier("https://client.example.com/app"),
        x509.IPAddress(ipaddress.ip_address("2001:db8::7")), x509.RFC822Name("app@Client.Example.com")])
    pki.add("other-ca", DN, ca="other")
    pki.add("expired", DN, days=(-10, -1))
    pki.add("self-signed", "CN=self-signed-client", ca="self")
    pki.add("self-signed-uri", "CN=self-signed-uri-client", ca="self")
    pki.add("unlisted-self-signed", "CN=unlisted", ca="self")
    pki.add("self-signed-dn", DN, ca="self")            # with the DN a PKI client registered
    pki.add("bound", "CN=bound-client")
    pki.add("bound-2", "CN=bound-client")               # the same DN, another key: another certificate
    pki.add("fapi", "CN=fapi-client", key=rsa_key())
    # A self_signed_tls_client_auth client's certificate that is also a CA (openssl req -x509
    # makes such certificates), and a certificate it issued with the DN dn-client registered.
    attacker = certificate_authority("CN=attacker-client")
    pki.keys["attacker"], pki.certs["attacker"] = attacker
    pki.pairs["attacker"] = write_tls_pair(pki.directory, "attacker", *attacker)
    pki.keys["forged-dn"], pki.certs["forged-dn"] = tls_client_certificate(DN, attacker)
    pki.pairs["forged-dn"] = write_tls_pair(pki.directory, "forged-dn", pki.keys["forged-dn"], pki.certs["forged-dn"])
    return pki


# --- servers, clients, requests ------------------------------------------------------------------

@contextlib.contextmanager
def running(directory: Path, *, plain: bool = False, **config):
    """The real server (python app.py: gunicorn) configured in `directory`; `plain`: tls = false,
    served over http://127.0.0.1."""
    shared_keystore(directory)
    port = free_port()
    server = Server(write_config(directory, port, **config), port)
    if plain:
        server.base = f"http://127.0.0.1:{port}"
    try:
        yield server.start()
    finally:
        server.stop()


def register(server: Server, client_id: str, auth_method: str = "tls_client_auth", **fields):
    fields.setdefault("grant_types", ("client_credentials",))
    fields.setdefault("scopes", ("read",))
    return register_in_database(server.config_path.parent, client_id, auth_method, **fields)


def post(server: Server, form: dict, cert=None, path: str = "/oauth2/token", headers=None,
         session=None) -> requests.Response:
    return (session or requests).post(server.base + path, data=form, headers=headers or {}, cert=cert,
                                      verify=server.ca, timeout=15)


def cc(client_id: str, **extra) -> dict:
    return {"grant_type": "client_credentials", "client_id": client_id, **extra}


def assert_token(response: requests.Response, token_type: str = "Bearer") -> dict:
    assert response.status_code == 200, (response.status_code, response.text)
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json()
    assert body["token_type"] == token_type
    return body


def introspect(server: Server, token: str, cert) -> dict:
    """Introspection by the dn-client, authenticated with mutual TLS itself."""
    response = post(server, {"token": token, "client_id": "dn-client"}, cert, "/oauth2/introspect")
    assert response.status_code == 200, response.text
    return response.json()


def userinfo(server: Server, token: str, cert=None, scheme: str = "Bearer", headers=None,
             session=None) -> requests.Response:
    return (session or requests).get(server.base + "/oauth2/userinfo", cert=cert, verify=server.ca, timeout=15,
                                     headers={"Authorization": f"{scheme} {token}", **(headers or {})})


def jwt_claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


@contextlib.contextmanager
def database(server: Server):
    from storage.database import open_database
    db = open_database("sqlite:///var/identity.db", server.config_path.parent)
    try:
        yield
    finally:
        db.close()


def user_code(server: Server, client_id: str, scopes=("openid", "profile")) -> str:
    """An authorization code for user alice (created the first time), issued through the
    product's own storage as the authorization endpoint does."""
    from storage import codes, users
    with database(server):
        alice = users.get_by_username("alice") or users.create("alice", "correct horse battery",
                                                                claims={"name": "Alice Liddell"})
        return codes.issue(client_id=client_id, user_sub=alice.sub, redirect_uri=REDIRECT, scopes=tuple(scopes),
                           nonce=None, code_challenge=None, code_challenge_method=None,
                           auth_time=int(time.time()) - 5, lifetime=60)


def redeem(server: Server, client_id: str, cert, headers=None, **extra) -> requests.Response:
    form = {"grant_type": "authorization_code", "code": user_code(server, client_id), "redirect_uri": REDIRECT,
            "client_id": client_id, **extra}
    return post(server, form, cert, headers=headers)


def handshake(server: Server, *, maximum=None, minimum=None, ciphers: str | None = None) -> tuple[str, str]:
    """A TLS handshake with the server and one request; returns (TLS version, cipher suite) or
    raises ssl.SSLError as the server refused it."""
    context = ssl.create_default_context(cafile=server.ca)
    if minimum is not None:
        context.minimum_version = minimum
    if maximum is not None:
        context.maximum_version = maximum
    if ciphers is not None:
        context.set_ciphers(ciphers)
    with socket.create_connection(("localhost", server.port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as tls:
        tls.sendall(b"GET /oauth2/jwks HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        assert tls.recv(12) == b"HTTP/1.1 200"
        return tls.version(), tls.cipher()[0]


# =================================================================================================
# 1. Over the server's own TLS
# =================================================================================================

@pytest.fixture(scope="module")
def mtls(tmp_path_factory, pki):
    directory = tmp_path_factory.mktemp("mtls")
    pki.write_trust(directory, "self-signed", "self-signed-uri", "self-signed-dn", "attacker")
    jwks = JWKSServer(json.loads(jwks_of((pki.keys["self-signed-uri"], "k1"))))
    try:
        with running(directory, server_extra=MTLS) as server:
            register(server, "dn-client", tls_client_auth_subject_dn=DN)
            for kind, value in (("dns", "client.example.com"), ("uri", "https://client.example.com/app"),
                                ("ip", "2001:0db8:0::7"), ("email", "app@client.example.com")):
                register(server, f"san-{kind}", tls_client_auth_san=f"{kind}:{value}")
            register(server, "self-signed", "self_signed_tls_client_auth",
                     jwks=jwks_of((pki.keys["self-signed"], "k1")))
            register(server, "self-signed-uri", "self_signed_tls_client_auth", jwks_uri=jwks.url())
            code_grants = {"grant_types": ("authorization_code", "client_credentials"),
                           "scopes": ("openid", "profile", "read"), "redirect_uris": (REDIRECT,)}
            register(server, "bound", tls_client_auth_subject_dn="CN=bound-client",
                     tls_client_certificate_bound_access_tokens=True, **code_grants)
            register(server, "bound-jwt", tls_client_auth_subject_dn="CN=bound-client", access_token_format="jwt",
                     tls_client_certificate_bound_access_tokens=True, **code_grants)
            register(server, "pkjwt-bound", "private_key_jwt", jwks=jwks_of((pki.keys["bound"], "k1")),
                     tls_client_certificate_bound_access_tokens=True)
            register(server, "pkjwt", "private_key_jwt", jwks=jwks_of((pki.keys["bound"], "k1")))
            register(server, "public-app", "none", grant_types=("authorization_code",), scopes=("openid",),
                     redirect_uris=(REDIRECT,))
            yield server
    finally:
        jwks.close()


def assertion(server: Server, client_id: str, key) -> dict:
    signed = sign(key, claims_for(client_id, server.base + "/oauth2/token"), "ES256", {"kid": "k1"})
    return {"client_assertion_type": ASSERTION_TYPE, "client_assertion": signed}


def test_a_client_without_a_certificate_still_connects(mtls):
    """client_certificates = "optional" is CERT_OPTIONAL: a handshake without a certificate succeeds."""
    version, _ = handshake(mtls)
    assert version in ("TLSv1.2", "TLSv1.3")
    response = requests.get(mtls.base + "/.well-known/openid-configuration", verify=mtls.ca, timeout=15)
    assert response.status_code == 200
    metadata = response.json()
    assert metadata["token_endpoint_auth_methods_supported"][-3:] == [
        "tls_client_auth", "self_signed_tls_client_auth", "none"]
    assert metadata["tls_client_certificate_bound_access_tokens"] is True
    assert "mtls_endpoint_aliases" not in metadata  # the one listener serves mutual TLS


def test_tls_client_auth_by_subject_dn(mtls, pki):
    body = assert_token(post(mtls, cc("dn-client"), pki.pairs["dn"]))
    assert body["scope"] == "read"
    records = audit_records(mtls.log(), client_id="dn-client", outcome="success")
    assert records and records[-1]["method"] == "tls_client_auth"


@pytest.mark.parametrize("kind", ["dns", "uri", "ip", "email"])
def test_tls_client_auth_by_each_subject_alternative_name(mtls, pki, kind):
    """Registered as client.example.com, 2001:0db8:0::7 and app@client.example.com; the certificate
    says Client.Example.COM, 2001:db8::7 and app@Client.Example.com: DNS names and mail domains
    compare in any case, IP addresses as addresses."""
    assert_token(post(mtls, cc(f"san-{kind}"), pki.pairs["san"]))


@pytest.mark.parametrize("client_id,cert", [("dn-client", "wrong-dn"), ("dn-client", "san"),
                                            ("san-dns", "dn"), ("san-uri", "wrong-dn"), ("self-signed", "dn"),
                                            ("bound", "dn"), ("nobody", "dn"), ("pkjwt", "dn")])
def test_a_certificate_of_another_client_fails_alike(mtls, pki, client_id, cert):
    """Wrong DN, wrong SAN, wrong key, unknown client, client of another method: one answer."""
    body = assert_oauth_error(post(mtls, cc(client_id), pki.pairs[cert]), 401, "invalid_client")
    assert body["error_description"] == FAILED


def test_without_a_certificate_mutual_tls_does_not_apply(mtls):
    body = assert_oauth_error(post(mtls, cc("dn-client")), 401, "invalid_client")
    assert body["error_description"] == REQUIRED


@pytest.mark.parametrize("cert,alert", [("other-ca", "UNKNOWN_CA"), ("unlisted-self-signed", "UNKNOWN_CA"),
                                        ("expired", "CERTIFICATE_EXPIRED")])
def test_the_handshake_refuses_certificates_client_ca_file_does_not_vouch_for(mtls, pki, cert, alert):
    """CERT_OPTIONAL still verifies a certificate that is sent: another CA's, a self-signed one not
    listed in client_ca_file and an expired one never reach the application."""
    with pytest.raises(requests.exceptions.SSLError) as refused:
        post(mtls, cc("dn-client"), pki.pairs[cert])
    assert alert in str(refused.value)


def test_self_signed_tls_client_auth_with_jwks(mtls, pki):
    assert_token(post(mtls, cc("self-signed"), pki.pairs["self-signed"]))
    assert audit_records(mtls.log(), client_id="self-signed", outcome="success")[-1]["method"] == \
        "self_signed_tls_client_auth"


def test_self_signed_tls_client_auth_with_jwks_uri(mtls, pki):
    assert_token(post(mtls, cc("self-signed-uri"), pki.pairs["self-signed-uri"]))
    body = assert_oauth_error(post(mtls, cc("self-signed-uri"), pki.pairs["self-signed"]), 401, "invalid_client")
    assert body["error_description"] == FAILED


def test_a_self_signed_certificate_never_passes_for_a_ca_issued_one(mtls, pki):
    """self-signed-dn is in client_ca_file (as a self_signed client's would be) and has the DN
    dn-client registered: tls_client_auth still refuses it."""
    body = assert_oauth_error(post(mtls, cc("dn-client"), pki.pairs["self-signed-dn"]), 401, "invalid_client")
    assert body["error_description"] == FAILED
    assert audit_records(mtls.log(), client_id="dn-client", outcome="failure")[-1]["reason"] == "self_signed"


def test_a_self_signed_clients_certificate_vouches_for_nobody(mtls, pki):
    """The attacker's self-signed certificate is listed in client_self_signed_file (so the TLS
    handshake takes what it issued) and is a CA: a certificate it issued with dn-client's DN is
    refused all the same, since no CA in client_ca_file issued it."""
    register(mtls, "attacker", "self_signed_tls_client_auth", jwks=jwks_of((pki.keys["attacker"], "k1")))
    body = assert_oauth_error(post(mtls, cc("dn-client"), pki.pairs["forged-dn"]), 401, "invalid_client")
    assert body["error_description"] == FAILED
    assert audit_records(mtls.log(), client_id="dn-client", outcome="failure")[-1]["reason"] == "issuer"


def test_another_method_with_a_certificate_is_that_method(mtls, pki):
    """A client assertion and a certificate: private_key_jwt authenticates; the token is not bound
    (the client is not registered for bound tokens)."""
    body = assert_token(post(mtls, cc("pkjwt", **assertion(mtls, "pkjwt", pki.keys["bound"])), pki.pairs["dn"]))
    assert "cnf" not in introspect(mtls, body["access_token"], pki.pairs["dn"])


def test_a_public_client_presenting_a_certificate_is_refused(mtls, pki):
    """A certificate with a client_id alone is a mutual-TLS authentication: a public client must not
    send one (RFC 8705 §4's certificate-bound tokens for public clients are not supported)."""
    response = redeem(mtls, "public-app", pki.pairs["dn"], code_verifier="a" * 43)
    body = assert_oauth_error(response, 401, "invalid_client")
    assert body["error_description"] == FAILED


def test_a_client_cert_header_from_a_client_is_ignored(mtls, pki):
    """Only trusted_proxies speak for a certificate (there are none here): the header of a client
    that connects without a certificate adds none."""
    response = post(mtls, cc("dn-client"), headers={"Client-Cert": client_cert_header(pki.certs["dn"])})
    body = assert_oauth_error(response, 401, "invalid_client")
    assert body["error_description"] == REQUIRED


# --- certificate-bound access tokens (RFC 8705 §3) ----------------------------------------------

def test_bound_opaque_token_introspection_and_userinfo(mtls, pki):
    body = assert_token(redeem(mtls, "bound", pki.pairs["bound"]))
    token = body["access_token"]
    described = introspect(mtls, token, pki.pairs["dn"])
    assert described["active"] is True
    assert described["token_type"] == "Bearer"
    assert described["cnf"] == {"x5t#S256": x5t_s256_of(pki.certs["bound"])}

    response = userinfo(mtls, token, pki.pairs["bound"])
    assert response.status_code == 200, response.text
    assert response.json() == {"sub": described["sub"], "name": "Alice Liddell"}

    # Another certificate (same DN, another key), or none: not the token's.
    for cert in (pki.pairs["bound-2"], None):
        refused = userinfo(mtls, token, cert)
        assert refused.status_code == 401
        assert refused.headers["WWW-Authenticate"] == 'Bearer realm="oauth2", error="invalid_token"'
        assert refused.json()["error"] == "invalid_token"


def test_bound_jwt_carries_cnf_x5t(mtls, pki):
    body = assert_token(post(mtls, cc("bound-jwt"), pki.pairs["bound-2"]))
    claims = jwt_claims(body["access_token"])
    assert claims["cnf"] == {"x5t#S256": x5t_s256_of(pki.certs["bound-2"])}
    assert introspect(mtls, body["access_token"], pki.pairs["dn"])["cnf"] == claims["cnf"]

    user_token = assert_token(redeem(mtls, "bound-jwt", pki.pairs["bound"]))["access_token"]
    assert jwt_claims(user_token)["cnf"] == {"x5t#S256": x5t_s256_of(pki.certs["bound"])}
    assert userinfo(mtls, user_token, pki.pairs["bound"]).status_code == 200
    assert userinfo(mtls, user_token, pki.pairs["bound-2"]).status_code == 401


def test_unbound_clients_get_unbound_tokens(mtls, pki):
    body = assert_token(post(mtls, cc("dn-client"), pki.pairs["dn"]))
    assert "cnf" not in introspect(mtls, body["access_token"], pki.pairs["dn"])


def test_a_client_registered_for_bound_tokens_must_present_a_certificate(mtls, pki):
    """Any authentication method: pkjwt-bound authenticates with private_key_jwt."""
    form = cc("pkjwt-bound", **assertion(mtls, "pkjwt-bound", pki.keys["bound"]))
    body = assert_oauth_error(post(mtls, form), 400, "invalid_request")
    assert body["error_description"] == "The client must present a TLS client certificate (mutual TLS)"
    form = cc("pkjwt-bound", **assertion(mtls, "pkjwt-bound", pki.keys["bound"]))
    token = assert_token(post(mtls, form, pki.pairs["dn"]))["access_token"]
    assert introspect(mtls, token, pki.pairs["dn"])["cnf"] == {"x5t#S256": x5t_s256_of(pki.certs["dn"])}


def test_dpop_and_mutual_tls_bind_the_token_both_ways(mtls, pki):
    """Both bindings in cnf; token_type DPoP; at userinfo both must be proven."""
    key = ec_key()
    proof = dpop_proof(key, mtls.base + "/oauth2/token")
    body = assert_token(redeem(mtls, "bound", pki.pairs["bound"], headers={"DPoP": proof}), "DPoP")
    token = body["access_token"]
    described = introspect(mtls, token, pki.pairs["dn"])
    assert described["token_type"] == "DPoP"
    assert described["cnf"] == {"jkt": jkt_of(key), "x5t#S256": x5t_s256_of(pki.certs["bound"])}

    def with_proof(cert):
        proof = dpop_proof(key, mtls.base + "/oauth2/userinfo", "GET", access_token=token)
        return userinfo(mtls, token, cert, "DPoP", {"DPoP": proof})

    assert with_proof(pki.pairs["bound"]).status_code == 200
    refused = with_proof(pki.pairs["bound-2"])
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"].startswith('DPoP error="invalid_token"')
    refused = userinfo(mtls, token, pki.pairs["bound"])  # the certificate without the proof
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"].startswith('DPoP error="invalid_token"')


# =================================================================================================
# 2. Behind a TLS-terminating proxy: the Client-Cert header (RFC 9440)
# =================================================================================================

@pytest.fixture(scope="module")
def proxied(tmp_path_factory, pki):
    """tls = false, trusted_proxies = 127.0.0.1: the test plays the proxy (it verified the client's
    certificate itself) from 127.0.0.1, and a client that bypasses it from 127.0.0.2."""
    directory = tmp_path_factory.mktemp("proxied")
    pki.write_trust(directory)
    extra = ('tls = false\ntrusted_proxies = ["127.0.0.1"]\nclient_certificates = "optional"\n'
             'client_ca_file = "client-ca.pem"\n')
    with running(directory, plain=True, server_extra=extra) as server:
        register(server, "dn-client", tls_client_auth_subject_dn=DN)
        register(server, "san-dns", tls_client_auth_san="dns:dn-client.example.com")
        register(server, "self-signed", "self_signed_tls_client_auth", jwks=jwks_of((pki.keys["unlisted-self-signed"],
                                                                                   "k1")))
        register(server, "bound", tls_client_auth_subject_dn="CN=bound-client",
                 tls_client_certificate_bound_access_tokens=True, grant_types=("authorization_code",),
                 scopes=("openid", "profile"), redirect_uris=(REDIRECT,))
        yield server


def via_proxy(server: Server, form: dict, cert=None, path: str = "/oauth2/token", session=None, **headers):
    if cert is not None:
        headers["Client-Cert"] = client_cert_header(cert)
    return (session or requests).post(server.base + path, data=form, headers=headers, timeout=15)


def test_client_cert_header_from_a_trusted_proxy(proxied, pki):
    assert_token(via_proxy(proxied, cc("dn-client"), pki.certs["dn"]))
    # Padding may be left out (RFC 8941 §3.3.5); trailing whitespace is no part of the value.
    value = client_cert_header(pki.certs["dn"])
    assert_token(via_proxy(proxied, cc("dn-client"), **{"Client-Cert": f"{value.rstrip('=:')}: "}))


def test_the_proxy_vouches_for_the_chain(proxied, pki):
    """For self_signed_tls_client_auth, whatever the proxy accepts: here a self-signed certificate
    no file of this server lists (the registered key decides)."""
    assert_token(via_proxy(proxied, cc("self-signed"), pki.certs["unlisted-self-signed"]))


def test_a_proxied_certificate_must_come_from_a_ca_in_client_ca_file(proxied, pki):
    """Whatever the proxy accepted, tls_client_auth needs a CA of client_ca_file to have issued
    the certificate: a DN forged by another issuer (here the attacker's self-made CA) is refused."""
    body = assert_oauth_error(via_proxy(proxied, cc("dn-client"), pki.certs["forged-dn"]), 401, "invalid_client")
    assert body["error_description"] == FAILED
    assert audit_records(proxied.log(), client_id="dn-client", outcome="failure")[-1]["reason"] == "issuer"
    body = assert_oauth_error(via_proxy(proxied, cc("dn-client"), pki.certs["other-ca"]), 401, "invalid_client")


def _patched(pki, dn: str, sans, old: bytes, new: bytes) -> str:
    """A certificate of the trusted CA with bytes of its DER replaced (its signature then fails
    too), as the Client-Cert header value."""
    _, cert = tls_client_certificate(dn, pki.ca, sans=sans)
    der = cert_der(cert)
    assert old in der
    return ":" + base64.b64encode(der.replace(old, new)).decode() + ":"


@pytest.mark.parametrize("case", ["subject-not-utf8", "issuer-not-utf8", "two-san-extensions", "edi-party-name"])
def test_certificates_cryptography_cannot_read_identify_nobody(proxied, pki, case):
    """Names and extensions OpenSSL lets through and cryptography cannot read: 401, never a 500."""
    sans = [x509.DNSName("XXXXX"), x509.DNSName("dn-client.example.com")]
    value = {
        "subject-not-utf8": lambda: _patched(pki, "CN=QQQQ,O=Example Corp,C=DE", sans, b"QQQQ", b"\xff\xfe\xfd\xfc"),
        "issuer-not-utf8": lambda: _patched(pki, DN, sans, b"Test Client CA", b"\xffest Client CA"),
        "two-san-extensions": lambda: _patched(pki, DN, [x509.DNSName("dn-client.example.com")],
                                               b"\x06\x03\x55\x1d\x25", b"\x06\x03\x55\x1d\x11"),
        "edi-party-name": lambda: _patched(pki, DN, sans, b"\x82\x05XXXXX", b"\xa5\x05\xa1\x03\x0c\x01A"),
    }[case]()
    for client_id in ("dn-client", "san-dns"):
        body = assert_oauth_error(via_proxy(proxied, cc(client_id), **{"Client-Cert": value}), 401, "invalid_client")
        assert body["error_description"] == FAILED


def test_client_cert_header_from_an_untrusted_address_is_ignored(proxied, pki):
    with session_from("127.0.0.2") as session:
        response = via_proxy(proxied, cc("dn-client"), pki.certs["dn"], session=session)
    body = assert_oauth_error(response, 401, "invalid_client")
    assert body["error_description"] == REQUIRED
    # No certificate seen: the request was the public client authenticator's, not mutual TLS.
    assert audit_records(proxied.log(), remote_addr="127.0.0.2")[-1]["method"] == "none"


@pytest.mark.parametrize("value", [":not base64!:", "AAAA", "::", ":" + base64.b64encode(b"not DER").decode() + ":",
                                   '"quoted"'])
def test_a_malformed_client_cert_header_is_refused(proxied, value):
    body = assert_oauth_error(via_proxy(proxied, cc("dn-client"), **{"Client-Cert": value}), 400, "invalid_request")
    assert body["error_description"] == "The Client-Cert header is malformed"


def test_two_client_cert_headers_are_refused(proxied, pki):
    connection = http.client.HTTPConnection("127.0.0.1", proxied.port, timeout=15)
    try:
        body = b"grant_type=client_credentials&client_id=dn-client"
        connection.putrequest("POST", "/oauth2/token")
        connection.putheader("Content-Type", "application/x-www-form-urlencoded")
        connection.putheader("Content-Length", str(len(body)))
        for name in ("dn", "wrong-dn"):
            connection.putheader("Client-Cert", client_cert_header(pki.certs[name]))
        connection.endheaders(body)
        response = connection.getresponse()
        assert response.status == 400
        assert json.loads(response.read())["error_description"] == "The Client-Cert header is malformed"
    finally:
        connection.close()


def test_an_expired_certificate_from_the_proxy_is_refused(proxied, pki):
    body = assert_oauth_error(via_proxy(proxied, cc("dn-client"), pki.certs["expired"]), 401, "invalid_client")
    assert body["error_description"] == "The client certificate has expired"


def test_a_bound_token_behind_the_proxy(proxied, pki):
    form = {"grant_type": "authorization_code", "code": user_code(proxied, "bound"), "redirect_uri": REDIRECT,
            "client_id": "bound"}
    token = assert_token(via_proxy(proxied, form, pki.certs["bound"]))["access_token"]

    def info(cert, session=None):
        headers = {"Authorization": f"Bearer {token}"}
        if cert is not None:
            headers["Client-Cert"] = client_cert_header(cert)
        return (session or requests).get(proxied.base + "/oauth2/userinfo", headers=headers, timeout=15)

    assert info(pki.certs["bound"]).status_code == 200
    assert info(pki.certs["bound-2"]).status_code == 401
    with session_from("127.0.0.2") as session:  # the right certificate, but not from the proxy
        refused = info(pki.certs["bound"], session)
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"] == 'Bearer realm="oauth2", error="invalid_token"'


# =================================================================================================
# 3. FAPI 2.0: TLS 1.2 or later, BCP 195 cipher suites (Security Profile §5.2.1)
# =================================================================================================

@pytest.fixture(scope="module")
def fapi2(tmp_path_factory, pki):
    directory = tmp_path_factory.mktemp("fapi2")
    pki.write_trust(directory)
    with running(directory, server_extra=MTLS, extra='[oauth]\nprofile = "fapi2"\n') as server:
        register(server, "fapi-client", tls_client_auth_subject_dn="CN=fapi-client",
                 tls_client_certificate_bound_access_tokens=True)
        yield server


CBC_SUITE = "ECDHE-RSA-AES128-SHA256"  # TLS 1.2, not among RFC 9325 §4.2's recommendations


def test_fapi2_refuses_tls_1_1(fapi2):
    """The client offers TLS 1.0 and 1.1 only (OpenSSL lets a client do so at security level 0)."""
    with pytest.raises(ssl.SSLError) as refused, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # ssl.TLSVersion.TLSv1, TLSv1_1
        handshake(fapi2, minimum=ssl.TLSVersion.TLSv1, maximum=ssl.TLSVersion.TLSv1_1,
                  ciphers="DEFAULT:@SECLEVEL=0")
    assert "PROTOCOL_VERSION" in str(refused.value) or "UNSUPPORTED_PROTOCOL" in str(refused.value)


def test_fapi2_refuses_tls_1_2_cipher_suites_bcp_195_does_not_recommend(fapi2, mtls):
    with pytest.raises(ssl.SSLError) as refused:
        handshake(fapi2, maximum=ssl.TLSVersion.TLSv1_2, ciphers=CBC_SUITE)
    assert "HANDSHAKE_FAILURE" in str(refused.value)
    # The same client is served without the profile: the refusal is the profile's.
    assert handshake(mtls, maximum=ssl.TLSVersion.TLSv1_2, ciphers=CBC_SUITE) == ("TLSv1.2", CBC_SUITE)


@pytest.mark.parametrize("suite", ["ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384"])
def test_fapi2_serves_the_recommended_suites_and_tls_1_3(fapi2, suite):
    assert handshake(fapi2, maximum=ssl.TLSVersion.TLSv1_2, ciphers=suite) == ("TLSv1.2", suite)
    assert handshake(fapi2, minimum=ssl.TLSVersion.TLSv1_3)[0] == "TLSv1.3"


def test_fapi2_keeps_mutual_tls(fapi2, pki):
    """The FAPI 2.0 TLS context is gunicorn's with client certificates: mutual TLS still works, and
    gives the certificate-bound tokens FAPI 2.0 asks for."""
    token = assert_token(post(fapi2, cc("fapi-client"), pki.pairs["fapi"]))["access_token"]
    assert token
    with pytest.raises(requests.exceptions.SSLError):
        post(fapi2, cc("fapi-client"), pki.pairs["other-ca"])
