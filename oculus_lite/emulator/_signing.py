"""RSA key generation and RS256 signing, for the emulator only (the core only verifies).

Probable primes by Miller-Rabin over ``secrets`` randomness, and RSASSA-PKCS1-v1_5
signatures (RFC 8017 section 8.2) in the CRT form so the emulator signs quickly. The
message encoding is the one ``verify._rsa`` checks, so the two halves cannot drift.
Nothing here is constant-time; signing keys never leave the emulator's process.
"""

import base64
import secrets
from dataclasses import dataclass, field
from typing import Dict

from ..verify._rsa import RSAPublicKey, encoded_message

__all__ = ["RSAPrivateKey", "b64url_encode", "generate_private_key", "public_jwk", "sign"]


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def public_jwk(key: RSAPublicKey, kid: str, alg: str = "RS256") -> Dict[str, str]:
    """The JWK (RFC 7517) that publishes ``key`` in a JWKS."""
    size = (key.n.bit_length() + 7) // 8
    e_len = max(1, (key.e.bit_length() + 7) // 8)
    return {
        "kty": "RSA",
        "kid": kid,
        "use": "sig",
        "alg": alg,
        "n": b64url_encode(key.n.to_bytes(size, "big")),
        "e": b64url_encode(key.e.to_bytes(e_len, "big")),
    }


@dataclass(frozen=True)
class RSAPrivateKey:
    """A private key; repr shows only the size."""

    n: int = field(repr=False)
    e: int = field(repr=False)
    d: int = field(repr=False)
    p: int = field(repr=False)
    q: int = field(repr=False)
    dp: int = field(repr=False)
    dq: int = field(repr=False)
    qinv: int = field(repr=False)

    def public_key(self) -> RSAPublicKey:
        return RSAPublicKey(self.n, self.e)

    def __repr__(self) -> str:
        return "RSAPrivateKey(bits={})".format(self.n.bit_length())


_SMALL_PRIMES = [p for p in range(3, 2000) if all(p % d for d in range(2, int(p**0.5) + 1))]


def _probable_prime(n: int, rounds: int = 12) -> bool:
    for p in _SMALL_PRIMES:
        if n % p == 0:
            return n == p
    d, s = n - 1, 0
    while d % 2 == 0:
        d //= 2
        s += 1
    for _ in range(rounds):
        a = secrets.randbelow(n - 3) + 2
        x = pow(a, d, n)
        if x == 1 or x == n - 1:
            continue
        for _ in range(s - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def _random_prime(bits: int, e: int) -> int:
    while True:
        candidate = secrets.randbits(bits) | (0b11 << (bits - 2)) | 1
        if candidate % e != 1 and _probable_prime(candidate):
            return candidate


def generate_private_key(bits: int = 2048, e: int = 65537) -> RSAPrivateKey:
    """A fresh RSA key (about a second for 2048 bits on CPython)."""
    if bits < 1024 or bits % 2:
        raise ValueError("bits must be an even number >= 1024")
    while True:
        p = _random_prime(bits // 2, e)
        q = _random_prime(bits // 2, e)
        if p == q:
            continue
        n = p * q
        if n.bit_length() != bits:
            continue
        phi = (p - 1) * (q - 1)
        d = pow(e, -1, phi)
        if p < q:
            p, q = q, p
        return RSAPrivateKey(n, e, d, p, q, d % (p - 1), d % (q - 1), pow(q, -1, p))


def sign(key: RSAPrivateKey, alg: str, message: bytes) -> bytes:
    """The RSASSA-PKCS1-v1_5 signature of ``message`` with ``alg`` (RS256/RS384/RS512)."""
    size = (key.n.bit_length() + 7) // 8
    m = int.from_bytes(encoded_message(alg, message, size), "big")
    s1 = pow(m, key.dp, key.p)
    s2 = pow(m, key.dq, key.q)
    h = (key.qinv * (s1 - s2)) % key.p
    return (s2 + h * key.q).to_bytes(size, "big")
