"""The client's governance runtime: ``startup()``, the background sync, and the one
``AgentState`` that enforced tools read.

Startup is one plan (so ``startup()`` and ``await astartup()`` share it, and concurrent
callers share one run): the agent token (the server's default grant, or ``scopes=``),
verified against the issuer's JWKS (signature, expiry; issuer when configured; the client's
revocation list), the project file's custom capabilities, the capability map, the
revocation list, and each integration's credentials. With ``fail_closed=True`` any failed
step raises ``OculusStartupError`` naming it; with ``fail_closed=False`` the client starts on
what succeeded, logs each failed step and retries it on every background sync.

After startup the state is rebuilt, and swapped in as one object, whenever the agent token
is renewed (by the client's ordinary refresh-ahead machinery), the map or the credentials
change. A governed call reads it with no lock and no I/O while the token it was built from
is fresh (``Client._governance_state``).
"""

import logging
import threading
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Tuple
from urllib.parse import quote

from .._engine._flight import Abandoned, SingleFlight
from .._engine._plan import Join, Plan
from .._http._models import Request, Response
from .._http._send import RetryPolicy, parse_json, send_plan
from .._secret import Secret
from ..exceptions import (
    AuthenticationError,
    ClientClosedError,
    InvalidResponseError,
    InvalidTokenError,
    NotFoundError,
    OculusError,
    OculusStartupError,
    ProjectFileError,
    TokenExpiredError,
    TokenRevokedException,
)
from ..tokens._cache import CacheKey, Entry
from ._capability_map import EMPTY_MAP, CapabilityMap
from ._credentials import EMPTY_CREDENTIALS, Credentials
from ._evaluator import CapabilityEvaluator
from ._project import load_project_file
from ._state import AgentState

if TYPE_CHECKING:  # pragma: no cover
    from ..tokens._client import Client
    from ._audit import AuditEmitter

__all__ = ["Runtime"]

log = logging.getLogger("oculus_lite.governance")

STEP_TOKEN = "fetch_token"
STEP_JWKS = "fetch_jwks"
STEP_VERIFY = "verify_token"
STEP_PROJECT = "load_project_file"
STEP_MAP = "fetch_capability_map"
STEP_REVOCATION = "fetch_revocation_list"
STEP_CREDENTIALS = "fetch_credentials"
#: Steps retried in the background after a fail-open startup, in order.
_RETRYABLE = (STEP_MAP, STEP_REVOCATION, STEP_CREDENTIALS)
_STARTUP = "startup"
_SYNC_POLICY = RetryPolicy(retries=1)


def _service_token(entry: Entry) -> str:
    token = (entry.extra or {}).get("sdk_service_token")
    return token if isinstance(token, str) else ""


