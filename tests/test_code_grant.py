"""The authorization code grant at the token endpoint (RFC 6749 §4.1.3, OIDC Core §3.1.3, RFC 7636),
public clients (auth method `none`), discovery metadata and `flask db purge`.

In-process tests use build_app() on a real SQLite file; codes are issued with storage.codes.issue,
the function the authorization endpoint uses. The HTTPS tests at the end run the real server."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from urllib.parse import parse_qs, urlsplit

import pytest

from oidc_support import OTHER_REDIRECT, REDIRECT, b64url_json, make_oidc, verifier_pair
from support import ASSERTION_TYPE, Server, assert_oauth_error, free_port, write_config


@pytest.fixture
def oidc(tmp_path):
    return make_oidc(tmp_path)


def error(response, status: int, code: str) -> dict:
    return assert_oauth_error(response, status, code)


# --- success ----------------------------------------------------------------------------------------

def test_success_shape(oidc):
    r = oidc.redeem(oidc.code(scopes=("openid", "profile")))
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.headers["Cache-Control"] == "no-store" and r.headers["Pragma"] == "no-cache"
    assert r.headers["Content-Type"] == "application/json"
    body = r.json
    assert set(body) == {"access_token", "token_type", "expires_in", "scope", "refresh_token", "id_token"}
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600 and body["scope"] == "openid profile"
    assert body["access_token"] != body["refresh_token"]


def test_tokens_are_stored_hashed_with_user_and_grant(oidc):
    import hashlib
    from storage.models import AccessToken, AuthorizationCode, RefreshToken
    code = oidc.code()
    body = oidc.redeem(code).json
    with oidc.app.app_context():
        access = AccessToken.get(AccessToken.token_hash == hashlib.sha256(body["access_token"].encode()).hexdigest())
        refresh = RefreshToken.get(RefreshToken.token_hash == hashlib.sha256(body["refresh_token"].encode()).hexdigest())
        grant_id = AuthorizationCode.get().grant_id
    assert access.user_sub == refresh.user_sub == oidc.alice.sub
    assert access.grant_id == refresh.grant_id == grant_id
    assert refresh.state == "active" and refresh.expires_at - refresh.issued_at == 86400
    assert access.expires_at - access.issued_at == 3600


def test_wso2_scope_openid_narrows_the_grant(oidc):
    """The WSO2 request sends scope=openid with the code: a subset is accepted and narrows the access token."""
    body = oidc.redeem(oidc.code(scopes=("openid", "profile", "email")), scope="openid").json
    assert body["scope"] == "openid"
    assert oidc.introspect(body["access_token"])["scope"] == "openid"
    # The refresh token keeps the whole grant (RFC 6749 §6).
    assert oidc.introspect(body["refresh_token"])["scope"] == "openid profile email"


def test_scope_cannot_widen_the_grant(oidc):
    error(oidc.redeem(oidc.code(scopes=("openid",)), scope="openid profile"), 400, "invalid_scope")


def test_malformed_scope_is_invalid_request_and_keeps_the_code(oidc):
    code = oidc.code()
    error(oidc.redeem(code, scope="openid\\profile"), 400, "invalid_request")
    assert oidc.redeem(code).status_code == 200


def test_no_openid_no_id_token(oidc):
    body = oidc.tokens(scopes=("read",))
    assert "id_token" not in body and body["scope"] == "read"


def test_client_without_refresh_grant_gets_no_refresh_token(oidc):
    oidc.env.register("code-only", grant_types=("authorization_code",), scopes=("openid",), redirect_uris=(REDIRECT,))
    r = oidc.redeem(oidc.code("code-only", scopes=("openid",)), "code-only")
    assert r.status_code == 200
    assert "refresh_token" not in r.json and "id_token" in r.json


def test_client_secret_basic_client(oidc):
    r = oidc.redeem(oidc.code("secret-app"), "secret-app")
    assert r.status_code == 200, r.get_data(as_text=True)
    assert "refresh_token" not in r.json


def test_per_client_lifetimes_override_the_defaults(oidc):
    oidc.env.register("short", grant_types=("authorization_code", "refresh_token"), scopes=("openid",),
                      redirect_uris=(REDIRECT,), access_token_lifetime=120, refresh_token_lifetime=600,
                      id_token_lifetime=300)
    body = oidc.redeem(oidc.code("short", scopes=("openid",)), "short").json
    assert body["expires_in"] == 120
    claims = b64url_json(body["id_token"].split(".")[1])
    assert claims["exp"] - claims["iat"] == 300
    refreshed = oidc.introspect(body["refresh_token"], "short")
    assert refreshed["exp"] - refreshed["iat"] == 600


def test_configured_user_token_validity(tmp_path):
    extra = "[oauth.token_validation]\nuser_access_token_validity = 900\nrefresh_token_validity = 7200\n"
    oidc = make_oidc(tmp_path, extra=extra)
    body = oidc.tokens()
    assert body["expires_in"] == 900
    info = oidc.introspect(body["refresh_token"])
    assert info["exp"] - info["iat"] == 7200


# --- the code --------------------------------------------------------------------------------------

def test_missing_code_is_invalid_request(oidc):
    error(oidc.redeem(None), 400, "invalid_request")


def test_unknown_code(oidc):
    error(oidc.redeem("no-such-code"), 400, "invalid_grant")


def test_expired_code(oidc):
    error(oidc.redeem(oidc.code(lifetime=-1)), 400, "invalid_grant")


def test_code_of_another_client(oidc):
    code = oidc.code("two-uris")
    body = error(oidc.redeem(code, "web-app"), 400, "invalid_grant")
    assert "another client" in body["error_description"]
    # Used up: the client it was issued to cannot redeem it after it was shown elsewhere.
    error(oidc.redeem(code, "two-uris"), 400, "invalid_grant")


@pytest.mark.parametrize("presenter", ["public-app", "two-uris"])
def test_used_code_presented_by_another_client_revokes_nothing(oidc, presenter):
    """Only the client a code was issued to can trigger the reuse revocation (RFC 6749 §4.1.2):
    another client holding a leaked, used code must not end that client's grant."""
    from storage import codes
    from storage.models import AuthorizationCode
    verifier, challenge = verifier_pair()
    code = oidc.code(challenge=challenge)
    first = oidc.redeem(code, code_verifier=verifier).json
    body = error(oidc.redeem(code, presenter, code_verifier=verifier), 400, "invalid_grant")
    assert body["error_description"] == "The authorization code was issued to another client"
    assert oidc.introspect(first["access_token"])["active"] is True
    assert oidc.introspect(first["refresh_token"])["active"] is True
    with oidc.app.app_context():
        assert AuthorizationCode.get().reused is False
        assert codes.was_reused(AuthorizationCode.get().grant_id) is False
    assert oidc.refresh(first["refresh_token"]).status_code == 200
    # The client it was issued to presenting it again is a reuse: then the grant is revoked.
    error(oidc.redeem(code, code_verifier=verifier), 400, "invalid_grant")
    assert oidc.introspect(first["access_token"]) == {"active": False}


