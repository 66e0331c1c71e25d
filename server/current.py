"""The server object a request is served by, and the address of the client that sent it: the one
place the web layer reads them from."""

from __future__ import annotations

import ipaddress

from flask import current_app, request
from werkzeug.wrappers import Request


def idp():
    """The running server: its services (core.services) and its handler chain."""
    return current_app.extensions["idp"]


def services():
    return idp().services


def chain():
    return idp().chain


def client_address(req: Request | None = None, server=None) -> str:
    """The client's address: the TCP peer, or, when the peer is one of [server] trusted_proxies,
    the right-most X-Forwarded-For entry that is not itself a trusted proxy."""
    req = request if req is None else req
    peer = req.remote_addr or ""
    trusted = (server or idp()).services.settings.server["trusted_proxies"]
    if peer not in trusted:
        return peer
    for hop in reversed(req.headers.get("X-Forwarded-For", "").split(",")):
        hop = hop.strip()
        if hop and hop not in trusted:
            # The address the failure budgets count against: an IP address in one spelling
            # ("::1" and "0::1" are one address); anything else leaves the proxy's own.
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer
    return peer
