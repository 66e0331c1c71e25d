"""The server object a request is served by, and the address and TLS certificate of the client
that sent it: the one place the web layer reads them from."""

from __future__ import annotations

import base64
import binascii
import functools
import ipaddress
import re

from cryptography import x509
from flask import current_app, request
from werkzeug.wrappers import Request

from core.errors import invalid_request


def idp():
    """The running server: its services (core.services) and its handler chain."""
    return current_app.extensions["idp"]


def services():
    return idp().services


def chain():
    return idp().chain


def canonical_address(address: str) -> str | None:
    """An IP address in one spelling ("::1" and "0::1" are one address; an IPv4-mapped IPv6
    address, as a dual-stack listener reports IPv4 peers, is its IPv4 address), or None."""
    # Every request asks this of its peer (twice): the few addresses a server sees are
    # remembered; a string no address is that long is not.
    return _canonical(address) if len(address) <= 64 else _canonical.__wrapped__(address)


@functools.lru_cache(maxsize=1024)
def _canonical(address: str) -> str | None:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    return str(getattr(ip, "ipv4_mapped", None) or ip)


@functools.lru_cache(maxsize=8)
def _canonical_set(addresses: tuple[str, ...]) -> frozenset[str]:
    return frozenset(a for a in map(canonical_address, addresses) if a is not None)


def trusted_proxy(address: str, server=None) -> bool:
    """Whether `address` is one of [server] trusted_proxies, however either is spelled."""
    trusted = (server or idp()).services.settings.server["trusted_proxies"]
    return bool(trusted) and canonical_address(address) in _canonical_set(tuple(trusted))


def client_address(req: Request | None = None, server=None) -> str:
    """The client's address: the TCP peer, or, when the peer is one of [server] trusted_proxies,
    the right-most X-Forwarded-For entry that is not itself a trusted proxy. An IP address is
    returned in one spelling (canonical_address): it is what the failure budgets count against."""
    req = request if req is None else req
    peer = req.remote_addr or ""
    peer = canonical_address(peer) or peer
    if not trusted_proxy(peer, server):
        return peer
    for hop in reversed(req.headers.get("X-Forwarded-For", "").split(",")):
        hop = hop.strip()
        if hop and not trusted_proxy(hop, server):
            # Anything but an IP address leaves the proxy's own.
            return canonical_address(hop) or peer
    return peer


# RFC 8941 §3.3.5: a byte sequence is base64 (RFC 4648 §4) between colons; padding may be missing.
_BYTE_SEQUENCE = re.compile(r":([A-Za-z0-9+/]*={0,2}):")


def client_certificate(req: Request | None = None, server=None) -> bytes | None:
    """The client's TLS certificate (DER) for RFC 8705, or None. With [server] client_certificates
    = "optional": from one of [server] trusted_proxies, the Client-Cert header (RFC 9440 §2), which
    that proxy took from its own mutual-TLS handshake and verified; from anyone else, the
    certificate of this server's own TLS connection (tls = true), which gunicorn's TLS verified
    against client_ca_file. A Client-Cert header from any other peer is ignored, as its
    X-Forwarded-For is (client_address): only a proxy's word is taken for what it saw.
    A trusted proxy's own TLS certificate is never the client's."""
    req = request if req is None else req
    settings = (server or idp()).services.settings.server
    if settings["client_certificates"] == "off":
        return None
    if trusted_proxy(req.remote_addr or "", server):
        return _client_cert_header(req.headers.getlist("Client-Cert"))
    if not settings["tls"]:
        return None
    # gunicorn's gthread worker hands the application the connection's ssl.SSLSocket; its peer
    # certificate is there only when the handshake verified it (CERT_OPTIONAL: app.serve).
    getpeercert = getattr(req.environ.get("gunicorn.socket"), "getpeercert", None)
    if getpeercert is None:
        return None
    try:
        return getpeercert(binary_form=True) or None
    except (OSError, ValueError):  # the connection is gone
        return None


def _client_cert_header(values: list[str]) -> bytes | None:
    """RFC 9440 §2.2: Client-Cert is one structured-field byte sequence holding the DER
    certificate. Missing: no certificate. Present but not exactly that (two headers, which the
    server joins with a comma, included): the proxy is misconfigured, and the request is refused
    rather than served as if no certificate had come."""
    if not values:
        return None
    match = _BYTE_SEQUENCE.fullmatch(values[0].strip(" \t")) if len(values) == 1 else None
    try:
        if match is None or not match.group(1):
            raise ValueError("not a byte sequence")
        encoded = match.group(1).rstrip("=")
        der = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        x509.load_der_x509_certificate(der)
    except (ValueError, binascii.Error):
        raise invalid_request("The Client-Cert header is malformed", reason="client_cert_header") from None
    return der
