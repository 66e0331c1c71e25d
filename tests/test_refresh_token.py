"""The refresh token grant (RFC 6749 §6): rotation, reuse detection, scope narrowing, and the
race-safe rotation (one conditional UPDATE) on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from oidc_support import make_oidc
from support import assert_oauth_error


@pytest.fixture
def oidc(tmp_path):
    return make_oidc(tmp_path)


def error(response, status: int, code: str) -> dict:
    return assert_oauth_error(response, status, code)


def test_refresh_rotates(oidc):
    first = oidc.tokens(scopes=("openid", "profile"))
    r = oidc.refresh(first["refresh_token"])
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.headers["Cache-Control"] == "no-store"
    body = r.json
    assert set(body) == {"access_token", "token_type", "expires_in", "scope", "refresh_token", "id_token"}
    assert body["scope"] == "openid profile" and body["expires_in"] == 3600
    assert body["refresh_token"] != first["refresh_token"] and body["access_token"] != first["access_token"]
    assert oidc.introspect(first["refresh_token"]) == {"active": False}  # rotated
    assert oidc.introspect(body["refresh_token"])["active"] is True
    # The earlier access token stays valid until it expires: only a reuse revokes the family.
    assert oidc.introspect(first["access_token"])["active"] is True
    third = oidc.refresh(body["refresh_token"])
    assert third.status_code == 200


def test_rotated_rows_share_the_family(oidc):
    import hashlib
    from storage.models import RefreshToken
    first = oidc.tokens()
    second = oidc.refresh(first["refresh_token"]).json
    with oidc.app.app_context():
        rows = {r.token_hash: r for r in RefreshToken.select()}
    old = rows[hashlib.sha256(first["refresh_token"].encode()).hexdigest()]
    new = rows[hashlib.sha256(second["refresh_token"].encode()).hexdigest()]
    assert old.state == "rotated" and new.state == "active" and old.grant_id == new.grant_id
    assert new.auth_time == old.auth_time


def test_reuse_of_a_rotated_token_revokes_the_family(oidc):
    first = oidc.tokens()
    second = oidc.refresh(first["refresh_token"]).json
    body = error(oidc.refresh(first["refresh_token"]), 400, "invalid_grant")
    assert body["error_description"] == "The refresh token has already been used"
    for token in (first["access_token"], second["access_token"], second["refresh_token"]):
        assert oidc.introspect(token) == {"active": False}
    error(oidc.refresh(second["refresh_token"]), 400, "invalid_grant")


def test_other_families_survive_a_reuse(oidc):
    a = oidc.tokens()
    b = oidc.tokens()
    oidc.refresh(a["refresh_token"])
    error(oidc.refresh(a["refresh_token"]), 400, "invalid_grant")
    assert oidc.introspect(b["refresh_token"])["active"] is True
    assert oidc.refresh(b["refresh_token"]).status_code == 200


def test_expired_refresh_token(oidc):
    from storage import refresh
    with oidc.app.app_context():
        token = refresh.issue(grant_id="g-expired", client_id="web-app", user_sub=oidc.alice.sub,
                              scopes=("openid",), auth_time=int(time.time()), lifetime=-1)
    body = error(oidc.refresh(token), 400, "invalid_grant")
    assert body["error_description"] == "The refresh token has expired"


def test_revoked_refresh_token(oidc):
    first = oidc.tokens()
    assert oidc.revoke(first["refresh_token"]).status_code == 200
    body = error(oidc.refresh(first["refresh_token"]), 400, "invalid_grant")
    assert body["error_description"] == "The refresh token has been revoked"


def test_unknown_refresh_token(oidc):
    error(oidc.refresh("not-a-refresh-token"), 400, "invalid_grant")


def test_access_token_is_not_a_refresh_token(oidc):
    error(oidc.refresh(oidc.tokens()["access_token"]), 400, "invalid_grant")


def test_another_clients_refresh_token(oidc):
    first = oidc.tokens()
    body = error(oidc.refresh(first["refresh_token"], "two-uris"), 400, "invalid_grant")
    assert body["error_description"] == "The refresh token is invalid"
    # Left alone: the rightful client can still use it.
    assert oidc.refresh(first["refresh_token"]).status_code == 200


def test_another_client_presenting_a_rotated_token_does_not_revoke(oidc):
    first = oidc.tokens()
    second = oidc.refresh(first["refresh_token"]).json
    error(oidc.refresh(first["refresh_token"], "two-uris"), 400, "invalid_grant")
    assert oidc.introspect(second["refresh_token"])["active"] is True


def test_missing_refresh_token_parameter(oidc):
    error(oidc.refresh(None), 400, "invalid_request")


def test_client_not_registered_for_refresh(oidc):
    from storage.models import Client
    first = oidc.tokens()
    with oidc.app.app_context():
        Client.update(grant_types="authorization_code").where(Client.client_id == "web-app").execute()
    error(oidc.refresh(first["refresh_token"]), 400, "unauthorized_client")


def test_scope_may_narrow(oidc):
    first = oidc.tokens(scopes=("openid", "profile", "email"))
    narrowed = oidc.refresh(first["refresh_token"], scope="profile").json
    assert narrowed["scope"] == "profile" and "id_token" not in narrowed
    assert oidc.introspect(narrowed["access_token"])["scope"] == "profile"
    # RFC 6749 §6: the new refresh token keeps the original scope.
    assert oidc.introspect(narrowed["refresh_token"])["scope"] == "openid profile email"
    full = oidc.refresh(narrowed["refresh_token"]).json
    assert full["scope"] == "openid profile email" and "id_token" in full


def test_scope_cannot_widen(oidc):
    first = oidc.tokens(scopes=("openid",))
    error(oidc.refresh(first["refresh_token"], scope="openid email"), 400, "invalid_scope")
    # The refused request did not use the token up.
    assert oidc.refresh(first["refresh_token"]).status_code == 200


def narrow_client_scopes(oidc, scopes: str) -> None:
    from storage.models import Client
    with oidc.app.app_context():  # as an administrator's edit does
        Client.update(scopes=scopes).where(Client.client_id == "web-app").execute()


def test_refresh_gives_only_scopes_the_client_is_still_registered_for(oidc):
    first = oidc.tokens(scopes=("openid", "profile", "email"))
    narrow_client_scopes(oidc, "openid email read")
    body = oidc.refresh(first["refresh_token"]).json
    assert body["scope"] == "openid email" and "id_token" in body
    assert oidc.introspect(body["access_token"])["scope"] == "openid email"
    # The new refresh token no longer carries the removed scope, even when it is registered again.
    assert oidc.introspect(body["refresh_token"])["scope"] == "openid email"
    narrow_client_scopes(oidc, "openid profile email")
    error(oidc.refresh(body["refresh_token"], scope="profile"), 400, "invalid_scope")
    assert oidc.refresh(body["refresh_token"]).json["scope"] == "openid email"


def test_refresh_cannot_ask_for_a_removed_scope(oidc):
    first = oidc.tokens(scopes=("openid", "profile"))
    narrow_client_scopes(oidc, "openid")
    error(oidc.refresh(first["refresh_token"], scope="profile"), 400, "invalid_scope")
    assert oidc.refresh(first["refresh_token"], scope="openid").json["scope"] == "openid"


def test_refresh_with_no_scope_left_is_invalid_scope(oidc):
    first = oidc.tokens(scopes=("profile", "email"))
    narrow_client_scopes(oidc, "openid read")
    body = error(oidc.refresh(first["refresh_token"]), 400, "invalid_scope")
    assert body["error_description"] == "The client is no longer registered for any scope of this grant"
    assert oidc.introspect(first["refresh_token"])["active"] is True  # refused, not used up


def test_malformed_scope(oidc):
    first = oidc.tokens()
    error(oidc.refresh(first["refresh_token"], scope='openid "x"'), 400, "invalid_request")


def test_deleted_user(oidc):
    from storage import refresh, users
    from storage.models import RefreshToken
    first = oidc.tokens()
    with oidc.app.app_context():
        users.delete("alice")
        # Even if a token row escaped the revocation, a user who no longer exists gets no tokens.
        RefreshToken.update(state="active").execute()
        assert refresh.find(first["refresh_token"]).active()
    error(oidc.refresh(first["refresh_token"]), 400, "invalid_grant")


def test_deleted_client_tokens_are_revoked(oidc):
    from storage import clients
    first = oidc.tokens()
    with oidc.app.app_context():
        clients.delete("web-app")
        from storage import refresh
        assert refresh.find(first["refresh_token"]).state == "revoked"


def test_refresh_lifetime_slides(oidc):
    from storage import refresh
    from storage.models import RefreshToken
    first = oidc.tokens()
    with oidc.app.app_context():
        RefreshToken.update(issued_at=RefreshToken.issued_at - 1000, expires_at=RefreshToken.expires_at - 1000).execute()
    second = oidc.refresh(first["refresh_token"]).json
    with oidc.app.app_context():
        found = refresh.find(second["refresh_token"])
    assert found.expires_at - found.issued_at == 86400 and found.expires_at >= int(time.time()) + 86400 - 5


def test_concurrent_refresh_exactly_one_succeeds(oidc):
    first = oidc.tokens()
    barrier = threading.Barrier(6)

    def use(_):
        barrier.wait()
        return oidc.refresh(first["refresh_token"])

    with ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(use, range(6)))
    assert sorted(r.status_code for r in responses) == [200] + [400] * 5
    assert all(r.json["error"] == "invalid_grant" for r in responses if r.status_code == 400)
    winner = next(r for r in responses if r.status_code == 200).json
    # The losers count as reuse: the family is revoked, the winner's new tokens with it.
    assert oidc.introspect(winner["refresh_token"]) == {"active": False}
    assert oidc.introspect(winner["access_token"]) == {"active": False}


# --- storage: the conditional UPDATE on every database ---------------------------------------------

def test_rotation_is_decided_by_one_update(any_db):
    from storage import refresh
    from storage.database import release
    token = refresh.issue(grant_id="family", client_id="c", user_sub="u", scopes=("openid",), auth_time=1,
                          lifetime=600)
    hashed = refresh.find(token).token_hash
    barrier = threading.Barrier(8)

    def rotate(_):
        barrier.wait()
        try:
            return refresh.rotate(hashed)
        finally:
            release(any_db)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(rotate, range(8)))
    assert results.count(True) == 1
    assert refresh.find(token).state == "rotated"
    assert refresh.rotate(hashed) is False


def test_revoke_family_and_purge(any_db):
    from storage import refresh
    from storage.tokens import TokenStore
    store = TokenStore(any_db)
    access, _ = store.issue("c", "openid", 600, user_sub="u", grant_id="family")
    other, _ = store.issue("c", "openid", 600, user_sub="u", grant_id="other")
    token = refresh.issue(grant_id="family", client_id="c", user_sub="u", scopes=(), auth_time=1, lifetime=600)
    assert refresh.revoke(token, "someone-else") is False
    assert refresh.revoke(token, "c") is True
    assert refresh.find(token).state == "revoked"
    assert not store.usable(store.find(access)) and store.usable(store.find(other))
    refresh.issue(grant_id="old", client_id="c", user_sub="u", scopes=(), auth_time=1, lifetime=-5)
    assert refresh.purge_every(any_db) == 1
    assert refresh.find(token) is not None
