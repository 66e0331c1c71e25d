"""One structured JSON log line per event (client authentication, token issued, token error).

The lines go to standard error as bare JSON (the timestamp is inside), one object per line, so
they can be shipped and queried as they are. The client assertion, secrets and tokens are never
logged."""

from __future__ import annotations

import json
import logging
import time

from handlers.base import Listener

log = logging.getLogger("audit")


class AuditLogListener(Listener):
    default_order = 100

    def __init__(self, services, props) -> None:
        super().__init__(services, props)
        if not log.handlers:
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter("%(message)s"))  # no second, formatted timestamp
            log.addHandler(handler)
            log.setLevel(logging.INFO)
            log.propagate = False

    def on_event(self, event: str, data: dict) -> None:
        record = {"ts": round(time.time(), 3), "event": event, **data}
        log.info(json.dumps(record, separators=(",", ":"), ensure_ascii=True, default=str))