class Runtime:
    """Governance state of one client. Every plan takes the client as an argument, so the
    runtime holds no reference back to it."""

    def __init__(
        self,
        *,
        key: CacheKey,
        fail_closed: bool,
        sync_interval: float,
        project_file: Optional[str],
        evaluator: CapabilityEvaluator,
    ) -> None:
        self.key = key
        self.fail_closed = fail_closed
        self.sync_interval = sync_interval
        self.evaluator = evaluator
        self._project_file = project_file
        self._custom: Mapping[str, Mapping[str, object]] = {}
        self._map: CapabilityMap = EMPTY_MAP
        self._credentials: Credentials = EMPTY_CREDENTIALS
        self._claims: Optional[Mapping[str, Any]] = None
        #: (state, the agent-token entry it was built from): replaced as one tuple.
        self.current: Tuple[Optional[AgentState], Optional[Entry]] = (None, None)
        self.audit: Optional["AuditEmitter"] = None
        self.started = False
        self.failed: Dict[str, str] = {}
        self._lock = threading.Lock()
        self._flights: SingleFlight[str, None] = SingleFlight()

    # ------------------------------------------------------------------ startup

    def startup_plan(self, client: "Client") -> Plan[None]:
        """Start once; concurrent and later callers share the first run (idempotent)."""
        client._check_open()
        while not self.started:
            flight, lead = self._flights.lead_or_join(_STARTUP)
            if not lead:
                try:
                    yield Join(flight, client._timeout * 6 + 5.0)
                except Abandoned:
                    continue
                return
            try:
                yield from self._startup_steps(client)
            except BaseException as exc:
                self._flights.finish(_STARTUP, flight)
                flight.set_error(exc if isinstance(exc, Exception) else Abandoned())
                raise
            self._flights.finish(_STARTUP, flight)
            flight.set_result(None)

    def _startup_steps(self, client: "Client") -> Plan[None]:
        failures: Dict[str, str] = {}

        def failed(step: str, exc: OculusError) -> None:
            if self.fail_closed:
                raise OculusStartupError(step, cause=exc) from exc
            failures[step] = "{}: {}".format(type(exc).__name__, exc.message)
            log.warning(
                "startup step %s failed (%s); starting without it, retrying in the background",
                step,
                type(exc).__name__,
            )

        entry: Optional[Entry] = None
        claims: Optional[Mapping[str, Any]] = None
        done: List[str] = []
        try:
            entry = yield from client._entry_plan_for(self.key, self.key)
        except OculusError as exc:
            failed(STEP_TOKEN, exc)
        if entry is not None:
            try:  # before verifying: a token revoked already is refused (and replaced) now
                yield from client._revocation_list().refresh_plan()
                done.append(STEP_REVOCATION)
            except OculusError as exc:
                failed(STEP_REVOCATION, exc)
            for attempt in (1, 2):
                try:
                    claims = yield from self._verify_plan(client, entry)
                except TokenRevokedException as exc:
                    if attempt == 2:
                        failed(STEP_VERIFY, exc)
                        entry = None
                        break
                    yield from client._invalidate_token(entry.token)  # replaced once
                    try:
                        entry = yield from client._entry_plan_for(self.key, self.key)
                    except OculusError as exc:
                        failed(STEP_TOKEN, exc)
                        entry = None
                        break
                    continue
                except InvalidTokenError as exc:
                    failed(STEP_VERIFY, exc)
                    entry = None  # refused: nothing is loaded on the strength of it
                except OculusError as exc:
                    failed(STEP_JWKS, exc)
                break
        try:
            self._custom = load_project_file(self._project_file).custom_capabilities
            self._map = self._map.with_custom(self._custom)
        except ProjectFileError as exc:
            failed(STEP_PROJECT, exc)
        if (
            entry is not None
            and client._delegated is not None
            and not (entry.extra or {}).get("sdk_service_token")
        ):
            # A delegated client given no service token has no map, credentials or audit (as the
            # official SDK): that is its configuration, not a failure.
            log.warning("delegated client without sdk_service_token: no capability map, credentials or audit")
        elif entry is not None:
            for step, plan in (
                (STEP_MAP, self._map_plan(client, entry)),
                (STEP_CREDENTIALS, self._credentials_plan(client, entry)),
            ):
                try:
                    yield from plan
                except OculusError as exc:
                    failed(step, exc)
        else:
            skipped = [step for step in _RETRYABLE if step not in failures and step not in done]
            failures.update({step: "no agent token" for step in skipped})
            log.warning(
                "startup steps %s skipped: no verified agent token; retrying in the background",
                ", ".join(skipped),
            )
        with self._lock:
            self.failed = failures
            if entry is not None and claims is not None:
                self._publish(entry, claims)
            self.started = True
        client._start_governance(self, entry)

    # ------------------------------------------------------------------ the state

    def state_plan(self, client: "Client") -> Plan[AgentState]:
        """The current state, starting the client and renewing its token as needed."""
        client._check_open()
        if not self.started:
            yield from self.startup_plan(client)
        for attempt in (1, 2):  # a revoked token is re-fetched once
            try:
                entry = yield from client._entry_plan_for(self.key, self.key)
            except TokenRevokedException:
                if attempt == 2:
                    raise
                continue
            except (ClientClosedError, TokenExpiredError):
                raise
            except OculusError as exc:
                raise TokenExpiredError(
                    "no valid agent token can be had ({}: {})".format(type(exc).__name__, exc.message)
                ) from exc
            state, built_from = self.current
            if state is not None and entry is built_from:
                return state
            try:
                claims = yield from self._verify_plan(client, entry)
            except TokenRevokedException:
                if attempt == 2:
                    raise
                yield from client._invalidate_token(entry.token)  # revoked before the cache knew
                continue
            except OculusError as exc:
                # Refused (a bad signature, an unknown key, another issuer...) or unverifiable now
                # (the JWKS cannot be fetched): never enforce on it. The background sync drops a
                # refused token and fetches another.
                raise TokenExpiredError(
                    "no valid agent token can be had: the current one does not verify ({}: {})".format(
                        type(exc).__name__, exc.message
                    )
                ) from exc
            with self._lock:
                state = self._publish(entry, claims)
            client._renewed_agent_token(self, entry)
            return state
        raise AssertionError("unreachable")  # pragma: no cover

    def _publish(self, entry: Entry, claims: Mapping[str, Any]) -> AgentState:
        """Under the lock: build the state from these claims and the current map/credentials."""
        self._claims = claims
        state = AgentState.from_claims(claims, capability_map=self._map, credentials=self._credentials)
        self.current = (state, entry)
        return state

    def _rebuild(self) -> None:
        with self._lock:
            state, entry = self.current
            if state is not None and entry is not None and self._claims is not None:
                self._publish(entry, self._claims)

    def _verify_plan(self, client: "Client", entry: Entry) -> Plan[Mapping[str, Any]]:
        claims = yield from client._verifier()._verify_plan(entry.token)
        jti = claims.get("jti")
        revocation = client._revocation
        if isinstance(jti, str) and revocation is not None and jti in revocation.revoked:
            raise TokenRevokedException(jti, "the agent token {} was revoked".format(jti))
        return claims

    # ------------------------------------------------------------------ background sync

    def sync_plan(self, client: "Client") -> Plan[None]:
        """One background round: verify and publish a renewed agent token (a refused one is
        dropped and replaced once), retry failed steps, refresh the map (304 keeps it) and the
        credentials, rebuild the state if anything changed."""
        retry = dict(self.failed)
        changed = False
        if STEP_PROJECT in retry:
            self._custom = load_project_file(self._project_file).custom_capabilities
            with self._lock:
                self._map = self._map.with_custom(self._custom)
            changed = True
        entry = yield from self._sync_entry_plan(client)
        if not (entry.extra or {}).get("sdk_service_token") and client._delegated is not None:
            return  # a delegated client given no service token has nothing more to sync
        if STEP_REVOCATION in retry:
            yield from client._revocation_list().refresh_plan()
        changed = (yield from self._map_plan(client, entry)) or changed
        changed = (yield from self._credentials_plan(client, entry)) or changed
        with self._lock:
            if self.failed:
                log.info("governance sync recovered: %s", ", ".join(sorted(self.failed)))
            self.failed = {}
        if changed:
            self._rebuild()

    def _sync_entry_plan(self, client: "Client") -> Plan[Entry]:
        """The agent token, verified and published when it is not the one the state was built
        from; a revoked or refused token is dropped and replaced once."""
        for attempt in (1, 2):
            try:
                entry = yield from client._entry_plan_for(self.key, self.key)
            except TokenRevokedException:
                if attempt == 2:
                    raise
                continue
            if self.current[1] is entry:
                return entry
            try:
                claims = yield from self._verify_plan(client, entry)
            except (InvalidTokenError, TokenRevokedException) as exc:
                yield from client._invalidate_token(entry.token)
                if attempt == 2:
                    with self._lock:
                        self.failed = dict(self.failed, **{STEP_VERIFY: type(exc).__name__})
                    raise
                continue
            with self._lock:
                self._publish(entry, claims)
            client._renewed_agent_token(self, entry)
            return entry
        raise AssertionError("unreachable")  # pragma: no cover

    # ------------------------------------------------------------------ the v1 endpoints

    def _service_request(
        self, client: "Client", entry: Entry, path: str, etag: Optional[str] = None
    ) -> Request:
        service_token = (entry.extra or {}).get("sdk_service_token")
        if not service_token:
            raise AuthenticationError(
                "the token service sent no sdk_service_token with the agent token, so the "
                "capability map, credentials and audit endpoints cannot be called",
                code="no_service_token",
            )
        headers: Tuple[Tuple[str, str], ...] = (
            ("Accept", "application/json"),
            ("Authorization", "Bearer " + service_token),
            ("User-Agent", "oculus-lite"),
        )
        if etag:
            headers += (("If-None-Match", etag),)
        return Request("GET", client.base_url + path, headers, b"", client._timeout)

    def _get_plan(
        self, client: "Client", entry: Entry, path: str, what: str, etag: Optional[str] = None
    ) -> Plan[Response]:
        """GET a service-token route with the newest service token; a 401 (an expired service
        token) renews it once, unless someone else (the audit worker) already did."""
        for attempt in (1, 2):
            entry = self._service_entry(client, entry)
            request = self._service_request(client, entry, path, etag)
            token = _service_token(entry)
            try:
                return (
                    yield from send_plan(
                        request,
                        policy=_SYNC_POLICY,
                        deadline=client._now() + client._timeout,
                        clock=client._clock,
                        what=what,
                        secrets=(Secret(token),),
                    )
                )
            except AuthenticationError:
                if attempt == 2:
                    raise
                newer = self._service_entry(client, entry)
                if _service_token(newer) == token:
                    newer = yield from client._refetch_plan(self.key)
                entry = newer
        raise AssertionError("unreachable")  # pragma: no cover

    def _service_entry(self, client: "Client", entry: Entry) -> Entry:
        """The cached agent-token entry when it is usable and carries a service token (a renewal
        by anyone supersedes the entry a round started with), else ``entry``."""
        with client._lock:
            cached = client._cache.get(self.key)
        if (
            cached is not None
            and cached.revoked_jti is None
            and client._now() < cached.expires
            and _service_token(cached)
        ):
            return cached
        return entry

    def _map_plan(self, client: "Client", entry: Entry) -> Plan[bool]:
        """Refresh the capability map; True when it changed (a 304 or a bad map keeps it)."""
        current = self._map
        response = yield from self._get_plan(
            client, entry, "/v1/sync/capability-maps", "fetching the capability map", current.etag
        )
        if response.status == 304:
            if current.etag is None:  # we sent no If-None-Match: there is nothing to keep
                raise InvalidResponseError(
                    "the capability map route answered 304 Not Modified to a request without "
                    "If-None-Match, so no map was loaded",
                    status_code=304,
                )
            return False
        fresh = current.refreshed(parse_json(response, "capability map"), etag=response.header("etag"))
        with self._lock:
            self._map = fresh
        return True

    def _credentials_plan(self, client: "Client", entry: Entry) -> Plan[bool]:
        """Fetch the credentials of every integration of the map (a 404 means it has none);
        True when they changed."""
        values: Dict[str, Dict[str, str]] = {}
        problems: List[str] = []
        for integration in self._map.integration_names():
            path = "/v1/credentials/fetch?integration=" + quote(integration, safe="")
            try:
                response = yield from self._get_plan(client, entry, path, "fetching credentials")
            except NotFoundError:
                continue
            data = parse_json(response, "credentials")
            credential_type, value = data.get("credential_type", "api_key"), data.get("value")
            if not isinstance(credential_type, str) or not isinstance(value, str) or not value:
                problems.append(integration)
                continue
            values.setdefault(integration, {})[credential_type] = value
        credentials = Credentials(values)
        with self._lock:
            changed = credentials != self._credentials
            self._credentials = credentials
        if self.audit is not None:
            self.audit.add_secrets(*credentials.secrets())
        if problems:
            raise InvalidResponseError(
                "credentials for {} came back without a usable value".format(", ".join(sorted(problems)))
            )
        return changed