def test_reused_code_revokes_the_first_tokens(oidc):
    code = oidc.code()
    first = oidc.redeem(code).json
    assert oidc.introspect(first["access_token"])["active"] is True
    body = error(oidc.redeem(code), 400, "invalid_grant")
    assert body["error_description"] == "The authorization code has already been used"
    # RFC 6749 §4.1.2: the tokens issued from the code are revoked.
    assert oidc.introspect(first["access_token"]) == {"active": False}
    assert oidc.introspect(first["refresh_token"]) == {"active": False}
    error(oidc.refresh(first["refresh_token"]), 400, "invalid_grant")


def test_code_gives_only_scopes_the_client_is_still_registered_for(oidc):
    from storage.models import Client
    code = oidc.code(scopes=("openid", "profile", "email"))
    with oidc.app.app_context():  # an administrator narrows the client after the user consented
        Client.update(scopes="openid email read").where(Client.client_id == "web-app").execute()
    body = oidc.redeem(code).json
    assert body["scope"] == "openid email"
    assert oidc.introspect(body["access_token"])["scope"] == "openid email"
    assert oidc.introspect(body["refresh_token"])["scope"] == "openid email"
    # Nor can the token request ask for a removed one.
    code = oidc.code(scopes=("openid", "profile"))
    error(oidc.redeem(code, scope="profile"), 400, "invalid_scope")


def test_code_with_no_scope_the_client_is_still_registered_for(oidc):
    from storage.models import Client
    code = oidc.code(scopes=("profile", "email"))
    with oidc.app.app_context():
        Client.update(scopes="openid").where(Client.client_id == "web-app").execute()
    error(oidc.redeem(code), 400, "invalid_scope")


def test_client_not_registered_for_the_grant(oidc):
    oidc.env.register("cc-only", scopes=("openid",), redirect_uris=(REDIRECT,))
    error(oidc.redeem(oidc.code("cc-only"), "cc-only"), 400, "unauthorized_client")


def test_deleted_user(oidc):
    from storage import users
    code = oidc.code()
    with oidc.app.app_context():
        users.delete("alice")
    error(oidc.redeem(code), 400, "invalid_grant")


# --- redirect_uri ------------------------------------------------------------------------------------

def test_wrong_redirect_uri(oidc):
    code = oidc.code()
    error(oidc.redeem(code, redirect_uri=REDIRECT + "/"), 400, "invalid_grant")
    error(oidc.redeem(code), 400, "invalid_grant")  # used up by the failed attempt


@pytest.mark.parametrize("sent", [REDIRECT.upper(), REDIRECT + "?x=1", REDIRECT + "#", OTHER_REDIRECT])
def test_redirect_uri_compares_exactly(oidc, sent):
    error(oidc.redeem(oidc.code("two-uris"), "two-uris", redirect_uri=sent), 400, "invalid_grant")


def test_missing_redirect_uri_with_several_registered(oidc):
    error(oidc.redeem(oidc.code("two-uris"), "two-uris", redirect_uri=None), 400, "invalid_grant")


def test_redirect_uri_required_when_the_authorization_request_sent_it(oidc):
    """RFC 6749 §4.1.3: REQUIRED if it was included in the authorization request, even when the
    client has only one registered URI."""
    code = oidc.code()
    error(oidc.redeem(code, redirect_uri=None), 400, "invalid_grant")
    error(oidc.redeem(code), 400, "invalid_grant")  # used up by the failed attempt


def test_redirect_uri_may_be_omitted_when_the_authorization_request_did(oidc):
    """The authorization request omitted it (one registered URI): the token request may omit it
    or repeat that URI, never name another."""
    assert oidc.redeem(oidc.code(redirect_uri_sent=False), redirect_uri=None).status_code == 200
    assert oidc.redeem(oidc.code(redirect_uri_sent=False)).status_code == 200
    error(oidc.redeem(oidc.code(redirect_uri_sent=False), redirect_uri=REDIRECT + "/"), 400, "invalid_grant")


