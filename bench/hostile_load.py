#!/usr/bin/env python3
"""A bounded load test with bad input: valid token requests and hostile ones, side by side.

Starts our server (`python app.py <toml>` from the repository root, gunicorn, HTTPS with the
primary keystore's key as in the tests), registers the catalogue's clients plus three clients
that only ever send valid requests (inline JWKS RS256, inline JWKS ES256, a certificate in the
primary keystore), then for --duration seconds N client threads send about half valid requests
(a fresh assertion each) and half hostile ones drawn from the rows of tests/hostile/ (malformed
forms, malformed JWS, bad algorithms, forged signatures, wrong audience, expired, replays,
unknown clients, two authentication methods) plus replays of assertions that already got a
token. Each request's expected answer is known when it is built and every answer is checked
with the catalogue's own check (status, `error`, headers, description).

Phase 1 runs with `[oauth.rate_limit]` disabled (one address sends everything). Phase 2 runs a
fresh server with the rate-limit defaults: hostile traffic from 127.0.0.2, valid traffic from
127.0.0.1; hostile requests must get their expected answer or a 429, valid ones a token.

Exit status 0 only when: every valid request got a token, every hostile request got its
expected error, no 5xx, no Traceback in the server log, no worker restarted, no URL from an
assertion header was fetched, phase 2 saw 429s, and the workers' RSS grew by at most 10 %
between the 10 s mark and the end of phase 1. See bench/README.md, "Load with bad input".
"""

from __future__ import annotations

import argparse
import collections
import datetime
import http.server
import random
import re
import shutil
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

sys.dont_write_bytecode = True  # leave no __pycache__ in tests/ behind

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "tests" / "hostile")]

import requests  # noqa: E402
import urllib3  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

import hostile_support as H  # noqa: E402
import support as S  # noqa: E402
import test_algorithms  # noqa: E402
import test_claims_time  # noqa: E402
import test_jws_structure  # noqa: E402
import test_keys_headers  # noqa: E402
import test_replay  # noqa: E402
import test_transport  # noqa: E402

VALID_ADDRESS = "127.0.0.1"
HOSTILE_ADDRESS_PHASE2 = "127.0.0.2"  # loopback too: the per-address limit then hits only the hostile share
RSS_GROWTH_LIMIT = 10.0  # percent, between the RSS mark and the end of phase 1
PROGRESS_EVERY = 5.0
RATE_LIMIT_DEFAULTS = ("failures_per_address 100, failures_per_client_address 30, failures_per_client 30, "
                       "window 60 s (per worker)")

# The catalogue's rows that run against the default (strict) server, by section. The rows for
# the legacy-audience and reuse-allowed servers need other configurations and are left out.
SECTIONS: list[tuple[str, list]] = [
    ("form+transport", test_transport.TRANSPORT),
    ("identity+two-methods+unknown-client", test_transport.IDENTITY),
    ("jws-structure", test_jws_structure.CASES + test_jws_structure.EMPTY),
    ("alg-none", test_algorithms.NONE),
    ("alg-hs-with-public-key", test_algorithms.HMAC),
    ("alg-key-mismatch", test_algorithms.KEY_MISMATCH),
    ("forged-signature", test_algorithms.SIGNATURES),
    ("alg-unsupported", test_algorithms.UNSUPPORTED),
    ("alg-every-accepted", test_algorithms.EVERY_ALGORITHM),
    ("kid", test_keys_headers.KID),
    ("header-keys(jwk/jku/x5u/x5c)", test_keys_headers.HEADER_KEYS),
    ("key-use", test_keys_headers.KEY_USE),
    ("crit+typ", test_keys_headers.CRIT_AND_TYP),
    ("claims-missing", test_claims_time.MISSING),
    ("claims-wrong-types", test_claims_time.WRONG_TYPES),
    ("audience", test_claims_time.AUDIENCE),
    ("time+expiry", test_claims_time.TIME),
    ("replay(catalogue)", test_replay.REPLAY),
]
# Builders in this section send requests themselves (the first use of an assertion must get a
# token); under the rate limits of phase 2 that first use may be refused, so phase 2 skips them.
SELF_SENDING_SECTIONS = {"replay(catalogue)"}

