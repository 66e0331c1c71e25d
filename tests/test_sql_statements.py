"""storage.sql.Statement binds values to the columns they are meant for, whatever the order of the
fields in storage/models.py: every statement on the hot path is run against its real model and
against a copy of that model with fields swapped in declaration order (what reordering two lines
of models.py does), and each column must receive its own value. Runs on all three databases."""

from __future__ import annotations

import copy
import time

import peewee
import pytest

from storage.database import database_proxy
from storage.hashing import sha256_hex
from storage.models import AccessToken, BaseModel


def swapped(model: type[peewee.Model], *pairs: tuple[str, str]) -> type[peewee.Model]:
    """A copy of `model` (same table, same columns) whose fields are declared in another order:
    each pair of field names trades places."""
    names = [field.name for field in model._meta.sorted_fields]
    for first, second in pairs:
        i, j = names.index(first), names.index(second)
        names[i], names[j] = names[j], names[i]
    attrs = {"__module__": __name__}
    for name in names:
        field = copy.copy(model._meta.fields[name])
        # Declaration order is the order fields were created in (peewee.Field._order).
        peewee.Field._field_counter += 1
        field._order = peewee.Field._field_counter
        field._sort_key = (1 if field.primary_key else 2), field._order
        attrs[name] = field
    meta = {"table_name": model._meta.table_name}
    if isinstance(model._meta.primary_key, peewee.CompositeKey):
        meta["primary_key"] = peewee.CompositeKey(*model._meta.primary_key.field_names)
    attrs["Meta"] = type("Meta", (), meta)
    copied = type(f"Swapped{model.__name__}", (BaseModel,), attrs)
    assert [f.name for f in copied._meta.sorted_fields] == names
    assert [f.column_name for f in copied._meta.sorted_fields] != \
        [f.column_name for f in model._meta.sorted_fields]
    return copied


@pytest.fixture(params=["declared", "swapped"])
def order(request):
    return request.param


def use_model(monkeypatch, module, name: str, order: str, *pairs: tuple[str, str]) -> None:
    """Make `module` (the call site, whose statements name the model lazily) use the model as
    declared or a copy with `pairs` swapped."""
    if order == "swapped":
        monkeypatch.setattr(module, name, swapped(getattr(module, name), *pairs))


def rows(db: peewee.Database, sql: str, *params) -> list[tuple]:
    """Rows read by column name, independently of any model (SQL written with "quoted" names
    and ? placeholders)."""
    sql = sql.replace('"', db.quote[0]).replace("?", db.param)
    return [tuple(row) for row in db.execute_sql(sql, params).fetchall()]


def test_replay_store_columns(any_db, monkeypatch, order):
    import storage.replay
    use_model(monkeypatch, storage.replay, "JTI", order, ("client_id", "jwt_id"), ("exp_time", "time_created"))
    store = storage.replay.ReplayStore(any_db)
    now = int(time.time())
    select = 'SELECT "CLIENT_ID", "JWT_ID", "EXP_TIME", "TIME_CREATED" FROM "IDN_OIDC_JTI"'

    assert store.use("client-1", "jti-1", now + 60, True, now=now)                     # INSERT
    assert rows(any_db, select) == [("client-1", "jti-1", now + 60, now)]
    assert not store.use("client-1", "jti-1", now + 60, True, now=now + 1)             # a replay
    assert store.use("client-1", "jti-1", now + 200, True, now=now + 61)               # expired: replaced
    assert rows(any_db, select) == [("client-1", "jti-1", now + 200, now + 61)]
    assert store.use("client-1", "jti-1", now + 300, False, now=now + 70)              # reuse recorded
    assert rows(any_db, select) == [("client-1", "jti-1", now + 300, now + 70)]
    assert store.use("client-1", "jti-1", now + 250, False, now=now + 80)              # keeps later expiry
    assert rows(any_db, select) == [("client-1", "jti-1", now + 300, now + 80)]


def test_access_token_columns(any_db, monkeypatch, order):
    import storage.tokens
    use_model(monkeypatch, storage.tokens, "AccessToken", order, ("client_id", "scope"),
              ("issued_at", "expires_at"), ("user_sub", "grant_id"))
    before = int(time.time())
    token, expires_in = storage.tokens.TokenStore(any_db).issue("client-1", "read write", 300,
                                                                 user_sub="user-1", grant_id="grant-1")
    assert expires_in == 300
    [(client_id, scope, issued_at, expires_at, revoked, user_sub, grant_id)] = rows(
        any_db, "SELECT client_id, scope, issued_at, expires_at, revoked, user_sub, grant_id "
                "FROM oauth_access_token WHERE token_hash = ?", sha256_hex(token))
    assert (client_id, scope, user_sub, grant_id) == ("client-1", "read write", "user-1", "grant-1")
    assert before <= issued_at <= int(time.time()) and expires_at == issued_at + 300
    assert not revoked
    assert AccessToken.get(AccessToken.token_hash == sha256_hex(token)).client_id == "client-1"


