"""IDN_OIDC_JTI on SQLite, PostgreSQL and MariaDB: the insert decides, replacement of expired rows
is one conditional update, concurrent uses of one jti give exactly one success (threads and
processes), and purging works in bounded batches. Every test runs on all three databases."""

from __future__ import annotations

import multiprocessing
import threading
import time

import pytest

from storage.database import open_database
from storage.models import JTI, TABLES
from storage.replay import ReplayStore, SeenCache


@pytest.fixture
def store(any_db):
    return ReplayStore(any_db)


def test_table_definition(store):
    columns = {c.name.upper(): c.data_type.lower() for c in store.db.get_columns("IDN_OIDC_JTI")}
    assert set(columns) == {"JWT_ID", "CLIENT_ID", "EXP_TIME", "TIME_CREATED"}
    assert [c.upper() for c in store.db.get_primary_keys("IDN_OIDC_JTI")] == ["CLIENT_ID", "JWT_ID"]
    assert "EXP_TIME" in {c.upper() for i in store.db.get_indexes("IDN_OIDC_JTI") for c in i.columns}


def test_identifiers_compare_exactly(store):
    now = int(time.time())
    assert store.use("c", "Abc", now + 60, True, now=now)
    assert store.use("c", "abc", now + 60, True, now=now)     # not a replay of "Abc"
    assert store.use("c", "abc ", now + 60, True, now=now)    # nor is a trailing space
    assert store.use("C", "abc", now + 60, True, now=now)     # another client
    assert not store.use("c", "abc", now + 60, True, now=now)


def test_longest_identifiers_and_unicode(store):
    now = int(time.time())
    assert store.use("c" * 255, "ü😀" + "j" * 253, now + 60, True, now=now)
    assert not store.use("c" * 255, "ü😀" + "j" * 253, now + 60, True, now=now)


def test_first_use_then_replay(store):
    now = int(time.time())
    assert store.use("c", "j", now + 60, prevent_reuse=True, now=now)
    assert not store.use("c", "j", now + 60, prevent_reuse=True, now=now + 1)


def test_expired_record_is_replaced(store):
    now = int(time.time())
    assert store.use("c", "j", now + 60, True, now=now)
    assert store.use("c", "j", now + 200, True, now=now + 61)
    assert JTI.get().exp_time == now + 200
    assert not store.use("c", "j", now + 300, True, now=now + 62)


def test_reuse_allowed_is_recorded(store):
    now = int(time.time())
    assert store.use("c", "j", now + 60, False, now=now)
    assert store.use("c", "j", now + 90, False, now=now + 1)
    assert JTI.select().count() == 1 and JTI.get().exp_time == now + 90


def test_keyed_by_client(store):
    now = int(time.time())
    assert store.use("a", "j", now + 60, True, now=now)
    assert store.use("b", "j", now + 60, True, now=now)


def test_cache_answers_without_database(store):
    now = int(time.time())
    store.cache = SeenCache(capacity=10, timeout_seconds=600)
    assert store.use("c", "j", now + 60, True, now=now)
    JTI.delete().execute()  # the cache alone now knows
    assert not store.use("c", "j", now + 60, True, now=now + 1)


def test_cache_is_bounded():
    cache = SeenCache(capacity=2, timeout_seconds=600)
    for i in range(5):
        cache.add(("c", str(i)), 10_000, 0)
    assert len(cache._items) == 2 and cache.seen(("c", "4"), 1) and not cache.seen(("c", "0"), 1)


def test_purge_deletes_only_expired_in_batches(store):
    now = int(time.time())
    for i in range(25):
        store.use("c", f"old{i}", now - 10, True, now=now - 100)
    store.use("c", "fresh", now + 100, True, now=now)
    assert store.purge(now, limit=10) == 10
    assert store.purge_all(now, batch=7) == 15
    assert [r.jwt_id for r in JTI.select()] == ["fresh"]


def test_purge_of_many_rows(store):
    # Hundreds of expired rows: the batches must stay within every database's parser limits.
    from storage.models import AccessToken
    from storage.tokens import TokenStore
    now = int(time.time())
    JTI.insert_many([{"client_id": f"c{i % 7}", "jwt_id": f"j{i}", "exp_time": now - 10, "time_created": now - 100}
                     for i in range(1234)]).execute()
    store.use("c0", "fresh", now + 100, True, now=now)
    assert store.purge(now, limit=500) == 500
    assert store.purge_all(now, batch=1000) == 734
    assert [r.jwt_id for r in JTI.select()] == ["fresh"]
    AccessToken.insert_many([{"token_hash": f"{i:064x}", "client_id": "c", "scope": "", "issued_at": now - 100,
                              "expires_at": now - 1, "revoked": False} for i in range(600)]).execute()
    assert TokenStore(store.db).purge_all(now) == 600


