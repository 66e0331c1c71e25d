"""Failed authentications — of clients at the token endpoint, of users and admins at sign-in —
counted per client id, per user name and per source address.

Fixed windows in a bounded per-process table: cheap, no shared state. With several workers or
nodes each counts on its own, so the effective limit is the configured one times the number of
worker processes (README, "Security").
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import OrderedDict

from server.errors import OAuthError


class FailureLimiter:
    def __init__(self, per_client: int, per_address: int, window: int, capacity: int = 100_000,
                 per_user: int = 0, per_signin_address: int = 0) -> None:
        self.limits = {"client": per_client, "address": per_address,
                       "user": per_user, "signin_address": per_signin_address}
        self.window = window
        self.capacity = capacity
        self._counts: OrderedDict[tuple[str, str], tuple[float, int]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _key(kind: str, value: str) -> tuple[str, str]:
        # Long values (anything an attacker sends as a client id) are stored as a fixed-size digest.
        return (kind, value if len(value) <= 64 else hashlib.sha256(value.encode("utf-8", "replace")).hexdigest())

    def blocked(self, kind: str, value: str | None, now: float | None = None) -> int | None:
        """Seconds until `value` (a client id, user name or address) may try again, or None."""
        limit = self.limits[kind]
        if limit <= 0 or not value:
            return None
        now = time.monotonic() if now is None else now
        with self._lock:
            start, count = self._counts.get(self._key(kind, value), (now, 0))
        if count >= limit and now - start < self.window:
            return max(1, math.ceil(self.window - (now - start)))
        return None

    def check(self, kind: str, value: str | None, now: float | None = None) -> None:
        """Raise 429 when a client id or address has failed too often in this window."""
        retry = self.blocked(kind, value, now)
        if retry is not None:
            raise OAuthError("invalid_client", "Too many failed client authentications; retry later", 429,
                             {"Retry-After": str(retry)}, reason="rate_limited")

    def failed(self, kind: str, value: str | None, now: float | None = None) -> None:
        if self.limits[kind] <= 0 or not value:
            return
        now = time.monotonic() if now is None else now
        key = self._key(kind, value)
        with self._lock:
            start, count = self._counts.get(key, (now, 0))
            if now - start >= self.window:
                start, count = now, 0
            self._counts[key] = (start, count + 1)
            self._counts.move_to_end(key)
            # The table is ordered by last failure: drop entries whose window has passed, then
            # the oldest beyond the capacity.
            while self._counts:
                oldest_key, (oldest_start, _) = next(iter(self._counts.items()))
                if now - oldest_start < self.window and len(self._counts) <= self.capacity:
                    break
                self._counts.popitem(last=False)
