"""RSASSA-PKCS1-v1_5 verification (RFC 8017 section 8.2) with the standard library only.

Verification is ``pow(s, e, n)`` with a small public exponent and a constant-time
comparison of the encoded message. Key generation and signing live in the emulator
(``oculus_lite.emulator._signing``): the core never holds a private key.
"""

import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Callable, Dict, Tuple

__all__ = ["DIGESTS", "RSAPublicKey", "encoded_message", "verify"]

# alg -> (hash constructor, DER prefix of DigestInfo for that hash)
DIGESTS: Dict[str, Tuple[Callable[..., "hashlib._Hash"], bytes]] = {
    "RS256": (hashlib.sha256, bytes.fromhex("3031300d060960864801650304020105000420")),
    "RS384": (hashlib.sha384, bytes.fromhex("3041300d060960864801650304020205000430")),
    "RS512": (hashlib.sha512, bytes.fromhex("3051300d060960864801650304020305000440")),
}


@dataclass(frozen=True)
class RSAPublicKey:
    n: int = field(repr=False)
    e: int


def encoded_message(alg: str, message: bytes, size: int) -> bytes:
    """EMSA-PKCS1-v1_5 encoding of ``message`` for a key of ``size`` bytes."""
    hash_new, prefix = DIGESTS[alg]
    t = prefix + hash_new(message).digest()
    if size < len(t) + 11:
        raise ValueError("key too small for " + alg)
    return b"\x00\x01" + b"\xff" * (size - len(t) - 3) + b"\x00" + t


def verify(key: RSAPublicKey, alg: str, message: bytes, signature: bytes) -> bool:
    """True when ``signature`` is a valid RSASSA-PKCS1-v1_5 signature of ``message``."""
    size = (key.n.bit_length() + 7) // 8
    if len(signature) != size:
        return False
    s = int.from_bytes(signature, "big")
    if s >= key.n:
        return False
    em = pow(s, key.e, key.n).to_bytes(size, "big")
    return hmac.compare_digest(em, encoded_message(alg, message, size))
