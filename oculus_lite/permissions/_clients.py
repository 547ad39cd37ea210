"""The two permission clients: each public method is ``PermissionCore``'s plan of the same name
run by the blocking driver (``PermissionClient``) or the asyncio driver
(``AsyncPermissionClient``); see ``_engine._shells``. Same arguments, same method names."""

import asyncio
from typing import Any, Awaitable, Callable, Dict, Generator, Set, TypeVar, overload

from .._engine._plan import arun, run
from .._engine._shells import blocking, coroutine
from ._plans import PermissionCore

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

    request_permission = blocking(PermissionCore._request_permission)
    get_permission = blocking(PermissionCore._get_permission)
    wait_for_permission = blocking(PermissionCore._wait_for_permission)
    verify_token = blocking(PermissionCore._verify_token)
    use_token = blocking(PermissionCore._use_token)

    def execute_with_permission(self, operation: Callable[[str, Dict[str, Any]], _T], **request: Any) -> _T:
        """See ``PermissionCore._execute_with_permission``."""
        return run(self._execute_with_permission(operation, **request), self._transport, self._sleep)

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

    request_permission = coroutine(PermissionCore._request_permission)
    get_permission = coroutine(PermissionCore._get_permission)
    wait_for_permission = coroutine(PermissionCore._wait_for_permission)
    verify_token = coroutine(PermissionCore._verify_token)
    use_token = coroutine(PermissionCore._use_token)

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
        """See ``PermissionCore._execute_with_permission``; ``operation`` may be async."""
        return await arun(
            self._execute_with_permission(operation, **request), self._transport, self._clock.asleep
        )

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
