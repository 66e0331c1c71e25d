#!/usr/bin/env python3
"""CPU per token request with no HTTP server in between: our WSGI application and the floor's
(bench/floor.py) are called in this process with pre-built WSGI environs, interleaved, and the
process CPU time per request is printed. Far less noisy than a wrk run on a shared machine
(CPU time, not wall time, and no scheduler between wrk and the server), so it is the tool for
"did this change make the token endpoint cheaper"; `make bench` stays the measurement of what a
client sees.

    .venv/bin/python bench/inprocess.py [--requests 3000] [--rounds 3] [--variant default]
                                        [--profile out.prof]

The setup is `bench/run.py`'s (same deployment.toml, SQLite in a temporary folder, one client
registered by the CLI, RS256 assertions with fresh jti values). Every request must be answered
200 with an access token; anything else stops the run.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(REPO))

import assertions as A  # noqa: E402
import run as R  # noqa: E402

AUD = f"https://127.0.0.1:{R.OUR_PORT}/oauth2/token"


def environ_for(line: str, path: str = "/oauth2/token") -> dict:
    fields = line.split(" ")
    body = (f"grant_type=client_credentials&client_assertion_type={R.ASSERTION_TYPE}"
            f"&client_assertion={fields[1]}").encode()
    env = {
        "REQUEST_METHOD": "POST", "PATH_INFO": path, "SCRIPT_NAME": "", "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1", "SERVER_PORT": str(R.OUR_PORT), "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "50000", "HTTP_HOST": f"127.0.0.1:{R.OUR_PORT}",
        "CONTENT_TYPE": "application/x-www-form-urlencoded", "CONTENT_LENGTH": str(len(body)),
        "HTTP_ACCEPT": "*/*", "HTTP_USER_AGENT": "inprocess", "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body), "wsgi.errors": sys.stderr, "wsgi.multithread": True,
        "wsgi.multiprocess": False, "wsgi.run_once": False, "wsgi.version": (1, 0),
    }
    if len(fields) > 2:
        env["HTTP_DPOP"] = fields[2]
    return env


def answer(app, env: dict, walls: list[float] | None = None) -> None:
    """One request; it must be answered 200 with a token. Its wall time goes to `walls`."""
    status_box: list[str] = []
    t0 = time.perf_counter()
    body = b"".join(app(env, lambda status, headers, exc_info=None: status_box.append(status)))
    if not status_box[0].startswith("200") or b"access_token" not in body:
        raise SystemExit(f"unexpected answer {status_box[0]}: {body[:300]!r}")
    if walls is not None:
        walls.append(time.perf_counter() - t0)


def drive(app, environs: list[dict], threads: int = 1, walls: list[float] | None = None) -> float:
    """CPU seconds of this process for answering every environ, by `threads` threads at once
    (as a gthread worker's threads share one process and its GIL)."""
    t0 = time.process_time()
    if threads == 1:
        for env in environs:
            answer(app, env, walls)
    else:
        with ThreadPoolExecutor(threads) as pool:
            for _ in pool.map(lambda env: answer(app, env), environs):
                pass
    return time.process_time() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=3000, help="requests per round and server")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--variant", default="default", help="as bench/run.py --variants (one)")
    ap.add_argument("--profile", help="write a cProfile of our application's requests here")
    ap.add_argument("--threads", type=int, default=1, help="requests answered at once (default: 1)")
    ap.add_argument("--no-floor", action="store_true")
    args = ap.parse_args()

    variant = R.parse_variant(args.variant)
    work = Path(tempfile.mkdtemp(prefix="pkjwt-inprocess-"))
    run_args = argparse.Namespace(workers=1, reuse="prevent", db="sqlite", jti_rows=0, keep=False)
    keys = A.client_keys(R.CACHE, "rsa", ["bench-client"], 1)
    dpop_key = A.client_keys(R.CACHE, "ec", ["bench-dpop"], 1)["bench-dpop"] if variant.dpop else None
    target = R.make_ours(run_args, 4, variant, keys, dpop_key, None, "0")
    # make_ours works in its own temporary folder; its CLI calls need the repository as cwd.
    os.chdir(REPO)
    target.prepare()
    os.environ["DEPLOYMENT_TOML"] = target.env["DEPLOYMENT_TOML"]

    total = args.requests * (args.rounds + 1)  # one warm-up batch
    afile = work / "assertions.txt"
    A.generate(afile, alg="RS256", aud=AUD, keys=keys, use_kid={"bench-client": True}, count=total, hostile=0.0,
               dpop=dpop_key, htu=AUD)
    lines = afile.read_text().split("\n")[:total]

    import app as app_module
    import floor
    from core import metrics as core_metrics
    from storage.database import Checkpointer

    core_metrics.enable_multiprocess(work / "metrics")  # as app.serve() does before the workers exist

    ours = app_module.create_app(os.environ["DEPLOYMENT_TOML"])
    # As app.serve() runs a worker: start-up's objects frozen, WAL checkpoints on their own thread.
    gc.freeze()
    checkpointer = Checkpointer(ours.extensions["idp"].services.db)
    checkpointer.start()
    floor_app = floor.app
    batches = [[environ_for(x) for x in lines[i:i + args.requests]] for i in range(0, total, args.requests)]
    drive(ours, batches[0])
    if not args.no_floor:
        drive(floor_app, [environ_for(x, "/token") for x in lines[:args.requests]])  # the floor never reads the jti

    ours_us, floor_us, walls = [], [], []
    for r, batch in enumerate(batches[1:], 1):
        if args.profile and r == 1:
            import cProfile
            prof = cProfile.Profile()
            prof.enable()
            cpu = drive(ours, batch, args.threads, walls)
            prof.disable()
            prof.dump_stats(args.profile)
        else:
            cpu = drive(ours, batch, args.threads, walls)
        ours_us.append(cpu / len(batch) * 1e6)
        if not args.no_floor:
            floor_batch = [environ_for(x, "/token") for x in lines[r * args.requests:(r + 1) * args.requests]]
            floor_us.append(drive(floor_app, floor_batch, args.threads) / len(floor_batch) * 1e6)
        floor_txt = f", floor {floor_us[-1]:.0f} µs" if floor_us else ""
        print(f"round {r}: ours {ours_us[-1]:.0f} µs{floor_txt} CPU per request", flush=True)
    summary = {"variant": variant.name, "requests": args.requests, "ours_us": round(statistics.median(ours_us)),
               "floor_us": round(statistics.median(floor_us)) if floor_us else None}
    if walls:  # one thread: where single requests wait (a checkpoint, a full garbage collection)
        walls.sort()
        summary.update(p50_ms=round(walls[len(walls) // 2] * 1e3, 2), p99_ms=round(walls[len(walls) * 99 // 100] * 1e3, 2),
                       p999_ms=round(walls[len(walls) * 999 // 1000] * 1e3, 2), max_ms=round(walls[-1] * 1e3, 2))
    if floor_us:
        summary["application_us"] = summary["ours_us"] - summary["floor_us"]
    print(json.dumps(summary))
    checkpointer.stop()
    target.cleanup()
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
