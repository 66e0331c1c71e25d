"""`flask check`: what start-up does not check, before a deployment goes live.

Start-up (app.build_app) refuses a deployment.toml it cannot use; the command runs after it, on the
server it built, and looks at what only time or other systems break: certificates that expire (the
server's own keys, its TLS certificate, the CAs of mutual TLS, the certificates of clients), clients
whose jwks_uri does not answer, clients the chain no longer accepts (an authentication method that
is not enabled, an algorithm SigningAlgorithms dropped), the database schema version, and the Redis
of the rate limits.

Each check returns findings; `run` collects them and `render_text` / `render_json` print them. The
exit status is 1 when a finding is an error (with `strict`, a warning too), else 0.
"""

from __future__ import annotations

import datetime
import json
import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import peewee
from cryptography import x509

from core.config import Settings
from core.ratelimit import redis_location
from handlers.chain import FAPI2_METHODS, Chain
from handlers.private_key_jwt import FAPI2_ALGORITHMS
from keystore.certificates import Validity, certificate_key, read_certificates, self_issued, x5c_validity
from keystore.jwk import InvalidKey, PublicKey, parse_jwks
from keystore.jwks_uri import JWKSFetchError
from keystore.store import PRIVATE_KEY_ENTRY
from storage import clients as client_store
from storage import schema as db_schema
from storage.clients import RegisteredClient
from storage.database import describe
from storage.models import TABLES, SchemaVersion

ERROR, WARNING, OK = "error", "warning", "ok"
SEVERITIES = (ERROR, WARNING, OK)
LABELS = {ERROR: "ERROR", WARNING: "WARN", OK: "OK"}
# The server's own certificates (primary key, signing key, TLS) must be valid for more than this
# many days; a client's or a CA's certificate within it is a warning.
MIN_DAYS = 30
REDIS_TIMEOUT = 2.0       # seconds: connect and PING
JWKS_FETCHES = 8          # jwks_uri fetched at once
UPGRADE_COMMAND = "flask --app app db upgrade"
# The method whose assertions are signed with an algorithm the chain must allow (handlers.private_key_jwt).
_ASSERTION_METHOD = "private_key_jwt"


@dataclass(frozen=True)
class Finding:
    """One result: its severity, a short stable code, a message naming the thing, and the same
    facts for machines (`about`: client_id, alias, file…; `not_after`: ISO 8601, UTC)."""

    severity: str
    code: str
    message: str
    about: dict[str, str] = field(default_factory=dict)
    not_after: str | None = None

    def line(self) -> str:
        return f"{LABELS[self.severity]:<5}  {self.code}  {self.message}"

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"severity": self.severity, "code": self.code, "message": self.message, **self.about}
        if self.not_after is not None:
            out["not_after"] = self.not_after
        return out


@dataclass
class Context:
    """What the checks read: the server start-up built, and the time they judge by."""

    settings: Settings
    services: Any
    chain: Chain
    now: float = field(default_factory=time.time)
    clients: list[RegisteredClient] | None = None   # None: the client table could not be read


Check = Callable[[Context], list[Finding]]


# --- certificates ------------------------------------------------------------------------------

def _date(when: datetime.datetime) -> str:
    return when.date().isoformat()


def _iso(when: datetime.datetime) -> str:
    return when.astimezone(datetime.timezone.utc).isoformat()


def _days(n: int) -> str:
    return f"{n} day" if n == 1 else f"{n} days"


def expiry(cert: x509.Certificate, now: float, *, code: str, what: str, which: str, soon: str,
           about: dict[str, str], expired: str = ERROR) -> Finding:
    """The finding about one certificate's validity period: `expired` (severity) once notAfter has
    passed or while notBefore is ahead, `soon` within MIN_DAYS of notAfter, ok otherwise.
    Messages read "<what> expired on <date> (<which>)"."""
    not_after, not_before = cert.not_valid_after_utc, cert.not_valid_before_utc
    facts = {"about": about, "not_after": _iso(not_after)}
    left = not_after.timestamp() - now
    if left < 0:
        return Finding(expired, code, f"{what} expired on {_date(not_after)} ({which})", **facts)
    if not_before.timestamp() > now:
        return Finding(expired, code, f"{what} is not valid before {_date(not_before)} ({which})", **facts)
    if left <= MIN_DAYS * 86400:
        return Finding(soon, code, f"{what} expires on {_date(not_after)}, in {_days(math.ceil(left / 86400))} "
                                   f"({which})", **facts)
    return Finding(OK, code, f"{what} is valid until {_date(not_after)} ({which})", **facts)


