"""The authorization endpoint (RFC 6749 §4.1.1, OpenID Connect Core §3.1.2): sign-in, consent, code."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("authorize", __name__)
