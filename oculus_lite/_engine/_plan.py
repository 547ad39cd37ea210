"""Plans and their two drivers: every I/O flow is written once, as a generator, and run by
``run`` (blocking) or ``arun`` (asyncio). The drivers are the only place where the sync and
async worlds differ.

A plan yields *effects* and receives their results (or has their exception thrown in):

    ``Request``   (an ``oculus_lite.transport.Request``) -> what the transport returned.
                  Sync: ``transport.request``; async: ``await transport.arequest`` when the
                  transport is natively async, else ``request`` in a worker thread.
    ``Sleep(s)``  -> None. Sync: the caller's sleep (interruptible by ``close()``); async:
                  the clock's ``asleep``.
    ``Join(flight, timeout)`` -> the flight's value (or its error raised). Threads block on
                  it, coroutines await it: both with the same bound.
    ``Call(fn, *args)`` -> ``fn(*args)``, user code; async awaits the result if awaitable.
    ``Offload(fn, *args)`` -> ``fn(*args)`` for blocking library code (a token store); async
                  runs it in a worker thread.
    ``Spawn(plan)`` -> None. Starts a plan that must outlive this caller's cancellation (a
                  single-flight leader's fetch). Sync runs it to the end inline; async runs
                  it as its own task.
    ``Shield(plan)`` -> the plan's result. Sync runs it inline; async shields it from the
                  caller's cancellation (cleanup that must happen, e.g. marking a token used).

An exception raised by an effect (``NetworkError`` from a transport, ``CancelledError``,
``KeyboardInterrupt``...) is thrown into the plan at the ``yield``, so its ``try``/``finally``
blocks run in both worlds.
"""

from typing import Any, Awaitable, Callable, Generator, NamedTuple, Optional, Set, Tuple, TypeVar, Union

from .._http._models import Request
from ..exceptions import ConfigurationError
from ._flight import Flight

__all__ = ["Call", "Effect", "Join", "Offload", "Plan", "Shield", "Sleep", "Spawn", "arun", "run"]

T = TypeVar("T")


class Sleep(NamedTuple):
    seconds: float


class Join(NamedTuple):
    flight: Flight[Any]
    timeout: float


class Call:
    """Run user code; the async driver awaits what it returns when that is awaitable."""

    __slots__ = ("fn", "args")

    def __init__(self, fn: Callable[..., Any], *args: Any) -> None:
        self.fn = fn
        self.args = args


class Offload:
    """Run a blocking function; the async driver runs it in a worker thread."""

    __slots__ = ("fn", "args")

    def __init__(self, fn: Callable[..., Any], *args: Any) -> None:
        self.fn = fn
        self.args = args


class Spawn(NamedTuple):
    plan: "Plan[Any]"


class Shield(NamedTuple):
    plan: "Plan[Any]"


Effect = Union[Request, Sleep, Join, Call, Offload, Spawn, Shield]
Plan = Generator[Effect, Any, T]

# Tasks started by Spawn, kept referenced until they finish (the loop only holds them weakly).
_spawned: Set[Any] = set()


def run(plan: "Plan[T]", transport: Any, sleep: Callable[[float], Any]) -> T:
    """Drive ``plan`` in this thread. ``sleep`` may raise (e.g. ``ClientClosedError``)."""
    outcome: _Outcome = (None, None)
    while True:
        finished, effect = _resume(plan, outcome)
        if finished:
            return effect  # type: ignore[no-any-return]
        outcome = _perform(effect, transport, sleep)


def _perform(effect: Effect, transport: Any, sleep: Callable[[float], Any]) -> "_Outcome":
    try:
        if isinstance(effect, Request):
            send = getattr(transport, "request", None)
            if send is None:
                raise ConfigurationError(
                    "this transport only has an async interface (arequest): call the async "
                    "method (aget_token, arequest_permission...) or pass a blocking transport"
                )
            return send(effect), None
        if isinstance(effect, Sleep):
            return sleep(effect.seconds), None
        if isinstance(effect, Join):
            return effect.flight.result(effect.timeout), None
        if isinstance(effect, (Call, Offload)):
            return effect.fn(*effect.args), None
        if isinstance(effect, (Spawn, Shield)):
            return run(effect.plan, transport, sleep), None
        raise TypeError("a plan yielded {!r}, which is not an effect".format(effect))
    except BaseException as exc:  # thrown into the plan, which decides
        return None, exc


async def arun(plan: "Plan[T]", transport: Any, asleep: Callable[[float], Awaitable[None]]) -> T:
    """Drive ``plan`` on the running event loop; never blocks it."""
    outcome: _Outcome = (None, None)
    while True:
        finished, effect = _resume(plan, outcome)
        if finished:
            return effect  # type: ignore[no-any-return]
        outcome = await _aperform(effect, transport, asleep)


async def _aperform(effect: Effect, transport: Any, asleep: Callable[[float], Awaitable[None]]) -> "_Outcome":
    import asyncio

    try:
        if isinstance(effect, Request):
            native = getattr(transport, "arequest", None)
            if native is not None:
                return await native(effect), None
            return await asyncio.get_running_loop().run_in_executor(None, transport.request, effect), None
        if isinstance(effect, Sleep):
            await asleep(effect.seconds)
            return None, None
        if isinstance(effect, Join):
            return await effect.flight.aresult(effect.timeout), None
        if isinstance(effect, Call):
            from inspect import isawaitable

            value = effect.fn(*effect.args)
            return (await value if isawaitable(value) else value), None
        if isinstance(effect, Offload):
            return await asyncio.get_running_loop().run_in_executor(None, _call, effect.fn, effect.args), None
        if isinstance(effect, Spawn):
            task = asyncio.get_running_loop().create_task(arun(effect.plan, transport, asleep))
            _spawned.add(task)
            task.add_done_callback(_spawned.discard)
            return None, None
        if isinstance(effect, Shield):
            return await asyncio.shield(arun(effect.plan, transport, asleep)), None
        raise TypeError("a plan yielded {!r}, which is not an effect".format(effect))
    except BaseException as exc:  # thrown into the plan, which decides
        return None, exc


#: What an effect produced: (value, None), or (None, the exception to throw into the plan).
_Outcome = Tuple[Any, Optional[BaseException]]


def _resume(plan: "Plan[Any]", outcome: _Outcome) -> Tuple[bool, Any]:
    """Send the last outcome into the plan: (True, its result) when it returned, else (False, the
    next effect)."""
    value, error = outcome
    try:
        return False, (plan.send(value) if error is None else plan.throw(error))
    except StopIteration as done:
        return True, done.value


def _call(fn: Callable[..., T], args: Tuple[Any, ...]) -> T:
    return fn(*args)
