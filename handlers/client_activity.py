"""Per-client activity: tokens issued, failures by reason and the shape of accepted client
assertions, counted per hour in IDN_OAUTH_CLIENT_ACTIVITY (storage.activity).

The token path only adds to counters in this process's memory; a background thread of each
worker adds them to the table, a few hundred rows per short transaction, every
`FlushIntervalInSeconds` and when the worker exits, so every node contributes to the same rows.
Now and then (at most once an hour per process) a flush deletes rows older than `RetentionInDays`.

Counted: events of registered clients only (a failure whose client id the authenticator did not
find — `client_known` false — has no console page and would let anyone grow the table). A 429
(rate_limited) is counted as `failure:rate_limited`: it costs one in-memory increment, and the
chart then shows the flood that a failure budget is holding back.

The migration report (`report`) reads the assertion counters back: which clients a stricter
AudiencePolicy, RequireExplicitTyp or the FAPI 2.0 profile would refuse, and why.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import re
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Iterable

import peewee

from core.metrics import AUTH_REASONS, ERROR_CODES
from handlers.base import Listener, Property, RegisteredClient, fapi2
from handlers.chain import FAPI2_METHODS
from handlers.private_key_jwt import EXPLICIT_TYP, FAPI2_ALGORITHMS, PrivateKeyJWTClientAuthenticator, typ_value
from keystore.jwk import SIGNING_ALGORITHMS
from storage import activity
from storage.database import release

log = logging.getLogger("handlers.client_activity")

# The counter names: a fixed vocabulary, so the table stays small whatever clients send.
ISSUED = activity.ISSUED
FAILURE = activity.FAILURE_PREFIX
AUD_FORMS = ("issuer", "token_endpoint", "alias", "array", "other")
TYP_FORMS = ("absent", "jwt", "explicit", "other")
BINDINGS = ("bearer", "dpop", "mtls", "dpop+mtls")
# Assertion lifetime (exp - iat) buckets: at most 1 minute, 5 minutes, 1 hour, longer.
LIFETIMES = (("60", 60), ("300", 300), ("3600", 3600), ("long", None))
_REASON = re.compile(r"[a-z0-9_.+-]{1,48}")
# Counts kept in memory while the database cannot be written; beyond this, new keys are dropped
# (said once per flush interval).
MAX_PENDING = 100_000
# Distinct failure reasons a process counts under their own name beyond the well-known ones
# (client authentication's reasons, the OAuth error codes); later ones count as failure:other:
# a drop-in handler's reason might carry request input.
MAX_REASONS = 256
_KNOWN_FAILURES = frozenset(FAILURE + reason for reason in (*AUTH_REASONS, *ERROR_CODES))
PURGE_INTERVAL = 3600
REPORT_DAYS = 7


def counter_names(event: str, data: dict[str, Any]) -> list[str]:
    """The counters an event moves (empty: not counted)."""
    if event == "token_issued":
        binding = data.get("binding")
        return [ISSUED] + ([f"binding:{binding}"] if binding in BINDINGS else [])
    if event == "token_error":
        return [FAILURE + _reason(data.get("reason") or data.get("error"))]
    if event != "client_authentication" or not data.get("client_known"):
        return []
    if data.get("outcome") == "failure":
        return [FAILURE + _reason(data.get("reason"))]
    assertion = data.get("assertion")
    if data.get("outcome") != "success" or not isinstance(assertion, dict):
        return []
    aud = assertion.get("aud")
    alg = assertion.get("alg")
    return [f"aud:{aud if aud in AUD_FORMS else 'other'}", f"typ:{_typ_form(assertion.get('typ'))}",
            f"alg:{alg if alg in SIGNING_ALGORITHMS else 'other'}", f"lifetime:{_lifetime(assertion.get('lifetime'))}"]


def _reason(value: Any) -> str:
    return value if isinstance(value, str) and _REASON.fullmatch(value) else "other"


def _typ_form(typ: Any) -> str:
    if typ is None:
        return "absent"
    if not isinstance(typ, str):
        return "other"
    value = typ_value(typ)   # as private_key_jwt compares it
    return "explicit" if value == EXPLICIT_TYP else "jwt" if value == "jwt" else "other"


def _lifetime(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)):
        return "long"
    return next(name for name, limit in LIFETIMES if limit is None or seconds <= limit)


def _reset_after_fork(ref: weakref.ref) -> None:
    listener = ref()
    if listener is not None:   # what the parent counted is the parent's to write
        listener._reset()


class ClientActivityListener(Listener):
    default_order = 120
    properties = {
        "FlushIntervalInSeconds": Property(int, 10, "a worker adds its counts to the table this often", minimum=1),
        "RetentionInDays": Property(int, 8, "hourly counts older than this are deleted", minimum=1),
    }

    def __init__(self, services, props) -> None:
        super().__init__(services, props)
        # Built before the server forks: a process's thread starts with its first event
        # (_started compares the process id); a forked child starts with fresh locks and counts.
        self._pid: int | None = None
        self._reset()
        self._last_purge = 0.0
        os.register_at_fork(after_in_child=functools.partial(_reset_after_fork, weakref.ref(self)))

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        self._pending: dict[activity.Key, tuple[int, int]] = {}
        self._reasons: set[str] = set()
        self._dropping = False   # MAX_PENDING reached since the last flush (and said)
        self._wake = threading.Event()

    def on_event(self, event: str, data: dict[str, Any]) -> None:
        client_id = data.get("client_id")
        if not isinstance(client_id, str) or not client_id or len(client_id) > 255:
            return
        names = counter_names(event, data)
        if not names:
            return
        self._started()
        now = int(time.time())
        hour = now // 3600
        with self._lock:
            for name in names:
                if name.startswith(FAILURE) and name not in _KNOWN_FAILURES and name not in self._reasons:
                    if len(self._reasons) < MAX_REASONS:
                        self._reasons.add(name)
                    else:
                        name = FAILURE + "other"
                key = (client_id, hour, name)
                count = self._pending.get(key)
                if count is None and len(self._pending) >= MAX_PENDING:
                    if not self._dropping:
                        self._dropping = True
                        log.warning("client activity not counted: %d counters wait for the database", MAX_PENDING)
                    return
                self._pending[key] = (count[0] + 1, now) if count else (1, now)

    def _started(self) -> None:
        pid = os.getpid()
        if self._pid == pid:
            return
        with self._lock:
            if self._pid == pid:
                return
            self._pid = pid
            threading.Thread(target=self._run, name="client-activity", daemon=True).start()
            atexit.register(self.flush)  # a worker's last counts, when it exits normally

    def _run(self) -> None:
        interval = self.props["FlushIntervalInSeconds"]
        while not self._wake.wait(interval):
            self.flush()

    def flush(self, now: float | None = None) -> int:
        """Add the counts of this process to the table; returns the rows written."""
        now = time.time() if now is None else now
        with self._flushing:
            with self._lock:
                batch, self._pending, self._dropping = self._pending, {}, False
            items = sorted(batch.items())   # key order in every transaction: no deadlock between nodes
            written = 0
            try:
                # One short transaction per slice: a large flush (after an outage) never holds
                # SQLite's one write lock for seconds against the token path.
                for start in range(0, len(items), activity.BATCH):
                    # the database this chain was built with
                    written += activity.add(dict(items[start:start + activity.BATCH]), self.services.db)
                if items and now - self._last_purge >= PURGE_INTERVAL:
                    self._last_purge = now
                    self._purge(now)
            except Exception as exc:  # kept for the next flush; the thread lives on, the tokens were served
                self._failed("client activity not written yet", exc)
                with self._lock:
                    for key, (count, last) in items[written:]:   # the slices written stay written
                        if key in self._pending:
                            held = self._pending[key]
                            self._pending[key] = (held[0] + count, max(held[1], last))
                        elif len(self._pending) < MAX_PENDING:
                            self._pending[key] = (count, last)
            finally:
                release(self.services.db)
            return written

    def _purge(self, now: float) -> None:
        """Rows older than RetentionInDays go; a failure here never re-counts the batch just written."""
        try:
            activity.purge(int(now) // 3600 - self.props["RetentionInDays"] * 24 + 1, self.services.db)
        except Exception as exc:
            self._failed("old client activity not purged", exc)

    @staticmethod
    def _failed(what: str, exc: Exception) -> None:
        if isinstance(exc, peewee.PeeweeException):
            log.warning("%s: %s", what, exc.__class__.__name__)
        else:
            log.exception(what)


# --- the migration report -----------------------------------------------------------------------

AUDIENCE_STRICT = "AudiencePolicy=strict"
EXPLICIT_TYP_ON = "RequireExplicitTyp=true"
FAPI2_PROFILE = "FAPI 2.0"
SETTINGS = (AUDIENCE_STRICT, EXPLICIT_TYP_ON, FAPI2_PROFILE)
AUD_LABELS = {"issuer": "the issuer", "token_endpoint": "the token endpoint URL", "alias": "TokenEndpointAlias",
              "array": "an array", "other": "another value"}
LIFETIME_LABELS = {"60": "≤ 1 min", "300": "≤ 5 min", "3600": "≤ 1 h", "long": "> 1 h"}


@dataclass
class ReportRow:
    client_id: str
    client_name: str
    auth_method: str
    counts: dict[str, int]
    refused_by: dict[str, list[str]] = field(default_factory=dict)   # setting → why
    notes: list[str] = field(default_factory=list)

    def group(self, prefix: str) -> dict[str, int]:
        """The counters of one kind ("aud", "typ"…) by value, in name order."""
        return {name[len(prefix) + 1:]: count for name, count in sorted(self.counts.items())
                if name.startswith(prefix + ":") and count}

    @property
    def assertions(self) -> int:
        return sum(self.group("aud").values())

    @property
    def issued(self) -> int:
        return self.counts.get(ISSUED, 0)

    @property
    def dpop(self) -> int:
        bindings = self.group("binding")
        return bindings.get("dpop", 0) + bindings.get("dpop+mtls", 0)

    @property
    def max_lifetime(self) -> str | None:
        used = self.group("lifetime")
        return next((LIFETIME_LABELS[name] for name, _ in reversed(LIFETIMES) if used.get(name)), None)

    def as_json(self) -> dict[str, Any]:
        return {"client_id": self.client_id, "client_name": self.client_name, "auth_method": self.auth_method,
                "refused_by": [{"setting": s, "why": why} for s, why in self.refused_by.items()],
                "notes": self.notes, "assertions": self.assertions,
                "aud": self.group("aud"), "typ": self.group("typ"), "alg": self.group("alg"),
                "lifetime": {LIFETIME_LABELS.get(name, name): count   # a name of another release: as it is
                             for name, count in self.group("lifetime").items()},
                "max_lifetime": self.max_lifetime, "tokens_issued": self.issued, "binding": self.group("binding")}


@dataclass
class Report:
    days: int
    settings: dict[str, Any]
    rows: list[ReportRow]

    def as_json(self) -> dict[str, Any]:
        return {"days": self.days, "settings": self.settings, "clients": [row.as_json() for row in self.rows]}


def _current_settings(chain, settings) -> dict[str, Any]:
    """What the server enforces now (the private_key_jwt handler's properties, the profile)."""
    authenticator = next((a for a in chain.authenticators if isinstance(a, PrivateKeyJWTClientAuthenticator)), None)
    props = authenticator.props if authenticator is not None else {}
    return {"AudiencePolicy": props.get("AudiencePolicy"), "RequireExplicitTyp": props.get("RequireExplicitTyp"),
            "AllowSingleElementAudienceArray": props.get("AllowSingleElementAudienceArray"),
            "profile": settings.profile}


def _plural(count: int, one: str, many: str | None = None) -> str:
    return f"{count} {one if count == 1 else many or one + 's'}"


def judge(client: RegisteredClient, counts: dict[str, int], settings, current: dict[str, Any]) -> ReportRow:
    """One client's row: which stricter setting would refuse what it sent in the window."""
    row = ReportRow(client.client_id, client.client_name, client.auth_method, counts)
    aud, typ, alg = row.group("aud"), row.group("typ"), row.group("alg")

    # AudiencePolicy=strict (OpenID Connect Core §9, 2025 errata): aud is the issuer, one string.
    loose = {form: aud[form] for form in ("token_endpoint", "array", "other") if form in aud}
    if loose:
        why = ", ".join(f"{_plural(n, 'assertion')} with aud {AUD_LABELS[form]}" for form, n in loose.items())
        if current.get("AllowSingleElementAudienceArray") and "array" in loose:
            why += " (a one-element array [issuer] passes with AllowSingleElementAudienceArray)"
        if client.audience_policy == "legacy":
            row.notes.append(f"keeps its own audience_policy legacy, so a server-wide strict policy does not "
                             f"refuse it; strict would: {why}")
        else:
            row.refused_by[AUDIENCE_STRICT] = [why]

    # RequireExplicitTyp (draft-ietf-oauth-rfc7523bis): typ client-authentication+jwt.
    # A client with its own require_explicit_typ is not decided by the server's property: true, it
    # already requires it (not listed under it); false, it keeps accepting them and gets a note.
    untyped = {form: typ[form] for form in TYP_FORMS if form != "explicit" and form in typ}
    if untyped and client.require_explicit_typ is not True:
        why = [f"{_plural(n, 'assertion')} " + {"absent": "without typ", "jwt": "with typ JWT",
                                                 "other": "with another typ"}[form] for form, n in untyped.items()]
        if client.require_explicit_typ is False:
            row.notes.append("keeps its own require_explicit_typ false, so a server-wide RequireExplicitTyp=true "
                             "does not refuse it; true would: " + ", ".join(why))
        else:
            row.refused_by[EXPLICIT_TYP_ON] = why

    # FAPI 2.0 Security Profile §5.3.2.1 and §5.4.1, as handlers.private_key_jwt and handlers.chain apply it.
    if not fapi2(settings, client):
        why = []
        if client.auth_method not in FAPI2_METHODS:
            why.append(f"authenticates with {client.auth_method} (only private_key_jwt or mutual TLS)")
        weak = {a: n for a, n in alg.items() if a not in FAPI2_ALGORITHMS}
        if weak:
            why.append(", ".join(f"{_plural(n, 'assertion')} signed with {a}" for a, n in weak.items())
                       + " (only PS256, ES256, EdDSA)")
        not_issuer = sum(n for form, n in aud.items() if form != "issuer")
        if not_issuer:
            why.append(f"{_plural(not_issuer, 'assertion')} whose aud is not the issuer as one string")
        bearer = row.group("binding").get("bearer", 0)
        if bearer:
            why.append(f"{_plural(bearer, 'bearer token')} (no DPoP proof, no certificate-bound token)")
        if why:
            row.refused_by[FAPI2_PROFILE] = why
    return row


def window_start(now: float, days: int = REPORT_DAYS) -> int:
    """The first hour of the last `days` UTC days, today included (the console's 7-day chart too)."""
    return (int(now) // 86400 - (days - 1)) * 24


def report(chain, settings, clients: Iterable[RegisteredClient], now: float | None = None,
           days: int = REPORT_DAYS) -> Report:
    """Every registered client, those a stricter setting would refuse first (most settings
    first), then those with activity, then the rest; each group by client id."""
    counts = activity.totals(window_start(time.time() if now is None else now, days))
    current = _current_settings(chain, settings)
    rows = [judge(client, counts.get(client.client_id, {}), settings, current) for client in clients]
    rows.sort(key=lambda r: (-len(r.refused_by), not (r.assertions or r.issued), r.client_id))
    return Report(days, current, rows)


def client_row(chain, settings, client: RegisteredClient, now: float | None = None,
               days: int = REPORT_DAYS) -> ReportRow:
    since = window_start(time.time() if now is None else now, days)
    counts = activity.totals(since, [client.client_id]).get(client.client_id, {})
    return judge(client, counts, settings, _current_settings(chain, settings))
