"""The capability evaluator: scope, ``deny_always`` and the token's constraints, failing closed.

How it works: constraints are *compiled* once into a ``Policy`` (validated, time zone
resolved, hours parsed); a malformed or unknown constraint compiles into a fixed denial at
its place in the order. ``Policy.check`` then costs a few comparisons per call. The public
``CapabilityEvaluator`` compiles on every call (the official stateless API); the enforcing
wrapper uses the policy an ``AgentState`` compiled when it was built.

Order (first failure wins): scope, deny_always, the constraint set itself (null, not an
object, unknown keys), time_bounds, max_amount_cents, task_context_required, max_results.

Nothing here raises for bad constraint or context data: every problem is a denial with a
reason code (the official constants plus ours) and a detail that says what to fix. Details
quote constraint values (policy data), never context values (tool arguments).
"""

import re
import time
from datetime import datetime, tzinfo
from types import ModuleType
from typing import (
    AbstractSet,
    Callable,
    Dict,
    FrozenSet,
    Iterable,
    List,
    Mapping,
    NamedTuple,
    Optional,
    Tuple,
    TypeVar,
    Union,
)

_zoneinfo_module: List[Optional[ModuleType]] = []


def _zoneinfo() -> Optional[ModuleType]:
    """``zoneinfo`` (3.9+), imported on first use: it loads sysconfig, which costs import time."""
    if not _zoneinfo_module:
        try:
            import zoneinfo
        except ImportError:  # pragma: no cover - 3.8: every non-UTC zone denies (see _resolve_zone)
            _zoneinfo_module.append(None)
        else:
            _zoneinfo_module.append(zoneinfo)
    return _zoneinfo_module[0]


__all__ = [  # and the REASON_* constants, listed in REASONS
    "REASONS",
    "CapabilityEvaluator",
    "Denial",
    "EvalResult",
    "Policy",
    "capability_evaluator",
    "compile_policy",
    "scope_set",
]

# The official reason codes (same strings as the control plane and oculus_sdk).
REASON_ALLOWED = "allowed"
REASON_NOT_IN_SCOPE = "capability_not_in_scope"
REASON_TIME_WINDOW = "time_window_violation"
REASON_AMOUNT_EXCEEDED = "amount_limit_exceeded"
REASON_TASK_CONTEXT_REQUIRED = "task_context_required"
REASON_MAX_RESULTS_EXCEEDED = "max_results_exceeded"
# Ours: the cases the official evaluator allows by mistake or crashes on.
REASON_DENY_ALWAYS = "capability_deny_always"
REASON_MALFORMED_CONSTRAINT = "malformed_constraint"
REASON_UNKNOWN_CONSTRAINT = "unknown_constraint"
REASON_UNKNOWN_TIMEZONE = "unknown_timezone"
REASON_TIMEZONE_UNAVAILABLE = "timezone_unavailable"
REASON_INVALID_AMOUNT = "invalid_amount"
REASON_INVALID_RESULT_COUNT = "invalid_result_count"
REASON_INVALID_CONTEXT = "invalid_context"

#: Every reason code this evaluator can return.
REASONS: FrozenSet[str] = frozenset(
    {
        REASON_ALLOWED,
        REASON_NOT_IN_SCOPE,
        REASON_TIME_WINDOW,
        REASON_AMOUNT_EXCEEDED,
        REASON_TASK_CONTEXT_REQUIRED,
        REASON_MAX_RESULTS_EXCEEDED,
        REASON_DENY_ALWAYS,
        REASON_MALFORMED_CONSTRAINT,
        REASON_UNKNOWN_CONSTRAINT,
        REASON_UNKNOWN_TIMEZONE,
        REASON_TIMEZONE_UNAVAILABLE,
        REASON_INVALID_AMOUNT,
        REASON_INVALID_RESULT_COUNT,
        REASON_INVALID_CONTEXT,
    }
)


