"""The token client: OAuth 2.0 client credentials with a lock-free cache hit path,
single-flight misses shared by threads and asyncio tasks, refresh ahead, and the
revocation list.

    with Client(client_id, client_secret, base_url) as client:
        token = client.get_token(scope="db:read")

The hot path: ``get_token`` reads the cache's ``by_spelling`` dict and compares one
float, with no lock. Everything past a hit is one flow, ``_entry_plan``, that both
``get_token`` and ``aget_token`` run (``run`` / ``arun`` from ``_engine``): look the
key up under ``self._lock``; hand out a usable entry, or lead a fetch (``_fetch_plan``,
spawned so a caller's cancellation cannot stop it) or join the one in flight. Network
I/O never happens under the lock. Refresh ahead and revocation polling run on one
background worker that holds this client weakly.
"""

import logging
import os
import threading
import weakref
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    FrozenSet,
    Hashable,
    Iterable,
    List,
    Optional,
    Tuple,
    TypeVar,
    Union,
)

from .._config import (
    BASE_URL_VARS,
    CLIENT_ID_VARS,
    CLIENT_SECRET_VARS,
    DEFAULT_BASE_URL,
    check_count,
    check_seconds,
    check_text,
    from_env,
    validate_base_url,
)
from .._engine._clock import SYSTEM_CLOCK, Clock
from .._engine._flight import Abandoned, Flight, SingleFlight
from .._engine._fork import after_fork_in_child
from .._engine._plan import Join, Plan, Spawn, arun, run
from .._engine._shells import blocking, coroutine
from .._engine._worker import Worker
from .._http._models import AsyncTransport, Transport
from .._http._registry import resolve_transport
from .._http._send import RetryPolicy
from .._http._tls import VerifyTypes
from .._secret import Secret
from ..exceptions import (
    ClientClosedError,
    ConfigurationError,
    OculusError,
    RateLimitError,
    TokenRevokedException,
    ValidationError,
)
from ._cache import CacheKey, Entry, EntryState, TokenCache
from ._models import Token
from ._oauth import TokenEndpoint, normalise_scope, token_plan

if TYPE_CHECKING:  # pragma: no cover
    from ..governance._audit import AuditEmitter
    from ..governance._context import TaskContext
    from ..governance._credentials import Credentials
    from ..governance._delegation import DelegatedSource, DelegatedToken
    from ..governance._evaluator import CapabilityEvaluator
    from ..governance._runtime import Runtime
    from ..governance._state import AgentState
    from ..verify._revocation import RevocationList
    from ..verify._verifier import JwksVerifier
    from ._fleet import FleetCache
    from ._store import TokenStore

_F = TypeVar("_F", bound=Callable[..., Any])

__all__ = ["Client", "OculusClient"]

log = logging.getLogger("oculus_lite.client")

_MAX_AUDIENCE_LEN = 2048
_MEMO_LIMIT = 4096
#: How much longer than its own timeout a caller waits for a fetch another caller leads.
_JOIN_SLACK = 1.0
_MAX_COOL_DOWN = 3600.0  # a Retry-After beyond an hour is honoured for an hour
_MAX_FAILING_KEYS = 1024  # failure records kept before those whose wait is over are dropped


def _asked_to_wait(error: BaseException) -> float:
    """Seconds a 429 from the token service asked us to wait (0 for anything else, and for
    our own cool-down's error, so re-raising it never extends the wait)."""
    if isinstance(error, RateLimitError) and error.code != "cool_down" and error.retry_after:
        return max(0.0, error.retry_after)
    return 0.0


