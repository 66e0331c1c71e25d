"""The private_key_jwt checks and the token response, each rule with its exact answer.

These run build_app() in-process on a real SQLite file and keystore (fast); the same paths
over HTTPS under gunicorn are covered by test_server.py."""

from __future__ import annotations

import json
import time
from urllib.parse import urlencode

import pytest
from werkzeug.test import EnvironBuilder

from support import ASSERTION_TYPE, assert_oauth_error, claims_for, ec_key, ed_key, jwks_of, rsa_key, token_form
from cryptography.hazmat.primitives.asymmetric import ec


def test_client_credentials_success_shape(idp):
    r = idp.token(idp.assertion(), scope="openid")
    assert r.status_code == 200, r.text
    body = r.json
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600 and body["scope"] == "openid"
    assert r.headers["Cache-Control"] == "no-store" and r.headers["Pragma"] == "no-cache"
    assert r.headers["Content-Type"] == "application/json"


def test_access_token_stored_hashed(idp):
    import hashlib
    from storage.models import AccessToken
    token = idp.token(idp.assertion()).json["access_token"]
    with idp.app.app_context():
        rows = list(AccessToken.select())
    assert len(rows) == 1
    assert rows[0].token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in (rows[0].token_hash, rows[0].scope, rows[0].client_id)
    assert rows[0].client_id == "client-1" and rows[0].expires_at - rows[0].issued_at == 3600


def test_no_scope_grants_registered_scopes(idp):
    assert idp.token(idp.assertion()).json["scope"] == "openid read"


def test_unregistered_scope_is_invalid_scope(idp):
    assert_oauth_error(idp.token(idp.assertion(), scope="openid admin"), 400, "invalid_scope")


def test_malformed_scope_is_invalid_request(idp):
    assert_oauth_error(idp.token(idp.assertion(), scope='read "x"'), 400, "invalid_request")


def test_grant_not_registered_is_unauthorized_client(idp):
    idp.register("cc-less", grant_types=("authorization_code",))
    assert_oauth_error(idp.token(idp.assertion("cc-less")), 400, "unauthorized_client")


def test_unknown_grant_type_does_not_burn_jti(idp):
    a = idp.assertion()
    assert_oauth_error(idp.post({**token_form(a), "grant_type": "password"}), 400, "unsupported_grant_type")
    assert idp.token(a).status_code == 200


def test_missing_grant_type(idp):
    form = token_form(idp.assertion())
    del form["grant_type"]
    assert_oauth_error(idp.post(form), 400, "invalid_request")


# --- replay ------------------------------------------------------------------------------------

def test_replay_is_refused(idp):
    a = idp.assertion()
    assert idp.token(a).status_code == 200
    body = assert_oauth_error(idp.token(a), 401, "invalid_client")
    assert "replay" in body["error_description"]


def test_replay_resigned_with_same_jti(idp):
    claims = {"jti": "same-jti"}
    assert idp.token(idp.assertion(**claims)).status_code == 200
    assert_oauth_error(idp.token(idp.assertion(**claims)), 401, "invalid_client")


def test_same_jti_for_two_clients_is_allowed(idp):
    other = rsa_key()
    idp.register("client-2", keys=[(other, "k1")])
    assert idp.token(idp.assertion(jti="shared")).status_code == 200
    assert idp.token(idp.assertion("client-2", key=other, jti="shared")).status_code == 200


def test_forged_signature_does_not_burn_jti(idp):
    forged = idp.assertion(key=rsa_key(), jti="victim")
    assert_oauth_error(idp.token(forged), 401, "invalid_client")
    assert idp.token(idp.assertion(jti="victim")).status_code == 200


def test_failed_claim_does_not_burn_jti(idp):
    assert_oauth_error(idp.token(idp.assertion(jti="j2", aud="https://elsewhere/")), 401, "invalid_client")
    assert idp.token(idp.assertion(jti="j2")).status_code == 200


def test_expired_record_may_be_reused_after_exp(idp):
    from storage.models import JTI
    assert idp.token(idp.assertion(jti="again")).status_code == 200
    with idp.app.app_context():
        JTI.update(exp_time=int(time.time()) - 1).execute()
        idp.app.extensions["idp"].services.replay.cache._items.clear()
    assert idp.token(idp.assertion(jti="again")).status_code == 200


def test_reuse_allowed_when_prevent_token_reuse_false(make_idp):
    env = make_idp(pkjwt={"PreventTokenReuse": False})
    env.register()
    a = env.assertion()
    assert env.token(a).status_code == 200
    assert env.token(a).status_code == 200
    from storage.models import JTI
    with env.app.app_context():
        assert JTI.select().count() == 1


def test_per_client_override_prevent(make_idp):
    env = make_idp(pkjwt={"PreventTokenReuse": "false"})
    env.register(token_reuse="prevent")
    a = env.assertion()
    assert env.token(a).status_code == 200
    assert_oauth_error(env.token(a), 401, "invalid_client")


def test_per_client_override_allow(idp):
    idp.register("reuser", token_reuse="allow")
    a = idp.assertion("reuser")
    assert idp.token(a).status_code == 200
    assert idp.token(a).status_code == 200


