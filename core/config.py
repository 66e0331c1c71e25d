"""deployment.toml: read once at start-up, validated completely, reported precisely.

Every option the server reads is declared in SCHEMA below with its type and default, so an
operator's typo (an unknown key, a wrong type, a missing password) stops start-up with one
message naming the key and its line instead of being silently ignored.

The defaults below (SCHEMA, LISTENER_DEFAULTS, CACHE_DEFAULTS) and the handlers' Property
defaults are the only definitions: lower layers (keystore, storage) receive the values from
core.services, and tests/test_defaults.py checks the shipped deployment.toml and README.md
against them.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.exceptions import ParseError

from keystore.certificates import read_certificates


class ConfigError(Exception):
    """A mistake in deployment.toml; str() is the one line printed at start-up."""


# ---------------------------------------------------------------------------------------
# Value coercion, shared by the fixed sections and by handler properties. WSO2 files mix
# "100" and 100, "false" and false: both spellings are accepted, anything else is an error.

def coerce(value: Any, kind: Any, what: str) -> Any:
    """Return `value` as `kind` (bool, int, float, str, list, or a tuple of allowed strings)."""
    if isinstance(kind, tuple):
        if isinstance(value, str) and value in kind:
            return value
        raise ValueError(f"{what} must be one of {', '.join(kind)}")
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        raise ValueError(f"{what} must be true or false")
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and re.fullmatch(r"\s*-?\d{1,18}\s*", value):
            return int(value)
        raise ValueError(f"{what} must be an integer")
    if kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and re.fullmatch(r"\s*-?\d{1,9}(\.\d{1,9})?\s*", value):
            return float(value)
        raise ValueError(f"{what} must be a number")
    if kind is str:
        if isinstance(value, str):
            return value
        raise ValueError(f"{what} must be a string")
    if kind is list:
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
        if isinstance(value, str):  # WSO2 style: "RS256, PS256"
            return [v for v in re.split(r"[,\s]+", value) if v]
        raise ValueError(f"{what} must be an array of strings")
    raise TypeError(kind)


# ---------------------------------------------------------------------------------------
# The fixed sections. None as a default means "required".

SCHEMA: dict[tuple[str, ...], dict[str, tuple[Any, Any]]] = {
    ("server",): {
        "hostname": (str, "localhost"),
        "port": (int, 9443),
        "bind_address": (str, "127.0.0.1"),
        "workers": (int, 2),
        "threads": (int, 4),
        "tls": (bool, True),
        "trusted_proxies": (list, []),
        "proxy_port": (int, 0),          # the port clients use when a proxy listens elsewhere (0: port)
        # RFC 8705: "optional" asks TLS clients for a certificate (mutual TLS) issued by a CA in
        # client_ca_file; behind a proxy, the Client-Cert header (RFC 9440) of trusted_proxies.
        "client_certificates": (("off", "optional"), "off"),
        "client_ca_file": (str, ""),     # the CAs that issue tls_client_auth clients' certificates
        "client_self_signed_file": (str, ""),  # self_signed_tls_client_auth certificates TLS accepts
    },
    ("database", "identity_db"): {
        "url": (str, "sqlite:///var/identity.db"),
    },
    ("keystore", "primary"): {
        "file_name": (str, "var/wso2carbon.p12"),
        "type": (("PKCS12", "JKS"), "PKCS12"),
        "password": (str, None),
        "alias": (str, "wso2carbon"),
    },
    ("oauth",): {
        "timestamp_skew": (int, 30),
        "profile": (("oauth2", "fapi2"), "oauth2"),  # "fapi2": the FAPI 2.0 Security Profile
    },
    ("oauth", "par"): {
        "required": (bool, False),       # RFC 9126 §5: every authorization request must be pushed
        "request_uri_lifetime": (int, 60),
    },
    ("oauth", "token_validation"): {
        "app_access_token_validity": (int, 3600),
        "user_access_token_validity": (int, 3600),
        "refresh_token_validity": (int, 86400),
        "authorization_code_validity": (int, 60),
        "id_token_validity": (int, 3600),
    },
    ("oauth", "rate_limit"): {
        "failures_per_address": (int, 100),
        "failures_per_client_address": (int, 30),
        "failures_per_client": (int, 30),
        "store": (str, "memory"),        # or a Redis URL: counters shared by every worker and node
        "signin_failures_per_user": (int, 10),
        "signin_failures_per_address": (int, 100),
        "window": (int, 60),
    },
    ("oauth", "token"): {
        "access_token_format": (("opaque", "jwt"), "opaque"),   # per client too
        "signing_alg": (("RS256", "PS256", "ES256", "EdDSA"), "RS256"),  # of JWT access tokens
        "signing_key_alias": (str, ""),  # a key entry in the keystore; "" = the primary key (RSA)
        "persist": (bool, True),         # false: JWT access tokens are not stored (revocation: a deny-list)
    },
    ("oauth", "dpop"): {
        "proof_lifetime": (int, 60),     # seconds a proof is accepted after its iat
        "timestamp_skew": (int, 5),      # seconds of clock difference tolerated in iat
        "require_nonce": (bool, False),  # per client too (require_dpop_nonce)
        "nonce_lifetime": (int, 300),    # a nonce is accepted for one to two of these periods
        "signing_algorithms": (list, ["ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "EdDSA", "RS256"]),
    },
    ("oauth", "pkce"): {
        "mandatory": (bool, False),      # public clients always need PKCE, whatever this says
        "allow_plain": (bool, False),
    },
    ("session",): {
        "lifetime": (int, 3600),         # seconds a sign-in lasts, for users and admins
    },
    ("oauth", "oidc", "id_token"): {
        "issuer": (str, ""),
    },
    ("oauth", "jwks_fetch"): {
        "require_https": (bool, True),
        "allowed_hosts": (list, []),
        "timeout": (float, 3.0),
        "max_bytes": (int, 65536),
        "refresh_interval": (int, 60),
    },
    ("monitoring",): {
        "enabled": (bool, True),         # GET /metrics, the Prometheus text format
        "port": (int, 0),                # 0: /metrics on [server] port; else on this port only
        "allowed_addresses": (list, ["127.0.0.0/8", "::1"]),  # addresses or networks that may read it
    },
}
# RFC 9449 §4.2: asymmetric algorithms only ("none" and MACs never).
DPOP_ALGORITHMS = ("ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "RS256", "RS384", "RS512", "EdDSA")
# The arrays of tables. Keys without a default here: `id` and `name` are required, `type` is
# WSO2's handler type (kept, not used) and `order` defaults to the handler's `default_order`.
ARRAYS = {("event_listener",), ("cache", "manager")}
LISTENER_KEYS = {"id": str, "type": str, "name": str, "order": int, "enable": bool}
LISTENER_DEFAULTS = {"enable": True}
CACHE_KEYS = {"name": str, "timeout": int, "capacity": int, "enable": bool}
# timeout in minutes, capacity in entries; also what a cache without an entry gets.
CACHE_DEFAULTS = {"timeout": 10, "capacity": 5000, "enable": True}


@dataclass(frozen=True)
class Located:
    """A value from the file with the key path it came from, for messages raised later."""

    value: Any
    key_path: tuple


@dataclass(frozen=True)
class ListenerEntry:
    """One [[event_listener]]: which handler, its order, its raw properties."""

    id: str
    type: str
    name: str
    order: int | None
    enable: bool
    properties: dict[str, Located]
    key_path: tuple


@dataclass(frozen=True)
class CacheEntry:
    name: str
    timeout_minutes: int
    capacity: int
    enable: bool


@dataclass(frozen=True)
class Settings:
    path: Path
    server: dict[str, Any]
    database_url: str
    keystore: dict[str, Any]
    timestamp_skew: int
    access_token_lifetime: int
    issuer: str
    jwks_fetch: dict[str, Any]
    rate_limit: dict[str, Any]
    session_lifetime: int                                    # [session] lifetime, seconds
    profile: str                                             # [oauth] profile: "oauth2" or "fapi2"
    validity: dict[str, int] = field(default_factory=dict)   # [oauth.token_validation], seconds
    pkce: dict[str, bool] = field(default_factory=dict)
    par: dict[str, Any] = field(default_factory=dict)        # [oauth.par]
    token: dict[str, Any] = field(default_factory=dict)      # [oauth.token]
    dpop: dict[str, Any] = field(default_factory=dict)       # [oauth.dpop]
    monitoring: dict[str, Any] = field(default_factory=dict)  # [monitoring], plus allowed_networks (parsed)
    listeners: list[ListenerEntry] = field(default_factory=list)
    caches: dict[str, CacheEntry] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        """The URL clients use. Always https: with `tls = false` the server sits behind a
        TLS-terminating proxy, and clients still reach it over TLS (on proxy_port when set)."""
        port = self.server["proxy_port"] or self.server["port"]
        host = self.server["hostname"]
        return f"https://{host}" if port == 443 else f"https://{host}:{port}"

    @property
    def token_endpoint(self) -> str:
        return self.base_url + "/oauth2/token"

    def cache(self, name: str) -> CacheEntry:
        """A [[cache.manager]] entry, or the defaults when the file has none."""
        return self.caches.get(name) or CacheEntry(name, CACHE_DEFAULTS["timeout"], CACHE_DEFAULTS["capacity"],
                                                   CACHE_DEFAULTS["enable"])

    def resolve(self, relative: str) -> Path:
        """Files named in deployment.toml are relative to the directory that holds it."""
        p = Path(relative)
        return p if p.is_absolute() else self.path.parent / p

    def error(self, key_path: tuple, message: str) -> ConfigError:
        return ConfigError(_message(self.path, _Lines.get(self.path), key_path, message))


# ---------------------------------------------------------------------------------------
# Line numbers. tomlkit keeps no positions for keys, so the source is scanned once: every
# table header and key gets the path it defines, arrays of tables get their index.

class _Lines:
    _cache: dict[Path, dict[tuple, int]] = {}

    @classmethod
    def get(cls, path: Path) -> dict[tuple, int]:
        return cls._cache.get(path, {})

    @classmethod
    def scan(cls, path: Path, text: str) -> dict[tuple, int]:
        lines: dict[tuple, int] = {}
        counts: dict[tuple, int] = {}
        current: tuple = ()
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            header = re.match(r"^\[\[\s*([^\]]+?)\s*\]\]", line)
            if header:
                name = _split_key(header.group(1))
                counts[name] = counts.get(name, -1) + 1
                current = name + (counts[name],)
                lines.setdefault(current, number)
                continue
            header = re.match(r"^\[\s*([^\]]+?)\s*\]", line)
            if header:
                current = _in_array(_split_key(header.group(1)), counts)
                lines.setdefault(current, number)
                continue
            key = re.match(r'^((?:"[^"]*"|[A-Za-z0-9_\-]+)(?:\s*\.\s*(?:"[^"]*"|[A-Za-z0-9_\-]+))*)\s*=', line)
            if key:
                lines.setdefault(current + _split_key(key.group(1)), number)
        cls._cache[path] = lines
        return lines


def _split_key(dotted: str) -> tuple[str, ...]:
    return tuple(p.strip().strip('"') for p in re.findall(r'"[^"]*"|[^.]+', dotted))


def _in_array(name: tuple, counts: dict[tuple, int]) -> tuple:
    # [event_listener.properties] belongs to the last [[event_listener]] seen.
    for i in range(len(name), 0, -1):
        if name[:i] in counts:
            return name[:i] + (counts[name[:i]],) + name[i:]
    return name


def _line(lines: dict[tuple, int], key_path: tuple) -> int | None:
    for i in range(len(key_path), 0, -1):
        if key_path[:i] in lines:
            return lines[key_path[:i]]
    return None


def _dotted(key_path: tuple) -> str:
    out = ""
    for part in key_path:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + str(part)
    return out


def _message(path: Path, lines: dict[tuple, int], key_path: tuple, message: str) -> str:
    line = _line(lines, key_path)
    where = f"{path.name}:{line}" if line else path.name
    return f"{where}: {_dotted(key_path)}: {message}"


# ---------------------------------------------------------------------------------------

_ENV = re.compile(r"\$env\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _substitute_env(value: Any, fail) -> Any:
    """WSO2's $env{NAME}: replaced by the environment variable; a missing one is an error."""
    if isinstance(value, str):
        def repl(m: re.Match) -> str:
            if m.group(1) not in os.environ:
                raise fail(f"environment variable {m.group(1)} is not set")
            return os.environ[m.group(1)]
        return _ENV.sub(repl, value)
    if isinstance(value, list):
        return [_substitute_env(v, fail) for v in value]
    return value