class Client:
    """Gets, caches and renews scoped access tokens for one agent.

    Args:
        client_id, client_secret, base_url: explicit values win; then ``AGENT_CLIENT_ID`` /
            ``AGENT_CLIENT_SECRET`` / ``ANTI_AI_URL``; then ``OCULUS_CLIENT_ID`` /
            ``OCULUS_CLIENT_SECRET`` / ``OCULUS_BASE_URL``; base URL defaults to
            https://api.antiailabs.com. Missing credentials raise ``ConfigurationError`` at
            the first call that needs them.
        task_id: sent with every client-credentials request (``OCULUS_TASK_ID``).
        fail_closed, scopes: the official SDK's governance settings (see ``startup``).
        transport: ``None`` (urllib), a registered name (``"pooled"``, ``"httpx"``...), or an
            object meeting ``Transport`` (``request``) and/or ``AsyncTransport`` (``arequest``).
        timeout: seconds for one whole ``get_token`` call, retries included.
        retries: retries of connection errors, timeouts, 5xx and 429.
        cache_size: how many (scope, audience) tokens to keep.
        refresh_margin: stop handing out a token this many seconds before it expires.
        revocation_interval: seconds between revocation-list polls; ``None`` turns it off.
        allow_insecure_http: permit ``http://`` to a non-loopback host.
        verify: TLS verification for a transport built from a name (True, CA bundle path,
            SSLContext).
        clock: where time comes from (``oculus_lite.ManualClock`` in tests).
        store: a ``TokenStore`` shared by the processes of a fleet (``FileTokenStore`` for one
            host, ``oculus_lite_redis.RedisTokenStore`` for many), so the fleet asks for one
            token per key per lifetime. The in-process cache stays in front of it. Default:
            the store ``OCULUS_TOKEN_STORE`` names (``file:``, ``file:/path``, ``redis://...``),
            or the file store when ``OCULUS_LAMBDA_CACHE=true``; else none.
        sync_interval: seconds between background refreshes of the capability map and the
            integration credentials once ``startup()`` ran.
        issuer: when set, the agent token's ``iss`` must equal it (deployments behind gateways
            see other host names, so it is not checked by default).
        project_file: the project file with custom capabilities (``oculus.json``, or
            ``oculus.toml``); default ``OCULUS_CONFIG``; never read from the working directory.

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
        task_id: Optional[str] = None,
        fail_closed: bool = True,
        scopes: Optional[List[str]] = None,
        *,
        transport: Union[Transport, AsyncTransport, str, None] = None,
        timeout: float = 10.0,
        retries: int = 3,
        cache_size: int = 1024,
        refresh_margin: float = 10.0,
        revocation_interval: Optional[float] = 15.0,
        allow_insecure_http: bool = False,
        verify: VerifyTypes = True,
        clock: Optional[Clock] = None,
        store: Optional["TokenStore"] = None,
        sync_interval: float = 60.0,
        issuer: Optional[str] = None,
        project_file: Optional[str] = None,
    ) -> None:
        client_id, _ = from_env(client_id, CLIENT_ID_VARS)
        client_secret, _ = from_env(client_secret, CLIENT_SECRET_VARS)
        base_url, _ = from_env(base_url, BASE_URL_VARS)
        task_id, _ = from_env(task_id, ("OCULUS_TASK_ID",))
        if client_id:  # "" means none (from_delegation_token passes "" so nothing is read from the env)
            check_text(client_id, "client_id", max_len=512, error=ConfigurationError)
        if client_secret:
            check_text(client_secret, "client_secret", max_len=4096, error=ConfigurationError)
        self._timeout = check_seconds(timeout, "timeout")
        margin = check_seconds(refresh_margin, "refresh_margin", allow_zero=True)
        if revocation_interval is not None:
            revocation_interval = check_seconds(revocation_interval, "revocation_interval")
        self.client_id = client_id
        self.base_url = validate_base_url(
            base_url or DEFAULT_BASE_URL, allow_insecure_http=allow_insecure_http
        )
        self.task_id = task_id
        self.fail_closed = bool(fail_closed)
        self.scopes = list(scopes) if scopes is not None else None
        self._clock = clock if clock is not None else SYSTEM_CLOCK
        self._now = self._clock.monotonic  # the hit path's clock read
        self._policy = RetryPolicy(retries=check_count(retries, "retries"))
        self._endpoint: Optional[TokenEndpoint] = None
        self._missing = [
            (name, env)
            for name, value, env in (
                ("client_id", client_id, " or ".join(CLIENT_ID_VARS)),
                ("client_secret", client_secret, " or ".join(CLIENT_SECRET_VARS)),
            )
            if not value
        ]
        if client_id and client_secret:
            self._endpoint = TokenEndpoint(
                self.base_url, client_id, client_secret, timeout=self._timeout, margin=margin, task_id=task_id
            )
        self._transport: Any = resolve_transport(transport, verify=verify)
        self._cache = TokenCache(check_count(cache_size, "cache_size", minimum=1))
        self._hits = self._cache.by_spelling  # the lock-free hit path reads this dict...
        self._lru = self._cache.lru  # ...and bumps recency here
        self._lock = threading.Lock()
        self._flights: SingleFlight[CacheKey, Entry] = SingleFlight()
        self._backoff: Dict[CacheKey, Tuple[float, int]] = {}
        self._cool_until: Dict[CacheKey, float] = {}  # a 429's Retry-After, per key
        self._memo: Dict[str, str] = {}
        self._closing = threading.Event()
        self._revocation_interval = revocation_interval
        self._revocation: Optional["RevocationList"] = None
        self._refresh_queue: List[CacheKey] = []
        self._worker = Worker(self, "oculus-lite-worker[{}]".format(client_id), self._clock)
        self._fleet: Optional["FleetCache"] = None
        self._owns_store = store is None
        if store is None:
            from ._store_spec import store_from_environment

            store = store_from_environment()  # OCULUS_TOKEN_STORE, OCULUS_LAMBDA_CACHE
        if store is not None and client_id and client_secret:
            from ._fleet import FleetCache

            self._fleet = FleetCache(
                store,
                token_url=self.base_url + "/oauth/token",
                client_id=client_id,
                client_secret=client_secret,
                clock=self._clock,
                timeout=self._timeout,
                margin=margin,
                verifier=_WeakCall(self, Client._verifier),
                on_lease=_WeakCall(self, Client._extend_leases_soon),
            )
        self._jwks: Optional["JwksVerifier"] = None
        self._sync_interval = check_seconds(sync_interval, "sync_interval")
        if issuer is not None:
            check_text(issuer, "issuer", max_len=2048, error=ConfigurationError)
        self._issuer = issuer
        self._project_file = project_file
        self._gov: Optional["Runtime"] = None
        self._delegated: Optional["DelegatedSource"] = None
        self._leeway = 30.0  # JWT clock-skew allowance; 0 for a delegated token's own exp
        after_fork_in_child(self, Client._after_fork)

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
            entry = self._hits.get(scope if audience is None else (scope, audience))
        except TypeError:  # unhashable argument: let validation explain
            entry = None
        if entry is not None and self._now() < entry.refresh_at:
            try:
                self._lru.move_to_end(entry.key)
            except KeyError:  # evicted by another thread just now
                pass
            return entry.token
        return run(self._entry_plan(scope, audience), self._transport, self._sleep).token

    async def aget_token(self, scope: str, audience: Optional[str] = None) -> str:
        """``get_token`` for coroutines: a hit returns at once; a miss never blocks the loop."""
        try:
            entry = self._hits.get(scope if audience is None else (scope, audience))
        except TypeError:
            entry = None
        if entry is not None and self._now() < entry.refresh_at:
            try:
                self._lru.move_to_end(entry.key)
            except KeyError:
                pass
            return entry.token
        return (await arun(self._entry_plan(scope, audience), self._transport, self._clock.asleep)).token

    def _get_token_info(self, scope: str, audience: Optional[str] = None) -> Plan[Token]:
        """Like ``get_token`` but returns the ``Token`` with its expiry, scopes and claims."""
        return self._token_from((yield from self._entry_plan(scope, audience)))

    get_token_info = blocking(_get_token_info)
    aget_token_info = coroutine(_get_token_info, "aget_token_info")

    def _invalidate_token(self, token: str) -> Plan[bool]:
        """Forget ``token`` (say a downstream service answered 401 to it): the next call gets a
        new one. With a shared store the fleet refetches once, not once per process. True when
        this client held it."""
        with self._lock:
            found = [entry for entry in self._cache.entries() if entry.token == token]
            for entry in found:
                self._cache.remove(entry.key)
        if self._fleet is not None:
            for entry in found:
                yield from self._fleet.invalidate_plan(entry.key, token)
        return bool(found)

    invalidate_token = blocking(_invalidate_token)
    ainvalidate_token = coroutine(_invalidate_token, "ainvalidate_token")

    def store_stats(self) -> Dict[str, int]:
        """Counters of the shared store's use (hits, leases won, waits, local fetches, errors)."""
        return dict(self._fleet.stats) if self._fleet is not None else {}

    def _check_revocation(self) -> Plan[bool]:
        """Fetch the revocation list now; True when it changed. Cached revoked tokens are dropped."""
        return (yield from self._revocation_list().refresh_plan())

    check_revocation = blocking(_check_revocation)
    acheck_revocation = coroutine(_check_revocation, "acheck_revocation")

    def stop(self) -> None:
        """Stop background work, drop cached tokens, close the transport. Idempotent; returns
        within the client's timeout whatever the network does."""
        thread = self._begin_stop()
        if thread is not None:
            thread.join(self._timeout)
        self._close_governance()
        self._close_store()
        close = getattr(self._transport, "close", None)
        if callable(close):
            close()

    close = stop

    def _close_governance(self) -> None:
        """Flush and stop the audit emitter (bounded), close the verifier."""
        gov, jwks = self._gov, self._jwks
        if gov is not None and gov.audit is not None:
            gov.audit.stop(self._timeout)
        if jwks is not None:
            jwks.close()

    def _close_store(self) -> None:
        fleet = self._fleet
        if fleet is not None and self._owns_store:  # a store passed in may serve other clients
            try:
                fleet.store.close()
            except Exception as exc:  # closing never fails stop()
                log.warning("closing the token store failed (%s)", type(exc).__name__)

    async def aclose(self) -> None:
        """``stop()`` for coroutines: the worker is joined off the event loop, and an async
        transport's ``aclose()`` is awaited."""
        import asyncio

        thread = self._begin_stop()
        loop = asyncio.get_running_loop()
        if thread is not None:
            await loop.run_in_executor(None, thread.join, self._timeout)
        await loop.run_in_executor(None, self._close_governance)
        await loop.run_in_executor(None, self._close_store)
        aclose = getattr(self._transport, "aclose", None)
        if aclose is not None:
            await aclose()
            return
        close = getattr(self._transport, "close", None)
        if callable(close):
            await loop.run_in_executor(None, close)

    @property
    def closed(self) -> bool:
        return self._closing.is_set()

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

    # ------------------------------------------------------------------ governance

    def _startup(self) -> Plan[None]:
        """Get and verify the agent token, load the capability map, the revocation list and the
        integration credentials, and start background sync and the audit emitter. Idempotent;
        a wrapped tool call or ``task()`` starts the client by itself.

        Raises:
            OculusStartupError: with ``fail_closed=True``, the step that failed (``step``).
        """
        yield from self._runtime().startup_plan(self)

    startup = blocking(_startup)
    astartup = coroutine(_startup, "astartup")

    @property
    def credentials(self) -> "Credentials":
        """The integrations' credentials (read-only; ``repr`` never shows a value; a missing one
        raises ``CredentialError``). Starts the client if needed."""
        return self._governance_state().credentials

    def tool(
        self, capability: str, *, amount: Optional[str] = None, result_count: Optional[str] = None
    ) -> Callable[[_F], _F]:
        """Decorator: every call of the function is checked against ``capability`` (scope,
        ``deny_always``, constraints) and audited; the function itself is left untouched.

        Args:
            amount: the parameter carrying an amount in cents (default: one named ``amount_cents``).
            result_count: the parameter carrying a requested result count (default: one named
                ``result_count``); a sized return value is counted against ``max_results`` too.
        """
        from ..governance._enforce import enforce

        def decorate(fn: _F) -> _F:
            return enforce(self, capability, fn, amount=amount, result_count=result_count)

        return decorate

    def wrap_tools(
        self, tool_functions: Iterable[_F], *, unprotected: Iterable[Callable[..., Any]] = ()
    ) -> List[_F]:
        """Enforced versions of ``tool_functions``: already enforced ones as they are, ones
        tagged the official way (``_oculus_capability``) wrapped. A function with no capability
        raises ``ConfigurationError`` unless it is listed in ``unprotected``."""
        from ..governance._enforce import enforce, is_enforced

        allowed = list(unprotected)
        wrapped: List[_F] = []
        for fn in tool_functions:
            capability = getattr(fn, "_oculus_capability", None)
            if is_enforced(fn):
                wrapped.append(fn)
            elif isinstance(capability, str):
                wrapped.append(enforce(self, capability, fn))
            elif any(fn is ok for ok in allowed):
                wrapped.append(fn)
            else:
                raise ConfigurationError(
                    'wrap_tools: {!r} has no capability; decorate it with @client.tool("...") or '
                    "list it in unprotected=[...] to run it unenforced".format(getattr(fn, "__name__", fn))
                )
        return wrapped

    def task(self, task_id: str) -> "TaskContext":
        """A ``TaskContext``: ``with client.task("refund-42") as ctx:`` scopes the task id to
        every enforced call inside (threads via ``ctx.bind``, asyncio tasks by themselves)."""
        from ..governance._context import TaskContext

        return TaskContext(self, task_id)

    def _delegate(
        self,
        child_agent_id: str,
        capabilities: List[str],
        task_id: str,
        ttl_seconds: int,
        constraints: Optional[Dict[str, Any]] = None,
    ) -> "Plan[DelegatedToken]":
        """A token for ``child_agent_id`` with a subset of this agent's capabilities, for
        ``task_id``, living ``ttl_seconds`` (within this agent's token), with ``constraints``
        no looser than this agent's. Checked here first, with the server's codes.

        Raises:
            DelegationError: ``reason`` is the code (CAPABILITY_ESCALATION, CONSTRAINT_ESCALATION,
                DELEGATION_DEPTH_EXCEEDED, TTL_EXCEEDS_PARENT, ...).
        """
        from ..governance._delegation import delegate_plan

        return (
            yield from delegate_plan(self, child_agent_id, capabilities, task_id, ttl_seconds, constraints)
        )

    delegate = blocking(_delegate)
    adelegate = coroutine(_delegate, "adelegate")

    @classmethod
    def from_delegation_token(
        cls,
        token: str,
        base_url: str,
        sdk_service_token: str = "",
        fail_closed: bool = True,
        *,
        renew: Optional[Callable[[], str]] = None,
        **options: Any,
    ) -> "Client":
        """A client acting as the child agent of a delegated ``token``: it verifies the token
        against ``base_url``'s JWKS before trusting any claim, never reads credentials from the
        environment, and holds only that token (``renew``, a callable the parent supplies, may
        hand it a new one; without it the expired token raises ``TokenExpiredError``).
        ``sdk_service_token`` enables the capability map, credentials and audit."""
        from ..governance._delegation import DelegatedSource

        check_text(token, "token", max_len=16384, error=ConfigurationError)
        client = cls("", "", base_url, "", fail_closed, **options)  # "": never from the environment
        client._delegated = DelegatedSource(token, "", sdk_service_token or "", renew)
        client._leeway = 0.0
        return client

    @classmethod
    def from_enroll_token(
        cls,
        enroll_token: str,
        base_url: str,
        *,
        store: Union[str, "os.PathLike[str]", Callable[..., Any], None] = None,
        **options: Any,
    ) -> "Client":
        """Trade a one-time enroll token for this agent's ``client_id``/``client_secret`` and
        return a client using them. The enroll token works once: pass ``store`` (a callable
        receiving ``client_id=``/``client_secret=``, or a file path written atomically with
        mode 0600) so the credentials are kept before this returns.

        Raises:
            EnrollmentError: rejected, used or expired enroll token (``code`` says which).
        """
        from ..governance._delegation import enroll_plan, save_credentials

        url = validate_base_url(base_url, allow_insecure_http=bool(options.get("allow_insecure_http")))
        clock: Clock = options.get("clock") or SYSTEM_CLOCK
        timeout = check_seconds(options.get("timeout", 10.0), "timeout")
        transport: Any = resolve_transport(options.get("transport"), verify=options.get("verify", True))
        try:
            client_id, secret = run(enroll_plan(timeout, url, enroll_token, clock), transport, clock.sleep)
        finally:
            if options.get("transport") is None or isinstance(options.get("transport"), str):
                transport.close()  # built here from a name: ours to close
        if store is not None:
            save_credentials(store, client_id, secret)
        return cls(client_id, secret, url, **options)

    def _runtime(self) -> "Runtime":
        gov = self._gov
        if gov is None:
            from ..governance._evaluator import CapabilityEvaluator
            from ..governance._runtime import Runtime

            with self._lock:
                if self._gov is None:
                    key = normalise_scope(" ".join(self.scopes)) if self.scopes else ""
                    self._gov = Runtime(
                        key=key,
                        fail_closed=self.fail_closed,
                        sync_interval=self._sync_interval,
                        project_file=self._project_file,
                        evaluator=CapabilityEvaluator(now=self._clock.time),
                    )
                gov = self._gov
        return gov

    def _governance_state(self) -> "AgentState":
        """The state enforced calls decide on: no lock, no I/O while the agent token is fresh."""
        state = self._fresh_state()
        if state is not None:
            return state
        return run(self._runtime().state_plan(self), self._transport, self._sleep)

    async def _agovernance_state(self) -> "AgentState":
        state = self._fresh_state()
        if state is not None:
            return state
        return await arun(self._runtime().state_plan(self), self._transport, self._clock.asleep)

    def _fresh_state(self) -> "Optional[AgentState]":
        """The published state while the agent token it was built from is still the cached,
        FRESH one (the governance hit path); None sends the caller through ``state_plan``."""
        gov = self._gov
        if gov is None:
            return None
        state, built_from = gov.current
        if built_from is None or self._hits.get(gov.key) is not built_from:
            return None
        return state if self._now() < built_from.refresh_at else None

    @property
    def _governance_audit(self) -> "Optional[AuditEmitter]":
        gov = self._gov
        return gov.audit if gov is not None else None

    @property
    def _governance_evaluator(self) -> "CapabilityEvaluator":
        return self._runtime().evaluator

    def _start_governance(self, gov: "Runtime", entry: Optional[Entry]) -> None:
        """After startup: background sync and the audit emitter."""
        self._worker.schedule("governance", gov.sync_interval if not gov.failed else 1.0, _governance_job)
        if entry is not None:
            self._renewed_agent_token(gov, entry)

    def _renewed_agent_token(self, gov: "Runtime", entry: Entry) -> None:
        """A verified agent token was published: the audit emitter sends with its service token
        (and is started now if startup could not start it)."""
        service_token = (entry.extra or {}).get("sdk_service_token")
        if not service_token:
            return
        emitter = gov.audit
        if emitter is not None:
            emitter.set_service_token(service_token)
            return
        state = gov.current[0]
        if state is None:
            return
        from ..governance._audit import AuditEmitter

        with gov._lock:  # one emitter per client
            if gov.audit is not None or self._closing.is_set():
                return
            secret = self._endpoint._secret.reveal() if self._endpoint is not None else None
            emitter = AuditEmitter(
                self.base_url,
                service_token,
                state.agent_id,
                transport=self._transport,
                clock=self._clock,
                renew_token=_WeakCall(self, Client._renew_service_token),
                secrets=[s for s in (secret,) if s],
                request_timeout=self._timeout,
            )
            emitter.add_secrets(*state.credentials.secrets())
            emitter.start()
            gov.audit = emitter
        if self._closing.is_set():  # stop() began meanwhile and may not have seen it: stop it here
            emitter.stop(self._timeout)

    def _renew_service_token(self) -> Optional[str]:
        """For the audit emitter, after a 401: the service token of a newer agent token than the
        one it was refused with (the cached one when the sync renewed it already, else fetched)."""
        gov = self._gov
        if gov is None or gov.audit is None:
            return None
        refused = gov.audit._token
        with self._lock:
            held = self._cache.get(gov.key)
        if held is not None and held.revoked_jti is None and self._now() < held.expires:
            newer = (held.extra or {}).get("sdk_service_token")
            if isinstance(newer, str) and newer and newer != refused:
                return newer
        entry = run(self._refetch_plan(gov.key), self._transport, self._sleep)
        service_token = (entry.extra or {}).get("sdk_service_token")
        return service_token if isinstance(service_token, str) else None

    # ------------------------------------------------------------------ the slow path

    def _sleep(self, seconds: float) -> None:
        if self._clock.sleep(seconds, self._closing):
            raise ClientClosedError("this Client was stopped while waiting")

    def _check_open(self) -> None:
        if self._closing.is_set():
            raise ClientClosedError("this Client was stopped; create a new one")

    def _token_endpoint(self) -> TokenEndpoint:
        """The token endpoint; without credentials, the error that says what to set."""
        endpoint = self._endpoint
        if endpoint is None:
            missing = self._missing
            raise ConfigurationError(
                "missing {0}: pass {0} to Client(...) or set {1}".format(
                    " and ".join(name for name, _ in missing), "; ".join(env for _, env in missing)
                )
            )
        return endpoint

    def _check_source(self) -> None:
        """Fail before anything is sent when this client has nowhere to get a token from."""
        if self._delegated is None:
            self._token_endpoint()

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

    def _entry_plan(self, scope: str, audience: Optional[str]) -> Plan[Entry]:
        """A usable entry for (scope, audience): cached, or fetched by the one leader of its key."""
        key, raw = self._key_for(scope, audience)
        return (yield from self._entry_plan_for(key, raw))

    def _entry_plan_for(self, key: CacheKey, raw: Hashable) -> Plan[Entry]:
        self._check_source()
        while True:
            with self._lock:
                entry, flight, lead = self._lookup(key, raw)
            if entry is not None:
                return entry
            assert flight is not None
            if lead:
                yield Spawn(self._fetch_plan(key, flight))
            try:
                joined: Entry = yield Join(flight, self._timeout + _JOIN_SLACK)
                return joined
            except Abandoned:
                continue  # its leader was cancelled: lead a new fetch
            except OculusError as exc:
                return self._fallback(key, exc)

    def _lookup(self, key: CacheKey, raw: Hashable) -> Tuple[Optional[Entry], Optional[Flight[Entry]], bool]:
        """Under the lock: (usable entry, None, False) or (None, flight, whether we lead it)."""
        self._check_open()
        if self._restart_worker:  # first slow path in a forked child
            self._restart_worker = False
            self._worker.ensure_running()
        now = self._now()
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
            state = entry.state(now)
            if state is EntryState.FRESH:
                self._cache.alias(raw, entry)
                return entry, None, False
            if state is EntryState.STALE:
                self._schedule_refresh(key, now)
                return entry, None, False
            if state is EntryState.MARGIN and now < self._backoff.get(key, (0.0, 0))[0]:
                return entry, None, False  # a refresh failed just now: don't stall callers on it
        flight, lead = self._flights.lead_or_join(key)
        return None, flight, lead

    def _refetch_plan(self, key: CacheKey) -> Plan[Entry]:
        """A new token for ``key`` even though the cached one is fresh (its service token was
        refused); single flight like any fetch, and callers keep the cached one meanwhile."""
        self._check_source()
        with self._lock:
            self._check_open()
            flight, lead = self._flights.lead_or_join(key)
        if lead:
            yield Spawn(self._fetch_plan(key, flight))
        try:
            joined: Entry = yield Join(flight, self._timeout + _JOIN_SLACK)
            return joined
        except OculusError as exc:
            return self._fallback(key, exc)

    def _fallback(self, key: CacheKey, exc: OculusError) -> Entry:
        """A failed refresh keeps a token that has not really expired."""
        with self._lock:
            entry = self._cache.get(key)
        if entry is not None and entry.revoked_jti is None and self._now() < entry.expires:
            log.warning(
                "token refresh for %r failed (%s); using the cached token until it expires",
                key if isinstance(key, str) else key[0],
                type(exc).__name__,
            )
            return entry
        raise exc

    # ------------------------------------------------------------------ fetching

    def _fetch_bounds(self, key: CacheKey) -> Tuple[Optional[Secret], float]:
        """(refresh token to use, deadline): never wait past the life of the token we hold."""
        deadline = self._now() + self._timeout
        with self._lock:
            entry = self._cache.get(key)
        if entry is None or entry.revoked_jti is not None:
            return None, deadline
        if entry.expires > self._now():
            # End just before expiry, so a failed refresh can still hand out the valid token.
            deadline = min(deadline, entry.expires - 0.1)
        return (Secret(entry.refresh_token) if entry.refresh_token else None), deadline

    def _fetch_plan(self, key: CacheKey, flight: Flight[Entry]) -> Plan[None]:
        """Lead one fetch and settle its flight (never raises an ``Exception``)."""
        try:
            entry = yield from self._grant_plan(key)
        except BaseException as exc:
            self._settle(key, flight, None, exc)
            if not isinstance(exc, Exception):
                raise
        else:
            self._settle(key, flight, entry, None)

    def _grant_plan(self, key: CacheKey) -> Plan[Entry]:
        """Where a new token comes from: the delegated token (a delegated client), the fleet's
        shared store, or the token endpoint."""
        if self._delegated is not None:
            return (yield from self._delegated.fetch_plan(self, key))
        endpoint = self._token_endpoint()
        refresh_token, deadline = self._fetch_bounds(key)
        if self._fleet is not None:  # (the fleet keeps its cool-downs in the shared store)
            return (
                yield from self._fleet.fetch_plan(
                    endpoint, key, refresh_token, deadline=deadline, policy=self._policy
                )
            )
        self._check_cooling(key)
        return (
            yield from token_plan(
                endpoint, key, refresh_token, deadline=deadline, policy=self._policy, clock=self._clock
            )
        )

    def _check_cooling(self, key: CacheKey) -> None:
        """Send nothing while the token service's Retry-After for this key runs: a 429 asked
        this client to wait, so the next callers get the error without a request (a caller
        holding a valid token still gets that token)."""
        with self._lock:
            until = self._cool_until.get(key)
            now = self._now()
            if until is not None and now >= until:
                del self._cool_until[key]
        if until is not None and now < until:
            raise RateLimitError(
                "token request not sent: the token service answered 429 and asked to wait; "
                "retry in {:.1f} s".format(until - now),
                code="cool_down",
                retry_after=until - now,
            )

    def _settle(
        self, key: CacheKey, flight: Flight[Entry], entry: Optional[Entry], error: Optional[BaseException]
    ) -> None:
        poll = False
        with self._lock:
            now = self._now()
            if entry is not None and not self._closing.is_set():
                self._backoff.pop(key, None)
                self._cool_until.pop(key, None)
                self._cache.put(entry, now)
                poll = self._revocation_interval is not None and self._revocation is None
            elif entry is None and isinstance(error, Exception):
                # Back off after any failure: only holders of a valid token skip waiting.
                _, failures = self._backoff.get(key, (0.0, 0))
                until = now + min(30.0, 0.5 * (2**failures))
                wait = _asked_to_wait(error)
                if wait > 0:
                    cool = now + min(wait, _MAX_COOL_DOWN)
                    self._cool_until[key] = max(cool, self._cool_until.get(key, 0.0))
                    until = max(until, cool)
                self._backoff[key] = (until, failures + 1)
                if len(self._backoff) > _MAX_FAILING_KEYS:
                    self._forget_past_failures(now)
            self._flights.finish(key, flight)
        if entry is not None:
            log.debug("token for %r cached", key if isinstance(key, str) else key[0])
            flight.set_result(entry)
        elif not isinstance(error, Exception):  # cancelled or interrupted: waiters take over
            flight.set_error(Abandoned())
        elif isinstance(error, OculusError):
            flight.set_error(error)
        else:
            flight.set_error(OculusError("token fetch failed unexpectedly ({})".format(type(error).__name__)))
        if poll:
            self._start_revocation_polling()

    def _forget_past_failures(self, now: float) -> None:
        """Under the lock: keep the failure records bounded when callers ask for many scopes
        of a failing server (a record whose wait is over only keeps its doubling count)."""
        for key in [k for k, (until, _) in self._backoff.items() if until <= now]:
            del self._backoff[key]
        for key in [k for k, until in self._cool_until.items() if until <= now]:
            del self._cool_until[key]

    # ------------------------------------------------------------------ background work

    def _schedule_refresh(self, key: CacheKey, now: float) -> None:
        """Under the lock: queue a background refresh of a STALE entry unless one is due already."""
        if self._flights.busy(key) or key in self._refresh_queue:
            return
        if now < self._backoff.get(key, (0.0, 0))[0]:
            return
        self._refresh_queue.append(key)
        self._worker.schedule("refresh", 0.0, _refresh_job)

    def _begin_stop(self) -> Optional[threading.Thread]:
        with self._lock:
            if self._closing.is_set():
                return None
            self._closing.set()
            self._cache.clear()
            self._refresh_queue.clear()
        return self._worker.signal_stop()

    def _after_fork(self) -> None:
        """In a forked child: no worker thread, no flights led by parent threads, a fresh lock.
        Emptying the hit path's dict sends each next call through the slow path once, which
        restarts background work here."""
        self._lock = threading.Lock()
        self._cache.forget_spellings()
        self._restart_worker = True

    _restart_worker = False

    def _verifier(self) -> "JwksVerifier":
        """The issuer's JWKS verifier (shared tokens are checked with it before use)."""
        with self._lock:
            if self._jwks is None:
                from ..verify._verifier import JwksVerifier

                self._jwks = JwksVerifier(
                    self.base_url,
                    issuer=self._issuer,
                    leeway=self._leeway,
                    check_revocation=False,
                    transport=self._transport,
                    timeout=self._timeout,
                    clock=self._clock,
                )
            return self._jwks

    def _extend_leases_soon(self) -> None:
        from ._fleet import LEASE_SECONDS

        self._worker.schedule("leases", LEASE_SECONDS / 3.0, _lease_job)

    def _revocation_list(self) -> "RevocationList":
        with self._lock:
            self._check_open()
            if self._revocation is None:
                from ..verify._revocation import RevocationList

                self._revocation = RevocationList(
                    self.base_url + "/oauth/revoked-tokens",
                    transport=self._transport,
                    interval=self._revocation_interval,
                    timeout=self._timeout,
                    on_change=_WeakCall(self, Client._on_revocation_change),
                    clock=self._clock,
                )
            return self._revocation

    def _start_revocation_polling(self) -> None:
        try:
            revocation = self._revocation_list()
        except ClientClosedError:
            return
        self._worker.schedule("revocation", 0.0, _revocation_job)
        if self._closing.is_set():  # stop() ran meanwhile: don't leave it scheduled
            self._worker.cancel("revocation")
        del revocation

    def _on_revocation_change(self, revoked: FrozenSet[str]) -> None:
        """Turn cached entries whose jti was revoked into tombstones (keeps it off the hit path)."""
        if not revoked:
            return
        from ..jwt import decode

        with self._lock:
            snapshot = self._cache.entries()
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
            now = self._now()
            for entry, jti in hits:
                if self._cache.get(entry.key) is entry:
                    self._cache.put(entry.revoked_copy(jti), now)
        log.warning("%d cached token(s) were revoked by the server", len(hits))
        fleet = self._fleet
        if fleet is not None:  # one compare-and-delete each: the fleet refetches once
            for entry, _ in hits:
                run(fleet.invalidate_plan(entry.key, entry.token), self._transport, self._sleep)

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