def test_code_for_the_other_registered_uri(oidc):
    assert oidc.redeem(oidc.code("two-uris", redirect_uri=OTHER_REDIRECT), "two-uris",
                       redirect_uri=OTHER_REDIRECT).status_code == 200


# --- PKCE --------------------------------------------------------------------------------------------

def test_pkce_s256(oidc):
    verifier, challenge = verifier_pair()
    assert oidc.redeem(oidc.code(challenge=challenge), code_verifier=verifier).status_code == 200


def test_pkce_missing_verifier(oidc):
    _, challenge = verifier_pair()
    error(oidc.redeem(oidc.code(challenge=challenge)), 400, "invalid_grant")


def test_pkce_wrong_verifier(oidc):
    _, challenge = verifier_pair()
    other, _ = verifier_pair()
    code = oidc.code(challenge=challenge)
    error(oidc.redeem(code, code_verifier=other), 400, "invalid_grant")


def test_pkce_verifier_equal_to_challenge_is_not_plain(oidc):
    """An S256 challenge sent back as the verifier does not pass."""
    _, challenge = verifier_pair()
    error(oidc.redeem(oidc.code(challenge=challenge), code_verifier=challenge), 400, "invalid_grant")


@pytest.mark.parametrize("verifier", ["a" * 42, "a" * 129, "a" * 42 + "!", "a" * 42 + " "])
def test_pkce_malformed_verifier_keeps_the_code(oidc, verifier):
    good, challenge = verifier_pair()
    code = oidc.code(challenge=challenge)
    error(oidc.redeem(code, code_verifier=verifier), 400, "invalid_request")
    assert oidc.redeem(code, code_verifier=good).status_code == 200


def test_pkce_verifier_lengths_43_and_128(oidc):
    import base64
    import hashlib
    for verifier in ("A" * 43, "-._~" * 32):
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        assert oidc.redeem(oidc.code(challenge=challenge), code_verifier=verifier).status_code == 200


def test_verifier_for_a_code_without_challenge(oidc):
    verifier, _ = verifier_pair()
    error(oidc.redeem(oidc.code(), code_verifier=verifier), 400, "invalid_grant")


def test_plain_is_refused_by_default(oidc):
    verifier, _ = verifier_pair()
    error(oidc.redeem(oidc.code(challenge=verifier, method="plain"), code_verifier=verifier), 400, "invalid_grant")


def test_plain_when_allowed(tmp_path):
    oidc = make_oidc(tmp_path, extra="[oauth.pkce]\nallow_plain = true\n")
    verifier, _ = verifier_pair()
    assert oidc.redeem(oidc.code(challenge=verifier, method="plain"), code_verifier=verifier).status_code == 200
    other, _ = verifier_pair()
    error(oidc.redeem(oidc.code(challenge=verifier, method="plain"), code_verifier=other), 400, "invalid_grant")


def test_pkce_mandatory(tmp_path):
    oidc = make_oidc(tmp_path, extra="[oauth.pkce]\nmandatory = true\n")
    error(oidc.redeem(oidc.code()), 400, "invalid_grant")
    verifier, challenge = verifier_pair()
    assert oidc.redeem(oidc.code(challenge=challenge), code_verifier=verifier).status_code == 200


# --- public clients (token_endpoint_auth_method none) ------------------------------------------------

def test_public_client_with_pkce(oidc):
    verifier, challenge = verifier_pair()
    r = oidc.redeem(oidc.code("public-app", challenge=challenge), "public-app", code_verifier=verifier)
    assert r.status_code == 200, r.get_data(as_text=True)
    assert {"access_token", "refresh_token", "id_token"} <= set(r.json)
    refreshed = oidc.refresh(r.json["refresh_token"], "public-app")
    assert refreshed.status_code == 200, refreshed.get_data(as_text=True)


def test_public_client_needs_pkce(oidc):
    error(oidc.redeem(oidc.code("public-app"), "public-app"), 400, "invalid_grant")


def test_public_client_wrong_verifier(oidc):
    _, challenge = verifier_pair()
    other, _ = verifier_pair()
    error(oidc.redeem(oidc.code("public-app", challenge=challenge), "public-app", code_verifier=other),
          400, "invalid_grant")


def test_public_client_cannot_use_client_credentials(oidc):
    oidc.env.register("public-cc", auth_method="none", grant_types=("client_credentials", "authorization_code"),
                      scopes=("openid",))
    error(oidc.post("/oauth2/token", {"grant_type": "client_credentials", "client_id": "public-cc"}),
          401, "invalid_client")


def public_tokens(oidc) -> dict:
    verifier, challenge = verifier_pair()
    r = oidc.redeem(oidc.code("public-app", challenge=challenge), "public-app", code_verifier=verifier)
    assert r.status_code == 200, r.get_data(as_text=True)
    return r.json


def test_public_client_cannot_introspect(oidc):
    token = public_tokens(oidc)["access_token"]
    error(oidc.post("/oauth2/introspect", {"token": token, "client_id": "public-app"}), 401, "invalid_client")
    # Not even by claiming a grant type.
    error(oidc.post("/oauth2/introspect", {"token": token, "client_id": "public-app", "grant_type": "refresh_token"}),
          401, "invalid_client")
    assert oidc.introspect(token, "web-app")["active"] is True  # still active


