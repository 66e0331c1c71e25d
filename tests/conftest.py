"""Fixtures: `idp` is the app built by build_app() on a real SQLite file and keystore, driven
in-process; `server` tests start the real gunicorn server (see support.Server)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import pytest

from support import claims_for, jwks_of, rsa_key, shared_keystore, sign, token_form, write_config


@dataclass
class InProcess:
    app: object
    tmp: Path
    key: object = field(default_factory=rsa_key)

    @property
    def settings(self):
        return self.app.extensions["idp"].services.settings

    @property
    def issuer(self) -> str:
        return self.settings.issuer

    def register(self, client_id: str = "client-1", keys=None, auth_method: str = "private_key_jwt",
                 grant_types=("client_credentials",), scopes=("openid", "read"), **kwargs):
        from storage import clients
        jwks = kwargs.pop("jwks", None)
        if auth_method == "private_key_jwt" and jwks is None and "jwks_uri" not in kwargs and keys is not False:
            jwks = jwks_of(*(keys or [(self.key, "k1")]))
        with self.app.app_context():
            return clients.create(client_id, auth_method, grant_types=grant_types, scopes=scopes,
                                  jwks=jwks, **kwargs)

    def assertion(self, client_id: str = "client-1", key=None, alg: str = "RS256", headers=None, **claims) -> str:
        headers = {"kid": "k1", **(headers or {})}
        headers = {k: v for k, v in headers.items() if v is not ...}
        return sign(key or self.key, claims_for(client_id, claims.pop("aud", self.issuer), **claims), alg, headers)

    def post(self, data, headers=None, content_type="application/x-www-form-urlencoded", **kwargs):
        if isinstance(data, dict):
            data = urlencode(data)
        client = self.app.test_client()
        return client.post("/oauth2/token", data=data, headers=headers or {}, content_type=content_type, **kwargs)

    def token(self, assertion: str, **extra):
        return self.post(token_form(assertion, **extra))


def make_in_process(tmp: Path, **config) -> InProcess:
    from app import build_app
    from storage.schema import upgrade
    shared_keystore(tmp)
    app = build_app(str(write_config(tmp, **config)))
    upgrade(app.extensions["idp"].services.db)
    return InProcess(app, tmp)


@pytest.fixture(scope="session")
def database_urls():
    """One fresh PostgreSQL and one fresh MariaDB database for the session (dropped at the end)."""
    import databases
    urls: dict[str, str] = {}
    yield lambda kind: urls.setdefault(kind, databases.create(kind))
    for kind, url in urls.items():
        databases.drop(kind, url)


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
def any_db(request, tmp_path, database_urls):
    """An empty identity database of each kind, schema applied; yields the peewee database."""
    from storage.database import close_all, open_database
    from storage.models import TABLES
    from storage.schema import upgrade
    url = "sqlite:///identity.db" if request.param == "sqlite" else database_urls(request.param)
    db = open_database(url, tmp_path)
    db.drop_tables(TABLES, safe=True)
    upgrade(db)
    db.url = url
    db.kind = request.param
    yield db
    close_all(db)


@pytest.fixture
def idp(tmp_path) -> InProcess:
    env = make_in_process(tmp_path)
    env.register()
    return env


@pytest.fixture
def make_idp(tmp_path):
    """Build an in-process app with a specific configuration: make_idp(pkjwt={...}, extra=...)."""
    counter = iter(range(1000))

    def build(**config) -> InProcess:
        return make_in_process(tmp_path / f"idp{next(counter)}", **config)
    return build
