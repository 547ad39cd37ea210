"""One-time permissions approved by a human (the Agent OTP flow).

An agent asks before a sensitive action, waits (politely) for a person to
decide, runs the action with the one-time token and marks it used. The two
clients share every rule (validation, request building, reply parsing, the
polling schedule) and differ only in how they wait: the sync client sleeps
on an Event (Ctrl-C and ``close()`` interrupt it, no thread is left behind),
the async one on ``asyncio.sleep`` (cancellable, never blocks the loop).

    from oculus_lite import PermissionClient

    with PermissionClient() as client:        # AGENT_OTP_API_KEY / AGENT_OTP_URL
        permission = client.request_permission(
            action="email.send", scope={"max_emails": 1}, wait_for_approval=True)
        if permission.status == "approved":
            ...
            client.use_token(permission.id, permission.token)
"""

import asyncio
import inspect
from typing import Any, Awaitable, Callable, Dict, Mapping, Optional, Tuple, TypeVar, overload

from .._http import _send as _http
from ..exceptions import ClientClosedError, OculusError
from ._models import (
    OnPending,
    Permission,
    PermissionRequest,
    PermissionResponse,
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
)
from ._plans import (
    _HINTS,
    DEFAULT_OTP_URL,
    _Base,
    _check_wait,
    _final_for_execute,
    _Waiter,
    log,
)

__all__ = [
    "DEFAULT_OTP_URL",
    "AgentOTPClient",
    "AsyncAgentOTPClient",
    "AsyncPermissionClient",
    "Permission",
    "PermissionClient",
    "PermissionRequest",
    "PermissionResponse",
    "PermissionStatus",
    "TokenUsage",
    "TokenVerification",
]

_T = TypeVar("_T")