def check_primary_key(ctx: Context) -> list[Finding]:
    """The primary key entry: it signs ID tokens and serves TLS (its certificate)."""
    keystore = ctx.services.keystore()
    alias = ctx.settings.keystore["alias"]
    return [expiry(keystore.certificate, ctx.now, code="keystore.primary_key", what="the primary key's certificate",
                   which=f"alias {alias}", soon=ERROR, about={"alias": alias})]


def check_signing_key(ctx: Context) -> list[Finding]:
    """The key entry `[oauth.token] signing_key_alias` names (JWT access tokens), when there is one."""
    token = ctx.settings.token
    alias = token["signing_key_alias"]
    if not alias:
        return []
    entry = next((e for e in ctx.services.keystore().entries()
                  if e.kind == PRIVATE_KEY_ENTRY and e.alias.lower() == alias.lower()), None)
    if entry is None:  # start-up refuses this; the file may have changed since
        return [Finding(ERROR, "keystore.signing_key", f"signing_key_alias {alias} is not a key entry of the keystore",
                        about={"alias": alias})]
    return [expiry(entry.certificate, ctx.now, code="keystore.signing_key",
                   what=f"the certificate of the {token['signing_alg']} signing key", which=f"alias {alias}",
                   soon=ERROR, about={"alias": alias})]


def _host_names(cert: x509.Certificate) -> list[str]:
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, ValueError):
        return []
    return [str(v).lower() for v in names.get_values_for_type(x509.DNSName)] + [
        str(v) for v in names.get_values_for_type(x509.IPAddress)]


def _names_host(names: list[str], host: str) -> bool:
    """RFC 6125 §6.4: an exact name, or a wildcard standing for the one left-most label."""
    host = host.lower().rstrip(".")
    for name in names:
        if name == host or (name.startswith("*.") and "." in host and host.split(".", 1)[1] == name[2:]):
            return True
    return False


def check_tls(ctx: Context) -> list[Finding]:
    """The certificate the server serves: app.serve writes the primary key entry's certificate as
    its TLS certificate at every start, so it is that one."""
    server = ctx.settings.server
    if not server["tls"]:
        return [Finding(OK, "tls.certificate", "the server does not terminate TLS ([server] tls = false): "
                                               "check the certificate of what does")]
    keystore = ctx.services.keystore()
    cert, alias = keystore.certificate, ctx.settings.keystore["alias"]
    origin = "self-signed, as the server generates it with a new keystore" if self_issued(cert) else \
        f"issued by {cert.issuer.rfc4514_string()}"
    what = f"the TLS certificate served on port {server['port']}"
    findings = [expiry(cert, ctx.now, code="tls.certificate", what=what, which=f"alias {alias}; {origin}", soon=ERROR,
                       about={"alias": alias})]
    names = _host_names(cert)
    if not _names_host(names, server["hostname"]):
        findings.append(Finding(WARNING, "tls.hostname",
                                f"the TLS certificate names {', '.join(names) or 'no host (no subjectAltName)'}, not "
                                f"[server] hostname {server['hostname']}: clients that verify it will refuse it "
                                f"(alias {alias})", about={"alias": alias}))
    return findings


