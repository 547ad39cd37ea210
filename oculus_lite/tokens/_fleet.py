"""The fleet half of single flight: how a client's leader uses a shared ``TokenStore`` so a
whole fleet asks the token service for one token per key per lifetime.

The protocol (``reference/fleet-token-store.md`` section 2.3), run by the in-process leader
of a miss, written once as a plan so threads and coroutines share it:

1. Read the store. A token still fresh on the fleet's schedule (its refresh point, worked out
   from its lifetime the way this client's own cache does it, not yet reached) is adopted,
   after a signature check against the issuer's JWKS when the store cannot authenticate
   values itself, without calling the token service. A stored token past its refresh point
   is a miss: the fleet renews it once, under the lease.
2. A fleet-wide cool-down (another process got 429 with Retry-After) answers
   ``RateLimitError`` at once: the caller's still-valid token keeps being served meanwhile.
3. Take the lease. The winner reads the store and the cool-down once more (the previous
   holder may have finished between our read and our lease), fetches, writes the token
   (the store keeps whichever lives longer) and only then releases the lease. While its
   fetch runs, the client's background worker extends the lease, so a leader killed
   mid-fetch frees the key within one lease period. A 429 with Retry-After becomes a fleet
   cool-down.
4. A loser polls the store with jittered backoff until the token appears, takes the lease
   over when it lapses, and never waits past the point where its own deadline leaves time
   for a fetch of its own (half the time it has): then it fetches locally (a bounded
   duplicate, never an error).
5. When the renewal fails (or the fleet is cooling down), a stored token that is still valid
   is handed out rather than an error, as the client's own cached token would be, and the
   next try backs off (1, 2, 4 ... 30 s).

Store faults never reach callers: any exception from a store is logged (once per cool-off)
and the store is skipped for a jittered cool-off period, during which the client works
exactly as it does without a store. Releasing a lease is never skipped.
"""

import logging
import math
import random
import secrets
import threading
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Tuple

from .._engine._clock import Clock
from .._engine._fork import after_fork_in_child
from .._engine._plan import Offload, Plan, Sleep
from .._http._send import RetryPolicy
from .._secret import Secret
from ..exceptions import InvalidAudienceError, OculusError, RateLimitError
from ._cache import CacheKey, Entry, timing
from ._oauth import TokenEndpoint, token_plan
from ._store import SharedToken, StoreKey, TokenStore, key_material_for

if TYPE_CHECKING:  # pragma: no cover
    from ..verify._verifier import JwksVerifier

__all__ = ["FleetCache"]

log = logging.getLogger("oculus_lite.store")

#: How long a lease lives without being extended; the worker extends it every third of that.
LEASE_SECONDS = 3.0
#: How long the client leaves a failing store alone (jittered up to twice this).
STORE_COOL_OFF = 10.0
_FIRST_POLL, _POLL_GROWTH, _MAX_POLL = 0.025, 1.5, 0.25
_MAX_RETRY_DELAY = 30.0
_MAX_FAILURES_KEPT = 4096


