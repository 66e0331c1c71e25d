"""The management console (/console): service providers, client keys, the keystore, recent failures."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("console", __name__)
