"""The enforcing wrapper: one core for ``client.tool``, ``wrap_tools``, ``TaskContext`` and every
framework adapter.

``enforce(governed, capability, fn)`` returns a wrapper that, on every call, reads the
client's current ``AgentState`` once, decides (scope, ``deny_always``, constraints with the
call's amount and result count), runs ``fn`` only when allowed, and audits what really
happened: allowed and succeeded, denied (before the call, or after it when the returned value
has more results than ``max_results``), or allowed and failed (``error_type`` is the exception
class, never its message). The wrapper keeps ``fn``'s name, docstring and signature, is async
when ``fn`` is, binds as a method like a function does, and leaves ``fn`` untouched.

Everything that can be is computed when wrapping: the signature, where the amount and result
count arguments sit, the argument names for the audit record. An allowed call without
constraints does one set lookup; signature work happens only when constraints need it.

Arguments are read as ``inspect.Signature.bind`` would bind them: a positional-only parameter
from its position, a keyword-only one from the keywords, any other from its position when the
call has that many positional arguments, else from the keywords, else its default. A call
that does not fit the signature fails inside ``fn`` (TypeError) after the check, so a value
that was not checked never reaches the tool.
"""

import functools
import inspect
import time
from typing import TYPE_CHECKING, Callable, Dict, Mapping, NoReturn, Optional, Tuple, TypeVar, cast

from ..exceptions import ConfigurationError, PolicyViolationError
from ._current import current_intent, current_task_id
from ._evaluator import REASON_ALLOWED, REASON_DENY_ALWAYS, REASON_NOT_IN_SCOPE, Denial
from ._events import DECISION_ALLOW, DECISION_DENY, OUTCOME_DENIED, OUTCOME_ERROR, OUTCOME_SUCCESS
from ._redact import freeze_arguments
from ._state import AgentState, Governed

if TYPE_CHECKING:  # pragma: no cover
    from ._audit import AuditEmitter

__all__ = ["core_of", "decide", "enforce", "is_enforced", "result_count_of"]

F = TypeVar("F", bound=Callable[..., object])
_MARK = "__oculus_enforced__"
_Getter = Callable[[Tuple[object, ...], Mapping[str, object]], object]
_NOT_IN_SCOPE: Denial = (REASON_NOT_IN_SCOPE, "the token does not grant this capability")
_DENY_ALWAYS: Denial = (REASON_DENY_ALWAYS, "the capability map denies this capability to every agent")
_UNSIZED = (str, bytes, bytearray, memoryview)


def decide(
    state: AgentState,
    capability: object,
    task_id: Optional[str],
    amount: object,
    result_count: object,
    now: Callable[[], float],
) -> Optional[Denial]:
    """The one decision: None when allowed, else (reason, detail). Never raises."""
    if not isinstance(capability, str):
        return _NOT_IN_SCOPE
    if capability in state.unconstrained:
        return None
    if capability not in state.scopes:
        return _NOT_IN_SCOPE
    if capability in state.capability_map.deny_always:
        return _DENY_ALWAYS
    return state.policy.check(task_id, amount, result_count, now)


def violation(state: AgentState, capability: str, denial: Denial) -> PolicyViolationError:
    return PolicyViolationError(capability, denial[0], state.scopes, state.policy_id, detail=denial[1])


def result_count_of(result: object) -> Optional[int]:
    """How many results a tool returned: ``len()`` of a sized value that is not text, bytes or a
    mapping (a dict is one record, not a list of results); None when it cannot be counted."""
    if isinstance(result, _UNSIZED) or isinstance(result, Mapping):
        return None
    try:
        count = len(result)  # type: ignore[arg-type]
    except TypeError:
        return None
    return count if isinstance(count, int) else None


def is_enforced(fn: object) -> bool:
    """Whether ``fn`` is already an enforcing wrapper."""
    return getattr(fn, _MARK, None) is not None


def core_of(fn: object) -> "Optional[_Core]":
    """The rules an enforcing wrapper applies (its capability, declared arguments, framework
    tag), for adapters that re-tag a tool; None for anything else."""
    mark = getattr(getattr(fn, "__func__", fn), _MARK, None)
    return mark[2] if mark is not None else None


def task_of(governed: Governed, state: AgentState) -> Optional[str]:
    """The task a call belongs to: the innermost ``client.task(...)`` block, else the token's
    ``agent.task_id``, else the client's ``task_id``."""
    return current_task_id() or state.task_id or governed.task_id


