"""The shared services handlers receive explicitly: settings, database, keystore, key fetcher, replay
store, metrics."""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field

import peewee

from keystore.dpop import Nonces
from keystore.jwk import parse_jwks
from keystore.jwks_uri import JWKSFetcher
from keystore.signing_keys import KeySet, KeySets
from keystore.store import Keystore
from core.access_tokens import AccessTokens
from core.config import Settings, primary_algorithm
from core.dpop import DPoP
from core.metrics import Metrics
from core.ratelimit import FailureLimiter
from storage.models import DPoPJTI
from storage.replay import ReplayStore, SeenCache
from storage.tokens import TokenStore

KEYSTORE_RECHECK_SECONDS = 2.0
log = logging.getLogger("core.services")


@dataclass
class Services:
    settings: Settings
    db: peewee.Database
    replay: ReplayStore
    tokens: TokenStore
    limiter: FailureLimiter
    jwks_fetcher: JWKSFetcher
    dpop: DPoP
    metrics: Metrics | None  # None with [monitoring] enabled = false
    _keystore: Keystore
    _key_sets: KeySets
    access_tokens: AccessTokens = field(init=False)
    _keystore_mtime: float = 0.0
    _keystore_checked: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.access_tokens = AccessTokens(self.settings, self.tokens, self.keys)

    def keys(self) -> KeySet:
        """The server's signing keys, from the keystore as it is now."""
        return self._key_sets.get(self.keystore())

    def keystore(self) -> Keystore:
        """The primary keystore, reloaded when its file changes (e.g. `keytool -import`), so a
        certificate imported while the server runs is used without a restart."""
        now = time.monotonic()
        if now - self._keystore_checked < KEYSTORE_RECHECK_SECONDS:
            return self._keystore
        with self._lock:
            self._keystore_checked = now
            try:
                mtime = os.stat(self._keystore.path).st_mtime
            except OSError:
                return self._keystore
            if mtime != self._keystore_mtime:
                ks = self._keystore
                try:
                    self._keystore = Keystore.load(ks.path, ks.store_type, self.settings.keystore["password"], ks.alias)
                    self._keystore_mtime = mtime
                except Exception as exc:
                    # A half-written or broken file: keep serving with the last good keystore,
                    # and say so (a certificate removed from a broken file is still trusted).
                    log.warning("keystore %s could not be re-read, still using the previous one: %s",
                                ks.path, exc)
            return self._keystore


def _limiter(settings: Settings) -> FailureLimiter:
    limits = settings.rate_limit
    return FailureLimiter({"address": limits["failures_per_address"],
                           "client_address": limits["failures_per_client_address"],
                           "client": limits["failures_per_client"],
                           "user": limits["signin_failures_per_user"],
                           "signin_address": limits["signin_failures_per_address"]},
                          limits["window"], store=limits["store"], pool_size=settings.server["threads"] + 2)


def build_services(settings: Settings, db: peewee.Database, keystore: Keystore) -> Services:
    entry = settings.cache("PrivateKeyJWT")
    cache = SeenCache(capacity=entry.capacity, timeout_seconds=entry.timeout_minutes * 60) if entry.enable else None
    # The lower layers report to the metrics through these callables; they never import them.
    metrics = Metrics() if settings.monitoring["enabled"] else None
    on_fetch = metrics.jwks_fetched if metrics else None
    on_key_set_used = metrics.jwks_key_set_used if metrics else None
    on_purge = metrics.replay_purged if metrics else None
    fetch = settings.jwks_fetch
    fetcher = JWKSFetcher(parse_jwks, require_https=fetch["require_https"], allowed_hosts=fetch["allowed_hosts"],
                          timeout=fetch["timeout"], max_bytes=fetch["max_bytes"],
                          refetch_interval_seconds=fetch["refresh_interval"],
                          on_fetch=on_fetch, on_key_set_used=on_key_set_used)
    # Purged at least as fast as it fills: a row lives only as long as its proof's iat is acceptable.
    dpop = DPoP(settings.dpop, ReplayStore(db, purge_every=500, purge_batch=1000, model=DPoPJTI, owner="jkt",
                                           on_purge=on_purge),
                Nonces.secret_from(keystore.private_key))
    services = Services(settings=settings, db=db, replay=ReplayStore(db, cache, on_purge=on_purge),
                        tokens=TokenStore(db), jwks_fetcher=fetcher,
                        limiter=_limiter(settings), dpop=dpop, metrics=metrics,
                        _keystore=keystore, _key_sets=KeySets(settings.token["signing_alg"],
                                                              settings.token["signing_key_alias"],
                                                              primary_algorithm(settings.profile)))
    try:
        services._keystore_mtime = os.stat(keystore.path).st_mtime
    except OSError:
        pass
    return services
