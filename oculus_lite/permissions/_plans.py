"""The permission flow written once: configuration, client-side pacing, the polling
schedule, request building and reply handling, and each operation as a plan (see
``oculus_lite._engine``). ``_clients`` adds the two thin shells, blocking and asyncio."""

import collections
import dataclasses
import datetime as _dt
import json
import logging
import threading
import uuid
from typing import Any, Callable, Deque, Dict, Mapping, Optional, Tuple, TypeVar, Union
from urllib.parse import quote

from .._config import check_count, check_seconds, check_text, from_env, validate_base_url
from .._engine._clock import SYSTEM_CLOCK, Clock
from .._engine._plan import Call, Plan, Shield, Sleep
from .._http._models import AsyncTransport, Request, Transport
from .._http._registry import resolve_transport
from .._http._send import RetryPolicy, send_plan
from .._secret import Private, Secret
from .._version import __version__
from ..exceptions import (
    ApprovalTimeoutError,
    ClientClosedError,
    ConfigurationError,
    ForbiddenError,
    InvalidResponseError,
    OculusError,
    RateLimitError,
    ValidationError,
)
from ._models import (
    OnPending,
    Permission,
    PermissionStatus,
    TokenUsage,
    TokenVerification,
    build_request_body,
    check_id,
    check_object,
    check_token,
    parse_permission,
    parse_usage,
    parse_verification,
    unwrap_envelope,
)

__all__ = ["DEFAULT_OTP_URL", "MAX_POLL_INTERVAL", "PermissionCore"]

_T = TypeVar("_T")

log = logging.getLogger("oculus_lite.permissions")

DEFAULT_OTP_URL = "https://api.agentotp.com"
MAX_POLL_INTERVAL = 10.0
_BACKOFF = 1.5
_EXPIRED_REASON = "no decision before the request expired"

_HINTS = {
    401: "Check the api key (api_key= or AGENT_OTP_API_KEY) and base_url (AGENT_OTP_URL)",
    403: "The api key is not allowed to do this",
    404: "No such permission for this api key (wrong id, or another agent's request)",
}


class _Pacer:
    """Client-side sliding window: never more than ``limit`` requests per ``window`` seconds."""

    def __init__(self, limit: int, clock: Clock, window: float = 60.0) -> None:
        self._limit = limit
        self._window = window
        self._clock = clock
        self._sent: Deque[float] = collections.deque()
        self._lock = threading.Lock()

    def reserve(self, until: float) -> Optional[float]:
        """Book a send slot no later than ``until`` (monotonic); the wait before using it,
        or None (nothing booked) when the next free slot is later than that."""
        with self._lock:
            now = self._clock.monotonic()
            while self._sent and self._sent[0] <= now - self._window:
                self._sent.popleft()
            at = now
            if len(self._sent) >= self._limit:
                at = max(now, self._sent[-self._limit] + self._window)
            if at > until:
                return None
            self._sent.append(at)
            return at - now

    def too_fast(self, what: str) -> RateLimitError:
        with self._lock:
            wait = self._sent[-self._limit] + self._window - self._clock.monotonic() if self._sent else 0.0
        return RateLimitError(
            "{}: not sent, this client already made {} requests in the last {:g} s (the "
            "service's per-agent limit); retry in {:.1f} s".format(what, self._limit, self._window, wait),
            code="client_rate_limit",
            retry_after=max(wait, 0.0),
        )


def survivable(exc: OculusError) -> bool:
    """Failures a wait outlasts: the service may be back before the human decides."""
    return exc.retryable or isinstance(exc, InvalidResponseError)


