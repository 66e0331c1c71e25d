#!/usr/bin/env python3
"""Lock-out scenario: an attacker at full speed against one client id must not lock its key holder out.

For --duration seconds (60) an attacker at full speed (--attacker-threads keep-alive sessions,
from --attacker-address, 127.0.0.2) sends, mixed at random, forged assertions with
`iss = sub = victim` (signed by a key that is not the victim's, under the victim's `kid`, fresh
`jti`) and replays of one captured, already-used valid assertion of the victim. Meanwhile the
victim, from --victim-address (127.0.0.5), asks for a token every 100 ms with a fresh valid
assertion. Both alternate between the nodes (--nodes 2: two servers, 2 workers each, a SQLite
database each, the same issuer, the victim registered in both, `[oauth.rate_limit] store` the
same Redis database 8, emptied before and after).

Exit status 0 only when: every victim request got 200 with an access_token; the attacker got
429s and never a token; no 5xx and no Traceback, worker restart or Redis fallback in the server
logs; and the 401s the attacker's address got match the budget: with Redis
(`store = "redis://…"`, the default here) the binding budget per window started, ±10 %; with
`--store memory` at most workers × nodes × the budget per window (each worker counts alone).
See bench/README.md, "Lock-out: an attacker against one client id".
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.dont_write_bytecode = True

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "bench"), str(REPO / "tests")]

import redis  # noqa: E402
import requests  # noqa: E402

from hostile_load import worker_pids  # noqa: E402
import support as S  # noqa: E402
from support import free_port, jwks_of, session_from, token_form  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402

ISSUER = "https://idp.example.test/oauth2/token"   # the same on every node: one audience
CLIENT_ID = "victim"
KID = "k1"
REDIS_DB = 8
REDIS_URL = f"redis://127.0.0.1:6379/{REDIS_DB}"
REDIS_PREFIX = "pkjwt:failures:"
KEYSTORE_PASSWORD = "lockout-store-pass"
VICTIM_PERIOD = 0.1          # seconds between two victim requests
PROGRESS_EVERY = 10.0
TOLERANCE = 0.10             # ±10 % on the 401 count


def log(msg: str = "") -> None:
    print(msg, flush=True)


# --------------------------------------------------------------------------- assertions


def assertion(key) -> str:
    """RS256, iss = sub = victim, aud = the issuer, a fresh jti, five minutes."""
    return S.sign(key, S.claims_for(CLIENT_ID, ISSUER), "RS256", {"kid": KID})


# --------------------------------------------------------------------------- nodes


class Node:
    """`python app.py deployment.toml` (gunicorn, HTTPS) in its own directory; output to server.log there."""

    def __init__(self, name: str, directory: Path, args, victim_jwks: str) -> None:
        self.name = name
        self.directory = directory
        self.port = free_port()
        self.base = f"https://localhost:{self.port}"
        self.url = self.base + "/oauth2/token"
        self.log_path = directory / "server.log"
        self.proc: subprocess.Popen | None = None
        self.workers: list[int] = []
        self.expected_workers = args.workers
        directory.mkdir(parents=True)
        store = REDIS_URL if args.store == "redis" else "memory"
        self.toml = directory / "deployment.toml"
        self.toml.write_text(f"""[server]
hostname = "localhost"
port = {self.port}
bind_address = "127.0.0.1"
workers = {args.workers}
threads = 4

[database.identity_db]
url = "sqlite:///var/identity.db"

[keystore.primary]
file_name = "var/primary.p12"
password = "{KEYSTORE_PASSWORD}"
alias = "wso2carbon"

[oauth.rate_limit]
failures_per_address = {args.per_address}
failures_per_client_address = {args.per_client_address}
failures_per_client = {args.per_client}
store = "{store}"
window = {args.window}