def test_client_select_columns(any_db, monkeypatch, order):
    import storage.clients
    use_model(monkeypatch, storage.clients, "Client", order, ("client_name", "auth_method"),
              ("jwks", "jwks_uri"), ("created_at", "updated_at"), ("client_id", "scopes"))
    storage.clients.create("client-1", "private_key_jwt", client_name="Name 1", scopes=("read", "write"),
                           jwks_uri="https://keys.example/jwks", description="about client-1")
    any_db.execute_sql("UPDATE oauth_client SET created_at = 1000, updated_at = 2000")
    client = storage.clients.get("client-1")
    assert (client.client_id, client.client_name, client.auth_method) == ("client-1", "Name 1", "private_key_jwt")
    assert (client.scopes, client.jwks, client.jwks_uri) == (("read", "write"), None, "https://keys.example/jwks")
    assert (client.created_at, client.updated_at, client.description) == (1000, 2000, "about client-1")


def test_failure_log_columns(any_db, monkeypatch, order):
    import handlers.failure_log
    use_model(monkeypatch, handlers.failure_log, "AuthFailure", order, ("method", "reason"), ("alg", "kid"),
              ("client_id", "detail"))
    listener = handlers.failure_log.AuthFailureLogListener(None, {"RetentionInDays": 7, "MaxPerClient": 100,
                                                                  "PurgeEvery": 200})
    before = int(time.time())
    listener.on_event("client_authentication", {
        "outcome": "failure", "client_known": True, "client_id": "client-1", "method": "private_key_jwt",
        "reason": "bad_signature", "alg": "RS256", "kid": "key-1", "remote_addr": "192.0.2.1",
        "detail": "signature does not verify"})
    [(client_id, at, method, reason, alg, kid, remote_addr, detail)] = rows(
        any_db, 'SELECT client_id, "time", method, reason, alg, kid, remote_addr, detail FROM oauth_auth_failure')
    assert (client_id, method, reason, alg, kid, remote_addr, detail) == (
        "client-1", "private_key_jwt", "bad_signature", "RS256", "key-1", "192.0.2.1", "signature does not verify")
    assert before <= at <= int(time.time())


# The Statement helper itself, on a probe table declared in both orders.

class Probe(BaseModel):
    name = peewee.CharField(max_length=40, primary_key=True)
    first = peewee.CharField(max_length=40)
    second = peewee.CharField(max_length=40, null=True)
    low = peewee.IntegerField()
    high = peewee.IntegerField(default=0)

    class Meta:
        table_name = "sql_statement_probe"


class SwappedProbe(BaseModel):
    high = peewee.IntegerField(default=0)
    low = peewee.IntegerField()
    second = peewee.CharField(max_length=40, null=True)
    first = peewee.CharField(max_length=40)
    name = peewee.CharField(max_length=40, primary_key=True)

    class Meta:
        table_name = "sql_statement_probe"


@pytest.fixture
def probe_db(tmp_path):
    """A temporary SQLite database behind the models' proxy, holding the probe table."""
    previous = database_proxy.obj
    db = peewee.SqliteDatabase(str(tmp_path / "probe.db"))
    database_proxy.initialize(db)
    db.create_tables([Probe])
    yield db
    db.close()
    database_proxy.initialize(previous)


@pytest.mark.parametrize("model", [Probe, SwappedProbe], ids=["declared", "swapped"])
def test_named_parameters_reach_their_columns(probe_db, model):
    from storage.sql import Param, Statement, params
    insert = Statement(lambda: model.insert(params("name", "first", "second", "low", "high")))
    select = Statement(lambda: model.select(model.name, model.first, model.second, model.low, model.high)
                       .where((model.second == Param("second")) & (model.low < Param("below"))))
    # Keyword order at the call is irrelevant.
    insert.execute(high=9, low=1, second="s-1", first="f-1", name="row-1")
    insert.execute(name="row-2", first="f-2", second="s-2", low=2, high=8)
    assert rows(probe_db, "SELECT name, first, second, low, high FROM sql_statement_probe ORDER BY name") == [
        ("row-1", "f-1", "s-1", 1, 9), ("row-2", "f-2", "s-2", 2, 8)]
    assert [tuple(r) for r in select.execute(below=5, second="s-2")] == [("row-2", "f-2", "s-2", 2, 8)]
    assert select.execute(second="s-2", below=2).fetchall() == []
    assert select.names == ("second", "below") and set(insert.names) == {"name", "first", "second", "low", "high"}