def check_client_trust(ctx: Context) -> list[Finding]:
    """The CAs of tls_client_auth and the certificates self_signed_tls_client_auth clients may
    present, when the server asks TLS clients for certificates."""
    server = ctx.settings.server
    if server["client_certificates"] == "off":
        return []
    findings = []
    for key, code, what in (("client_ca_file", "tls.client_ca", "the client CA certificate"),
                            ("client_self_signed_file", "tls.client_self_signed", "the client certificate")):
        if not server[key]:
            continue
        try:
            certificates = read_certificates(str(ctx.settings.resolve(server[key])))
        except (OSError, ValueError):
            findings.append(Finding(ERROR, code, f"[server] {key} {server[key]} cannot be read as a PEM file of "
                                                 "certificates", about={"file": server[key]}))
            continue
        for cert in certificates:
            subject = cert.subject.rfc4514_string()
            findings.append(expiry(cert, ctx.now, code=code, what=f"{what} {subject}", which=f"{key} {server[key]}",
                                   soon=WARNING, about={"file": server[key], "subject": subject}))
    return findings


# --- the database -------------------------------------------------------------------------------

def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:200]


def check_database(ctx: Context) -> list[Finding]:
    """The database answers and its schema is the one this release reads (storage.schema)."""
    db = ctx.services.db
    where = describe(ctx.settings.database_url, ctx.settings.path.parent)
    expected = db_schema.SCHEMA_VERSION
    try:
        db.connect(reuse_if_open=True)
        tables = {name.lower() for name in db.get_tables()}
        table = SchemaVersion._meta.table_name
        stored = SchemaVersion.select(peewee.fn.MAX(SchemaVersion.version)).scalar() if table in tables else None
    except peewee.PeeweeException as exc:
        return [Finding(ERROR, "database.connection", f"the database does not answer: {exc.__class__.__name__}: "
                                                      f"{_first_line(exc)} ({where})", about={"database": where}),
                _CLIENTS_NOT_CHECKED]
    facts = {"about": {"database": where}}
    severity = ERROR
    if not stored:
        problem = f"the database has no schema yet: run `{UPGRADE_COMMAND}`"
    elif stored < expected:
        problem = f"the database schema is version {stored}, this release needs version {expected}: " \
                  f"run `{UPGRADE_COMMAND}`"
    elif stored > expected:
        problem = f"the database schema is version {stored}, newer than this release's version {expected}: " \
                  "run the release that upgraded it"
    elif missing := _missing(db, tables):
        problem = f"the database schema is version {stored} but lacks {', '.join(missing)}: run `{UPGRADE_COMMAND}`"
    else:
        severity, problem = OK, f"the database schema is version {stored}"
    findings = [Finding(severity, "database.schema", f"{problem} ({where})", **facts)]
    if stored:
        try:
            ctx.clients = client_store.all_clients()
        except peewee.PeeweeException:
            ctx.clients = None
    if ctx.clients is None:
        findings.append(_CLIENTS_NOT_CHECKED)
    return findings


_CLIENTS_NOT_CHECKED = Finding(WARNING, "clients", "clients not checked: the client table cannot be read")


def _missing(db: peewee.Database, tables: set[str]) -> list[str]:
    """Tables and columns the models have and the database lacks."""
    missing = []
    for model in TABLES:
        name = model._meta.table_name
        if name.lower() not in tables:
            missing.append(f"table {name}")
            continue
        present = {c.name.lower() for c in db.get_columns(name)}
        missing += [f"column {name}.{f.column_name}" for f in model._meta.sorted_fields
                    if f.column_name.lower() not in present]
    return missing


# --- clients ------------------------------------------------------------------------------------

def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _keystore_source(client: RegisteredClient) -> bool:
    return client.auth_method == _ASSERTION_METHOD and not client.jwks and not client.jwks_uri


