"""Fresh databases on the machine's real PostgreSQL and MariaDB for a test session.

Each session creates its own uniquely named database and drops it at the end, so test runs
never see each other's rows. A service that does not answer fails the tests (no skipping):
.ci/run starts the services first. The admin connections can be changed with
TEST_POSTGRES_ADMIN (default postgresql://postgres@127.0.0.1:5432/test) and TEST_MYSQL_ADMIN
(default mysql://root@127.0.0.1:3306/test).
"""

from __future__ import annotations

import os
import uuid
from urllib.parse import urlsplit

KINDS = ("sqlite", "postgresql", "mysql")


def _admin(kind: str):
    if kind == "postgresql":
        import psycopg2
        parts = urlsplit(os.environ.get("TEST_POSTGRES_ADMIN", "postgresql://postgres@127.0.0.1:5432/test"))
        conn = psycopg2.connect(host=parts.hostname, port=parts.port or 5432, user=parts.username,
                                password=parts.password, dbname=parts.path.lstrip("/"), connect_timeout=5)
        conn.autocommit = True
    else:
        import pymysql
        parts = urlsplit(os.environ.get("TEST_MYSQL_ADMIN", "mysql://root@127.0.0.1:3306/test"))
        conn = pymysql.connect(host=parts.hostname, port=parts.port or 3306, user=parts.username,
                               password=parts.password or "", database=parts.path.lstrip("/"),
                               connect_timeout=5, autocommit=True)
    return conn, parts


def create(kind: str) -> str:
    """Create an empty database; returns its URL for [database.identity_db] url."""
    name = "idp_test_" + uuid.uuid4().hex[:12]
    conn, parts = _admin(kind)
    try:
        with conn.cursor() as cur:
            if kind == "postgresql":
                cur.execute(f"CREATE DATABASE {name}")
            else:
                cur.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    finally:
        conn.close()
    auth = parts.username + (f":{parts.password}" if parts.password else "")
    port = parts.port or (5432 if kind == "postgresql" else 3306)
    return f"{kind}://{auth}@{parts.hostname}:{port}/{name}"


def drop(kind: str, url: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    conn, _ = _admin(kind)
    try:
        with conn.cursor() as cur:
            if kind == "postgresql":
                cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
                cur.execute(f"DROP DATABASE IF EXISTS {name}")
            else:
                cur.execute(f"DROP DATABASE IF EXISTS {name}")
    finally:
        conn.close()