def _getter(
    signature: Optional[inspect.Signature], name: Optional[str], default_name: str, option: str, tool: str
) -> Optional[_Getter]:
    """How to read one argument from (args, kwargs) the way ``Signature.bind`` would."""
    wanted = name if name is not None else default_name
    if name is not None and (not isinstance(name, str) or not name.isidentifier()):
        raise ConfigurationError("{}= must name a parameter of {}, got {!r}".format(option, tool, name))
    if signature is None:
        if name is not None:
            raise ConfigurationError(
                "{}={!r}: the signature of {} cannot be read, so the argument cannot be found".format(
                    option, name, tool
                )
            )
        return None
    parameters = signature.parameters
    parameter = parameters.get(wanted)
    if parameter is None:
        if name is None:
            return None
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
            return lambda args, kwargs: kwargs.get(wanted)
        raise ConfigurationError(
            "{}={!r}: {} has no such parameter (it has: {})".format(
                option, name, tool, ", ".join(parameters) or "none"
            )
        )
    default = None if parameter.default is inspect.Parameter.empty else parameter.default
    kind = parameter.kind
    if kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
        raise ConfigurationError("{}={!r}: *args/**kwargs cannot carry the {}".format(option, wanted, option))
    if kind is inspect.Parameter.KEYWORD_ONLY:
        return lambda args, kwargs: kwargs.get(wanted, default)
    index = list(parameters).index(wanted)
    if kind is inspect.Parameter.POSITIONAL_ONLY:
        return lambda args, kwargs: args[index] if len(args) > index else default
    return lambda args, kwargs: args[index] if len(args) > index else kwargs.get(wanted, default)


def _is_async(fn: object) -> bool:
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # noqa: B004 - a callable object's own __call__
    return not inspect.isfunction(fn) and not inspect.ismethod(fn) and inspect.iscoroutinefunction(call)


class _Core:
    """What one wrapper needs, computed once when wrapping."""

    def __init__(
        self,
        governed: Governed,
        capability: str,
        fn: Callable[..., object],
        amount: Optional[str],
        result_count: Optional[str],
        framework: Optional[str],
    ) -> None:
        self.governed = governed
        self.capability = capability
        self.fn = fn
        self.framework = framework
        self.tool_name: str = getattr(fn, "__name__", None) or type(fn).__name__
        try:
            signature: Optional[inspect.Signature] = inspect.signature(fn)
        except (TypeError, ValueError):
            signature = None
        self.signature = signature
        self.amount = _getter(signature, amount, "amount_cents", "amount", self.tool_name)
        self.count = _getter(signature, result_count, "result_count", "result_count", self.tool_name)
        names = []
        self.var_positional = "args"
        if signature is not None:
            for parameter in signature.parameters.values():
                if parameter.kind in (
                    inspect.Parameter.POSITIONAL_ONLY,
                    inspect.Parameter.POSITIONAL_OR_KEYWORD,
                ):
                    names.append(parameter.name)
                elif parameter.kind is inspect.Parameter.VAR_POSITIONAL:
                    self.var_positional = parameter.name
        self.names = tuple(names)
        self.skip_first = bool(names) and names[0] in ("self", "cls")

    def decide(
        self, state: AgentState, task: Optional[str], args: Tuple[object, ...], kwargs: Mapping[str, object]
    ) -> Optional[Denial]:
        amount = self.amount(args, kwargs) if self.amount is not None else None
        count = self.count(args, kwargs) if self.count is not None else None
        return decide(state, self.capability, task, amount, count, self.governed._governance_evaluator.now)

    def arguments(
        self, args: Tuple[object, ...], kwargs: Mapping[str, object]
    ) -> Tuple[Dict[str, object], int]:
        """The call's arguments by name, frozen for the audit record (``self``/``cls`` left out)."""
        names = self.names
        arguments: Dict[str, object] = dict(zip(names, args)) if args else {}
        if self.skip_first and args:
            del arguments[names[0]]
        if len(args) > len(names):
            arguments[self.var_positional] = args[len(names) :]
        if kwargs:
            arguments.update(kwargs)
        return freeze_arguments(arguments)

    def record(
        self,
        emitter: "AuditEmitter",
        state: AgentState,
        task: Optional[str],
        started: float,
        decision: str,
        reason: str,
        outcome: str,
        arguments: Tuple[Dict[str, object], int],
        duration_ms: Optional[float] = None,
        error_type: Optional[str] = None,
    ) -> None:
        intent = current_intent()
        emitter._record(
            (
                started,
                state.agent_id or None,
                self.capability,
                decision,
                reason,
                outcome,
                self.tool_name,
                arguments[0],
                task,
                state.delegation_depth,
                self.framework or state.framework or "unknown",
                state.jti,
                duration_ms,
                error_type,
                intent[0] if intent is not None else None,
                intent[1] if intent is not None else None,
            ),
            arguments[1],
        )

    def sync_wrapper(self) -> Callable[..., object]:
        fn, governed, core = self.fn, self.governed, self

        def enforced(*args: object, **kwargs: object) -> object:
            call = _Call(core, governed._governance_state(), args, kwargs)  # raises when denied
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                call.failed(exc)
                raise
            return call.finished(result)

        return enforced

    def async_wrapper(self) -> Callable[..., object]:
        fn, governed, core = self.fn, self.governed, self

        async def enforced(*args: object, **kwargs: object) -> object:
            call = _Call(core, await governed._agovernance_state(), args, kwargs)
            try:
                result = await fn(*args, **kwargs)  # type: ignore[misc]
            except BaseException as exc:  # CancelledError too: the call did not complete
                call.failed(exc)
                raise
            return call.finished(result)

        return enforced


