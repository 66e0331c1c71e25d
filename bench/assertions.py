"""Client keys and pre-signed client assertions (RFC 7523) for the token-endpoint benchmark.

A benchmark request must carry an assertion that was never sent before, so every line of an
assertions file is one compact JWS with its own jti, prefixed by a one-letter kind:

    g <jws>   good: must be answered 200 with an access_token
    s <jws>   signature altered: must be rejected
    r <jws>   replay of an earlier good line of the same file: must be rejected
    e <jws>   expired (exp in the past): must be rejected

With a DPoP key (RFC 9449) every line gets a third field, `<kind> <jws> <proof>`: a fresh proof
(typ dpop+jwt, ES256, the key's public JWK in the header; jti, htm POST, htu, iat = signing time)
that token.lua sends as the `DPoP` header. A replay line carries its own fresh proof, so its
rejection is the assertion's.

Signing runs in a process pool with `cryptography` directly. Keys are cached on disk and
reused, so a client registered once keeps matching the assertions generated later.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import multiprocessing as mp
import os
import random
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

FAMILY = {"RS256": "rsa", "PS256": "rsa", "ES256": "ec"}
REPLAY_DISTANCE = 500  # a replay repeats the good line this many lines earlier (>> connections)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _uint(n: int, size: int | None = None) -> str:
    return b64url(n.to_bytes(size or (n.bit_length() + 7) // 8, "big"))


# --------------------------------------------------------------------------- keys


def public_jwk(private_key) -> dict:
    pub = private_key.public_key()
    nums = pub.public_numbers()
    if isinstance(pub, rsa.RSAPublicKey):
        members = {"e": _uint(nums.e), "kty": "RSA", "n": _uint(nums.n)}
    else:
        members = {"crv": "P-256", "kty": "EC", "x": _uint(nums.x, 32), "y": _uint(nums.y, 32)}
    thumbprint = b64url(hashlib.sha256(json.dumps(members, separators=(",", ":"), sort_keys=True).encode()).digest())
    return {**members, "kid": thumbprint, "use": "sig"}


def _new_key(family: str):
    if family == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def _certificate(private_key, common_name: str) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(private_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=365))
            .sign(private_key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass
class ClientKey:
    client_id: str
    private_pem: bytes
    jwk: dict
    cert_pem: bytes


def _make_client_key(args: tuple[str, str, str]) -> str:
    key_dir, family, client_id = args
    path = Path(key_dir) / f"{client_id}.json"
    if not path.exists():
        key = _new_key(family)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        doc = {"client_id": client_id, "private_pem": pem.decode(), "jwk": public_jwk(key),
               "cert_pem": _certificate(key, client_id).decode()}
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc))
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    return client_id


def client_keys(cache_dir: Path, family: str, client_ids: list[str], procs: int) -> dict[str, ClientKey]:
    """One key pair (and self-signed certificate) per client id, created once and cached."""
    key_dir = cache_dir / "keys" / family
    key_dir.mkdir(parents=True, exist_ok=True)
    missing = [c for c in client_ids if not (key_dir / f"{c}.json").exists()]
    if missing:
        jobs = [(str(key_dir), family, c) for c in missing]
        if len(jobs) > 4:
            with mp.Pool(procs) as pool:
                pool.map(_make_client_key, jobs, chunksize=8)
        else:
            for job in jobs:
                _make_client_key(job)
    out = {}
    for c in client_ids:
        doc = json.loads((key_dir / f"{c}.json").read_text())
        out[c] = ClientKey(c, doc["private_pem"].encode(), doc["jwk"], doc["cert_pem"].encode())
    return out


# --------------------------------------------------------------------------- signing

_STATE: dict = {}


def dpop_header(jwk: dict) -> str:
    """The encoded protected header of every proof made with the P-256 key `jwk` (RFC 9449 §4.2)."""
    public = {k: jwk[k] for k in ("crv", "kty", "x", "y")}
    return b64url(json.dumps({"typ": "dpop+jwt", "alg": "ES256", "jwk": public}, separators=(",", ":")).encode())


def dpop_proof(key, header: str, htu: str, iat: int | None = None) -> str:
    """One fresh proof for POST `htu`; `key` a cryptography EC private key, `header` from dpop_header."""
    claims = {"jti": str(uuid.uuid4()), "htm": "POST", "htu": htu, "iat": int(time.time()) if iat is None else iat}
    signing_input = header + "." + b64url(json.dumps(claims, separators=(",", ":")).encode())
    return signing_input + "." + b64url(_signature(key, "ES256", signing_input.encode("ascii")))


def fresh_proof(dpop: "ClientKey", htu: str) -> str:
    """A proof made now, in this process (the sanity and replay requests of run.py)."""
    key = serialization.load_pem_private_key(dpop.private_pem, password=None)
    return dpop_proof(key, dpop_header(dpop.jwk), htu)


def _init_signer(alg: str, keys: dict[str, bytes], kids: dict[str, str | None], aud: str,
                 dpop: tuple[bytes, dict, str] | None = None) -> None:
    _STATE["alg"] = alg
    _STATE["aud"] = aud
    _STATE["dpop"] = None
    if dpop:
        pem, jwk, htu = dpop
        _STATE["dpop"] = (serialization.load_pem_private_key(pem, password=None), dpop_header(jwk), htu)
    _STATE["keys"] = {c: serialization.load_pem_private_key(pem, password=None) for c, pem in keys.items()}
    _STATE["headers"] = {
        c: b64url(json.dumps({"alg": alg, "typ": "JWT", **({"kid": kid} if kid else {})},
                             separators=(",", ":")).encode())
        for c, kid in kids.items()}


def _signature(key, alg: str, data: bytes) -> bytes:
    if alg == "RS256":
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    if alg == "PS256":
        return key.sign(data, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256())
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _sign_batch(batch: list[tuple[str, str, int, int]]) -> list[str]:
    """batch items: (kind, client_id, iat, exp) -> '<kind> <jws>' lines, '<kind> <jws> <proof>'
    with a DPoP key; a replay item gets '-' for its jws (filled in by generate) and its own proof."""
    alg, aud, dpop = _STATE["alg"], _STATE["aud"], _STATE["dpop"]
    proof = (lambda: " " + dpop_proof(dpop[0], dpop[1], dpop[2])) if dpop else (lambda: "")
    out = []
    for kind, client_id, iat, exp in batch:
        if kind == "r":
            out.append(f"r -{proof()}")
            continue
        claims = {"iss": client_id, "sub": client_id, "aud": aud, "jti": str(uuid.uuid4()), "iat": iat, "exp": exp}
        signing_input = _STATE["headers"][client_id] + "." + b64url(json.dumps(claims, separators=(",", ":")).encode())
        sig = b64url(_signature(_STATE["keys"][client_id], alg, signing_input.encode("ascii")))
        if kind == "s":
            # Change one character in the middle: still canonical base64url, wrong signature.
            i = len(sig) // 2
            sig = sig[:i] + ("A" if sig[i] != "A" else "B") + sig[i + 1:]
        out.append(f"{kind} {signing_input}.{sig}{proof()}")
    return out


def plan_kinds(count: int, hostile: float, seed: int = 7) -> list[str]:
    """The kind of every line: all good, or a `hostile` share split evenly between bad
    signatures, replays and expired assertions. Replays only where an earlier good line exists."""
    rng = random.Random(seed)
    kinds = []
    for i in range(count):
        k = "g"
        if hostile and rng.random() < hostile:
            k = rng.choice("sre" if i > REPLAY_DISTANCE + 50 else "se")
        kinds.append(k)
    return kinds


def generate(path: Path, *, alg: str, aud: str, keys: dict[str, ClientKey], use_kid: dict[str, bool],
             count: int, hostile: float, ttl: int = 3600, procs: int | None = None,
             dpop: ClientKey | None = None, htu: str = "") -> dict:
    """Write `count` lines to `path` (+ `path`.meta.json) and return the metadata. With `dpop`
    (a P-256 key), every line carries a proof for POST `htu` as its third field."""
    procs = procs or os.cpu_count() or 1
    client_ids = list(keys)
    now = int(time.time())
    kinds = plan_kinds(count, hostile)
    items = []
    for i, kind in enumerate(kinds):
        client_id = client_ids[i % len(client_ids)]
        if kind == "e":
            items.append(("e", client_id, now - 7200, now - 600))
        elif kind == "r":
            items.append(("r", client_id, 0, 0))  # filled from the good line REPLAY_DISTANCE back
        else:
            items.append((kind, client_id, now, now + ttl))
    to_sign = items if dpop else [it for it in items if it[0] != "r"]
    batches = [to_sign[i:i + 1000] for i in range(0, len(to_sign), 1000)]
    t0 = time.time()
    signed: list[str] = []
    init = (alg, {c: k.private_pem for c, k in keys.items()},
            {c: (k.jwk["kid"] if use_kid[c] else None) for c, k in keys.items()}, aud,
            (dpop.private_pem, dpop.jwk, htu) if dpop else None)
    with mp.Pool(procs, initializer=_init_signer, initargs=init) as pool:
        for lines in pool.imap(_sign_batch, batches):
            signed.extend(lines)
    lines: list[str] = []
    it = iter(signed)
    for i, item in enumerate(items):
        if item[0] == "r":
            j = i - REPLAY_DISTANCE
            while not lines[j].startswith("g "):
                j -= 1
            jws = lines[j].split(" ")[1]
            lines.append(f"r {jws} {next(it).split(' ')[2]}" if dpop else f"r {jws}")
        else:
            lines.append(next(it))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, path)
    meta = {"alg": alg, "aud": aud, "count": count, "clients": len(client_ids), "hostile": hostile,
            "replay_distance": REPLAY_DISTANCE, "dpop_jkt": dpop.jwk["kid"] if dpop else None, "htu": htu,
            "iat": now, "exp": now + ttl, "kinds": {k: kinds.count(k) for k in "gsre"},
            "seconds": round(time.time() - t0, 1), "key_ids": hashlib.sha256(
                "".join(k.jwk["kid"] for k in keys.values()).encode()).hexdigest()[:16]}
    Path(str(path) + ".meta.json").write_text(json.dumps(meta, indent=2))
    return meta


def usable(path: Path, *, alg: str, aud: str, keys: dict[str, ClientKey], count: int, hostile: float,
           margin: int, dpop: ClientKey | None = None, htu: str = "") -> bool:
    """Whether an existing file fits this run (same keys, audience, mix; enough lines; not expiring)."""
    meta_path = Path(str(path) + ".meta.json")
    if not path.exists() or not meta_path.exists():
        return False
    try:
        meta = json.loads(meta_path.read_text())
    except ValueError:
        return False
    key_ids = hashlib.sha256("".join(k.jwk["kid"] for k in keys.values()).encode()).hexdigest()[:16]
    return (meta.get("alg") == alg and meta.get("aud") == aud and meta.get("count", 0) >= count
            and meta.get("hostile") == hostile and meta.get("clients") == len(keys)
            and meta.get("replay_distance") == REPLAY_DISTANCE
            and meta.get("dpop_jkt") == (dpop.jwk["kid"] if dpop else None) and meta.get("htu", "") == htu
            and meta.get("key_ids") == key_ids and meta.get("exp", 0) > time.time() + margin)