def test_purge_runs_during_normal_use(any_db):
    store = ReplayStore(any_db, purge_every=10, purge_batch=100)
    now = int(time.time())
    for i in range(9):
        store.use("c", f"old{i}", now - 10, True, now=now - 100)
    store.use("c", "new", now + 60, True, now=now)  # the 10th use starts a purge batch
    store.periodic.wait()
    assert [r.jwt_id for r in JTI.select()] == ["new"]


def test_purge_batches_of_a_process_run_one_at_a_time():
    """Each batch holds a connection of the worker's pool (sized for its request threads): the
    stores whose batches fall due together (jti, DPoP proofs, tokens, pushed requests) take one
    at a time, not one connection each."""
    from storage.purge import PeriodicPurge
    guard, running, most = threading.Lock(), [0], [0]

    def batch() -> int:
        with guard:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.05)
        with guard:
            running[0] -= 1
        return 0

    purges = [PeriodicPurge(every=1, batch=10) for _ in range(4)]
    for purge in purges:
        purge.run(batch)
    for purge in purges:
        purge.wait(5)
    assert most[0] == 1 and running[0] == 0


@pytest.mark.parametrize("expired_row", [False, True], ids=["fresh", "replacing-expired"])
def test_concurrent_threads_one_success(store, expired_row):
    now = int(time.time())
    if expired_row:
        store.use("c", "race", now - 5, True, now=now - 100)
    results = []
    barrier = threading.Barrier(16)

    def worker():
        barrier.wait()
        try:
            results.append(store.use("c", "race", now + 60, True, now=now))
        finally:
            from storage.database import release
            release(store.db)
    threads = [threading.Thread(target=worker) for _ in range(16)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert results.count(True) == 1 and len(results) == 16


def _process_use(url: str, base: str, jti: str, start, queue) -> None:
    from pathlib import Path
    store = ReplayStore(open_database(url, Path(base)))
    start.wait()
    try:
        queue.put(store.use("c", jti, int(time.time()) + 60, True))
    except Exception as exc:  # reported to the parent, which fails the test
        queue.put(repr(exc))


@pytest.mark.parametrize("expired_row", [False, True], ids=["fresh", "replacing-expired"])
def test_concurrent_processes_one_success(store, tmp_path, expired_row):
    if expired_row:  # the harder case: every process sees the old row and tries to replace it
        store.use("c", "race", int(time.time()) - 5, True, now=int(time.time()) - 100)
    from storage.database import close_all
    close_all(store.db)  # nothing shared across the fork
    ctx = multiprocessing.get_context("fork")
    start, queue = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_process_use, args=(store.db.url, str(tmp_path), "race", start, queue))
             for _ in range(8)]
    [p.start() for p in procs]
    start.set()
    results = [queue.get(timeout=30) for _ in procs]
    [p.join() for p in procs]
    assert sorted(map(str, results)) == ["False"] * 7 + ["True"], results


def test_schema_upgrade_is_idempotent_and_concurrent(any_db, tmp_path):
    from storage.database import close_all
    from storage.models import SchemaVersion, SCHEMA_VERSION
    from storage.schema import upgrade
    assert upgrade(any_db) == SCHEMA_VERSION
    close_all(any_db)
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()

    def run():
        from pathlib import Path
        try:
            db = open_database(any_db.url, Path(str(tmp_path)))
            queue.put(upgrade(db))
        except Exception as exc:
            queue.put(repr(exc))
    # Drop everything, then let four "nodes" create the schema at the same instant.
    any_db.drop_tables(TABLES)
    close_all(any_db)
    procs = [ctx.Process(target=run) for _ in range(4)]
    [p.start() for p in procs]
    results = [queue.get(timeout=60) for _ in procs]
    [p.join() for p in procs]
    assert results == [SCHEMA_VERSION] * 4, results
    assert SchemaVersion.select().where(SchemaVersion.version == SCHEMA_VERSION).count() == 1
