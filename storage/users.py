"""End users and admins: accounts, password hashes, browser sessions.

Passwords are hashed with scrypt (memory-hard, RFC 7914); the stored form names its parameters
so they can be raised later without invalidating existing hashes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

import peewee

from storage.hashing import sha256_hex as _session_hash
from storage.models import AccessToken, Consent, RefreshToken, User, UserSession

# RFC 7914 §2 parameters: N = 2**15, r = 8 → 32 MiB per hash, about 0.1 s on one core.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2 ** 15, 8, 1
_MAXMEM = 64 * 1024 * 1024
MAX_PASSWORD_BYTES = 1024


@dataclass(frozen=True)
class Account:
    sub: str
    username: str
    is_admin: bool
    claims: dict[str, Any]


def plausible_id(value: str) -> bool:
    """Whether a string can be a stored user name or subject: 1–255 characters, no NUL
    (PostgreSQL refuses NUL in text, so it must never reach a query)."""
    return isinstance(value, str) and 0 < len(value) <= 255 and "\x00" not in value


def hash_password(password: str, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM, dklen=32)
    b64 = lambda b: base64.b64encode(b).decode("ascii")
    return f"scrypt${n}${r}${p}${b64(salt)}${b64(digest)}"


def verify_password(stored: str, password: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(password.encode("utf-8"), salt=base64.b64decode(salt), n=int(n), r=int(r),
                                p=int(p), maxmem=_MAXMEM, dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


# Verified against when the user name is unknown, so that the answer takes as long either way.
_DUMMY_HASH = hash_password(secrets.token_urlsafe(16))


def check_username(username: str) -> str | None:
    """Why a user name cannot be registered, or None."""
    if not 1 <= len(username) <= 255:
        return "a user name has 1 to 255 characters"
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7f for c in username):
        return "a user name has no spaces or control characters"
    return None


def check_password(password: str) -> str | None:
    if len(password) < 8:
        return "a password has at least 8 characters"
    if len(password.encode("utf-8")) > MAX_PASSWORD_BYTES:
        return f"a password has at most {MAX_PASSWORD_BYTES} bytes"
    return None


def _account(row: User) -> Account:
    return Account(row.sub, row.username, bool(row.is_admin), json.loads(row.claims or "{}"))


def create(username: str, password: str, *, is_admin: bool = False, claims: dict[str, Any] | None = None) -> Account:
    """Register a user; raises ValueError with a reason fit to show."""
    problem = check_username(username) or check_password(password)
    if problem:
        raise ValueError(problem)
    if User.select().where(peewee.fn.LOWER(User.username) == username.lower()).exists():
        raise ValueError("a user with this user name (ignoring case) already exists")
    now = int(time.time())
    try:
        row = User.create(sub=str(uuid.uuid4()), username=username, password_hash=hash_password(password),
                          is_admin=is_admin, claims=json.dumps(claims or {}), created_at=now, updated_at=now)
    except peewee.IntegrityError:
        raise ValueError("a user with this user name already exists") from None
    return _account(row)


def get_by_username(username: str) -> Account | None:
    if not plausible_id(username):
        return None
    row = User.get_or_none(User.username == username)
    return _account(row) if row is not None and row.username == username else None


def get_by_sub(sub: str) -> Account | None:
    if not plausible_id(sub):
        return None
    row = User.get_or_none(User.sub == sub)
    return _account(row) if row is not None else None


def all_users() -> list[Account]:
    return [_account(row) for row in User.select().order_by(User.username)]


def authenticate(username: str, password: str) -> Account | None:
    """The account when the password is right; None otherwise, in about the same time either way."""
    if not plausible_id(username) or len(password.encode("utf-8")) > MAX_PASSWORD_BYTES:
        verify_password(_DUMMY_HASH, password[:MAX_PASSWORD_BYTES])
        return None
    row = User.get_or_none(User.username == username)
    if row is None or row.username != username:  # exact match, whatever the collation says
        verify_password(_DUMMY_HASH, password)
        return None
    return _account(row) if verify_password(row.password_hash, password) else None


def set_password(username: str, password: str) -> bool:
    """Change the password and end every session of the user: whoever signed in with the old
    password (perhaps the reason for the change) is signed out on every browser."""
    problem = check_password(password)
    if problem:
        raise ValueError(problem)
    account = get_by_username(username)
    if account is None:
        return False
    User.update(password_hash=hash_password(password), updated_at=int(time.time())).where(
        User.sub == account.sub).execute()
    UserSession.delete().where(UserSession.user_sub == account.sub).execute()
    return True


def delete(username: str) -> bool:
    """Delete the user, end their sessions, forget their consents and revoke their refresh tokens."""
    account = get_by_username(username)
    if account is None:
        return False
    UserSession.delete().where(UserSession.user_sub == account.sub).execute()
    Consent.delete().where(Consent.user_sub == account.sub).execute()
    RefreshToken.update(state="revoked").where(RefreshToken.user_sub == account.sub).execute()
    AccessToken.update(revoked=True).where(AccessToken.user_sub == account.sub).execute()
    return User.delete().where(User.sub == account.sub).execute() == 1


# --- browser sessions ---------------------------------------------------------------------------

def start_session(account: Account, lifetime: int, auth_time: int | None = None) -> str:
    """A new session (a new value at every sign-in: no session fixation); returns the cookie value.
    `auth_time` is when the user authenticated (default: now)."""
    value = secrets.token_urlsafe(32)
    now = int(time.time()) if auth_time is None else auth_time
    UserSession.create(session_hash=_session_hash(value), user_sub=account.sub, auth_time=now,
                       expires_at=now + lifetime)
    return value


def session_account(value: str | None) -> tuple[Account, int] | None:
    """The signed-in account and its auth_time for a session cookie value, if the session is live."""
    if not value or len(value) > 128:
        return None
    row = UserSession.get_or_none(UserSession.session_hash == _session_hash(value))
    if row is None or row.expires_at <= int(time.time()):
        return None
    account = get_by_sub(row.user_sub)
    return (account, row.auth_time) if account is not None else None


def end_session(value: str | None) -> None:
    if value and len(value) <= 128:
        UserSession.delete().where(UserSession.session_hash == _session_hash(value)).execute()