class FleetCache:
    """One client's view of a shared store: keys, the breaker, leases under way, counters."""

    def __init__(
        self,
        store: TokenStore,
        *,
        token_url: str,
        client_id: str,
        client_secret: str,
        clock: Clock,
        timeout: float,
        margin: float,
        verifier: Optional[Callable[[], "JwksVerifier"]] = None,
        on_lease: Optional[Callable[[], None]] = None,
    ) -> None:
        self.store = store
        self._token_url = token_url
        self._client_id = client_id
        self._material = key_material_for(client_secret)
        self._clock = clock
        self._timeout = timeout
        self._margin = margin
        # Stores that cannot authenticate values themselves (the stdlib file store) ask for a
        # signature check of every token read before it is trusted.
        self._verifier = verifier if getattr(store, "verify_reads", False) else None
        self._on_lease = on_lease
        self._lock = threading.Lock()
        self._skip_until = 0.0
        self._leases: Dict[str, Tuple[StoreKey, str]] = {}  # owner -> (key, owner) under way
        self._failures: Dict[CacheKey, int] = {}  # renewals failed in a row, per key
        self.stats: Dict[str, int] = {
            "store_hits": 0,
            "leases_won": 0,
            "waits": 0,
            "local_fetches": 0,
            "store_errors": 0,
            "cool_downs": 0,
            "rejected_reads": 0,
        }
        after_fork_in_child(self, FleetCache._after_fork)

    def key(self, key: CacheKey) -> StoreKey:
        scope, audience = (key, None) if isinstance(key, str) else key
        return StoreKey.build(self._token_url, self._client_id, scope, audience, self._material)

    # ------------------------------------------------------------------ the protocol

    def fetch_plan(
        self,
        endpoint: TokenEndpoint,
        key: CacheKey,
        refresh_token: Optional[Secret],
        *,
        deadline: float,
        policy: RetryPolicy,
    ) -> Plan[Entry]:
        """A token for ``key``: from the store, from the fleet's one leader, or fetched here."""
        skey = self.key(key)
        spare: Dict[str, Entry] = {}  # a stored token due for renewal but still valid
        try:
            return (
                yield from self._lead_or_wait(endpoint, key, skey, refresh_token, deadline, policy, spare)
            )
        except OculusError:
            # The renewal failed (or the fleet is cooling down): a stored token that is still
            # valid beats an error, as this process's own cached token would.
            entry = spare.get("entry")
            now = self._clock.monotonic()
            if entry is None or now >= entry.expires:
                raise
            if self._verifier is not None and not (yield from self._verified(entry.token, key)):
                raise
            self._count("store_hits")
            with self._lock:
                failures = self._failures.get(key, 0)
                if len(self._failures) >= _MAX_FAILURES_KEPT:
                    self._failures.clear()
                self._failures[key] = failures + 1
            # Handed out as fresh until the next try, which backs off like the client's own
            # retries (1, 2, 4 ... 30 s): a failing service is not asked again on every call.
            retry_at = min(entry.expires, now + min(_MAX_RETRY_DELAY, 2.0**failures))
            log.warning(
                "token renewal failed; using the shared token (valid %.0f s more), next try in %.1f s",
                entry.expires - now,
                retry_at - now,
            )
            return Entry(
                entry.token,
                key,
                retry_at,
                max(entry.margin_at, retry_at),
                entry.expires,
                entry.wall_expires,
                None,
                entry.extra,
            )

    def _lead_or_wait(
        self,
        endpoint: TokenEndpoint,
        key: CacheKey,
        skey: StoreKey,
        refresh_token: Optional[Secret],
        deadline: float,
        policy: RetryPolicy,
        spare: Dict[str, Entry],
    ) -> Plan[Entry]:
        shared = yield from self._read(skey, key, spare)
        if shared is not None:
            return shared
        yield from self._check_cooling(skey)
        owner = secrets.token_hex(16)
        won = yield from self._call("acquire", self.store.acquire, skey, owner, LEASE_SECONDS)
        delay = _FIRST_POLL
        # Time kept for a fetch of our own, should the leader vanish: half of what we have
        # (a background refresh may have only the few seconds left of the token it renews).
        reserve = max(0.0, deadline - self._clock.monotonic()) / 2.0
        while won is False:
            self._count("waits")
            if self._clock.monotonic() + delay + reserve >= deadline:
                break  # our own deadline comes first: fetch here
            yield Sleep(random.uniform(delay / 2.0, delay))
            delay = min(delay * _POLL_GROWTH, _MAX_POLL)
            shared = yield from self._read(skey, key, spare)
            if shared is not None:
                return shared
            won = yield from self._call("acquire", self.store.acquire, skey, owner, LEASE_SECONDS)
        if won is not True:  # the store is skipped or failed, or our deadline is near
            self._count("local_fetches")
            return (yield from self._fetch(endpoint, key, skey, refresh_token, deadline, policy))
        self._hold(skey, owner)
        try:
            # Between our last read and our lease the previous holder may have written a
            # token (or, after a 429, a cool-down) and let go: look once more before fetching.
            shared = yield from self._read(skey, key, spare)
            if shared is not None:
                return shared
            yield from self._check_cooling(skey)
            self._count("leases_won")
            return (yield from self._fetch(endpoint, key, skey, refresh_token, deadline, policy))
        finally:  # after the write: a waiter that takes the lease over finds the token
            with self._lock:
                self._leases.pop(owner, None)
            yield from self._call("release", self.store.release, skey, owner, always=True)

    def invalidate_plan(self, key: CacheKey, access_token: str) -> Plan[None]:
        """Drop the shared token only if it is still exactly ``access_token`` (compare-and-delete):
        the fleet refetches once, not once per process."""
        yield from self._call("invalidate", self.store.invalidate, self.key(key), access_token)

    def extend_leases(self) -> Optional[float]:
        """Worker job: keep our leases alive while their fetches run."""
        with self._lock:
            leases = list(self._leases.values())
        for skey, owner in leases:
            try:
                self.store.extend(skey, owner, LEASE_SECONDS)
            except Exception as exc:  # the lease will lapse: at most a duplicate fetch elsewhere
                self._fault("extend", exc)
        return LEASE_SECONDS / 3.0 if leases else None

    @property
    def has_leases(self) -> bool:
        return bool(self._leases)

    def _after_fork(self) -> None:
        """In a forked child: the leases under way are the parent's fetches, not ours (the
        child must neither extend them nor keep a key's lease alive after the parent dies)."""
        self._lock = threading.Lock()
        self._leases = {}

    # ------------------------------------------------------------------ helpers

    def _fetch(
        self,
        endpoint: TokenEndpoint,
        key: CacheKey,
        skey: StoreKey,
        refresh_token: Optional[Secret],
        deadline: float,
        policy: RetryPolicy,
    ) -> Plan[Entry]:
        """Ask the token service, then share what it gave (or its Retry-After)."""
        try:
            entry = yield from token_plan(
                endpoint, key, refresh_token, deadline=deadline, policy=policy, clock=self._clock
            )
        except RateLimitError as exc:
            if exc.retry_after is not None and exc.retry_after > 0:
                yield from self._call("cool_down", self.store.cool_down, skey, exc.retry_after)
            raise
        self._renewed(key)
        remaining = entry.expires - self._clock.monotonic()
        if remaining > 0:
            extra = entry.extra or {}
            token = SharedToken(
                entry.token,
                remaining,
                extra.get("token_type", "Bearer"),
                extra.get("scope"),
                extra.get("sdk_service_token"),
            )
            yield from self._call("put", self.store.put, skey, token)
        return entry

    def _check_cooling(self, skey: StoreKey) -> Plan[None]:
        cooling = yield from self._call("cooling", self.store.cooling, skey)
        if isinstance(cooling, (int, float)) and cooling > 0:
            self._count("cool_downs")
            raise RateLimitError(
                "token request not sent: the fleet is cooling down after a 429 from the token "
                "service; retry in {:.1f} s".format(cooling),
                code="fleet_cool_down",
                retry_after=float(cooling),
            )

    def _hold(self, skey: StoreKey, owner: str) -> None:
        with self._lock:
            first = not self._leases
            self._leases[owner] = (skey, owner)
        # The worker's job extends every lease under way and reschedules itself while there
        # are any: wake it for the first one only (rescheduling it on every lease would keep
        # pushing the next extension back while leases keep coming).
        if first and self._on_lease is not None:
            self._on_lease()

    def _read(self, skey: StoreKey, key: CacheKey, spare: Dict[str, Entry]) -> Plan[Optional[Entry]]:
        """The stored token when it is still fresh on the fleet's schedule (checked against
        the JWKS if the store asks for it); one due for renewal is put in ``spare``."""
        shared = yield from self._call("get", self.store.get, skey)
        if not isinstance(shared, SharedToken):
            return None
        left = shared.expires_in
        if not (isinstance(left, (int, float)) and math.isfinite(left) and left > 0):
            return None
        now = self._clock.monotonic()
        life = _lifetime(shared.access_token)
        if life is None:  # not a JWT: judge by the life left alone, with the full margin
            if left <= self._margin:
                return None
            refresh_at, margin_at, expires = timing(now, left, self._margin)
        else:
            # The schedule the leader that fetched it has: the same refresh point everywhere,
            # so the fleet renews it once, and short-lived tokens are shared too.
            life = max(life, left)
            refresh_at, margin_at, expires = timing(now - (life - left), life, self._margin)
        extra: Dict[str, Any] = {}
        if shared.scope is not None:
            extra["scope"] = shared.scope
        if shared.token_type.lower() != "bearer":
            extra["token_type"] = shared.token_type
        if shared.service_token:
            extra["sdk_service_token"] = shared.service_token
        wall = self._clock.time() + left
        entry = Entry(shared.access_token, key, refresh_at, margin_at, expires, wall, None, extra or None)
        if now >= refresh_at:
            # Due for renewal: one process fetches under the lease and the rest adopt that;
            # this one is kept in case the renewal fails.
            spare["entry"] = entry
            return None
        if self._verifier is not None and not (yield from self._verified(shared.access_token, key)):
            # Drop it (if it is still there) so the next reader does not pay the check again.
            yield from self._call("invalidate", self.store.invalidate, skey, shared.access_token)
            return None
        self._count("store_hits")
        self._renewed(key)
        return entry

    def _renewed(self, key: CacheKey) -> None:
        if self._failures:
            with self._lock:
                self._failures.pop(key, None)

    def _verified(self, access_token: str, key: CacheKey) -> Plan[bool]:
        """The issuer signed it, it is current, and it is for this key's audience."""
        from ..jwt import decode
        from ..verify._claims import check_audience

        verifier = self._verifier
        assert verifier is not None
        audience = None if isinstance(key, str) else (key[1],)
        try:
            try:
                yield from verifier()._verify_plan(access_token)
            except InvalidAudienceError:
                pass  # raised after the signature and time checks passed; checked below for this key
            check_audience(decode(access_token).claims.get("aud"), audience)
        except OculusError as exc:
            self._count("rejected_reads")
            log.warning("a shared token failed verification (%s); fetching a new one", type(exc).__name__)
            return False
        return True

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, always: bool = False) -> Plan[Any]:
        """One store call, off the event loop; None when the store is being skipped or failed.
        ``always``: even while the store is skipped (releasing a lease we hold)."""
        if not always and self._clock.monotonic() < self._skip_until:
            return None
        try:
            return (yield Offload(fn, *args))
        except Exception as exc:
            self._fault(what, exc)
            return None

    def _fault(self, what: str, exc: Exception) -> None:
        now = self._clock.monotonic()
        with self._lock:
            self.stats["store_errors"] += 1
            first = now >= self._skip_until
            self._skip_until = now + random.uniform(STORE_COOL_OFF, 2 * STORE_COOL_OFF)
        if first:  # rate-limited: one line per cool-off
            log.warning(
                "token store %s failed (%s); using this process's cache alone for the next %.0f s",
                what,
                type(exc).__name__,
                self._skip_until - now,
            )

    def _count(self, name: str) -> None:
        with self._lock:
            self.stats[name] += 1


def _lifetime(access_token: str) -> Optional[float]:
    """``exp - iat`` of a JWT (the lifetime the issuer gave it), or None when it has neither."""
    from ..jwt import decode

    try:
        claims = decode(access_token).claims
    except OculusError:
        return None
    exp, iat = claims.get("exp"), claims.get("iat")
    if not (isinstance(exp, (int, float)) and isinstance(iat, (int, float))):
        return None
    if isinstance(exp, bool) or isinstance(iat, bool):
        return None
    life = float(exp) - float(iat)
    return life if math.isfinite(life) and life > 0 else None