def check_keystore_certificates(ctx: Context) -> list[Finding]:
    """The certificate of each private_key_jwt client that has neither jwks nor jwks_uri: the one
    stored in the keystore under its client id (the token endpoint refuses it once expired)."""
    if ctx.clients is None:
        return []
    keystore = ctx.services.keystore()
    findings, good = [], 0
    for client in filter(_keystore_source, ctx.clients):
        cid = client.client_id
        about = {"client_id": cid, "alias": cid}
        stored = keystore.trusted_certificate(cid)
        if stored is None:
            findings.append(Finding(ERROR, "keystore.client_certificate",
                                    f"client {cid} has no certificate in the keystore: import it with `flask --app "
                                    f"app keystore import-cert --alias {cid} --file CERT` (alias {cid})", about=about))
            continue
        cert = stored.to_cryptography()
        found = expiry(cert, ctx.now, code="keystore.client_certificate", what=f"the certificate of client {cid}",
                       which=f"alias {cid}", soon=WARNING, about=about)
        if found.severity == OK:
            try:
                certificate_key(cert)
            except InvalidKey as exc:
                found = Finding(ERROR, "keystore.client_certificate",
                                f"the certificate of client {cid} holds a key the token endpoint refuses: {exc} "
                                f"(alias {cid})", about=about)
        if found.severity == OK:
            good += 1
        else:
            findings.append(found)
    if good:
        findings.append(Finding(OK, "keystore.client_certificate",
                                f"{_plural(good, 'client certificate', 'client certificates')} in the keystore "
                                f"valid for more than {MIN_DAYS} days"))
    return findings


def check_uploaded_certificates(ctx: Context) -> list[Finding]:
    """The certificates registered with clients' keys (the x5c of a registered JWK Set: a
    certificate uploaded in the console or through the registration API)."""
    if ctx.clients is None:
        return []
    findings, good = [], 0
    for client in ctx.clients:
        if not client.jwks:
            continue
        validity = x5c_validity(client.jwks)
        if not validity:
            continue
        try:
            keys = parse_jwks(client.jwks)
        except InvalidKey:
            continue  # clients.keys reports a JWK Set that cannot be used
        usable = [k for k in keys if (v := validity.get(k.thumbprint)) is None or v.lapse(ctx.now, 0) is None]
        cid = client.client_id
        for key in keys:
            period = validity.get(key.thumbprint)
            if period is None:
                continue
            name = key.kid or key.thumbprint[:12]
            others = [k for k in usable if k is not key]
            found = expiry(_as_cert(period), ctx.now, code="clients.certificate",
                           what=f"the certificate uploaded for client {cid}", which=f"key {name}", soon=WARNING,
                           about={"client_id": cid, "kid": name}, expired=WARNING if others else ERROR)
            if found.severity == OK:
                good += 1
            else:
                findings.append(found)
    if good:
        findings.append(Finding(OK, "clients.certificate",
                                f"{_plural(good, 'uploaded client certificate', 'uploaded client certificates')} "
                                f"valid for more than {MIN_DAYS} days"))
    return findings


@dataclass(frozen=True)
class _Period:
    """A Validity read like a certificate by `expiry`."""

    not_valid_before_utc: datetime.datetime
    not_valid_after_utc: datetime.datetime


def _as_cert(period: Validity) -> Any:
    utc = datetime.timezone.utc
    return _Period(datetime.datetime.fromtimestamp(period.not_before, utc),
                   datetime.datetime.fromtimestamp(period.not_after, utc))


def _allowed_algorithms(chain: Chain) -> tuple[str, ...]:
    return tuple(chain.metadata().get("token_endpoint_auth_signing_alg_values_supported") or ())


def _alg_allowed(alg: str, allowed: tuple[str, ...]) -> bool:
    # handlers.private_key_jwt: a client pinned to EdDSA may sign Ed25519 and the other way round.
    return alg in allowed or (alg in ("EdDSA", "Ed25519") and bool({"EdDSA", "Ed25519"} & set(allowed)))