class _Call:
    """One enforced call, decided when built (a denial is audited and raised), then closed by
    ``failed`` or ``finished``: the sync and async wrappers share every rule through it."""

    __slots__ = ("core", "state", "task", "emitter", "started", "arguments", "begun")

    def __init__(
        self, core: _Core, state: AgentState, args: Tuple[object, ...], kwargs: Mapping[str, object]
    ) -> None:
        self.core = core
        self.state = state
        governed = core.governed
        task = self.task = current_task_id() or state.task_id or governed.task_id
        denial = None if core.capability in state.unconstrained else core.decide(state, task, args, kwargs)
        emitter = self.emitter = governed._governance_audit
        if emitter is not None:
            self.started = emitter.clock.time()
            self.arguments = core.arguments(args, kwargs)  # before the call: the tool may change them
        if denial is not None:
            self._deny(denial, None)
        self.begun = time.perf_counter()

    def failed(self, exc: BaseException) -> None:
        emitter = self.emitter
        if emitter is not None:
            duration = (time.perf_counter() - self.begun) * 1000.0
            self.core.record(
                emitter, self.state, self.task, self.started, DECISION_ALLOW, REASON_ALLOWED, OUTCOME_ERROR,
                self.arguments, duration, type(exc).__name__,
            )  # fmt: skip

    def finished(self, result: object) -> object:
        """The tool's result, unless it holds more results than ``max_results`` allows."""
        duration = (time.perf_counter() - self.begun) * 1000.0
        state = self.state
        if state.policy.counts_results:
            denial = state.policy.check_results(result_count_of(result))
            if denial is not None:
                self._deny(denial, duration)
        emitter = self.emitter
        if emitter is not None:
            self.core.record(
                emitter, state, self.task, self.started, DECISION_ALLOW, REASON_ALLOWED, OUTCOME_SUCCESS,
                self.arguments, duration,
            )  # fmt: skip
        return result

    def _deny(self, denial: Denial, duration: Optional[float]) -> "NoReturn":
        emitter = self.emitter
        if emitter is not None:
            self.core.record(
                emitter, self.state, self.task, self.started, DECISION_DENY, denial[0], OUTCOME_DENIED,
                self.arguments, duration,
            )  # fmt: skip
        raise violation(self.state, self.core.capability, denial)


def _check_capability(capability: object) -> str:
    if not isinstance(capability, str) or not capability or any(c.isspace() for c in capability):
        raise ConfigurationError(
            "capability must be a non-empty name without spaces, such as 'stripe.charges.create'; got {!r}".format(
                capability
            )
        )
    return capability


def enforce(
    governed: Governed,
    capability: str,
    fn: F,
    *,
    amount: Optional[str] = None,
    result_count: Optional[str] = None,
    framework: Optional[str] = None,
) -> F:
    """Wrap ``fn`` so every call is checked against ``capability`` and audited.

    Args:
        governed: the client (anything implementing ``Governed``).
        capability: e.g. ``"stripe.charges.create"``.
        fn: a function, async function, method, bound method, staticmethod/classmethod
            object or callable object. Generators are refused (the call would end before the
            work does).
        amount: the parameter that carries the amount in cents (default: one named
            ``amount_cents``, if any).
        result_count: the parameter that carries a requested result count (default: one named
            ``result_count``, if any). A sized return value is counted too.
        framework: recorded in audit events (default: the token's ``agent.framework``).

    Raises:
        ConfigurationError: a bad capability name, an ``amount``/``result_count`` that names no
            parameter, a generator, or ``fn`` already enforced for another capability/client.
    """
    _check_capability(capability)
    if isinstance(fn, (staticmethod, classmethod)):
        inner = enforce(
            governed, capability, fn.__func__, amount=amount, result_count=result_count, framework=framework
        )
        return cast(F, type(fn)(inner))
    if not callable(fn):
        raise ConfigurationError("only callables can be enforced, got {}".format(type(fn).__name__))
    mark = getattr(fn, _MARK, None)
    if mark is not None:
        if mark[0] is governed and mark[1] == capability:
            return fn  # already enforced: no double check, no double audit
        raise ConfigurationError(
            "{} is already enforced as {!r}{}; wrap the original function (its __wrapped__) instead".format(
                getattr(fn, "__name__", "this tool"),
                mark[1],
                "" if mark[0] is governed else " by another client",
            )
        )
    if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
        raise ConfigurationError(
            "{} is a generator: its work runs after the call returns, so it cannot be checked and "
            "audited as one call; return a list instead".format(getattr(fn, "__name__", "this tool"))
        )
    core = _Core(governed, capability, fn, amount, result_count, framework)
    wrapper = core.async_wrapper() if _is_async(fn) else core.sync_wrapper()
    # A callable object's __dict__ is its state (maybe credentials): copy names, not that.
    updated = ("__dict__",) if inspect.isfunction(fn) or inspect.ismethod(fn) else ()
    functools.update_wrapper(wrapper, fn, updated=updated)
    if core.signature is not None:
        wrapper.__signature__ = core.signature  # type: ignore[attr-defined]
    setattr(wrapper, _MARK, (governed, capability, core))
    wrapper._oculus_capability = capability  # type: ignore[attr-defined]  # read by official-style code
    return cast(F, wrapper)
