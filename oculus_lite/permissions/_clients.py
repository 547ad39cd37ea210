"""The two permission clients: thin shells that run ``PermissionCore``'s plans, one with the
blocking driver and one with the asyncio driver. Same arguments, same method names."""

import asyncio
from typing import Any, Awaitable, Callable, Dict, Generator, Mapping, Optional, Set, TypeVar, overload

from .._engine._plan import Plan, arun, run
from ._models import OnPending, Permission, PermissionStatus, TokenUsage, TokenVerification, check_id
from ._plans import PermissionCore, _check_wait

__all__ = ["AsyncPermissionClient", "PermissionClient"]

_T = TypeVar("_T")


class PermissionClient(PermissionCore):
    """Blocking client for one-time, human-approved permissions (also ``AgentOTPClient``).

    Args:
        api_key: the agent's key (``ak_...``); default ``AGENT_OTP_API_KEY``.
        base_url: the service origin without ``/api/v1``; default ``AGENT_OTP_URL``, then
            ``https://api.agentotp.com``. Plain http only to loopback unless ``allow_insecure_http``.
        timeout: seconds per HTTP request. retries: retries of network errors, 5xx and 429.
        debug: DEBUG log records for this client (secrets are never logged); they reach the
            handlers your application configured on ``oculus_lite`` or the root logger.
        transport: None (urllib), a registered name, or a transport object.
        max_requests_per_minute: client-side pacing matching the server's per-agent limit.
        clock: where time comes from (``oculus_lite.ManualClock`` in tests).

    Waits sleep on an Event: ``close()`` (from another thread) and Ctrl-C interrupt them.
    """

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
        plan = self._request_plan(
            action, scope, resource, context, ttl, wait_for_approval, timeout, poll_interval, on_pending
        )
        return run(plan, self._transport, self._sleep)

    def get_permission(self, permission_id: str) -> Permission:
        """The permission's current state (with token and final scope while approved and unused)."""
        return run(self._get_plan(check_id(permission_id), None), self._transport, self._sleep)

    def wait_for_permission(
        self, permission_id: str, timeout: float = 60.0, *, poll_interval: float = 2.0
    ) -> Permission:
        """Poll until approved, denied or expired; ApprovalTimeoutError after ``timeout`` s."""
        return run(_wait(self, permission_id, timeout, poll_interval), self._transport, self._sleep)

    def verify_token(self, permission_id: str, token: str) -> TokenVerification:
        """Check a token without consuming a use."""
        return run(self._verify_plan(permission_id, token), self._transport, self._sleep)

    def use_token(
        self, permission_id: str, token: str, action_details: Optional[Mapping[str, Any]] = None
    ) -> TokenUsage:
        """Consume one use of the token; ``success`` is False when the service refused it."""
        return run(self._use_plan(permission_id, token, action_details), self._transport, self._sleep)

    def execute_with_permission(self, operation: Callable[[str, Dict[str, Any]], _T], **request: Any) -> _T:
        """Request (and wait for) permission, run ``operation(token, scope)``, then mark the
        token used even if the operation raised (its error is re-raised).

        Raises ForbiddenError when the request is denied or expires, ApprovalTimeoutError
        when nobody decides in time.
        """
        return run(self._execute_plan(operation, request), self._transport, self._sleep)  # type: ignore[no-any-return]

    def close(self) -> None:
        """Close the transport; idempotent. Later calls raise ClientClosedError."""
        if self._shutdown():
            closer = getattr(self._transport, "close", None)
            if callable(closer):
                closer()

    def __enter__(self) -> "PermissionClient":
        self._check_open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncPermissionClient(PermissionCore):
    """The asyncio twin of ``PermissionClient`` (also ``AsyncAgentOTPClient``): same
    arguments, same method names, awaited. Never blocks the event loop."""

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
        on_pending: Optional[OnPending] = None,
    ) -> Permission:
        """See ``PermissionClient.request_permission``; ``on_pending`` may be a coroutine function."""
        plan = self._request_plan(
            action, scope, resource, context, ttl, wait_for_approval, timeout, poll_interval, on_pending
        )
        return await arun(plan, self._transport, self._clock.asleep)

    async def get_permission(self, permission_id: str) -> Permission:
        return await arun(self._get_plan(check_id(permission_id), None), self._transport, self._clock.asleep)

    async def wait_for_permission(
        self, permission_id: str, timeout: float = 60.0, *, poll_interval: float = 2.0
    ) -> Permission:
        return await arun(
            _wait(self, permission_id, timeout, poll_interval), self._transport, self._clock.asleep
        )

    async def verify_token(self, permission_id: str, token: str) -> TokenVerification:
        return await arun(self._verify_plan(permission_id, token), self._transport, self._clock.asleep)

    async def use_token(
        self, permission_id: str, token: str, action_details: Optional[Mapping[str, Any]] = None
    ) -> TokenUsage:
        return await arun(
            self._use_plan(permission_id, token, action_details), self._transport, self._clock.asleep
        )

    @overload
    async def execute_with_permission(
        self, operation: Callable[[str, Dict[str, Any]], Awaitable[_T]], **request: Any
    ) -> _T: ...

    @overload
    async def execute_with_permission(
        self, operation: Callable[[str, Dict[str, Any]], _T], **request: Any
    ) -> _T: ...

    async def execute_with_permission(
        self, operation: Callable[[str, Dict[str, Any]], Any], **request: Any
    ) -> Any:
        """See ``PermissionClient.execute_with_permission``; ``operation`` may be async."""
        return await arun(self._execute_plan(operation, request), self._transport, self._clock.asleep)

    def close(self) -> "Awaitable[None]":
        """Close now (waits and later calls end with ClientClosedError) and return an awaitable:
        ``await client.close()`` also works, and awaits an async transport's ``aclose()``."""
        if not self._shutdown():
            return _Done()
        aclose = getattr(self._transport, "aclose", None)
        if aclose is not None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
            if loop is not None:  # closes even if the caller never awaits
                return _keep(loop.create_task(aclose()))
        closer = getattr(self._transport, "close", None)
        if callable(closer):
            closer()
        return _Done()

    async def aclose(self) -> None:
        """Close the transport; idempotent. Later calls raise ClientClosedError."""
        await self.close()

    async def __aenter__(self) -> "AsyncPermissionClient":
        self._check_open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def _wait(
    core: PermissionCore, permission_id: str, timeout: float, poll_interval: float
) -> "Plan[Permission]":
    pid = check_id(permission_id)
    timeout, poll_interval = _check_wait(timeout, poll_interval)
    return core._wait_plan(Permission(id=pid, status=PermissionStatus.PENDING), timeout, poll_interval)


class _Done:
    """An awaitable that is already complete."""

    def __await__(self) -> Generator[Any, None, None]:
        return
        yield  # pragma: no cover - makes this a generator


_closing: Set["asyncio.Task[None]"] = set()


def _keep(task: "asyncio.Task[None]") -> "asyncio.Task[None]":
    _closing.add(task)
    task.add_done_callback(_closing.discard)
    return task
