"""The shared token store: what a fleet of processes uses so it asks the token service for one
token per key per lifetime, instead of one per process.

The in-process cache stays in front (L1): a cache hit never touches the store. Only the
single-flight leader of a miss consults it, and the whole cross-process protocol (read,
cool-down check, lease, fetch, write, release; invalidate on revocation or a downstream 401)
lives once in the client. A store only offers the primitives below, each one short, with
its own small timeout and no retries. Any exception a store raises is caught by the client,
logged (rate-limited) and answered by skipping the store for a cool-off period: a store
can slow a cold miss by at most its timeout, never fail a caller.

What a store sees: opaque names and access tokens. Never a client secret, never a refresh
token. ``StoreKey.canonical`` names the token (token URL, client id, normalised scopes,
audience) and must only ever reach the store hashed: ``StoreKey.slot(name_key)`` is the
HMAC a store uses as its key name. ``StoreKey.key_material`` is derived from the client
secret by HKDF (so a secret rotation moves the fleet to fresh names by itself); a store
derives its naming and sealing keys from it, or from an explicit key it was given.
"""

import hashlib
import hmac
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Protocol, runtime_checkable

__all__ = ["SharedToken", "StoreKey", "ThrottledWarnings", "TokenStore", "hkdf_sha256", "key_material_for"]

_SALT = b"oculus-lite/store/v1"


def hkdf_sha256(ikm: bytes, *, salt: bytes, info: bytes, length: int = 32) -> bytes:
    """RFC 5869 HKDF with SHA-256 (extract, then expand to ``length`` bytes)."""
    if not 0 < length <= 255 * 32:
        raise ValueError("HKDF length out of range")
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out += block
        counter += 1
    return out[:length]


def key_material_for(client_secret: str) -> bytes:
    """The store key material of a client: never the secret itself, and different per secret."""
    return hkdf_sha256(client_secret.encode("utf-8"), salt=_SALT, info=b"key-material")


@dataclass(frozen=True)
class StoreKey:
    """Which shared token: built by the client for one (scope, audience) of one client id.

    ``repr`` shows neither field: ``canonical`` holds the client id, scopes and audience in
    clear, ``key_material`` is secret-derived.
    """

    canonical: str = field(repr=False)
    key_material: bytes = field(repr=False)

    @classmethod
    def build(
        cls, token_url: str, client_id: str, scope: str, audience: Optional[str], key_material: bytes
    ) -> "StoreKey":
        parts = ("oculus-lite/v1", token_url, client_id, scope, audience if audience is not None else "")
        return cls("\n".join(parts), key_material)

    def slot(self, name_key: bytes) -> str:
        """The opaque name of this entry under ``name_key``: 32 hex digits of an HMAC."""
        return hmac.new(name_key, self.canonical.encode("utf-8"), hashlib.sha256).hexdigest()[:32]


@dataclass(frozen=True)
class SharedToken:
    """An access token as the fleet shares it. ``expires_in`` is the life left as the store
    measures it (for Redis, ``PTTL`` on the server's clock, so hosts' skewed clocks do not
    matter); a store keeps an entry no longer than that."""

    access_token: str = field(repr=False)
    expires_in: float
    token_type: str = "Bearer"
    scope: Optional[str] = None  # the granted scope, when the server said one
    service_token: Optional[str] = field(default=None, repr=False)  # governance sdk_service_token


@runtime_checkable
class TokenStore(Protocol):
    """A second-level token cache shared by processes. Blocking calls, each bounded by the
    store's own short timeout; a store raises on any failure and never retries.

    ``owner`` is a random string the leader picked: only that owner extends or releases its
    lease. A store that cannot authenticate the values it returns sets a class attribute
    ``verify_reads = True``: the client then checks each token it reads against the issuer's
    JWKS before using it. Losing a lease (expiry, eviction, a store restart) costs at most one duplicate
    token request, never a wrong token: ``put`` keeps whichever token lives longer.
    """

    def get(self, key: StoreKey) -> Optional[SharedToken]:
        """The stored token, or None (absent, expired, or a value that fails to open)."""
        ...

    def acquire(self, key: StoreKey, owner: str, seconds: float) -> bool:
        """Take the fetch lease for ``seconds`` unless another owner holds it."""
        ...

    def extend(self, key: StoreKey, owner: str, seconds: float) -> bool:
        """Push the lease's expiry to ``seconds`` from now while ``owner`` still holds it."""
        ...

    def release(self, key: StoreKey, owner: str) -> None:
        """Drop the lease if ``owner`` still holds it (compare-and-delete)."""
        ...

    def put(self, key: StoreKey, token: SharedToken) -> None:
        """Store ``token`` for ``token.expires_in`` seconds unless what is stored lives longer."""
        ...

    def invalidate(self, key: StoreKey, access_token: str) -> None:
        """Delete the entry only if it still holds exactly ``access_token`` (compare-and-delete)."""
        ...

    def cool_down(self, key: StoreKey, seconds: float) -> None:
        """Tell the fleet not to ask the token service for this key for ``seconds`` (a 429)."""
        ...

    def cooling(self, key: StoreKey) -> float:
        """Seconds left of a fleet-wide cool-down for this key (0 when none)."""
        ...

    def close(self) -> None:
        """Release connections; the client calls it from ``stop()``."""
        ...


class ThrottledWarnings:
    """A store's warnings at WARNING at most once per ``every`` seconds, the rest at DEBUG and
    counted into the next warning: a store that fails on every call must not flood the log."""

    def __init__(
        self, logger: logging.Logger, every: float = 60.0, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._log = logger
        self._every = every
        self._clock = clock
        self._last = -math.inf
        self._suppressed = 0

    def warn(self, message: str, *args: object) -> None:
        now = self._clock()
        if now - self._last >= self._every:
            if self._suppressed:
                message += " (%d similar messages suppressed)"
                args = args + (self._suppressed,)
            self._last, self._suppressed = now, 0
            self._log.warning(message, *args)
        else:
            self._suppressed += 1
            self._log.debug(message, *args)
