"""Keys and header injection: unknown and hostile kid values, another client's key, keys offered in
the assertion's own header (jwk, jku, x5u, x5c) with a canary HTTP server on 127.0.0.1 that must
never be contacted, keys not meant for signatures, symmetric keys, crit, foreign typ values."""

from __future__ import annotations

import base64
import datetime
import http.server
import json
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from hostile_support import b64, bad_client, compact, ok, params, run
from support import jwks_of

CANARY_HITS: list[str] = []


class _Canary(http.server.BaseHTTPRequestHandler):
    def _any(self):
        CANARY_HITS.append(f"{self.command} {self.path}")
        body = json.dumps({"keys": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_HEAD = _any

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def canary():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Canary)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def attacker_cert(key, name: str) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))


def attacker_jwk(key, kid: str | None = "k1") -> dict:
    document = json.loads(jwks_of((key, kid)))
    return document["keys"][0]


def signed_by_attacker(e, headers: dict, client_id: str = "rsa-client", kid: str | None = "k1") -> str:
    """Signed with a key the attacker controls (rsa_other is registered only for other-client)."""
    return e.assertion(client_id, key=e.keys.rsa_other, kid=kid, headers=headers)


def forged(id: str, make):
    return bad_client(id, lambda e: e.token_request(make(e)))


def with_kid(kid) -> callable:
    return lambda e: e.assertion(kid=kid)


def canary_url(e, path: str) -> str:
    return e.canary + path


KID = [
    forged("kid-unknown", with_kid("k2")),
    forged("kid-case-variant", with_kid("K1")),
    forged("kid-trailing-space", with_kid("k1 ")),
    forged("kid-empty", with_kid("")),
    forged("kid-newline", with_kid("k1\n")),
    forged("kid-nul", with_kid("k1\x00")),
    forged("kid-256-characters", with_kid("k" * 256)),
    forged("kid-path-traversal", with_kid("../../../../etc/passwd")),
    forged("kid-absolute-path", with_kid("/dev/null")),
    forged("kid-windows-path", with_kid("..\\..\\windows\\win.ini")),
    forged("kid-file-url", with_kid("file:///etc/passwd")),
    forged("kid-sql-tautology", with_kid("' OR '1'='1")),
    forged("kid-sql-comment", with_kid("k1' --")),
    forged("kid-sql-union", with_kid("x' UNION SELECT jwks FROM oauth_client --")),
    forged("kid-sql-drop", with_kid("k1\"; DROP TABLE oauth_client; --")),
    forged("kid-like-wildcard", with_kid("k%")),
    forged("kid-json-injection", with_kid('k1","kty":"oct')),
    forged("kid-of-another-client-key", lambda e: e.assertion(key=e.keys.rsa_other, kid="k1")),
    forged("no-kid-another-client-key", lambda e: e.assertion(key=e.keys.rsa_other, kid=None)),
    forged("other-client-id-own-key", lambda e: e.assertion("other-client", key=e.keys.rsa)),
    forged("no-kid-wrong-key-single-key-client", lambda e: e.assertion("nokid-client", key=e.keys.rsa_other, kid=None)),
    forged("kid-on-client-without-kids", lambda e: e.assertion("nokid-client", kid="k1")),
    ok("kid-omitted-single-key", lambda e: e.token_request(e.assertion("nokid-client", kid=None))),
    ok("kid-omitted-client-with-kid", lambda e: e.token_request(e.assertion(kid=None))),
]

HEADER_KEYS = [
    forged("jwk-header-attacker-key", lambda e: signed_by_attacker(e, {"jwk": attacker_jwk(e.keys.rsa_other)})),
    forged("jwk-header-without-kid", lambda e: signed_by_attacker(e, {"jwk": attacker_jwk(e.keys.rsa_other, None)}, kid=None)),
    forged("jwk-header-ec-attacker", lambda e: e.assertion("es256-client", key=e.keys.p256_other, alg="ES256",
                                                           headers={"jwk": attacker_jwk(e.keys.p256_other)})),
    forged("jwk-header-oct-key", lambda e: compact(b"secret", "HS256", {"kid": "k1", "jwk": {"kty": "oct", "k": b64(b"secret")}},
                                                   e.claims())),
    forged("jku-header-canary", lambda e: signed_by_attacker(e, {"jku": e.canary + "/jku.json"})),
    forged("jku-header-unknown-kid", lambda e: signed_by_attacker(e, {"jku": e.canary + "/jku2.json"}, kid="attacker")),
    forged("jku-on-client-without-kids", lambda e: signed_by_attacker(e, {"jku": e.canary + "/jku3.json"}, "nokid-client", None)),
    forged("x5u-header-canary", lambda e: signed_by_attacker(e, {"x5u": e.canary + "/x5u.pem"})),
    forged("x5c-header-attacker-cert", lambda e: signed_by_attacker(e, {"x5c": [base64.b64encode(
        attacker_cert(e.keys.rsa_other, "rsa-client").public_bytes(serialization.Encoding.DER)).decode()]})),
    forged("x5t-header-attacker-thumbprint", lambda e: signed_by_attacker(e, {"x5t#S256": b64(
        attacker_cert(e.keys.rsa_other, "rsa-client").fingerprint(hashes.SHA256()))})),
    forged("all-key-headers-at-once", lambda e: signed_by_attacker(e, {
        "jwk": attacker_jwk(e.keys.rsa_other), "jku": e.canary + "/all.json", "x5u": e.canary + "/all.pem",
        "x5c": [base64.b64encode(attacker_cert(e.keys.rsa_other, "x").public_bytes(serialization.Encoding.DER)).decode()]})),
    forged("kid-is-canary-url", lambda e: signed_by_attacker(e, {}, kid=e.canary + "/kid.json")),
    ok("jku-header-with-the-right-key-is-ignored", lambda e: e.token_request(e.assertion(headers={"jku": e.canary + "/ok.json"}))),
]

