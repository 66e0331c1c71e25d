"""Failed authentications — of clients at the token endpoint, of users and admins at sign-in —
counted in fixed windows per key: a source address, a (client id, source address) pair, a client
id, a user name.

A window starts at a key's first failure and lasts `window` seconds; `Retry-After` is the time
left in it, after which the key's count starts again from zero. The counters live in this process
(`store = "memory"`: every worker counts on its own) or in Redis (`store = "redis://…"`: one count
for every worker of every node). When Redis does not answer, the counters fall back to this
process's memory and the log says so once a minute: the limits protect the server, they must not
be able to take the token endpoint down.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import threading
import time
from collections import OrderedDict
from typing import Iterable, Protocol
from urllib.parse import urlsplit

log = logging.getLogger("core.ratelimit")

Key = tuple[str, str]             # (kind, value)
KINDS = ("address", "client_address", "client", "user", "signin_address")
REDIS_TIMEOUT = 0.25              # seconds for connect and for each command
REDIS_RETRY_AFTER_FAILURE = 5.0   # seconds on the fallback before Redis is asked again
REDIS_WARN_EVERY = 60.0           # seconds between two "Redis is unreachable" log lines


def _digest(value: str) -> str:
    # Long values (anything an attacker sends as a client id) are kept as a fixed-size digest,
    # longer than any value kept as it is, so the two forms never meet.
    if len(value) <= 64:
        return value
    return "sha256:" + hashlib.sha256(value.encode("utf-8", "replace")).hexdigest()


class Counters(Protocol):
    """What MemoryCounters and RedisCounters both are to the limiter."""

    def read(self, keys: list[Key]) -> list[tuple[int, float]]:
        """(count, seconds left in the window) per key; (0, 0) for a key without failures."""

    def add(self, keys: list[Key]) -> list[tuple[int, float]]:
        """Count one failure for each key; the counts and windows afterwards."""


class MemoryCounters:
    """This process's counters: a bounded table ordered by last failure."""

    def __init__(self, window: int, capacity: int = 100_000, clock=time.monotonic) -> None:
        self.window = window
        self.capacity = capacity
        self.clock = clock
        self._counts: OrderedDict[Key, tuple[float, int]] = OrderedDict()
        self._lock = threading.Lock()

    def read(self, keys: list[Key]) -> list[tuple[int, float]]:
        now = self.clock()
        out = []
        with self._lock:
            for key in keys:
                start, count = self._counts.get(key, (now, 0))
                left = self.window - (now - start)
                out.append((count, left) if left > 0 else (0, 0.0))
        return out

    def add(self, keys: list[Key]) -> list[tuple[int, float]]:
        now = self.clock()
        out = []
        with self._lock:
            for key in keys:
                start, count = self._counts.get(key, (now, 0))
                if now - start >= self.window:
                    start, count = now, 0
                self._counts[key] = (start, count + 1)
                self._counts.move_to_end(key)
                out.append((count + 1, self.window - (now - start)))
            # Drop entries whose window has passed, then the oldest beyond the capacity.
            while self._counts:
                _, (oldest_start, _) = next(iter(self._counts.items()))
                if now - oldest_start < self.window and len(self._counts) <= self.capacity:
                    break
                self._counts.popitem(last=False)
        return out


# One round trip for all the keys of a request. A key's window is its expiry, set by its first
# failure; a key found without one (left by an interrupted script) gets the window again.
_ADD = """
local out = {}
for i, key in ipairs(KEYS) do
  local n = redis.call('INCR', key)
  local ttl = redis.call('PTTL', key)
  if n == 1 or ttl < 0 then
    redis.call('PEXPIRE', key, ARGV[1])
    ttl = tonumber(ARGV[1])
  end
  out[#out + 1] = n
  out[#out + 1] = ttl
end
return out
"""
_READ = """
local out = {}
for i, key in ipairs(KEYS) do
  out[#out + 1] = tonumber(redis.call('GET', key) or '0')
  out[#out + 1] = redis.call('PTTL', key)
end
return out
"""