def default_path() -> Path:
    return Path(os.environ.get("DEPLOYMENT_TOML") or Path(__file__).resolve().parent.parent / "deployment.toml")


def load(path: str | os.PathLike | None = None) -> Settings:
    """Read and validate deployment.toml. Raises ConfigError with one precise line."""
    path = Path(path) if path else default_path()
    path = path.resolve()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path.name}: file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path.name}: cannot read the file ({exc.__class__.__name__})") from None
    try:
        document = tomlkit.parse(text).unwrap()
    except ParseError as exc:
        raise ConfigError(f"{path.name}:{exc.line}: not valid TOML ({_toml_reason(exc)})") from None
    lines = _Lines.scan(path, text)

    def fail(key_path: tuple, message: str) -> ConfigError:
        return ConfigError(_message(path, lines, key_path, message))

    values: dict[tuple, dict[str, Any]] = {}
    _check_unknown(document, (), fail)
    for section, keys in SCHEMA.items():
        table = _get(document, section)
        if table is not None and not isinstance(table, dict):
            raise fail(section, "must be a table")
        table = table or {}
        out: dict[str, Any] = {}
        for key, (kind, default) in keys.items():
            key_path = section + (key,)
            if key not in table:
                if default is None:
                    raise fail(section + (key,) if section in lines else section, "is required")
                out[key] = default
                continue
            out[key] = _typed(table[key], kind, key_path, fail)
        values[section] = out

    server = values[("server",)]
    if not 1 <= server["port"] <= 65535:
        raise fail(("server", "port"), "must be between 1 and 65535")
    if not 0 <= server["proxy_port"] <= 65535:
        raise fail(("server", "proxy_port"), "must be between 1 and 65535 (or 0: the same as port)")
    for key in ("workers", "threads"):
        if not 1 <= server[key] <= 256:
            raise fail(("server", key), "must be between 1 and 256")
    for address in server["trusted_proxies"]:
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise fail(("server", "trusted_proxies"), "must list IP addresses") from None
    if not re.fullmatch(r"[A-Za-z0-9.\-]{1,253}", server["hostname"]):
        raise fail(("server", "hostname"), "must be a DNS name or an IP address")
    oauth = values[("oauth",)]
    if not 0 <= oauth["timestamp_skew"] <= 3600:
        raise fail(("oauth", "timestamp_skew"), "must be between 0 and 3600 seconds")
    validity = values[("oauth", "token_validation")]
    for key, low in (("app_access_token_validity", 60), ("user_access_token_validity", 60),
                     ("refresh_token_validity", 60), ("authorization_code_validity", 10),
                     ("id_token_validity", 60)):
        if not low <= validity[key] <= 31536000:
            raise fail(("oauth", "token_validation", key), f"must be between {low} and 31536000 seconds")
    if not 60 <= values[("session",)]["lifetime"] <= 31536000:
        raise fail(("session", "lifetime"), "must be between 60 and 31536000 seconds")
    url = values[("database", "identity_db")]["url"]
    if not re.match(r"^(sqlite|postgres|postgresql|mysql)(\+[a-z]+)?://", url):
        raise fail(("database", "identity_db", "url"), "must start with sqlite://, postgresql:// or mysql://")
    fetch = values[("oauth", "jwks_fetch")]
    if not 0.1 <= fetch["timeout"] <= 30:
        raise fail(("oauth", "jwks_fetch", "timeout"), "must be between 0.1 and 30 seconds")
    if not 1024 <= fetch["max_bytes"] <= 10 * 1024 * 1024:
        raise fail(("oauth", "jwks_fetch", "max_bytes"), "must be between 1024 and 10485760")
    par = values[("oauth", "par")]
    if not 10 <= par["request_uri_lifetime"] <= 600:
        raise fail(("oauth", "par", "request_uri_lifetime"), "must be between 10 and 600 seconds")
    if server["client_certificates"] != "off" and server["tls"] and not (
            server["client_ca_file"] or server["client_self_signed_file"]):
        raise fail(("server", "client_ca_file"), "is required when client_certificates is on and the server "
                                                 "terminates TLS: the CAs whose client certificates it accepts "
                                                 "(or client_self_signed_file)")
    for key in ("client_ca_file", "client_self_signed_file"):
        if server[key]:
            try:
                read_certificates(str(path.parent / server[key]))
            except (OSError, ValueError):
                raise fail(("server", key), "cannot be read as a PEM file of certificates") from None
    if not 1 <= fetch["refresh_interval"] <= 3600:
        raise fail(("oauth", "jwks_fetch", "refresh_interval"), "must be between 1 and 3600 seconds")

    limits = values[("oauth", "rate_limit")]
    for key in ("failures_per_address", "failures_per_client_address", "failures_per_client",
                "signin_failures_per_user", "signin_failures_per_address"):
        if limits[key] < 0:
            raise fail(("oauth", "rate_limit", key), "must not be negative (0 disables the limit)")
    if not 1 <= limits["window"] <= 86400:
        raise fail(("oauth", "rate_limit", "window"), "must be between 1 and 86400 seconds")
    if limits["store"] != "memory" and not _redis_url(limits["store"]):
        raise fail(("oauth", "rate_limit", "store"), 'must be "memory" or a redis://, rediss:// or unix:// URL')

    if oauth["profile"] == "fapi2":
        _fapi2(values, fail)
    token = values[("oauth", "token")]
    primary = primary_algorithm(oauth["profile"])
    if token["signing_alg"] == primary and token["signing_key_alias"]:
        # One algorithm per published key: another RSA entry is published for PS256.
        raise fail(("oauth", "token", "signing_key_alias"), f"must be empty with signing_alg {primary}, which the "
                                                            "primary key signs (other algorithms use a key entry)")
    if token["signing_alg"] != primary and not token["signing_key_alias"]:
        raise fail(("oauth", "token", "signing_alg"), "needs signing_key_alias: a key entry that can sign "
                                                      f"{token['signing_alg']} (the primary key is RSA, for {primary})")
    dpop = values[("oauth", "dpop")]
    if not 1 <= dpop["proof_lifetime"] <= 3600:
        raise fail(("oauth", "dpop", "proof_lifetime"), "must be between 1 and 3600 seconds")
    if not 0 <= dpop["timestamp_skew"] <= 300:
        raise fail(("oauth", "dpop", "timestamp_skew"), "must be between 0 and 300 seconds")
    if not 10 <= dpop["nonce_lifetime"] <= 86400:
        raise fail(("oauth", "dpop", "nonce_lifetime"), "must be between 10 and 86400 seconds")
    if not dpop["signing_algorithms"] or any(alg not in DPOP_ALGORITHMS for alg in dpop["signing_algorithms"]):
        raise fail(("oauth", "dpop", "signing_algorithms"), "each value must be one of " + ", ".join(DPOP_ALGORITHMS))

    monitoring = values[("monitoring",)]
    if not 0 <= monitoring["port"] <= 65535:
        raise fail(("monitoring", "port"), "must be between 1 and 65535 (or 0: /metrics on [server] port)")
    if monitoring["port"] == server["port"]:
        raise fail(("monitoring", "port"), "must differ from [server] port (or be 0: /metrics on that port)")
    try:
        networks = tuple(ipaddress.ip_network(a) for a in monitoring["allowed_addresses"])
    except ValueError:
        raise fail(("monitoring", "allowed_addresses"), 'must list IP addresses or networks ("10.0.0.0/8", '
                                                        'host bits zero)') from None
    monitoring = {**monitoring, "allowed_networks": networks}

    settings = Settings(
        path=path,
        server=server,
        database_url=url,
        keystore=values[("keystore", "primary")],
        timestamp_skew=oauth["timestamp_skew"],
        access_token_lifetime=validity["app_access_token_validity"],
        issuer="",
        validity=validity,
        pkce=values[("oauth", "pkce")],
        profile=oauth["profile"],
        par=par,
        token=token,
        dpop=dpop,
        monitoring=monitoring,
        session_lifetime=values[("session",)]["lifetime"],
        jwks_fetch=fetch,
        rate_limit=limits,
        listeners=_listeners(document, fail),
        caches=_caches(document, fail),
    )
    issuer = values[("oauth", "oidc", "id_token")]["issuer"] or settings.token_endpoint
    if not re.fullmatch(r"https?://[\x21-\x7e]+", issuer):
        raise fail(("oauth", "oidc", "id_token", "issuer"), "must be an absolute http(s) URL")
    object.__setattr__(settings, "issuer", issuer)
    return settings


