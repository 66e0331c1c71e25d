"""JWT access tokens (RFC 9068): the format chosen server-wide or per client, the header and
claims, signatures checked against /oauth2/jwks with a JOSE library we did not write (joserfc),
keys made by keytool and named by `signing_key_alias` (ES256, PS256, EdDSA), key rollover,
`persist = false` (nothing stored; revocation by a deny-list), forged tokens, and the start-up
errors of a signing key that cannot be used.

Key identifiers are recomputed here from the certificates keytool exports (RFC 7638), never
taken from the server."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from joserfc import jwt as joserfc_jwt
from joserfc.jwk import KeySet

from oidc_support import CODE_GRANTS, FORM, OIDC, REDIRECT
from support import (ASSERTION_TYPE, KEYSTORE_PASSWORD, PYTHON, ROOT, InProcess, Server, claims_for,
                     dpop_proof, ec_key, free_port, jkt_of, jwks_of, jwk_thumbprint, rsa_key,
                     shared_keystore, sign, token_form, write_config)

KEYTOOL = shutil.which("keytool")
needs_keytool = pytest.mark.skipif(KEYTOOL is None, reason="keytool (a JDK) is not installed")

BASE = "https://localhost:9443"
ISSUER = BASE + "/oauth2/token"
API = "https://api.example.com/"
OTHER_API = "https://other.example.com/v1"
JWT = '[oauth.token]\naccess_token_format = "jwt"\n'
JWT_NOT_PERSISTED = JWT + "persist = false\n"
INVALID_TOKEN = 'Bearer realm="oauth2", error="invalid_token"'


# --- independent JOSE helpers ---------------------------------------------------------------------------

def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def parts(token: str) -> tuple[dict, dict]:
    head, payload, _ = token.split(".")
    return json.loads(unb64(head)), json.loads(unb64(payload))


def _int(value: int) -> str:
    return b64url(value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))


def jwk_of(public_key) -> dict:
    """A public JWK (RFC 7518 §6, RFC 8037 §2) built from the key's numbers, here."""
    if isinstance(public_key, rsa.RSAPublicKey):
        n = public_key.public_numbers()
        return {"kty": "RSA", "n": _int(n.n), "e": _int(n.e)}
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        size = (public_key.curve.key_size + 7) // 8
        crv = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}[public_key.curve.name]
        n = public_key.public_numbers()
        return {"kty": "EC", "crv": crv, "x": b64url(n.x.to_bytes(size, "big")), "y": b64url(n.y.to_bytes(size, "big"))}
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
        return {"kty": "OKP", "crv": "Ed25519", "x": b64url(public_key.public_bytes(Encoding.Raw, PublicFormat.Raw))}
    raise TypeError(public_key)


def kid_of(public_key) -> str:
    return jwk_thumbprint(jwk_of(public_key))


def primary_private_key(directory: Path):
    key, _, _ = pkcs12.load_key_and_certificates((directory / "var" / "primary.p12").read_bytes(),
                                                 KEYSTORE_PASSWORD.encode())
    return key


def verified(token: str, jwks: dict, alg: str) -> tuple[dict, dict]:
    """Header and claims, the signature checked by joserfc against the published JWK Set."""
    decoded = joserfc_jwt.decode(token, KeySet.import_key_set(jwks), algorithms=[alg])
    return dict(decoded.header), dict(decoded.claims)


# --- keytool --------------------------------------------------------------------------------------------------