class _Waiter:
    """The polling schedule (no I/O): back off from ``poll_interval`` up to 10 s, honour
    Retry-After, stop at a final status, at ``expiresAt`` or at the timeout."""

    def __init__(
        self, permission_id: str, timeout: float, poll_interval: float, clock: Clock, log: logging.Logger
    ) -> None:
        self.permission_id = permission_id
        self.timeout = timeout
        self.clock = clock
        self.log = log
        self.deadline = clock.monotonic() + timeout
        self.interval = poll_interval
        self.cap = max(poll_interval, MAX_POLL_INTERVAL)

    def request_deadline(self, call_deadline: float) -> float:
        # A poll may not outlive the wait by much (a long Retry-After would overrun it).
        return min(call_deadline, max(self.deadline, self.clock.monotonic() + 2.0))

    def after_error(self, exc: OculusError) -> float:
        """Seconds to sleep after a failed poll the wait survives (raises when it must not)."""
        if not survivable(exc):
            raise exc
        self.log.warning(
            "permission %s: polling failed (%s); still waiting", self.permission_id, type(exc).__name__
        )
        retry_after = exc.retry_after if isinstance(exc, RateLimitError) else None
        try:
            step = self.next_step(None, retry_after)
        except ApprovalTimeoutError as timeout:
            raise timeout from exc
        assert not isinstance(step, Permission)  # only a status ends the wait
        return step

    def next_step(
        self, permission: Optional[Permission], retry_after: Optional[float]
    ) -> Union[Permission, float]:
        """The final permission, or the seconds to sleep before the next poll."""
        delay = self.interval
        if permission is not None:
            if permission.status is PermissionStatus.EXPIRED and not permission.reason:
                return dataclasses.replace(permission, reason=_EXPIRED_REASON)
            if permission.status.is_final:
                return permission
            now = _dt.datetime.fromtimestamp(self.clock.time(), _dt.timezone.utc)
            if permission.is_expired(now):
                return dataclasses.replace(
                    permission,
                    status=PermissionStatus.EXPIRED,
                    token=None,
                    reason=permission.reason or "no decision before the request expired",
                )
            if permission.expires_at is not None:  # wake up right after expiry
                until = (permission.expires_at - now).total_seconds() + 0.05
                delay = min(delay, max(until, 0.05))
            self.interval = min(self.interval * _BACKOFF, self.cap)
        elif retry_after is not None:
            delay = max(retry_after, 0.0)
        remaining = self.deadline - self.clock.monotonic()
        if remaining <= 0:
            raise ApprovalTimeoutError(
                "permission {} is still pending after {:g} s; a human may still decide it "
                "(wait again with wait_for_permission)".format(self.permission_id, self.timeout),
                code="approval_timeout",
                permission_id=self.permission_id,
            )
        return min(delay, remaining)


