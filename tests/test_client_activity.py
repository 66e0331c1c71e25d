"""Per-client activity (IDN_OAUTH_CLIENT_ACTIVITY) and the migration report.

Unit: which counters an event moves; the upsert adds (never replaces) on SQLite, PostgreSQL and
MariaDB, also from two processes at once; purging by age; the listener counts in memory, starts
its thread lazily (after a fork, afresh), keeps counts the database refused and writes them
later; the report's verdicts. Integration: the real server with two workers on SQLite and on
PostgreSQL, known token requests, then the console pages and `flask clients report --json`
with exact figures; a worker's counts are written when it exits."""

from __future__ import annotations

import base64
import html
import json
import multiprocessing
import os
import re
import threading
import time
from types import SimpleNamespace

import pytest
import requests
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from support import (Server, assert_oauth_error, claims_for, dpop_proof, ec_key, free_port, jwks_of, rsa_key,
                     shared_keystore, sign, token_form, write_config)

from handlers.client_activity import (AUDIENCE_STRICT, EXPLICIT_TYP_ON, FAPI2_PROFILE, ClientActivityListener,
                                      counter_names, judge)
from storage import activity
from storage.clients import RegisteredClient
from storage.models import SCHEMA_VERSION, ClientActivity, SchemaVersion

ADMIN, ADMIN_PASSWORD = "admin", "activity-admin-password"


# --- which counters an event moves ---------------------------------------------------------------

def auth(outcome: str, known: bool = True, **extra) -> dict:
    return {"client_id": "c", "client_known": known, "outcome": outcome, **extra}


@pytest.mark.parametrize("event,data,names", [
    ("token_issued", {"binding": "bearer"}, ["issued", "binding:bearer"]),
    ("token_issued", {"binding": "dpop+mtls"}, ["issued", "binding:dpop+mtls"]),
    ("token_issued", {"binding": "something"}, ["issued"]),
    ("token_error", {"error": "invalid_scope", "reason": None}, ["failure:invalid_scope"]),
    ("token_error", {"error": "invalid_grant", "reason": "code_reused"}, ["failure:code_reused"]),
    ("client_authentication", auth("failure", reason="signature"), ["failure:signature"]),
    ("client_authentication", auth("failure", reason="rate_limited"), ["failure:rate_limited"]),
    ("client_authentication", auth("failure", reason="Evil <script>"), ["failure:other"]),
    ("client_authentication", auth("failure", reason="x" * 49), ["failure:other"]),
    # A client id nobody registered grows nothing.
    ("client_authentication", auth("failure", known=False, reason="unknown_client"), []),
    ("client_authentication", auth("success"), []),   # a secret or mTLS: no assertion
    ("client_authentication", auth("success", assertion={"aud": "issuer", "typ": None, "alg": "RS256",
                                                         "lifetime": 300}),
     ["aud:issuer", "typ:absent", "alg:RS256", "lifetime:300"]),
    ("client_authentication", auth("success", assertion={"aud": "array", "typ": "JWT", "alg": "ES256",
                                                         "lifetime": 301}),
     ["aud:array", "typ:jwt", "alg:ES256", "lifetime:3600"]),
    ("client_authentication", auth("success", assertion={"aud": "token_endpoint",
                                                         "typ": "application/Client-Authentication+JWT",
                                                         "alg": "none", "lifetime": 60}),
     ["aud:token_endpoint", "typ:explicit", "alg:other", "lifetime:60"]),
    ("client_authentication", auth("success", assertion={"aud": "elsewhere", "typ": "at+jwt", "alg": "PS256",
                                                         "lifetime": 3601}),
     ["aud:other", "typ:other", "alg:PS256", "lifetime:long"]),
    ("metrics", {"client_id": "c"}, []),
])
def test_counter_names(event, data, names):
    assert counter_names(event, {"client_id": "c", **data}) == names


# --- the table on the three databases ------------------------------------------------------------

def rows(db) -> dict[tuple, tuple]:
    return {(r.client_id, r.hour, r.name): (r.count, r.last_time) for r in ClientActivity.select()}


def test_table_definition(any_db):
    table = "IDN_OAUTH_CLIENT_ACTIVITY"
    assert {c.name.upper() for c in any_db.get_columns(table)} == {"CLIENT_ID", "EPOCH_HOUR", "COUNTER", "TOTAL",
                                                                    "LAST_TIME"}
    assert [c.upper() for c in any_db.get_primary_keys(table)] == ["CLIENT_ID", "EPOCH_HOUR", "COUNTER"]
    assert "EPOCH_HOUR" in {c.upper() for i in any_db.get_indexes(table) for c in i.columns}


