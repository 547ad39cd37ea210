"""JwksVerifier: the verification half of ``oculus_lite.jwt`` (re-exported there).

Order of checks: shape and header (alg allow-list, crit, kid) before any key is
touched, then the signature, then exp/nbf/iat/aud/iss, then the revocation list.
A key or revocation fetch that fails is a network/API error, not a verdict on
the token. Keys and the memo are read without a lock; fetches are single-flight.
"""

import logging
import threading
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Sequence, Tuple, Union

from .._engine._clock import SYSTEM_CLOCK, Clock, SystemClock
from .._engine._flight import Abandoned, SingleFlight
from .._engine._plan import Join, Plan, arun, run
from .._engine._shells import blocking, coroutine
from .._http._models import AsyncTransport, Transport
from .._http._send import send_plan
from ..exceptions import (
    ClientClosedError,
    ConfigurationError,
    InvalidSignatureError,
    OculusError,
    RevokedTokenError,
)
from ..jwt import Claims, Decoded, decode
from ._claims import as_seconds, check_claims, check_header
from ._keys import SUPPORTED_ALGORITHMS, KeySet, parse_max_age

if TYPE_CHECKING:  # pragma: no cover
    from .._http._models import Request
    from ._revocation import RevocationList

__all__ = ["JwksVerifier"]

log = logging.getLogger("oculus_lite.jwt")

_KEYS = "jwks"
_REVOCATION = "revocation"


class _CallableClock(SystemClock):
    """The verifier's historical ``clock``/``monotonic`` callables as a ``Clock``."""

    def __init__(self, wall: Callable[[], float], mono: Callable[[], float]) -> None:
        self.time = wall
        self.monotonic = mono


def _as_clock(
    clock: Union[Clock, Callable[[], float], None], monotonic: Optional[Callable[[], float]]
) -> Clock:
    if clock is None and monotonic is None:
        return SYSTEM_CLOCK
    if isinstance(clock, Clock):
        if monotonic is not None:
            raise ConfigurationError("pass either a Clock object as clock, or clock/monotonic callables")
        return clock
    return _CallableClock(clock or SYSTEM_CLOCK.time, monotonic or SYSTEM_CLOCK.monotonic)


# --------------------------------------------------------------------------- verification