[oauth.oidc.id_token]
issuer = "{ISSUER}"
""")
        # The victim goes into this node's own database before the node starts (as
        # tests/test_ratelimit_shared.py does).
        from storage import clients
        from storage.database import close_all, open_database
        from storage.schema import upgrade
        db = open_database("sqlite:///var/identity.db", directory)
        upgrade(db)
        clients.create(CLIENT_ID, "private_key_jwt", grant_types=("client_credentials",), scopes=("read",),
                       jwks=victim_jwks)
        close_all(db)

    @property
    def ca(self) -> str:
        return str(self.directory / "var" / "tls" / "cert.pem")

    def start(self, timeout: float = 60) -> None:
        env = {**os.environ, "DEPLOYMENT_TOML": str(self.toml), "PYTHONDONTWRITEBYTECODE": "1"}
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, str(REPO / "app.py"), str(self.toml)], cwd=REPO,
                                         stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log()[-3000:]}")
            try:
                requests.get(self.base + "/oauth2/jwks", verify=self.ca, timeout=1)
            except (requests.ConnectionError, requests.Timeout, OSError):
                time.sleep(0.2)
                continue
            # One worker may answer before the other has booted: wait for all of them.
            while time.time() < deadline:
                self.workers = worker_pids(self.proc.pid)
                if len(self.workers) >= self.expected_workers and "Booting worker" in self.log():
                    booted = set(int(p) for p in re.findall(r"Booting worker with pid: (\d+)", self.log()))
                    if booted >= set(self.workers):
                        return
                time.sleep(0.2)
            break
        raise RuntimeError(f"{self.name} did not start within {timeout:.0f} s:\n{self.log()[-3000:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


# --------------------------------------------------------------------------- the run


@dataclass
class Answer:
    who: str              # victim | forged | replay
    node: int
    sent: float           # seconds since the attack started
    latency: float
    status: int           # 0: no answer (exception)
    body: str = ""
    retry_after: str | None = None
    ok: bool = False      # victim: 200 with an access_token


@dataclass
class Run:
    args: argparse.Namespace
    nodes: list[Node]
    victim_key: object
    captured: str
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    attacker: list[Answer] = field(default_factory=list)
    victim: list[Answer] = field(default_factory=list)
    t0: float = 0.0
    t0_wall: float = 0.0
    attack_end: float = 0.0

    def post(self, session: requests.Session, node: int, jws: str, timeout: float) -> tuple[int, str, str | None, float]:
        n = self.nodes[node]
        start = time.monotonic()
        try:
            r = session.post(n.url, data=token_form(jws), verify=n.ca, timeout=timeout)
            return r.status_code, r.text, r.headers.get("Retry-After"), time.monotonic() - start
        except requests.RequestException as exc:
            return 0, f"{exc.__class__.__name__}: {exc}", None, time.monotonic() - start

    def attacker_thread(self, index: int) -> None:
        rng = random.Random(index)
        forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)   # not the victim's key
        sessions = [session_from(self.args.attacker_address) for _ in self.nodes]
        turn = index
        try:
            while not self.stop.is_set():
                node = turn % len(self.nodes)
                turn += 1
                if rng.random() < 0.5:
                    who, jws = "forged", assertion(forger)
                else:
                    who, jws = "replay", self.captured
                sent = time.monotonic() - self.t0
                status, body, retry, latency = self.post(sessions[node], node, jws, timeout=30)
                answer = Answer(who, node, sent, latency, status, body if status != 429 else "", retry)
                with self.lock:
                    self.attacker.append(answer)
        finally:
            for s in sessions:
                s.close()

    def victim_thread(self) -> None:
        sessions = [session_from(self.args.victim_address) for _ in self.nodes]
        k = 0
        next_at = self.t0
        try:
            while not self.stop.is_set():
                delay = next_at - time.monotonic()
                if delay > 0:
                    if self.stop.wait(delay):
                        break
                node = k % len(self.nodes)
                k += 1
                jws = assertion(self.victim_key)
                sent = time.monotonic() - self.t0
                status, body, _, latency = self.post(sessions[node], node, jws, timeout=30)
                ok = False
                if status == 200:
                    try:
                        ok = "access_token" in json.loads(body)
                    except ValueError:
                        pass
                with self.lock:
                    self.victim.append(Answer("victim", node, sent, latency, status, "" if ok else body, None, ok))
                # Every 100 ms; a late answer moves the schedule on instead of sending a burst.
                next_at = max(next_at + VICTIM_PERIOD, time.monotonic())
        finally:
            for s in sessions:
                s.close()

    def go(self) -> None:
        threads = [threading.Thread(target=self.attacker_thread, args=(i,), daemon=True)
                   for i in range(self.args.attacker_threads)]
        threads.append(threading.Thread(target=self.victim_thread, daemon=True))
        self.t0 = time.monotonic()
        self.t0_wall = time.time()
        for t in threads:
            t.start()
        next_progress = PROGRESS_EVERY
        while (elapsed := time.monotonic() - self.t0) < self.args.duration:
            if elapsed >= next_progress:
                self.progress(elapsed)
                next_progress += PROGRESS_EVERY
            time.sleep(0.1)
        self.stop.set()
        self.attack_end = time.monotonic() - self.t0
        for t in threads:
            t.join(60)
        self.progress(time.monotonic() - self.t0, final=True)

    def progress(self, elapsed: float, final: bool = False) -> None:
        with self.lock:
            v_sent, v_ok = len(self.victim), sum(a.ok for a in self.victim)
            a = collections.Counter(x.status for x in self.attacker)
        load = os.getloadavg()[0]
        log(f"   {elapsed:5.1f}/{self.args.duration:.0f} s  victim {v_ok}/{v_sent} ok  attacker {sum(a.values())} "
            f"(401 {a[401]}, 429 {a[429]}, other {sum(a.values()) - a[401] - a[429]})  load {load:.1f}"
            + ("  done" if final else ""))


# --------------------------------------------------------------------------- server logs


def audit_events(node: Node, address: str, outcome: str) -> list[tuple[float, str | None]]:
    """(server timestamp, reason) of every client authentication with this outcome from `address`
    in the node's audit log."""
    return [(r["ts"], r.get("reason")) for r in S.audit_records(node.log(), outcome=outcome, remote_addr=address)]


