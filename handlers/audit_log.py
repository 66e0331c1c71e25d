"""One structured JSON log line per event (client authentication, token issued, token error).

The client assertion, secrets and tokens are never logged."""

from __future__ import annotations

import json
import logging
import time

from handlers.base import Listener

log = logging.getLogger("audit")


class AuditLogListener(Listener):
    default_order = 100

    def on_event(self, event: str, data: dict) -> None:
        record = {"ts": round(time.time(), 3), "event": event, **data}
        log.info(json.dumps(record, separators=(",", ":"), ensure_ascii=True, default=str))