class PermissionCore:
    """Everything both permission clients do, written once: configuration, request building,
    reply parsing, and each operation as a plan. ``PermissionClient`` runs the plans with the
    blocking driver, ``AsyncPermissionClient`` with the asyncio one."""

    def __init__(
        self,
        api_key: Optional[str] = None,
        base_url: Optional[str] = None,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        debug: bool = False,
        transport: Union[Transport, AsyncTransport, str, None] = None,
        allow_insecure_http: bool = False,
        max_requests_per_minute: int = 60,
        clock: Optional[Clock] = None,
    ) -> None:
        key, _ = from_env(api_key, ("AGENT_OTP_API_KEY",))
        if key is None:
            raise ConfigurationError(
                "no api key: pass api_key='ak_...' or set the AGENT_OTP_API_KEY environment variable"
            )
        self._api_key = Secret(check_text(key, "api_key", max_len=4096, error=ConfigurationError))
        url, source = from_env(base_url, ("AGENT_OTP_URL",))
        what = "base_url" if source in (None, "argument") else source or "base_url"
        url = validate_base_url(
            url if url is not None else DEFAULT_OTP_URL,
            allow_insecure_http=allow_insecure_http,
            what=what,
        )
        if url.endswith("/api/v1"):  # tolerate the API root; the base URL is the origin
            url = url[: -len("/api/v1")]
        self._base_url = url
        self._timeout = check_seconds(timeout, "timeout")
        self._policy = RetryPolicy(retries=check_count(retries, "retries"))
        self._clock = clock if clock is not None else SYSTEM_CLOCK
        self._transport: Any = resolve_transport(transport)
        self._pacer = _Pacer(
            check_count(max_requests_per_minute, "max_requests_per_minute", minimum=1), self._clock
        )
        self._closed = threading.Event()
        # debug=True turns on DEBUG records of this client only: its own logger object (not
        # registered, so nothing global changes) whose records propagate like the module's.
        self._log = log
        if debug:
            self._log = logging.Logger(log.name, logging.DEBUG)
            self._log.parent = log

    @property
    def base_url(self) -> str:
        return self._base_url

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def __repr__(self) -> str:
        return "{}(base_url={!r}, api_key=<hidden>, closed={})".format(
            type(self).__name__, self._base_url, self.closed
        )

    def _check_open(self) -> None:
        if self._closed.is_set():
            raise ClientClosedError("{} is closed; create a new client".format(type(self).__name__))

    def _sleep(self, seconds: float) -> None:
        if self._clock.sleep(seconds, self._closed):
            raise ClientClosedError("the client was closed while waiting")

    def _shutdown(self) -> bool:
        """Mark closed (waits end at once); False when it already was."""
        if self._closed.is_set():
            return False
        self._closed.set()
        return True

    # ------------------------------------------------------------------ requests

    def _build(
        self,
        method: str,
        path: str,
        payload: Optional[Dict[str, Any]],
        extra: Tuple[Tuple[str, str], ...] = (),
    ) -> Request:
        headers = [
            ("Authorization", "Bearer " + self._api_key.reveal()),
            ("Accept", "application/json"),
            ("User-Agent", "oculus-lite/" + __version__),
        ]
        headers.extend(extra)
        body = b""
        if payload is not None:
            headers.append(("Content-Type", "application/json"))
            body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        # A creation carrying an Idempotency-Key is safe to resend: the server answers the first.
        idempotent = any(name == "Idempotency-Key" for name, _ in extra)
        return Request(
            method,
            self._base_url + "/api/v1" + path,
            tuple(headers),
            body,
            self._timeout,
            resend_safe=idempotent,
        )

    def _call_deadline(self) -> float:
        return self._clock.monotonic() + self._timeout * (self._policy.retries + 1) + 5.0

    @staticmethod
    def _path(permission_id: str, suffix: str = "") -> str:
        """``/permissions/<id><suffix>``: the id is checked again here, whoever gave it, and
        percent-encoded, so no id can reach another route."""
        return "/permissions/" + quote(check_id(permission_id), safe="") + suffix

    def _send_plan(
        self,
        method: str,
        path: str,
        payload: Optional[Dict[str, Any]],
        what: str,
        secrets: Tuple[Secret, ...] = (),
        deadline: Optional[float] = None,
        extra: Tuple[Tuple[str, str], ...] = (),
    ) -> Plan[Dict[str, Any]]:
        """One API call: client-side pacing, send with retries, unwrap the envelope."""
        self._check_open()
        deadline = deadline if deadline is not None else self._call_deadline()
        delay = self._pacer.reserve(deadline)
        if delay is None:
            raise self._pacer.too_fast(what)
        if delay > 0:
            yield Sleep(delay)
            self._check_open()
        response = yield from send_plan(
            self._build(method, path, payload, extra),
            policy=self._policy,
            deadline=deadline,
            clock=self._clock,
            what=what,
            secrets=(self._api_key,) + secrets,
            hints=_HINTS,
        )
        return unwrap_envelope(response, what, (self._api_key,) + secrets)

    # ------------------------------------------------------------------ operations

    # Each public operation is written once here, as a plan with the public signature and
    # docstring; ``_clients`` turns each into a blocking and an async method (``_engine._shells``).

    def _request_permission(
        self,
        action: str,
        scope: Optional[Mapping[str, Any]] = None,
        *,
        resource: Optional[str] = None,
        context: Optional[Mapping[str, Any]] = None,
        ttl: int = 300,
        wait_for_approval: bool = False,
        timeout: float = 60.0,
        poll_interval: float = 2.0,
        on_pending: Optional[OnPending] = None,
    ) -> Plan[Permission]:
        """Ask for permission to do ``action``; optionally wait for the human's decision.

        Returns the permission (approved with its token, pending, denied or expired with
        ``reason``). ``on_pending`` is called once (awaited when it is a coroutine function,
        for the async client) with the pending permission and its approval URL.

        Raises:
            ValidationError: bad arguments (nothing sent).
            ApprovalTimeoutError: waiting ran out of ``timeout`` seconds.
        """
        body = build_request_body(action, scope, resource, context, ttl)
        if wait_for_approval:
            timeout, poll_interval = _check_wait(timeout, poll_interval)
        what = "permission request"
        # One key per logical request, the same on every retry: a resent creation returns the
        # first request instead of creating a second one.
        idempotency = (("Idempotency-Key", uuid.uuid4().hex),)
        data = yield from self._send_plan("POST", "/permissions/request", body, what, extra=idempotency)
        permission = self._requested(data, body, what)
        if permission.status is PermissionStatus.PENDING:
            if on_pending is not None:
                yield Call(on_pending, permission)
            if wait_for_approval:
                return (yield from self._wait_plan(permission, timeout, poll_interval))
        return permission

    def _get_plan(
        self, pid: str, deadline: Optional[float], base: Optional[Permission] = None
    ) -> Plan[Permission]:
        what = "permission status"
        data = yield from self._send_plan("GET", self._path(pid), None, what, deadline=deadline)
        permission = parse_permission(data, what, base, expected_id=pid)
        if permission.token:
            self._log.debug("permission %s: token received", pid)
        return permission

    def _get_permission(self, permission_id: str) -> Plan[Permission]:
        """The permission's current state (with token and final scope while approved and unused)."""
        return (yield from self._get_plan(check_id(permission_id), None))

    def _wait_for_permission(
        self, permission_id: str, timeout: float = 60.0, *, poll_interval: float = 2.0
    ) -> Plan[Permission]:
        """Poll until approved, denied or expired; ``ApprovalTimeoutError`` after ``timeout`` s."""
        pid = check_id(permission_id)
        timeout, poll_interval = _check_wait(timeout, poll_interval)
        pending = Permission(id=pid, status=PermissionStatus.PENDING)
        return (yield from self._wait_plan(pending, timeout, poll_interval))

    def _wait_plan(self, base: Permission, timeout: float, poll_interval: float) -> Plan[Permission]:
        waiter = _Waiter(base.id, timeout, poll_interval, self._clock, self._log)
        self._log.debug("permission %s: waiting up to %g s for a decision", base.id, timeout)
        while True:
            try:
                current = yield from self._get_plan(
                    base.id, waiter.request_deadline(self._call_deadline()), base
                )
            except OculusError as exc:
                yield Sleep(waiter.after_error(exc))
                self._check_open()
                continue
            step = waiter.next_step(current, None)
            if isinstance(step, Permission):
                self._log.debug("permission %s: %s", base.id, step.status.value)
                return step
            yield Sleep(step)
            self._check_open()

    def _verify_token(self, permission_id: str, token: str) -> Plan[TokenVerification]:
        """Check a token without consuming a use."""
        pid, tok = check_id(permission_id), Secret(check_token(token))
        what = "token verification"
        body = Private(token=tok.reveal())
        data = yield from self._send_plan("POST", self._path(pid, "/verify"), body, what, (tok,))
        return parse_verification(data, what)

    def _use_token(
        self, permission_id: str, token: str, action_details: Optional[Mapping[str, Any]] = None
    ) -> Plan[TokenUsage]:
        """Consume one use of the token; ``success`` is False when the service refused it."""
        pid, tok = check_id(permission_id), Secret(check_token(token))
        payload = Private(token=tok.reveal())
        if action_details is not None:
            payload["actionDetails"] = check_object(action_details, "action_details")
        what = "token use"
        data = yield from self._send_plan("POST", self._path(pid, "/use"), payload, what, (tok,))
        usage = parse_usage(data, what)
        self._log.debug("permission %s: use %s", pid, "accepted" if usage.success else "refused")
        return usage

    def _execute_with_permission(
        self, operation: Callable[[str, Dict[str, Any]], _T], **request: Any
    ) -> Plan[_T]:
        """Request (and wait for) permission, run ``operation(token, scope)``, then mark the
        token used even if the operation raised (its error is re-raised; the marking is
        shielded from the caller's cancellation). ``operation`` may be a coroutine function
        for the async client.

        Raises:
            ForbiddenError: the request was denied or expired.
            ApprovalTimeoutError: nobody decided in time.
        """
        request.pop("wait_for_approval", None)
        permission = yield from self._request_permission(
            **_request_arguments(request, wait_for_approval=True)
        )
        token, scope = _final_for_execute(permission)
        try:
            result = yield Call(operation, token, scope)
        except BaseException:
            try:
                yield Shield(self._use_token(permission.id, token, None))
            except Exception as exc:  # the operation's failure is the one to report
                self._log.warning(
                    "permission %s: marking the token used failed: %s", permission.id, type(exc).__name__
                )
            raise
        yield from self._use_token(permission.id, token, None)
        return result  # type: ignore[no-any-return]

    def _requested(self, data: Dict[str, Any], body: Dict[str, Any], what: str) -> Permission:
        """The Permission a request created; fields the reply omits come from what we sent."""
        permission = parse_permission(data, what)
        permission = dataclasses.replace(
            permission,
            action=permission.action or body["action"],
            resource=permission.resource or body.get("resource"),
            scope=permission.scope or dict(body["scope"]),
            context=permission.context or dict(body["context"]),
        )
        self._log.debug(
            "permission %s for action %r: %s", permission.id, permission.action, permission.status.value
        )
        return permission