class JwksVerifier:
    """Verifies RS256/RS384/RS512 tokens against the issuer's JWKS; thread-safe.

    ``verifier.verify(token)`` returns the token's ``Claims`` or raises an
    ``InvalidTokenError`` subclass whose ``reason`` says what is wrong. Failing
    to reach the JWKS (or, the first time, the revocation list) raises the
    network/API error instead: that is not a verdict on the token.
    """

    def __init__(
        self,
        base_url: Optional[str] = None,
        *,
        jwks_url: Optional[str] = None,
        audience: Union[None, str, Sequence[str]] = None,
        issuer: Optional[str] = None,
        leeway: float = 30.0,
        check_revocation: bool = True,
        memo: bool = True,
        transport: Union[Transport, AsyncTransport, str, None] = None,
        algorithms: Sequence[str] = SUPPORTED_ALGORITHMS,
        revocation_url: Optional[str] = None,
        revocation_interval: Optional[float] = 15.0,
        cache_ttl: float = 24 * 3600.0,
        min_cache_ttl: float = 5.0,
        refetch_cooldown: float = 60.0,
        memo_size: int = 4096,
        timeout: float = 10.0,
        retries: int = 2,
        allow_insecure_http: bool = False,
        clock: Union[Clock, Callable[[], float], None] = None,
        monotonic: Optional[Callable[[], float]] = None,
    ) -> None:
        from .._config import check_count, check_seconds, validate_base_url

        if base_url is None and jwks_url is None:
            raise ConfigurationError(
                "JwksVerifier needs base_url (the token service, e.g. 'https://api.antiailabs.com') "
                "or jwks_url"
            )
        base = (
            validate_base_url(base_url, allow_insecure_http=allow_insecure_http)
            if base_url is not None
            else None
        )
        self._jwks_url = (
            validate_base_url(jwks_url, allow_insecure_http=allow_insecure_http, what="jwks_url")
            if jwks_url is not None
            else "{}/.well-known/jwks.json".format(base)
        )
        if isinstance(audience, str):
            audience = (audience,)
        if audience is not None and (not audience or not all(isinstance(a, str) and a for a in audience)):
            raise ConfigurationError("audience must be a non-empty string or a list of them")
        self._audience: Optional[Tuple[str, ...]] = tuple(audience) if audience is not None else None
        if issuer is not None and (not isinstance(issuer, str) or not issuer):
            raise ConfigurationError("issuer must be a non-empty string")
        self._issuer = issuer
        self._leeway = check_seconds(leeway, "leeway", allow_zero=True)
        self._cache_ttl = check_seconds(cache_ttl, "cache_ttl", allow_zero=True)
        self._min_cache_ttl = check_seconds(min_cache_ttl, "min_cache_ttl", allow_zero=True)
        self._cooldown = check_seconds(refetch_cooldown, "refetch_cooldown", allow_zero=True)
        self._timeout = check_seconds(timeout, "timeout")
        if revocation_interval is not None:
            revocation_interval = check_seconds(revocation_interval, "revocation_interval")
        algs = tuple(algorithms)
        bad = [a for a in algs if a not in SUPPORTED_ALGORITHMS]
        if not algs or bad:
            raise ConfigurationError(
                "algorithms must be a non-empty subset of {}; refused: {}".format(
                    list(SUPPORTED_ALGORITHMS), bad
                )
            )
        self._algorithms = algs
        self._clock: Clock = _as_clock(clock, monotonic)

        if check_revocation:
            if revocation_url is None:
                if base is None:
                    raise ConfigurationError(
                        "check_revocation needs base_url or revocation_url (or pass check_revocation=False)"
                    )
                revocation_url = base + "/oauth/revoked-tokens"
            else:
                revocation_url = validate_base_url(
                    revocation_url, allow_insecure_http=allow_insecure_http, what="revocation_url"
                )

        from .._http._registry import resolve_transport
        from .._http._send import RetryPolicy

        self._policy = RetryPolicy(retries=check_count(retries, "retries"))
        self._owns_transport = transport is None or isinstance(transport, str)
        self._transport = resolve_transport(transport)

        self._revocation: Optional["RevocationList"] = None
        if revocation_url is not None and check_revocation:
            from ._revocation import RevocationList

            self._revocation = RevocationList(
                revocation_url,
                transport=self._transport,
                interval=revocation_interval,
                timeout=self._timeout,
                name="oculus-lite-verifier-revocation",
                clock=self._clock,
            )
        self._lock = threading.Lock()
        self._keys: Optional[KeySet] = None
        self._keys_expire = 0.0  # monotonic instant after which the set is refreshed
        self._last_forced: Optional[float] = None  # monotonic instant of the last unknown-kid refetch
        self._flights: SingleFlight[str, None] = SingleFlight()
        self._stopping = threading.Event()
        self._memo: Optional[Dict[str, Tuple[Claims, float, Optional[str], int]]] = {} if memo else None
        self._memo_size = check_count(memo_size, "memo_size", minimum=1)
        self._closed = False

    def __repr__(self) -> str:
        return "JwksVerifier(jwks_url={!r}, audience={!r}, issuer={!r})".format(
            self._jwks_url, self._audience, self._issuer
        )

    # ----------------------------------------------------------------- public

    @property
    def jwks_url(self) -> str:
        return self._jwks_url

    @property
    def key_ids(self) -> Tuple[str, ...]:
        """The kids of the usable keys currently cached."""
        keys = self._keys
        return keys.kids if keys is not None else ()

    def verify(self, token: str) -> Claims:
        """The token's claims, or an ``InvalidTokenError`` subclass saying why not."""
        hit = self._memo_hit(token)
        if hit is not None:
            return hit
        return run(self._verify_plan(token), self._transport, self._sleep)

    async def averify(self, token: str) -> Claims:
        """``verify`` for coroutines: key and revocation fetches never block the event loop."""
        hit = self._memo_hit(token)
        if hit is not None:
            return hit
        return await arun(self._verify_plan(token), self._transport, self._clock.asleep)

    def refresh_keys(self) -> None:
        """Fetch the JWKS now (e.g. at startup, to fail fast on a wrong URL)."""
        run(self._keys_plan("manual"), self._transport, self._sleep)

    def _refresh_revocation(self) -> Plan[bool]:
        """Fetch the revocation list now; True when it changed (no-op False without revocation)."""
        if self._revocation is None:
            return False
        return (yield from self._revocation.refresh_plan())

    refresh_revocation = blocking(_refresh_revocation)
    arefresh_revocation = coroutine(_refresh_revocation, "arefresh_revocation")

    def close(self) -> None:
        """Stop the revocation poller and close a transport this verifier created; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stopping.set()
        if self._revocation is not None:
            self._revocation.stop()
        if self._memo is not None:
            with self._lock:
                self._memo.clear()
        if self._owns_transport:
            close = getattr(self._transport, "close", None)
            if callable(close):
                close()

    def __enter__(self) -> "JwksVerifier":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> "JwksVerifier":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    # ----------------------------------------------------------------- memo

    def _sleep(self, seconds: float) -> None:
        if self._clock.sleep(seconds, self._stopping):
            raise ClientClosedError("this JwksVerifier was closed while waiting")

    def _memo_hit(self, token: str) -> Optional[Claims]:
        if self._closed:
            raise ClientClosedError("this JwksVerifier was closed")
        memo = self._memo
        if memo is None or not isinstance(token, str):
            return None
        entry = memo.get(token)
        if entry is None:
            return None
        claims, deadline, jti, key_gen = entry
        keys = self._keys
        if (
            self._clock.time() >= deadline
            or keys is None
            or keys.generation != key_gen
            or self._clock.monotonic() >= self._keys_expire  # keys due a refresh: they may drop its key
        ):
            with self._lock:
                memo.pop(token, None)
            return None  # re-verified in full: raises the precise error
        if jti is not None and self._revocation is not None and jti in self._revocation.revoked:
            raise RevokedTokenError("token jti {!r} is on the revocation list".format(jti))
        return claims

    def _finish(self, token: str, payload: Dict[str, Any], key_gen: int) -> Claims:
        jti = payload.get("jti")
        jti = jti if isinstance(jti, str) else None
        if jti is not None and self._revocation is not None and jti in self._revocation.revoked:
            raise RevokedTokenError("token jti {!r} is on the revocation list".format(jti))
        claims = Claims(payload)
        memo = self._memo
        if memo is not None and isinstance(token, str):
            deadline = as_seconds(payload["exp"]) + self._leeway
            with self._lock:
                if len(memo) >= self._memo_size:
                    self._evict(memo)
                memo[token] = (claims, deadline, jti, key_gen)
        return claims

    def _evict(self, memo: Dict[str, Tuple[Claims, float, Optional[str], int]]) -> None:
        now = self._clock.time()
        for token in [t for t, entry in memo.items() if entry[1] <= now]:
            del memo[token]
        if len(memo) >= self._memo_size:  # still full: drop the oldest quarter
            for token in list(memo)[: max(1, self._memo_size // 4)]:
                del memo[token]

    # ----------------------------------------------------------------- checks

    def _check_signature(self, keys: KeySet, decoded: Decoded, alg: str, kid: Optional[str]) -> int:
        from . import _rsa

        candidates = keys.candidates(kid, alg)
        sizes = [(key.n.bit_length() + 7) // 8 for key in candidates]
        if len(decoded.signature) not in sizes:
            raise InvalidSignatureError(
                "signature is {} bytes; a {}-bit key makes {}-byte signatures".format(
                    len(decoded.signature), candidates[0].n.bit_length(), sizes[0]
                )
            )
        for key in candidates:
            if _rsa.verify(key, alg, decoded.signing_input, decoded.signature):
                return keys.generation
        raise InvalidSignatureError(
            "signature does not verify with key {!r}: the token was altered or signed by another key".format(
                kid
            )
        )

    # ----------------------------------------------------------------- keys

    def _need_fetch(self, keys: Optional[KeySet], kid: Optional[str]) -> Optional[str]:
        """None when the current set can decide; "initial"/"stale"/"forced" otherwise."""
        if keys is None:
            return "initial"
        now = self._clock.monotonic()
        if now >= self._keys_expire and not self._flights.busy(_KEYS):
            return "stale"
        if kid is not None and not keys.has_kid(kid):
            if self._flights.busy(_KEYS):
                return "forced"  # join the fetch already under way
            last = self._last_forced
            if last is None or now - last >= self._cooldown:
                return "forced"
        return None

    def _claim(self, why: str) -> bool:
        """Whether the fetch is still needed now that this caller leads (re-checked under the lock)."""
        with self._lock:
            now = self._clock.monotonic()
            if why == "initial":
                return self._keys is None
            if why == "stale":
                return self._keys is None or now >= self._keys_expire
            if why == "forced":
                last = self._last_forced
                if last is not None and now - last < self._cooldown:
                    return False
            self._last_forced = now  # "forced" and "manual"
            return True

    def _verify_plan(self, token: str) -> Plan[Claims]:
        """The one verification flow: header, keys (fetched once for everyone), signature,
        claims, revocation list."""
        decoded = decode(token)
        alg, kid = check_header(decoded.header, self._algorithms)
        keys = self._keys
        need = self._need_fetch(keys, kid)
        tries = 0
        while need is not None:
            yield from self._keys_plan(need)
            tries += 1
            keys = self._keys
            need = "initial" if keys is None and tries < 3 else None
        if keys is None:
            raise OculusError("the JWKS could not be loaded from {}".format(self._jwks_url))
        key_gen = self._check_signature(keys, decoded, alg, kid)
        claims = check_claims(decoded.claims, self._clock.time(), self._leeway, self._audience, self._issuer)
        if self._revocation is not None and self._revocation.last_success is None:
            yield from self._load_revocation_plan()
        return self._finish(token, claims, key_gen)

    def _keys_plan(self, why: str) -> Plan[None]:
        """Fetch the key set, or wait for the fetch another caller leads."""
        flight, leader = self._flights.lead_or_join(_KEYS)
        if not leader:
            try:
                yield Join(flight, self._timeout * 2 + 1.0)
            except Abandoned:
                return  # the caller re-checks and may lead the next fetch
            except OculusError:
                if self._keys is None:
                    raise
            return
        try:
            if self._claim(why):
                response = yield from send_plan(
                    self._jwks_request(),
                    policy=self._policy,
                    deadline=self._clock.monotonic() + self._timeout,
                    clock=self._clock,
                    what="fetching the JWKS",
                    hints={404: "no JWKS at this URL; check base_url or pass jwks_url"},
                )
                self._install(response)
        except OculusError as exc:
            self._fetch_failed(exc)
            self._flights.finish(_KEYS, flight)
            flight.set_error(exc)
            if self._keys is None or why == "manual":
                raise
            return
        except BaseException:
            self._flights.finish(_KEYS, flight)
            flight.set_error(Abandoned())
            raise
        self._flights.finish(_KEYS, flight)
        flight.set_result(None)

    def _jwks_request(self) -> "Request":
        from .._http._models import Request

        return Request(
            "GET", self._jwks_url, headers=(("Accept", "application/json"),), timeout=self._timeout
        )

    def _install(self, response: Any) -> None:
        from .._http._send import parse_json

        data = parse_json(response, "JWKS")
        ttl = parse_max_age(response.header("cache-control"))
        ttl = self._cache_ttl if ttl is None else min(ttl, self._cache_ttl)
        ttl = max(ttl, self._min_cache_ttl)
        with self._lock:
            previous = self._keys
            keys = KeySet.from_jwks(data, previous, self._clock.monotonic())
            self._keys = keys
            self._keys_expire = self._clock.monotonic() + ttl
        if previous is None or previous.generation != keys.generation:
            usable = sum(1 for entry in keys.entries if entry.key is not None)
            level = logging.INFO if usable else logging.WARNING
            log.log(level, "JWKS from %s: %d usable key(s) %s", self._jwks_url, usable, list(keys.kids))

    def _fetch_failed(self, exc: OculusError) -> None:
        with self._lock:
            keys = self._keys
            if keys is not None:  # keep the last good set; try again after the cooldown
                self._keys_expire = self._clock.monotonic() + min(self._cooldown, self._cache_ttl)
        if keys is None:
            log.warning("JWKS fetch from %s failed: %s", self._jwks_url, exc.message)
        else:
            log.warning(
                "JWKS fetch from %s failed: %s; keeping the last good key set (%d key(s), "
                "fetched %.0f s ago)",
                self._jwks_url,
                exc.message,
                len(keys.kids),
                self._clock.monotonic() - keys.fetched_at if keys.fetched_at is not None else -1.0,
            )

    # ----------------------------------------------------------------- revocation

    def _load_revocation_plan(self) -> Plan[None]:
        """The first revocation list, loaded once for everyone; then the poller keeps it fresh."""
        revocation = self._revocation
        assert revocation is not None
        flight, leader = self._flights.lead_or_join(_REVOCATION)
        if not leader:
            try:
                yield Join(flight, self._timeout * 2 + 1.0)
            except (OculusError, Abandoned):
                pass  # judged below by whether a list is there
        else:
            try:
                if revocation.last_success is None:
                    yield from revocation.refresh_plan()
            except OculusError as exc:
                self._flights.finish(_REVOCATION, flight)
                flight.set_error(exc)
                raise
            except BaseException:
                self._flights.finish(_REVOCATION, flight)
                flight.set_error(Abandoned())
                raise
            self._flights.finish(_REVOCATION, flight)
            flight.set_result(None)
        if revocation.last_success is None:
            raise OculusError("the revocation list could not be loaded from {}".format(revocation.url))
        if not self._closed:
            revocation.start()
