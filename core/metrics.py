"""Prometheus metrics: what is counted, the fixed sets label values come from, and the
multiprocess set-up that makes one scrape see every gunicorn worker.

Label values are never taken from a request as they are: a client id, a user name or a
grant_type string a client sent would make the number of series unbounded. Every value goes
through one of the `*_label` functions below, which map anything outside a fixed set to "other".

Under gunicorn every worker writes its values to memory-mapped files in a directory made
fresh at each start (prometheus_client's multiprocess mode, `enable_multiprocess`); /metrics,
answered by any worker, sums them. Without it (the flask CLI, tests in-process) the values live
in this process, in a registry of this Metrics object's own.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess, values
from prometheus_client.mmap_dict import MmapedDict

log = logging.getLogger("core.metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

OTHER = "other"
GRANT_TYPES = frozenset(("client_credentials", "authorization_code", "refresh_token", "password",
                         "urn:ietf:params:oauth:grant-type:jwt-bearer",        # RFC 7523 §2.1
                         "urn:ietf:params:oauth:grant-type:token-exchange",    # RFC 8693 §2.1
                         "urn:ietf:params:oauth:grant-type:device_code"))      # RFC 8628 §3.4
# RFC 6749 §5.2 and the extensions this server answers with (RFC 8707, RFC 9449), plus the
# codes render.as_oauth_error gives HTTP errors.
ERROR_CODES = frozenset(("invalid_request", "invalid_client", "invalid_grant", "unauthorized_client",
                         "unsupported_grant_type", "invalid_scope", "invalid_target", "invalid_dpop_proof",
                         "use_dpop_nonce", "temporarily_unavailable", "server_error", "access_denied",
                         "not_found"))
AUTH_METHODS = frozenset(("private_key_jwt", "client_secret_basic", "client_secret_post", "tls_client_auth",
                          "self_signed_tls_client_auth", "none"))
# The audit log's reasons of failed client authentications, grouped into what an operator
# watches for. A reason not listed (a handler of one's own) counts as "other".
AUTH_REASONS = {
    **dict.fromkeys(("signature", "alg", "alg_pinned", "alg_fapi2", "kid", "typ", "no_key", "no_keys", "jwks"),
                    "signature"),
    "aud": "audience",
    **dict.fromkeys(("expired", "lifetime", "iat_stale", "iat_exp", "nbf_exp"), "expired"),
    **dict.fromkeys(("nbf", "iat_future"), "not_yet_valid"),
    **dict.fromkeys(("replay", "jti"), "replay"),
    **dict.fromkeys(("iss", "client_id", "issuer"), "claims"),
    "unknown_client": "unknown_client",
    "jwks_uri": "keys_unavailable",
    "rate_limited": "rate_limited",
    "no_credentials": "no_credentials",
    **dict.fromkeys(("malformed", "assertion_type", "assertion_missing", "authorization_malformed",
                     "authorization_scheme", "multiple_methods"), "malformed"),
    "bad_secret": "secret",
    **dict.fromkeys(("no_certificate", "certificate_key", "certificate_expired", "certificate_not_yet_valid",
                     "certificate_not_registered", "certificate_malformed", "subject_dn", "subject_alt_name",
                     "self_signed", "no_tls_identity"), "certificate"),
    **dict.fromkeys(("wrong_method", "method_fapi2", "public_client_not_allowed"), "method"),
}
TOKEN_FORMATS = frozenset(("opaque", "jwt"))
BINDINGS = frozenset(("bearer", "dpop", "mtls", "dpop+mtls"))                 # RFC 9449, RFC 8705
JWKS_OUTCOMES = frozenset(("success", "timeout", "refused", "dns", "tls", "connection", "http_status",
                           "too_large", "invalid"))
UNAVAILABLE_CAUSES = frozenset(("database", "not_ready", "handler"))
RATE_LIMIT_KINDS = frozenset(("client_authentication", "sign_in"))
REPLAY_TABLES = frozenset(("IDN_OIDC_JTI", "IDN_OAUTH_DPOP_JTI"))

# Seconds. The token endpoint answers in milliseconds; a jwks_uri fetch may take up to its timeout.
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
KEY_SET_AGE_BUCKETS = (10, 60, 300, 900, 3600, 21600, 86400, 172800)


def _fixed(value: Any, allowed) -> str:
    return value if isinstance(value, str) and value in allowed else OTHER


def grant_type_label(value: Any) -> str:
    return "none" if not value else _fixed(value, GRANT_TYPES)


def outcome_label(error: str | None, status: int = 200) -> str:
    """A token request's outcome: success, rate_limited (a 429), or the OAuth error code."""
    if error is None:
        return "success"
    return "rate_limited" if status == 429 else _fixed(error, ERROR_CODES)


