"""Fetching and caching the public keys a client publishes at its registered ``jwks_uri``.

The fetch runs on the token endpoint's path and its target is chosen by the client, so it is
treated as hostile: the URL is checked statically, every address the host resolves to is vetted
(SSRF), the connection is pinned to a vetted address (no second lookup, so DNS rebinding cannot
redirect it), redirects are never followed, the body is size-capped, and one wall-clock deadline
covers resolution, connect, TLS handshake, headers and body.

Only the standard library is used. ``http.client`` is driven directly with a custom ``connect``
(``urllib`` would follow redirects, consult proxy variables from the environment and resolve the
name again on its own).
"""

from __future__ import annotations

import functools
import http.client
import io
import ipaddress
import logging
import os
import re
import socket
import ssl
import threading
import time
import weakref
from collections import OrderedDict
from typing import Callable, Iterable
from urllib.parse import urlsplit

__all__ = ["JWKSFetchError", "JWKSFetcher", "check_jwks_uri", "fetch_outcome", "DEFAULT_CACHE_SECONDS", "MIN_CACHE_SECONDS",
           "MAX_CACHE_SECONDS", "MAX_STALE_SECONDS"]

log = logging.getLogger("keystore.jwks_uri")

MAX_URI_LENGTH = 2048

# How long a fetched key set is used (RFC 9111 §5.2.2 max-age, clamped to [MIN, MAX]; DEFAULT
# without one), and how long past that the last good set stands in while fetches fail (a client
# that withdrew a compromised key must not be impersonated forever). Not configuration: these are
# the fetcher's policy, stated in README.md and checked there by tests/test_defaults.py.
DEFAULT_CACHE_SECONDS = 300
MIN_CACHE_SECONDS = 60
MAX_CACHE_SECONDS = 86400
MAX_STALE_SECONDS = 86400
CAPACITY = 10000  # URIs cached per process

# RFC 6749 §5.2 character set for error_description: %x20-21 / %x23-5B / %x5D-7E.
_UNSAFE = re.compile(r'[^\x20-\x21\x23-\x5b\x5d-\x7e]')
# RFC 3986 §2: unreserved, reserved and percent signs; anything else (space, control characters,
# backslash, non-ASCII) is refused rather than guessed at, since URL parsers disagree about it.
_URI_CHARS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")
# RFC 1123 §2.1 host names (underscore tolerated, as real DNS contains it); total length ≤ 253.
_DNS_NAME = re.compile(r"(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\.)*"
                       r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\.?")
# WHATWG URL §3.5: a host whose last label is numeric is parsed as an IPv4 address, and
# inet_aton (behind getaddrinfo) accepts forms such as 2130706433, 0x7f.1 or 127.1.
_NUMERIC_LABEL = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)")

# RFC 6052 §2.1 well-known NAT64 prefix and RFC 4291 §2.5.5.1 IPv4-compatible addresses: both embed
# an IPv4 address in the low 32 bits.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_V4_COMPATIBLE = ipaddress.IPv6Network("::/96")

_USER_AGENT = "jwks-fetcher/1"


class JWKSFetchError(Exception):
    """A jwks_uri was refused or could not be fetched.

    ``str(e)`` is a fixed description written here, never the URL or anything the remote
    server sent, restricted to printable ASCII without double quote or backslash so that it
    can be placed in an OAuth ``error_description``.
    """

    def __init__(self, description: str) -> None:
        self.description = _UNSAFE.sub("?", description)
        super().__init__(self.description)


# --- static checks -------------------------------------------------------------------------


def _normalize_allowed(allowed_hosts: Iterable[str]) -> frozenset[str]:
    if isinstance(allowed_hosts, (str, bytes)):
        raise TypeError("allowed_hosts must be an iterable of host names, not a single string")
    out = set()
    for h in allowed_hosts:
        h = str(h).strip().lower()
        if h.startswith("[") and h.endswith("]"):
            h = h[1:-1]
        try:
            out.add(str(ipaddress.ip_address(h)))
        except ValueError:
            out.add(h)
    return frozenset(out)


def _is_allowed(host: str, ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None,
                allowed: frozenset[str]) -> bool:
    # Exact match only: the host as written in the URL (IP literals compared as addresses).
    return (str(ip) if ip is not None else host) in allowed


