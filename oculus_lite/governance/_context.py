"""TaskContext: ``with client.task("refund-42") as ctx:`` scopes a task id to everything called
inside, offers a non-raising check (``can``), credentials, and checked-and-audited blocks
(``capability``).

The task id lives in a ``contextvars.ContextVar`` (see ``_current``): enforced tools called
inside the block, and asyncio tasks created inside it, see it; threads need ``ctx.bind``.
"""

import functools
import time
from contextvars import Token
from typing import Callable, List, Optional, Type, TypeVar

from ..exceptions import ConfigurationError, CredentialError, TokenExpiredError, TokenRevokedException
from ._credentials import IntegrationCredentials
from ._current import task_var
from ._enforce import decide, violation
from ._evaluator import REASON_ALLOWED, Denial
from ._events import DECISION_ALLOW, DECISION_DENY, OUTCOME_DENIED, OUTCOME_ERROR, OUTCOME_SUCCESS
from ._state import AgentState, Governed

__all__ = ["TaskContext"]

R = TypeVar("R")


class TaskContext:
    """The context of one agent task, made by ``client.task(task_id)``.

    Usable as ``with`` and ``async with``; entering starts a client not started yet; while
    inside, every enforced tool call records and checks against ``task_id``. One object may be
    entered again (nested) but by one thread or asyncio task at a time; ``client.task(...)`` is
    cheap, so make one per use.

    Example::

        with client.task("refund-batch-001") as ctx:
            if ctx.can("stripe.charges.create"):
                refund(...)
            with ctx.capability("stripe.customers.read") as creds:
                stripe.api_key = creds["api_key"]
    """

    def __init__(self, client: Governed, task_id: str) -> None:
        if not isinstance(task_id, str) or not task_id:
            raise ConfigurationError("task_id must be a non-empty string, got {!r}".format(task_id))
        self._client = client
        self._task_id = task_id
        self._tokens: List["Token[Optional[str]]"] = []

    @property
    def task_id(self) -> str:
        return self._task_id

    def __repr__(self) -> str:
        return "TaskContext(task_id={!r})".format(self._task_id)

    # -- scoping --------------------------------------------------------------------------------

    def __enter__(self) -> "TaskContext":
        try:  # starts a client not started yet (OculusStartupError, ClientClosedError raise here)
            self._client._governance_state()
        except (TokenExpiredError, TokenRevokedException):
            pass  # no valid token right now: every check inside says so
        self._tokens.append(task_var.set(self._task_id))
        return self

    def __exit__(self, *exc_info: object) -> None:
        task_var.reset(self._tokens.pop())

    async def __aenter__(self) -> "TaskContext":
        try:
            await self._client._agovernance_state()
        except (TokenExpiredError, TokenRevokedException):
            pass
        self._tokens.append(task_var.set(self._task_id))
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.__exit__()

    def bind(self, fn: Callable[..., R]) -> Callable[..., R]:
        """``fn`` made to run inside this task wherever it is called, e.g.
        ``threading.Thread(target=ctx.bind(work))`` or ``executor.submit(ctx.bind(work))``."""
        task_id = self._task_id

        @functools.wraps(fn)
        def bound(*args: object, **kwargs: object) -> R:
            token = task_var.set(task_id)
            try:
                return fn(*args, **kwargs)
            finally:
                task_var.reset(token)

        return bound

    # -- checks -----------------------------------------------------------------------------------

    def can(
        self, capability: str, *, amount_cents: Optional[int] = None, result_count: Optional[int] = None
    ) -> bool:
        """Whether ``capability`` is allowed now in this task. Never audits.

        False when the policy denies it (any reason, malformed constraints included) or when no
        valid token can be had (``TokenExpiredError``, ``TokenRevokedException``). Anything else
        is a bug or a misconfiguration and is raised (``ClientClosedError`` after ``stop()``,
        ``OculusStartupError``, a TypeError...), unlike the official SDK, which hides every
        exception behind False.
        """
        try:
            state = self._client._governance_state()
        except (TokenExpiredError, TokenRevokedException):
            return False
        return self._decide(state, capability, amount_cents, result_count) is None

    async def acan(
        self, capability: str, *, amount_cents: Optional[int] = None, result_count: Optional[int] = None
    ) -> bool:
        """``can`` for coroutines."""
        try:
            state = await self._client._agovernance_state()
        except (TokenExpiredError, TokenRevokedException):
            return False
        return self._decide(state, capability, amount_cents, result_count) is None

    def credentials(self, integration: str) -> IntegrationCredentials:
        """The integration's credentials (a read-only mapping whose values never print).

        Raises:
            CredentialError: none are loaded for ``integration`` (never an empty mapping).
        """
        return self._client._governance_state().credentials[integration]

    def capability(self, capability: str) -> "CapabilityBlock":
        """Check ``capability`` on entry and audit the block's real outcome on exit.

        ``with ctx.capability("stripe.customers.read") as creds:`` yields the integration's
        credentials. On entry: ``PolicyViolationError`` when denied (audited as denied),
        ``CredentialError`` when the integration has no credentials (audited as an error).
        On exit: audited as "success", or as "error" with the exception's class when the block
        raised (the exception propagates). Works with ``async with`` too.
        """
        return CapabilityBlock(self, capability)

    def _decide(
        self, state: AgentState, capability: str, amount: Optional[int], result_count: Optional[int]
    ) -> Optional[Denial]:
        return decide(
            state, capability, self._task_id, amount, result_count, self._client._governance_evaluator.now
        )