def scan_log(node: Node) -> dict[str, list[str]]:
    problems: dict[str, list[str]] = collections.defaultdict(list)
    lines = node.log().splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if "Traceback" in line:
            j = i + 1
            while j < len(lines) and lines[j].startswith((" ", "\t")):
                j += 1
            problems["Traceback"].append("\n".join(lines[i:j + 1]))
            i = j + 1
            continue
        if "WORKER TIMEOUT" in line or re.search(r"Worker \(pid:\d+\) (was sent|exited)", line):
            problems["worker restart"].append(line)
        elif (m := re.search(r"Booting worker with pid: (\d+)", line)) and int(m.group(1)) not in node.workers:
            problems["worker restart"].append(line)
        elif "rate-limit store" in line and "unreachable" in line:
            problems["Redis fallback"].append(line)
        elif re.search(r"\[(ERROR|CRITICAL)\]| ERROR | CRITICAL |WARNING", line):
            problems["error/warning lines"].append(line)
        i += 1
    return problems


# --------------------------------------------------------------------------- windows


@dataclass
class Window:
    start: float          # seconds since the attack started (server time of its first 401)
    end: float            # start of the next window (or the last failure)
    n401: int = 0
    n429: int = 0
    exhausted_at: float | None = None   # the first 429: from then on the budgets are used up

    @property
    def failures(self) -> int:
        return self.n401 + self.n429


def windows_from(failures: list[tuple[float, bool]], window: int) -> list[Window]:
    """Group the failures into the budget's windows. A window starts with the first failure after
    the previous one expired, and that failure is always a 401; so a 401 at least `window` seconds
    (less half a second of slack for workers whose own windows started a little later, with
    store = "memory") after the current window's start opens the next one."""
    out: list[Window] = []
    for ts, limited in sorted(failures):
        if not limited and (not out or ts >= out[-1].start + window - 0.5):
            if out:
                out[-1].end = ts
            out.append(Window(ts, ts))
        if not out:          # a 429 before any 401 (cannot happen with a fresh store)
            out.append(Window(ts, ts))
        w = out[-1]
        w.end = max(w.end, ts)
        if limited:
            w.n429 += 1
            if w.exhausted_at is None:
                w.exhausted_at = ts
        else:
            w.n401 += 1
    return out


# --------------------------------------------------------------------------- report


def error_description(body: str) -> str:
    try:
        return json.loads(body).get("error_description", "")
    except (ValueError, AttributeError):
        return body[:100]


def pct(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, max(0, math.ceil(p / 100 * len(values)) - 1))]


