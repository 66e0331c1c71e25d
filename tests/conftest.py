"""Fixtures: `idp` is the app built by build_app() on a real SQLite file and keystore, driven
in-process; `server` tests start the real gunicorn server (see support.Server)."""

from __future__ import annotations

import pytest

from support import InProcess, make_in_process


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
