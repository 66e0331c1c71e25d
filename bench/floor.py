#!/usr/bin/env python3
"""The floor of the stack: a Flask view that parses the form and returns a token-shaped answer,
served by gunicorn. Whatever our token endpoint costs beyond this is application work.

    floor.py --flavour ours    gunicorn with exactly the worker settings app.py serves with
                               (worker class, threads, keep-alive, limits), plain HTTP as the
                               benchmark runs our server (tls = false)
    floor.py --flavour sync    gunicorn's sync worker, as the Authlib peer is served (its floor)
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
from pathlib import Path

from flask import Flask, Response, request

app = Flask(__name__)


@app.post("/token")
def token() -> Response:
    request.form  # parsed, as every token endpoint must
    body = json.dumps({"access_token": secrets.token_urlsafe(32), "token_type": "Bearer", "expires_in": 3600})
    return Response(body, 200, {"Content-Type": "application/json", "Cache-Control": "no-store"})


@app.get("/health")
def health() -> Response:
    return Response('{"status":"UP"}', 200, {"Content-Type": "application/json"})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--flavour", choices=["ours", "sync"], required=True)
    ap.add_argument("--bind", required=True)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=4)
    args = ap.parse_args()

    from gunicorn.app.base import BaseApplication

    if args.flavour == "ours":
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from app import GUNICORN_OPTIONS  # the settings our server runs with, not a copy
        options = {**GUNICORN_OPTIONS, "threads": args.threads}
    else:  # the Authlib peer's gunicorn.conf.py
        options = {"worker_class": "sync", "backlog": 2048, "timeout": 30, "accesslog": None, "errorlog": "-",
                   "loglevel": "warning"}
    options.update(bind=args.bind, workers=args.workers)

    class Floor(BaseApplication):
        def load_config(self):
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self):
            return app

    Floor().run()


if __name__ == "__main__":
    main()