def test_a_name_used_twice_binds_one_value(probe_db):
    from storage.sql import Param, Statement, params
    Statement(lambda: Probe.insert(params("name", "first", "second", "low", "high"))).execute(
        name="n", first="f", second=None, low=5, high=5)
    bump = Statement(lambda: Probe.update(
        high=peewee.Case(None, [(Probe.high < Param("to"), Param("to"))], Probe.high), first=Param("first"))
        .where(Probe.name == Param("name")))
    assert bump.names == ("first", "to", "to", "name")        # SET in declaration order, not as written
    assert bump.execute(to=7, first="g", name="n").rowcount == 1
    assert bump.execute(to=6, first="h", name="n").rowcount == 1
    assert rows(probe_db, "SELECT first, high FROM sql_statement_probe") == [("h", 7)]


def test_parameters_are_checked(probe_db):
    from storage.sql import Param, Statement, params
    insert = Statement(lambda: Probe.insert(params("name", "first", "second", "low", "high")))
    with pytest.raises(TypeError, match="missing.*'low'"):
        insert.execute(name="n", first="f", second=None, high=1)
    with pytest.raises(TypeError, match="unexpected.*'lowest'"):
        insert.execute(name="n", first="f", second=None, low=1, high=1, lowest=0)
    with pytest.raises(TypeError):
        insert.execute("n", "f", None, 1, 1)      # positional values: no order to trust
    assert rows(probe_db, "SELECT COUNT(*) FROM sql_statement_probe") == [(0,)]

    # A value fixed when the SQL was generated (a model default, a column left out, a literal
    # placeholder of the old style) would be stored by every execution: refused at generation.
    for build in (lambda: Probe.insert(params("name", "first", "second", "low")),     # default of `high`
                  lambda: Probe.insert(name="?", first="?", second="?", low=0, high=0),
                  lambda: Probe.update(first=Param("first")).where(Probe.low == 0)):
        with pytest.raises(ValueError, match="fixed value"):
            Statement(build).execute(name="n", first="f", second=None, low=1, high=1)
    # A nullable column without a default that the INSERT leaves out is not written (NULL).
    Statement(lambda: Probe.insert(params("name", "first", "low", "high"))).execute(name="n", first="f", low=1, high=2)
    assert rows(probe_db, "SELECT name, first, second, low, high FROM sql_statement_probe") == [("n", "f", None, 1, 2)]
    # A SELECT must name its columns: the model's order would decide what a row holds.
    with pytest.raises(ValueError, match="name the selected columns"):
        Statement(lambda: Probe.select().where(Probe.name == Param("name"))).execute(name="n")


@pytest.mark.parametrize("model", [Probe, SwappedProbe], ids=["declared", "swapped"])
def test_positional_values_follow_the_stated_order(probe_db, model):
    from storage.sql import Statement
    insert = Statement.insert(lambda: model, "first", "low", "name", "second", "high")
    insert.execute("f-1", 1, "row-1", "s-1", 9)
    insert.execute("f-2", 2, "row-2", None, 8)
    insert.execute(name="row-3", first="f-3", second="s-3", low=3, high=7)   # by name works too
    assert rows(probe_db, "SELECT name, first, second, low, high FROM sql_statement_probe ORDER BY name") == [
        ("row-1", "f-1", "s-1", 1, 9), ("row-2", "f-2", None, 2, 8), ("row-3", "f-3", "s-3", 3, 7)]
    with pytest.raises(TypeError, match="4 values given by position for 5"):
        insert.execute("f", 1, "row-4", "s")
    with pytest.raises(TypeError, match="not both"):
        insert.execute("f", 1, "row-4", "s", high=1)


def test_a_stated_order_must_match_the_sql(probe_db):
    from storage.sql import Param, Statement
    update = Statement(lambda: Probe.update(first=Param("first")).where(Probe.name == Param("name")),
                       positional=("name", "frist"))
    with pytest.raises(ValueError, match="does not name each parameter"):
        update.execute("n", "f")
    update = Statement(lambda: Probe.update(first=Param("first")).where(Probe.name == Param("name")),
                       positional=("name", "first"))
    Statement.insert(lambda: Probe, "name", "first", "low", "high").execute("n", "f", 1, 2)
    assert update.execute("n", "g").rowcount == 1            # stated: name, first; the SQL binds first, name
    assert rows(probe_db, "SELECT name, first FROM sql_statement_probe") == [("n", "g")]


