"""The audit log's writes on standard error: whole lines, also when the descriptor is
non-blocking and its pipe full, and one warning per cause when there is nowhere to write."""

from __future__ import annotations

import io
import json
import logging
import os
import threading
import time

import pytest

from handlers.audit_log import AuditLogListener


class FakeStderr:
    """Standard error replaced by a pipe's write end (only fileno() is used)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def fileno(self) -> int:
        return self.fd


@pytest.fixture
def full_pipe():
    """Standard error on a non-blocking pipe that is full: a write fails with EAGAIN until the
    reader takes some of it."""
    r, w = os.pipe()
    os.set_blocking(w, False)
    while True:
        try:
            os.write(w, b"x" * 4096)
        except BlockingIOError:
            break
    while True:   # up to the last byte
        try:
            os.write(w, b"x")
        except BlockingIOError:
            break
    yield r, w
    os.close(r)
    os.close(w)


def test_a_full_non_blocking_pipe_delays_the_line_and_never_cuts_it(full_pipe, monkeypatch):
    r, w = full_pipe
    monkeypatch.setattr("sys.stderr", FakeStderr(w))
    received = bytearray()

    def drain() -> None:
        time.sleep(0.2)
        os.set_blocking(r, False)
        deadline = time.monotonic() + 3
        while not received.endswith(b"}\n") and time.monotonic() < deadline:
            try:
                received.extend(os.read(r, 65536))
            except BlockingIOError:
                time.sleep(0.01)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    AuditLogListener(None, {}).on_event("token_issued", {"client_id": "c" * 200, "scope": "s " * 3000})
    reader.join(5)
    line = bytes(received).lstrip(b"x")
    assert json.loads(line)["client_id"] == "c" * 200 and line.endswith(b"\n")


def test_nowhere_to_write_is_said_once_per_cause(monkeypatch, caplog):
    monkeypatch.setattr("sys.stderr", io.StringIO())   # no file descriptor
    listener = AuditLogListener(None, {})
    with caplog.at_level(logging.WARNING, logger="handlers.audit_log"):
        for _ in range(3):
            listener.on_event("token_issued", {"client_id": "c"})
    assert [r.getMessage() for r in caplog.records] == ["audit lines not written: UnsupportedOperation"]