def check_client_methods(ctx: Context) -> list[Finding]:
    """Clients the chain would refuse whatever they send: an authentication method no enabled
    authenticator offers (or FAPI 2.0 forbids), a pinned algorithm SigningAlgorithms no longer
    lists, keys none of which can sign an algorithm that is allowed."""
    if ctx.clients is None:
        return []
    settings, chain = ctx.settings, ctx.chain
    methods = chain.metadata().get("token_endpoint_auth_methods_supported") or []
    allowed = _allowed_algorithms(chain)
    keystore = ctx.services.keystore()
    findings: list[Finding] = []
    checked = 0
    for client in ctx.clients:
        cid, method = client.client_id, client.auth_method
        about = {"client_id": cid}
        fapi = settings.profile == "fapi2" or client.profile == "fapi2"
        if method not in methods or (fapi and method not in FAPI2_METHODS):
            findings.append(Finding(ERROR, "clients.auth_method",
                                    f"client {cid} authenticates with {method}, which the token endpoint does not "
                                    f"accept: {_why_not(settings, client, methods)}", about=about))
            continue
        if method != _ASSERTION_METHOD:
            checked += 1
            continue
        usable = tuple(a for a in allowed if not fapi or a in FAPI2_ALGORITHMS)
        pinned = client.signing_alg
        if pinned and not _alg_allowed(pinned, usable):
            rule = "FAPI 2.0 allows PS256, ES256 and EdDSA" if fapi and pinned not in FAPI2_ALGORITHMS else \
                f"SigningAlgorithms: {', '.join(allowed) or 'none'}"
            findings.append(Finding(ERROR, "clients.signing_alg",
                                    f"client {cid} is pinned to {pinned} (token_endpoint_auth_signing_alg), which the "
                                    f"chain no longer allows ({rule})", about={**about, "alg": pinned}))
            continue
        keys = _registered_keys(client, keystore)
        if keys:  # None: jwks_uri (clients.jwks_uri) or nothing usable (keystore.client_certificate)
            wanted = [a for a in usable if not pinned or _alg_allowed(a, (pinned,))]
            if not any(key.fits(alg) for key in keys for alg in wanted):
                findings.append(Finding(ERROR, "clients.keys",
                                        f"none of the keys of client {cid} can sign an algorithm the chain allows "
                                        f"({', '.join(wanted) or 'none'})", about=about))
                continue
        checked += 1
    if checked:
        findings.append(Finding(OK, "clients.auth_method",
                                f"{_plural(checked, 'client', 'clients')} registered for a method and algorithm the "
                                "chain accepts"))
    elif not ctx.clients:
        findings.append(Finding(OK, "clients.auth_method", "no client is registered"))
    return findings


def _why_not(settings: Settings, client: RegisteredClient, methods: list[str]) -> str:
    method = client.auth_method
    if method not in FAPI2_METHODS and settings.profile == "fapi2":
        return 'not allowed under [oauth] profile = "fapi2"'
    if method not in FAPI2_METHODS and client.profile == "fapi2":
        return "the client is held to FAPI 2.0 (profile fapi2), which does not allow it"
    if method.startswith(("tls_", "self_signed_tls_")) and settings.server["client_certificates"] == "off":
        return '[server] client_certificates = "off"'
    return f"no enabled [[event_listener]] handles it (accepted: {', '.join(methods) or 'none'})"


def _registered_keys(client: RegisteredClient, keystore) -> list[PublicKey] | None:
    """The keys the token endpoint verifies a private_key_jwt client's assertions with, when
    they are registered here (inline JWK Set or keystore certificate)."""
    if client.jwks:
        try:
            return parse_jwks(client.jwks)
        except InvalidKey:
            return []
    if client.jwks_uri:
        return None
    stored = keystore.trusted_certificate(client.client_id)
    if stored is None:
        return None
    try:
        return [certificate_key(stored.to_cryptography())]
    except InvalidKey:
        return None


@contextmanager
def _quiet(logger: str) -> Iterator[None]:
    """The fetcher logs each failure; here each one is a finding instead."""
    log = logging.getLogger(logger)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def check_jwks_uris(ctx: Context) -> list[Finding]:
    """Each client's jwks_uri, fetched as the token endpoint fetches it (keystore.jwks_uri: the
    same address rules, timeout and size limit). A failure is the client's to fix, and the
    fetcher keeps serving the last good key set for a while: a warning."""
    if ctx.clients is None:
        return []
    fetcher = ctx.services.jwks_fetcher
    targets = [c for c in ctx.clients if c.jwks_uri]
    if not targets:
        return []

    def fetch(client: RegisteredClient) -> tuple[list | None, str]:
        try:
            return fetcher.keys(client.jwks_uri), ""
        except JWKSFetchError as exc:
            return None, exc.description

    with _quiet("keystore.jwks_uri"), ThreadPoolExecutor(max_workers=min(JWKS_FETCHES, len(targets))) as pool:
        results = list(pool.map(fetch, targets))
    findings, good = [], 0
    for client, (keys, reason) in zip(targets, results):
        cid, uri = client.client_id, client.jwks_uri
        about = {"client_id": cid, "jwks_uri": uri}
        if keys is None:
            reason = reason.removeprefix("jwks_uri ")
            findings.append(Finding(WARNING, "clients.jwks_uri",
                                    f"the jwks_uri of client {cid} does not answer with keys: {reason} ({uri})",
                                    about=about))
        elif not keys:
            findings.append(Finding(WARNING, "clients.jwks_uri",
                                    f"the jwks_uri of client {cid} answers with no key ({uri})", about=about))
        else:
            good += 1
    if good:
        findings.append(Finding(OK, "clients.jwks_uri",
                                f"the jwks_uri of {_plural(good, 'client', 'clients')} answered with keys"))
    return findings


