"""Signing keys of the emulator: one RSA key per process, shared by every emulator.

Pure-Python key generation costs about a second, and test suites start many
emulators, so the first key is generated once per process and reused until an
emulator rotates its own keys. Keys live in memory only; nothing is written
to disk. Retired public keys stay in the JWKS for a grace period (measured on the
emulator's clock) so tokens they signed still verify.
"""

import hashlib
import json
import threading
from typing import Any, Dict, List, Optional, Tuple

from .._engine import Clock
from ..verify._rsa import RSAPublicKey
from ._signing import RSAPrivateKey, b64url_encode, generate_private_key, public_jwk, sign

__all__ = ["KeyRing", "shared_key", "thumbprint"]

_shared_lock = threading.Lock()
_shared: Optional[Tuple[RSAPrivateKey, str]] = None


def thumbprint(key: RSAPublicKey) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url), used as the ``kid``."""
    jwk = public_jwk(key, "x")
    canonical = json.dumps(
        {"e": jwk["e"], "kty": "RSA", "n": jwk["n"]}, separators=(",", ":"), sort_keys=True
    )
    return b64url_encode(hashlib.sha256(canonical.encode("ascii")).digest())


def _new_key() -> Tuple[RSAPrivateKey, str]:
    key = generate_private_key(2048)
    return key, thumbprint(key.public_key())


def shared_key() -> Tuple[RSAPrivateKey, str]:
    """The process-wide key and its kid, generated on first call."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = _new_key()
        return _shared


class KeyRing:
    """The current signing key plus retired public keys still inside their grace period."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._current: Optional[Tuple[RSAPrivateKey, str]] = None
        # (public key, kid, monotonic instant it leaves the JWKS)
        self._retired: List[Tuple[RSAPublicKey, str, float]] = []

    def current(self) -> Tuple[RSAPrivateKey, str]:
        with self._lock:
            current = self._current
        if current is None:
            current = shared_key()
            with self._lock:
                if self._current is None:
                    self._current = current
                current = self._current
        return current

    def rotate(self, grace: float) -> str:
        """Switch to a fresh key; the previous public key stays published for ``grace`` s."""
        fresh = _new_key()  # slow part outside the lock
        old = self.current()
        with self._lock:
            if grace > 0:
                self._retired.append((old[0].public_key(), old[1], self._clock.monotonic() + grace))
            self._current = fresh
        return fresh[1]

    def expire_retired(self) -> int:
        """End every grace period now; returns how many retired keys were dropped."""
        with self._lock:
            dropped = len(self._retired)
            self._retired = []
        return dropped

    def reset(self) -> None:
        with self._lock:
            self._current = None
            self._retired = []

    def _published(self) -> List[Tuple[RSAPublicKey, str]]:
        """Current key first, then retired keys still in grace (newest first)."""
        key, kid = self.current()
        now = self._clock.monotonic()
        with self._lock:
            self._retired = [r for r in self._retired if r[2] > now]
            retired = list(self._retired)
        return [(key.public_key(), kid)] + [(pub, rkid) for pub, rkid, _ in reversed(retired)]

    def jwks(self) -> Dict[str, Any]:
        return {"keys": [public_jwk(pub, kid, "RS256") for pub, kid in self._published()]}

    def public_key(self, kid: str) -> Optional[RSAPublicKey]:
        """The published key with this ``kid`` (current or in grace), for checking our own tokens."""
        for pub, published_kid in self._published():
            if published_kid == kid:
                return pub
        return None

    def sign_jwt(self, claims: Dict[str, Any], header_extra: Optional[Dict[str, Any]] = None) -> str:
        key, kid = self.current()
        header: Dict[str, Any] = {"alg": "RS256", "typ": "JWT", "kid": kid}
        for name, value in (header_extra or {}).items():
            if value is None:
                header.pop(name, None)
            else:
                header[name] = value
        signing_input = (
            b64url_encode(json.dumps(header, separators=(",", ":")).encode("utf-8"))
            + "."
            + b64url_encode(json.dumps(claims, separators=(",", ":")).encode("utf-8"))
        )
        signature = sign(key, "RS256", signing_input.encode("ascii"))
        return signing_input + "." + b64url_encode(signature)
