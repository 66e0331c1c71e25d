"""Bulk-fill IDN_OIDC_JTI with realistic rows before a benchmark run (`run.py --jti-rows N`).

Rows: `clients` client ids (`bench-0000` …), a random uuid4-shaped 36-character `jti` each,
EXP_TIME spread evenly (a steady stream of accepted assertions) and TIME_CREATED = EXP_TIME -
3630 (a one-hour assertion plus the default 30 s skew). A share `expired_share` has EXP_TIME in
the last 24 hours (purge may delete them); the rest expire between `min_ttl` seconds from now
and an hour from now, so the periodic purge cannot touch them during the run.

SQLite: one transaction of `executemany`, rows in EXP_TIME order (as the server writes them),
`synchronous=OFF`, a rollback journal instead of WAL and a 1 GiB page cache for the fill only;
WAL is switched back on and the file fsynced afterwards. PostgreSQL: `COPY … FROM STDIN` through psql, then ANALYZE
(what autovacuum does after such an insert).
"""

from __future__ import annotations

import os
import random
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Iterator

TABLE = "IDN_OIDC_JTI"
COLUMNS = ("CLIENT_ID", "JWT_ID", "EXP_TIME", "TIME_CREATED")
LIFETIME = 3630
CHUNK = 100_000


def _jtis(n: int) -> list[str]:
    raw = os.urandom(16 * n).hex()
    out = []
    for i in range(0, 32 * n, 32):
        h = raw[i:i + 32]
        out.append(f"{h[0:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:32]}")
    return out


def rows(n: int, *, clients: int, expired_share: float, now: int, min_ttl: int,
         seed: int | None = None) -> Iterator[list[tuple[str, str, int, int]]]:
    """Chunks of (CLIENT_ID, JWT_ID, EXP_TIME, TIME_CREATED) in ascending EXP_TIME order."""
    rnd = random.Random(seed)
    ids = [f"bench-{i:04d}" for i in range(clients)]
    n_expired = int(round(n * expired_share))
    n_live = n - n_expired
    # Expired: the past day, up to a minute ago. Unexpired: from now + min_ttl to now + 1 h.
    spans = [(n_expired, now - 86_400, now - 60),
             (n_live, now + min_ttl, max(now + LIFETIME, now + min_ttl + 600))]
    for count, lo, hi in spans:
        done = 0
        while done < count:
            k = min(CHUNK, count - done)
            jtis = _jtis(k)
            width = hi - lo
            chunk = []
            for j in range(k):
                exp = lo + ((done + j) * width) // count
                chunk.append((ids[rnd.randrange(clients)], jtis[j], exp, exp - LIFETIME))
            done += k
            yield chunk


def fill_sqlite(path: Path, n: int, **kw) -> dict:
    t0 = time.time()
    con = sqlite3.connect(str(path), isolation_level=None)
    try:
        con.execute("PRAGMA journal_mode=DELETE")
        con.execute("PRAGMA synchronous=OFF")
        con.execute("PRAGMA cache_size=-1048576")
        con.execute("BEGIN")
        sql = f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) VALUES (?, ?, ?, ?)"
        for chunk in rows(n, **kw):
            con.executemany(sql, chunk)
        con.execute("COMMIT")
        seconds = time.time() - t0
        con.execute("PRAGMA synchronous=NORMAL")
        mode = con.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        total = con.execute(f"SELECT COUNT(*) FROM {TABLE}").fetchone()[0]
    finally:
        con.close()
    # synchronous=OFF left the fill in the page cache: write it out now, so the server's first
    # checkpoint fsync does not pay for it during the measurement.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    flushed = time.time() - t0
    size = sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    return {"rows": n, "table_rows": total, "seconds": round(seconds, 1), "with_fsync_s": round(flushed, 1),
            "db_bytes": size, "journal_mode": mode}


def fill_postgres(dbname: str, n: int, psql_base: list[str], **kw) -> dict:
    t0 = time.time()
    cols = ", ".join(f'"{c}"' for c in COLUMNS)
    proc = subprocess.Popen(psql_base + ["-d", dbname, "-v", "ON_ERROR_STOP=1", "-qc",
                                         f'COPY "{TABLE}" ({cols}) FROM STDIN'],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for chunk in rows(n, **kw):
            proc.stdin.write("".join(f"{c}\t{j}\t{e}\t{t}\n" for c, j, e, t in chunk).encode())
        proc.stdin.close()
    except BrokenPipeError:
        pass
    err = proc.stderr.read().decode(errors="replace")
    if proc.wait() != 0:
        raise RuntimeError(f"COPY into {TABLE} failed: {err.strip()[-1500:]}")
    seconds = time.time() - t0

    def q(sql: str) -> str:
        return subprocess.run(psql_base + ["-d", dbname, "-v", "ON_ERROR_STOP=1", "-qAtc", sql],
                              capture_output=True, text=True, check=True).stdout.strip()

    q(f'ANALYZE "{TABLE}"')
    total = int(q(f'SELECT COUNT(*) FROM "{TABLE}"'))
    size = int(q(f"SELECT pg_total_relation_size('\"{TABLE}\"')"))
    return {"rows": n, "table_rows": total, "seconds": round(seconds, 1), "db_bytes": size}