def keytool(*args: str) -> str:
    result = subprocess.run([KEYTOOL, *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"keytool {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def store_args(path: Path) -> list[str]:
    return ["-keystore", str(path), "-storetype", "PKCS12", "-storepass", KEYSTORE_PASSWORD]


def genkey(path: Path, alias: str, *keyalg: str) -> None:
    keytool("-genkeypair", "-alias", alias, *keyalg, "-dname", f"CN={alias}", *store_args(path),
            "-keypass", KEYSTORE_PASSWORD)


def entry_public_key(path: Path, alias: str):
    """The public key of a keystore entry, read from the certificate keytool exports."""
    pem = keytool("-exportcert", "-rfc", "-alias", alias, *store_args(path))
    return x509.load_pem_x509_certificate(pem.encode()).public_key()


# alias -> keytool arguments, and the alg the key is published for when it is not the token key.
ENTRIES = {
    "tokens-a": (("-keyalg", "EC", "-groupname", "secp256r1"), "ES256"),
    "tokens-b": (("-keyalg", "EC", "-groupname", "secp256r1"), "ES256"),
    "p384": (("-keyalg", "EC", "-groupname", "secp384r1"), "ES384"),
    "ed": (("-keyalg", "Ed25519"), "EdDSA"),
    "rsa-extra": (("-keyalg", "RSA", "-keysize", "2048"), "PS256"),
}


@pytest.fixture(scope="module")
def keystore_file(tmp_path_factory) -> Path:
    """The primary keystore (alias wso2carbon, RSA) plus the key entries of ENTRIES and a trusted
    certificate entry `certonly`, all made by keytool."""
    if KEYTOOL is None:
        pytest.skip("keytool (a JDK) is not installed")
    directory = tmp_path_factory.mktemp("jwt-keystore")
    shared_keystore(directory)
    path = directory / "var" / "primary.p12"
    for alias, (args, _) in ENTRIES.items():
        genkey(path, alias, *args)
    cert = directory / "certonly.pem"
    cert.write_text(keytool("-exportcert", "-rfc", "-alias", "tokens-a", *store_args(path)))
    keytool("-importcert", "-noprompt", "-alias", "certonly", "-file", str(cert), *store_args(path))
    return path


def place(keystore: Path, directory: Path) -> None:
    (directory / "var").mkdir(parents=True, exist_ok=True)
    shutil.copy(keystore, directory / "var" / "primary.p12")


# --- the app in-process ----------------------------------------------------------------------------------------

def in_process(directory: Path, extra: str = "", keystore: Path | None = None) -> OIDC:
    """build_app() on its own SQLite file, with the shared keystore or `keystore`; the clients of
    oidc_support plus client-1 (client_credentials)."""
    from app import build_app
    from storage.schema import upgrade
    if keystore is None:
        shared_keystore(directory)
    else:
        place(keystore, directory)
    app = build_app(str(write_config(directory, extra=extra)))
    upgrade(app.extensions["idp"].services.db)
    oidc = OIDC(InProcess(app, directory)).setup()
    oidc.env.register("client-1")
    return oidc


@pytest.fixture
def jwt_oidc(tmp_path) -> OIDC:
    return in_process(tmp_path, JWT)


@pytest.fixture
def volatile(tmp_path) -> OIDC:
    """JWT access tokens that are not stored (persist = false)."""
    return in_process(tmp_path, JWT_NOT_PERSISTED)


def cc_token(oidc: OIDC, client_id: str = "client-1", headers: dict | None = None, **extra) -> dict:
    r = oidc.post("/oauth2/token", token_form(oidc.env.assertion(client_id), **extra), headers)
    assert r.status_code == 200, r.get_data(as_text=True)
    return r.json


def jwks(oidc: OIDC) -> dict:
    r = oidc.app.test_client().get("/oauth2/jwks")
    assert r.status_code == 200
    return r.json


def userinfo(oidc: OIDC, access_token: str):
    return oidc.app.test_client().get("/oauth2/userinfo", headers={"Authorization": "Bearer " + access_token})


def access_rows(oidc: OIDC) -> int:
    from storage.models import AccessToken
    with oidc.app.app_context():
        return AccessToken.select().count()


# --- format and claims ------------------------------------------------------------------------------------------

def test_client_credentials_jwt(jwt_oidc):
    oidc = jwt_oidc
    before = int(time.time())
    body = cc_token(oidc)
    token = body["access_token"]
    kid = kid_of(primary_private_key(oidc.env.tmp).public_key())
    header, claims = verified(token, jwks(oidc), "RS256")
    assert header == {"alg": "RS256", "typ": "at+jwt", "kid": kid}
    assert set(claims) == {"iss", "exp", "aud", "sub", "client_id", "iat", "jti", "scope"}
    assert claims["iss"] == ISSUER
    # RFC 9068 §5: without a resource the audience is this server, never the client (no access
    # token may pass for an ID token).
    assert claims["aud"] == ISSUER
    assert claims["sub"] == claims["client_id"] == "client-1"
    assert before <= claims["iat"] <= int(time.time())
    assert claims["exp"] == claims["iat"] + body["expires_in"] == claims["iat"] + 3600
    assert claims["scope"] == body["scope"] == "openid read"
    assert isinstance(claims["jti"], str) and len(claims["jti"]) >= 16
    assert body["token_type"] == "Bearer"
    # Two tokens never share a jti.
    assert parts(cc_token(oidc)["access_token"])[1]["jti"] != claims["jti"]


def test_user_token_claims_and_userinfo(jwt_oidc):
    oidc = jwt_oidc
    auth_time = int(time.time()) - 120
    body = oidc.tokens(scopes=("openid", "profile"), auth_time=auth_time)
    header, claims = verified(body["access_token"], jwks(oidc), "RS256")
    assert header["typ"] == "at+jwt"
    assert set(claims) == {"iss", "exp", "aud", "sub", "client_id", "iat", "jti", "scope", "auth_time"}
    assert claims["sub"] == oidc.alice.sub and claims["client_id"] == "web-app" and claims["aud"] == ISSUER
    assert claims["auth_time"] == auth_time and claims["scope"] == "openid profile"
    r = userinfo(oidc, body["access_token"])
    assert r.status_code == 200 and r.json["sub"] == oidc.alice.sub, r.get_data(as_text=True)
    described = oidc.introspect(body["access_token"])
    assert described["active"] is True and described["sub"] == oidc.alice.sub


def test_dpop_bound_jwt(jwt_oidc):
    oidc = jwt_oidc
    key = ec_key()
    body = cc_token(oidc, headers={"DPoP": dpop_proof(key, ISSUER)})
    assert body["token_type"] == "DPoP"
    _, claims = verified(body["access_token"], jwks(oidc), "RS256")
    assert claims["cnf"] == {"jkt": jkt_of(key)}
    described = oidc.introspect(body["access_token"])
    assert described["token_type"] == "DPoP" and described["cnf"] == {"jkt": jkt_of(key)}


def test_dpop_bound_jwt_at_userinfo(jwt_oidc):
    oidc = jwt_oidc
    key = ec_key()
    r = oidc.post("/oauth2/token", {"grant_type": "authorization_code", "code": oidc.code(scopes=("openid",)),
                                    "redirect_uri": REDIRECT, **oidc.auth()}, {"DPoP": dpop_proof(key, ISSUER)})
    assert r.status_code == 200 and r.json["token_type"] == "DPoP", r.get_data(as_text=True)
    token = r.json["access_token"]
    assert parts(token)[1]["cnf"] == {"jkt": jkt_of(key)}
    url = BASE + "/oauth2/userinfo"
    good = oidc.app.test_client().get("/oauth2/userinfo", headers={
        "Authorization": "DPoP " + token, "DPoP": dpop_proof(key, url, "GET", access_token=token)})
    assert good.status_code == 200 and good.json == {"sub": oidc.alice.sub}, good.get_data(as_text=True)
    other = oidc.app.test_client().get("/oauth2/userinfo", headers={
        "Authorization": "DPoP " + token, "DPoP": dpop_proof(ec_key(), url, "GET", access_token=token)})
    assert other.status_code == 401 and other.json["error"] == "invalid_dpop_proof"
    bearer = userinfo(oidc, token)
    assert bearer.status_code == 401 and bearer.json["error"] == "invalid_token"
    assert bearer.headers["WWW-Authenticate"].startswith('DPoP error="invalid_token", algs="')


def test_resources_are_the_audience(jwt_oidc):
    oidc = jwt_oidc
    oidc.env.register("res-client", resources=(API, OTHER_API))
    one = cc_token(oidc, "res-client", resource=API)["access_token"]
    assert parts(one)[1]["aud"] == API
    assert oidc.introspect(one)["aud"] == API
    r = oidc.app.test_client().post("/oauth2/token", content_type=FORM, data="&".join([
        "grant_type=client_credentials", "client_assertion_type=" + ASSERTION_TYPE,
        "client_assertion=" + oidc.env.assertion("res-client"),
        "resource=" + quote(API, safe=""), "resource=" + quote(OTHER_API, safe="")]))
    assert r.status_code == 200, r.get_data(as_text=True)
    two = r.json["access_token"]
    assert parts(two)[1]["aud"] == [API, OTHER_API]
    assert oidc.introspect(two)["aud"] == [API, OTHER_API]


def test_format_per_client(tmp_path):
    opaque_server = in_process(tmp_path / "opaque")
    opaque_server.env.register("jwt-client", access_token_format="jwt")
    assert parts(cc_token(opaque_server, "jwt-client")["access_token"])[0]["typ"] == "at+jwt"
    assert "." not in cc_token(opaque_server)["access_token"]
    jwt_server = in_process(tmp_path / "jwt", JWT)
    jwt_server.env.register("opaque-client", access_token_format="opaque")
    assert "." not in cc_token(jwt_server, "opaque-client")["access_token"]
    assert parts(cc_token(jwt_server)["access_token"])[0]["typ"] == "at+jwt"


# --- persist = false -----------------------------------------------------------------------------------------

def test_persisted_jwt_without_its_signature_is_nothing(jwt_oidc):
    """A JWT is recorded under its header and payload: that text, presented as a token, is no
    token at all (not an opaque one whose hash matches the record)."""
    oidc = jwt_oidc
    token = oidc.tokens(scopes=("openid",))["access_token"]
    stripped = token.rsplit(".", 1)[0]
    assert oidc.introspect(stripped) == {"active": False}
    r = userinfo(oidc, stripped)
    assert r.status_code == 401 and r.json["error"] == "invalid_token"
    assert oidc.revoke(stripped).status_code == 200       # RFC 7009 §2.2: 200 whatever the token
    assert oidc.introspect(token)["active"] is True       # and it revoked nothing


def test_persisted_jwt_is_stored_and_revocable(jwt_oidc):
    oidc = jwt_oidc
    token = cc_token(oidc)["access_token"]
    assert access_rows(oidc) == 1
    assert oidc.introspect(token, "client-1")["active"] is True
    assert oidc.revoke(token, "client-1").status_code == 200
    assert oidc.introspect(token, "client-1") == {"active": False}


def test_volatile_jwt_is_not_stored(volatile):
    oidc = volatile
    body = cc_token(oidc)
    user = oidc.tokens(scopes=("openid",))
    assert access_rows(oidc) == 0
    _, claims = parts(body["access_token"])
    described = oidc.introspect(body["access_token"], "client-1")
    assert described == {"active": True, "client_id": "client-1", "token_type": "Bearer", "exp": claims["exp"],
                         "iat": claims["iat"], "scope": "openid read", "iss": ISSUER}
    assert userinfo(oidc, user["access_token"]).status_code == 200


def test_volatile_jwt_revocation(volatile):
    from storage.models import RevokedJWT
    oidc = volatile
    token = cc_token(oidc)["access_token"]
    jti = parts(token)[1]["jti"]
    # RFC 7009 §2.1: another client's revocation request leaves the token alone.
    assert oidc.revoke(token, "web-app").status_code == 200
    assert oidc.introspect(token, "client-1")["active"] is True
    assert oidc.revoke(token, "client-1").status_code == 200
    assert oidc.introspect(token, "client-1") == {"active": False}
    with oidc.app.app_context():
        assert [row.jti for row in RevokedJWT.select()] == [jti]
    assert access_rows(oidc) == 0
    # A user's token revoked: refused at the userinfo endpoint too.
    user = oidc.tokens(scopes=("openid",))["access_token"]
    assert oidc.revoke(user).status_code == 200
    r = userinfo(oidc, user)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"] == INVALID_TOKEN


def test_volatile_jwt_expires(volatile):
    oidc = volatile
    oidc.env.register("short-lived", access_token_lifetime=1)
    oidc.env.register("short-web", grant_types=CODE_GRANTS, scopes=("openid",), redirect_uris=(REDIRECT,),
                      access_token_lifetime=1)
    token = cc_token(oidc, "short-lived")["access_token"]
    user = oidc.redeem(oidc.code("short-web", scopes=("openid",)), "short-web")
    assert user.status_code == 200, user.get_data(as_text=True)
    assert user.json["expires_in"] == 1
    time.sleep(2.1)
    assert oidc.introspect(token, "client-1") == {"active": False}
    r = userinfo(oidc, user.json["access_token"])
    assert r.status_code == 401 and r.headers["WWW-Authenticate"] == INVALID_TOKEN


# --- forged tokens -------------------------------------------------------------------------------------------

def resign(private_key, header: dict, claims: dict) -> str:
    """A JWS signed here: python-jose for RS*, keystore.signing for PS*/EdDSA (support.sign)."""
    alg = header["alg"]
    return sign(private_key, claims, alg, {k: v for k, v in header.items() if k != "alg"})


def encode(value: dict) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def unsigned(header: dict, claims: dict) -> str:
    return f"{encode(header)}.{encode(claims)}."


FORGERIES = {
    # id -> (header, claims) -> token, given the genuine header and claims and the server's key.
    "genuine-resigned": None,  # the control: the server's own key, the server's own claims
    "other-key-same-kid": lambda h, c, k: resign(rsa_key(), h, c),
    "alg-none": lambda h, c, k: unsigned({**h, "alg": "none"}, c),
    "alg-HS256": lambda h, c, k: _hs256({**h, "alg": "HS256"}, c),
    "alg-PS256-same-key": lambda h, c, k: resign(k, {**h, "alg": "PS256"}, c),
    "typ-JWT": lambda h, c, k: resign(k, {**h, "typ": "JWT"}, c),
    "typ-missing": lambda h, c, k: _without_typ(k, h, c),
    "kid-unknown": lambda h, c, k: resign(k, {**h, "kid": "not-a-published-kid"}, c),
    "kid-missing": lambda h, c, k: resign(k, {"alg": h["alg"], "typ": h["typ"]}, c),
    "other-iss": lambda h, c, k: resign(k, h, {**c, "iss": "https://evil.example/oauth2/token"}),
    "expired": lambda h, c, k: resign(k, h, {**c, "exp": int(time.time()) - 1}),
    "exp-string": lambda h, c, k: resign(k, h, {**c, "exp": str(c["exp"])}),
    "client-id-missing": lambda h, c, k: resign(k, h, {k2: v for k2, v in c.items() if k2 != "client_id"}),
    "unknown-client": lambda h, c, k: resign(k, h, {**c, "client_id": "nobody"}),
    "claims-changed-signature-kept": lambda h, c, k: _swap_payload(resign(k, h, c), {**c, "scope": "openid profile"}),
}


def _hs256(header: dict, claims: dict) -> str:
    signing_input = unsigned(header, claims)[:-1]
    return signing_input + "." + b64url(hmac.new(b"secret", signing_input.encode(), hashlib.sha256).digest())


def _without_typ(private_key, header: dict, claims: dict) -> str:
    """python-jose adds typ JWT by itself: sign this one with cryptography directly."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    signing_input = f"{encode({'alg': header['alg'], 'kid': header['kid']})}.{encode(claims)}"
    signature = private_key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return signing_input + "." + b64url(signature)


def _swap_payload(token: str, claims: dict) -> str:
    head, _, signature = token.split(".")
    return f"{head}.{encode(claims)}.{signature}"


@pytest.mark.parametrize("forge", list(FORGERIES.values()), ids=list(FORGERIES))
def test_forged_jwt(volatile, forge):
    oidc = volatile
    genuine = oidc.tokens(scopes=("openid",))["access_token"]
    header, claims = parts(genuine)
    key = primary_private_key(oidc.env.tmp)
    if forge is None:
        token = resign(key, header, {**claims, "jti": claims["jti"] + "-2"})
        assert oidc.introspect(token, "client-1")["active"] is True
        assert userinfo(oidc, token).status_code == 200
        return
    token = forge(header, claims, key)
    assert oidc.introspect(token, "client-1") == {"active": False}
    r = userinfo(oidc, token)
    assert r.status_code == 401, r.get_data(as_text=True)
    assert r.json["error"] == "invalid_token" and r.headers["WWW-Authenticate"] == INVALID_TOKEN


# --- keys made by keytool ---------------------------------------------------------------------------------------

def token_config(alg: str, alias: str, extra: str = "") -> str:
    return JWT + f'signing_alg = "{alg}"\nsigning_key_alias = "{alias}"\n' + extra


@needs_keytool
@pytest.mark.parametrize("alg, alias", [("PS256", "rsa-extra"), ("EdDSA", "ed"), ("ES256", "tokens-b")])
def test_signing_key_alias(tmp_path, keystore_file, alg, alias):
    oidc = in_process(tmp_path, token_config(alg, alias), keystore_file)
    token = cc_token(oidc)["access_token"]
    published = jwks(oidc)
    header, claims = verified(token, published, alg)
    assert header == {"alg": alg, "typ": "at+jwt", "kid": kid_of(entry_public_key(keystore_file, alias))}
    assert claims["client_id"] == "client-1"
    assert oidc.introspect(token, "client-1")["active"] is True
    # ID tokens stay with the primary key and RS256 (OpenID Connect Core §15.1).
    id_token = oidc.tokens(scopes=("openid",))["id_token"]
    assert parts(id_token)[0]["alg"] == "RS256"
    assert parts(id_token)[0]["kid"] == kid_of(primary_private_key(oidc.env.tmp).public_key())


@needs_keytool
def test_jwks_lists_every_key_entry(tmp_path, keystore_file):
    oidc = in_process(tmp_path, token_config("ES256", "tokens-a"), keystore_file)
    published = jwks(oidc)["keys"]
    expected = {kid_of(primary_private_key(oidc.env.tmp).public_key()): "RS256"}
    for alias, (_, alg) in ENTRIES.items():
        expected[kid_of(entry_public_key(keystore_file, alias))] = alg
    assert {key["kid"]: key["alg"] for key in published} == expected
    for key in published:
        assert key["use"] == "sig"
        assert jwk_thumbprint(key) == key["kid"]
        assert not {"d", "p", "q", "dp", "dq", "qi", "k"} & set(key)


@needs_keytool
def test_new_key_entry_is_published_without_restart(tmp_path, keystore_file):
    """Rollover step one: a key entry added while the server runs is in /oauth2/jwks before any
    token is signed with it (the keystore is re-read when its file changes)."""
    oidc = in_process(tmp_path, token_config("ES256", "tokens-a"), keystore_file)
    keystore = oidc.env.tmp / "var" / "primary.p12"
    genkey(keystore, "tokens-c", "-keyalg", "EC", "-groupname", "secp256r1")
    kid_c = kid_of(entry_public_key(keystore, "tokens-c"))
    deadline = time.monotonic() + 10
    while kid_c not in {key["kid"] for key in jwks(oidc)["keys"]}:
        assert time.monotonic() < deadline, "the new key entry was never published"
        time.sleep(0.5)
    assert {key["kid"]: key["alg"] for key in jwks(oidc)["keys"]}[kid_c] == "ES256"
    # Tokens are still signed by tokens-a.
    header, _ = verified(cc_token(oidc)["access_token"], jwks(oidc), "ES256")
    assert header["kid"] == kid_of(entry_public_key(keystore, "tokens-a"))


@needs_keytool
def test_deleting_the_signing_entry_while_running_keeps_the_last_good_keys(tmp_path, keystore_file):
    """An operator's mistake (the entry in use deleted while the server runs) does not take
    /oauth2/jwks and the token endpoint down: the last good key set stays in use."""
    oidc = in_process(tmp_path, token_config("ES256", "tokens-a"), keystore_file)
    keystore = oidc.env.tmp / "var" / "primary.p12"
    kid_a = kid_of(entry_public_key(keystore, "tokens-a"))
    before = cc_token(oidc)["access_token"]
    keytool("-delete", "-alias", "tokens-a", *store_args(keystore))
    time.sleep(2.5)  # past core.services.KEYSTORE_RECHECK_SECONDS
    r = oidc.app.test_client().get("/oauth2/jwks")
    assert r.status_code == 200, r.get_data(as_text=True)
    assert kid_a in {key["kid"] for key in r.json["keys"]}
    assert oidc.introspect(before, "client-1")["active"] is True
    r = oidc.post("/oauth2/token", token_form(oidc.env.assertion("client-1")))
    assert r.status_code == 200, r.get_data(as_text=True)


# --- the real server: ES256, rollover ---------------------------------------------------------------------------

def register_in(directory: Path, client_id: str, key) -> None:
    """Write a client straight into a server's database (read per request: no restart)."""
    from storage import clients
    from storage.database import open_database
    db = open_database("sqlite:///var/identity.db", directory)
    try:
        clients.create(client_id, "private_key_jwt", grant_types=("client_credentials",), scopes=("read",),
                       jwks=jwks_of((key, "k1")))
    finally:
        db.close()


def over_https(server: Server, key, path: str = "/oauth2/token", **form):
    assertion = sign(key, claims_for("es-client", server.base + "/oauth2/token"), "RS256", {"kid": "k1"})
    return server.post(path, data=token_form(assertion, **form) if path == "/oauth2/token" else
                       {"client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion, **form})


@needs_keytool
def test_rollover_over_https(tmp_path, keystore_file):
    """ES256 tokens signed by tokens-a stay verifiable (JWKS, introspection) after signing_key_alias
    moves to tokens-b, as long as tokens-a stays in the keystore; not after it is deleted. With
    persist = false, so that nothing but the published key vouches for a token."""
    directory = tmp_path / "idp"
    place(keystore_file, directory)
    port = free_port()
    keystore = directory / "var" / "primary.p12"
    kid_a = kid_of(entry_public_key(keystore, "tokens-a"))
    kid_b = kid_of(entry_public_key(keystore, "tokens-b"))
    client_key = rsa_key()

    def configure(alias: str) -> Path:
        return write_config(directory, port, extra=token_config("ES256", alias, "persist = false\n"))

    server = Server(configure("tokens-a"), port).start()
    try:
        register_in(directory, "es-client", client_key)
        r = over_https(server, client_key)
        assert r.status_code == 200, r.text
        token_a = r.json()["access_token"]
        header, claims = verified(token_a, server.get("/oauth2/jwks").json(), "ES256")
        assert header == {"alg": "ES256", "typ": "at+jwt", "kid": kid_a}
        assert claims["iss"] == server.base + "/oauth2/token"

        server.stop()
        configure("tokens-b")
        server.start()
        token_b = over_https(server, client_key).json()["access_token"]
        published = server.get("/oauth2/jwks").json()
        assert verified(token_b, published, "ES256")[0]["kid"] == kid_b
        assert verified(token_a, published, "ES256")[0]["kid"] == kid_a
        for token in (token_a, token_b):
            described = over_https(server, client_key, "/oauth2/introspect", token=token).json()
            assert described["active"] is True and described["client_id"] == "es-client"

        server.stop()
        keytool("-delete", "-alias", "tokens-a", *store_args(keystore))
        server.start()
        published = server.get("/oauth2/jwks").json()
        assert kid_a not in {key["kid"] for key in published["keys"]}
        assert over_https(server, client_key, "/oauth2/introspect", token=token_a).json() == {"active": False}
        assert over_https(server, client_key, "/oauth2/introspect", token=token_b).json()["active"] is True
    finally:
        server.stop()


# --- start-up errors -----------------------------------------------------------------------------------------

STARTUP = {
    # case: ([oauth.token] lines, the line the message points at)
    "ES256-without-alias": ('signing_alg = "ES256"\n', 'signing_alg = "ES256"'),
    "alias-not-an-entry": ('signing_alg = "ES256"\nsigning_key_alias = "nosuch"\n', 'signing_key_alias = "nosuch"'),
    "alias-a-certificate-entry": ('signing_alg = "ES256"\nsigning_key_alias = "certonly"\n',
                                  'signing_key_alias = "certonly"'),
    "ES256-with-rsa-key": ('signing_alg = "ES256"\nsigning_key_alias = "rsa-extra"\n',
                           'signing_key_alias = "rsa-extra"'),
    "ES256-with-p384-key": ('signing_alg = "ES256"\nsigning_key_alias = "p384"\n', 'signing_key_alias = "p384"'),
    "ES256-with-ed25519-key": ('signing_alg = "ES256"\nsigning_key_alias = "ed"\n', 'signing_key_alias = "ed"'),
    "ES256-with-primary-key": ('signing_alg = "ES256"\nsigning_key_alias = "wso2carbon"\n',
                               'signing_key_alias = "wso2carbon"'),
    "PS256-with-primary-key": ('signing_alg = "PS256"\nsigning_key_alias = "wso2carbon"\n',
                               'signing_key_alias = "wso2carbon"'),
    "EdDSA-with-ec-key": ('signing_alg = "EdDSA"\nsigning_key_alias = "tokens-a"\n', 'signing_key_alias = "tokens-a"'),
    # RS256 is the primary key's; another RSA entry is published for PS256 (one alg per key).
    "RS256-with-alias": ('signing_alg = "RS256"\nsigning_key_alias = "rsa-extra"\n', 'signing_key_alias = "rsa-extra"'),
}


@pytest.fixture(scope="module")
def start_ups(tmp_path_factory, keystore_file):
    """Every case started at once: {case: (result, deployment.toml text)}."""
    base = tmp_path_factory.mktemp("jwt-startup")

    def start(case: str):
        directory = base / case
        place(keystore_file, directory)
        path = write_config(directory, free_port(), extra="[oauth.token]\n" + STARTUP[case][0])
        result = subprocess.run([PYTHON, str(ROOT / "app.py"), str(path)], cwd=ROOT, capture_output=True, text=True,
                                timeout=30)
        return case, (result, path.read_text())

    with ThreadPoolExecutor(4) as pool:
        return dict(pool.map(start, STARTUP))


@needs_keytool
@pytest.mark.parametrize("case", list(STARTUP))
def test_unusable_signing_key_stops_start_up(start_ups, case):
    result, text = start_ups[case]
    marker = STARTUP[case][1]
    line = next(n for n, content in enumerate(text.splitlines(), 1) if marker in content)
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"configuration error: deployment.toml:{line}: oauth.token."), lines[0]
    assert "signing_key_alias" in lines[0]
    assert "Traceback" not in result.stderr