def primary_algorithm(profile: str) -> str:
    """What the primary key (RSA) signs ID tokens (and by default JWT access tokens) with: RS256
    (OpenID Connect Core §15.1), or PS256 under FAPI 2.0 (Security Profile §5.4.1)."""
    return "PS256" if profile == "fapi2" else "RS256"


# FAPI 2.0 Security Profile §5: what `[oauth] profile = "fapi2"` asks of the rest of the file.
# (section, key): (the value a key left at its default takes, a test of an explicit value, the rule)
FAPI2_SETTINGS: dict[tuple[str, ...], tuple[Any, Any, str]] = {
    ("oauth", "timestamp_skew"): (10, lambda v: v == 10,
                                  "must be 10: iat and nbf up to 10 s ahead accepted, beyond that refused (§5.3.2.1)"),
    ("oauth", "dpop", "timestamp_skew"): (10, lambda v: v == 10, "must be 10: a proof's iat up to 10 s ahead (§5.3.2.1)"),
    ("oauth", "dpop", "proof_lifetime"): (60, lambda v: v <= 60, "must be at most 60 seconds"),
    ("oauth", "token_validation", "authorization_code_validity"): (
        60, lambda v: v <= 60, "must be at most 60 seconds (§5.3.2.1: codes live at most one minute)"),
    ("oauth", "pkce", "allow_plain"): (False, lambda v: v is False, "must be false: PKCE with S256 only (§5.3.2.2)"),
    ("oauth", "pkce", "mandatory"): (True, lambda v: v is True, "must be true: PKCE for every client (§5.3.2.2)"),
    ("oauth", "par", "required"): (True, lambda v: v is True, "must be true: pushed authorization requests (§5.3.2.2)"),
    ("oauth", "token", "signing_alg"): ("PS256", lambda v: v in ("PS256", "ES256", "EdDSA"),
                                        "must be PS256, ES256 or EdDSA (§5.4.1)"),
    ("oauth", "dpop", "signing_algorithms"): (["PS256", "ES256", "EdDSA"],
                                              lambda v: all(alg in ("PS256", "ES256", "EdDSA") for alg in v),
                                              "may list only PS256, ES256 and EdDSA (§5.4.1)"),
}