def _forbidden_address(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """True when ``ip`` is not a plain public unicast address (or embeds one that is not)."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded: list[ipaddress.IPv4Address] = []
        if ip.ipv4_mapped is not None:             # RFC 4291 §2.5.5.2
            embedded.append(ip.ipv4_mapped)
        if ip.sixtofour is not None:               # RFC 3056 §2
            embedded.append(ip.sixtofour)
        if ip.teredo is not None:                  # RFC 4380 §4: (server, client)
            embedded.extend(ip.teredo)
        if ip in _NAT64 or ip in _V4_COMPATIBLE:
            embedded.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        if any(_forbidden_address(e) for e in embedded):
            return True
        if ip.is_site_local or ip.scope_id:
            return True
    return (ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_multicast
            or ip.is_reserved or ip.is_unspecified or not ip.is_global)


def _parse(uri: object, require_https: bool, allowed: frozenset[str]):
    """Static checks; returns (scheme, host, ip-or-None, port, request target)."""
    if not isinstance(uri, str) or not uri:
        raise JWKSFetchError("jwks_uri must be a non-empty string")
    if len(uri) > MAX_URI_LENGTH:
        raise JWKSFetchError("jwks_uri is too long")
    if not _URI_CHARS.fullmatch(uri):
        raise JWKSFetchError("jwks_uri contains characters not allowed in a URI")
    if "#" in uri:
        raise JWKSFetchError("jwks_uri must not contain a fragment")
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:
        raise JWKSFetchError("jwks_uri is not a valid URL") from None
    scheme = parts.scheme.lower()
    if not scheme or not uri[len(scheme):].startswith("://"):
        raise JWKSFetchError("jwks_uri must be an absolute URL")
    if scheme == "http":
        if require_https:
            raise JWKSFetchError("jwks_uri must use https")
    elif scheme != "https":
        raise JWKSFetchError("jwks_uri must use https")
    netloc = parts.netloc
    if "@" in netloc:
        raise JWKSFetchError("jwks_uri must not contain user information")
    host = parts.hostname or ""
    if not host:
        raise JWKSFetchError("jwks_uri has no host")
    if port is None:
        if netloc.endswith(":"):
            raise JWKSFetchError("jwks_uri has an invalid port")
        port = 443 if scheme == "https" else 80
    elif not 0 < port < 65536:
        raise JWKSFetchError("jwks_uri has an invalid port")

    ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    if netloc.startswith("["):
        try:
            ip = ipaddress.IPv6Address(host)
        except ValueError:
            raise JWKSFetchError("jwks_uri has an invalid IPv6 literal") from None
        if ip.scope_id:
            raise JWKSFetchError("jwks_uri has an invalid IPv6 literal")
    else:
        if len(host) > 253 or not _DNS_NAME.fullmatch(host):
            raise JWKSFetchError("jwks_uri has an invalid host name")
        if _NUMERIC_LABEL.fullmatch(host.rstrip(".").rsplit(".", 1)[-1]):
            try:
                ip = ipaddress.IPv4Address(host)
            except ValueError:
                raise JWKSFetchError("jwks_uri has an ambiguous numeric host") from None

    if not _is_allowed(host, ip, allowed):
        if ip is not None and _forbidden_address(ip):
            raise JWKSFetchError("jwks_uri points to a non-public address")
        # RFC 6761 §6.3: localhost and its subdomains are loopback names.
        bare = host.rstrip(".")
        if bare == "localhost" or bare.endswith(".localhost"):
            raise JWKSFetchError("jwks_uri points to a non-public address")

    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return scheme, host, ip, port, target


def check_jwks_uri(uri: str, *, require_https: bool = True, allowed_hosts: Iterable[str] = ()) -> None:
    """Static checks for a jwks_uri, at client registration and before each fetch.

    Absolute http(s) URL (https unless ``require_https`` is False), no user information, no
    fragment, a syntactically valid host and port, at most 2048 characters, and no IP literal
    (or ``localhost`` name) outside public unicast space unless listed in ``allowed_hosts``.
    Raises JWKSFetchError. Name resolution is left to the fetch.
    """
    _parse(uri, require_https, _normalize_allowed(allowed_hosts))


# --- the connection ---------------------------------------------------------------------------


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("deadline exceeded")
    return left


class _DeadlineReader(io.RawIOBase):
    """Raw reader whose every recv gets a socket timeout equal to the time left before the deadline,
    so a peer trickling one byte at a time cannot stretch the fetch past it."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        super().__init__()
        self._sock = sock
        # The socket's own raw file object keeps the descriptor open until the response is done,
        # even after http.client closes the connection object (as it does for "Connection: close").
        self._raw = sock.makefile("rb", buffering=0)
        self._deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        self._sock.settimeout(_remaining(self._deadline))
        return self._raw.readinto(b)

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()


class _DeadlineSocket:
    """The subset of the socket interface http.client uses once connected."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self._sock = sock
        self._deadline = deadline

    def sendall(self, data) -> None:
        self._sock.settimeout(_remaining(self._deadline))
        self._sock.sendall(data)

    def makefile(self, mode: str = "rb", *args, **kwargs):
        if mode != "rb":
            raise ValueError("only binary reads are supported")
        return io.BufferedReader(_DeadlineReader(self._sock, self._deadline))

    def close(self) -> None:
        self._sock.close()


class _PinnedConnection(http.client.HTTPConnection):
    """HTTP(S) connection to an already vetted address; the URL's host is used only for the Host
    header, SNI and certificate verification."""

    def __init__(self, host: str, port: int, addresses: list[tuple], deadline: float,
                 tls: ssl.SSLContext | None) -> None:
        super().__init__(host, port)
        self._addresses = addresses
        self._deadline = deadline
        self._tls = tls

    def connect(self) -> None:
        sock = None
        error: OSError | None = None
        for family, sockaddr in self._addresses:
            s = None
            try:
                s = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
                s.settimeout(_remaining(self._deadline))
                s.connect(sockaddr)
            except OSError as e:
                if s is not None:
                    s.close()
                error = e
                if isinstance(e, TimeoutError):
                    break
                continue
            sock = s
            break
        if sock is None:
            raise error if error is not None else OSError("no address to connect to")
        try:
            if self._tls is not None:
                sock.settimeout(_remaining(self._deadline))
                sock = self._tls.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise
        self.sock = _DeadlineSocket(sock, self._deadline)


def _resolve(host: str, ip, port: int, deadline: float) -> list[tuple]:
    """getaddrinfo bounded by the deadline (the C resolver has no timeout of its own, so it runs
    in a short-lived daemon thread that is abandoned if it overruns)."""
    if ip is not None:
        family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
        return [(family, (str(ip), port) if ip.version == 4 else (str(ip), port, 0, 0))]

    box: dict[str, object] = {}

    def work() -> None:
        try:
            box["result"] = socket.getaddrinfo(host, port, socket.AF_UNSPEC, socket.SOCK_STREAM,
                                               socket.IPPROTO_TCP)
        except Exception as e:  # reported below as a resolution failure
            box["error"] = e

    t = threading.Thread(target=work, name="jwks-uri-resolve", daemon=True)
    t.start()
    t.join(max(0.0, deadline - time.monotonic()))
    if t.is_alive():
        raise JWKSFetchError("jwks_uri host name resolution timed out")
    if "result" not in box:
        raise JWKSFetchError("jwks_uri host name could not be resolved")
    seen = set()
    out = []
    for family, _type, _proto, _canon, sockaddr in box["result"]:  # type: ignore[union-attr]
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        key = (family, sockaddr[0])
        if key not in seen:
            seen.add(key)
            out.append((family, sockaddr))
    if not out:
        raise JWKSFetchError("jwks_uri host name could not be resolved")
    return out


def _header_tokens(message, name: str) -> list[str]:
    values = message.get_all(name) or []
    return [t.strip() for v in values for t in v.split(",")]


# --- the fetcher --------------------------------------------------------------------------------

# A failed fetch's outcome, for metrics: a fixed word for each of the fixed descriptions above.
_OUTCOMES = (("timed out", "timeout"), ("taking too long", "timeout"), ("non-public", "refused"),
             ("unusable address", "refused"), ("resol", "dns"), ("certificate", "tls"), ("TLS", "tls"),
             ("connection", "connection"), ("redirect", "http_status"), ("error status", "http_status"),
             ("too large", "too_large"))


def fetch_outcome(description: str) -> str:
    """timeout, refused (SSRF rules), dns, tls, connection, http_status, too_large or invalid
    (anything else: not HTTP, an encoding, a body that is not a key set)."""
    for words, outcome in _OUTCOMES:
        if words in description:
            return outcome
    return "invalid"



class _Entry:
    __slots__ = ("lock", "good", "last_fetch", "tried_for", "last_error")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        # (keys, fresh_until, valid_for) of the last successful fetch; one attribute so readers
        # without the lock never see keys from one fetch with the lifetime of another.
        # valid_for is the largest `not_before` a caller had passed when the set was fetched:
        # the set serves callers whose registration is not newer than that; fetched is clock()
        # at the start of that fetch.
        self.good: tuple[list, float, float, float] | None = None
        self.last_fetch: float | None = None  # clock() at the start of the last attempt
        # The largest `not_before` an attempt has been made for, successful or not: only a newer
        # registration may fetch before refetch_interval has passed, and only once.
        self.tried_for = float("-inf")
        self.last_error = ""


def _reset_in_child(ref: "weakref.ref[JWKSFetcher]") -> None:
    fetcher = ref()
    if fetcher is not None:
        fetcher.reset_after_fork()


class JWKSFetcher:
    """Per-process cache of clients' key sets, keyed by jwks_uri.

    Create one per worker process. ``keys()`` serves a fresh cached set or fetches; ``refresh()``
    re-fetches on an unknown kid. A URI is fetched at most once per
    ``refetch_interval_seconds``, whether the fetch succeeds or fails, plus once for each newer
    registration a caller presents (``not_before``). A failed fetch keeps the last good set.

    ``require_https``, ``allowed_hosts``, ``timeout``, ``max_bytes`` and
    ``refetch_interval_seconds`` are ``[oauth.jwks_fetch]`` settings: the server (core.services)
    always passes the configured values. Their defaults here serve direct callers (tests,
    scripts) and equal the configuration schema's, which tests/test_defaults.py checks.
    """

    def __init__(self, parse: Callable[[bytes], list], *, require_https: bool = True,
                 allowed_hosts: Iterable[str] = (), timeout: float = 3.0, max_bytes: int = 65536,
                 default_cache_seconds: int = DEFAULT_CACHE_SECONDS, min_cache_seconds: int = MIN_CACHE_SECONDS,
                 max_cache_seconds: int = MAX_CACHE_SECONDS, refetch_interval_seconds: int = 60,
                 max_stale_seconds: int = MAX_STALE_SECONDS,
                 capacity: int = CAPACITY, clock: Callable[[], float] = time.monotonic,
                 on_fetch: Callable[[str, int], None] | None = None,
                 on_key_set_used: Callable[[float], None] | None = None) -> None:
        if not callable(parse):
            raise TypeError("parse must be callable")
        if not timeout > 0:
            raise ValueError("timeout must be positive")
        if max_bytes < 1 or capacity < 1:
            raise ValueError("max_bytes and capacity must be positive")
        if not 0 <= min_cache_seconds <= max_cache_seconds:
            raise ValueError("need 0 <= min_cache_seconds <= max_cache_seconds")
        if refetch_interval_seconds < 0:
            raise ValueError("refetch_interval_seconds must not be negative")
        self._parse_keys = parse
        self._require_https = bool(require_https)
        self._allowed = _normalize_allowed(allowed_hosts)
        self._timeout = float(timeout)
        self._max_bytes = int(max_bytes)
        self._min_cache = min_cache_seconds
        self._max_cache = max_cache_seconds
        self._default_cache = min(max(default_cache_seconds, min_cache_seconds), max_cache_seconds)
        self._refetch_interval = refetch_interval_seconds
        self._max_stale = max_stale_seconds  # see MAX_STALE_SECONDS
        self._capacity = int(capacity)
        self._clock = clock
        # Observers (metrics): each fetch's outcome (fetch_outcome()) with the number of URIs
        # cached; the age in seconds of every cached key set handed out.
        self._on_fetch = on_fetch
        self._on_key_set_used = on_key_set_used
        # How long a caller waits for another thread's fetch of the same URI: the fetch itself is
        # bounded by the deadline, this only guards against the unexpected.
        self._wait = 2 * self._timeout + 1.0
        self._tls = ssl.create_default_context()
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        if hasattr(os, "register_at_fork"):
            # A weak reference, so the hook does not keep a discarded fetcher alive.
            os.register_at_fork(after_in_child=functools.partial(_reset_in_child, weakref.ref(self)))

    # -- public interface

    def keys(self, uri: str, not_before: float | None = None) -> list:
        """The key set of `uri`. `not_before` is a version of the caller's registration (the
        client's updated_at, read from the shared database): a set fetched for an older version
        is fetched again, so a client that moved away from this URI and back is never verified
        with keys cached before the change. Only values from the database are compared, never
        this node's clock. When no fetch is allowed and no usable set is held: JWKSFetchError at
        once, so callers (with a valid signature or not) never get a failing URI fetched per request."""
        entry = self._entry(uri)
        good = entry.good
        if self._usable(good, not_before):
            return self._hand_out(good)
        if not entry.lock.acquire(timeout=self._wait):
            return self._current(entry, "jwks_uri fetch is taking too long", not_before)
        try:
            good = entry.good
            if self._usable(good, not_before):
                return self._hand_out(good)
            if not self._recently_fetched(entry) or (not_before is not None and not_before > entry.tried_for):
                self._fetch(uri, entry, not_before)
            return self._current(entry, entry.last_error, not_before)
        finally:
            entry.lock.release()

    def refresh(self, uri: str) -> list:
        entry = self._entry(uri)
        if not entry.lock.acquire(timeout=self._wait):
            return self._current(entry, "jwks_uri fetch is taking too long")
        try:
            if not self._recently_fetched(entry):
                self._fetch(uri, entry)
            return self._current(entry, entry.last_error)
        finally:
            entry.lock.release()

    def invalidate(self, uri: str) -> None:
        if not isinstance(uri, str):
            return
        with self._lock:
            self._entries.pop(uri, None)

    def reset_after_fork(self) -> None:
        """Recreate the locks and empty the cache; registered to run in a forked child, where a lock
        held by another parent thread (say, mid-fetch) would otherwise stay held forever."""
        self._lock = threading.Lock()
        self._entries = OrderedDict()

    # -- internals

    def _entry(self, uri: str) -> _Entry:
        if not isinstance(uri, str):
            raise JWKSFetchError("jwks_uri must be a non-empty string")
        with self._lock:
            entry = self._entries.get(uri)
            if entry is not None:
                self._entries.move_to_end(uri)
                return entry
        _parse(uri, self._require_https, self._allowed)  # static checks before caching anything
        with self._lock:
            entry = self._entries.get(uri)
            if entry is None:
                entry = self._entries[uri] = _Entry()
                while len(self._entries) > self._capacity:
                    self._entries.popitem(last=False)
            else:
                self._entries.move_to_end(uri)
            return entry

    def _recently_fetched(self, entry: _Entry) -> bool:
        return entry.last_fetch is not None and self._clock() - entry.last_fetch < self._refetch_interval

    @staticmethod
    def _older(good, not_before: float | None) -> bool:
        """Whether the set was fetched for an older registration than the caller's."""
        return good is not None and not_before is not None and good[2] < not_before

    def _usable(self, good, not_before: float | None) -> bool:
        return good is not None and self._clock() < good[1] and not self._older(good, not_before)

    def _current(self, entry: _Entry, reason: str, not_before: float | None = None) -> list:
        good = entry.good
        if good is not None and self._clock() < good[1] + self._max_stale and not self._older(good, not_before):
            return self._hand_out(good)
        raise JWKSFetchError(reason or "jwks_uri could not be fetched")

    def _hand_out(self, good: tuple) -> list:
        if self._on_key_set_used is not None:
            try:
                self._on_key_set_used(max(0.0, self._clock() - good[3]))
            except Exception:  # an observer never fails a lookup
                log.exception("jwks_uri key set observer failed")
        return list(good[0])

    def _observe_fetch(self, outcome: str) -> None:
        if self._on_fetch is not None:
            try:
                self._on_fetch(outcome, len(self._entries))
            except Exception:  # an observer never fails a fetch
                log.exception("jwks_uri fetch observer failed")

    def _fetch(self, uri: str, entry: _Entry, not_before: float | None = None) -> None:
        """One fetch attempt, with ``entry.lock`` held. Updates the entry; never raises."""
        started = self._clock()
        entry.last_fetch = started
        if not_before is not None:
            entry.tried_for = max(entry.tried_for, not_before)
        host = "-"
        try:
            scheme, host, ip, port, target = _parse(uri, self._require_https, self._allowed)
            body, lifetime = self._download(scheme, host, ip, port, target)
            try:
                keys = self._parse_keys(body)
            except Exception as e:  # any parser failure is a failed fetch
                raise JWKSFetchError(f"jwks_uri response could not be parsed ({type(e).__name__})") from None
            if not isinstance(keys, list):
                raise JWKSFetchError("jwks_uri parser did not return a list")
        except Exception as e:
            reason = e.description if isinstance(e, JWKSFetchError) else "jwks_uri could not be fetched"
            entry.last_error = reason
            log.warning("jwks_uri fetch failed: host=%s reason=%s; %s", host, reason,
                        "keeping the last good key set" if entry.good is not None else "no key set available")
            self._observe_fetch(fetch_outcome(reason))
            return
        # Every registration a caller presented before this fetch started was already saved: the
        # set is valid for all of them (a refresh after a failed attempt for a newer one included).
        entry.good = (list(keys), started + lifetime, entry.tried_for, started)
        entry.last_error = ""
        self._observe_fetch("success")

    def _download(self, scheme: str, host: str, ip, port: int, target: str) -> tuple[bytes, int]:
        deadline = time.monotonic() + self._timeout
        addresses = _resolve(host, ip, port, deadline)
        if not _is_allowed(host, ip, self._allowed):
            for _family, sockaddr in addresses:
                try:
                    resolved = ipaddress.ip_address(sockaddr[0])
                except ValueError:
                    raise JWKSFetchError("jwks_uri host resolved to an unusable address") from None
                if _forbidden_address(resolved):
                    raise JWKSFetchError("jwks_uri host resolves to a non-public address")

        default_port = 443 if scheme == "https" else 80
        host_header = f"[{host}]" if ":" in host else host
        if port != default_port:
            host_header += f":{port}"
        conn = None
        try:
            conn = _PinnedConnection(host, port, addresses, deadline,
                                     self._tls if scheme == "https" else None)
            conn.request("GET", target, headers={
                "Host": host_header,
                "Accept": "application/jwk-set+json, application/json",
                "Accept-Encoding": "identity",
                "User-Agent": _USER_AGENT,
                "Connection": "close",
            })
            resp = conn.getresponse()
            try:
                return self._read_response(resp)
            finally:
                resp.close()
        except JWKSFetchError:
            raise
        except ssl.SSLCertVerificationError:
            raise JWKSFetchError("jwks_uri server certificate verification failed") from None
        except ssl.SSLError:
            raise JWKSFetchError("jwks_uri TLS handshake failed") from None
        except TimeoutError:
            raise JWKSFetchError("jwks_uri fetch timed out") from None
        except ConnectionRefusedError:
            raise JWKSFetchError("jwks_uri connection refused") from None
        except (http.client.HTTPException, ValueError):
            raise JWKSFetchError("jwks_uri response is not valid HTTP") from None
        except OSError:
            raise JWKSFetchError("jwks_uri connection failed") from None
        finally:
            if conn is not None:
                conn.close()

    def _read_response(self, resp: http.client.HTTPResponse) -> tuple[bytes, int]:
        if 300 <= resp.status < 400:
            raise JWKSFetchError("jwks_uri responded with a redirect, which is not followed")
        if resp.status != 200:
            raise JWKSFetchError("jwks_uri responded with an error status")
        if any(t.lower() not in ("", "identity") for t in _header_tokens(resp.msg, "Content-Encoding")):
            raise JWKSFetchError("jwks_uri response has an unsupported content encoding")
        if any(t.lower() not in ("", "chunked") for t in _header_tokens(resp.msg, "Transfer-Encoding")):
            raise JWKSFetchError("jwks_uri response has an unsupported transfer encoding")
        if resp.length is not None and resp.length > self._max_bytes:
            raise JWKSFetchError("jwks_uri response is too large")
        body = bytearray()
        while True:
            chunk = resp.read(self._max_bytes + 1 - len(body))
            if not chunk:
                break
            body += chunk
            if len(body) > self._max_bytes:
                raise JWKSFetchError("jwks_uri response is too large")
        return bytes(body), self._lifetime(resp.msg)

    def _lifetime(self, message) -> int:
        """Seconds the response may be cached (RFC 9111 §5.2.2), clamped to [min, max]."""
        max_age: int | None = None
        for token in _header_tokens(message, "Cache-Control"):
            name, _, value = token.partition("=")
            name = name.strip().lower()
            if name in ("no-store", "no-cache"):
                return self._min_cache
            if name == "max-age":
                value = value.strip().strip('"')
                if value.isdigit() and value.isascii():
                    # Cap the digit count before int(): any longer value is beyond the maximum anyway.
                    age = int(value) if len(value) <= 12 else self._max_cache
                    # RFC 9111 §4.2.1 lets duplicate directives be read conservatively: the smallest wins.
                    max_age = age if max_age is None else min(max_age, age)
        if max_age is None:
            return self._default_cache
        return min(max(max_age, self._min_cache), self._max_cache)