# --- the rate-limit store -----------------------------------------------------------------------

def check_redis(ctx: Context) -> list[Finding]:
    """The Redis `[oauth.rate_limit] store` names answers. When it does not, the server counts
    failures in each process instead, and each worker allows the whole budget: an error."""
    url = ctx.settings.rate_limit["store"]
    if url == "memory":
        return []
    import redis

    where = redis_location(url)
    client = None
    try:
        client = redis.Redis.from_url(url, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT)
        client.ping()
    except (redis.RedisError, OSError, ValueError) as exc:
        return [Finding(ERROR, "rate_limit.store",
                        f"the Redis of [oauth.rate_limit] store does not answer ({exc.__class__.__name__}): each "
                        f"process would count failures on its own ({where})", about={"store": where})]
    finally:
        if client is not None:
            client.close()
    return [Finding(OK, "rate_limit.store", f"the Redis of [oauth.rate_limit] store answers ({where})",
                    about={"store": where})]


# --- running and reporting ----------------------------------------------------------------------

# In this order: check_database reads the clients the client checks look at.
CHECKS: tuple[Check, ...] = (check_primary_key, check_signing_key, check_tls, check_client_trust, check_database,
                             check_keystore_certificates, check_uploaded_certificates, check_client_methods,
                             check_jwks_uris, check_redis)


def run(settings: Settings, services, chain: Chain, now: float | None = None) -> list[Finding]:
    """Every check's findings; a check that fails unexpectedly is an error finding, not a traceback."""
    ctx = Context(settings, services, chain, time.time() if now is None else now)
    findings: list[Finding] = []
    for check in CHECKS:
        try:
            findings += check(ctx)
        except Exception as exc:  # one broken check must not hide the others' findings
            name = check.__name__.removeprefix("check_")
            findings.append(Finding(ERROR, "preflight.check", f"the {name} check failed: {exc.__class__.__name__}: "
                                                              f"{_first_line(exc)}"))
    return findings


def counts(findings: list[Finding]) -> dict[str, int]:
    return {severity: sum(f.severity == severity for f in findings) for severity in SEVERITIES}


def exit_status(findings: list[Finding], strict: bool = False) -> int:
    """1 when a finding is an error (with `strict`, also a warning), else 0."""
    failing = (ERROR, WARNING) if strict else (ERROR,)
    return 1 if any(f.severity in failing for f in findings) else 0


def summary(findings: list[Finding], settings: Settings) -> str:
    n = counts(findings)
    return (f"{_plural(n[ERROR], 'error', 'errors')}, {_plural(n[WARNING], 'warning', 'warnings')}, {n[OK]} ok "
            f"({settings.path})")


def render_text(findings: list[Finding], settings: Settings) -> str:
    return "\n".join([f.line() for f in findings] + [summary(findings, settings)])


def render_json(findings: list[Finding], settings: Settings, strict: bool = False) -> str:
    n = counts(findings)
    status = ERROR if n[ERROR] else WARNING if n[WARNING] else OK
    return json.dumps({"config": str(settings.path), "status": status, "exit_status": exit_status(findings, strict),
                       "summary": n, "findings": [f.as_json() for f in findings]}, indent=2)
