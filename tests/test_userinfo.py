"""The UserInfo endpoint (OpenID Connect Core §5.3) and its bearer token errors (RFC 6750 §2, §3)."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest

from oidc_support import ALICE_CLAIMS, FORM, make_oidc

PATH = "/oauth2/userinfo"
# RFC 6750 §3 and RFC 9449 §7.1: no error code when there was no token; both schemes offered.
NO_TOKEN = 'Bearer realm="oauth2", DPoP algs="ES256 ES384 ES512 PS256 PS384 PS512 EdDSA RS256"'
INVALID_TOKEN = 'Bearer realm="oauth2", error="invalid_token"'
INVALID_REQUEST = 'Bearer realm="oauth2", error="invalid_request"'


@pytest.fixture
def oidc(tmp_path):
    return make_oidc(tmp_path)


def get(oidc, token: str | None = None, headers: dict | None = None, **kwargs):
    headers = dict(headers or {})
    if token is not None:
        headers["Authorization"] = "Bearer " + token
    return oidc.app.test_client().get(PATH, headers=headers, **kwargs)


def post(oidc, form: dict, headers: dict | None = None):
    return oidc.app.test_client().post(PATH, data=urlencode(form), content_type=FORM, headers=headers or {})


def assert_bearer_error(response, status: int, error: str, challenge: str) -> None:
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True))
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["WWW-Authenticate"] == challenge
    assert response.json["error"] == error


def access_token(oidc, scopes) -> str:
    return oidc.tokens(scopes=scopes)["access_token"]


@pytest.mark.parametrize("scopes,expected", [
    (("openid",), set()),
    (("openid", "profile"), {"preferred_username", "name", "given_name", "family_name"}),
    (("openid", "email"), {"email", "email_verified"}),
    (("openid", "phone"), {"phone_number"}),
    (("openid", "address"), {"address"}),
    (("openid", "profile", "email", "read"), {"preferred_username", "name", "given_name", "family_name", "email",
                                              "email_verified"}),
])
def test_claims_follow_the_scopes(oidc, scopes, expected):
    r = get(oidc, access_token(oidc, scopes))
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.headers["Content-Type"] == "application/json" and r.headers["Cache-Control"] == "no-store"
    assert r.json == {"sub": oidc.alice.sub, **{k: ALICE_CLAIMS[k] for k in expected}}
    assert "custom" not in r.json


def test_post_with_header(oidc):
    token = access_token(oidc, ("openid", "email"))
    r = oidc.app.test_client().post(PATH, headers={"Authorization": "Bearer " + token})
    assert r.status_code == 200 and r.json["email"] == "alice@example.com"


def test_post_with_form_body(oidc):
    """RFC 6750 §2.2."""
    r = post(oidc, {"access_token": access_token(oidc, ("openid",))})
    assert r.status_code == 200 and r.json == {"sub": oidc.alice.sub}


def test_scheme_is_case_insensitive(oidc):
    r = get(oidc, headers={"Authorization": "bearer " + access_token(oidc, ("openid",))})
    assert r.status_code == 200


def test_public_client_token(oidc):
    from oidc_support import verifier_pair
    verifier, challenge = verifier_pair()
    token = oidc.redeem(oidc.code("public-app", challenge=challenge), "public-app",
                        code_verifier=verifier).json["access_token"]
    assert get(oidc, token).status_code == 200


def test_no_token(oidc):
    """RFC 6750 §3.1: no error attribute in the challenge when the request carried no token."""
    assert_bearer_error(get(oidc), 401, "invalid_token", NO_TOKEN)
    assert_bearer_error(oidc.app.test_client().post(PATH), 401, "invalid_token", NO_TOKEN)


def test_another_scheme_is_no_bearer_token(oidc):
    assert_bearer_error(get(oidc, headers={"Authorization": "Basic dXNlcjpwYXNz"}), 401, "invalid_token", NO_TOKEN)


@pytest.mark.parametrize("value", ["Bearer", "Bearer ", "Bearer a b", "Bearer ä", "Bearer =abc", "Bearer a,b"])
def test_malformed_bearer_header(oidc, value):
    assert_bearer_error(get(oidc, headers={"Authorization": value}), 401, "invalid_token", INVALID_TOKEN)


def test_unknown_token(oidc):
    assert_bearer_error(get(oidc, "not-a-token"), 401, "invalid_token", INVALID_TOKEN)


def test_revoked_token(oidc):
    token = access_token(oidc, ("openid",))
    assert oidc.revoke(token).status_code == 200
    assert_bearer_error(get(oidc, token), 401, "invalid_token", INVALID_TOKEN)


def test_expired_token(oidc):
    from storage.models import AccessToken
    token = access_token(oidc, ("openid",))
    with oidc.app.app_context():
        AccessToken.update(expires_at=AccessToken.issued_at - 1).execute()
    assert_bearer_error(get(oidc, token), 401, "invalid_token", INVALID_TOKEN)


def test_refresh_token_is_not_an_access_token(oidc):
    refresh_token = oidc.tokens()["refresh_token"]
    assert_bearer_error(get(oidc, refresh_token), 401, "invalid_token", INVALID_TOKEN)


def test_client_credentials_token_has_no_user(oidc):
    oidc.env.register("cc", scopes=("openid",))
    token = oidc.post("/oauth2/token", {"grant_type": "client_credentials", **oidc.auth("cc")}).json["access_token"]
    assert_bearer_error(get(oidc, token), 401, "invalid_token", INVALID_TOKEN)


def test_token_without_openid_scope(oidc):
    r = get(oidc, access_token(oidc, ("profile", "email")))
    assert_bearer_error(r, 403, "insufficient_scope",
                        'Bearer realm="oauth2", error="insufficient_scope", scope="openid"')


def test_deleted_user(oidc):
    from storage import users
    token = access_token(oidc, ("openid",))
    with oidc.app.app_context():
        users.delete("alice")
    assert_bearer_error(get(oidc, token), 401, "invalid_token", INVALID_TOKEN)


def test_token_in_the_query_string_is_refused(oidc):
    token = access_token(oidc, ("openid",))
    assert_bearer_error(get(oidc, query_string={"access_token": token}), 400, "invalid_request", INVALID_REQUEST)
    r = oidc.app.test_client().post(PATH + "?access_token=" + token)
    assert_bearer_error(r, 400, "invalid_request", INVALID_REQUEST)


def test_token_in_header_and_body(oidc):
    token = access_token(oidc, ("openid",))
    r = post(oidc, {"access_token": token}, headers={"Authorization": "Bearer " + token})
    assert_bearer_error(r, 400, "invalid_request", INVALID_REQUEST)


def test_duplicate_form_parameter(oidc):
    token = access_token(oidc, ("openid",))
    r = oidc.app.test_client().post(PATH, data=f"access_token={token}&access_token={token}", content_type=FORM)
    assert_bearer_error(r, 400, "invalid_request", INVALID_REQUEST)


def test_form_token_on_get_is_ignored(oidc):
    token = access_token(oidc, ("openid",))
    r = oidc.app.test_client().get(PATH, data=f"access_token={token}", content_type=FORM)
    assert_bearer_error(r, 401, "invalid_token", NO_TOKEN)


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
def test_other_methods(oidc, method):
    r = oidc.app.test_client().open(PATH, method=method)
    assert r.status_code == 405 and r.json["error"] == "invalid_request"
    assert set(r.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "POST"}