def report(run: Run, args, redis_client) -> list[str]:
    failures: list[str] = []
    nodes = run.nodes
    budgets = {"failures_per_address": args.per_address, "failures_per_client_address": args.per_client_address,
               "failures_per_client": args.per_client}
    enabled = {k: v for k, v in budgets.items() if v > 0}
    budget = min(enabled.values())
    binding = [k for k, v in enabled.items() if v == budget]

    # ---- the victim
    v = run.victim
    bad = [a for a in v if not a.ok]
    lat = [a.latency * 1000 for a in v]
    ideal = int(run.attack_end / VICTIM_PERIOD) + 1
    log(f"\n== victim ({args.victim_address}, every {VICTIM_PERIOD * 1000:.0f} ms, a fresh assertion each, "
        f"alternating over {len(nodes)} node(s))")
    log(f"   requests: {len(v)} (at most {ideal} in {run.attack_end:.1f} s at one per 100 ms), "
        f"200 with a token: {len(v) - len(bad)}, other: {len(bad)}")
    per_node = collections.Counter((a.node, a.status) for a in v)
    log("   by node: " + ", ".join(f"node {n + 1}: {dict((s, c) for (nn, s), c in sorted(per_node.items()) if nn == n)}"
                                   for n in range(len(nodes))))
    if lat:
        log(f"   latency ms: p50 {pct(lat, 50):.0f}, p90 {pct(lat, 90):.0f}, p99 {pct(lat, 99):.0f}, "
            f"max {max(lat):.0f}, mean {statistics.mean(lat):.0f}")
    if not v:
        failures.append("the victim sent no request")
    if bad:
        failures.append(f"{len(bad)} of the victim's {len(v)} requests did not get a token")
        log(f"   VICTIM FAILURES ({len(bad)}), every one:")
        for a in bad:
            log(f"   - at {a.sent:6.2f} s, node {a.node + 1}, {a.latency * 1000:.0f} ms: "
                f"status {a.status or 'no answer'} body {a.body[:300]!r}")

    # ---- the attacker, as it saw it
    att = run.attacker
    statuses = collections.Counter(a.status for a in att)
    n401, n429 = statuses.get(401, 0), statuses.get(429, 0)
    other = [a for a in att if a.status not in (401, 429)]
    duration = run.attack_end
    log(f"\n== attacker ({args.attacker_address}, {args.attacker_threads} threads, keep-alive, "
        f"{'round-robin over 2 nodes' if len(nodes) > 1 else '1 node'}): {len(att)} requests "
        f"({len(att) / duration:.0f}/s)")
    kinds = collections.Counter((a.who, a.status) for a in att)
    for who in ("forged", "replay"):
        log(f"   {who:7}: " + ", ".join(f"{s or 'no answer'}: {c}" for (w, s), c in sorted(kinds.items()) if w == who))
    log(f"   401: {n401}   429: {n429}   other: {len(other)}")
    reasons = collections.Counter((a.who, error_description(a.body)) for a in att if a.status == 401)
    log("   401 descriptions: " + "; ".join(f"{who} {d!r}: {c}" for (who, d), c in sorted(reasons.items())))
    known = {("forged", "The client assertion signature is invalid"),
             ("replay", "The client assertion has already been used (jti replay)")}
    if set(reasons) - known:
        failures.append(f"401s with an unexpected description: {sorted(set(reasons) - known)}")
    if len(nodes) > 1:
        by_node = collections.Counter((a.node, a.status) for a in att)
        log("   by node: " + ", ".join(f"node {n + 1}: 401 {by_node[(n, 401)]}, 429 {by_node[(n, 429)]}"
                                       for n in range(len(nodes))))
    retry = [int(a.retry_after) for a in att if a.status == 429 and (a.retry_after or "").isdigit()]
    if retry:
        log(f"   Retry-After on the 429s: {min(retry)}–{max(retry)} s")
    if n429 == 0:
        failures.append("the attacker got no 429")
    if n429 and len(retry) != n429:
        failures.append(f"{n429 - len(retry)} 429 answers without a numeric Retry-After")
    if other:
        grouped = collections.Counter((a.who, a.status, a.body[:200]) for a in other)
        log(f"   OTHER ANSWERS ({len(other)}):")
        for (who, status, body), c in grouped.most_common(10):
            log(f"   - {c} x {who}: status {status or 'no answer'} body {body!r}")
        tokens = [a for a in other if a.status == 200]
        if tokens:
            failures.append(f"the attacker got {len(tokens)} token(s)")
        failures.append(f"{len(other)} attacker request(s) answered neither 401 nor 429")
    fivexx = [a for a in att + v if a.status >= 500]
    if fivexx:
        failures.append(f"{len(fivexx)} 5xx answer(s)")

    # ---- the budget: 401s per window, from the audit logs of every node (server time)
    server_failures: list[tuple[float, bool]] = []
    victim_served: list[float] = []
    per_node_401 = []
    for node in nodes:
        f = [(ts - run.t0_wall, reason == "rate_limited")
             for ts, reason in audit_events(node, args.attacker_address, "failure")]
        per_node_401.append(sum(not limited for _, limited in f))
        server_failures += f
        victim_served += [ts - run.t0_wall for ts, _ in audit_events(node, args.victim_address, "success")]
    windows = windows_from(server_failures, args.window)
    server_401 = sum(w.n401 for w in windows)
    log(f"\n== failure budget: {', '.join(f'{k} = {v}' for k, v in budgets.items())}, window = {args.window} s, "
        f"store = {'Redis db %d (shared)' % REDIS_DB if args.store == 'redis' else 'memory (per worker)'}, "
        f"{len(nodes)} node(s) × {args.workers} workers")
    log(f"   binding budget: {budget} ({' = '.join(binding)}; every attacker failure counts against the address, "
        f"the (victim, address) pair and the victim's client id at once, so their windows start together)")
    log(f"   the attacker's address in the audit logs: {server_401} × 401 "
        + (f"({' + '.join(str(n) for n in per_node_401)} by node) " if len(nodes) > 1 else "")
        + f"and {sum(w.n429 for w in windows)} × 429; the attacker saw {n401} × 401")
    if server_401 != n401:
        failures.append(f"the audit logs count {server_401} 401s for {args.attacker_address}, the attacker saw {n401}")
    log(f"   windows (seconds since the attack started, server clock): {len(windows)} started in "
        f"{duration:.1f} s of attack ({duration / args.window:.1f} windows of {args.window} s)")
    expected = 0
    label = "expected 401" if args.store == "redis" else "shared budget"
    log(f"   {'#':>3} {'start':>7} {'until':>7} {'failures':>9} {'401':>6} {'429':>7} {label:>13}")
    for i, w in enumerate(windows, 1):
        exp = min(budget, w.failures)     # a window the attacker left early lets through what it got
        expected += exp
        log(f"   {i:3} {w.start:7.2f} {w.end:7.2f} {w.failures:9} {w.n401:6} {w.n429:7} {exp:13}")
    over = [(w.exhausted_at, w.end) for w in windows if w.exhausted_at is not None]
    served_over = sum(1 for t in victim_served if any(a <= t <= b for a, b in over))
    log(f"   the budgets were used up for {sum(b - a for a, b in over):.1f} s of the {duration:.1f} s "
        f"(from each window's first 429 to its end); the victim was served {served_over} times in that time "
        f"(its client id over its budget: the credential checked and served all the same)")
    shared_max = args.workers * len(nodes) * budget
    if args.store == "redis":
        low, high = expected * (1 - TOLERANCE), expected * (1 + TOLERANCE)
        verdict = low <= n401 <= high
        log(f"   expected: {budget} per window × {len(windows)} windows = {expected} 401s (±10 %: "
            f"{math.ceil(low)}–{math.floor(high)}); measured: {n401}  -> {'OK' if verdict else 'OUT OF RANGE'}")
        log(f"   (with store = \"memory\" the same run could let up to {args.workers} workers × {len(nodes)} node(s) × "
            f"{budget} = {shared_max} 401s through per window, {shared_max * len(windows)} in all)")
        if not verdict:
            failures.append(f"the attacker got {n401} 401s, expected {expected} ±10 %")
    else:
        bound = shared_max * len(windows)
        verdict = n401 <= bound * (1 + TOLERANCE)
        log(f"   shared budget (Redis): {budget} per window × {len(windows)} = {expected}; measured with memory "
            f"counters: {n401} ({n401 / max(expected, 1):.2f}× the shared budget); bound with memory: "
            f"{args.workers} workers × {len(nodes)} node(s) × {budget} × {len(windows)} = {bound}  "
            f"-> {'within the bound' if verdict else 'ABOVE THE BOUND'}")
        if not verdict:
            failures.append(f"the attacker got {n401} 401s, more than workers × nodes × budget = {bound}")

    if redis_client is not None:
        keys = sorted(redis_client.keys(REDIS_PREFIX + "*"))
        if not keys:
            log("   Redis db 8 at the end: no counter left (the last window had expired)")
        else:
            log("   Redis db 8 at the end (the last window of each key): "
                + "; ".join(f"{k.decode()[len(REDIS_PREFIX):]} = {int(redis_client.get(k) or 0)} "
                            f"({redis_client.pttl(k) / 1000:.1f} s left)" for k in keys))

    # ---- server logs
    log("")
    for node in nodes:
        problems = scan_log(node)
        workers_now = worker_pids(node.proc.pid) if node.proc and node.proc.poll() is None else []
        log(f"   {node.name} server log: {len(node.log().splitlines())} lines; workers {node.workers}"
            + ("" if workers_now == node.workers else f" -> {workers_now}")
            + ("; no Traceback, error, worker restart or Redis fallback" if not problems else ""))
        for kind, items in problems.items():
            log(f"   {node.name} {kind}: {len(items)}")
            for item in items[:5]:
                log("     " + item[:1500].replace("\n", "\n     "))
        if problems.get("Traceback"):
            failures.append(f"{node.name}: {len(problems['Traceback'])} Traceback(s) in the server log")
        if problems.get("worker restart") or workers_now != node.workers:
            failures.append(f"{node.name}: worker restarts")
        if problems.get("Redis fallback"):
            failures.append(f"{node.name}: the rate-limit store fell back to memory")
    return failures


