"""ID tokens (OpenID Connect Core §2, §3.1.3.6, §3.1.3.7, §12.2): claims, header, at_hash, and
signatures verified with the keys at /oauth2/jwks by python-jose and by `cryptography` directly."""

from __future__ import annotations

import base64
import hashlib
import time

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from jose import jwt as jose_jwt

from oidc_support import b64url_json, make_oidc, verifier_pair


@pytest.fixture
def oidc(tmp_path):
    return make_oidc(tmp_path)


def jwks(oidc) -> dict:
    r = oidc.app.test_client().get("/oauth2/jwks")
    assert r.status_code == 200
    return r.json


def b64url_int(value: str) -> int:
    return int.from_bytes(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)), "big")


def verify_with_cryptography(id_token: str, keys: dict) -> dict:
    """RFC 7515 §5.2 by hand: find the key by kid, check RS256 over the signing input."""
    head, payload, signature = id_token.split(".")
    header = b64url_json(head)
    key = next(k for k in keys["keys"] if k["kid"] == header["kid"])
    public = rsa.RSAPublicNumbers(b64url_int(key["e"]), b64url_int(key["n"])).public_key()
    public.verify(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)),
                  f"{head}.{payload}".encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
    return b64url_json(payload)


def expected_at_hash(access_token: str) -> str:
    digest = hashlib.sha256(access_token.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()


def test_claims_and_header(oidc):
    auth_time = int(time.time()) - 120
    body = oidc.tokens(scopes=("openid", "profile"), nonce="n-0S6_WzA2Mj", auth_time=auth_time)
    id_token = body["id_token"]
    header = b64url_json(id_token.split(".")[0])
    assert header == {"alg": "RS256", "typ": "JWT", "kid": jwks(oidc)["keys"][0]["kid"]}
    claims = b64url_json(id_token.split(".")[1])
    now = int(time.time())
    assert claims["iss"] == oidc.env.issuer
    assert claims["sub"] == oidc.alice.sub
    assert claims["aud"] == "web-app" and claims["azp"] == "web-app"
    assert abs(claims["iat"] - now) <= 5 and claims["exp"] - claims["iat"] == 3600
    assert claims["auth_time"] == auth_time
    assert claims["nonce"] == "n-0S6_WzA2Mj"
    assert claims["at_hash"] == expected_at_hash(body["access_token"])
    assert set(claims) == {"iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "at_hash", "azp"}


def test_no_nonce_when_the_request_had_none(oidc):
    claims = b64url_json(oidc.tokens()["id_token"].split(".")[1])
    assert "nonce" not in claims


def test_verifies_with_python_jose(oidc):
    body = oidc.tokens(nonce="abc")
    claims = jose_jwt.decode(body["id_token"], jwks(oidc), algorithms=["RS256"], audience="web-app",
                             issuer=oidc.env.issuer, access_token=body["access_token"])  # also checks at_hash
    assert claims["sub"] == oidc.alice.sub and claims["nonce"] == "abc"


def test_verifies_with_cryptography(oidc):
    body = oidc.tokens()
    claims = verify_with_cryptography(body["id_token"], jwks(oidc))
    assert claims["sub"] == oidc.alice.sub


def test_tampered_id_token_does_not_verify(oidc):
    body = oidc.tokens()
    head, payload, signature = body["id_token"].split(".")
    forged = base64.urlsafe_b64encode(b'{"sub":"mallory"}').rstrip(b"=").decode()
    with pytest.raises(InvalidSignature):
        verify_with_cryptography(f"{head}.{forged}.{signature}", jwks(oidc))
    with pytest.raises(Exception):
        jose_jwt.decode(f"{head}.{forged}.{signature}", jwks(oidc), algorithms=["RS256"], audience="web-app")


def test_signed_with_the_primary_keystore_key(oidc):
    """The key is the keystore's (the TLS key), published under its RFC 7638 thumbprint."""
    from keystore.jwk import PublicKey
    services = oidc.app.extensions["idp"].services
    cert_key = services.keystore().certificate.public_key()
    key = jwks(oidc)["keys"][0]
    assert key["kid"] == PublicKey.from_cryptography(cert_key).thumbprint
    assert b64url_int(key["n"]) == cert_key.public_numbers().n
    assert key["use"] == "sig" and key["alg"] == "RS256"


def test_public_client_id_token(oidc):
    verifier, challenge = verifier_pair()
    r = oidc.redeem(oidc.code("public-app", challenge=challenge, nonce="pub"), "public-app", code_verifier=verifier)
    claims = jose_jwt.decode(r.json["id_token"], jwks(oidc), algorithms=["RS256"], audience="public-app",
                             issuer=oidc.env.issuer, access_token=r.json["access_token"])
    assert claims["nonce"] == "pub" and claims["azp"] == "public-app"


def test_refresh_gives_a_new_id_token_without_nonce_same_auth_time(oidc):
    auth_time = int(time.time()) - 600
    first = oidc.tokens(nonce="n1", auth_time=auth_time)
    r = oidc.refresh(first["refresh_token"])
    assert r.status_code == 200
    second = r.json
    assert second["id_token"] != first["id_token"]
    claims = jose_jwt.decode(second["id_token"], jwks(oidc), algorithms=["RS256"], audience="web-app",
                             issuer=oidc.env.issuer, access_token=second["access_token"])
    assert "nonce" not in claims
    assert claims["auth_time"] == auth_time and claims["sub"] == oidc.alice.sub
    # OIDC Core §12.2: iss, sub, aud as in the original ID token.
    original = b64url_json(first["id_token"].split(".")[1])
    assert (claims["iss"], claims["sub"], claims["aud"]) == (original["iss"], original["sub"], original["aud"])


def test_configured_id_token_validity(tmp_path):
    oidc = make_oidc(tmp_path, extra="[oauth.token_validation]\nid_token_validity = 600\n")
    claims = b64url_json(oidc.tokens()["id_token"].split(".")[1])
    assert claims["exp"] - claims["iat"] == 600


def test_custom_issuer(tmp_path):
    oidc = make_oidc(tmp_path, extra='[oauth.oidc.id_token]\nissuer = "https://idp.example.com"\n')
    body = oidc.tokens()
    claims = jose_jwt.decode(body["id_token"], jwks(oidc), algorithms=["RS256"], audience="web-app",
                             issuer="https://idp.example.com", access_token=body["access_token"])
    assert claims["iss"] == "https://idp.example.com"


def test_at_hash_unit():
    """OIDC Core §3.1.3.6 against a value computed independently."""
    from keystore.id_token import at_hash
    token = "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"
    assert at_hash(token) == expected_at_hash(token)
    assert len(at_hash(token)) == 22
