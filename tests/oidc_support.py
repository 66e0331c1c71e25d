"""Support for the OpenID Connect token-endpoint tests: an in-process app with a user and clients
registered for the authorization code grant, codes issued through the product's own storage
(storage.codes.issue, as the authorization endpoint does), and small request helpers."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

from support import InProcess, make_in_process
from support import ASSERTION_TYPE

REDIRECT = "http://localhost:8080/playground2/oauth2client"
OTHER_REDIRECT = "https://app.example.com/cb"
FORM = "application/x-www-form-urlencoded"
ALICE_CLAIMS = {"preferred_username": "alice", "name": "Alice Liddell", "given_name": "Alice",
                "family_name": "Liddell", "email": "alice@example.com", "email_verified": True,
                "phone_number": "+1 555 0100", "address": {"country": "UK"}, "custom": "not a standard claim"}
CODE_GRANTS = ("authorization_code", "refresh_token")


def verifier_pair() -> tuple[str, str]:
    """A PKCE code_verifier and its S256 code_challenge (RFC 7636 §4.1, §4.2), computed here
    independently of the server's code."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def b64url_json(segment: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


@dataclass
class OIDC:
    """An in-process app with user `alice` and clients:
    web-app (private_key_jwt; code + refresh), public-app (none; code + refresh),
    secret-app (client_secret_basic; code only), two-uris (private_key_jwt; two redirect URIs)."""

    env: InProcess
    alice: object = None
    secrets: dict[str, str] = field(default_factory=dict)

    @property
    def app(self):
        return self.env.app

    def setup(self) -> "OIDC":
        from storage import users
        scopes = ("openid", "profile", "email", "phone", "address", "read")
        self.env.register("web-app", grant_types=CODE_GRANTS, scopes=scopes, redirect_uris=(REDIRECT,))
        self.env.register("public-app", auth_method="none", grant_types=CODE_GRANTS, scopes=scopes,
                          redirect_uris=(REDIRECT,))
        _, secret = self.env.register("secret-app", auth_method="client_secret_basic",
                                      grant_types=("authorization_code",), scopes=scopes, redirect_uris=(REDIRECT,))
        self.secrets["secret-app"] = secret
        self.env.register("two-uris", grant_types=CODE_GRANTS, scopes=scopes, redirect_uris=(REDIRECT, OTHER_REDIRECT))
        with self.app.app_context():
            self.alice = users.create("alice", "correct horse battery", claims=ALICE_CLAIMS)
        return self

    def code(self, client_id: str = "web-app", scopes=("openid", "profile"), redirect_uri: str = REDIRECT,
             nonce: str | None = None, challenge: str | None = None, method: str | None = "S256",
             auth_time: int | None = None, lifetime: int = 60, user_sub: str | None = None,
             redirect_uri_sent: bool = True) -> str:
        from storage import codes
        with self.app.app_context():
            return codes.issue(client_id=client_id, user_sub=user_sub or self.alice.sub, redirect_uri=redirect_uri,
                               scopes=tuple(scopes), nonce=nonce, code_challenge=challenge,
                               code_challenge_method=method if challenge else None,
                               auth_time=auth_time if auth_time is not None else int(time.time()) - 5,
                               lifetime=lifetime, redirect_uri_sent=redirect_uri_sent)

    def auth(self, client_id: str = "web-app") -> dict:
        """Client authentication parameters: a fresh assertion, or client_id alone for the public client."""
        if client_id == "public-app":
            return {"client_id": client_id}
        if client_id == "secret-app":
            return {}
        return {"client_assertion_type": ASSERTION_TYPE, "client_assertion": self.env.assertion(client_id)}

    def headers(self, client_id: str) -> dict:
        if client_id == "secret-app":
            raw = f"secret-app:{self.secrets['secret-app']}".encode()
            return {"Authorization": "Basic " + base64.b64encode(raw).decode()}
        return {}

    def post(self, path: str, form: dict, headers: dict | None = None):
        """POST a form; parameters given as None are left out."""
        form = {k: v for k, v in form.items() if v is not None}
        return self.app.test_client().post(path, data=urlencode(form), content_type=FORM, headers=headers or {})

    def redeem(self, code: str, client_id: str = "web-app", **extra):
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
                **self.auth(client_id), **extra}
        return self.post("/oauth2/token", form, self.headers(client_id))

    def refresh(self, refresh_token: str, client_id: str = "web-app", **extra):
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token, **self.auth(client_id), **extra}
        return self.post("/oauth2/token", form, self.headers(client_id))

    def introspect(self, token: str, client_id: str = "web-app", **extra) -> dict:
        r = self.post("/oauth2/introspect", {"token": token, **self.auth(client_id), **extra}, self.headers(client_id))
        assert r.status_code == 200, r.get_data(as_text=True)
        return r.json

    def revoke(self, token: str, client_id: str = "web-app", **extra):
        return self.post("/oauth2/revoke", {"token": token, **self.auth(client_id), **extra}, self.headers(client_id))

    def tokens(self, **code_args) -> dict:
        """A successful code redemption's body."""
        r = self.redeem(self.code(**code_args))
        assert r.status_code == 200, r.get_data(as_text=True)
        return r.json


def make_oidc(tmp: Path, **config) -> OIDC:
    return OIDC(make_in_process(tmp, **config)).setup()