def test_upsert_adds_counts_and_keeps_the_latest_time(any_db):
    assert activity.add({("a", 10, "issued"): (2, 1000), ("a", 10, "failure:signature"): (1, 1001)}) == 2
    assert activity.add({("a", 10, "issued"): (3, 999), ("a", 11, "issued"): (1, 4000),
                         ("B", 10, "issued"): (5, 1002)}) == 3
    assert rows(any_db) == {("a", 10, "issued"): (5, 1000), ("a", 10, "failure:signature"): (1, 1001),
                            ("a", 11, "issued"): (1, 4000), ("B", 10, "issued"): (5, 1002)}
    assert activity.add({}) == 0
    # Client ids compare exactly: "b" is not "B".
    activity.add({("b", 10, "issued"): (1, 1003)})
    assert rows(any_db)[("b", 10, "issued")] == (1, 1003) and rows(any_db)[("B", 10, "issued")] == (5, 1002)
    assert activity.hourly("a", 11) == {(11, "issued"): 1}
    assert activity.totals(10) == {"a": {"issued": 6, "failure:signature": 1}, "B": {"issued": 5},
                                   "b": {"issued": 1}}
    assert activity.totals(11, ["a", "B"]) == {"a": {"issued": 1}}
    assert activity.last_issued() == {"a": 4000, "B": 1002, "b": 1003}
    assert activity.failures_since(10) == {"a": 1} and activity.failures_since(11) == {}


def test_a_writer_uses_its_own_database_whatever_the_models_point_at(any_db, tmp_path):
    """A listener writes to the database its chain was built with, even while the models are
    bound to another one (two apps in one process)."""
    import peewee
    from storage.schema import upgrade
    own = peewee.SqliteDatabase(str(tmp_path / "own.db"))
    current = ClientActivity._meta.database.obj
    ClientActivity._meta.database.initialize(own)
    upgrade(own)
    ClientActivity._meta.database.initialize(current)   # back to any_db
    assert activity.add({("c", 1, "issued"): (1, 10)}, own) == 1
    assert activity.add({("c", 1, "issued"): (2, 20)}, own) == 1
    assert own.execute_sql('SELECT "TOTAL", "LAST_TIME" FROM "IDN_OAUTH_CLIENT_ACTIVITY"').fetchall() == [(3, 20)]
    assert ClientActivity.select().count() == 0   # any_db: untouched
    assert activity.purge(2, own) == 1
    own.close()


def test_large_batch(any_db):
    counts = {(f"client-{i}", 7, "issued"): (i + 1, 100) for i in range(1200)}   # three statements
    assert activity.add(counts) == 1200
    assert activity.add(counts) == 1200
    assert ClientActivity.select().count() == 1200
    assert sum(r.count for r in ClientActivity.select()) == 2 * sum(range(1, 1201))


def test_purge_deletes_old_hours_only(any_db):
    activity.add({("a", h, "issued"): (1, h * 3600) for h in range(100, 110)})
    assert activity.purge(105) == 5
    assert sorted(h for _, h, _ in rows(any_db)) == list(range(105, 110))
    assert activity.purge(105) == 0


def _add_many(url: str, base: str, rounds: int, barrier) -> None:
    from storage.database import open_database
    from pathlib import Path
    open_database(url, Path(base))
    barrier.wait()
    for i in range(rounds):
        activity.add({("shared", 1, "issued"): (1, i), ("shared", 1, "failure:signature"): (2, i),
                      (f"own-{os.getpid()}", 1, "issued"): (1, i)})