# Valid rows whose assertion has a fixed jti (or one that may repeat within a second): a second
# send is a replay and is refused, so each is sent at most once per phase.
ONE_SHOT_ROWS = {"jti-255-characters", "jti-unicode"}

VALID_CLIENTS = ("load-rs256", "load-es256", "load-cert")


def log(msg: str = "") -> None:
    print(msg, flush=True)


# --------------------------------------------------------------------------- /proc


def worker_pids(master: int) -> list[int]:
    """Children of the gunicorn master (python app.py)."""
    pids: set[int] = set()
    for task in Path(f"/proc/{master}/task").glob("*"):
        try:
            pids.update(int(x) for x in (task / "children").read_text().split())
        except OSError:
            pass
    return sorted(pids)


def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_snapshot(master: int) -> dict[int, int]:
    return {pid: rss_kb(pid) for pid in worker_pids(master)}


def fmt_rss(snap: dict[int, int]) -> str:
    if not snap:
        return "no workers"
    return " ".join(f"{pid}:{kb / 1024:.1f}MB" for pid, kb in sorted(snap.items())) + \
        f" (total {sum(snap.values()) / 1024:.1f} MB)"


# --------------------------------------------------------------------------- set-up


class Canary:
    """An HTTP server on loopback whose URLs go into jku/x5u/kid headers: it must never be contacted."""

    def __init__(self) -> None:
        test_keys_headers.CANARY_HITS.clear()
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), test_keys_headers._Canary)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def hits(self) -> list[str]:
        return list(test_keys_headers.CANARY_HITS)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def write_toml(directory: Path, port: int, workers: int, tls: bool, rate_limits: bool) -> Path:
    """Like tests/support.write_config; without [oauth.rate_limit] the defaults apply."""
    directory.mkdir(parents=True, exist_ok=True)
    limits = "" if rate_limits else ("\n[oauth.rate_limit]\nfailures_per_client = 0\nfailures_per_client_address = 0\n"
                                      "failures_per_address = 0\n")
    text = f"""[server]
hostname = "localhost"
port = {port}
bind_address = "127.0.0.1"
workers = {workers}
threads = 4
tls = {"true" if tls else "false"}

[database.identity_db]
url = "sqlite:///var/identity.db"

[keystore.primary]
file_name = "var/primary.p12"
password = "{S.KEYSTORE_PASSWORD}"
alias = "wso2carbon"
{limits}"""
    path = directory / "deployment.toml"
    path.write_text(text)
    return path


def jwks(key, kid: str | None = "k1", **members) -> str:
    import json
    document = json.loads(S.jwks_of((key, kid)))
    document["keys"][0].update(members)
    return json.dumps(document)


def self_signed(key, name: str) -> bytes:
    now = datetime.datetime.now(datetime.timezone.utc)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass
class ValidClient:
    client_id: str
    key: object
    alg: str
    kid: str | None


def register_all(env: H.Env, keys: H.Keys, valid_keys: dict) -> dict[str, ValidClient]:
    """The catalogue's clients (as tests/hostile/conftest.py registers them) and ours."""
    k = keys
    env.register("rsa-client", jwks(k.rsa))
    env.register("other-client", jwks(k.rsa_other))
    env.register("es256-client", jwks(k.p256))
    env.register("es384-client", jwks(k.p384))
    env.register("es512-client", jwks(k.p521))
    env.register("ed-client", jwks(k.ed))
    env.register("nokid-client", jwks(k.rsa, None))
    env.register("pinned-ps256", jwks(k.rsa), signing_alg="PS256")
    env.register("pinned-eddsa", jwks(k.ed), signing_alg="EdDSA")
    env.register("MixedCase-Client", jwks(k.rsa))
    env.register("enc-client", jwks(k.rsa, use="enc"))
    env.register("keyops-client", jwks(k.rsa, key_ops=["encrypt"]))
    env.register("jwkalg-client", jwks(k.rsa, alg="RS512"))
    env.register("legacy-client", jwks(k.rsa), audience_policy="legacy")
    env.register("no-cc-client", jwks(k.rsa), grant_types=("authorization_code",))
    env.register("secret-client", auth_method="client_secret_basic")
    env.register("post-client", auth_method="client_secret_post")

    env.register("load-rs256", jwks(valid_keys["rsa"], "v1"))
    env.register("load-es256", jwks(valid_keys["p256"], "v2"))
    cert_file = env.directory / "load-cert.crt"
    cert_file.write_bytes(self_signed(valid_keys["cert"], "load-cert"))
    env.server.cli("keystore", "import-cert", "--alias", "load-cert", "--file", str(cert_file))
    env.server.cli("clients", "create", "--client-id", "load-cert", "--auth-method", "private_key_jwt",
                   "--scope", "openid", "--scope", "read")
    return {
        "load-rs256": ValidClient("load-rs256", valid_keys["rsa"], "RS256", "v1"),
        "load-es256": ValidClient("load-es256", valid_keys["p256"], "ES256", "v2"),
        "load-cert": ValidClient("load-cert", valid_keys["cert"], "RS256", None),
    }