def test_public_client_revokes_its_own_tokens(oidc):
    """RFC 7009 §2.1: a public client names itself with client_id and revokes its own tokens."""
    body = public_tokens(oidc)
    r = oidc.revoke(body["access_token"], "public-app")
    assert r.status_code == 200 and r.json == {} and r.headers["Cache-Control"] == "no-store"
    assert oidc.introspect(body["access_token"]) == {"active": False}
    assert oidc.refresh(body["refresh_token"], "public-app").status_code == 200  # the refresh token stays
    second = public_tokens(oidc)
    assert oidc.revoke(second["refresh_token"], "public-app", token_type_hint="refresh_token").status_code == 200
    assert oidc.introspect(second["access_token"]) == {"active": False}  # its whole grant
    error(oidc.refresh(second["refresh_token"], "public-app"), 400, "invalid_grant")


def test_public_client_cannot_revoke_other_clients_tokens(oidc):
    body = oidc.tokens()
    for token in (body["access_token"], body["refresh_token"]):
        assert oidc.revoke(token, "public-app").status_code == 200  # §2.2: the same answer
    assert oidc.introspect(body["access_token"])["active"] is True
    assert oidc.refresh(body["refresh_token"]).status_code == 200


@pytest.mark.parametrize("client_id", ["web-app", "secret-app", "no-such-client"])
def test_client_id_alone_does_not_revoke_for_other_clients(oidc, client_id):
    body = oidc.tokens()
    r = oidc.post("/oauth2/revoke", {"token": body["access_token"], "client_id": client_id})
    assert error(r, 401, "invalid_client")["error_description"] == "Client authentication failed"
    assert oidc.introspect(body["access_token"])["active"] is True


@pytest.mark.parametrize("client_id", ["web-app", "secret-app", "no-such-client"])
def test_client_id_alone_is_not_enough_for_other_clients(oidc, client_id):
    _, challenge = verifier_pair()
    code = oidc.code(client_id if client_id != "no-such-client" else "web-app", challenge=challenge)
    body = error(oidc.post("/oauth2/token", {"grant_type": "authorization_code", "code": code,
                                             "redirect_uri": REDIRECT, "client_id": client_id}), 401, "invalid_client")
    assert body["error_description"] == "Client authentication failed"


def test_public_client_code_of_another_client(oidc):
    verifier, challenge = verifier_pair()
    error(oidc.redeem(oidc.code("web-app", challenge=challenge), "public-app", code_verifier=verifier),
          400, "invalid_grant")


def test_public_client_with_a_secret_is_not_public(oidc):
    """client_id plus any credential belongs to that credential's method."""
    verifier, challenge = verifier_pair()
    error(oidc.redeem(oidc.code("public-app", challenge=challenge), "public-app", code_verifier=verifier,
                      client_secret="guess"), 401, "invalid_client")


def test_public_client_authenticator_can_be_disabled(tmp_path):
    listener = '[[event_listener]]\nid = "public"\nname = "public_client"\nenable = false\n'
    oidc = make_oidc(tmp_path, listeners=listener)
    verifier, challenge = verifier_pair()
    error(oidc.redeem(oidc.code("public-app", challenge=challenge), "public-app", code_verifier=verifier),
          401, "invalid_client")
    metadata = oidc.app.test_client().get("/.well-known/openid-configuration").json
    assert "none" not in metadata["token_endpoint_auth_methods_supported"]


# --- introspection and revocation ----------------------------------------------------------------------

def test_introspection_of_user_tokens(oidc):
    body = oidc.tokens(scopes=("openid", "profile"))
    access = oidc.introspect(body["access_token"])
    assert access["active"] is True and access["sub"] == oidc.alice.sub and access["client_id"] == "web-app"
    assert access["token_type"] == "Bearer" and access["scope"] == "openid profile"
    assert access["iss"] == oidc.env.issuer and access["exp"] - access["iat"] == 3600
    refresh = oidc.introspect(body["refresh_token"])
    assert refresh["active"] is True and refresh["sub"] == oidc.alice.sub and refresh["client_id"] == "web-app"
    assert "token_type" not in refresh
    for hint in ("refresh_token", "access_token", "unknown_hint"):
        assert oidc.introspect(body["refresh_token"], token_type_hint=hint)["active"] is True
        assert oidc.introspect(body["access_token"], token_type_hint=hint)["active"] is True


def test_any_confidential_client_introspects_access_tokens(oidc):
    """RFC 7662 §1: a protected resource, itself a registered client, validates the access tokens
    it receives, whoever they were issued to."""
    body = oidc.tokens(scopes=("openid", "profile"))
    mine = oidc.introspect(body["access_token"])
    for resource in ("two-uris", "secret-app"):
        assert oidc.introspect(body["access_token"], resource) == mine
    assert mine["client_id"] == "web-app" and mine["sub"] == oidc.alice.sub and mine["scope"] == "openid profile"
    assert oidc.revoke(body["access_token"]).status_code == 200
    assert oidc.introspect(body["access_token"], "two-uris") == {"active": False}


def test_refresh_tokens_are_described_only_to_their_client(oidc):
    body = oidc.tokens()
    for hint in (None, "refresh_token"):
        assert oidc.introspect(body["refresh_token"], "two-uris", token_type_hint=hint) == {"active": False}
        assert oidc.introspect(body["refresh_token"], "secret-app", token_type_hint=hint) == {"active": False}
    assert oidc.introspect(body["refresh_token"])["active"] is True