KEY_USE = [
    forged("key-use-enc", lambda e: e.assertion("enc-client")),
    forged("key-ops-encrypt-only", lambda e: e.assertion("keyops-client")),
    forged("key-use-enc-without-kid", lambda e: e.assertion("enc-client", kid=None)),
]

CRIT_AND_TYP = [
    forged("crit-exp", lambda e: e.assertion(headers={"crit": ["exp"]})),
    forged("crit-empty-list", lambda e: e.assertion(headers={"crit": []})),
    forged("crit-unknown-extension", lambda e: e.assertion(headers={"crit": ["urn:x"], "urn:x": True})),
    forged("crit-not-a-list", lambda e: e.assertion(headers={"crit": "exp"})),
    forged("typ-at-jwt", lambda e: e.assertion(headers={"typ": "at+jwt"})),
    forged("typ-jose", lambda e: e.assertion(headers={"typ": "JOSE"})),
    forged("typ-jose-json", lambda e: e.assertion(headers={"typ": "JOSE+JSON"})),
    forged("typ-dpop", lambda e: e.assertion(headers={"typ": "dpop+jwt"})),
    forged("typ-secevent", lambda e: e.assertion(headers={"typ": "secevent+jwt"})),
    forged("typ-logout", lambda e: e.assertion(headers={"typ": "logout+jwt"})),
    forged("typ-empty", lambda e: e.assertion(headers={"typ": ""})),
    forged("typ-jwt-with-space", lambda e: e.assertion(headers={"typ": "JWT "})),
    forged("typ-application-only", lambda e: e.assertion(headers={"typ": "application/"})),
    forged("typ-double-application", lambda e: e.assertion(headers={"typ": "application/application/jwt"})),
    forged("typ-text-jwt", lambda e: e.assertion(headers={"typ": "text/jwt"})),
    ok("typ-jwt", lambda e: e.token_request(e.assertion(headers={"typ": "JWT"}))),
    ok("typ-jwt-lower", lambda e: e.token_request(e.assertion(headers={"typ": "jwt"}))),
    ok("typ-application-jwt", lambda e: e.token_request(e.assertion(headers={"typ": "application/jwt"}))),
    ok("typ-client-authentication-jwt", lambda e: e.token_request(e.assertion(headers={"typ": "client-authentication+jwt"}))),
    ok("typ-application-client-authentication-jwt",
       lambda e: e.token_request(e.assertion(headers={"typ": "application/client-authentication+jwt"}))),
    ok("typ-absent", lambda e: e.token_request(e.assertion(headers={"typ": ...}))),
]


@pytest.fixture
def henv(env, canary):
    env.canary = canary
    return env


@pytest.mark.parametrize("case", params(KID + HEADER_KEYS + KEY_USE + CRIT_AND_TYP))
def test_keys_and_headers(henv, case):
    run(henv, case)


@pytest.mark.parametrize("jwk,message", [
    ({"kty": "oct", "kid": "k1", "k": b64(b"shared secret bytes")}, "private key material"),
    ({"kty": "oct", "kid": "k1"}, "symmetric (oct) keys are not accepted"),
], ids=["oct-with-k", "oct-without-k"])
def test_registration_refuses_a_symmetric_jwks(env, tmp_path, jwk, message):
    jwks_file = tmp_path / "oct.jwks.json"
    jwks_file.write_text(json.dumps({"keys": [jwk]}))
    result = env.server.cli("clients", "create", "--client-id", "oct-client", "--auth-method", "private_key_jwt",
                            "--jwks-file", str(jwks_file), check=False)
    assert result.returncode != 0
    assert message in result.stderr


def test_registration_refuses_a_private_jwk(env, tmp_path):
    document = json.loads(jwks_of((env.keys.p256, "k1")))
    numbers = env.keys.p256.private_numbers()
    document["keys"][0]["d"] = b64(numbers.private_value.to_bytes(32, "big"))
    jwks_file = tmp_path / "private.jwks.json"
    jwks_file.write_text(json.dumps(document))
    result = env.server.cli("clients", "create", "--client-id", "private-jwk-client", "--auth-method",
                            "private_key_jwt", "--jwks-file", str(jwks_file), check=False)
    assert result.returncode != 0
    assert "private" in result.stderr


def test_zz_canary_was_never_contacted(canary):
    """Last in this module: after every row above, nothing fetched a URL from an assertion header."""
    assert CANARY_HITS == []