class RedisCounters:
    """Counters in Redis, shared by every worker and node that names the same server and database.
    Each worker opens its own connection pool (created on first use after the fork)."""

    def __init__(self, url: str, window: int, pool_size: int, fallback: MemoryCounters,
                 prefix: str = "pkjwt:failures:") -> None:
        self.url, self.window, self.pool_size, self.prefix = url, window, pool_size, prefix
        self.fallback = fallback
        self._client = None
        self._pid = 0
        self._scripts: tuple = ()
        self._down_until = 0.0
        self._warned_at = -REDIS_WARN_EVERY
        self._lock = threading.Lock()

    @property
    def available(self) -> bool:
        """False while the counters are on the fallback (for health checks)."""
        return time.monotonic() >= self._down_until

    def _connection(self):
        if self._pid != os.getpid():
            import redis  # only a server configured with Redis needs the module loaded
            with self._lock:
                if self._pid != os.getpid():
                    client = redis.Redis.from_url(self.url, socket_timeout=REDIS_TIMEOUT,
                                                  socket_connect_timeout=REDIS_TIMEOUT,
                                                  max_connections=self.pool_size, retry_on_timeout=False)
                    self._scripts = (client.register_script(_READ), client.register_script(_ADD))
                    self._client, self._pid = client, os.getpid()
        return self._scripts

    def _run(self, which: int, keys: list[Key]) -> list[tuple[int, float]] | None:
        if time.monotonic() < self._down_until:
            return None
        import redis
        try:
            script = self._connection()[which]
            flat = script(keys=[f"{self.prefix}{kind}:{value}" for kind, value in keys],
                          args=[self.window * 1000])
        except (redis.RedisError, OSError, ValueError) as exc:  # whatever it is, never fail the request
            now = time.monotonic()
            self._down_until = now + REDIS_RETRY_AFTER_FAILURE
            if now - self._warned_at >= REDIS_WARN_EVERY:
                self._warned_at = now
                log.warning("rate-limit store %s is unreachable (%s): counting failures in this process "
                            "until it answers", redis_location(self.url), exc.__class__.__name__)
            return None
        return [(int(flat[i]), max(0.0, int(flat[i + 1]) / 1000)) for i in range(0, len(flat), 2)]

    def ping(self) -> bool:
        """Whether Redis answers now (health checks); a failure is handled like any other."""
        return self._run(0, []) is not None

    def read(self, keys: list[Key]) -> list[tuple[int, float]]:
        found = self._run(0, keys)
        return self.fallback.read(keys) if found is None else found

    def add(self, keys: list[Key]) -> list[tuple[int, float]]:
        found = self._run(1, keys)
        return self.fallback.add(keys) if found is None else found


def redis_location(url: str) -> str:
    """A Redis URL for the log and for operators: scheme, host, port and database (or socket
    path) — no user name or password, wherever the URL carries them (before the host, in the
    query, or, with a "/" not percent-encoded, pushed into the path)."""
    parts = urlsplit(url)
    if "@" in parts.path:
        return f"{parts.scheme}://"
    if parts.scheme == "unix":
        return f"unix://{parts.path}"
    host = f"[{parts.hostname}]" if parts.hostname and ":" in parts.hostname else parts.hostname or ""
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


class FailureLimiter:
    """The failure budgets. Client authentication is judged by `client_retry` before the
    credentials are checked and `client_failed` after a failure; sign-ins by `blocked` and `failed`."""

    def __init__(self, limits: dict[str, int], window: int, store: str = "memory", pool_size: int = 10,
                 capacity: int = 100_000) -> None:
        self.limits = {kind: limits.get(kind, 0) for kind in KINDS}
        self.window = window
        memory = MemoryCounters(window, capacity)
        self.counters: Counters = (
            memory if store == "memory" else RedisCounters(store, window, pool_size, memory))

    # --- client authentication ---------------------------------------------------------------

    def _client_keys(self, address: str, client_id: str | None) -> list[Key]:
        keys = []
        if address and self.limits["address"] > 0:
            keys.append(("address", _digest(address)))
        if client_id:
            if address and self.limits["client_address"] > 0:
                keys.append(("client_address", _digest(f"{client_id} {address}")))
            if self.limits["client"] > 0:
                keys.append(("client", _digest(client_id)))
        return keys

    def _over(self, keys: list[Key], found: Iterable[tuple[int, float]], strict: bool) -> int | None:
        """Seconds until every exhausted budget among `keys` frees a slot, or None."""
        retry = None
        for (kind, _), (count, left) in zip(keys, found):
            if (count > self.limits[kind] if strict else count >= self.limits[kind]) and left > 0:
                retry = max(retry or 0, max(1, math.ceil(left)))
        return retry

    def client_retry(self, address: str, client_id: str | None = None) -> int | None:
        """Whether the source address, the client id from this address, or the client id as a
        whole has used up its failure budget: seconds until it frees a slot, or None."""
        keys = self._client_keys(address, client_id)
        return self._over(keys, self.counters.read(keys), strict=False) if keys else None

    def client_failed(self, address: str, client_id: str | None = None) -> int | None:
        """Count one failed client authentication. Returns the Retry-After seconds when this
        failure is beyond a budget (to be answered 429 instead of 401), otherwise None. The
        count decides, atomically, so a budget of N lets exactly N failures through per window
        however many workers and nodes share it."""
        keys = self._client_keys(address, client_id)
        return self._over(keys, self.counters.add(keys), strict=True) if keys else None

    def client_failures(self, client_id: str) -> tuple[int, int]:
        """(failures of this client id in the current window, seconds left in it): a signal for
        the console, not a lock."""
        count, left = self.counters.read([("client", _digest(client_id))])[0]
        return count, math.ceil(left)

    # --- sign-in -----------------------------------------------------------------------------

    def blocked(self, kind: str, value: str | None) -> int | None:
        """Seconds until `value` (a user name or address) may try again, or None."""
        if self.limits[kind] <= 0 or not value:
            return None
        keys = [(kind, _digest(value))]
        return self._over(keys, self.counters.read(keys), strict=False)

    def failed(self, kind: str, value: str | None) -> None:
        if self.limits[kind] > 0 and value:
            self.counters.add([(kind, _digest(value))])
