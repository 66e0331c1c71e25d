"""The fuzz target without atheris: replay the committed corpus, then ~2,000 seeded random mutations
of it, so CI exercises the same invariant (only MalformedJWS / InvalidKey escape the parsers)."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

FUZZ = Path(__file__).resolve().parents[2] / "fuzz"
sys.path.insert(0, str(FUZZ))

import fuzz_jws  # noqa: E402

CORPUS = sorted((FUZZ / "corpus").iterdir())
INTERESTING = [b".", b"=", b"{", b"}", b'"', b"\\", b"[", b"]", b"\x00", b"\xff", b"e30", b"NaN", b"1e400",
               b"-", b"_", b"+", b"/", b" ", b"\xc3", b"\\ud800", b'"alg"', b'"kid"', b'"keys"', b"AAAA"]


def mutate(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        choice = rng.randrange(6)
        i = rng.randrange(len(out) + 1)
        if choice == 0 and out:
            out[min(i, len(out) - 1)] ^= 1 << rng.randrange(8)
        elif choice == 1 and out:
            del out[min(i, len(out) - 1):min(i, len(out) - 1) + rng.randint(1, 8)]
        elif choice == 2:
            out[i:i] = rng.choice(INTERESTING)
        elif choice == 3:
            out[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
        elif choice == 4 and len(out) > 2:
            j = rng.randrange(len(out))
            out[i:i] = out[min(i, j):max(i, j)][:64]
        else:
            out[0:1] = bytes([rng.randrange(256)])
    return bytes(out)


def test_corpus_is_present():
    assert len(CORPUS) >= 12
    assert {p.read_bytes()[0] % 2 for p in CORPUS} == {0, 1}  # both targets are seeded


@pytest.mark.parametrize("path", CORPUS, ids=[p.name for p in CORPUS])
def test_corpus_replays(path):
    fuzz_jws.test_one_input(path.read_bytes())


def test_valid_seed_tokens_parse():
    from keystore.jws import parse_compact_jws
    for name in ("jws-rs256", "jws-es256", "jws-eddsa"):
        token = (FUZZ / "corpus" / name).read_bytes()[1:].decode()
        assert parse_compact_jws(token).header["alg"]


def test_random_mutations():
    rng = random.Random(20240607)
    seeds = [p.read_bytes() for p in CORPUS]
    for _ in range(2000):
        fuzz_jws.test_one_input(mutate(rng.choice(seeds), rng))