def test_introspection_of_client_credentials_token_has_no_sub(oidc):
    oidc.env.register("cc", scopes=("read",))
    r = oidc.post("/oauth2/token", {"grant_type": "client_credentials", **oidc.auth("cc")})
    info = oidc.introspect(r.json["access_token"], "cc")
    assert info["active"] is True and "sub" not in info


def test_revoking_a_refresh_token_revokes_its_family(oidc):
    body = oidc.tokens()
    second = oidc.refresh(body["refresh_token"]).json
    r = oidc.revoke(second["refresh_token"], token_type_hint="refresh_token")
    assert r.status_code == 200 and r.json == {}
    for token in (body["access_token"], second["access_token"], second["refresh_token"]):
        assert oidc.introspect(token) == {"active": False}
    error(oidc.refresh(second["refresh_token"]), 400, "invalid_grant")


def test_revoking_an_access_token_keeps_the_refresh_token(oidc):
    body = oidc.tokens()
    assert oidc.revoke(body["access_token"]).status_code == 200
    assert oidc.introspect(body["access_token"]) == {"active": False}
    assert oidc.introspect(body["refresh_token"])["active"] is True


def test_revoking_another_clients_refresh_token_does_nothing(oidc):
    body = oidc.tokens()
    assert oidc.revoke(body["refresh_token"], "two-uris").status_code == 200
    assert oidc.introspect(body["refresh_token"])["active"] is True
    assert oidc.introspect(body["access_token"])["active"] is True


# --- metadata ----------------------------------------------------------------------------------------

def test_metadata(oidc):
    base = oidc.env.settings.base_url
    m = oidc.app.test_client().get("/.well-known/openid-configuration").json
    assert m["authorization_endpoint"] == base + "/oauth2/authorize"
    assert m["userinfo_endpoint"] == base + "/oauth2/userinfo"
    assert m["response_types_supported"] == ["code"]
    assert m["response_modes_supported"] == ["query"]
    assert m["subject_types_supported"] == ["public"]
    assert m["id_token_signing_alg_values_supported"] == ["RS256"]
    assert m["code_challenge_methods_supported"] == ["S256"]
    assert m["authorization_response_iss_parameter_supported"] is True
    assert m["scopes_supported"] == ["openid", "profile", "email", "address", "phone"]
    assert {"sub", "iss", "auth_time", "nonce", "at_hash", "name", "email", "email_verified"} <= set(m["claims_supported"])
    assert m["grant_types_supported"] == ["authorization_code", "client_credentials", "refresh_token"]
    assert m["token_endpoint_auth_methods_supported"] == [
        "private_key_jwt", "client_secret_basic", "client_secret_post", "none"]
    assert m["introspection_endpoint_auth_methods_supported"] == [
        "private_key_jwt", "client_secret_basic", "client_secret_post"]
    assert m["revocation_endpoint_auth_methods_supported"] == [
        "private_key_jwt", "client_secret_basic", "client_secret_post", "none"]
    # OpenID Connect Discovery §3 defaults request_uri_parameter_supported to true: say false.
    assert m["request_parameter_supported"] is False and m["request_uri_parameter_supported"] is False


def test_metadata_at_the_path_inserted_urls(oidc):
    """RFC 8414 §3.1: the issuer https://host/oauth2/token has its metadata at
    https://host/.well-known/oauth-authorization-server/oauth2/token; the other URLs stay."""
    web = oidc.app.test_client()
    expected = web.get("/.well-known/openid-configuration").json
    assert expected["issuer"].endswith("/oauth2/token")
    for path in ("/.well-known/oauth-authorization-server/oauth2/token", "/.well-known/openid-configuration/oauth2/token",
                 "/.well-known/oauth-authorization-server", "/oauth2/token/.well-known/openid-configuration"):
        r = web.get(path)
        assert r.status_code == 200 and r.json == expected, path
        assert r.headers["Cache-Control"] == "public, max-age=60"
    for path in ("/.well-known/oauth-authorization-server/oauth2", "/.well-known/oauth-authorization-server/oauth2/token/",
                 "/.well-known/oauth-authorization-server/other/oauth2/token", "/.well-known/openid-configuration/x"):
        error(web.get(path), 404, "not_found")


def test_metadata_path_follows_the_configured_issuer(tmp_path):
    oidc = make_oidc(tmp_path, extra='[oauth.oidc.id_token]\nissuer = "https://idp.example.com/tenants/a%20b"\n')
    web = oidc.app.test_client()
    r = web.get("/.well-known/oauth-authorization-server/tenants/a%20b")
    assert r.status_code == 200 and r.json["issuer"] == "https://idp.example.com/tenants/a%20b"
    assert web.get("/.well-known/openid-configuration/tenants/a%20b").status_code == 200
    error(web.get("/.well-known/oauth-authorization-server/oauth2/token"), 404, "not_found")


def test_metadata_plain_pkce_when_allowed(tmp_path):
    oidc = make_oidc(tmp_path, extra="[oauth.pkce]\nallow_plain = true\n")
    m = oidc.app.test_client().get("/.well-known/oauth-authorization-server").json
    assert m["code_challenge_methods_supported"] == ["S256", "plain"]