def test_replay_refused_by_database_without_cache(idp):
    a = idp.assertion()
    assert idp.token(a).status_code == 200
    idp.app.extensions["idp"].services.replay.cache._items.clear()
    assert_oauth_error(idp.token(a), 401, "invalid_client")


# --- claims --------------------------------------------------------------------------------------

@pytest.mark.parametrize("claim", ["iss", "sub", "aud", "exp", "jti"])
def test_required_claim_missing(idp, claim):
    assert_oauth_error(idp.token(idp.assertion(**{claim: ...})), 401, "invalid_client")


@pytest.mark.parametrize("claim,value", [
    ("exp", "9999999999"), ("exp", True), ("exp", None), ("exp", [1]), ("exp", 1e30), ("exp", 10**30),
    ("exp", 10**400), ("exp", -1), ("iat", -(10**400)), ("nbf", 10**30),
    ("iat", "1"), ("iat", False), ("nbf", {"a": 1}), ("jti", 5), ("jti", ""), ("jti", "x" * 256),
    ("jti", "a\x00b"), ("sub", 5), ("iss", ["client-1"]), ("aud", 5),
])
def test_claim_wrong_type(idp, claim, value):
    assert_oauth_error(idp.token(idp.assertion(**{claim: value})), 401, "invalid_client")


def test_iss_differs_from_sub(idp):
    assert_oauth_error(idp.token(idp.assertion(iss="client-2")), 401, "invalid_client")


def test_client_id_parameter_must_match(idp):
    a = idp.assertion()
    assert_oauth_error(idp.token(a, client_id="client-2"), 401, "invalid_client")
    assert idp.token(a, client_id="client-1").status_code == 200


def test_unknown_client(idp):
    assert_oauth_error(idp.token(idp.assertion("nobody")), 401, "invalid_client")


def test_client_registered_for_other_method(idp):
    idp.register("secret-client", auth_method="client_secret_basic")
    assert_oauth_error(idp.token(idp.assertion("secret-client")), 401, "invalid_client")


def test_jti_of_255_characters_is_accepted(idp):
    assert idp.token(idp.assertion(jti="j" * 255)).status_code == 200


def test_expired(idp):
    now = int(time.time())
    assert_oauth_error(idp.token(idp.assertion(exp=now - 31, iat=now - 100)), 401, "invalid_client")


def test_expired_within_skew_is_accepted(idp):
    now = int(time.time())
    assert idp.token(idp.assertion(exp=now - 20, iat=now - 100)).status_code == 200


def test_lifetime_of_exactly_one_hour_is_accepted(idp):
    now = int(time.time())
    assert idp.token(idp.assertion(iat=now, exp=now + 3600)).status_code == 200


def test_lifetime_beyond_cap(idp):
    now = int(time.time())
    assert_oauth_error(idp.token(idp.assertion(iat=now, exp=now + 3600 + 31 + 5)), 401, "invalid_client")


def test_fractional_exp_is_accepted(idp):
    assert idp.token(idp.assertion(exp=time.time() + 120.5)).status_code == 200


def test_future_iat_beyond_skew(idp):
    now = int(time.time())
    assert_oauth_error(idp.token(idp.assertion(iat=now + 120, exp=now + 300)), 401, "invalid_client")


def test_future_iat_within_skew(idp):
    now = int(time.time())
    assert idp.token(idp.assertion(iat=now + 20, exp=now + 300)).status_code == 200


def test_future_nbf(idp):
    now = int(time.time())
    assert_oauth_error(idp.token(idp.assertion(nbf=now + 120)), 401, "invalid_client")


def test_nbf_after_exp(idp):
    now = int(time.time())
    assert_oauth_error(idp.token(idp.assertion(nbf=now + 10, exp=now + 5)), 401, "invalid_client")


def test_missing_iat_and_nbf_is_accepted(idp):
    assert idp.token(idp.assertion(iat=...)).status_code == 200


def test_reject_before_in_minutes(make_idp):
    env = make_idp(pkjwt={"RejectBeforeInMinutes": "10", "MaxLifetimeInMinutes": 60})
    env.register()
    now = int(time.time())
    assert_oauth_error(env.token(env.assertion(iat=now - 11 * 60, exp=now + 60)), 401, "invalid_client")
    assert env.token(env.assertion(iat=now - 9 * 60, exp=now + 60)).status_code == 200


def test_reject_before_disabled_with_zero(make_idp):
    env = make_idp(pkjwt={"RejectBeforeInMinutes": 0})
    env.register()
    now = int(time.time())
    assert env.token(env.assertion(iat=now - 86400 * 30, exp=now + 60)).status_code == 200


@pytest.mark.parametrize("typ,ok", [
    ("JWT", True), ("jwt", True), ("application/jwt", True), ("client-authentication+jwt", True),
    ("application/client-authentication+jwt", True), ("at+jwt", False), ("JOSE", False), (5, False),
])
def test_typ_header(idp, typ, ok):
    r = idp.token(idp.assertion(headers={"typ": typ}))
    if ok:
        assert r.status_code == 200, r.json
    else:
        assert_oauth_error(r, 401, "invalid_client")