# --------------------------------------------------------------------------- the mix


@dataclass
class Outcome:
    category: str
    kind: str            # valid | hostile
    row: str
    expected: str
    actual: str
    ok: bool
    status: int
    detail: str = ""
    rate_limited: bool = False
    at: float = 0.0      # seconds since the load started


@dataclass
class Stats:
    lock: threading.Lock = field(default_factory=threading.Lock)
    per_category: dict = field(default_factory=lambda: collections.defaultdict(collections.Counter))
    mismatches: list = field(default_factory=list)
    fivexx: list = field(default_factory=list)
    statuses: collections.Counter = field(default_factory=collections.Counter)
    t0: float = field(default_factory=time.monotonic)
    sent: int = 0
    valid_sent: int = 0
    valid_ok: int = 0
    hostile_sent: int = 0
    hostile_ok: int = 0
    rate_limited: int = 0
    rate_limited_by_expected: collections.Counter = field(default_factory=collections.Counter)

    def record(self, o: Outcome) -> None:
        o.at = time.monotonic() - self.t0
        with self.lock:
            self.sent += 1
            self.statuses[o.status] += 1
            c = self.per_category[(o.kind, o.category)]
            c["sent"] += 1
            c["ok" if o.ok else "mismatch"] += 1
            if o.rate_limited:
                c["429"] += 1
                self.rate_limited += 1
                self.rate_limited_by_expected[o.expected] += 1
            if o.kind == "valid":
                self.valid_sent += 1
                self.valid_ok += o.ok
            else:
                self.hostile_sent += 1
                self.hostile_ok += o.ok
            if not o.ok:
                self.mismatches.append(o)
            if o.status >= 500:
                self.fivexx.append(o)


def describe(response: requests.Response | None) -> str:
    if response is None:
        return "no response"
    try:
        error = response.json().get("error") if response.content else None
    except ValueError:
        error = "<not JSON>"
    if response.status_code == 200 and error is None:
        try:
            return "200 access_token" if "access_token" in response.json() else "200 without access_token"
        except ValueError:
            return "200 <not JSON>"
    return f"{response.status_code} {error}"


def full(response: requests.Response | None, request: H.Req | None) -> str:
    lines = []
    if request is not None:
        body = request.body or b""
        lines.append(f"request: {request.method} {request.path} headers={dict(request.headers)} "
                     f"body[{len(body)}]={body[:300]!r}{'…' if len(body) > 300 else ''}"
                     f"{' (chunked)' if request.chunked else ''}")
    if response is not None:
        keep = {k: v for k, v in response.headers.items()
                if k.lower() in ("content-type", "cache-control", "www-authenticate", "retry-after", "allow")}
        lines.append(f"response: {response.status_code} headers={keep} body={response.text[:400]!r}")
    return "\n      ".join(lines)