class PermissionClient(_Base):
    """Blocking client for one-time, human-approved permissions (also ``AgentOTPClient``).

    Args:
        api_key: the agent's key (``ak_...``); default ``AGENT_OTP_API_KEY``.
        base_url: the service origin without ``/api/v1``; default ``AGENT_OTP_URL``, then
            ``https://api.agentotp.com``. Plain http only to loopback unless ``allow_insecure_http``.
        timeout: seconds per HTTP request. retries: retries of network errors, 5xx and 429.
        debug: set the ``oculus_lite.permissions`` logger to DEBUG (secrets are never logged).
        transport: None (urllib), a registered name, or a transport object.
        max_requests_per_minute: client-side pacing matching the server's per-agent limit.
    """

    def __init__(
        self,
        api_key: Optional[str] = None,
        base_url: Optional[str] = None,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        debug: bool = False,
        transport: Any = None,
        allow_insecure_http: bool = False,
        max_requests_per_minute: int = 60,
    ) -> None:
        super().__init__(
            api_key,
            base_url,
            timeout=timeout,
            retries=retries,
            debug=debug,
            transport=transport,
            allow_insecure_http=allow_insecure_http,
            max_requests_per_minute=max_requests_per_minute,
        )

    def _sleep(self, seconds: float) -> None:
        if seconds > 0 and self._closed.wait(seconds):
            raise ClientClosedError("the client was closed while waiting")

    def _send(
        self,
        method: str,
        path: str,
        payload: Optional[Dict[str, Any]],
        what: str,
        secrets: Tuple[str, ...] = (),
        deadline: Optional[float] = None,
    ) -> Dict[str, Any]:
        self._check_open()
        deadline = deadline if deadline is not None else self._call_deadline()
        delay = self._pacer.reserve(deadline)
        if delay is None:
            raise self._pacer.too_fast(what)
        self._sleep(delay)
        response = _http.send(
            self._transport,
            self._build(method, path, payload),
            policy=self._policy,
            deadline=deadline,
            what=what,
            secrets=(self._api_key,) + secrets,
            hints=_HINTS,
        )
        return self._data(response, what)

    def request_permission(
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
    ) -> Permission:
        """Ask for permission to do ``action``; optionally wait for the human's decision.

        Returns the permission (approved with its token, pending, denied or expired with
        ``reason``). Raises ValidationError for bad arguments (before sending),
        ApprovalTimeoutError when waiting ran out of ``timeout``.
        """
        body = build_request_body(action, scope, resource, context, ttl)
        if wait_for_approval:
            timeout, poll_interval = _check_wait(timeout, poll_interval)
        what = "permission request"
        data = self._send("POST", "/permissions/request", body, what)
        permission = self._requested(data, body, what)
        if permission.status is PermissionStatus.PENDING:
            if on_pending is not None:
                on_pending(permission)
            if wait_for_approval:
                return self._wait(permission, timeout, poll_interval)
        return permission

    def get_permission(self, permission_id: str) -> Permission:
        """The permission's current state (with token and final scope while approved and unused)."""
        return self._get(check_id(permission_id), None)

    def _get(self, pid: str, deadline: Optional[float], base: Optional[Permission] = None) -> Permission:
        what = "permission status"
        data = self._send("GET", self._path(pid), None, what, deadline=deadline)
        permission = parse_permission(data, what, base)
        if permission.token:
            log.debug("permission %s: token received", pid)
        return permission

    def wait_for_permission(
        self, permission_id: str, timeout: float = 60.0, *, poll_interval: float = 2.0
    ) -> Permission:
        """Poll until approved, denied or expired; ApprovalTimeoutError after ``timeout`` s."""
        pid = check_id(permission_id)
        timeout, poll_interval = _check_wait(timeout, poll_interval)
        return self._wait(Permission(id=pid, status=PermissionStatus.PENDING), timeout, poll_interval)

    def _wait(self, base: Permission, timeout: float, poll_interval: float) -> Permission:
        waiter = _Waiter(base.id, timeout, poll_interval)
        current: Optional[Permission] = None
        log.debug("permission %s: waiting up to %g s for a decision", base.id, timeout)
        while True:
            try:
                current = self._get(base.id, waiter.request_deadline(self._call_deadline()), base)
            except OculusError as exc:
                self._sleep(waiter.after_error(exc))
                continue
            step = waiter.next_step(current, None)
            if isinstance(step, Permission):
                log.debug("permission %s: %s", base.id, step.status.value)
                return step
            self._sleep(step)

    def verify_token(self, permission_id: str, token: str) -> TokenVerification:
        """Check a token without consuming a use."""
        pid, tok = check_id(permission_id), check_token(token)
        what = "token verification"
        data = self._send("POST", self._path(pid, "/verify"), {"token": tok}, what, (tok,))
        return parse_verification(data, what)

    def use_token(
        self,
        permission_id: str,
        token: str,
        action_details: Optional[Mapping[str, Any]] = None,
    ) -> TokenUsage:
        """Consume one use of the token; ``success`` is False when the service refused it."""
        pid, tok = check_id(permission_id), check_token(token)
        payload: Dict[str, Any] = {"token": tok}
        if action_details is not None:
            payload["actionDetails"] = check_object(action_details, "action_details")
        what = "token use"
        data = self._send("POST", self._path(pid, "/use"), payload, what, (tok,))
        usage = parse_usage(data, what)
        log.debug("permission %s: use %s", pid, "accepted" if usage.success else "refused")
        return usage

    def execute_with_permission(self, operation: Callable[[str, Dict[str, Any]], _T], **request: Any) -> _T:
        """Request (and wait for) permission, run ``operation(token, scope)``, then mark the
        token used even if the operation raised (its error is re-raised).

        Raises ForbiddenError when the request is denied or expires, ApprovalTimeoutError
        when nobody decides in time.
        """
        request.pop("wait_for_approval", None)
        permission = self.request_permission(wait_for_approval=True, **request)
        token, scope = _final_for_execute(permission)
        try:
            result = operation(token, scope)
        except BaseException:
            try:
                self.use_token(permission.id, token)
            except Exception as exc:  # the operation's failure is the one to report
                log.warning(
                    "permission %s: marking the token used failed: %s",
                    permission.id,
                    type(exc).__name__,
                )
            raise
        self.use_token(permission.id, token)
        return result

    def close(self) -> None:
        """Close the transport; idempotent. Later calls raise ClientClosedError."""
        if self._closed.is_set():
            return
        self._closed.set()
        closer = getattr(self._transport, "close", None)
        if callable(closer):
            closer()

    def __enter__(self) -> "PermissionClient":
        self._check_open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncPermissionClient(_Base):
    """The asyncio twin of ``PermissionClient`` (also ``AsyncAgentOTPClient``): same
    arguments, same method names, awaited. Never blocks the event loop."""

    def __init__(
        self,
        api_key: Optional[str] = None,
        base_url: Optional[str] = None,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        debug: bool = False,
        transport: Any = None,
        allow_insecure_http: bool = False,
        max_requests_per_minute: int = 60,
    ) -> None:
        super().__init__(
            api_key,
            base_url,
            timeout=timeout,
            retries=retries,
            debug=debug,
            transport=transport,
            allow_insecure_http=allow_insecure_http,
            max_requests_per_minute=max_requests_per_minute,
        )

    async def _send(
        self,
        method: str,
        path: str,
        payload: Optional[Dict[str, Any]],
        what: str,
        secrets: Tuple[str, ...] = (),
        deadline: Optional[float] = None,
    ) -> Dict[str, Any]:
        self._check_open()
        deadline = deadline if deadline is not None else self._call_deadline()
        delay = self._pacer.reserve(deadline)
        if delay is None:
            raise self._pacer.too_fast(what)
        if delay > 0:
            await asyncio.sleep(delay)
            self._check_open()
        response = await _http.asend(
            self._transport,
            self._build(method, path, payload),
            policy=self._policy,
            deadline=deadline,
            what=what,
            secrets=(self._api_key,) + secrets,
            hints=_HINTS,
        )
        return self._data(response, what)

    async def request_permission(
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
        on_pending: Optional[Callable[[Permission], Any]] = None,
    ) -> Permission:
        """See ``PermissionClient.request_permission``; ``on_pending`` may be a coroutine function."""
        body = build_request_body(action, scope, resource, context, ttl)
        if wait_for_approval:
            timeout, poll_interval = _check_wait(timeout, poll_interval)
        what = "permission request"
        data = await self._send("POST", "/permissions/request", body, what)
        permission = self._requested(data, body, what)
        if permission.status is PermissionStatus.PENDING:
            if on_pending is not None:
                result = on_pending(permission)
                if inspect.isawaitable(result):
                    await result
            if wait_for_approval:
                return await self._wait(permission, timeout, poll_interval)
        return permission

    async def get_permission(self, permission_id: str) -> Permission:
        return await self._get(check_id(permission_id), None)

    async def _get(
        self, pid: str, deadline: Optional[float], base: Optional[Permission] = None
    ) -> Permission:
        what = "permission status"
        data = await self._send("GET", self._path(pid), None, what, deadline=deadline)
        return parse_permission(data, what, base)

    async def wait_for_permission(
        self, permission_id: str, timeout: float = 60.0, *, poll_interval: float = 2.0
    ) -> Permission:
        pid = check_id(permission_id)
        timeout, poll_interval = _check_wait(timeout, poll_interval)
        return await self._wait(Permission(id=pid, status=PermissionStatus.PENDING), timeout, poll_interval)

    async def _wait(self, base: Permission, timeout: float, poll_interval: float) -> Permission:
        waiter = _Waiter(base.id, timeout, poll_interval)
        log.debug("permission %s: waiting up to %g s for a decision", base.id, timeout)
        while True:
            try:
                current = await self._get(base.id, waiter.request_deadline(self._call_deadline()), base)
            except OculusError as exc:
                await asyncio.sleep(waiter.after_error(exc))
                self._check_open()
                continue
            step = waiter.next_step(current, None)
            if isinstance(step, Permission):
                log.debug("permission %s: %s", base.id, step.status.value)
                return step
            await asyncio.sleep(step)
            self._check_open()

    async def verify_token(self, permission_id: str, token: str) -> TokenVerification:
        pid, tok = check_id(permission_id), check_token(token)
        what = "token verification"
        data = await self._send("POST", self._path(pid, "/verify"), {"token": tok}, what, (tok,))
        return parse_verification(data, what)

    async def use_token(
        self,
        permission_id: str,
        token: str,
        action_details: Optional[Mapping[str, Any]] = None,
    ) -> TokenUsage:
        pid, tok = check_id(permission_id), check_token(token)
        payload: Dict[str, Any] = {"token": tok}
        if action_details is not None:
            payload["actionDetails"] = check_object(action_details, "action_details")
        what = "token use"
        data = await self._send("POST", self._path(pid, "/use"), payload, what, (tok,))
        return parse_usage(data, what)

    @overload
    async def execute_with_permission(
        self, operation: Callable[[str, Dict[str, Any]], Awaitable[_T]], **request: Any
    ) -> _T: ...

    @overload
    async def execute_with_permission(
        self, operation: Callable[[str, Dict[str, Any]], _T], **request: Any
    ) -> _T: ...

    async def execute_with_permission(
        self,
        operation: Callable[[str, Dict[str, Any]], Any],
        **request: Any,
    ) -> Any:
        """See ``PermissionClient.execute_with_permission``; ``operation`` may be async."""
        request.pop("wait_for_approval", None)
        permission = await self.request_permission(wait_for_approval=True, **request)
        token, scope = _final_for_execute(permission)
        try:
            result = operation(token, scope)
            if inspect.isawaitable(result):
                result = await result
        except BaseException:
            try:
                await asyncio.shield(self.use_token(permission.id, token))
            except Exception as exc:
                log.warning(
                    "permission %s: marking the token used failed: %s",
                    permission.id,
                    type(exc).__name__,
                )
            raise
        await self.use_token(permission.id, token)
        return result

    async def aclose(self) -> None:
        """Close the transport; idempotent. Later calls raise ClientClosedError."""
        if self._closed.is_set():
            return
        self._closed.set()
        closer = getattr(self._transport, "aclose", None)
        if callable(closer):
            await closer()
            return
        closer = getattr(self._transport, "close", None)
        if callable(closer):
            closer()

    async def close(self) -> None:
        """The same as ``aclose()`` (the twins share method names)."""
        await self.aclose()

    async def __aenter__(self) -> "AsyncPermissionClient":
        self._check_open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


#: The names the Agent OTP SDK documentation uses.
AgentOTPClient = PermissionClient
AsyncAgentOTPClient = AsyncPermissionClient
