"""Summarise a py-spy `--format raw` profile (collapsed stacks) of our server's worker.

    python bench/profile_summary.py bench/results/raw/<…>.pyspy.txt

Prints the share of sampled (non-idle) time by area (which part of the stack a sample is in:
the innermost frame that belongs to a known area wins), by self time per function, and by
inclusive time per function of our own code.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")

# (area, test on the file path); the first match from the innermost frame outwards names the sample.
STDLIB_TOP = {"threading", "selectors", "socket", "concurrent", "queue", "uuid", "secrets", "base64", "hmac",
              "hashlib", "re", "time", "datetime", "functools", "contextlib", "urllib", "http", "io", "ssl",
              "random", "os", "typing", "enum", "collections", "copy", "weakref", "email", "string", "abc",
              "encodings", "codecs", "ipaddress", "dataclasses", "math", "traceback", "sqlite3"}


def _top(f: str) -> str:
    # py-spy names files relative to their sys.path entry: "gunicorn/http/message.py", "peewee.py".
    f = f.replace("\\", "/")
    for marker in ("site-packages/", "/lib/python3.11/"):
        if marker in f:
            f = f.split(marker, 1)[1]
    return f.split("/", 1)[0].removesuffix(".py")


AREAS = [
    ("signature verify (python-jose / cryptography)", lambda t: t in ("jose", "cryptography")),
    ("pyOpenSSL / certificates", lambda t: t == "OpenSSL"),
    ("database: peewee + sqlite3/psycopg2", lambda t: t in ("peewee", "playhouse", "sqlite3", "psycopg2")),
    ("logging (audit log)", lambda t: t == "logging"),
    ("json", lambda t: t == "json"),
    ("our keystore/ (JWS/JWK parsing, keys)", lambda t: t == "keystore"),
    ("our storage/", lambda t: t == "storage"),
    ("our handlers/ (chain, private_key_jwt, issuer)", lambda t: t == "handlers"),
    ("our core/ (errors, request, config, failure budgets)", lambda t: t == "core"),
    ("our server/ (forms, endpoints, render)", lambda t: t in ("server", "app")),
    ("flask", lambda t: t == "flask"),
    ("werkzeug", lambda t: t == "werkzeug"),
    ("gunicorn (HTTP parsing, gthread I/O)", lambda t: t == "gunicorn"),
    ("stdlib other", lambda t: t in STDLIB_TOP),
]
OURS = ("keystore", "storage", "handlers", "core", "server", "app")


def parse(path: Path) -> list[tuple[list[tuple[str, str]], int]]:
    stacks = []
    for raw in path.read_text(errors="replace").splitlines():
        raw = raw.strip()
        if not raw or " " not in raw:
            continue
        body, _, n = raw.rpartition(" ")
        if not n.isdigit():
            continue
        frames = []
        for part in body.split(";"):
            m = FRAME.match(part)
            if m:
                frames.append((m["func"], m["file"]))
        if frames:
            stacks.append((frames, int(n)))
    return stacks


def area(frames: list[tuple[str, str]]) -> str:
    # A standard-library leaf (uuid, socket, selectors…) counts for the caller that uses it,
    # except logging and json, which are areas of their own.
    for func, file in reversed(frames):
        for name, test in AREAS[:-1]:
            if test(_top(file)):
                return name
    return "stdlib other (threads, selectors)" if any(AREAS[-1][1](_top(f)) for _, f in frames) else "other"


def short(func: str, file: str) -> str:
    return f"{func} ({file})"


def summarise(path: Path) -> dict:
    stacks = parse(Path(path))
    total = sum(n for _, n in stacks) or 1
    by_area, self_t, incl_ours = Counter(), Counter(), Counter()
    for frames, n in stacks:
        by_area[area(frames)] += n
        self_t[short(*frames[-1])] += n
        seen = set()
        for func, file in frames:
            if _top(file) in OURS:
                key = short(func, file)
                if key not in seen:
                    seen.add(key)
                    incl_ours[key] += n

    def pct(c: Counter, k: int) -> list[tuple[str, float]]:
        return [(name, round(100 * v / total, 1)) for name, v in c.most_common(k)]

    return {"samples": total, "by_area": pct(by_area, 20), "self": pct(self_t, 25),
            "inclusive_ours": pct(incl_ours, 25)}


def render(s: dict) -> str:
    out = [f"profile: {s['samples']} samples of the worker (non-idle)", "", "by area (innermost known frame):"]
    out += [f"  {p:5.1f}%  {name}" for name, p in s["by_area"]]
    out += ["", "self time, top functions:"]
    out += [f"  {p:5.1f}%  {name}" for name, p in s["self"]]
    out += ["", "inclusive time, our code:"]
    out += [f"  {p:5.1f}%  {name}" for name, p in s["inclusive_ours"]]
    return "\n".join(out)


if __name__ == "__main__":
    print(render(summarise(Path(sys.argv[1]))))
