"""One structured JSON log line per event (client authentication, token issued, token error).

The lines go to standard error as bare JSON (the timestamp is inside), one object per line, so
they can be shipped and queried as they are. The client assertion, secrets and tokens are never
logged.

Each line is formatted once and written with one write(2) on the file descriptor: no logging
record, formatter or handler lock on the token path. Lines from several threads and workers do
not interleave: a write of up to PIPE_BUF bytes to a pipe is atomic (POSIX), and a file opened
for appending (gunicorn's errorlog, a shell's `2>>`) takes each write whole.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time

from handlers.base import Listener

log = logging.getLogger("handlers.audit_log")
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True, default=str).encode


class AuditLogListener(Listener):
    default_order = 100

    def on_event(self, event: str, data: dict) -> None:
        line = _dumps({"ts": round(time.time(), 3), "event": event, **data}).encode("ascii") + b"\n"
        try:
            fd = sys.stderr.fileno()
            while line:
                line = line[os.write(fd, line):]
        except (OSError, ValueError) as exc:  # no standard error to write to: say so once per cause
            log.warning("audit line not written: %s", exc.__class__.__name__)