class CapabilityBlock:
    """The object ``TaskContext.capability`` returns (``with`` and ``async with``)."""

    def __init__(self, context: TaskContext, capability: str) -> None:
        self._context = context
        self._capability = capability
        self._state: Optional[AgentState] = None
        self._started = 0.0
        self._begun = 0.0
        self._token: Optional["Token[Optional[str]]"] = None

    def __enter__(self) -> IntegrationCredentials:
        return self._open(self._context._client._governance_state())

    def __exit__(self, exc_type: Optional[Type[BaseException]], *rest: object) -> None:
        self._close(exc_type)

    async def __aenter__(self) -> IntegrationCredentials:
        return self._open(await self._context._client._agovernance_state())

    async def __aexit__(self, exc_type: Optional[Type[BaseException]], *rest: object) -> None:
        self._close(exc_type)

    def _open(self, state: AgentState) -> IntegrationCredentials:
        context, capability = self._context, self._capability
        client = context._client
        emitter = client._governance_audit
        self._state = state
        self._started = emitter.clock.time() if emitter is not None else time.time()
        denial = decide(state, capability, context.task_id, None, None, client._governance_evaluator.now)
        if denial is not None:
            self._record(DECISION_DENY, denial[0], OUTCOME_DENIED, None, None)
            raise violation(state, capability, denial)
        integration = state.capability_map.integration_of(capability)
        try:
            if integration is None:
                raise CredentialError(
                    capability,
                    "capability {!r} names no integration (neither the capability map nor a "
                    "'name.' / 'name:' prefix), so it has no credentials".format(capability),
                )
            credentials = state.credentials[integration]
        except CredentialError:
            self._record(DECISION_ALLOW, REASON_ALLOWED, OUTCOME_ERROR, None, "CredentialError")
            raise
        self._token = task_var.set(context.task_id)
        self._begun = time.perf_counter()
        return credentials

    def _close(self, exc_type: Optional[Type[BaseException]]) -> None:
        duration = (time.perf_counter() - self._begun) * 1000.0
        if self._token is not None:
            task_var.reset(self._token)
            self._token = None
        if exc_type is None:
            self._record(DECISION_ALLOW, REASON_ALLOWED, OUTCOME_SUCCESS, duration, None)
        else:
            self._record(DECISION_ALLOW, REASON_ALLOWED, OUTCOME_ERROR, duration, exc_type.__name__)

    def _record(
        self,
        decision: str,
        reason: str,
        outcome: str,
        duration_ms: Optional[float],
        error_type: Optional[str],
    ) -> None:
        state = self._state
        emitter = self._context._client._governance_audit
        if emitter is None or state is None:
            return
        emitter._record(
            (
                self._started,
                state.agent_id or None,
                self._capability,
                decision,
                reason,
                outcome,
                "ctx.capability({!r})".format(self._capability),
                {},
                self._context.task_id,
                state.delegation_depth,
                state.framework or "unknown",
                state.jti,
                duration_ms,
                error_type,
                None,
                None,
            ),
            2,
        )
