"""The token client: OAuth 2.0 client credentials with a lock-free cache hit path,
single-flight misses shared by threads and asyncio tasks, refresh ahead, and the
revocation list.

    with Client(client_id, client_secret, base_url) as client:
        token = client.get_token(scope="db:read")

Locking: ``self._lock`` guards the cache's writes and the table of in-flight
fetches. The hit path (``get_token`` finding a FRESH entry) reads one dict and
takes no lock. A miss either leads a fetch (one ``concurrent.futures.Future`` per
key, which both threads and coroutines can wait on) or waits for the one in
flight. Network I/O never happens under the lock.
"""

import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Dict, FrozenSet, Hashable, List, Optional, Set, Tuple

from .._config import DEFAULT_BASE_URL, check_text, from_env, validate_base_url
from .._http import _send as _http
from .._http._registry import resolve_transport
from ..exceptions import (
    ClientClosedError,
    ConfigurationError,
    NetworkTimeoutError,
    OculusAPIError,
    OculusError,
    TokenRevokedException,
    ValidationError,
)
from ._cache import CacheKey, Entry, TokenCache
from ._models import Token
from ._oauth import TokenEndpoint, normalise_scope

if TYPE_CHECKING:  # pragma: no cover
    from concurrent.futures import Future

    from ..verify._revocation import RevocationList

__all__ = ["Client", "OculusClient"]

log = logging.getLogger("oculus_lite.client")

_MAX_AUDIENCE_LEN = 2048
_MEMO_LIMIT = 4096


