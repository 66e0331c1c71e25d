"""Dynamic client registration (RFC 7591) and management (RFC 7592) at WSO2's path, and its OpenAPI description."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("registration", __name__)