def test_two_processes_add_to_the_same_rows(any_db, tmp_path):
    """Two nodes flushing at once: every count arrives (no lost update, no deadlock)."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    workers = [context.Process(target=_add_many, args=(any_db.url, str(tmp_path), 40, barrier)) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
        assert w.exitcode == 0
    counts = {name: count for (client, _, name), (count, _) in rows(any_db).items() if client == "shared"}
    assert counts == {"issued": 80, "failure:signature": 160}
    assert sorted(count for (client, _, _), (count, _) in rows(any_db).items() if client != "shared") == [40, 40]


def test_schema_upgrade_creates_the_table(any_db):
    """A database of schema version 3 gains the table and the clients' require_explicit_typ column
    (nullable: existing clients follow the server's RequireExplicitTyp), and records the new version."""
    from playhouse.migrate import SchemaMigrator, migrate
    from storage import clients
    from storage.schema import upgrade
    any_db.drop_tables([ClientActivity])
    migrate(SchemaMigrator.from_database(any_db).drop_column("oauth_client", "require_explicit_typ"))
    any_db.execute_sql("INSERT INTO oauth_client (client_id, client_name, auth_method, grant_types, scopes, "
                       "redirect_uris, created_at, updated_at) VALUES ('v3-client', '', 'private_key_jwt', "
                       "'client_credentials', '', '', 1, 1)")
    SchemaVersion.delete().execute()
    SchemaVersion.create(version=3, applied_at=0)
    assert upgrade(any_db) == SCHEMA_VERSION == 4
    assert any_db.table_exists("IDN_OAUTH_CLIENT_ACTIVITY")
    assert "require_explicit_typ" in {c.name.lower() for c in any_db.get_columns("oauth_client")}
    assert [v.version for v in SchemaVersion.select().order_by(SchemaVersion.version)] == [3, 4]
    assert clients.get("v3-client").require_explicit_typ is None
    for value in (True, False):
        clients.create(f"typed-{value}", "private_key_jwt", require_explicit_typ=value)
        assert clients.get(f"typed-{value}").require_explicit_typ is value


# --- the listener ------------------------------------------------------------------------------

def listener(db, **props) -> ClientActivityListener:
    values = {"FlushIntervalInSeconds": 3600, "RetentionInDays": 8, **props}
    return ClientActivityListener(SimpleNamespace(db=db), values)


def issued(client_id: str = "c") -> tuple[str, dict]:
    return "token_issued", {"client_id": client_id, "binding": "bearer"}


def test_listener_counts_in_memory_and_flushes_one_batch(any_db):
    counter = listener(any_db)
    assert counter._pid is None   # built before a fork: no thread yet
    for _ in range(3):
        counter.on_event(*issued())
    counter.on_event("client_authentication", auth("failure", reason="signature"))
    counter.on_event("client_authentication", auth("failure", known=False, reason="unknown_client",
                                                   client_id="stranger"))
    counter.on_event("token_issued", {"client_id": "x" * 256, "binding": "bearer"})   # not a client id
    assert counter._pid == os.getpid()
    assert any(t.name == "client-activity" for t in threading.enumerate())
    assert ClientActivity.select().count() == 0   # nothing written on the token path
    hour = int(time.time()) // 3600
    assert counter.flush() == 3
    assert {key: count for key, (count, _) in rows(any_db).items()} == {
        ("c", hour, "issued"): 3, ("c", hour, "binding:bearer"): 3, ("c", hour, "failure:signature"): 1}
    assert counter.flush() == 0   # nothing new
    counter.on_event(*issued())
    assert counter.flush() == 2
    assert rows(any_db)[("c", hour, "issued")][0] == 4


def test_the_background_thread_flushes(any_db):
    counter = listener(any_db, FlushIntervalInSeconds=1)
    counter.on_event(*issued("bg"))
    deadline = time.time() + 10
    while time.time() < deadline and not activity.totals(0).get("bg"):
        time.sleep(0.1)
    assert activity.totals(0)["bg"] == {"issued": 1, "binding:bearer": 1}
    counter._wake.set()


def test_counts_the_database_refused_are_written_later(any_db):
    counter = listener(any_db)
    counter.on_event(*issued())
    any_db.drop_tables([ClientActivity])
    assert counter.flush() == 0                      # refused: kept in memory
    counter.on_event(*issued())
    any_db.create_tables([ClientActivity])
    assert counter.flush() == 2
    assert {name: count for (_, _, name), (count, _) in rows(any_db).items()} == {"issued": 2, "binding:bearer": 2}


def test_purge_on_flush_keeps_the_retention_period(any_db):
    now = time.time()
    hour = int(now) // 3600
    activity.add({("c", hour - 8 * 24, "issued"): (1, 0), ("c", hour - 8 * 24 + 1, "issued"): (1, 0)})
    counter = listener(any_db, RetentionInDays=8)
    counter.flush(now=now)                    # nothing to write: nothing purged either
    assert len(rows(any_db)) == 2
    counter.on_event(*issued())
    counter.flush(now=now)
    assert sorted({h for _, h, _ in rows(any_db)}) == [hour - 8 * 24 + 1, int(time.time()) // 3600]


def test_a_forked_worker_starts_its_own_thread_and_counts(tmp_path):
    """The chain is built before gunicorn forks: the child's first event starts its thread; it
    neither inherits nor writes the parent's unwritten counts."""
    from storage.database import open_database
    from storage.schema import upgrade
    db = open_database("sqlite:///fork.db", tmp_path)
    upgrade(db)
    counter = listener(db)
    counter.on_event(*issued("parent"))
    db.close()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, then leave without running the parent's exit handlers
        try:
            counter.on_event(*issued("child"))
            alive = any(t.name == "client-activity" and t.is_alive() for t in threading.enumerate())
            written = counter.flush()
            os.write(write, json.dumps([counter._pid == os.getpid(), alive, written]).encode())
        finally:
            os._exit(0)
    os.close(write)
    assert json.loads(os.read(read, 1000)) == [True, True, 2]
    os.waitpid(pid, 0)
    assert set(activity.totals(0)) == {"child"}
    counter.flush()
    assert activity.totals(0)["parent"] == {"issued": 1, "binding:bearer": 1}


# --- the report's verdicts -----------------------------------------------------------------------

CURRENT = {"AudiencePolicy": "legacy", "RequireExplicitTyp": False, "AllowSingleElementAudienceArray": False,
           "profile": "oauth2"}


def client(client_id: str = "c", auth_method: str = "private_key_jwt", **fields) -> RegisteredClient:
    values = {"client_name": "", "grant_types": ("client_credentials",), "scopes": (), "redirect_uris": (),
              "jwks": None, "jwks_uri": None, "signing_alg": None, "audience_policy": None, "token_reuse": None,
              "description": None, "first_party": False, "access_token_lifetime": None,
              "refresh_token_lifetime": None, "id_token_lifetime": None, **fields}
    return RegisteredClient(client_id=client_id, auth_method=auth_method, secret_hash=None, updated_at=0, **values)


def settings(profile: str = "") -> SimpleNamespace:
    return SimpleNamespace(profile=profile)


def test_a_client_that_follows_every_rule_is_refused_by_nothing():
    row = judge(client(), {"aud:issuer": 4, "typ:explicit": 4, "alg:PS256": 3, "alg:EdDSA": 1, "lifetime:60": 4,
                           "issued": 4, "binding:dpop": 3, "binding:mtls": 1}, settings(), CURRENT)
    assert row.refused_by == {} and row.notes == []
    assert (row.assertions, row.issued, row.dpop, row.max_lifetime) == (4, 4, 3, "≤ 1 min")


def test_verdicts_name_each_setting_and_why():
    counts = {"aud:token_endpoint": 3, "aud:array": 1, "aud:issuer": 2, "typ:absent": 4, "typ:jwt": 1,
              "typ:explicit": 1, "alg:RS256": 5, "alg:ES256": 1, "lifetime:300": 5, "lifetime:long": 1,
              "issued": 6, "binding:bearer": 5, "binding:dpop": 1, "failure:signature": 9}
    row = judge(client(), counts, settings(), CURRENT)
    assert row.refused_by == {
        AUDIENCE_STRICT: ["3 assertions with aud the token endpoint URL, 1 assertion with aud an array"],
        EXPLICIT_TYP_ON: ["4 assertions without typ", "1 assertion with typ JWT"],
        FAPI2_PROFILE: ["5 assertions signed with RS256 (only PS256, ES256, EdDSA)",
                        "4 assertions whose aud is not the issuer as one string",
                        "5 bearer tokens (no DPoP proof, no certificate-bound token)"]}
    assert row.max_lifetime == "> 1 h"
    assert row.as_json()["lifetime"] == {"≤ 5 min": 5, "> 1 h": 1}


def test_an_alias_passes_strict_but_not_fapi():
    row = judge(client(), {"aud:alias": 2, "typ:explicit": 2, "alg:ES256": 2, "binding:dpop": 2, "issued": 2},
                settings(), CURRENT)
    assert row.refused_by == {FAPI2_PROFILE: ["2 assertions whose aud is not the issuer as one string"]}


def test_a_client_with_its_own_legacy_policy_gets_a_note_not_a_refusal():
    row = judge(client(audience_policy="legacy"), {"aud:token_endpoint": 1, "typ:explicit": 1, "alg:ES256": 1},
                settings(), {**CURRENT, "AllowSingleElementAudienceArray": True})
    assert AUDIENCE_STRICT not in row.refused_by
    assert row.notes == ["keeps its own audience_policy legacy, so a server-wide strict policy does not refuse "
                         "it; strict would: 1 assertion with aud the token endpoint URL"]


def test_a_client_with_its_own_require_explicit_typ():
    """false: it keeps accepting untyped assertions whatever the server says (a note, no refusal);
    true: it already requires explicit typing, so RequireExplicitTyp=true refuses it nothing new."""
    counts = {"aud:issuer": 3, "typ:absent": 2, "typ:jwt": 1, "alg:ES256": 3}
    row = judge(client(require_explicit_typ=False), counts, settings(), CURRENT)
    assert EXPLICIT_TYP_ON not in row.refused_by
    assert row.notes == ["keeps its own require_explicit_typ false, so a server-wide RequireExplicitTyp=true "
                         "does not refuse it; true would: 2 assertions without typ, 1 assertion with typ JWT"]
    row = judge(client(require_explicit_typ=True), counts, settings(), CURRENT)
    assert EXPLICIT_TYP_ON not in row.refused_by and row.notes == []
    # The server's setting decides for a client without its own.
    assert judge(client(), counts, settings(), CURRENT).refused_by[EXPLICIT_TYP_ON] == [
        "2 assertions without typ", "1 assertion with typ JWT"]
    # Explicitly typed assertions alone: nothing to say either way.
    row = judge(client(require_explicit_typ=False), {"aud:issuer": 1, "typ:explicit": 1}, settings(), CURRENT)
    assert row.refused_by == {} and row.notes == []


def test_fapi_refuses_a_secret_client_and_spares_a_client_already_held_to_it():
    assert judge(client(auth_method="client_secret_basic"), {}, settings(), CURRENT).refused_by == {
        FAPI2_PROFILE: ["authenticates with client_secret_basic (only private_key_jwt or mutual TLS)"]}
    assert judge(client(auth_method="client_secret_basic", profile="fapi2"), {}, settings(), CURRENT).refused_by == {}
    assert judge(client(), {"alg:RS256": 1, "aud:issuer": 1, "typ:explicit": 1}, settings("fapi2"),
                 CURRENT).refused_by == {}


# --- the console's report page: administrators only ------------------------------------------------

def test_the_report_page_is_for_administrators_only(tmp_path):
    from support import make_in_process
    from storage import users
    env = make_in_process(tmp_path)
    with env.app.app_context():
        users.create("alice", "alice-password-1")
    browser = env.app.test_client()
    response = browser.get("/console/report", base_url="https://localhost:9443")
    assert response.status_code == 302
    assert response.headers["Location"] == "/console/login?next=%2Fconsole%2Freport"
    # A user signed in at the authorization endpoint has a session, but no admin rights.
    from server.web import SESSION_COOKIE
    with env.app.app_context():
        value = users.start_session(users.get_by_username("alice"), 3600)
    browser.set_cookie(SESSION_COOKIE, value, domain="localhost", secure=True)
    response = browser.get("/console/report", base_url="https://localhost:9443")
    assert response.status_code == 403
    assert "Migration report" not in response.text


# --- against the real server ---------------------------------------------------------------------

def sign_without_typ(key, claims: dict) -> str:
    """RS256 with no typ header at all (the signers of the test support add one)."""
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")
    signing_input = b64(json.dumps({"alg": "RS256"}).encode()) + "." + b64(json.dumps(claims).encode())
    return signing_input + "." + b64(key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256()))


class Console:
    """An administrator's browser session on the real server's console (no script, as it needs none)."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.session = requests.Session()
        page = self.session.get(server.base + "/console/login", verify=server.ca, timeout=15).text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        response = self.session.post(server.base + "/console/login", verify=server.ca, timeout=15,
                                     allow_redirects=False,
                                     data={"csrf_token": csrf, "username": ADMIN, "password": ADMIN_PASSWORD})
        assert response.status_code == 303, response.text

    def get(self, path: str) -> str:
        response = self.session.get(self.server.base + path, verify=self.server.ca, timeout=15)
        assert response.status_code == 200, response.text
        assert response.headers["Content-Security-Policy"].startswith("default-src 'none'")
        assert "<script" not in response.text
        return response.text


def texts(page: str, css_class: str) -> list[str]:
    return [html.unescape(re.sub(r"<[^>]+>", "", m)).strip()
            for m in re.findall(rf'<(?:td|th|a|code)[^>]*class="{css_class}"[^>]*>(.*?)</(?:td|th|a|code)>',
                                page, re.S)]


def text_of(page: str, element_id: str) -> str:
    match = re.search(rf'<(\w+)[^>]*\bid="{element_id}"[^>]*>(.*?)</\1>', page, re.S)
    assert match, element_id
    return html.unescape(re.sub(r"<[^>]+>", "", match.group(2))).strip()


def start(tmp, database_url: str, flush: int) -> Server:
    shared_keystore(tmp)
    port = free_port()
    listeners = f"""
[[event_listener]]
id = "client_activity"
type = "org.wso2.carbon.identity.core.handler.AbstractIdentityHandler"
name = "client_activity"
[event_listener.properties]
FlushIntervalInSeconds = {flush}
"""
    # The issuer is not the token endpoint URL, so that the audience forms differ.
    config = write_config(tmp, port, workers=2, database_url=database_url, pkjwt={"AudiencePolicy": "legacy"},
                          listeners=listeners,
                          extra=f'[oauth.oidc.id_token]\nissuer = "https://localhost:{port}"\n')
    server = Server(config, port).start()
    server.issuer = f"https://localhost:{port}"
    server.token_endpoint = server.base + "/oauth2/token"
    return server


def register(server: Server, tmp, client_id: str, key) -> None:
    jwks = tmp / f"{client_id}.jwks.json"
    jwks.write_text(jwks_of((key, None)))
    server.cli("clients", "create", "--client-id", client_id, "--auth-method", "private_key_jwt",
               "--jwks-file", str(jwks), "--scope", "read")


def send_known_requests(server: Server, legacy_key, modern_key) -> None:
    """legacy-app: 3 tokens and an invalid_scope (its assertions: aud the token endpoint URL three
    times, an array once; no typ; RS256; 5 minutes), 2 signature failures, 1 expired assertion.
    modern-app, a second later: 2 DPoP-bound tokens (aud the issuer, explicit typ, ES256, 1 minute).
    And a stranger's failure, which must not be counted."""
    endpoint = server.token_endpoint
    for aud in (endpoint, endpoint, [endpoint]):
        response = server.post(data=token_form(sign_without_typ(legacy_key, claims_for("legacy-app", aud))))
        assert response.status_code == 200, response.text
    assert_oauth_error(server.post(data=token_form(sign_without_typ(legacy_key, claims_for("legacy-app", endpoint)),
                                                   scope="admin")), 400, "invalid_scope")
    for _ in range(2):
        wrong_key = sign_without_typ(rsa_key(), claims_for("legacy-app", endpoint))
        assert_oauth_error(server.post(data=token_form(wrong_key)), 401, "invalid_client")
    now = int(time.time())
    expired = claims_for("legacy-app", endpoint, iat=now - 900, exp=now - 600)
    assert_oauth_error(server.post(data=token_form(sign_without_typ(legacy_key, expired))), 401, "invalid_client")
    assert_oauth_error(server.post(data=token_form(sign_without_typ(rsa_key(), claims_for("stranger", endpoint)))),
                       401, "invalid_client")
    time.sleep(1.1)   # modern-app's last token is a later second
    dpop_key = ec_key()
    for _ in range(2):
        now = int(time.time())
        assertion = sign(modern_key, claims_for("modern-app", server.issuer, iat=now, exp=now + 60), "ES256",
                         {"typ": "client-authentication+jwt"})
        response = server.post(data=token_form(assertion), headers={"DPoP": dpop_proof(dpop_key, endpoint)})
        assert response.status_code == 200, response.text
        assert response.json()["token_type"] == "DPoP"


LEGACY_COUNTS = {"issued": 3, "binding:bearer": 3, "aud:token_endpoint": 3, "aud:array": 1, "typ:absent": 4,
                 "alg:RS256": 4, "lifetime:300": 4, "failure:signature": 2, "failure:expired": 1,
                 "failure:invalid_scope": 1}
MODERN_COUNTS = {"issued": 2, "binding:dpop": 2, "aud:issuer": 2, "typ:explicit": 2, "alg:ES256": 2, "lifetime:60": 2}


def wait_for_report(server: Server, timeout: float = 20) -> dict:
    """`flask clients report --json` once both workers have flushed what they counted."""
    deadline = time.time() + timeout
    while True:
        report = json.loads(server.cli("clients", "report", "--json").stdout)
        by_id = {row["client_id"]: row for row in report["clients"]}
        if (by_id["legacy-app"]["tokens_issued"], by_id["modern-app"]["tokens_issued"],
                by_id["legacy-app"]["assertions"]) == (3, 2, 4) or time.time() > deadline:
            return report
        time.sleep(0.5)


def stored_counts(url: str, base) -> dict[str, dict[str, int]]:
    from storage.database import close_all, open_database
    db = open_database(url, base)
    try:
        return activity.totals(0)
    finally:
        close_all(db)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_activity_and_report_against_the_real_server(kind, tmp_path, database_urls):
    url = "sqlite:///var/identity.db" if kind == "sqlite" else database_urls("postgresql")
    if kind == "postgresql":
        from storage.database import close_all, open_database
        from storage.models import TABLES
        db = open_database(url, tmp_path)
        db.drop_tables(TABLES, safe=True)   # the session's database may hold another test's rows
        close_all(db)
    server = start(tmp_path, url, flush=1)
    try:
        server.cli("admin", "create", "--username", ADMIN, "--password-stdin", input=ADMIN_PASSWORD + "\n")
        legacy_key, modern_key = rsa_key(), ec_key()
        register(server, tmp_path, "legacy-app", legacy_key)
        register(server, tmp_path, "modern-app", modern_key)
        send_known_requests(server, legacy_key, modern_key)

        report = wait_for_report(server)
        assert [row["client_id"] for row in report["clients"]] == ["legacy-app", "modern-app"]   # refused first
        assert report["days"] == 7
        assert report["settings"] == {"AudiencePolicy": "legacy", "RequireExplicitTyp": False,
                                      "AllowSingleElementAudienceArray": False, "profile": "oauth2"}
        legacy, modern = report["clients"]
        assert legacy["refused_by"] == [
            {"setting": "AudiencePolicy=strict",
             "why": ["3 assertions with aud the token endpoint URL, 1 assertion with aud an array"]},
            {"setting": "RequireExplicitTyp=true", "why": ["4 assertions without typ"]},
            {"setting": "FAPI 2.0", "why": ["4 assertions signed with RS256 (only PS256, ES256, EdDSA)",
                                            "4 assertions whose aud is not the issuer as one string",
                                            "3 bearer tokens (no DPoP proof, no certificate-bound token)"]}]
        assert (legacy["assertions"], legacy["aud"], legacy["typ"], legacy["alg"], legacy["lifetime"],
                legacy["max_lifetime"], legacy["tokens_issued"], legacy["binding"]) == (
            4, {"array": 1, "token_endpoint": 3}, {"absent": 4}, {"RS256": 4}, {"≤ 5 min": 4}, "≤ 5 min", 3,
            {"bearer": 3})
        assert modern["refused_by"] == [] and modern["notes"] == []
        assert (modern["assertions"], modern["aud"], modern["typ"], modern["alg"], modern["lifetime"],
                modern["tokens_issued"], modern["binding"]) == (
            2, {"issuer": 2}, {"explicit": 2}, {"ES256": 2}, {"≤ 1 min": 2}, 2, {"dpop": 2})
        # Every row of the table, from both workers; nothing for the stranger.
        assert stored_counts(url, tmp_path) == {"legacy-app": LEGACY_COUNTS, "modern-app": MODERN_COUNTS}

        table = server.cli("clients", "report").stdout.splitlines()
        assert table[0].startswith("Client assertions and tokens of the last 7 UTC days (today included); "
                                   "in force now: AudiencePolicy legacy, RequireExplicitTyp false, profile oauth2.")
        assert table[2].split() == ["CLIENT", "REFUSED", "BY", "ASSERTIONS", "AUD", "TYP", "ALG", "LIFETIME",
                                    "TOKENS", "DPOP"]
        assert re.split(r"\s{2,}", table[3]) == [
            "legacy-app", "AudiencePolicy=strict, RequireExplicitTyp=true, FAPI 2.0", "4", "array=1 token_endpoint=3",
            "absent=4", "RS256=4", "≤ 5 min", "3", "0"]
        assert table[4] == ("    AudiencePolicy=strict: 3 assertions with aud the token endpoint URL, "
                            "1 assertion with aud an array")
        assert table[-1].split() == ["modern-app", "-", "2", "issuer=2", "explicit=2", "ES256=2", "≤", "1", "min",
                                     "2", "2"]

        console = Console(server)
        page = console.get("/console/service-providers/edit?client_id=legacy-app")
        assert [text_of(page, i) for i in ("issued-24h", "failures-24h", "issued-7d", "failures-7d")] == \
            ["3", "4", "3", "4"]
        reasons = re.findall(r'<tr class="failure-reason-row"><th scope="row" class="mono">([^<]+)</th>'
                             r'<td>(\d+)</td><td>(\d+)</td>', page)
        assert reasons == [("signature", "2", "2"), ("expired", "1", "1"), ("invalid_scope", "1", "1")]
        # The charts: SVG drawn by the server, and the same figures in tables for screen readers.
        assert page.count('<svg class="chart"') == 2
        hourly = re.search(r'<table class="visually-hidden" id="chart-24h-table">(.*?)</table>', page, re.S).group(1)
        figures = re.findall(r'<td class="issued">(\d+)</td><td class="failures">(\d+)</td>', hourly)
        assert len(figures) == 24 and sum(int(i) for i, _ in figures) == 3 and sum(int(f) for _, f in figures) == 4
        daily = re.search(r'<table class="visually-hidden" id="chart-7d-table">(.*?)</table>', page, re.S).group(1)
        assert re.findall(r'<td class="issued">(\d+)</td><td class="failures">(\d+)</td>', daily)[-1] in (
            ("3", "4"), ("0", "0"))   # today (unless the requests were sent just before midnight UTC)
        assert text_of(page, "assertion-count") == "4"
        assert "AudiencePolicy=strict</strong> would refuse it: 3 assertions with aud the token endpoint URL" in page

        page = console.get("/console/service-providers?sort=failures")
        assert texts(page, "sp-client-id") == ["legacy-app", "modern-app"]
        assert texts(page, "sp-failures") == ["4", "0"]
        assert 'aria-sort="descending">Failures (24 h)' in page
        page = console.get("/console/service-providers?sort=last_issued")
        assert texts(page, "sp-client-id") == ["modern-app", "legacy-app"]
        last = texts(page, "sp-last-issued")
        assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", t) for t in last) and last[0] > last[1]
        page = console.get("/console/service-providers?sort=nonsense")
        assert 'aria-sort="ascending">Name' in page

        page = console.get("/console/report")
        assert texts(page, "report-client") == ["legacy-app", "modern-app"]
        assert texts(page, "report-assertions") == ["4", "2"]
    finally:
        server.stop()


def test_a_worker_writes_its_counts_when_it_exits(tmp_path):
    """A flush interval longer than the test: only the workers' exit writes the counts."""
    server = start(tmp_path, "sqlite:///var/identity.db", flush=3600)
    try:
        key = rsa_key()
        register(server, tmp_path, "app", key)
        for _ in range(3):
            response = server.post(data=token_form(sign_without_typ(key, claims_for("app", server.token_endpoint))))
            assert response.status_code == 200, response.text
        time.sleep(0.5)
        assert stored_counts("sqlite:///var/identity.db", tmp_path).get("app") is None
    finally:
        server.stop()
    assert stored_counts("sqlite:///var/identity.db", tmp_path)["app"] == {
        "issued": 3, "binding:bearer": 3, "aud:token_endpoint": 3, "typ:absent": 3, "alg:RS256": 3,
        "lifetime:300": 3}


# --- bounded: memory, names, locks ---------------------------------------------------------------

def test_the_cap_on_pending_counters_is_said_once_per_flush(any_db, monkeypatch, caplog):
    from handlers import client_activity
    monkeypatch.setattr(client_activity, "MAX_PENDING", 4)
    counter = listener(any_db)
    for round_ in range(2):
        for i in range(50):   # two counters each: beyond the cap from the third client on
            counter.on_event(*issued(f"c{i}"))
        assert len(counter._pending) == 4
        assert len([m for m in caplog.messages if m.startswith("client activity not counted")]) == round_ + 1
        assert counter.flush() == 4


def test_failure_reasons_are_a_bounded_vocabulary(any_db, monkeypatch):
    """A drop-in handler whose reason carries request input cannot grow the table without end."""
    from handlers import client_activity
    monkeypatch.setattr(client_activity, "MAX_REASONS", 5)
    counter = listener(any_db)
    for i in range(20):
        counter.on_event("token_error", {"client_id": "c", "error": "invalid_grant", "reason": f"scope_{i}"})
    counter.on_event("client_authentication", auth("failure", reason="signature"))
    names = {name for (_, _, name) in counter._pending}
    assert names == {f"failure:scope_{i}" for i in range(5)} | {"failure:other", "failure:signature"}
    counter.on_event("token_error", {"client_id": "c", "error": "invalid_grant", "reason": "scope_3"})
    assert counter._pending[("c", int(time.time()) // 3600, "failure:scope_3")][0] == 2


def test_a_large_flush_commits_in_slices_and_keeps_only_what_was_not_written(any_db):
    """Each slice is its own short transaction (a large flush never holds SQLite's one write lock
    for seconds against the token path); a slice the database refuses is kept, the slices
    already written are not counted twice."""
    if any_db.kind != "sqlite":
        pytest.skip("the refusal is a SQLite trigger")
    counter = listener(any_db)
    for i in range(1200):
        counter.on_event("token_issued", {"client_id": f"client-{i:04d}", "binding": "none"})
    any_db.execute_sql('CREATE TRIGGER refuse BEFORE INSERT ON "IDN_OAUTH_CLIENT_ACTIVITY" '
                       "WHEN NEW.\"CLIENT_ID\" = 'client-0900' BEGIN SELECT RAISE(ABORT, 'refused'); END")
    assert counter.flush() == activity.BATCH          # the first slice only
    assert len(counter._pending) == 1200 - activity.BATCH
    any_db.execute_sql("DROP TRIGGER refuse")
    assert counter.flush() == 1200 - activity.BATCH
    assert ClientActivity.select().count() == 1200
    assert {r.count for r in ClientActivity.select()} == {1}


def test_purge_deletes_in_small_transactions(any_db):
    activity.add({(f"c{i}", h, "issued"): (1, 0) for i in range(70) for h in (100, 101, 200)})
    assert activity.purge(150, batch=50) == 140
    assert ClientActivity.select().count() == 70
    assert {h for _, h, _ in rows(any_db)} == {200}


def test_a_counter_name_this_release_does_not_know_is_reported_as_it_is():
    """Another node (an older or newer release) may have written names this one has no label for."""
    row = judge(client(), {"lifetime:90": 1, "lifetime:60": 2, "aud:somewhere": 1, "typ:new": 1}, settings(), CURRENT)
    assert row.as_json()["lifetime"] == {"90": 1, "≤ 1 min": 2}
    assert row.max_lifetime == "≤ 1 min"
