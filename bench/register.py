"""Register many benchmark clients through the server's own CLI commands in one process.

    python bench/register.py DEPLOYMENT_TOML PLAN_JSON

PLAN_JSON is a list of {"client_id", "source": "jwks"|"keystore"|"jwks_uri", "jwks_file",
"cert_file", "jwks_uri"}. Each client is created exactly as
`flask --app app clients create --client-id … --auth-method private_key_jwt …` would
and the keystore clients' certificates (`<client_id>.crt`, all in one folder) are imported with
one `flask --app app keystore import-certs FOLDER`, all in one process, since starting the CLI
a thousand times would take minutes. Run with the repository root as cwd.
"""

from __future__ import annotations

import json
import os
import sys


def main() -> int:
    toml, plan_file = sys.argv[1], sys.argv[2]
    os.environ["DEPLOYMENT_TOML"] = toml
    sys.path.insert(0, os.getcwd())
    from app import create_app

    app = create_app(toml)
    runner = app.test_cli_runner()

    def cli(*args: str) -> None:
        result = runner.invoke(args=list(args))
        if result.exit_code != 0:
            raise SystemExit(f"{' '.join(args[:4])}: exit {result.exit_code}: {result.output.strip()[:300]}")

    cli("db", "upgrade")
    plan = json.load(open(plan_file))
    folders = {os.path.dirname(item["cert_file"]) for item in plan if item["source"] == "keystore"}
    for folder in folders:  # one rewrite of the keystore for all of them
        cli("keystore", "import-certs", folder)
    for item in plan:
        cid = item["client_id"]
        args = ["clients", "create", "--client-id", cid, "--auth-method", "private_key_jwt"]
        if item["source"] == "jwks":
            args += ["--jwks-file", item["jwks_file"]]
        elif item["source"] == "jwks_uri":
            args += ["--jwks-uri", item["jwks_uri"]]
        cli(*args)
    print(f"registered {len(plan)} clients", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