def method_label(value: Any) -> str:
    return "unknown" if not value else _fixed(value, AUTH_METHODS)


def reason_label(value: Any) -> str:
    return AUTH_REASONS.get(value, OTHER) if isinstance(value, str) else OTHER


def status_label(status: int) -> str:
    return str(status) if 100 <= status <= 599 else OTHER


def _observing(record):
    """A recording never fails the request it observes: a value that cannot be written (the
    multiprocess directory removed, a full disk) is dropped, and logged at most once a minute."""
    @functools.wraps(record)
    def observe(self: "Metrics", *args: Any, **kwargs: Any) -> None:
        try:
            record(self, *args, **kwargs)
        except Exception as exc:
            now = time.monotonic()
            if self.failure_logged is None or now - self.failure_logged >= 60:
                self.failure_logged = now
                log.error("metrics not recorded: %s: %s", exc.__class__.__name__, exc)
    return observe


class _Family:
    """A labelled metric with its children kept in a plain dict: after the first use of a set of
    label values, recording takes no lock of its own (prometheus_client's labels() does)."""

    __slots__ = ("metric", "children")

    def __init__(self, metric) -> None:
        self.metric = metric
        self.children: dict[tuple, Any] = {}

    def labels(self, *label_values: str):
        child = self.children.get(label_values)
        if child is None:  # two threads may both create it: labels() returns the same child
            child = self.children[label_values] = self.metric.labels(*label_values)
        return child


