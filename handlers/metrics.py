"""Prometheus counters of the chain's events: failed client authentications by method and
reason, issued access tokens by grant type, format and binding (bearer, DPoP, mTLS), and
requests refused by a failure budget. Label values come from fixed sets (core.metrics): never a
client id or a user name. Token requests by outcome are counted by the web layer, which also
sees the requests refused before the chain runs."""

from __future__ import annotations

from typing import Any

from handlers.base import Listener


class MetricsListener(Listener):
    default_order = 130

    def __init__(self, services, props) -> None:
        super().__init__(services, props)
        self.metrics = services.metrics  # None: [monitoring] enabled = false

    def on_event(self, event: str, data: dict[str, Any]) -> None:
        metrics = self.metrics
        if metrics is None:
            return
        if event == "client_authentication":
            if data.get("outcome") == "failure":
                metrics.client_auth_failed(data.get("method"), data.get("reason"))
        elif event == "token_issued":
            metrics.token_issued(data.get("grant_type"), data.get("format"), data.get("binding"))
        elif event == "user_authentication" and data.get("reason") == "rate_limited":
            metrics.sign_in_refused()