def test_metadata_without_the_grants(tmp_path):
    listeners = ('[[event_listener]]\nid = "code"\nname = "authorization_code"\nenable = false\n'
                 '[[event_listener]]\nid = "refresh"\n'
                 'name = "org.wso2.carbon.identity.oauth2.token.handlers.grant.RefreshGrantHandler"\nenable = false\n')
    oidc = make_oidc(tmp_path, listeners=listeners)
    m = oidc.app.test_client().get("/.well-known/openid-configuration").json
    assert m["grant_types_supported"] == ["client_credentials"]
    error(oidc.redeem(oidc.code()), 400, "unsupported_grant_type")


# --- flask db purge ------------------------------------------------------------------------------------

def test_db_purge_removes_expired_refresh_tokens_codes_and_sessions(oidc):
    from storage import refresh, users
    from storage.models import AuthorizationCode, RefreshToken, UserSession
    with oidc.app.app_context():
        live_refresh = refresh.issue(grant_id="g1", client_id="web-app", user_sub=oidc.alice.sub, scopes=("openid",),
                                     auth_time=0, lifetime=600)
        refresh.issue(grant_id="g2", client_id="web-app", user_sub=oidc.alice.sub, scopes=("openid",),
                      auth_time=0, lifetime=-10)
        users.start_session(oidc.alice, 600)
        users.start_session(oidc.alice, -10)
    oidc.code(lifetime=60)
    oidc.code(lifetime=-86500)  # past its expiry plus the day a code is kept to detect a late reuse
    oidc.code(lifetime=-100)    # expired, but still kept
    result = oidc.app.test_cli_runner().invoke(args=["db", "purge"])
    assert result.exit_code == 0, result.output
    assert ("1 expired refresh tokens, 1 expired authorization codes, 0 expired pushed authorization requests, "
            "1 expired sessions") in result.output
    with oidc.app.app_context():
        assert RefreshToken.select().count() == 1 and refresh.find(live_refresh) is not None
        assert AuthorizationCode.select().count() == 2
        assert UserSession.select().count() == 1


def test_periodic_purge_batch(oidc):
    from storage import refresh
    from storage.models import AccessToken, AuthorizationCode, RefreshToken
    services = oidc.app.extensions["idp"].services
    with oidc.app.app_context():
        services.tokens.issue("web-app", "openid", -10)
        refresh.issue(grant_id="g", client_id="web-app", user_sub="s", scopes=(), auth_time=0, lifetime=-10)
        oidc.code(lifetime=-86500)
        assert services.tokens.purge_batch(int(time.time())) == 3
        assert AccessToken.select().count() == RefreshToken.select().count() == AuthorizationCode.select().count() == 0


# =====================================================================================================
# Over HTTPS against the real server

CURL = shutil.which("curl")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from support import jwks_of, pem, rsa_key
    directory = tmp_path_factory.mktemp("code-grant")
    port = free_port()
    path = write_config(directory, port)
    srv = Server(path, port).start()
    try:
        key = rsa_key()
        (directory / "client.pem").write_bytes(pem(key))
        (directory / "client.jwks").write_text(jwks_of((key, "k1")))
        srv.cli("clients", "create", "--client-id", "playground", "--auth-method", "private_key_jwt",
                "--jwks-file", str(directory / "client.jwks"), "--grant-type", "authorization_code",
                "--grant-type", "refresh_token", "--scope", "openid", "--scope", "profile", "--scope", "email",
                "--redirect-uri", REDIRECT)
        srv.cli("clients", "create", "--client-id", "spa", "--auth-method", "none", "--grant-type",
                "authorization_code", "--grant-type", "refresh_token", "--scope", "openid", "--redirect-uri", REDIRECT)
        account = json.loads(srv.cli("users", "create", "--username", "alice", "--password-stdin", "--name", "Alice",
                                     "--email", "alice@example.com", "--email-verified",
                                     input="correct horse battery\n").stdout)
        srv.key = key
        srv.alice_sub = account["sub"]
        yield srv
    finally:
        srv.stop()


def server_code(server: Server, client_id: str = "playground", nonce: str | None = None,
                challenge: str | None = None, scopes=("openid", "profile", "email")) -> str:
    """A code in the server's own database, issued with storage.codes.issue as the authorization endpoint does."""
    from storage import codes
    from storage.database import close_all, open_database
    db = open_database("sqlite:///var/identity.db", server.config_path.parent)
    try:
        return codes.issue(client_id=client_id, user_sub=server.alice_sub, redirect_uri=REDIRECT, scopes=scopes,
                           nonce=nonce, code_challenge=challenge, code_challenge_method="S256" if challenge else None,
                           auth_time=int(time.time()) - 30, lifetime=60)
    finally:
        close_all(db)


def server_assertion(server: Server) -> str:
    from support import claims_for, sign
    return sign(server.key, claims_for("playground", server.base + "/oauth2/token"), "RS256", {"kid": "k1"})