def enable_multiprocess(directory: Path) -> None:
    """Before any value is recorded, in gunicorn's master: values go to files in `directory`,
    emptied now (a per-start directory: counts of an earlier run never reappear)."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    for leftover in directory.glob("*.db"):
        leftover.unlink()
    os.environ[MULTIPROC_ENV] = str(directory)
    # prometheus_client chooses how values are stored when it is imported; this process may have
    # imported it before the directory existed.
    values.ValueClass = values.get_value_class()


def worker_exited(pid: int) -> None:
    """gunicorn's child_exit: the dead worker's live gauges leave the sums (its counters stay,
    so that totals never go down)."""
    directory = os.environ.get(MULTIPROC_ENV)
    if directory:
        try:
            multiprocess.mark_process_dead(pid, directory)
        except OSError as exc:   # in gunicorn's main loop: an exception there stops the server
            log.error("metrics of worker %d not removed: %s", pid, exc)


class _ReadableFiles:
    """prometheus_client's multiprocess collector over the files of the directory it can read: a
    file left empty or damaged (a worker killed while creating it) is skipped, said once, rather
    than failing every scrape until the next start."""

    def __init__(self, directory: str) -> None:
        self.directory = Path(directory)
        self.skipped: set[str] = set()

    def collect(self):
        if not self.directory.is_dir():   # nothing to read: a failed scrape, not an empty one
            raise FileNotFoundError(f"no metrics directory {self.directory}")
        readable = []
        for path in sorted(self.directory.glob("*.db")):
            try:
                for key, *_ in MmapedDict.read_all_values_from_file(str(path)):
                    json.loads(key)
            except FileNotFoundError:   # a live gauge of a worker that has just exited
                continue
            except Exception as exc:
                if path.name not in self.skipped:
                    self.skipped.add(path.name)
                    log.warning("metrics file %s skipped: %s", path.name, exc.__class__.__name__)
                continue
            readable.append(str(path))
        return multiprocess.MultiProcessCollector.merge(readable, accumulate=True)


class Metrics:
    """Every metric of the server, created once per application."""

    def __init__(self) -> None:
        self.failure_logged: float | None = None  # monotonic time (_observing)
        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV)) and values.ValueClass is not values.MutexValue
        # Multiprocess: nothing is registered here; a scrape reads the directory.
        registry = None if self.multiprocess else CollectorRegistry(auto_describe=True)
        self.registry = registry
        self.files: _ReadableFiles | None = None   # multiprocess: what a scrape reads

        def counter(name: str, documentation: str, labels: tuple[str, ...]) -> _Family:
            return _Family(Counter(name, documentation, labels, registry=registry))

        self.http_requests = counter("idp_http_requests", "HTTP requests answered, by endpoint and status",
                                     ("endpoint", "status"))
        self.http_duration = _Family(Histogram(
            "idp_http_request_duration_seconds", "Time to answer a request, by endpoint", ("endpoint",),
            buckets=LATENCY_BUCKETS, registry=registry))
        self.token_requests = counter("idp_token_requests", "Token requests, by grant_type and outcome",
                                      ("grant_type", "outcome"))
        self.client_auth_failures = counter("idp_client_authentication_failures",
                                            "Failed client authentications, by method and reason",
                                            ("method", "reason"))
        self.tokens_issued = counter("idp_tokens_issued", "Access tokens issued, by grant type, format and binding",
                                     ("grant_type", "format", "binding"))
        self.jwks_fetches = counter("idp_jwks_uri_fetches", "Fetches of clients' jwks_uri, by outcome", ("outcome",))
        self.jwks_age = Histogram("idp_jwks_uri_key_set_age_seconds",
                                  "Age of the cached jwks_uri key set a client assertion is verified with",
                                  buckets=KEY_SET_AGE_BUCKETS, registry=registry)
        self.jwks_cached = Gauge("idp_jwks_uri_cached_key_sets", "jwks_uri key sets cached, summed over live workers",
                                 registry=registry, multiprocess_mode="livesum")
        self.workers = Gauge("idp_worker_processes", "Worker processes serving, summed over live workers",
                             registry=registry, multiprocess_mode="livesum")
        if not self.multiprocess:
            self.workers.set(1)  # this process serves (the flask CLI's server, a test client)
        self.unavailable = counter("idp_unavailable_responses", "503 answers, by cause", ("cause",))
        self.rate_limited = counter("idp_rate_limit_refusals",
                                    "Requests refused by a failure budget ([oauth.rate_limit])", ("kind",))
        self.purges = counter("idp_replay_purges", "Periodic purges of a replay table, by outcome",
                              ("table", "outcome"))
        self.purged_rows = counter("idp_replay_purged_rows", "Expired rows deleted by periodic purges", ("table",))

    # --- recording (each call is a few dictionary look-ups and a memory write) -----------

    @_observing
    def worker_started(self) -> None:
        """In each worker after the fork (gunicorn's post_fork); a dead worker's 1 leaves the
        sum with its file (worker_exited)."""
        self.workers.set(1)

    @_observing
    def request(self, endpoint: str, status: int, seconds: float, unavailable_cause: str | None = None) -> None:
        self.http_requests.labels(endpoint, status_label(status)).inc()
        self.http_duration.labels(endpoint).observe(seconds)
        if status == 503:
            self.unavailable.labels(_fixed(unavailable_cause, UNAVAILABLE_CAUSES)).inc()

    @_observing
    def token_request(self, grant_type: Any, error: str | None, status: int) -> None:
        self.token_requests.labels(grant_type_label(grant_type), outcome_label(error, status)).inc()

    @_observing
    def client_auth_failed(self, method: Any, reason: Any) -> None:
        self.client_auth_failures.labels(method_label(method), reason_label(reason)).inc()
        if reason == "rate_limited":
            self.rate_limited.labels("client_authentication").inc()

    @_observing
    def sign_in_refused(self) -> None:
        self.rate_limited.labels("sign_in").inc()

    @_observing
    def token_issued(self, grant_type: Any, token_format: Any, binding: Any) -> None:
        self.tokens_issued.labels(grant_type_label(grant_type), _fixed(token_format, TOKEN_FORMATS),
                                  _fixed(binding, BINDINGS)).inc()

    @_observing
    def jwks_fetched(self, outcome: str, cached: int) -> None:
        self.jwks_fetches.labels(_fixed(outcome, JWKS_OUTCOMES)).inc()
        self.jwks_cached.set(cached)

    @_observing
    def jwks_key_set_used(self, age_seconds: float) -> None:
        self.jwks_age.observe(age_seconds)

    @_observing
    def replay_purged(self, table: str, deleted: int | None) -> None:
        """`deleted` is None when the purge failed."""
        table = _fixed(table, REPLAY_TABLES)
        self.purges.labels(table, "failure" if deleted is None else "success").inc()
        if deleted:
            self.purged_rows.labels(table).inc(deleted)

    # --- exposition ---------------------------------------------------------------------

    def exposition(self) -> tuple[bytes, str]:
        """The text format, version 0.0.4 (what every Prometheus 2 and 3 reads), and its media type."""
        if self.registry is not None:
            return generate_latest(self.registry), CONTENT_TYPE_PLAIN_0_0_4
        if self.files is None:
            self.files = _ReadableFiles(os.environ[MULTIPROC_ENV])
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self.files)
        return generate_latest(registry), CONTENT_TYPE_PLAIN_0_0_4
