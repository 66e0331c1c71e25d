"""keystore.jwks_uri against real loopback HTTP(S) servers running in threads."""

from __future__ import annotations

import datetime
import gc
import ipaddress
import json
import logging
import os
import re
import socket
import ssl
import threading
import time
import weakref
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from keystore.jwks_uri import JWKSFetchError, JWKSFetcher, check_jwks_uri

LOOPBACK = dict(allowed_hosts=["127.0.0.1"], require_https=False)
SAFE = re.compile(r'[\x20-\x21\x23-\x5b\x5d-\x7e]*')


def parse(body: bytes) -> list:
    return json.loads(body)["keys"]


def jwks(*kids: str) -> bytes:
    return json.dumps({"keys": [{"kty": "oct", "kid": k} for k in kids]}).encode()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# --- a scriptable loopback server ------------------------------------------------------------


class Server:
    """ThreadingHTTPServer whose behaviour per path is a function of the request handler."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.routes: dict[str, object] = {}
        self.requests: list[tuple[str, dict]] = []
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server naming)
                with owner.lock:
                    owner.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                route = owner.routes.get(self.path.split("?")[0])
                if route is None:
                    self.send_error(404)
                    return
                try:
                    route(self)
                except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                    pass

            def log_message(self, *args) -> None:
                pass

        class S(ThreadingHTTPServer):
            daemon_threads = True
            block_on_close = False

            def handle_error(self, request, client_address) -> None:
                pass  # failed TLS handshakes and dropped clients are expected here

            def get_request(self):
                sock, addr = super().get_request()
                if tls is not None:
                    sock = tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
                return sock, addr

        self.httpd = S(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, path: str = "/jwks", host: str = "127.0.0.1", scheme: str = "http") -> str:
        return f"{scheme}://{host}:{self.port}{path}"

    def count(self, path: str | None = None) -> int:
        with self.lock:
            return sum(1 for p, _ in self.requests if path is None or p.split("?")[0] == path)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def make_server():
    servers = []

    def make(tls=None) -> Server:
        s = Server(tls)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.close()


@pytest.fixture
def server(make_server) -> Server:
    return make_server()


def respond(body: bytes = jwks("k1"), status: int = 200, headers: dict | None = None, delay: float = 0.0):
    def route(h: BaseHTTPRequestHandler) -> None:
        if delay:
            time.sleep(delay)
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(body)
    return route


def stream_without_length(body: bytes):
    def route(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.end_headers()  # HTTP/1.0: the body runs to connection close
        h.wfile.write(body)
    return route


def trickle(head_first: bool, seconds: float = 6.0):
    def route(h: BaseHTTPRequestHandler) -> None:
        if head_first:
            h.send_response(200)
            h.send_header("Content-Length", "1000")
            h.end_headers()
            h.wfile.flush()
            chunk = b" "
        else:
            h.wfile.write(b"HTTP/1.0 200 OK\r\n")
            chunk = b"X-Slow: a\r\n"
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            h.wfile.write(chunk)
            h.wfile.flush()
            time.sleep(0.05)
    return route


def fetcher(**kw) -> JWKSFetcher:
    opts = dict(LOOPBACK)
    opts.update(kw)
    return JWKSFetcher(parse, **opts)


# --- fetch and cache ---------------------------------------------------------------------------


def test_fetch_then_cache_hit_makes_no_request(server):
    server.routes["/jwks"] = respond(jwks("k1", "k2"))
    f = fetcher()
    first = f.keys(server.url())
    assert [k["kid"] for k in first] == ["k1", "k2"]
    assert f.keys(server.url()) == first
    assert server.count() == 1


def test_returned_list_is_a_copy(server):
    server.routes["/jwks"] = respond(jwks("k1"))
    f = fetcher()
    f.keys(server.url()).clear()
    assert len(f.keys(server.url())) == 1
    assert server.count() == 1


def test_request_shape_host_header_no_cookies_identity(server):
    server.routes["/jwks"] = respond(jwks("k1"), headers={"Set-Cookie": "sid=abc"})
    f = fetcher()
    f.keys(server.url("/jwks?tenant=a"))
    f.invalidate(server.url("/jwks?tenant=a"))
    f.keys(server.url("/jwks?tenant=a"))
    assert server.count() == 2
    for path, headers in server.requests:
        assert path == "/jwks?tenant=a"
        assert headers["host"] == f"127.0.0.1:{server.port}"
        assert headers.get("accept-encoding") == "identity"
        assert "cookie" not in headers


def test_environment_proxy_is_ignored(make_server, monkeypatch):
    target, proxy = make_server(), make_server()
    target.routes["/jwks"] = respond(jwks("k1"))
    proxy.routes["/jwks"] = respond(jwks("evil"))
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.setenv(var, proxy.url("/"))
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    assert [k["kid"] for k in fetcher().keys(target.url())] == ["k1"]
    assert target.count() == 1 and proxy.count() == 0


@pytest.mark.parametrize("cache_control, lifetime", [
    ("max-age=120", 120),
    ("public, max-age=5", 60),              # clamped up to min_cache_seconds
    ("max-age=999999999999999999", 1000),   # clamped down to max_cache_seconds
    ("no-store", 60),
    ("no-cache, max-age=500", 60),
    ("max-age=abc", 300),                   # unparseable: default
    (None, 300),
])
def test_cache_lifetime_from_cache_control(server, cache_control, lifetime):
    headers = {"Cache-Control": cache_control} if cache_control else {}
    server.routes["/jwks"] = respond(jwks("k1"), headers=headers)
    clock = FakeClock()
    f = fetcher(clock=clock, default_cache_seconds=300, min_cache_seconds=60, max_cache_seconds=1000,
                refetch_interval_seconds=10)
    f.keys(server.url())
    clock.advance(lifetime - 1)
    f.keys(server.url())
    assert server.count() == 1
    clock.advance(2)
    f.keys(server.url())
    assert server.count() == 2


def test_not_before_refuses_a_set_fetched_for_an_older_registration(server):
    """A client that moved to another URI and back: a set cached for an older version of its
    registration (updated_at) is fetched again, even within its lifetime and refetch interval."""
    server.routes["/jwks"] = respond(jwks("old"))
    f = fetcher(refetch_interval_seconds=60)
    assert [k["kid"] for k in f.keys(server.url(), not_before=1000)] == ["old"]
    server.routes["/jwks"] = respond(jwks("new"))
    assert [k["kid"] for k in f.keys(server.url(), not_before=1000)] == ["old"]  # same version: cached
    assert [k["kid"] for k in f.keys(server.url(), not_before=1001)] == ["new"]  # newer: fetched
    assert [k["kid"] for k in f.keys(server.url(), not_before=1001)] == ["new"]
    assert [k["kid"] for k in f.keys(server.url(), not_before=1000)] == ["new"]  # another, older client
    assert [k["kid"] for k in f.keys(server.url())] == ["new"]
    assert server.count() == 2


def test_not_before_never_serves_an_older_set_when_the_fetch_fails(server):
    server.routes["/jwks"] = respond(jwks("old"))
    f = fetcher(refetch_interval_seconds=60)
    f.keys(server.url(), not_before=1000)
    del server.routes["/jwks"]                 # 404 from now on
    with pytest.raises(JWKSFetchError):
        f.keys(server.url(), not_before=1001)
    assert [k["kid"] for k in f.keys(server.url(), not_before=1000)] == ["old"]  # still right for 1000


def test_a_failed_fetch_for_a_newer_registration_is_throttled_like_a_successful_one(server):
    """The registration changed while the URI fails: one attempt for the new version, then no
    fetch before refetch_interval, however many callers present that version."""
    server.routes["/jwks"] = respond(jwks("old"))
    clock = FakeClock()
    f = fetcher(clock=clock, refetch_interval_seconds=60)
    f.keys(server.url(), not_before=1000)
    del server.routes["/jwks"]                 # 404 from now on
    for _ in range(5):
        with pytest.raises(JWKSFetchError, match="jwks_uri responded with an error status"):
            f.keys(server.url(), not_before=1001)
    assert server.count() == 2
    clock.advance(59)
    with pytest.raises(JWKSFetchError):
        f.keys(server.url(), not_before=1001)
    with pytest.raises(JWKSFetchError):
        f.keys(server.url(), not_before=1000.5)   # an older version: nothing to fetch for either
    assert server.count() == 2
    clock.advance(2)
    with pytest.raises(JWKSFetchError):
        f.keys(server.url(), not_before=1001)
    assert server.count() == 3
    with pytest.raises(JWKSFetchError):
        f.keys(server.url(), not_before=1002)    # changed once more: one attempt at once
    assert server.count() == 4
    server.routes["/jwks"] = respond(jwks("new"))
    clock.advance(61)
    assert [k["kid"] for k in f.keys(server.url(), not_before=1002)] == ["new"]
    assert server.count() == 5


def test_a_set_fetched_after_a_newer_registration_was_seen_serves_it(server):
    """A refresh (unknown kid) after a failed fetch for registration 1001 started later than
    that registration: its set serves 1001 without another fetch."""
    server.routes["/jwks"] = respond(jwks("old"))
    clock = FakeClock()
    f = fetcher(clock=clock, refetch_interval_seconds=60)
    f.keys(server.url(), not_before=1000)
    server.routes["/jwks"] = respond(b"oops", status=500)
    with pytest.raises(JWKSFetchError):
        f.keys(server.url(), not_before=1001)
    server.routes["/jwks"] = respond(jwks("new"))
    clock.advance(61)
    assert [k["kid"] for k in f.refresh(server.url())] == ["new"]
    assert [k["kid"] for k in f.keys(server.url(), not_before=1001)] == ["new"]
    assert server.count() == 3


def test_refresh_is_throttled_by_refetch_interval(server):
    server.routes["/jwks"] = respond(jwks("k1"))
    clock = FakeClock()
    f = fetcher(clock=clock, refetch_interval_seconds=60)
    f.keys(server.url())
    assert [k["kid"] for k in f.refresh(server.url())] == ["k1"]
    clock.advance(59)
    f.refresh(server.url())
    assert server.count() == 1
    clock.advance(2)
    f.refresh(server.url())
    assert server.count() == 2
    f.refresh(server.url())
    assert server.count() == 2


def test_refresh_on_cold_uri_fetches(server):
    server.routes["/jwks"] = respond(jwks("k1"))
    assert [k["kid"] for k in fetcher().refresh(server.url())] == ["k1"]
    assert server.count() == 1


def test_key_rotation_unknown_kid(server):
    server.routes["/jwks"] = respond(jwks("old"), headers={"Cache-Control": "max-age=3600"})
    clock = FakeClock()
    f = fetcher(clock=clock, refetch_interval_seconds=60)
    assert [k["kid"] for k in f.keys(server.url())] == ["old"]
    server.routes["/jwks"] = respond(jwks("new", "old"), headers={"Cache-Control": "max-age=3600"})
    clock.advance(30)
    assert [k["kid"] for k in f.keys(server.url())] == ["old"]       # still fresh
    assert [k["kid"] for k in f.refresh(server.url())] == ["old"]    # throttled
    clock.advance(31)
    assert [k["kid"] for k in f.refresh(server.url())] == ["new", "old"]
    assert [k["kid"] for k in f.keys(server.url())] == ["new", "old"]
    assert server.count() == 2


def test_invalidate_forces_refetch(server):
    server.routes["/jwks"] = respond(jwks("k1"))
    f = fetcher()
    f.keys(server.url())
    f.invalidate(server.url())
    f.invalidate("not even a url")
    f.keys(server.url())
    assert server.count() == 2


def test_cache_is_bounded_lru(server):
    server.routes["/a"] = respond(jwks("a"))
    server.routes["/b"] = respond(jwks("b"))
    server.routes["/c"] = respond(jwks("c"))
    f = fetcher(capacity=2)
    f.keys(server.url("/a"))
    f.keys(server.url("/b"))
    f.keys(server.url("/a"))              # a is now the most recently used
    f.keys(server.url("/c"))              # evicts b
    f.keys(server.url("/a"))
    assert server.count("/a") == 1
    f.keys(server.url("/b"))
    assert server.count("/b") == 2


# --- failures ---------------------------------------------------------------------------------


def broken_routes():
    def slow(h):
        time.sleep(1.5)
        respond(jwks("late"))(h)
    return {
        "500": respond(b"oops", status=500),
        "timeout": slow,
        "invalid-json": respond(b"{not json"),
        "not-a-list": respond(b'{"keys": {"kid": "x"}}'),
    }


@pytest.mark.parametrize("mode", ["500", "timeout", "invalid-json"])
def test_last_good_set_kept_when_server_fails(server, mode, caplog):
    server.routes["/jwks"] = respond(jwks("good"))
    clock = FakeClock()
    f = fetcher(clock=clock, timeout=0.5, refetch_interval_seconds=60, default_cache_seconds=300)
    f.keys(server.url())
    server.routes["/jwks"] = broken_routes()[mode]
    clock.advance(301)
    with caplog.at_level(logging.WARNING, logger="keystore.jwks_uri"):
        assert [k["kid"] for k in f.keys(server.url())] == ["good"]
    assert server.count() == 2
    assert any(r.name == "keystore.jwks_uri" and r.levelno == logging.WARNING
               and "127.0.0.1" in r.getMessage() for r in caplog.records)
    # No retry before the refetch interval, from keys() or refresh().
    clock.advance(30)
    assert [k["kid"] for k in f.keys(server.url())] == ["good"]
    assert [k["kid"] for k in f.refresh(server.url())] == ["good"]
    assert server.count() == 2
    clock.advance(31)
    server.routes["/jwks"] = respond(jwks("back"))
    assert [k["kid"] for k in f.keys(server.url())] == ["back"]
    assert server.count() == 3


def test_last_good_set_ages_out(server):
    server.routes["/jwks"] = respond(jwks("good"))
    clock = FakeClock()
    f = fetcher(clock=clock, refetch_interval_seconds=60, default_cache_seconds=300, max_stale_seconds=3600)
    f.keys(server.url())
    server.routes["/jwks"] = broken_routes()["500"]
    clock.advance(300 + 3600 - 10)
    assert [k["kid"] for k in f.keys(server.url())] == ["good"]
    clock.advance(70)
    with pytest.raises(JWKSFetchError):
        f.keys(server.url())


@pytest.mark.parametrize("mode", ["500", "invalid-json", "not-a-list"])
def test_no_good_set_raises_and_is_not_retried_immediately(server, mode):
    server.routes["/jwks"] = broken_routes()[mode]
    clock = FakeClock()
    f = fetcher(clock=clock, refetch_interval_seconds=60)
    with pytest.raises(JWKSFetchError):
        f.keys(server.url())
    with pytest.raises(JWKSFetchError):
        f.keys(server.url())
    with pytest.raises(JWKSFetchError):
        f.refresh(server.url())
    assert server.count() == 1
    clock.advance(61)
    server.routes["/jwks"] = respond(jwks("k1"))
    assert [k["kid"] for k in f.keys(server.url())] == ["k1"]


def test_connection_refused_raises():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(JWKSFetchError):
        fetcher().keys(f"http://127.0.0.1:{port}/jwks")


def test_errors_and_logs_never_carry_url_or_body(server, caplog):
    marker = "SECRET-MARKER-0123"
    server.routes["/jwks"] = respond(json.dumps({"keys": marker}).encode() + b"\"\\")

    def leaky_parse(body: bytes) -> list:
        raise ValueError(body.decode("latin-1"))

    f = JWKSFetcher(leaky_parse, **LOOPBACK)
    url = server.url(f"/jwks?{marker}")
    with caplog.at_level(logging.WARNING, logger="keystore.jwks_uri"):
        with pytest.raises(JWKSFetchError) as e:
            f.keys(url)
    text = str(e.value)
    assert SAFE.fullmatch(text) and marker not in text and url not in text
    assert caplog.records
    for r in caplog.records:
        assert marker not in r.getMessage()


def test_redirect_is_refused_and_not_followed(make_server):
    server, canary = make_server(), make_server()
    canary.routes["/jwks"] = respond(jwks("canary"))
    for status in (301, 302, 303, 307, 308):
        server.routes[f"/r{status}"] = respond(b"", status=status, headers={"Location": canary.url()})
        with pytest.raises(JWKSFetchError, match="redirect"):
            fetcher().keys(server.url(f"/r{status}"))
    assert canary.count() == 0


@pytest.mark.parametrize("route", ["declared", "undeclared"])
def test_body_over_max_bytes_refused(server, route):
    body = json.dumps({"keys": [], "pad": "x" * 2000}).encode()
    server.routes["/jwks"] = respond(body) if route == "declared" else stream_without_length(body)
    with pytest.raises(JWKSFetchError, match="too large"):
        fetcher(max_bytes=1000).keys(server.url())
    # Exactly at the limit is accepted.
    ok = jwks("k1")
    server.routes["/ok"] = respond(ok) if route == "declared" else stream_without_length(ok)
    assert fetcher(max_bytes=len(ok)).keys(server.url("/ok"))


def test_content_encoding_refused(server):
    server.routes["/jwks"] = respond(jwks("k1"), headers={"Content-Encoding": "gzip"})
    with pytest.raises(JWKSFetchError, match="encoding"):
        fetcher().keys(server.url())


@pytest.mark.parametrize("head_first", [True, False], ids=["trickled-body", "trickled-headers"])
def test_trickling_server_bounded_by_deadline(server, head_first):
    server.routes["/jwks"] = trickle(head_first)
    f = fetcher(timeout=1)
    start = time.monotonic()
    with pytest.raises(JWKSFetchError, match="timed out"):
        f.keys(server.url())
    assert time.monotonic() - start < 1.6


# --- SSRF ---------------------------------------------------------------------------------------


def test_loopback_refused_without_allowed_hosts(make_server):
    canary = make_server()
    canary.routes["/jwks"] = respond(jwks("canary"))
    f = JWKSFetcher(parse, require_https=False)
    for host in ("127.0.0.1", "localhost", "LOCALHOST", "a.localhost", "[::1]", "[::ffff:127.0.0.1]",
                 "2130706433", "0x7f000001", "127.1", "0177.0.0.1"):
        with pytest.raises(JWKSFetchError):
            f.keys(f"http://{host}:{canary.port}/jwks")
    assert canary.count() == 0


def test_name_resolving_to_any_forbidden_address_is_refused(make_server, monkeypatch):
    canary = make_server()
    canary.routes["/jwks"] = respond(jwks("canary"))
    real = socket.getaddrinfo

    def fake(host, port, *args, **kwargs):
        if host == "jwks.example.test":
            # One public address first, loopback second: ANY forbidden address refuses the host.
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port)),
                    (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    f = JWKSFetcher(parse, require_https=False, allowed_hosts=["127.0.0.1"])
    with pytest.raises(JWKSFetchError, match="non-public"):
        f.keys(f"http://jwks.example.test:{canary.port}/jwks")
    assert canary.count() == 0


def test_allowed_name_is_resolved_once_and_connection_pinned(server, monkeypatch):
    """DNS rebinding: the fetch connects to the address it vetted, with the original Host header."""
    server.routes["/jwks"] = respond(jwks("k1"))
    calls = []
    real = socket.getaddrinfo

    def fake(host, port, *args, **kwargs):
        if host == "idp.internal.test":
            calls.append(host)
            ip = "127.0.0.1" if len(calls) == 1 else "10.9.9.9"  # a second lookup would "rebind"
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    f = JWKSFetcher(parse, require_https=False, allowed_hosts=["IDP.Internal.Test"], timeout=1)
    assert [k["kid"] for k in f.keys(f"http://idp.internal.test:{server.port}/jwks")] == ["k1"]
    assert calls == ["idp.internal.test"]
    assert server.requests[0][1]["host"] == f"idp.internal.test:{server.port}"


@pytest.mark.parametrize("host", [
    "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
    "224.0.0.1", "255.255.255.255", "240.0.0.1", "127.0.0.1",
    "[::1]", "[::]", "[fe80::1]", "[fc00::1]", "[fd12:3456::1]", "[ff02::1]",
    "[::ffff:10.0.0.1]", "[::ffff:169.254.169.254]", "[::ffff:7f00:1]",
    "[2002:7f00:1::]", "[2002:a00:1::]",                          # 6to4 of 127.0.0.1 / 10.0.0.1
    "[2001:0:4136:e378:8000:63bf:80ff:fffe]",                     # Teredo, client 127.0.0.1
    "[64:ff9b::a00:1]",                                           # NAT64 of 10.0.0.1
    "[::127.0.0.1]",
])
def test_non_public_literals_refused_by_check(host):
    with pytest.raises(JWKSFetchError, match="non-public"):
        check_jwks_uri(f"https://{host}/jwks")


def test_public_literals_and_allowed_hosts_pass_check():
    check_jwks_uri("https://93.184.216.34/jwks")
    check_jwks_uri("https://[2606:4700:4700::1111]:8443/jwks")
    check_jwks_uri("https://10.0.0.1/jwks", allowed_hosts=["10.0.0.1"])
    check_jwks_uri("https://[::1]/jwks", allowed_hosts=["0:0:0:0:0:0:0:1"])
    check_jwks_uri("https://LocalHost/jwks", allowed_hosts=["localhost"])
    with pytest.raises(JWKSFetchError):
        check_jwks_uri("https://10.0.0.2/jwks", allowed_hosts=["10.0.0.1"])
    with pytest.raises(TypeError):
        check_jwks_uri("https://10.0.0.1/jwks", allowed_hosts="10.0.0.1")


def test_teredo_literal_is_decoded():
    # Sanity check of the test vector above: the Teredo client is 127.0.0.1.
    assert ipaddress.ip_address("2001:0:4136:e378:8000:63bf:80ff:fffe").teredo[1] == \
        ipaddress.ip_address("127.0.0.1")


@pytest.mark.parametrize("uri, require_https", [
    ("http://example.com/jwks", True),
    ("ftp://example.com/jwks", False),
    ("file:///etc/passwd", False),
    ("//example.com/jwks", True),
    ("/jwks", True),
    ("example.com/jwks", True),
    ("https:example.com/jwks", True),
    ("https://user:pw@example.com/jwks", True),
    ("https://user@example.com/jwks", True),
    ("https://@example.com/jwks", True),
    ("https://example.com/jwks#frag", True),
    ("https://example.com/jwks#", True),
    ("https:///jwks", True),
    ("https://:443/jwks", True),
    ("https://example.com:0/jwks", True),
    ("https://example.com:65536/jwks", True),
    ("https://example.com:http/jwks", True),
    ("https://example.com:/jwks", True),
    ("https://exa mple.com/jwks", True),
    ("https://example.com/jw ks", True),
    ("https://example.com/jwks\r\nX: y", True),
    ("https://example.com\\@evil.test/jwks", True),
    ("https://exämple.com/jwks", True),
    ("https://ex%61mple.com/jwks", True),
    ("https://[::1/jwks", True),
    ("https://[example.com]/jwks", True),
    ("https://example.com/" + "a" * 2048, True),
    ("", True),
])
def test_static_check_refusals(uri, require_https):
    with pytest.raises(JWKSFetchError) as e:
        check_jwks_uri(uri, require_https=require_https)
    assert SAFE.fullmatch(str(e.value))


def test_static_check_accepts():
    check_jwks_uri("https://example.com/jwks")
    check_jwks_uri("HTTPS://Example.COM:8443/.well-known/jwks.json?client=a&v=1")
    check_jwks_uri("http://example.com/jwks", require_https=False)
    check_jwks_uri("https://example.com/" + "a" * (2048 - len("https://example.com/")))
    check_jwks_uri("https://example.com")


def test_invalid_uri_is_not_cached_or_fetched(server):
    f = fetcher(require_https=True)
    with pytest.raises(JWKSFetchError, match="https"):
        f.keys(server.url())
    with pytest.raises(JWKSFetchError):
        f.refresh(server.url())
    assert server.count() == 0


# --- concurrency and fork ----------------------------------------------------------------------


def test_concurrent_cold_callers_cause_one_request(server):
    server.routes["/jwks"] = respond(jwks("k1"), delay=0.3)
    f = fetcher()
    barrier = threading.Barrier(20)
    results, errors = [], []

    def call() -> None:
        barrier.wait()
        try:
            results.append(f.keys(server.url()))
        except Exception as e:  # pragma: no cover - reported by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=call) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not errors
    assert len(results) == 20 and all(r == results[0] for r in results)
    assert server.count() == 1


def test_concurrent_refresh_after_interval_causes_one_request(server):
    server.routes["/jwks"] = respond(jwks("k1"), delay=0.2)
    clock = FakeClock()
    f = fetcher(clock=clock)
    f.keys(server.url())
    clock.advance(61)
    threads = [threading.Thread(target=f.refresh, args=(server.url(),)) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert server.count() == 2


def test_different_uris_do_not_serialise(server):
    server.routes["/a"] = respond(jwks("a"), delay=0.5)
    server.routes["/b"] = respond(jwks("b"), delay=0.5)
    f = fetcher()
    start = time.monotonic()
    threads = [threading.Thread(target=f.keys, args=(server.url(p),)) for p in ("/a", "/b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert time.monotonic() - start < 0.9
    assert server.count("/a") == 1 and server.count("/b") == 1


def test_fork_hook_does_not_keep_fetcher_alive():
    f = JWKSFetcher(parse)
    ref = weakref.ref(f)
    del f
    gc.collect()
    assert ref() is None


def test_reset_after_fork_empties_cache(server):
    server.routes["/jwks"] = respond(jwks("k1"))
    f = fetcher()
    f.keys(server.url())
    f.reset_after_fork()
    f.keys(server.url())
    assert server.count() == 2


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_fork_during_fetch_leaves_no_held_lock(server):
    server.routes["/slow"] = respond(jwks("slow"), delay=1.0)
    server.routes["/fast"] = respond(jwks("fast"))
    f = fetcher(timeout=2)
    t = threading.Thread(target=f.keys, args=(server.url("/slow"),))
    t.start()
    time.sleep(0.3)                      # the parent thread is mid-fetch, holding the URI's lock
    pid = os.fork()
    if pid == 0:                         # child: only this thread exists; the lock must be fresh
        code = 1
        try:
            start = time.monotonic()
            slow = f.keys(server.url("/slow"))
            fast = f.keys(server.url("/fast"))
            if slow[0]["kid"] == "slow" and fast[0]["kid"] == "fast" and time.monotonic() - start < 1.8:
                code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    t.join(5)
    assert os.waitstatus_to_exitcode(status) == 0


# --- TLS ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def make(names: list[str], ips: list[str]):
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0] if names else ips[0])])
        now = datetime.datetime.now(datetime.timezone.utc)
        san = [x509.DNSName(n) for n in names] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        cert = (x509.CertificateBuilder()
                .subject_name(subject).issuer_name(subject)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName(san), critical=False)
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()),
                               critical=False)
                .sign(key, hashes.SHA256()))
        d = tmp_path_factory.mktemp("tls")
        cert_path, key_path = d / "cert.pem", d / "key.pem"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert_path, key_path)
        return ctx, str(cert_path)

    return make


@pytest.mark.parametrize("host, allowed", [("127.0.0.1", "127.0.0.1"), ("localhost", "localhost")])
def test_https_self_signed_certificate_is_not_trusted(make_server, self_signed, host, allowed):
    ctx, _ = self_signed(["localhost"], ["127.0.0.1"])
    server = make_server(tls=ctx)
    server.routes["/jwks"] = respond(jwks("k1"))
    f = JWKSFetcher(parse, allowed_hosts=[allowed], timeout=2)
    with pytest.raises(JWKSFetchError, match="certificate verification failed"):
        f.keys(server.url(host=host, scheme="https"))
    assert server.count() == 0


def test_https_verifies_against_the_url_host_not_the_pinned_address(make_server, self_signed, monkeypatch):
    """With the self-signed certificate made trusted through OpenSSL's SSL_CERT_FILE: the connection
    goes to the pinned 127.0.0.1 yet SNI and verification use the URL's host name."""
    ctx, cert_file = self_signed(["localhost"], [])
    monkeypatch.setenv("SSL_CERT_FILE", cert_file)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    server = make_server(tls=ctx)
    server.routes["/jwks"] = respond(jwks("k1"))
    sni = []
    ctx.sni_callback = lambda sock, name, _ctx: sni.append(name)
    f = JWKSFetcher(parse, allowed_hosts=["localhost", "127.0.0.1"], timeout=2)
    assert [k["kid"] for k in f.keys(server.url(host="localhost", scheme="https"))] == ["k1"]
    assert sni and sni[0] == "localhost"
    assert server.requests[0][1]["host"] == f"localhost:{server.port}"
    # The same server by IP literal: the certificate names only "localhost", so it must fail.
    with pytest.raises(JWKSFetchError, match="certificate verification failed"):
        f.keys(server.url(host="127.0.0.1", scheme="https"))