# --------------------------------------------------------------------------- main


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--nodes", type=int, choices=(1, 2), default=1, help="servers (2: round-robin over both)")
    ap.add_argument("--duration", type=float, default=60, help="seconds of attack")
    ap.add_argument("--window", type=int, default=20, help="[oauth.rate_limit] window, seconds")
    ap.add_argument("--per-address", type=int, default=50, help="failures_per_address")
    ap.add_argument("--per-client-address", type=int, default=50, help="failures_per_client_address")
    ap.add_argument("--per-client", type=int, default=50, help="failures_per_client")
    ap.add_argument("--store", choices=("redis", "memory"), default="redis",
                    help=f"redis: {REDIS_URL} (emptied before and after); memory: per worker")
    ap.add_argument("--workers", type=int, default=2, help="gunicorn workers per node")
    ap.add_argument("--attacker-threads", type=int, default=6)
    ap.add_argument("--attacker-address", default="127.0.0.2")
    ap.add_argument("--victim-address", default="127.0.0.5")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (configs, databases, logs)")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    import urllib3
    urllib3.disable_warnings()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    log(f"== lock-out: {args.duration:g} s, {args.nodes} node(s) × {args.workers} workers, store {args.store}, "
        f"window {args.window} s, budgets address {args.per_address} / client+address {args.per_client_address} / "
        f"client {args.per_client}; attacker {args.attacker_address} × {args.attacker_threads} threads, "
        f"victim {args.victim_address}; {time.strftime('%Y-%m-%d %H:%M:%S %Z')}, {os.cpu_count()} CPUs, "
        f"load {os.getloadavg()[0]:.1f}")
    work = Path(tempfile.mkdtemp(prefix="pkjwt-lockout-"))
    redis_client = None
    nodes: list[Node] = []
    failures: list[str] = []
    try:
        if args.store == "redis":
            redis_client = redis.Redis.from_url(REDIS_URL)
            redis_client.flushdb()
        victim_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        victim_jwks = jwks_of((victim_key, KID))
        for i in range(args.nodes):
            nodes.append(Node(f"node {i + 1}", work / f"node{i + 1}", args, victim_jwks))
        for node in nodes:
            node.start()
            log(f"   {node.name}: {node.base} (workers {node.workers}), log {node.log_path}")
        # The captured assertion: used once by the victim (a token), then replayed by the attacker.
        # Each node here has its own SQLite database, so its own replay table: the victim uses it
        # on every node, so that it is an already-used assertion wherever it is replayed.
        captured = assertion(victim_key)
        with session_from(args.victim_address) as s:
            for node in nodes:
                r = s.post(node.url, data=token_form(captured), verify=node.ca, timeout=15)
                log(f"   captured assertion used at {node.name}: {r.status_code}"
                    + (" (a separate database: its replay table has not seen this jti)" if node is not nodes[0] else ""))
                if r.status_code != 200:
                    raise RuntimeError(f"the victim's first token request failed at {node.name}: {r.status_code} {r.text}")
        log(f"-- attack for {args.duration:g} s")
        run = Run(args, nodes, victim_key, captured)
        run.go()
        failures = report(run, args, redis_client)
    except Exception as exc:
        import traceback
        traceback.print_exc()
        failures.append(f"could not run: {exc}")
        for node in nodes:
            log(f"   {node.name} log tail:\n{node.log()[-2000:]}")
    finally:
        for node in nodes:
            node.stop()
        if redis_client is not None:
            redis_client.flushdb()
            redis_client.close()
        if args.keep:
            log(f"   kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    log("")
    if failures:
        log("FAIL:")
        for f in failures:
            log(f"  - {f}")
        return 1
    log("PASS: every victim request got a token, the attacker got 429s and no token, the 401s "
        + ("matched the shared budget" if args.store == "redis" else "stayed within workers × nodes × budget")
        + ", nothing wrong in the server logs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