def test_extra_unknown_claims_are_ignored(idp):
    assert idp.token(idp.assertion(foo={"bar": [1, 2]}, scope="x")).status_code == 200


# --- audience ----------------------------------------------------------------------------------

@pytest.mark.parametrize("aud", [
    "https://localhost:9443/oauth2/token/", "HTTPS://localhost:9443/oauth2/token", "https://localhost:443/oauth2/token",
    "https://localhost:9443/oauth2/token#x", "https://localhost:9443/oauth2/token.evil.com",
    "https://localhost:9443", "https://localhost:9443/oauth2/authorize",
])
def test_strict_audience_near_misses(idp, aud):
    assert_oauth_error(idp.token(idp.assertion(aud=aud)), 401, "invalid_client")


def test_strict_audience_refuses_arrays(idp):
    assert_oauth_error(idp.token(idp.assertion(aud=[idp.issuer])), 401, "invalid_client")
    assert_oauth_error(idp.token(idp.assertion(aud=[idp.issuer, "https://evil/"])), 401, "invalid_client")


def test_strict_single_element_array_when_allowed(make_idp):
    env = make_idp(pkjwt={"AllowSingleElementAudienceArray": True})
    env.register()
    assert env.token(env.assertion(aud=[env.issuer])).status_code == 200
    assert_oauth_error(env.token(env.assertion(aud=[env.issuer, "https://evil/"])), 401, "invalid_client")


def test_token_endpoint_alias(make_idp):
    env = make_idp(pkjwt={"TokenEndpointAlias": "sampleurl"})
    env.register()
    assert env.token(env.assertion(aud="sampleurl")).status_code == 200
    assert_oauth_error(env.token(env.assertion(aud="sampleurl2")), 401, "invalid_client")


def test_legacy_policy_accepts_arrays_with_token_endpoint(make_idp):
    env = make_idp(pkjwt={"AudiencePolicy": "legacy"}, extra='[oauth.oidc.id_token]\nissuer = "https://idp.example.com"\n')
    env.register()
    assert env.issuer == "https://idp.example.com"
    assert env.token(env.assertion(aud=["https://other.example", "https://localhost:9443/oauth2/token"])).status_code == 200
    assert env.token(env.assertion(aud="https://idp.example.com")).status_code == 200
    assert_oauth_error(env.token(env.assertion(aud=["https://other.example"])), 401, "invalid_client")
    assert_oauth_error(env.token(env.assertion(aud=[])), 401, "invalid_client")


def test_strict_policy_with_custom_issuer_refuses_token_endpoint(make_idp):
    env = make_idp(extra='[oauth.oidc.id_token]\nissuer = "https://idp.example.com"\n')
    env.register()
    assert env.token(env.assertion(aud="https://idp.example.com")).status_code == 200
    assert_oauth_error(env.token(env.assertion(aud="https://localhost:9443/oauth2/token")), 401, "invalid_client")


def test_legacy_never_trusts_host_header(make_idp):
    env = make_idp(pkjwt={"AudiencePolicy": "legacy"})
    env.register()
    a = env.assertion(aud="https://evil.example/oauth2/token")
    assert_oauth_error(env.post(token_form(a), headers={"Host": "evil.example"}), 401, "invalid_client")


def test_per_client_audience_policy(idp):
    idp.register("legacy-client", audience_policy="legacy")
    assert idp.token(idp.assertion("legacy-client", aud=[idp.issuer, "x"])).status_code == 200


def _typ_refused(env, response, client_id: str) -> None:
    from handlers import failure_log
    body = assert_oauth_error(response, 401, "invalid_client")
    assert body["error_description"] == "The typ header must be client-authentication+jwt"
    with env.app.app_context():
        assert failure_log.recent(client_id)[0].reason == "typ"


def test_per_client_require_explicit_typ_under_a_server_without_it(idp):
    """A client of its own requiring explicit typing (RFC 7523bis) while RequireExplicitTyp is false."""
    idp.register("typed", require_explicit_typ=True)
    _typ_refused(idp, idp.token(idp.assertion("typed")), "typed")
    _typ_refused(idp, idp.token(idp.assertion("typed", headers={"typ": "JWT"})), "typed")
    _typ_refused(idp, idp.token(idp.assertion("typed", headers={"typ": "application/jwt"})), "typed")
    for typ in ("client-authentication+jwt", "application/client-authentication+jwt"):
        assert idp.token(idp.assertion("typed", headers={"typ": typ})).status_code == 200
    # The server's setting still decides for the others.
    idp.register("untyped")
    assert idp.token(idp.assertion("untyped")).status_code == 200
    assert idp.token(idp.assertion("untyped", headers={"typ": "JWT"})).status_code == 200


