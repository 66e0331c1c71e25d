"""Users and admins: password hashing, authentication, sessions, the CLI, and the schema upgrade
from version 1 that added them — on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest

from storage import codes, users
from storage.models import SCHEMA_VERSION, AccessToken, RefreshToken, SchemaVersion, User, UserSession


def test_password_hash_is_scrypt_salted_and_verifies():
    first = users.hash_password("correct horse battery")
    second = users.hash_password("correct horse battery")
    scheme, n, r, p, salt, digest = first.split("$")
    assert (scheme, int(n), int(r), int(p)) == ("scrypt", 2 ** 15, 8, 1)
    assert first != second  # a fresh salt each time
    assert users.verify_password(first, "correct horse battery")
    assert not users.verify_password(first, "correct horse batterY")
    assert not users.verify_password(first, "")


@pytest.mark.parametrize("stored", ["", "plain", "scrypt$1$2$3", "sha256$x$y$z$a$b", "scrypt$x$8$1$AA==$AA=="])
def test_malformed_stored_hash_never_verifies(stored):
    assert users.verify_password(stored, "anything") is False


def test_create_authenticate_and_refusals(any_db):
    alice = users.create("alice", "correct horse", claims={"name": "Alice"})
    assert alice.username == "alice" and not alice.is_admin and alice.claims == {"name": "Alice"}
    row = User.get(User.username == "alice")
    assert "correct horse" not in row.password_hash and row.password_hash.startswith("scrypt$")
    assert users.authenticate("alice", "correct horse") == alice
    assert users.authenticate("alice", "wrong password") is None
    assert users.authenticate("Alice", "correct horse") is None       # exact user names
    assert users.authenticate("alice ", "correct horse") is None
    assert users.authenticate("nobody", "correct horse") is None
    assert users.authenticate("alice", "x" * 2000) is None
    with pytest.raises(ValueError, match="ignoring case"):
        users.create("ALICE", "another password")
    with pytest.raises(ValueError, match="at least 8"):
        users.create("bob", "short")
    with pytest.raises(ValueError, match="spaces"):
        users.create("bo b", "long enough")
    with pytest.raises(ValueError, match="1 to 255"):
        users.create("", "long enough")
    admin = users.create("root", "admin password", is_admin=True)
    assert admin.is_admin
    assert [a.username for a in users.all_users()] == ["alice", "root"]


def test_sessions_are_stored_hashed_expire_and_end(any_db):
    alice = users.create("alice", "correct horse")
    value = users.start_session(alice, lifetime=60)
    row = UserSession.get()
    assert row.session_hash == hashlib.sha256(value.encode()).hexdigest() and value not in row.session_hash
    account, auth_time = users.session_account(value)
    assert account == alice and abs(auth_time - time.time()) < 5
    assert users.session_account(value + "x") is None
    assert users.session_account(None) is None
    assert users.session_account("x" * 500) is None
    assert users.start_session(alice, 60) != value  # every sign-in gets a new value
    UserSession.update(expires_at=int(time.time()) - 1).where(UserSession.session_hash == row.session_hash).execute()
    assert users.session_account(value) is None
    fresh = users.start_session(alice, 60)
    users.end_session(fresh)
    assert users.session_account(fresh) is None


def test_deleting_a_user_ends_sessions_and_revokes_tokens(any_db):
    alice = users.create("alice", "correct horse")
    session = users.start_session(alice, 60)
    now = int(time.time())
    AccessToken.create(token_hash="a" * 64, client_id="c", scope="openid", issued_at=now, expires_at=now + 60,
                       user_sub=alice.sub, grant_id="g")
    RefreshToken.create(token_hash="r" * 64, grant_id="g", client_id="c", user_sub=alice.sub, scope="openid",
                        auth_time=now, issued_at=now, expires_at=now + 60)
    assert users.delete("alice") is True
    assert users.delete("alice") is False
    assert users.session_account(session) is None
    assert AccessToken.get().revoked is True
    assert RefreshToken.get().state == "revoked"


def _code(**overrides):
    values = dict(client_id="c", user_sub="u", redirect_uri="https://app.example/cb", scopes=("openid",),
                  nonce="n", code_challenge=None, code_challenge_method=None, auth_time=1, lifetime=60)
    values.update(overrides)
    return codes.issue(**values)


def test_codes_single_use_and_reuse_revokes(any_db):
    code = _code()
    grant = codes.redeem(code, "c")
    assert (grant.client_id, grant.redirect_uri, grant.scopes, grant.nonce) == ("c", "https://app.example/cb",
                                                                               ("openid",), "n")
    now = int(time.time())
    AccessToken.create(token_hash="b" * 64, client_id="c", scope="openid", issued_at=now, expires_at=now + 60,
                       user_sub="u", grant_id=grant.grant_id)
    with pytest.raises(codes.CodeError) as second:
        codes.redeem(code, "c")
    assert second.value.reason == "reused"
    assert AccessToken.get().revoked is True
    for bad in ("", "x" * 600, "unknown-code"):
        with pytest.raises(codes.CodeError) as exc:
            codes.redeem(bad, "c")
        assert exc.value.reason == "unknown"
    expired = _code(lifetime=-1)
    with pytest.raises(codes.CodeError) as exc:
        codes.redeem(expired, "c")
    assert exc.value.reason == "expired"


def test_schema_upgrade_from_version_1_adds_tables_and_columns(any_db):
    """A database created by schema version 1 keeps its rows and gains the new tables and columns."""
    from storage.models import TABLES
    from storage.schema import upgrade
    any_db.drop_tables(TABLES, safe=True)
    any_db.execute_sql("CREATE TABLE oauth_access_token (token_hash VARCHAR(64) PRIMARY KEY, "
                       "client_id VARCHAR(255) NOT NULL, scope TEXT NOT NULL, issued_at BIGINT NOT NULL, "
                       "expires_at BIGINT NOT NULL, revoked BOOLEAN NOT NULL)")
    any_db.execute_sql("INSERT INTO oauth_access_token VALUES ('h', 'c', 'read', 1, 2, FALSE)")
    any_db.create_tables([SchemaVersion])
    SchemaVersion.create(version=1, applied_at=1)
    assert upgrade(any_db) == SCHEMA_VERSION
    row = AccessToken.get(AccessToken.token_hash == "h")
    assert (row.client_id, row.scope, row.user_sub, row.grant_id) == ("c", "read", None, None)
    assert "grant_id" in {c for index in any_db.get_indexes("oauth_access_token") for c in index.columns}
    assert User.select().count() == 0
    assert upgrade(any_db) == SCHEMA_VERSION  # idempotent
    assert [v.version for v in SchemaVersion.select().order_by(SchemaVersion.version)] == [1, SCHEMA_VERSION]
    # A node still on version 1 keeps inserting clients without the new columns (rolling upgrade).
    any_db.execute_sql("INSERT INTO oauth_client (client_id, client_name, auth_method, grant_types, scopes, "
                       "redirect_uris, created_at, updated_at) VALUES ('old-node', '', 'private_key_jwt', "
                       "'client_credentials', '', '', 1, 1)")
    from storage import clients
    old = clients.get("old-node")
    assert (old.description, old.first_party) == ("", False)
    assert (old.dpop_bound_access_tokens, old.require_dpop_nonce, old.resources, old.access_token_format) == \
        (False, False, (), None)
    assert (old.require_pushed_authorization_requests, old.tls_client_certificate_bound_access_tokens,
            old.profile, old.require_explicit_typ) == (False, False, None, None)


def test_concurrent_upgrades_from_version_1(any_db):
    """Four processes upgrading one version 1 database at the same moment all succeed."""
    import multiprocessing
    from storage.models import TABLES
    any_db.drop_tables(TABLES, safe=True)
    any_db.execute_sql("CREATE TABLE oauth_access_token (token_hash VARCHAR(64) PRIMARY KEY, "
                       "client_id VARCHAR(255) NOT NULL, scope TEXT NOT NULL, issued_at BIGINT NOT NULL, "
                       "expires_at BIGINT NOT NULL, revoked BOOLEAN NOT NULL)")
    any_db.create_tables([SchemaVersion])
    SchemaVersion.create(version=1, applied_at=1)
    from storage.database import close_all
    close_all(any_db)
    url = any_db.url
    base = str(Path(any_db.database).parent) if any_db.kind == "sqlite" else "."
    context = multiprocessing.get_context("spawn")
    with context.Pool(4) as pool:
        results = pool.starmap(_upgrade_in_process, [(url, base)] * 4)
    assert results == [SCHEMA_VERSION] * 4


def _upgrade_in_process(url: str, base: str) -> int:
    from storage.database import close_all, database_proxy, open_database
    from storage.schema import upgrade
    db = open_database(url, Path(base))
    database_proxy.initialize(db)
    try:
        return upgrade(db)
    finally:
        close_all(db)


def test_cli_users_and_admin(tmp_path):
    from support import make_in_process
    env = make_in_process(tmp_path)
    runner = env.app.test_cli_runner()
    result = runner.invoke(args=["users", "create", "--username", "alice", "--password-stdin", "--name", "Alice",
                                 "--email", "alice@example.com", "--email-verified"], input="correct horse\n")
    assert result.exit_code == 0, result.output
    assert '"email_verified": true' in result.output and "correct horse" not in result.output
    result = runner.invoke(args=["admin", "create", "--username", "root", "--password-stdin"], input="admin password\n")
    assert result.exit_code == 0 and '"is_admin": true' in result.output
    result = runner.invoke(args=["users", "create", "--username", "bob", "--password-stdin"], input="short\n")
    assert result.exit_code == 2 and "at least 8" in result.output
    result = runner.invoke(args=["users", "list"])
    assert '"alice"' in result.output and '"root"' in result.output and "scrypt" not in result.output
    result = runner.invoke(args=["users", "set-password", "--username", "alice", "--password-stdin"],
                           input="new password!\n")
    assert result.exit_code == 0
    with env.app.app_context():
        assert users.authenticate("alice", "new password!") is not None
        assert users.authenticate("alice", "correct horse") is None
    assert runner.invoke(args=["users", "delete", "--username", "alice"]).exit_code == 0
    assert runner.invoke(args=["users", "delete", "--username", "alice"]).exit_code == 2


@pytest.mark.parametrize("value", ["al\x00ice", "\x00", "x" * 256, ""])
def test_implausible_identifiers_never_reach_the_database(any_db, value):
    """PostgreSQL refuses NUL in text (a 500 if it reached a query); the answer is "no such"."""
    from storage import clients
    users.create("alice", "correct horse")
    assert clients.get(value) is None
    assert users.get_by_username(value) is None
    assert users.get_by_sub(value) is None
    assert users.authenticate(value, "correct horse") is None


def test_deleting_a_client_leaves_nothing_a_new_client_with_its_id_could_inherit(any_db):
    from storage import clients
    from storage.models import AuthFailure, AuthorizationCode, Consent
    clients.create("web", "client_secret_basic", grant_types=("authorization_code",),
                   redirect_uris=("https://app.example/cb",), scopes=("openid",))
    clients.create("other", "client_secret_basic", grant_types=("authorization_code",),
                   redirect_uris=("https://other.example/cb",), scopes=("openid",))
    for client_id in ("web", "other"):
        Consent.create(user_sub="u", client_id=client_id, scopes="openid", granted_at=1)
        _code(client_id=client_id)
        AuthFailure.create(client_id=client_id, time=1, reason="signature")
    assert clients.delete("web") is True
    for model in (Consent, AuthorizationCode, AuthFailure):
        assert [row.client_id for row in model.select()] == ["other"], model


def test_periodic_purge_removes_expired_sessions(any_db):
    from storage.tokens import TokenStore
    alice = users.create("alice", "correct horse")
    live = users.start_session(alice, 60)
    users.start_session(alice, -10)
    assert TokenStore(any_db).purge_batch(int(time.time())) == 1
    assert UserSession.select().count() == 1 and users.session_account(live) is not None


def test_changing_a_password_ends_every_session_of_the_user(any_db):
    alice = users.create("alice", "correct horse")
    bob = users.create("bob", "correct horse")
    alice_sessions = [users.start_session(alice, 60) for _ in range(2)]   # two browsers
    bob_session = users.start_session(bob, 60)
    with pytest.raises(ValueError, match="at least 8"):
        users.set_password("alice", "short")
    assert all(users.session_account(value) is not None for value in alice_sessions)   # nothing changed
    assert users.set_password("alice", "a brand new password") is True
    assert [users.session_account(value) for value in alice_sessions] == [None, None]
    assert UserSession.select().where(UserSession.user_sub == alice.sub).count() == 0
    assert users.session_account(bob_session)[0] == bob                                 # others keep theirs
    assert users.authenticate("alice", "a brand new password") == alice
    assert users.set_password("nobody", "a brand new password") is False
    assert users.set_password("ALICE", "a brand new password") is False               # exact user names


def _grant_rows(user_sub: str, client_id: str, now: int, tag: str) -> str:
    """A consent, a pending code, and a live refresh and access token of one user for one client."""
    from storage.models import Consent
    Consent.create(user_sub=user_sub, client_id=client_id, scopes="openid offline_access", granted_at=now)
    AccessToken.create(token_hash=f"a-{tag}".ljust(64, "0"), client_id=client_id, scope="openid", issued_at=now,
                       expires_at=now + 60, user_sub=user_sub, grant_id=f"g-{tag}")
    RefreshToken.create(token_hash=f"r-{tag}".ljust(64, "0"), grant_id=f"g-{tag}", client_id=client_id,
                        user_sub=user_sub, scope="openid offline_access", auth_time=now, issued_at=now,
                        expires_at=now + 600)
    return _code(client_id=client_id, user_sub=user_sub)


def test_withdrawing_a_consent_revokes_the_clients_tokens_for_the_user(any_db):
    from storage import consents
    now = int(time.time())
    mine = _grant_rows("alice", "web", now, "mine")
    other_client = _grant_rows("alice", "other", now, "client")
    other_user = _grant_rows("bob", "web", now, "user")
    # An expired token and a rotated refresh token are not counted as revoked.
    AccessToken.create(token_hash="expired".ljust(64, "0"), client_id="web", scope="openid", issued_at=now - 120,
                       expires_at=now - 60, user_sub="alice", grant_id="g-old")
    RefreshToken.create(token_hash="rotated".ljust(64, "0"), grant_id="g-mine", client_id="web", user_sub="alice",
                        scope="openid", auth_time=now, issued_at=now, expires_at=now + 600, state="rotated")

    done = consents.withdraw("alice", "web")
    assert done == consents.Withdrawal(consent=True, codes=1, refresh_tokens=1, access_tokens=1)
    assert consents.granted("alice", "web") == frozenset()
    assert AccessToken.get(AccessToken.token_hash == "a-mine".ljust(64, "0")).revoked is True
    assert RefreshToken.get(RefreshToken.token_hash == "r-mine".ljust(64, "0")).state == "revoked"
    with pytest.raises(codes.CodeError) as refused:   # a code issued before is of no use any more
        codes.redeem(mine, "web")
    assert refused.value.reason == "reused"
    # Another client of the user, and another user of the client, are untouched.
    assert consents.granted("alice", "other") == {"openid", "offline_access"}
    assert consents.granted("bob", "web") == {"openid", "offline_access"}
    for tag in ("client", "user"):
        assert AccessToken.get(AccessToken.token_hash == f"a-{tag}".ljust(64, "0")).revoked is False
        assert RefreshToken.get(RefreshToken.token_hash == f"r-{tag}".ljust(64, "0")).state == "active"
    assert codes.redeem(other_client, "other").user_sub == "alice" and codes.redeem(other_user, "web").user_sub == "bob"
    # Client ids compare exactly; a second withdrawal finds nothing.
    assert consents.withdraw("alice", "WEB") == consents.Withdrawal(False, 0, 0, 0)
    assert consents.withdraw("alice", "web") == consents.Withdrawal(False, 0, 0, 0)


def test_cli_revoke_consent(tmp_path):
    from support import make_in_process
    from storage import consents
    env = make_in_process(tmp_path)
    runner = env.app.test_cli_runner()
    with env.app.app_context():
        alice = users.create("alice", "correct horse")
        _grant_rows(alice.sub, "web", int(time.time()), "cli")
    result = runner.invoke(args=["users", "revoke-consent", "--username", "alice", "--client-id", "web"])
    assert result.exit_code == 0, result.output
    assert result.output == ("withdrew the consent of alice for web; revoked 1 refresh tokens, 1 access tokens "
                             "and 1 authorization codes\n")
    with env.app.app_context():
        assert consents.granted(alice.sub, "web") == frozenset()
        assert RefreshToken.get().state == "revoked" and AccessToken.get().revoked is True
    again = runner.invoke(args=["users", "revoke-consent", "--username", "alice", "--client-id", "web"])
    assert again.exit_code == 1 and "alice has no consent and no live tokens for client web" in again.output
    unknown = runner.invoke(args=["users", "revoke-consent", "--username", "nobody", "--client-id", "web"])
    assert unknown.exit_code == 2 and "no user nobody" in unknown.output
    missing = runner.invoke(args=["users", "revoke-consent", "--username", "alice"])
    assert missing.exit_code == 2 and "--client-id" in missing.output


def test_cli_set_password_signs_the_user_out(tmp_path):
    from support import make_in_process
    env = make_in_process(tmp_path)
    with env.app.app_context():
        session = users.start_session(users.create("alice", "correct horse"), 60)
    result = env.app.test_cli_runner().invoke(args=["users", "set-password", "--username", "alice",
                                                    "--password-stdin"], input="a brand new password\n")
    assert result.exit_code == 0, result.output
    with env.app.app_context():
        assert users.session_account(session) is None