def _refresh_job(client: Client) -> Optional[float]:
    """Worker job: refresh every queued STALE key, one after the other, then sleep."""
    while client._endpoint is not None or client._delegated is not None:
        with client._lock:
            if client._closing.is_set() or not client._refresh_queue:
                return None
            key = client._refresh_queue.pop(0)
            if client._flights.busy(key):
                continue
            flight, _ = client._flights.lead_or_join(key)
        run(client._fetch_plan(key, flight), client._transport, client._sleep)
        try:
            flight.result(0)
        except OculusError as exc:
            with client._lock:
                not_before = client._backoff.get(key, (client._now(), 0))[0]
            log.warning(
                "background refresh for %r failed (%s); still serving the cached token, retrying in %.1f s",
                key if isinstance(key, str) else key[0],
                type(exc).__name__,
                max(0.0, not_before - client._now()),
            )
    return None


def _governance_job(client: Client) -> Optional[float]:
    """Worker job: one governance sync round; the delay until the next."""
    gov = client._gov
    if gov is None or client._closing.is_set():
        return None
    try:
        run(gov.sync_plan(client), client._transport, client._sleep)
    except OculusError as exc:
        log.warning(
            "governance sync failed (%s: %s); keeping the current map and credentials",
            type(exc).__name__,
            exc.message,
        )
        return min(gov.sync_interval, 5.0) if gov.failed else gov.sync_interval
    return gov.sync_interval


def _lease_job(client: Client) -> Optional[float]:
    """Worker job: extend the shared-store leases of fetches under way."""
    fleet = client._fleet
    return fleet.extend_leases() if fleet is not None else None


def _revocation_job(client: Client) -> Optional[float]:
    """Worker job: poll the revocation list; the delay until the next poll."""
    revocation = client._revocation
    if revocation is None or client._closing.is_set():
        return None
    return revocation.poll_once(client._transport, client._sleep)


class _WeakCall:
    """A callback into a client that does not keep the client alive."""

    __slots__ = ("_ref", "_fn")

    def __init__(self, obj: Client, fn: Callable[..., Any]) -> None:
        self._ref = weakref.ref(obj)
        self._fn = fn

    def __call__(self, *args: Any) -> Any:
        obj = self._ref()
        if obj is None:
            raise ClientClosedError("the client was garbage-collected")
        return self._fn(obj, *args)


#: The official SDK's name for the same class.
OculusClient = Client