def check_429(response: requests.Response) -> str | None:
    """A rate-limited answer: 429 invalid_client JSON, Retry-After, no-store. None when it is one."""
    if response.status_code != 429:
        return "not 429"
    try:
        body = response.json()
    except ValueError:
        return "429 body is not JSON"
    if body.get("error") != "invalid_client" or "access_token" in body:
        return f"429 with error {body.get('error')!r}"
    if not response.headers.get("Retry-After", "").isdigit():
        return "429 without a numeric Retry-After"
    if response.headers.get("Cache-Control") != "no-store":
        return "429 without Cache-Control: no-store"
    return None


class Load:
    """One phase: a server, its clients and the mix, sent by N threads for a fixed time."""

    def __init__(self, name: str, tag: str, args, keys: H.Keys, valid_keys: dict, rate_limits: bool,
                 duration: float, rng_seed: int) -> None:
        self.name = name
        self.args = args
        self.keys = keys
        self.valid_keys = valid_keys
        self.rate_limits = rate_limits
        self.duration = duration
        self.seed = rng_seed
        self.hostile_address = HOSTILE_ADDRESS_PHASE2 if rate_limits else VALID_ADDRESS
        self.work = Path(tempfile.mkdtemp(prefix=f"pkjwt-hostile-{tag}-"))
        self.stats = Stats()
        self.replay_pool: collections.deque = collections.deque(maxlen=500)
        self.replay_lock = threading.Lock()
        self.stop = threading.Event()
        self.secrets: dict = {}
        self.one_shot_sent: set[str] = set()
        self.rss: dict[str, dict[int, int]] = {}
        self.rss_mark_s = 10.0 if duration >= 20 else duration / 2
        self.server: S.Server | None = None
        self.canary: Canary | None = None
        self.log_problems: dict[str, list[str]] = {}
        # The rows of this phase.
        self.hostile_rows: list[tuple[str, H.Case]] = []
        self.ok_rows: list[tuple[str, H.Case]] = []
        for section, cases in SECTIONS:
            if rate_limits and section in SELF_SENDING_SECTIONS:
                continue
            for case in cases:
                (self.ok_rows if case.error is None else self.hostile_rows).append((section, case))

    # ---- server

    def start(self) -> None:
        port = S.free_port()
        toml = write_toml(self.work, port, self.args.workers, self.args.tls, self.rate_limits)
        self.server = S.Server(toml, port)
        if not self.args.tls:
            self.server.base = f"http://localhost:{port}"
        self.server.start(timeout=60)
        self.canary = Canary()
        env = H.Env(self.server, self.keys, session=S.session_from(VALID_ADDRESS), secrets=self.secrets)
        self.valid_clients = register_all(env, self.keys, self.valid_keys)
        env.session.close()
        # Each worker re-reads the keystore at most every two seconds (README): wait that long after the
        # certificate import, then until every valid client gets five tokens in a row on new connections.
        time.sleep(2.5)
        deadline = time.time() + 20
        for client in self.valid_clients.values():
            streak = 0
            while streak < 5:
                with S.session_from(VALID_ADDRESS) as s:
                    response, _ = self.send_valid(client, s)
                if response is not None and response.status_code == 200:
                    streak += 1
                    continue
                streak = 0
                if time.time() > deadline:
                    raise RuntimeError(f"{client.client_id} gets no token: {describe(response)} "
                                       f"{response.text[:300] if response is not None else ''}")
                time.sleep(0.3)

    def close(self) -> None:
        if self.canary:
            self.canary.close()
        if self.server:
            self.server.stop()
        if not self.args.keep:
            shutil.rmtree(self.work, ignore_errors=True)

    # ---- one request of each kind

    def send_valid(self, client: ValidClient, session: requests.Session, variant: int = 0):
        claims = S.claims_for(client.client_id, self.server.base + "/oauth2/token")
        header = {"typ": "JWT", **({"kid": client.kid} if client.kid else {})}
        # Signed with `cryptography` directly (python-jose re-parses the PEM key on every call: ~60 ms for RSA).
        assertion = H.compact(client.key, client.alg, header, claims)
        extra = {}
        if variant == 1:
            extra["scope"] = "openid"
        elif variant == 2:
            extra["client_id"] = client.client_id
        request = H.post(S.token_form(assertion, **extra))
        try:
            return request.send(self.server, session), request
        except requests.RequestException:
            return None, request

    def valid(self, rng: random.Random, session: requests.Session) -> Outcome:
        client = self.valid_clients[rng.choice(VALID_CLIENTS)]
        response, request = self.send_valid(client, session, rng.randrange(3))
        outcome = self.judge(f"valid:{client.client_id}", "valid", client.client_id, H.ok("valid", None),
                             request, response, None)
        if outcome.ok and not self.rate_limits:
            with self.replay_lock:
                self.replay_pool.append(request)
        return outcome

    def replay(self, rng: random.Random, session: requests.Session) -> Outcome | None:
        with self.replay_lock:
            if not self.replay_pool:
                return None
            request = self.replay_pool[rng.randrange(len(self.replay_pool))]
        case = H.bad_client("replay-of-used-valid-assertion", None)
        try:
            response = request.send(self.server, session)
        except requests.RequestException as exc:
            return self.judge("replay-of-valid", "hostile", case.id, case, request, None, repr(exc))
        return self.judge("replay-of-valid", "hostile", case.id, case, request, response, None)

    def catalogue(self, section: str, case: H.Case, env: H.Env, session: requests.Session, kind: str) -> Outcome:
        category = section if kind == "hostile" else f"valid:catalogue:{section}"
        try:
            request = case.build(env)
        except Exception as exc:  # a builder that sends its own first use, which must get a token
            detail = "the row's builder failed: " + "".join(traceback.format_exception_only(exc)).strip()[:600]
            return Outcome(category, "valid", case.id, "builder's own requests succeed", "builder failed",
                           False, 0, detail)
        try:
            response = request.send(self.server, session)
        except requests.RequestException as exc:
            return self.judge(category, kind, case.id, case, request, None, repr(exc))
        return self.judge(category, kind, case.id, case, request, response, None)

    def judge(self, category: str, kind: str, row: str, case: H.Case, request: H.Req | None,
              response: requests.Response | None, error: str | None) -> Outcome:
        expected = "200 access_token" if case.error is None else f"{case.status} {case.error}"
        if response is None:
            return Outcome(category, kind, row, expected, "no response", False, 0, error or "")
        actual = describe(response)
        try:
            H.check_response(response, case, request)
            return Outcome(category, kind, row, expected, actual, True, response.status_code)
        except AssertionError as exc:
            detail = f"check: {str(exc)[:400]}"
        except Exception as exc:  # e.g. a body that is not JSON
            detail = f"check: {exc!r}"[:400]
        if self.rate_limits and kind == "hostile" and check_429(response) is None:
            return Outcome(category, kind, row, expected, actual, True, 429, rate_limited=True)
        return Outcome(category, kind, row, expected, actual, False, response.status_code,
                       detail + "\n      " + full(response, request))

    # ---- the run

    def client_thread(self, index: int) -> None:
        rng = random.Random(self.seed * 1000 + index)
        valid_session = S.session_from(VALID_ADDRESS)
        hostile_session = S.session_from(self.hostile_address)
        env = H.Env(self.server, self.keys, session=hostile_session, secrets=self.secrets)
        env.canary = self.canary.url
        try:
            while not self.stop.is_set():
                r = rng.random()
                if r < 0.5:
                    if not self.rate_limits and r < 0.1 and (row := self.pick_ok_row(rng)):
                        section, case = row
                        outcome = self.catalogue(section, case, env, hostile_session, "valid")
                    else:
                        outcome = self.valid(rng, valid_session)
                else:
                    outcome = None
                    if not self.rate_limits and r < 0.575:
                        outcome = self.replay(rng, hostile_session)
                    if outcome is None:
                        section, case = rng.choice(self.hostile_rows)
                        outcome = self.catalogue(section, case, env, hostile_session, "hostile")
                self.stats.record(outcome)
        finally:
            valid_session.close()
            hostile_session.close()

    def pick_ok_row(self, rng: random.Random) -> tuple[str, H.Case] | None:
        section, case = rng.choice(self.ok_rows)
        if case.id in ONE_SHOT_ROWS:
            with self.replay_lock:
                if case.id in self.one_shot_sent:
                    return None
                self.one_shot_sent.add(case.id)
        return section, case

    def run(self) -> None:
        master = self.server.proc.pid
        self.workers_at_start = worker_pids(master)
        self.rss["start"] = rss_snapshot(master)
        log(f"   workers {self.workers_at_start}; RSS at start: {fmt_rss(self.rss['start'])}")
        threads = [threading.Thread(target=self.client_thread, args=(i,), daemon=True)
                   for i in range(self.args.threads)]
        t0 = self.stats.t0 = time.monotonic()
        for t in threads:
            t.start()
        next_progress = PROGRESS_EVERY
        marked = False
        while True:
            elapsed = time.monotonic() - t0
            if elapsed >= self.duration:
                break
            if not marked and elapsed >= self.rss_mark_s:
                self.rss["mark"] = rss_snapshot(master)
                marked = True
            if elapsed >= next_progress:
                self.progress(elapsed, master)
                next_progress += PROGRESS_EVERY
            time.sleep(0.1)
        self.stop.set()
        for t in threads:
            t.join(60)
        self.elapsed = time.monotonic() - t0
        if not marked:
            self.rss["mark"] = rss_snapshot(master)
        self.rss["end"] = rss_snapshot(master)
        self.workers_at_end = worker_pids(master)
        self.progress(self.elapsed, master, final=True)
        self.canary_hits = self.canary.hits

    def progress(self, elapsed: float, master: int, final: bool = False) -> None:
        s = self.stats
        with s.lock:
            line = (f"   [{self.name}] {elapsed:5.1f}/{self.duration:.0f} s  sent {s.sent} ({s.sent / max(elapsed, 1e-9):.0f}/s)  "
                    f"valid {s.valid_ok}/{s.valid_sent} ok  hostile {s.hostile_ok}/{s.hostile_sent} as expected  "
                    f"mismatches {len(s.mismatches)}  5xx {len(s.fivexx)}"
                    + (f"  429 {s.rate_limited}" if self.rate_limits else ""))
        log(line + f"  RSS {fmt_rss(rss_snapshot(master))}" + ("  (done)" if final else ""))

    def scan_log(self) -> None:
        text = self.server.log() if self.server else ""
        lines = text.splitlines()
        problems: dict[str, list[str]] = collections.defaultdict(list)
        i = 0
        while i < len(lines):
            line = lines[i]
            if "Traceback" in line:
                block = [line]
                j = i + 1
                while j < len(lines) and lines[j].startswith((" ", "\t")):
                    block.append(lines[j])
                    j += 1
                if j < len(lines):
                    block.append(lines[j])  # the exception line
                problems["Traceback"].append("\n".join(block))
                i = j + 1
                continue
            if "WORKER TIMEOUT" in line or re.search(r"Worker \(pid:\d+\) (was sent|exited)", line) \
                    or "Booting worker" in line and self.workers_seen(line):
                problems["worker restart"].append(line)
            elif re.search(r"\[(ERROR|CRITICAL)\]| ERROR | CRITICAL ", line):
                problems["error lines"].append(line)
            i += 1
        self.log_problems = dict(problems)

    def workers_seen(self, line: str) -> bool:
        """A 'Booting worker' line for a pid that was not a worker at the start: a replacement."""
        m = re.search(r"Booting worker with pid: (\d+)", line)
        return bool(m) and int(m.group(1)) not in self.workers_at_start

    # ---- the verdict

    def report(self) -> list[str]:
        """Print this phase's results; returns the reasons it failed."""
        s = self.stats
        failures: list[str] = []
        log(f"\n== {self.name}: {self.elapsed:.1f} s, {self.args.threads} client threads, {self.args.workers} workers, "
            f"rate limits {'ON (defaults: ' + RATE_LIMIT_DEFAULTS + ')' if self.rate_limits else 'disabled'}; "
            f"hostile traffic from {self.hostile_address}, valid from {VALID_ADDRESS}")
        log(f"   {s.sent} requests ({s.sent / self.elapsed:.0f}/s): valid {s.valid_sent} "
            f"({s.valid_ok} got a token), hostile {s.hostile_sent} ({s.hostile_ok} got the expected answer"
            + (f", of which {s.rate_limited} a 429" if self.rate_limits else "") + ")")
        log(f"   statuses: {dict(sorted(s.statuses.items()))}")
        log(f"   {'category':56} {'sent':>7} {'ok':>7} {'mismatch':>8}" + (f" {'429':>6}" if self.rate_limits else ""))
        for (kind, category), c in sorted(s.per_category.items()):
            log(f"   {kind[0]}:{category:54} {c['sent']:7} {c['ok']:7} {c['mismatch']:8}"
                + (f" {c['429']:6}" if self.rate_limits else ""))
        rows_sent = {o for (k, o) in s.per_category}
        log(f"   catalogue rows in the mix: {len(self.hostile_rows)} hostile, "
            f"{0 if self.rate_limits else len(self.ok_rows)} valid; categories sent: {len(rows_sent)}")
        if self.rate_limits:
            log(f"   429s by the row's expected answer: {dict(s.rate_limited_by_expected.most_common())}")
            if s.rate_limited == 0:
                failures.append(f"{self.name}: no 429 although one address sent {s.hostile_sent} hostile requests")
        # mismatches
        if s.mismatches:
            grouped = collections.Counter((o.kind, o.category, o.row, o.expected, o.actual) for o in s.mismatches)
            log(f"   MISMATCHES: {len(s.mismatches)} ({len(grouped)} distinct), between "
                f"{s.mismatches[0].at:.2f} s and {s.mismatches[-1].at:.2f} s:")
            for (kind, category, row, expected, actual), n in grouped.most_common():
                log(f"     {n:5} x {kind} {category} / {row}: expected {expected}, got {actual}")
            log("   the first 10 in full:")
            for o in s.mismatches[:10]:
                log(f"   - at {o.at:.2f} s: {o.kind} {o.category} / {o.row}: expected {o.expected}, got {o.actual}"
                    f"\n      {o.detail}")
            bad_valid = sum(1 for o in s.mismatches if o.kind == "valid")
            bad_hostile = len(s.mismatches) - bad_valid
            if bad_valid:
                failures.append(f"{self.name}: {bad_valid} valid request(s) did not get a token")
            if bad_hostile:
                failures.append(f"{self.name}: {bad_hostile} hostile request(s) did not get the expected answer")
        else:
            log("   mismatches: none")
        if s.fivexx:
            log(f"   5xx: {len(s.fivexx)}: {collections.Counter((o.row, o.actual) for o in s.fivexx).most_common(10)}")
            failures.append(f"{self.name}: {len(s.fivexx)} 5xx answer(s)")
        else:
            log("   5xx: none")
        # memory
        start, mark, end = (sum(self.rss[k].values()) for k in ("start", "mark", "end"))
        log(f"   worker RSS start: {fmt_rss(self.rss['start'])}")
        log(f"   worker RSS at {self.rss_mark_s:.0f} s: {fmt_rss(self.rss['mark'])}")
        log(f"   worker RSS end:   {fmt_rss(self.rss['end'])}")
        change_start = 100.0 * (end - start) / start if start else 0.0
        change_mark = 100.0 * (end - mark) / mark if mark else 0.0
        per_worker = {pid: 100.0 * (self.rss["end"].get(pid, 0) - kb) / kb
                      for pid, kb in self.rss["mark"].items() if kb and pid in self.rss["end"]}
        worst = max(per_worker.values(), default=0.0)
        log(f"   RSS change: start→end {change_start:+.1f} %, {self.rss_mark_s:.0f} s→end {change_mark:+.1f} % "
            f"(worst worker {worst:+.1f} %)")
        if self.workers_at_end != self.workers_at_start:
            failures.append(f"{self.name}: workers changed during the run: {self.workers_at_start} -> {self.workers_at_end}")
        if not self.rate_limits:
            if self.duration < 20:
                log(f"   (run shorter than 20 s: the growth check uses the {self.rss_mark_s:.0f} s mark)")
            if max(change_mark, worst) > RSS_GROWTH_LIMIT:
                failures.append(f"{self.name}: worker RSS grew {max(change_mark, worst):.1f} % between "
                                f"{self.rss_mark_s:.0f} s and the end (limit {RSS_GROWTH_LIMIT:.0f} %)")
        # server log
        self.scan_log()
        tracebacks = self.log_problems.get("Traceback", [])
        log(f"   server log ({self.server.log_path}): Traceback {'found ' + str(len(tracebacks)) + ' time(s)' if tracebacks else 'not found'}")
        for block in tracebacks[:5]:
            log("     " + block.replace("\n", "\n     "))
        if tracebacks:
            failures.append(f"{self.name}: {len(tracebacks)} Traceback(s) in the server log")
        for kind in ("worker restart", "error lines"):
            lines = self.log_problems.get(kind, [])
            if lines:
                log(f"   server log, {kind}: {len(lines)}")
                for line in lines[:10]:
                    log(f"     {line[:300]}")
        if self.log_problems.get("worker restart"):
            failures.append(f"{self.name}: worker restarts/timeouts in the server log")
        if self.canary_hits:
            log(f"   URLs from assertion headers were fetched: {self.canary_hits[:10]}")
            failures.append(f"{self.name}: the server fetched {len(self.canary_hits)} URL(s) named in assertion headers")
        return failures