def _fapi2(values: dict[tuple, dict[str, Any]], fail) -> None:
    """A key left at its default follows the profile; a value chosen that contradicts it stops
    start-up, naming the key."""
    for path, (profile_value, allowed, rule) in FAPI2_SETTINGS.items():
        section, key = path[:-1], path[-1]
        value = values[section][key]
        if value == SCHEMA[section][key][1]:
            values[section][key] = profile_value
        elif not allowed(value):
            raise fail(path, f'{rule} under [oauth] profile = "fapi2"')


def _redis_url(url: str) -> bool:
    """Whether the Redis client accepts the URL (checked here, so that a mistake stops start-up
    instead of failing requests). The value is never printed: it may hold a password."""
    if not re.match(r"^(redis|rediss|unix)://[^\s]+$", url):
        return False
    from redis.connection import parse_url
    try:
        parse_url(url)
    except ValueError:
        return False
    return True


def _typed(value: Any, kind: Any, key_path: tuple, fail) -> Any:
    """One value: $env{} substituted, then coerced; mistakes name the key."""
    value = _substitute_env(value, lambda m: fail(key_path, m))
    try:
        return coerce(value, kind, "the value")
    except ValueError as exc:
        raise fail(key_path, str(exc)) from None


def _typed_table(raw: Any, kinds: dict[str, Any], base: tuple, fail, skip: tuple = ()) -> dict[str, Any]:
    """A table of an array ([[event_listener]], [[cache.manager]]): known keys, typed values."""
    if not isinstance(raw, dict):
        raise fail(base, "must be a table")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key in skip:
            continue
        if key not in kinds:
            raise fail(base + (key,), "unknown key")
        values[key] = _typed(value, kinds[key], base + (key,), fail)
    return values