@pytest.mark.skipif(CURL is None, reason="curl is not installed")
def test_wso2_documented_request_with_curl(server):
    code = server_code(server, nonce="n-0S6_WzA2Mj")
    jwt = server_assertion(server)
    data = (f"grant_type=authorization_code&code={code}&scope=openid&client_assertion_type="
            f"urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion={jwt}"
            f"&redirect_uri=http://localhost:8080/playground2/oauth2client")
    result = subprocess.run([CURL, "-s", "-i", "-H", "Content-Type: application/x-www-form-urlencoded;charset=UTF-8",
                             "-k", "-d", data, server.base + "/oauth2/token"],
                            capture_output=True, text=True, timeout=30)
    head, _, payload = result.stdout.partition("\n\n")  # text mode: CRLF read as LF
    assert head.startswith("HTTP/1.1 200"), result.stdout
    assert "cache-control: no-store" in head.lower()
    body = json.loads(payload)
    assert body["token_type"] == "Bearer" and body["scope"] == "openid" and body["expires_in"] == 3600
    assert {"access_token", "refresh_token", "id_token"} <= set(body)

    # The ID token verifies with the published key and carries the nonce.
    from jose import jwt as jose_jwt
    jwks = server.get("/oauth2/jwks").json()
    claims = jose_jwt.decode(body["id_token"], jwks, algorithms=["RS256"], audience="playground",
                             issuer=server.base + "/oauth2/token", access_token=body["access_token"])
    assert claims["sub"] == server.alice_sub and claims["nonce"] == "n-0S6_WzA2Mj"

    # The access token works at userinfo over HTTPS; scope=openid narrowed it to sub only.
    info = server.get("/oauth2/userinfo", headers={"Authorization": "Bearer " + body["access_token"]})
    assert info.status_code == 200 and info.json() == {"sub": server.alice_sub}

    # The same code again: invalid_grant, and the first tokens are revoked.
    again = subprocess.run([CURL, "-s", "-k", "-H", "Content-Type: application/x-www-form-urlencoded;charset=UTF-8",
                            "-d", data.replace(jwt, server_assertion(server)), server.base + "/oauth2/token"],
                           capture_output=True, text=True, timeout=30)
    assert json.loads(again.stdout)["error"] == "invalid_grant"
    info = server.get("/oauth2/userinfo", headers={"Authorization": "Bearer " + body["access_token"]})
    assert info.status_code == 401
    assert info.headers["WWW-Authenticate"] == 'Bearer realm="oauth2", error="invalid_token"'


def test_https_refresh_rotation_and_userinfo(server):
    form = {"grant_type": "authorization_code", "code": server_code(server), "redirect_uri": REDIRECT,
            "client_assertion_type": ASSERTION_TYPE, "client_assertion": server_assertion(server)}
    first = server.post(data=form)
    assert first.status_code == 200, first.text
    tokens = first.json()
    info = server.get("/oauth2/userinfo", headers={"Authorization": "Bearer " + tokens["access_token"]})
    assert info.status_code == 200
    assert info.json() == {"sub": server.alice_sub, "preferred_username": "alice", "name": "Alice",
                           "email": "alice@example.com", "email_verified": True}
    refresh_form = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"],
                    "client_assertion_type": ASSERTION_TYPE}
    second = server.post(data={**refresh_form, "client_assertion": server_assertion(server)})
    assert second.status_code == 200, second.text
    assert second.json()["refresh_token"] != tokens["refresh_token"]
    # Reuse of the rotated token: invalid_grant, and the new tokens are revoked with the family.
    reuse = server.post(data={**refresh_form, "client_assertion": server_assertion(server)})
    assert_oauth_error(reuse, 400, "invalid_grant")
    introspect = server.post("/oauth2/introspect", data={"token": second.json()["access_token"],
                                                         "client_assertion_type": ASSERTION_TYPE,
                                                         "client_assertion": server_assertion(server)})
    assert introspect.json() == {"active": False}


def test_https_concurrent_refresh_exactly_one_wins(server):
    """Two workers, eight simultaneous uses of one refresh token: one 200, the rest invalid_grant."""
    from concurrent.futures import ThreadPoolExecutor
    form = {"grant_type": "authorization_code", "code": server_code(server), "redirect_uri": REDIRECT,
            "client_assertion_type": ASSERTION_TYPE, "client_assertion": server_assertion(server)}
    refresh_token = server.post(data=form).json()["refresh_token"]
    forms = [{"grant_type": "refresh_token", "refresh_token": refresh_token, "client_assertion_type": ASSERTION_TYPE,
              "client_assertion": server_assertion(server)} for _ in range(8)]
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda f: server.post(data=f), forms))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [400] * 7, [r.text for r in responses]
    assert all(r.json()["error"] == "invalid_grant" for r in responses if r.status_code == 400)
    # The losers were reuses: the family is revoked, the winner's new tokens included.
    winner = next(r for r in responses if r.status_code == 200).json()
    introspect = server.post("/oauth2/introspect", data={"token": winner["refresh_token"],
                                                         "client_assertion_type": ASSERTION_TYPE,
                                                         "client_assertion": server_assertion(server)})
    assert introspect.json() == {"active": False}


def test_https_concurrent_code_redemption_leaves_no_active_token(server):
    """Eight simultaneous redemptions of one code on two workers: at most one 200, and since the
    others are reuses, no token from the code stays active, whatever order the requests ran in."""
    from concurrent.futures import ThreadPoolExecutor
    for _ in range(3):
        code = server_code(server)
        forms = [{"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
                  "client_assertion_type": ASSERTION_TYPE, "client_assertion": server_assertion(server)}
                 for _ in range(8)]
        with ThreadPoolExecutor(8) as pool:
            responses = list(pool.map(lambda f: server.post(data=f), forms))
        winners = [r.json() for r in responses if r.status_code == 200]
        assert len(winners) <= 1, [r.text for r in responses]
        assert all(r.json()["error"] == "invalid_grant" for r in responses if r.status_code != 200)
        for body in winners:
            for token in (body["access_token"], body["refresh_token"]):
                introspect = server.post("/oauth2/introspect", data={
                    "token": token, "client_assertion_type": ASSERTION_TYPE,
                    "client_assertion": server_assertion(server)})
                assert introspect.json() == {"active": False}