def test_every_statement_is_generated_at_start_up(tmp_path):
    """build_app() generates the SQL of every statement (the failure log's included), so a
    statement peewee cannot bind by name stops start-up, not a request."""
    from handlers import failure_log
    from storage import clients, tokens
    from support import make_in_process
    env = make_in_process(tmp_path)
    db = database_proxy.obj
    services = env.app.extensions["idp"].services
    with env.app.app_context():
        for statement in (failure_log._INSERT, services.replay.sql.insert, services.dpop.replay.sql.insert,
                          tokens._INSERT, clients._SELECT_ONE):
            assert statement._sql.get(db) is not None


def test_sqlite_single_statements_share_one_connection_and_transactions_keep_theirs(tmp_path):
    """On SQLite a statement outside a transaction runs on the process's shared connection (a
    thread's own would drop its page cache at every other thread's commit); inside one, on the
    thread's connection, which sees what the transaction wrote before it commits."""
    import threading

    from storage.database import close_all, open_database
    from storage.models import JTI
    from storage.sql import Param, Statement

    db = open_database("sqlite:///var/identity.db", tmp_path)
    try:
        db.create_tables([JTI])
        insert = Statement.insert(lambda: JTI, "client_id", "jwt_id", "exp_time", "time_created")
        count = Statement(lambda: JTI.select(peewee.fn.COUNT(JTI.jwt_id)).where(JTI.client_id == Param("c")))
        errors = []

        def writer(n: int) -> None:
            try:
                for i in range(50):
                    insert.execute("c", f"{n}-{i}", 1, 1)
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert count.execute(c="c").fetchone() == (200,)
        assert db._shared_connection[1] is not db.connection()
        with pytest.raises(peewee.IntegrityError):   # the driver's error, as peewee raises it
            insert.execute("c", "0-0", 1, 1)

        with db.atomic() as transaction:
            insert.execute("c", "in-transaction", 1, 1)
            assert count.execute(c="c").fetchone() == (201,)   # the transaction's own connection
            transaction.rollback()
        assert count.execute(c="c").fetchone() == (200,)
    finally:
        close_all(db)
    assert db._shared_connection is None


def test_sqlite_shared_connection_waits_no_longer_than_sqlite_would(tmp_path):
    """A write held up by another connection's transaction fails after busy_timeout as SQLite's
    own wait would (a 503 for the request), and reads meanwhile use the thread's connection."""
    import threading

    from storage.database import close_all, open_database
    from storage.models import JTI
    from storage.sql import Param, Statement

    db = open_database("sqlite:///var/identity.db", tmp_path)
    db._timeout = 0.5   # busy_timeout of the shared connection and of the wait for a turn
    db.execute_sql("PRAGMA busy_timeout = 500")
    try:
        db.create_tables([JTI])
        insert = Statement.insert(lambda: JTI, "client_id", "jwt_id", "exp_time", "time_created")
        count = Statement(lambda: JTI.select(peewee.fn.COUNT(JTI.jwt_id)).where(JTI.client_id == Param("c")))
        insert.execute("c", "first", 1, 1)
        holding, release = threading.Event(), threading.Event()

        def hold_write_lock() -> None:
            with db.atomic():
                insert.execute("c", "held", 1, 1)   # inside the transaction: its own connection
                holding.set()
                release.wait(10)

        holder = threading.Thread(target=hold_write_lock)
        holder.start()
        holding.wait(5)
        outcome = []
        writer = threading.Thread(target=lambda: outcome.append(_attempt(insert, "c", "blocked", 1, 1)))
        writer.start()
        time.sleep(0.1)   # the writer now holds the turn and waits for SQLite's lock
        started = time.monotonic()
        assert count.execute(c="c").fetchone() == (1,)   # a read is not held up behind it
        assert time.monotonic() - started < 0.4
        writer.join(5)
        assert outcome and isinstance(outcome[0], peewee.OperationalError)
        release.set()
        holder.join(5)
        assert count.execute(c="c").fetchone() == (2,)
    finally:
        close_all(db)


def _attempt(statement, *args):
    try:
        statement.execute(*args)
    except peewee.PeeweeException as exc:
        return exc
    return None
