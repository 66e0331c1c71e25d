"""atheris fuzz target for the strict parsers: keystore.jws.parse_compact_jws and keystore.jwk.parse_jwks.

Invariant: whatever the input, only MalformedJWS (from the JWS parser) or InvalidKey (from the JWK
Set parser) may escape; anything else is a crash.  The first input byte picks the target, so one
corpus serves both.

    .venv/bin/python fuzz/fuzz_jws.py fuzz/corpus -max_total_time=60
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from keystore.jwk import InvalidKey, PublicKey, parse_jwks  # noqa: E402
from keystore.jws import CompactJWS, MalformedJWS, parse_compact_jws  # noqa: E402


def check_jws(data: bytes) -> None:
    text = data.decode("utf-8", errors="surrogateescape")
    try:
        parsed = parse_compact_jws(text)
    except MalformedJWS as exc:
        message = str(exc)
        assert message and all(0x20 <= ord(c) <= 0x7E and c not in '"\\' for c in message), message
        return
    assert isinstance(parsed, CompactJWS)
    assert isinstance(parsed.header, dict) and isinstance(parsed.header.get("alg"), str)
    assert isinstance(parsed.payload, dict) and isinstance(parsed.signature, bytes) and parsed.signature
    assert text.startswith(parsed.signing_input.decode("ascii") + ".")


def check_jwks(data: bytes) -> None:
    try:
        keys = parse_jwks(data)
    except InvalidKey:
        return
    assert keys and all(isinstance(k, PublicKey) for k in keys)


def test_one_input(data: bytes) -> None:
    """The fuzz entry point; also called directly by tests/hostile/test_fuzz_smoke.py."""
    if not data:
        return
    selector, rest = data[0], data[1:]
    if selector % 2 == 0:
        check_jws(rest)
    else:
        check_jwks(rest)


def main() -> None:
    import atheris
    atheris.instrument_all()
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