def test_https_public_client(server):
    from oidc_support import verifier_pair
    verifier, challenge = verifier_pair()
    r = server.post(data={"grant_type": "authorization_code", "code": server_code(server, "spa", challenge=challenge,
                                                                                  scopes=("openid",)),
                          "redirect_uri": REDIRECT, "client_id": "spa", "code_verifier": verifier})
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    assert_oauth_error(server.post("/oauth2/introspect", data={"token": token, "client_id": "spa"}),
                       401, "invalid_client")
    assert_oauth_error(server.post(data={"grant_type": "client_credentials", "client_id": "spa"}), 401,
                       "invalid_client")
    # A resource server (any confidential client) validates the token; the public client revokes it.
    introspect = lambda: server.post("/oauth2/introspect", data={
        "token": token, "client_assertion_type": ASSERTION_TYPE, "client_assertion": server_assertion(server)}).json()
    info = introspect()
    assert info["active"] is True and info["client_id"] == "spa" and info["sub"] == server.alice_sub
    revoked = server.post("/oauth2/revoke", data={"token": token, "client_id": "spa"})
    assert revoked.status_code == 200 and revoked.json() == {} and revoked.headers["Cache-Control"] == "no-store"
    assert introspect() == {"active": False}


def test_https_metadata(server):
    m = server.get("/oauth2/token/.well-known/openid-configuration").json()
    inserted = server.get("/.well-known/oauth-authorization-server/oauth2/token")
    assert inserted.status_code == 200 and inserted.json() == m
    assert m["revocation_endpoint_auth_methods_supported"][-1] == "none"
    assert "none" not in m["introspection_endpoint_auth_methods_supported"]
    assert m["request_uri_parameter_supported"] is False
    assert m["userinfo_endpoint"] == server.base + "/oauth2/userinfo"
    assert m["authorization_endpoint"] == server.base + "/oauth2/authorize"
    assert m["grant_types_supported"] == ["authorization_code", "client_credentials", "refresh_token"]
    assert "none" in m["token_endpoint_auth_methods_supported"]


def test_https_userinfo_errors(server):
    r = server.get("/oauth2/userinfo")
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith('Bearer realm="oauth2", DPoP algs=')
    assert r.headers["Content-Type"] == "application/json" and r.json()["error"] == "invalid_token"
    r = server.post("/oauth2/userinfo", headers={"Authorization": "Bearer unknown"})
    assert r.status_code == 401 and r.headers["WWW-Authenticate"] == 'Bearer realm="oauth2", error="invalid_token"'
    r = server.get("/oauth2/userinfo?access_token=x")
    assert r.status_code == 400 and r.headers["WWW-Authenticate"] == 'Bearer realm="oauth2", error="invalid_request"'


def test_https_code_from_the_authorization_endpoint(server):
    """The whole flow: /oauth2/authorize (sign-in, consent) issues the code, the token endpoint
    redeems it with PKCE and a nonce, the ID token and userinfo name the signed-in user."""
    import html
    import re
    import requests
    from oidc_support import verifier_pair
    hidden = lambda text: {html.unescape(n): html.unescape(v)
                           for n, v in re.findall(r'<input type="hidden" name="([^"]*)" value="([^"]*)">', text)}
    verifier, challenge = verifier_pair()
    options = {"verify": server.ca, "allow_redirects": False, "timeout": 15}
    url = server.base + "/oauth2/authorize"
    session = requests.Session()
    page = session.get(url, params={"response_type": "code", "client_id": "playground", "redirect_uri": REDIRECT,
                                    "scope": "openid email", "state": "s-1", "nonce": "n-flow",
                                    "code_challenge": challenge, "code_challenge_method": "S256"}, **options)
    assert page.status_code == 200 and 'id="signin"' in page.text, page.text[:300]
    consent = session.post(url, data={**hidden(page.text), "action": "signin", "username": "alice",
                                      "password": "correct horse battery"}, **options)
    assert consent.status_code == 200 and 'id="allow"' in consent.text, consent.text[:300]
    back = session.post(url, data={**hidden(consent.text), "action": "allow"}, **options)
    assert back.status_code == 303, back.text[:300]
    values = {k: v[0] for k, v in parse_qs(urlsplit(back.headers["Location"]).query).items()}
    assert values["state"] == "s-1" and values["iss"] == server.base + "/oauth2/token"

    form = {"grant_type": "authorization_code", "code": values["code"], "redirect_uri": REDIRECT,
            "code_verifier": verifier, "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": server_assertion(server)}
    r = server.post(data=form)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["scope"] == "openid email"
    from jose import jwt as jose_jwt
    claims = jose_jwt.decode(body["id_token"], server.get("/oauth2/jwks").json(), algorithms=["RS256"],
                             audience="playground", issuer=server.base + "/oauth2/token",
                             access_token=body["access_token"])
    assert claims["sub"] == server.alice_sub and claims["nonce"] == "n-flow"
    assert abs(claims["auth_time"] - time.time()) < 60
    info = server.get("/oauth2/userinfo", headers={"Authorization": "Bearer " + body["access_token"]}).json()
    assert info == {"sub": server.alice_sub, "email": "alice@example.com", "email_verified": True}
    # The code is single use.
    again = server.post(data={**form, "client_assertion": server_assertion(server)})
    assert_oauth_error(again, 400, "invalid_grant")
