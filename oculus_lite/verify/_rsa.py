"""RSASSA-PKCS1-v1_5 (RFC 8017 section 8.2) with the standard library only.

Verification is the hot part (``pow(s, e, n)`` with a small public exponent);
signing uses the CRT form so the emulator can sign tokens quickly. Key
generation is for the emulator and tests: probable primes by Miller-Rabin over
``secrets`` randomness. Nothing here is constant-time except the final
comparison in ``verify``; signing keys never leave the emulator's process.
"""

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from typing import Callable, Dict, Tuple

__all__ = [
    "DIGESTS",
    "RSAPrivateKey",
    "RSAPublicKey",
    "b64url_decode",
    "b64url_encode",
    "generate_private_key",
    "sign",
    "verify",
]

# alg -> (hash constructor, DER prefix of DigestInfo for that hash)
DIGESTS: Dict[str, Tuple[Callable[..., "hashlib._Hash"], bytes]] = {
    "RS256": (hashlib.sha256, bytes.fromhex("3031300d060960864801650304020105000420")),
    "RS384": (hashlib.sha384, bytes.fromhex("3041300d060960864801650304020205000430")),
    "RS512": (hashlib.sha512, bytes.fromhex("3051300d060960864801650304020305000440")),
}


def b64url_encode(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Strict base64url without padding; raises ValueError on anything else."""
    import base64
    import binascii

    if not isinstance(text, str) or not text.isascii() or "=" in text or len(text) % 4 == 1:
        raise ValueError("not unpadded base64url")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not unpadded base64url") from exc


def _int_to_bytes(value: int, length: int) -> bytes:
    return value.to_bytes(length, "big")


@dataclass(frozen=True)
class RSAPublicKey:
    n: int = field(repr=False)
    e: int

    @property
    def bits(self) -> int:
        return self.n.bit_length()

    def jwk(self, kid: str, alg: str = "RS256") -> Dict[str, str]:
        size = (self.n.bit_length() + 7) // 8
        e_len = max(1, (self.e.bit_length() + 7) // 8)
        return {
            "kty": "RSA",
            "kid": kid,
            "use": "sig",
            "alg": alg,
            "n": b64url_encode(_int_to_bytes(self.n, size)),
            "e": b64url_encode(_int_to_bytes(self.e, e_len)),
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


def _encoded_message(alg: str, message: bytes, size: int) -> bytes:
    hash_new, prefix = DIGESTS[alg]
    t = prefix + hash_new(message).digest()
    if size < len(t) + 11:
        raise ValueError("key too small for " + alg)
    return b"\x00\x01" + b"\xff" * (size - len(t) - 3) + b"\x00" + t


def sign(key: RSAPrivateKey, alg: str, message: bytes) -> bytes:
    size = (key.n.bit_length() + 7) // 8
    m = int.from_bytes(_encoded_message(alg, message, size), "big")
    s1 = pow(m, key.dp, key.p)
    s2 = pow(m, key.dq, key.q)
    h = (key.qinv * (s1 - s2)) % key.p
    return _int_to_bytes(s2 + h * key.q, size)


def verify(key: RSAPublicKey, alg: str, message: bytes, signature: bytes) -> bool:
    """True when ``signature`` is a valid RSASSA-PKCS1-v1_5 signature of ``message``."""
    size = (key.n.bit_length() + 7) // 8
    if len(signature) != size:
        return False
    s = int.from_bytes(signature, "big")
    if s >= key.n:
        return False
    em = _int_to_bytes(pow(s, key.e, key.n), size)
    return hmac.compare_digest(em, _encoded_message(alg, message, size))