_REQUEST_DEFAULTS: Dict[str, Any] = {
    "scope": None,
    "resource": None,
    "context": None,
    "ttl": 300,
    "timeout": 60.0,
    "poll_interval": 2.0,
    "on_pending": None,
}


def _request_arguments(request: Dict[str, Any], *, wait_for_approval: bool) -> Dict[str, Any]:
    """``request_permission``'s keyword arguments, as ``execute_with_permission`` passes them."""
    unknown = sorted(set(request) - set(_REQUEST_DEFAULTS) - {"action"})
    if unknown:
        raise TypeError("unexpected argument(s) for request_permission: {}".format(", ".join(unknown)))
    if "action" not in request:
        raise TypeError("request_permission() missing required argument: 'action'")
    arguments = dict(_REQUEST_DEFAULTS)
    arguments.update(request)
    arguments["wait_for_approval"] = wait_for_approval
    return arguments


def _check_wait(timeout: object, poll_interval: object) -> Tuple[float, float]:
    return (
        check_seconds(timeout, "timeout", error=ValidationError),
        check_seconds(poll_interval, "poll_interval", error=ValidationError),
    )


def _final_for_execute(permission: Permission) -> Tuple[str, Dict[str, Any]]:
    if permission.status is not PermissionStatus.APPROVED:
        raise ForbiddenError(
            "permission {} was {}{}".format(
                permission.id,
                permission.status.value,
                ": " + permission.reason if permission.reason else "",
            ),
            code="permission_" + permission.status.value,
        )
    if not permission.token:
        raise InvalidResponseError(
            "permission {} was approved but the server did not hand over its token".format(permission.id)
        )
    return permission.token, dict(permission.scope)