def _toml_reason(exc: ParseError) -> str:
    return re.sub(r"\s+at line \d+ col \d+$", "", str(exc))


def _get(document: dict, section: tuple) -> Any:
    node: Any = document
    for part in section:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _check_unknown(node: dict, prefix: tuple, fail) -> None:
    """Every table and key must be one this server reads."""
    known_tables = {s[: len(prefix) + 1] for s in list(SCHEMA) + list(ARRAYS) if s[: len(prefix)] == prefix}
    for key, value in node.items():
        key_path = prefix + (key,)
        if key_path in ARRAYS:
            if not isinstance(value, list):
                raise fail(key_path, "must be an array of tables ([[" + ".".join(key_path) + "]])")
            continue
        if key_path in known_tables:
            if not isinstance(value, dict):
                raise fail(key_path, "must be a table")
            _check_unknown(value, key_path, fail)
            continue
        if prefix in SCHEMA and key in SCHEMA[prefix]:
            continue
        raise fail(key_path, "unknown " + ("section" if isinstance(value, dict) else "key"))


def _listeners(document: dict, fail) -> list[ListenerEntry]:
    entries: list[ListenerEntry] = []
    seen: set[str] = set()
    for index, raw in enumerate(document.get("event_listener", [])):
        base = ("event_listener", index)
        values = _typed_table(raw, LISTENER_KEYS, base, fail, skip=("properties",))
        for required in ("id", "name"):
            if not values.get(required):
                raise fail(base, f"{required} is required")
        if values["id"] in seen:
            raise fail(base + ("id",), "is used by another [[event_listener]]")
        seen.add(values["id"])
        props_raw = raw.get("properties", {})
        if not isinstance(props_raw, dict):
            raise fail(base + ("properties",), "must be a table")
        properties = {}
        for key, value in props_raw.items():
            key_path = base + ("properties", key)
            properties[key] = Located(_substitute_env(value, lambda m, kp=key_path: fail(kp, m)), key_path)
        entries.append(ListenerEntry(
            id=values["id"], type=values.get("type", ""), name=values["name"],
            order=values.get("order"), enable=values.get("enable", LISTENER_DEFAULTS["enable"]),
            properties=properties, key_path=base))
    return entries


def _caches(document: dict, fail) -> dict[str, CacheEntry]:
    caches: dict[str, CacheEntry] = {}
    for index, raw in enumerate(_get(document, ("cache", "manager")) or []):
        base = ("cache", "manager", index)
        values = {**CACHE_DEFAULTS, **_typed_table(raw, CACHE_KEYS, base, fail)}
        if not values.get("name"):
            raise fail(base, "name is required")
        for key in ("timeout", "capacity"):
            if values[key] < 0:
                raise fail(base + (key,), "must not be negative")
        caches[values["name"]] = CacheEntry(values["name"], values["timeout"], values["capacity"], values["enable"])
    return caches