# --------------------------------------------------------------------------- main


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--duration", type=float, default=30, help="seconds of load in phase 1 (rate limits off)")
    ap.add_argument("--threads", type=int, default=8, help="concurrent client threads")
    ap.add_argument("--workers", type=int, default=2, help="gunicorn workers of the server")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directories (config, database, log)")
    ap.add_argument("--rate-limit-phase", action=argparse.BooleanOptionalAction, default=True,
                    help="phase 2: a fresh server with the rate-limit defaults")
    ap.add_argument("--rate-limit-duration", type=float, default=15, help="seconds of load in phase 2")
    ap.add_argument("--tls", action=argparse.BooleanOptionalAction, default=True,
                    help="HTTPS as in the tests (--no-tls: [server] tls = false)")
    ap.add_argument("--seed", type=int, default=None, help="random seed of the mix (when not given: the clock)")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    seed = args.seed if args.seed is not None else int(time.time())
    urllib3.disable_warnings()
    log(f"== hostile load: {args.duration:g} s, {args.threads} client threads, {args.workers} workers, "
        f"{'HTTPS' if args.tls else 'HTTP (tls = false)'}, seed {seed}")
    keys = H.Keys()
    valid_keys = {"rsa": S.rsa_key(), "p256": S.ec_key(), "cert": S.rsa_key()}
    phases = [("phase 1 (rate limits off)", "phase1", False, args.duration)]
    if args.rate_limit_phase:
        phases.append(("phase 2 (rate limits on)", "phase2", True, args.rate_limit_duration))
    failures: list[str] = []
    for i, (name, tag, rate_limits, duration) in enumerate(phases):
        load = Load(name, tag, args, keys, valid_keys, rate_limits, duration, seed + i)
        try:
            log(f"-- {name}: starting the server in {load.work}")
            load.start()
            log(f"   {len(load.hostile_rows)} hostile catalogue rows"
                + ("" if rate_limits else f" + replays of used valid assertions, {len(load.ok_rows)} valid catalogue rows")
                + f", {len(VALID_CLIENTS)} valid clients ({', '.join(VALID_CLIENTS)}); load for {duration:g} s")
            load.run()
            failures += load.report()
        except Exception as exc:
            log(f"   {name} FAILED to run: {exc!r}")
            traceback.print_exc()
            if load.server:
                log("   server log tail:\n" + load.server.log()[-3000:])
            failures.append(f"{name}: could not run ({exc})")
        finally:
            load.close()
            if args.keep:
                log(f"   kept {load.work}")
    log("")
    if failures:
        log("FAIL:")
        for f in failures:
            log(f"  - {f}")
        return 1
    log("PASS: every valid request got a token, every hostile request its expected answer"
        + (" (or a 429 in phase 2)" if args.rate_limit_phase else "")
        + ", no 5xx, no Traceback, RSS stable")
    return 0


if __name__ == "__main__":
    sys.exit(main())