class EvalResult(NamedTuple):
    """A decision: ``allowed, reason = evaluator.evaluate(...)``."""

    allowed: bool
    reason: str


#: A denial: (reason code, what is wrong in words).
Denial = Tuple[str, str]

_ALLOWED = EvalResult(True, REASON_ALLOWED)
_T = TypeVar("_T")
_KNOWN_KEYS = ("time_bounds", "max_amount_cents", "task_context_required", "max_results")
_TIME_KEYS = frozenset({"days", "hours", "timezone"})
_DAYS: Dict[str, int] = {}
for _index, _names in enumerate(
    (("mon", "monday"), ("tue", "tuesday"), ("wed", "wednesday"), ("thu", "thursday"))
    + (("fri", "friday"), ("sat", "saturday"), ("sun", "sunday"))
):
    for _name in _names:
        _DAYS[_name] = _index
_HOURS = re.compile(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*\Z")
_UTC_NAMES = frozenset({"UTC", "Etc/UTC", "GMT", "Etc/GMT", "Universal", "Etc/Universal", "Zulu", "Etc/Zulu"})
_MINUTES_PER_DAY = 24 * 60


def _show(value: object) -> str:
    """A constraint value quoted in a detail, cut short."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _Refused(Exception):
    """Raised while compiling: the constraint compiles into this fixed denial."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.denial: Denial = (reason, detail)


def _malformed(detail: str) -> _Refused:
    return _Refused(REASON_MALFORMED_CONSTRAINT, detail)


class _Window:
    """A compiled ``time_bounds``: allowed weekdays and minutes of the day in one zone."""

    __slots__ = ("days", "start", "end", "zone")

    def __init__(
        self, days: Optional[FrozenSet[int]], start: Optional[int], end: Optional[int], zone: Optional[tzinfo]
    ) -> None:
        self.days = days
        self.start = start
        self.end = end
        self.zone = zone  # None: UTC, computed without datetime

    def check(self, now: float) -> Optional[Denial]:
        if self.zone is None:
            seconds = int(now // 1)
            weekday = (seconds // 86400 + 3) % 7  # 1970-01-01 was a Thursday
            minute = (seconds % 86400) // 60
        else:
            local = datetime.fromtimestamp(now, self.zone)
            weekday = local.weekday()
            minute = local.hour * 60 + local.minute
        if self.days is not None and weekday not in self.days:
            return (REASON_TIME_WINDOW, "not an allowed day")
        start, end = self.start, self.end
        if start is not None and end is not None:
            inside = start <= minute < end if start < end else (minute >= start or minute < end)
            if not inside:
                return (REASON_TIME_WINDOW, "outside the allowed hours")
        return None


def _resolve_zone(value: object) -> Optional[tzinfo]:
    """The zone of a window; None means UTC."""
    if value is None or (isinstance(value, str) and value in _UTC_NAMES):
        return None
    if not isinstance(value, str) or not value.strip():
        raise _malformed("time_bounds.timezone must be an IANA zone name, got {}".format(_show(value)))
    zoneinfo = _zoneinfo()
    if zoneinfo is None:
        raise _Refused(
            REASON_TIMEZONE_UNAVAILABLE,
            "time_bounds.timezone {} needs zoneinfo (Python 3.9+); this interpreter can only "
            "evaluate UTC windows".format(_show(value)),
        )
    try:
        zone: tzinfo = zoneinfo.ZoneInfo(value)
    except zoneinfo.ZoneInfoNotFoundError:
        raise _Refused(
            REASON_UNKNOWN_TIMEZONE, "time_bounds.timezone {} is not a known zone".format(_show(value))
        ) from None
    except (ValueError, TypeError, OSError):  # path-like names, NUL bytes, unreadable tzdata
        raise _malformed("time_bounds.timezone {} is not a valid zone name".format(_show(value))) from None
    return zone


def _parse_hours(value: object) -> Tuple[int, int]:
    match = _HOURS.match(value) if isinstance(value, str) else None
    if match is None:
        raise _malformed('time_bounds.hours must be "HH:MM-HH:MM", got {}'.format(_show(value)))
    sh, sm, eh, em = (int(part) for part in match.groups())
    if sh > 23 or sm > 59 or em > 59 or eh > 24 or (eh == 24 and em != 0):
        raise _malformed("time_bounds.hours {} is not a valid time range".format(_show(value)))
    start, end = sh * 60 + sm, eh * 60 + em
    if start == end:
        raise _malformed(
            "time_bounds.hours {} is empty (start equals end); use 00:00-24:00 for the whole day".format(
                _show(value)
            )
        )
    return start, end


def _compile_window(bounds: object) -> _Window:
    if not isinstance(bounds, Mapping):
        raise _malformed("time_bounds must be an object, got {}".format(type(bounds).__name__))
    unknown = sorted(str(key) for key in bounds if key not in _TIME_KEYS)
    if unknown:
        raise _Refused(
            REASON_UNKNOWN_CONSTRAINT, "time_bounds has unknown keys: {}".format(", ".join(unknown))
        )
    days: Optional[FrozenSet[int]] = None
    raw_days = bounds.get("days")
    if raw_days is not None:
        if not isinstance(raw_days, (list, tuple)):
            raise _malformed("time_bounds.days must be a list of day names, got {}".format(_show(raw_days)))
        if raw_days:  # [] means every day, as in the control plane
            found = set()
            for name in raw_days:
                index = _DAYS.get(name.strip().lower()) if isinstance(name, str) else None
                if index is None:
                    raise _malformed("time_bounds.days has an unknown day {}".format(_show(name)))
                found.add(index)
            days = frozenset(found)
    start: Optional[int] = None
    end: Optional[int] = None
    raw_hours = bounds.get("hours")
    if raw_hours is not None and raw_hours != "":
        start, end = _parse_hours(raw_hours)
    return _Window(days, start, end, _resolve_zone(bounds.get("timezone")))


def _compile_cap(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _malformed("{} must be a non-negative integer, got {}".format(name, _show(value)))
    return value


def _compiled(build: Callable[[], _T]) -> Union[_T, Denial]:
    try:
        return build()
    except _Refused as refused:
        return refused.denial


class Policy:
    """Compiled constraints. ``check`` returns None (allowed) or the first Denial."""

    __slots__ = (
        "structure",
        "window",
        "max_amount",
        "task_required",
        "max_results",
        "unconstrained",
        "counts_results",
    )

    def __init__(self, constraints: object) -> None:
        self.structure: Optional[Denial] = None
        self.window: Union[None, _Window, Denial] = None
        self.max_amount: Union[None, int, Denial] = None
        self.task_required: Union[bool, Denial] = False
        self.max_results: Union[None, int, Denial] = None
        if constraints is None:
            self.structure = _malformed("constraints is null; expected an object ({} for none)").denial
        elif not isinstance(constraints, Mapping):
            self.structure = _malformed(
                "constraints must be an object, got {}".format(type(constraints).__name__)
            ).denial
        else:
            unknown = sorted(str(key) for key in constraints if key not in _KNOWN_KEYS)
            if unknown:
                self.structure = (
                    REASON_UNKNOWN_CONSTRAINT,
                    "unknown constraints (not enforceable by this SDK version): " + ", ".join(unknown),
                )
            if "time_bounds" in constraints:
                bounds = constraints["time_bounds"]
                self.window = _compiled(lambda: _compile_window(bounds))
            if "max_amount_cents" in constraints:
                amount_cap = constraints["max_amount_cents"]
                self.max_amount = _compiled(lambda: _compile_cap("max_amount_cents", amount_cap))
            if "task_context_required" in constraints:
                required = constraints["task_context_required"]
                if isinstance(required, bool):
                    self.task_required = required
                else:
                    self.task_required = _malformed(
                        "task_context_required must be true or false, got {}".format(_show(required))
                    ).denial
            if "max_results" in constraints:
                results_cap = constraints["max_results"]
                self.max_results = _compiled(lambda: _compile_cap("max_results", results_cap))
        #: Whether a tool's returned value must be counted against ``max_results``.
        self.counts_results = isinstance(self.max_results, int)
        self.unconstrained = (
            self.structure is None
            and self.window is None
            and self.max_amount is None
            and self.task_required is False
            and self.max_results is None
        )

    def check(
        self,
        task_id: object,
        amount: object,
        result_count: object,
        now: Callable[[], float],
    ) -> Optional[Denial]:
        if self.unconstrained:
            return None
        if self.structure is not None:
            return self.structure
        window = self.window
        if window is not None:
            if isinstance(window, tuple):
                return window
            denied = window.check(now())
            if denied is not None:
                return denied
        cap = self.max_amount
        if cap is not None:
            if isinstance(cap, tuple):
                return cap
            if amount is not None:
                if not _is_int(amount):
                    return (
                        REASON_INVALID_AMOUNT,
                        "amount_cents must be an integer number of cents, got {}".format(
                            type(amount).__name__
                        ),
                    )
                if amount < 0:  # type: ignore[operator]
                    return (REASON_INVALID_AMOUNT, "amount_cents must not be negative")
                if amount > cap:  # type: ignore[operator]
                    return (REASON_AMOUNT_EXCEEDED, "amount over the cap of {} cents".format(cap))
        required = self.task_required
        if required is not False:
            if isinstance(required, tuple):
                return required
            if not isinstance(task_id, str) or not task_id:
                return (REASON_TASK_CONTEXT_REQUIRED, "a task id is required: run inside client.task(...)")
        return self.check_results(result_count)

    def check_results(self, result_count: object) -> Optional[Denial]:
        cap = self.max_results
        if isinstance(cap, tuple):  # malformed: denies with or without a count
            return cap
        if cap is None or result_count is None:
            return None
        if not _is_int(result_count):
            return (
                REASON_INVALID_RESULT_COUNT,
                "result_count must be an integer, got {}".format(type(result_count).__name__),
            )
        if result_count < 0:  # type: ignore[operator]
            return (REASON_INVALID_RESULT_COUNT, "result_count must not be negative")
        if result_count > cap:  # type: ignore[operator]
            return (REASON_MAX_RESULTS_EXCEEDED, "more than {} results".format(cap))
        return None


def compile_policy(constraints: object) -> Policy:
    """Validate and compile a token's constraints (``agent.constraints``) once."""
    return Policy(constraints)


def scope_set(token_scopes: object) -> FrozenSet[str]:
    """The granted capabilities as a set: a string is split on whitespace (never searched)."""
    if isinstance(token_scopes, str):
        return frozenset(token_scopes.split())
    if isinstance(token_scopes, frozenset):
        return token_scopes
    if token_scopes is None:
        return frozenset()
    try:
        return frozenset(s for s in token_scopes if isinstance(s, str))  # type: ignore[attr-defined]
    except TypeError:
        return frozenset()


def _deny_set(deny_always: object) -> AbstractSet[str]:
    if isinstance(deny_always, (set, frozenset)):
        return deny_always
    return scope_set(deny_always)


class CapabilityEvaluator:
    """Decide whether a capability is allowed by the token's scopes and constraints.

    Stateless apart from the clock, so one instance may be shared by every thread. It never
    raises for bad constraint or context data: each problem is a denial with its own reason.

    Args:
        now: seconds since the epoch, for ``time_bounds`` (default ``time.time``; tests pass
            a fixed or manual clock).

    Example::

        allowed, reason = capability_evaluator.evaluate(
            "stripe.charges.create",
            {"stripe.charges.create"},
            {"max_amount_cents": 5000},
            {"amount_cents": 1200},
        )
    """

    def __init__(self, *, now: Callable[[], float] = time.time) -> None:
        self._now = now

    @property
    def now(self) -> Callable[[], float]:
        """The clock this evaluator reads for time windows."""
        return self._now

    def evaluate(
        self,
        capability: str,
        token_scopes: Union[AbstractSet[str], Iterable[str], str],
        constraints: Optional[Mapping[str, object]],
        context: Optional[Mapping[str, object]] = None,
        *,
        deny_always: Union[AbstractSet[str], Iterable[str]] = frozenset(),
    ) -> EvalResult:
        """One decision, in the order scope, deny_always, constraints (see the module docstring).

        Args:
            capability: the capability name, e.g. ``"stripe.charges.create"``.
            token_scopes: the granted capabilities (a set, any iterable, or the JWT's
                space-separated ``scope`` string). Membership is exact: no wildcards.
            constraints: the token's ``agent.constraints`` object; ``None`` (JSON null) denies.
            context: ``task_id``, ``amount_cents`` (integer cents), ``result_count``.
            deny_always: capabilities the capability map denies whatever the scope says.
        """
        denied = self._decide(capability, token_scopes, compile_policy(constraints), context, deny_always)
        return _ALLOWED if denied is None else EvalResult(False, denied[0])

    def explain(
        self,
        capability: str,
        token_scopes: Union[AbstractSet[str], Iterable[str], str],
        constraints: Optional[Mapping[str, object]],
        context: Optional[Mapping[str, object]] = None,
        *,
        deny_always: Union[AbstractSet[str], Iterable[str]] = frozenset(),
    ) -> Tuple[EvalResult, str]:
        """``evaluate`` plus a sentence saying why (empty when allowed)."""
        denied = self._decide(capability, token_scopes, compile_policy(constraints), context, deny_always)
        if denied is None:
            return _ALLOWED, ""
        return EvalResult(False, denied[0]), denied[1]

    def evaluate_batch(
        self,
        capabilities: Iterable[str],
        token_scopes: Union[AbstractSet[str], Iterable[str], str],
        constraints: Optional[Mapping[str, object]],
        context: Optional[Mapping[str, object]] = None,
        *,
        deny_always: Union[AbstractSet[str], Iterable[str]] = frozenset(),
    ) -> Dict[str, EvalResult]:
        """``evaluate`` for each capability (constraints compiled once)."""
        policy = compile_policy(constraints)
        scopes = scope_set(token_scopes)
        deny = _deny_set(deny_always)
        results: Dict[str, EvalResult] = {}
        for capability in capabilities:
            denied = self._decide(capability, scopes, policy, context, deny)
            results[capability] = _ALLOWED if denied is None else EvalResult(False, denied[0])
        return results

    def evaluate_constraints(
        self, constraints: Optional[Mapping[str, object]], context: Optional[Mapping[str, object]]
    ) -> Tuple[bool, str]:
        """Only the constraints (no scope or deny_always check): ``(allowed, reason)``."""
        denied = self._check_constraints(compile_policy(constraints), context)
        return (True, REASON_ALLOWED) if denied is None else (False, denied[0])

    def _decide(
        self,
        capability: object,
        token_scopes: object,
        policy: Policy,
        context: Optional[Mapping[str, object]],
        deny_always: object,
    ) -> Optional[Denial]:
        if not isinstance(capability, str) or capability not in scope_set(token_scopes):
            return (REASON_NOT_IN_SCOPE, "the token does not grant this capability")
        if capability in _deny_set(deny_always):
            return (REASON_DENY_ALWAYS, "the capability map denies this capability to every agent")
        return self._check_constraints(policy, context)

    def _check_constraints(self, policy: Policy, context: object) -> Optional[Denial]:
        if context is None:
            context = {}
        elif not isinstance(context, Mapping):
            return (
                REASON_INVALID_CONTEXT,
                "context must be a mapping, got {}".format(type(context).__name__),
            )
        return policy.check(
            context.get("task_id"), context.get("amount_cents"), context.get("result_count"), self._now
        )


#: The shared evaluator (official name); reads ``time.time``.
capability_evaluator = CapabilityEvaluator()