class Client:
    """Gets, caches and renews scoped access tokens for one agent.

    Args:
        client_id, client_secret, base_url: explicit values win; then ``AGENT_CLIENT_ID`` /
            ``AGENT_CLIENT_SECRET`` / ``ANTI_AI_URL``; then ``OCULUS_CLIENT_ID`` /
            ``OCULUS_CLIENT_SECRET`` / ``OCULUS_BASE_URL``; base URL defaults to
            https://api.antiailabs.com.
        transport: ``None`` (urllib), a registered name (``"pooled"``, ``"httpx"``...), or an
            object with ``request(Request) -> Response`` (and optionally ``arequest``).
        timeout: seconds for one whole ``get_token`` call, retries included.
        retries: retries of connection errors, timeouts, 5xx and 429.
        cache_size: how many (scope, audience) tokens to keep.
        refresh_margin: stop handing out a token this many seconds before it expires.
        revocation_interval: seconds between revocation-list polls; ``None`` turns it off.
        allow_insecure_http: permit ``http://`` to a non-loopback host.
        verify: TLS verification for the default transport (True, CA bundle path, SSLContext).

    Example::

        client = Client()
        token = client.get_token(scope="db:read stripe:customer:read")
        client.stop()
    """

    def __init__(
        self,
        client_id: Optional[str] = None,
        client_secret: Optional[str] = None,
        base_url: Optional[str] = None,
        *,
        transport: Any = None,
        timeout: float = 10.0,
        retries: int = 3,
        cache_size: int = 1024,
        refresh_margin: float = 10.0,
        revocation_interval: Optional[float] = 15.0,
        allow_insecure_http: bool = False,
        verify: Any = True,
        task_id: Optional[str] = None,
    ) -> None:
        client_id, id_from = from_env(client_id, ("AGENT_CLIENT_ID", "OCULUS_CLIENT_ID"))
        client_secret, _ = from_env(client_secret, ("AGENT_CLIENT_SECRET", "OCULUS_CLIENT_SECRET"))
        base_url, _ = from_env(base_url, ("ANTI_AI_URL", "OCULUS_BASE_URL"))
        task_id, _ = from_env(task_id, ("OCULUS_TASK_ID",))
        missing = [
            (name, env)
            for name, value, env in (
                ("client_id", client_id, "AGENT_CLIENT_ID or OCULUS_CLIENT_ID"),
                ("client_secret", client_secret, "AGENT_CLIENT_SECRET or OCULUS_CLIENT_SECRET"),
            )
            if not value
        ]
        if missing:
            raise ConfigurationError(
                "missing {0}: pass {0} to Client(...) or set {1}".format(
                    " and ".join(name for name, _ in missing), "; ".join(env for _, env in missing)
                )
            )
        assert client_id is not None and client_secret is not None
        check_text(client_id, "client_id", max_len=512, error=ConfigurationError)
        check_text(client_secret, "client_secret", max_len=4096, error=ConfigurationError)
        for name, value, low in (
            ("timeout", timeout, 0.0),
            ("refresh_margin", refresh_margin, -0.0),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= low:
                raise ConfigurationError("{} must be a non-negative number of seconds".format(name))
        if timeout <= 0:
            raise ConfigurationError("timeout must be greater than 0 seconds")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ConfigurationError("retries must be an int >= 0")
        if isinstance(cache_size, bool) or not isinstance(cache_size, int) or cache_size < 1:
            raise ConfigurationError("cache_size must be an int >= 1")
        if revocation_interval is not None and (
            isinstance(revocation_interval, bool)
            or not isinstance(revocation_interval, (int, float))
            or revocation_interval <= 0
        ):
            raise ConfigurationError("revocation_interval must be a positive number or None")
        self.client_id = client_id
        self.base_url = validate_base_url(
            base_url or DEFAULT_BASE_URL, allow_insecure_http=allow_insecure_http
        )
        self._credential_source = id_from
        self._timeout = float(timeout)
        self._policy = _http.RetryPolicy(retries=retries)
        self._endpoint = TokenEndpoint(
            self.base_url,
            client_id,
            client_secret,
            timeout=self._timeout,
            margin=float(refresh_margin),
            task_id=task_id,
        )
        if transport is None and verify is not True:
            from .._http._urllib import UrllibTransport

            transport = UrllibTransport(verify=verify)
        self._transport = resolve_transport(transport)
        self._cache = TokenCache(cache_size)
        self._fast = self._cache.fast  # the lock-free hit path reads this dict...
        self._lru = self._cache.entries  # ...and bumps recency here
        self._tasks: Set[Any] = set()  # strong references to fetch tasks on async transports
        self._lock = threading.Lock()
        self._flights: Dict[CacheKey, "Future[Entry]"] = {}
        self._backoff: Dict[CacheKey, Tuple[float, int]] = {}
        self._memo: Dict[str, str] = {}
        self._closed = False
        self._revocation_interval = revocation_interval
        self._revocation: Optional["RevocationList"] = None
        self._refresher: Optional[threading.Thread] = None
        self._refresh_queue: List[CacheKey] = []
        self._refresh_wakeup = threading.Condition(self._lock)

    def __repr__(self) -> str:
        return "Client(client_id={!r}, base_url={!r}, cached={})".format(
            self.client_id, self.base_url, len(self._cache)
        )

    # ------------------------------------------------------------------ public API

    def get_token(self, scope: str, audience: Optional[str] = None) -> str:
        """An access token for ``scope`` (and ``audience``), from cache when possible.

        Raises:
            ValidationError: bad scope/audience (nothing sent).
            OculusAuthError: 401/403, with the likely cause.
            TokenRevokedException: the cached token was revoked.
            NetworkError, OculusAPIError: the service could not be reached or failed.
        """
        try:
            entry = self._fast.get(scope if audience is None else (scope, audience))
        except TypeError:  # unhashable argument: let validation explain
            entry = None
        if entry is not None and time.monotonic() < entry.refresh_at:
            try:
                self._lru.move_to_end(entry.key)
            except KeyError:  # evicted by another thread just now
                pass
            return entry.token
        return self._get_entry(scope, audience).token

    async def aget_token(self, scope: str, audience: Optional[str] = None) -> str:
        """``get_token`` for coroutines: a hit returns at once; a miss never blocks the loop."""
        try:
            entry = self._fast.get(scope if audience is None else (scope, audience))
        except TypeError:
            entry = None
        if entry is not None and time.monotonic() < entry.refresh_at:
            try:
                self._lru.move_to_end(entry.key)
            except KeyError:
                pass
            return entry.token
        return (await self._aget_entry(scope, audience)).token

    def get_token_info(self, scope: str, audience: Optional[str] = None) -> Token:
        """Like ``get_token`` but returns the ``Token`` with its expiry, scopes and claims."""
        return self._token_from(self._get_entry(scope, audience))

    async def aget_token_info(self, scope: str, audience: Optional[str] = None) -> Token:
        return self._token_from(await self._aget_entry(scope, audience))

    def check_revocation(self) -> bool:
        """Fetch the revocation list now; True when it changed. Cached revoked tokens are dropped."""
        return self._revocation_list().refresh()  # on_change applies it to the cache

    async def acheck_revocation(self) -> bool:
        return await self._revocation_list().arefresh()

    def stop(self) -> None:
        """Stop background threads, drop cached tokens, close the transport. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._cache.clear()
            self._refresh_wakeup.notify_all()
            revocation, self._revocation = self._revocation, None
            refresher = self._refresher
        if revocation is not None:
            revocation.stop()
        if refresher is not None and refresher is not threading.current_thread():
            refresher.join(timeout=5.0)
        close = getattr(self._transport, "close", None)
        if callable(close):
            close()

    close = stop

    async def aclose(self) -> None:
        """``stop()`` that also awaits an async transport's ``aclose()``."""
        self.stop()
        aclose = getattr(self._transport, "aclose", None)
        if aclose is not None:
            await aclose()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> "Client":
        self._check_open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def __aenter__(self) -> "Client":
        self._check_open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ the slow path

    def _check_open(self) -> None:
        if self._closed:
            raise ClientClosedError("this Client was stopped; create a new one")

    def _key_for(self, scope: object, audience: object) -> Tuple[CacheKey, Hashable]:
        """(canonical key, raw key) after validating the arguments."""
        if isinstance(scope, str):
            norm = self._memo.get(scope)
            if norm is None:
                norm = normalise_scope(scope)
                if len(self._memo) >= _MEMO_LIMIT:
                    self._memo.clear()
                self._memo[scope] = norm
        else:
            norm = normalise_scope(scope)  # raises with the reason
        if audience is None:
            return norm, scope
        check_text(audience, "audience", max_len=_MAX_AUDIENCE_LEN)
        if " " in audience:  # type: ignore[operator]
            raise ValidationError("audience must not contain spaces")
        return (norm, audience), (scope, audience)  # type: ignore[return-value]

    def _lookup(
        self, key: CacheKey, raw: Hashable
    ) -> Tuple[Optional[Entry], Optional["Future[Entry]"], bool]:
        """Under the lock: (usable entry, flight to wait on, whether we lead it)."""
        self._check_open()
        now = time.monotonic()
        entry = self._cache.get(key)
        if entry is not None:
            jti = entry.revoked_jti
            if jti is not None:
                self._cache.remove(key)
                raise TokenRevokedException(
                    "the cached token for scope {!r} was revoked (jti {}); this is intentional: "
                    "alert your team".format(key if isinstance(key, str) else key[0], jti),
                    jti=jti,
                )
            if now < entry.refresh_at:
                self._cache.alias(raw, entry)
                return entry, None, False
            if now < entry.block_at:
                self._schedule_refresh(key, now)
                return entry, None, False
            if now < entry.expires and now < self._backoff.get(key, (0.0, 0))[0]:
                return entry, None, False  # a refresh failed just now: don't stall callers on it
        flight = self._flights.get(key)
        if flight is not None:
            return None, flight, False
        from concurrent.futures import Future

        flight = Future()
        flight.set_running_or_notify_cancel()  # a waiter's cancellation cannot cancel the fetch
        self._flights[key] = flight
        return None, flight, True

    def _get_entry(self, scope: str, audience: Optional[str]) -> Entry:
        key, raw = self._key_for(scope, audience)
        with self._lock:
            entry, flight, lead = self._lookup(key, raw)
        if entry is not None:
            return entry
        assert flight is not None
        if lead:
            self._fetch(key, flight)
        from concurrent.futures import TimeoutError as FutureTimeout

        try:
            return flight.result(timeout=self._timeout + 5.0)
        except OculusError as exc:
            return self._fallback(key, exc)
        except FutureTimeout:
            return self._fallback(key, NetworkTimeoutError("token request still running after the timeout"))

    async def _aget_entry(self, scope: str, audience: Optional[str]) -> Entry:
        import asyncio

        key, raw = self._key_for(scope, audience)
        with self._lock:
            entry, flight, lead = self._lookup(key, raw)
        if entry is not None:
            return entry
        assert flight is not None
        if lead:
            if callable(getattr(self._transport, "arequest", None)):
                task = asyncio.get_running_loop().create_task(self._afetch(key, flight))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            else:
                asyncio.get_running_loop().run_in_executor(None, self._fetch, key, flight)
        try:
            return await asyncio.wrap_future(flight)
        except OculusError as exc:
            return self._fallback(key, exc)

    def _fallback(self, key: CacheKey, exc: OculusError) -> Entry:
        """A failed refresh keeps a token that has not really expired."""
        with self._lock:
            entry = self._cache.get(key)
        if entry is not None and entry.revoked_jti is None and time.monotonic() < entry.expires:
            log.warning(
                "token refresh for %r failed (%s); using the cached token until it expires",
                key if isinstance(key, str) else key[0],
                type(exc).__name__,
            )
            return entry
        raise exc

    # ------------------------------------------------------------------ fetching

    def _fetch_plan(self, key: CacheKey) -> Tuple[Optional[str], float]:
        """(refresh token to use, deadline): never wait past the life of the token we hold."""
        deadline = time.monotonic() + self._timeout
        with self._lock:
            entry = self._cache.get(key)
        if entry is None or entry.revoked_jti is not None:
            return None, deadline
        if entry.expires > time.monotonic():
            # End just before expiry, so a failed refresh can still hand out the valid token.
            deadline = min(deadline, entry.expires - 0.1)
        return entry.refresh_token, deadline

    def _fetch(self, key: CacheKey, flight: "Future[Entry]") -> None:
        """Lead one fetch (in the calling thread) and settle its flight."""
        try:
            refresh_token, deadline = self._fetch_plan(key)
            try:
                entry = self._fetch_once(key, refresh_token, deadline)
            except OculusAPIError as exc:
                if refresh_token is None or not TokenEndpoint.refresh_refused(exc):
                    raise
                log.info("refresh token refused (%s); falling back to client credentials", exc.code)
                entry = self._fetch_once(key, None, deadline)
        except BaseException as exc:
            self._settle(key, flight, None, exc)
            if not isinstance(exc, Exception):
                raise
        else:
            self._settle(key, flight, entry, None)

    def _fetch_once(self, key: CacheKey, refresh_token: Optional[str], deadline: float) -> Entry:
        request, secrets = self._endpoint.request(key, refresh_token)
        sent_at = time.monotonic()
        response = _http.send(
            self._transport,
            request,
            policy=self._policy,
            deadline=deadline,
            what="token request",
            secrets=secrets,
            hints=self._endpoint.hints(key),
        )
        return self._endpoint.parse(key, response, sent_at)

    async def _afetch(self, key: CacheKey, flight: "Future[Entry]") -> None:
        """``_fetch`` on a natively async transport, as its own task (a caller's cancel can't stop it)."""
        try:
            refresh_token, deadline = self._fetch_plan(key)
            try:
                entry = await self._afetch_once(key, refresh_token, deadline)
            except OculusAPIError as exc:
                if refresh_token is None or not TokenEndpoint.refresh_refused(exc):
                    raise
                log.info("refresh token refused (%s); falling back to client credentials", exc.code)
                entry = await self._afetch_once(key, None, deadline)
        except BaseException as exc:
            self._settle(key, flight, None, exc)
            if not isinstance(exc, Exception):
                raise
        else:
            self._settle(key, flight, entry, None)

    async def _afetch_once(self, key: CacheKey, refresh_token: Optional[str], deadline: float) -> Entry:
        request, secrets = self._endpoint.request(key, refresh_token)
        sent_at = time.monotonic()
        response = await _http.asend(
            self._transport,
            request,
            policy=self._policy,
            deadline=deadline,
            what="token request",
            secrets=secrets,
            hints=self._endpoint.hints(key),
        )
        return self._endpoint.parse(key, response, sent_at)

    def _settle(
        self, key: CacheKey, flight: "Future[Entry]", entry: Optional[Entry], error: Optional[BaseException]
    ) -> None:
        start_poller = False
        with self._lock:
            if self._flights.get(key) is flight:
                del self._flights[key]
            if entry is not None and not self._closed:
                self._backoff.pop(key, None)
                self._cache.put(entry, time.monotonic())
                start_poller = self._revocation is None and self._revocation_interval is not None
            elif entry is None:  # back off after any failure: only holders of a valid token skip waiting
                _, failures = self._backoff.get(key, (0.0, 0))
                delay = min(30.0, 0.5 * (2**failures))
                self._backoff[key] = (time.monotonic() + delay, failures + 1)
        if entry is not None:
            log.debug("token for %r cached", key if isinstance(key, str) else key[0])
            flight.set_result(entry)
        else:
            if not isinstance(error, OculusError):
                error = OculusError("token fetch failed unexpectedly ({})".format(type(error).__name__))
            flight.set_exception(error)
        if start_poller:
            self._start_revocation_poller()

    # ------------------------------------------------------------------ refresh ahead

    def _schedule_refresh(self, key: CacheKey, now: float) -> None:
        """Under the lock: queue a background refresh of a STALE entry unless one is due already."""
        if key in self._flights or key in self._refresh_queue:
            return
        not_before, _ = self._backoff.get(key, (0.0, 0))
        if now < not_before:
            return
        self._refresh_queue.append(key)
        if self._refresher is None:
            self._refresher = threading.Thread(
                target=self._refresh_loop, name="oculus-lite-refresh[{}]".format(self.client_id), daemon=True
            )
            self._refresher.start()
        self._refresh_wakeup.notify()

    def _refresh_loop(self) -> None:
        while True:
            with self._lock:
                while not self._refresh_queue and not self._closed:
                    self._refresh_wakeup.wait()
                if self._closed:
                    return
                key = self._refresh_queue.pop(0)
                if key in self._flights:
                    continue
                from concurrent.futures import Future

                flight: "Future[Entry]" = Future()
                flight.set_running_or_notify_cancel()
                self._flights[key] = flight
            try:
                self._fetch(key, flight)
                flight.result(timeout=0)
            except OculusError as exc:
                with self._lock:
                    not_before = self._backoff.get(key, (time.monotonic(), 0))[0]
                log.warning(
                    "background refresh for %r failed (%s); still serving the cached token, "
                    "retrying in %.1f s",
                    key if isinstance(key, str) else key[0],
                    type(exc).__name__,
                    max(0.0, not_before - time.monotonic()),
                )
            except Exception:  # never die silently
                log.exception("background refresh crashed; the refresher keeps running")

    # ------------------------------------------------------------------ revocation

    def _revocation_list(self) -> "RevocationList":
        with self._lock:
            self._check_open()
            if self._revocation is None:
                from ..verify._revocation import RevocationList

                self._revocation = RevocationList(
                    self.base_url + "/oauth/revoked-tokens",
                    transport=self._transport,
                    interval=self._revocation_interval,
                    on_change=self._on_revocation_change,
                )
            return self._revocation

    def _start_revocation_poller(self) -> None:
        try:
            poller = self._revocation_list()
        except ClientClosedError:
            return
        poller.start()
        if self._closed:  # stop() ran between the two lines above: don't leave it running
            poller.stop()

    def _on_revocation_change(self, revoked: FrozenSet[str]) -> None:
        """Turn cached entries whose jti was revoked into tombstones (keeps it off the hit path)."""
        if not revoked:
            return
        from ..jwt import decode

        with self._lock:
            snapshot = list(self._cache.entries.values())
        hits: List[Tuple[Entry, str]] = []
        for entry in snapshot:
            try:
                jti = decode(entry.token).claims.get("jti")
            except OculusError:
                continue
            if isinstance(jti, str) and jti in revoked:
                hits.append((entry, jti))
        if not hits:
            return
        with self._lock:
            for entry, jti in hits:
                if self._cache.get(entry.key) is entry:
                    self._cache.put(entry.revoked_copy(jti), time.monotonic())
        log.warning("%d cached token(s) were revoked by the server", len(hits))

    # ------------------------------------------------------------------ helpers

    def _token_from(self, entry: Entry) -> Token:
        from datetime import datetime, timezone

        key = entry.key
        scope, audience = (key, None) if isinstance(key, str) else key
        extra = entry.extra or {}
        return Token(
            access_token=entry.token,
            scopes=tuple(scope.split(" ")),
            audience=audience,
            expires_at=datetime.fromtimestamp(entry.wall_expires, timezone.utc),
            token_type=extra.get("token_type", "Bearer"),
            refresh_token=entry.refresh_token,
            sdk_service_token=extra.get("sdk_service_token"),
            granted_scope=extra.get("scope", scope),
        )


#: The official SDK's name for the same class.
OculusClient = Client