def test_per_client_explicit_typ_false_under_a_server_requiring_it(make_idp):
    """Looser than the server, like a client's audience_policy legacy under a strict server."""
    env = make_idp(pkjwt={"RequireExplicitTyp": True})
    env.register()
    _typ_refused(env, env.token(env.assertion()), "client-1")
    _typ_refused(env, env.token(env.assertion(headers={"typ": "JWT"})), "client-1")
    env.register("relaxed", require_explicit_typ=False)
    assert env.token(env.assertion("relaxed")).status_code == 200
    assert env.token(env.assertion("relaxed", headers={"typ": "JWT"})).status_code == 200
    assert env.token(env.assertion("relaxed", headers={"typ": "client-authentication+jwt"})).status_code == 200
    # Only the requirement is relaxed: a typ that is neither stays refused.
    body = assert_oauth_error(env.token(env.assertion("relaxed", headers={"typ": "at+jwt"})), 401, "invalid_client")
    assert body["error_description"] == "The typ header must be JWT or client-authentication+jwt"


@pytest.mark.parametrize("option,value", [("--require-explicit-typ", True), ("--no-require-explicit-typ", False),
                                          (None, None)])
def test_clients_create_require_explicit_typ(idp, tmp_path, option, value):
    """`flask clients create --require-explicit-typ / --no-require-explicit-typ`; neither: the server's."""
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(jwks_of((idp.key, "k1")))
    args = ["clients", "create", "--client-id", "cli-typed", "--auth-method", "private_key_jwt",
            "--jwks-file", str(jwks_file), *([option] if option else [])]
    result = idp.app.test_cli_runner().invoke(args=args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["require_explicit_typ"] is value
    shown = idp.app.test_cli_runner().invoke(args=["clients", "show", "cli-typed"])
    assert json.loads(shown.stdout)["require_explicit_typ"] is value
    untyped = idp.token(idp.assertion("cli-typed"))
    if value:
        assert_oauth_error(untyped, 401, "invalid_client")
    else:
        assert untyped.status_code == 200, untyped.json
    assert idp.token(idp.assertion("cli-typed", headers={"typ": "client-authentication+jwt"})).status_code == 200


# --- algorithms and keys -----------------------------------------------------------------------

@pytest.mark.parametrize("alg,maker", [
    ("RS256", rsa_key), ("RS384", rsa_key), ("RS512", rsa_key), ("PS256", rsa_key), ("PS384", rsa_key),
    ("PS512", rsa_key), ("ES256", lambda: ec_key(ec.SECP256R1)), ("ES384", lambda: ec_key(ec.SECP384R1)),
    ("ES512", lambda: ec_key(ec.SECP521R1)), ("EdDSA", ed_key), ("Ed25519", ed_key),
])
def test_every_algorithm(idp, alg, maker):
    key = maker()
    idp.register("alg-client", keys=[(key, "k1")])
    assert idp.token(idp.assertion("alg-client", key=key, alg=alg)).status_code == 200


def test_es256_header_with_p384_key(idp):
    key = ec_key(ec.SECP384R1)
    idp.register("p384", keys=[(key, "k1")])
    from keystore.signing import sign as raw_sign
    # An ES384 signature presented as ES256: the key does not fit the header's algorithm.
    a = raw_sign(key, "ES384", claims_for("p384", idp.issuer), {"kid": "k1"})
    import base64, json
    head, rest = a.split(".", 1)
    forged = base64.urlsafe_b64encode(json.dumps({"alg": "ES256", "kid": "k1", "typ": "JWT"}).encode()).rstrip(b"=").decode()
    assert_oauth_error(idp.token(forged + "." + rest), 401, "invalid_client")


def test_pinned_algorithm(idp):
    idp.register("pinned", signing_alg="PS256")
    assert_oauth_error(idp.token(idp.assertion("pinned", alg="RS256")), 401, "invalid_client")
    assert idp.token(idp.assertion("pinned", alg="PS256")).status_code == 200


def test_algorithm_allow_list_property(make_idp):
    env = make_idp(pkjwt={"SigningAlgorithms": "PS256, ES256"})
    env.register()
    assert_oauth_error(env.token(env.assertion(alg="RS256")), 401, "invalid_client")
    assert env.token(env.assertion(alg="PS256")).status_code == 200


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE", "HS256", "HS384", "HS512", "RS1", "rs256", "ES256K"])
def test_refused_algorithms(idp, alg):
    import base64, json
    a = idp.assertion()
    _, payload, sig = a.split(".")
    head = base64.urlsafe_b64encode(json.dumps({"alg": alg, "kid": "k1"}).encode()).rstrip(b"=").decode()
    assert_oauth_error(idp.token(f"{head}.{payload}.{sig}"), 401, "invalid_client")


def test_hs256_keyed_with_public_key_pem(idp):
    import hashlib, hmac, base64, json
    from cryptography.hazmat.primitives import serialization
    public_pem = idp.key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    enc = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    signing_input = enc(json.dumps({"alg": "HS256", "kid": "k1"}).encode()) + "." + enc(json.dumps(claims_for("client-1", idp.issuer)).encode())
    sig = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    assert_oauth_error(idp.token(signing_input + "." + enc(sig)), 401, "invalid_client")


def test_unknown_kid(idp):
    assert_oauth_error(idp.token(idp.assertion(headers={"kid": "k2"})), 401, "invalid_client")


def test_no_kid_tries_fitting_keys(idp):
    other = rsa_key()
    idp.register("two-keys", keys=[(other, "a"), (idp.key, "b")])
    assert idp.token(idp.assertion("two-keys", headers={"kid": ...})).status_code == 200


def test_another_clients_key(idp):
    other = rsa_key()
    idp.register("client-2", keys=[(other, "k1")])
    assert_oauth_error(idp.token(idp.assertion("client-1", key=other)), 401, "invalid_client")


def test_enc_key_is_not_used(idp):
    import json
    jwks = json.loads(jwks_of((idp.key, "k1")))
    jwks["keys"][0]["use"] = "enc"
    idp.register("enc-only", jwks=json.dumps(jwks))
    assert_oauth_error(idp.token(idp.assertion("enc-only")), 401, "invalid_client")


def test_key_from_jwk_header_is_never_used(idp):
    from keystore.jwk import PublicKey
    attacker = rsa_key()
    jwk = {**PublicKey.from_cryptography(attacker.public_key()).to_jwk(), "kid": "k1"}
    a = idp.assertion(key=attacker, headers={"jwk": jwk})
    assert_oauth_error(idp.token(a), 401, "invalid_client")


def test_tampered_payload(idp):
    import base64, json
    a = idp.assertion()
    head, payload, sig = a.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["scope"] = "admin"
    new = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    assert_oauth_error(idp.token(f"{head}.{new}.{sig}"), 401, "invalid_client")


@pytest.mark.parametrize("mutate", [
    lambda s: s[:-10], lambda s: "", lambda s: "AAAA" * 86, lambda s: s + "=", lambda s: s[:-1] + ("A" if s[-1] != "A" else "B"),
])
def test_bad_signatures(idp, mutate):
    head, payload, sig = idp.assertion().split(".")
    assert_oauth_error(idp.token(f"{head}.{payload}.{mutate(sig)}"), 401, "invalid_client")


@pytest.mark.parametrize("assertion,error,status", [
    ("abc", "invalid_client", 401), ("a.b", "invalid_client", 401), ("a.b.c.d.e", "invalid_client", 401),
    ('{"payload":"x","signatures":[]}', "invalid_client", 401),
])
def test_structurally_broken_assertions(idp, assertion, error, status):
    assert_oauth_error(idp.token(assertion), status, error)


def test_duplicate_claim_names(idp):
    import base64
    enc = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    good = idp.assertion()
    head = good.split(".")[0]
    now = int(time.time())
    payload = ('{"iss":"client-1","sub":"client-1","aud":"%s","jti":"d1","exp":%d,"exp":%d}'
               % (idp.issuer, now - 1000, now + 100)).encode()
    from cryptography.hazmat.primitives.asymmetric import padding
    from cryptography.hazmat.primitives import hashes
    signing_input = (head + "." + enc(payload)).encode()
    sig = idp.key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    assert_oauth_error(idp.token(signing_input.decode() + "." + enc(sig)), 401, "invalid_client")


# --- request shape -----------------------------------------------------------------------------

def test_wrong_assertion_type(idp):
    assert_oauth_error(idp.post({**token_form(idp.assertion()), "client_assertion_type": "urn:x"}), 400, "invalid_request")


def test_assertion_type_without_assertion(idp):
    assert_oauth_error(idp.post({"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE}),
                       400, "invalid_request")


def test_assertion_without_type(idp):
    assert_oauth_error(idp.post({"grant_type": "client_credentials", "client_assertion": idp.assertion()}),
                       400, "invalid_request")


def test_no_credentials(idp):
    assert_oauth_error(idp.post({"grant_type": "client_credentials", "client_id": "client-1"}), 401, "invalid_client")


def test_two_methods_basic_and_assertion(idp):
    r = idp.post(token_form(idp.assertion()), headers={"Authorization": "Basic Y2xpZW50LTE6eA=="})
    assert_oauth_error(r, 400, "invalid_request")


def test_two_methods_secret_and_assertion(idp):
    assert_oauth_error(idp.post(token_form(idp.assertion(), client_secret="x", client_id="client-1")), 400, "invalid_request")


def test_duplicate_parameter(idp):
    a = idp.assertion()
    body = f"grant_type=client_credentials&grant_type=client_credentials&client_assertion_type={ASSERTION_TYPE}&client_assertion={a}"
    assert_oauth_error(idp.post(body), 400, "invalid_request")


@pytest.mark.parametrize("content_type", ["application/json", "text/plain", "multipart/form-data; boundary=x", ""])
def test_wrong_media_type(idp, content_type):
    assert_oauth_error(idp.post("grant_type=client_credentials", content_type=content_type), 400, "invalid_request")


@pytest.mark.parametrize("content_type", [
    "application/x-www-form-urlencoded;charset=UTF-8", "application/x-www-form-urlencoded;charset=ISO-8859-1",
    "Application/X-WWW-Form-Urlencoded",
])
def test_charset_parameter_accepted(idp, content_type):
    assert idp.post(token_form(idp.assertion()), content_type=content_type).status_code == 200


@pytest.mark.parametrize("body", [b"grant_type=%FF", b"grant_type=\xff\xfe", b"grant_type=%ZZ", b"grant_type=%C3%28"])
def test_invalid_encodings(idp, body):
    assert_oauth_error(idp.post(body), 400, "invalid_request")


def test_parameters_in_query_string(idp):
    client = idp.app.test_client()
    r = client.post("/oauth2/token?grant_type=client_credentials", data=token_form(idp.assertion()),
                    content_type="application/x-www-form-urlencoded")
    assert_oauth_error(r, 400, "invalid_request")


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_other_methods(idp, method):
    r = idp.app.test_client().open("/oauth2/token", method=method)
    assert_oauth_error(r, 405, "invalid_request")
    assert r.headers["Allow"] == "POST"


def test_oversized_body(idp):
    r = idp.post(b"grant_type=" + b"a" * (70 * 1024))
    assert_oauth_error(r, 413, "invalid_request")


def test_unknown_parameters_are_ignored(idp):
    r = idp.token(idp.assertion(), scope="openid", redirect_uri="http://localhost:8080/playground2/oauth2client", foo="bar")
    assert r.status_code == 200


def test_empty_value_is_treated_as_omitted(idp):
    assert idp.token(idp.assertion(), scope="").json["scope"] == "openid read"


# --- rate limiting of failed authentications ---------------------------------------------------

ATTACKER = {"REMOTE_ADDR": "203.0.113.66"}


def _forged(env, client_id="client-1"):
    return token_form(env.assertion(client_id, key=rsa_key()))


def test_failures_per_client_address_are_limited_and_never_refuse_the_key_holder(make_idp):
    env = make_idp(rate_limit={"failures_per_client_address": 3, "window": 60})
    env.register()
    env.register("other")
    for _ in range(3):
        assert_oauth_error(env.post(_forged(env), environ_base=ATTACKER), 401, "invalid_client")
    r = env.post(_forged(env), environ_base=ATTACKER)
    assert_oauth_error(r, 429, "invalid_client")
    assert 59 <= int(r.headers["Retry-After"]) <= 60 and r.headers["Cache-Control"] == "no-store"
    # The holder of the key is served, from the attacker's address too, and so is another client.
    assert env.post(token_form(env.assertion()), environ_base=ATTACKER).status_code == 200
    assert env.token(env.assertion()).status_code == 200
    assert env.post(token_form(env.assertion("other")), environ_base=ATTACKER).status_code == 200
    # The victim's own failures, from its own address, are still its own to make.
    assert_oauth_error(env.token(env.assertion(key=rsa_key())), 401, "invalid_client")


def test_failures_per_address_are_limited(make_idp):
    env = make_idp(rate_limit={"failures_per_address": 2, "window": 60})
    env.register()
    for client_id in ("nobody-1", "nobody-2"):
        assert_oauth_error(env.post(token_form(env.assertion(client_id)), environ_base=ATTACKER), 401,
                           "invalid_client")
    r = env.post(token_form(env.assertion("nobody-3")), environ_base=ATTACKER)
    assert_oauth_error(r, 429, "invalid_client")
    assert "Retry-After" in r.headers
    # A failure of any kind from that address is now 429, also one that fails before naming a client.
    assert env.post({"grant_type": "client_credentials"}, environ_base=ATTACKER).status_code == 429
    assert env.post(token_form(env.assertion()), environ_base=ATTACKER).status_code == 200
    assert_oauth_error(env.token(env.assertion("nobody-1")), 401, "invalid_client")  # another address


def test_a_client_id_over_its_budget_answers_failures_cheaply_and_serves_valid_assertions(make_idp):
    """Forgeries from many addresses put the client id over its budget: a failing attempt from a
    new address gets 429 and is not written to the failure log; the client's assertion is served."""
    from handlers import failure_log
    env = make_idp(rate_limit={"failures_per_client": 3, "window": 60})
    env.register()
    for n in range(3):
        assert_oauth_error(env.post(_forged(env), environ_base={"REMOTE_ADDR": f"198.51.100.{n}"}), 401,
                           "invalid_client")
    r = env.post(_forged(env), environ_base={"REMOTE_ADDR": "198.51.100.99"})
    assert_oauth_error(r, 429, "invalid_client")
    assert 59 <= int(r.headers["Retry-After"]) <= 60
    with env.app.app_context():
        assert [f.remote_addr for f in failure_log.recent("client-1")] == [f"198.51.100.{n}" for n in (2, 1, 0)]
    assert env.token(env.assertion()).status_code == 200


def test_replays_count_against_the_address_that_sends_them(make_idp):
    env = make_idp(rate_limit={"failures_per_address": 2, "failures_per_client_address": 2,
                               "failures_per_client": 2, "window": 60})
    env.register()
    captured = env.assertion(jti="captured")
    assert env.token(captured).status_code == 200
    for _ in range(2):
        assert_oauth_error(env.post(token_form(captured), environ_base=ATTACKER), 401, "invalid_client")
    assert_oauth_error(env.post(token_form(captured), environ_base=ATTACKER), 429, "invalid_client")
    # The client id is over its budget now, which makes failures cheap, not valid requests fail.
    assert env.token(env.assertion()).status_code == 200
    assert_oauth_error(env.token(env.assertion(key=rsa_key())), 429, "invalid_client")


def test_malformed_requests_do_not_count(make_idp):
    env = make_idp(rate_limit={"failures_per_client_address": 1, "failures_per_address": 1, "window": 60})
    env.register()
    for _ in range(5):
        assert_oauth_error(env.post({"grant_type": "client_credentials", "client_assertion": "x"}), 400,
                           "invalid_request")
    assert_oauth_error(env.token(env.assertion(key=rsa_key())), 401, "invalid_client")


def test_window_expires():
    from core.ratelimit import FailureLimiter, MemoryCounters
    clock = [100.0]
    limiter = FailureLimiter({"client_address": 2}, window=10)
    limiter.counters = MemoryCounters(10, clock=lambda: clock[0])
    assert limiter.client_failed("192.0.2.1", "c") is None
    clock[0] = 101
    assert limiter.client_failed("192.0.2.1", "c") is None
    clock[0] = 105
    assert limiter.client_retry("192.0.2.1", "c") == 5       # the window started at 100
    assert limiter.client_failed("192.0.2.1", "c") == 5      # beyond the budget
    assert limiter.client_retry("192.0.2.2", "c") is None    # another address
    clock[0] = 110.5
    assert limiter.client_retry("192.0.2.1", "c") is None    # a new window
    assert limiter.client_failed("192.0.2.1", "c") is None
    assert limiter.client_retry("192.0.2.1") is None         # 0 disables the address budget


def test_failure_table_stays_small_whatever_the_keys():
    """Huge client ids are stored as digests, and entries whose window passed are dropped."""
    from core.ratelimit import FailureLimiter, MemoryCounters
    clock = [100.0]
    limiter = FailureLimiter({"client": 2}, window=10)
    limiter.counters = counters = MemoryCounters(10, capacity=1000, clock=lambda: clock[0])
    huge = "x" * 60_000
    limiter.client_failed("", huge)
    clock[0] = 101
    limiter.client_failed("", huge)
    clock[0] = 102
    assert limiter.client_retry("", huge) == 8     # still counted, under its digest
    assert all(len(key) <= 71 for _, key in counters._counts)
    for i in range(500):
        clock[0] = 200 + i * 0.01
        limiter.client_failed("", f"id-{i}")
    assert len(counters._counts) == 500           # the huge id's window passed: dropped
    clock[0] = 300
    limiter.client_failed("", "late")
    assert list(counters._counts) == [("client", "late")]


# --- review findings ---------------------------------------------------------------------------

@pytest.mark.parametrize("jti", ["j\n", "j" * 255 + "\n", "\n"])
def test_jti_with_trailing_newline(idp, jti):
    assert_oauth_error(idp.token(idp.assertion(jti=jti)), 401, "invalid_client")


def test_sub_with_trailing_newline(idp):
    assert_oauth_error(idp.token(idp.assertion(sub="client-1\n", iss="client-1\n")), 401, "invalid_client")


def test_client_ids_differing_only_in_case_are_refused(idp):
    with pytest.raises(ValueError):
        idp.register("CLIENT-1")


def test_deleting_a_client_revokes_its_tokens(idp):
    from storage import clients
    token = idp.token(idp.assertion()).json["access_token"]
    services = idp.app.extensions["idp"].services
    with idp.app.app_context():
        assert services.access_tokens.active(token) is not None
        clients.delete("client-1")
        assert services.access_tokens.active(token) is None


def test_reuse_record_keeps_the_later_expiry(make_idp):
    from storage.models import JTI
    env = make_idp(pkjwt={"PreventTokenReuse": False})
    env.register()
    now = int(time.time())
    assert env.token(env.assertion(jti="r", exp=now + 300)).status_code == 200
    assert env.token(env.assertion(jti="r", exp=now + 60)).status_code == 200
    with env.app.app_context():
        assert JTI.get().exp_time == now + 300 + 30


def test_trusted_proxy_forwarded_address(make_idp):
    env = make_idp(rate_limit={"failures_per_address": 1, "window": 60},
                   server_extra='trusted_proxies = ["10.0.0.1"]')
    env.register()
    proxy = {"REMOTE_ADDR": "10.0.0.1"}
    bad = token_form(env.assertion("nobody"))
    r = env.post(bad, headers={"X-Forwarded-For": "203.0.113.9, 10.0.0.1"}, environ_base=proxy)
    assert r.status_code == 401
    # The attacker's address is limited, not the proxy's: another caller behind it still gets 401.
    assert env.post(bad, headers={"X-Forwarded-For": "198.51.100.4"}, environ_base=proxy).status_code == 401
    assert env.post(bad, headers={"X-Forwarded-For": "203.0.113.9"}, environ_base=proxy).status_code == 429
    # An untrusted peer cannot choose its address with the header.
    assert env.post(bad, headers={"X-Forwarded-For": "198.51.100.7"},
                    environ_base={"REMOTE_ADDR": "203.0.113.9"}).status_code == 429
    assert env.post(token_form(env.assertion()), headers={"X-Forwarded-For": "203.0.113.9"},
                    environ_base=proxy).status_code == 200


def test_forwarded_addresses_are_counted_in_one_spelling(make_idp):
    """Two spellings of one IPv6 address share a budget; a hop that is no address at all leaves
    the proxy's own (never a key the sender chose)."""
    env = make_idp(rate_limit={"failures_per_address": 1, "window": 60},
                   server_extra='trusted_proxies = ["10.0.0.1"]')
    proxy = {"REMOTE_ADDR": "10.0.0.1"}
    bad = token_form(env.assertion("nobody"))
    assert env.post(bad, headers={"X-Forwarded-For": "2001:db8::1"}, environ_base=proxy).status_code == 401
    assert env.post(bad, headers={"X-Forwarded-For": "2001:DB8:0::0:1"}, environ_base=proxy).status_code == 429
    assert env.post(bad, headers={"X-Forwarded-For": "x y"}, environ_base=proxy).status_code == 401
    assert env.post(bad, headers={"X-Forwarded-For": "10.0.0.1"}, environ_base=proxy).status_code == 429


def test_a_trusted_proxy_is_recognised_however_its_address_is_spelled(make_idp):
    """A dual-stack listener reports an IPv4 proxy as ::ffff:10.0.0.1, and an IPv6 proxy may be
    written another way in deployment.toml: both are the trusted proxy, so the client behind it
    is counted, not the proxy; and an IPv4 client over IPv6 shares its IPv4 address's budget."""
    env = make_idp(rate_limit={"failures_per_address": 1, "window": 60},
                   server_extra='trusted_proxies = ["10.0.0.1", "2001:db8:0::7"]')
    bad = token_form(env.assertion("nobody"))
    for proxy in ("::ffff:10.0.0.1", "2001:db8::7"):
        assert env.post(bad, headers={"X-Forwarded-For": f"198.51.100.{len(proxy)}"},
                        environ_base={"REMOTE_ADDR": proxy}).status_code == 401
    # The first forwarded client used its budget (not the proxy's): its next failure is refused.
    assert env.post(bad, headers={"X-Forwarded-For": "198.51.100.15"},
                    environ_base={"REMOTE_ADDR": "10.0.0.1"}).status_code == 429
    assert env.post(bad, environ_base={"REMOTE_ADDR": "::ffff:203.0.113.5"}).status_code == 401
    assert env.post(bad, environ_base={"REMOTE_ADDR": "203.0.113.5"}).status_code == 429


def test_basic_credentials_are_form_urlencoded(idp):
    import base64
    from storage import clients
    with idp.app.app_context():
        _, secret = clients.create("a b", "client_secret_basic", grant_types=("client_credentials",))
    header = "Basic " + base64.b64encode(f"a+b:{secret}".encode()).decode()
    assert idp.post({"grant_type": "client_credentials"}, headers={"Authorization": header}).status_code == 200


# --- POST /oauth2/token is answered outside Flask (server.endpoints.token.TokenEndpoint) ----------------


def _chain_raises(idp, monkeypatch, exc: Exception) -> None:
    def token(request):
        raise exc
    monkeypatch.setattr(idp.app.extensions["idp"].chain, "token", token)


def test_unexpected_error_is_json_500_without_details(idp, monkeypatch, caplog):
    _chain_raises(idp, monkeypatch, RuntimeError("internal detail"))
    r = idp.token(idp.assertion())
    assert_oauth_error(r, 500, "server_error")
    assert "internal detail" not in r.text and "Traceback" not in r.text
    assert "unexpected error" in caplog.text and "internal detail" in caplog.text


def test_database_unavailable_is_503_with_retry_after(idp, monkeypatch):
    import peewee
    _chain_raises(idp, monkeypatch, peewee.OperationalError("could not connect to server"))
    r = idp.token(idp.assertion())
    assert_oauth_error(r, 503, "temporarily_unavailable")
    assert r.headers["Retry-After"] == "5" and "could not connect" not in r.text


def test_truncated_body_is_json_400(idp):
    data = urlencode(token_form(idp.assertion())).encode()
    environ = EnvironBuilder(path="/oauth2/token", method="POST", data=data[:100],
                             content_type="application/x-www-form-urlencoded").get_environ()
    environ["CONTENT_LENGTH"] = str(len(data))   # the client promised more than it sent
    status = []
    out = b"".join(idp.app(environ, lambda s, h, e=None: status.append((s, dict(h)))))
    assert status[0][0].startswith("400 ") and status[0][1]["Content-Type"] == "application/json"
    assert status[0][1]["Cache-Control"] == "no-store"
    assert json.loads(out)["error"] == "invalid_request"


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_other_methods_still_reach_flask(idp, method):
    r = idp.app.test_client().open("/oauth2/token", method=method)
    assert_oauth_error(r, 405, "invalid_request")
    assert r.headers["Allow"] == "POST"


def test_the_database_connection_is_released_once_per_request(idp, monkeypatch):
    import app as app_module
    released = []
    monkeypatch.setattr(app_module, "release", released.append)   # looked up at call time
    assert idp.token(idp.assertion()).status_code == 200
    assert_oauth_error(idp.post("grant_type=client_credentials"), 401, "invalid_client")
    assert released == [idp.app.extensions["idp"].services.db] * 2
