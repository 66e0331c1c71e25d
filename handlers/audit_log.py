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
import select
import sys
import time

from handlers.base import Listener

log = logging.getLogger("handlers.audit_log")
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True, default=str).encode
FULL_PIPE_WAIT = 1.0  # seconds a line may wait for room on a non-blocking standard error


class AuditLogListener(Listener):
    default_order = 100

    def __init__(self, services, props) -> None:
        super().__init__(services, props)
        self._warned: set[str] = set()

    def on_event(self, event: str, data: dict) -> None:
        line = _dumps({"ts": round(time.time(), 3), "event": event, **data}).encode("ascii") + b"\n"
        try:
            _write_line(sys.stderr.fileno(), line)
        except (OSError, ValueError) as exc:  # no standard error to write to: say so once per cause
            cause = exc.__class__.__name__
            if cause not in self._warned:
                self._warned.add(cause)
                log.warning("audit lines not written: %s", cause)


def _write_line(fd: int, line: bytes) -> None:
    """All of `line`. Standard error may be non-blocking (the flag belongs to the open file, which
    whoever started us shares): a full pipe is waited for, briefly, rather than a line dropped or
    cut short for the next one to be glued to."""
    deadline = None
    while line:
        try:
            line = line[os.write(fd, line):]
        except BlockingIOError:
            deadline = deadline or time.monotonic() + FULL_PIPE_WAIT
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([], [fd], [], remaining)[1]:
                raise
