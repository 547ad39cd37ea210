"""Public methods made from plans: a flow's signature and docstring are written once, on its
plan method; ``blocking`` and ``coroutine`` turn it into the sync and the async public method.

    class PermissionClient(PermissionCore):
        use_token = blocking(PermissionCore._use_token)

    class AsyncPermissionClient(PermissionCore):
        use_token = coroutine(PermissionCore._use_token)

The owner supplies ``_transport``, ``_sleep`` (the blocking driver's interruptible sleep)
and ``_clock`` (whose ``asleep`` the async driver uses).
"""

import functools
from typing import TYPE_CHECKING, Any, Callable, Coroutine, Optional, TypeVar

from ._plan import Plan, arun, run

if TYPE_CHECKING:  # pragma: no cover - ParamSpec/Concatenate exist from 3.10; mypy runs on 3.11
    from typing import Concatenate, ParamSpec

    P = ParamSpec("P")

__all__ = ["blocking", "coroutine"]

S = TypeVar("S")
T = TypeVar("T")


def _public(shell: Callable[..., Any], plan: Callable[..., Any], name: Optional[str]) -> None:
    functools.update_wrapper(shell, plan)
    shell.__name__ = name or plan.__name__.lstrip("_")
    shell.__qualname__ = plan.__qualname__.rsplit(".", 1)[0] + "." + shell.__name__
    annotations = dict(getattr(plan, "__annotations__", {}))
    annotations.pop("return", None)  # a shell returns the plan's result, not a plan
    shell.__annotations__ = annotations


def blocking(
    plan: "Callable[Concatenate[S, P], Plan[T]]", name: Optional[str] = None
) -> "Callable[Concatenate[S, P], T]":
    """The sync public method (named ``name``, default the plan's name without its leading
    underscore): runs the plan with the blocking driver."""

    def shell(self: Any, /, *args: Any, **kwargs: Any) -> Any:
        return run(plan(self, *args, **kwargs), self._transport, self._sleep)

    _public(shell, plan, name)
    return shell


def coroutine(
    plan: "Callable[Concatenate[S, P], Plan[T]]", name: Optional[str] = None
) -> "Callable[Concatenate[S, P], Coroutine[Any, Any, T]]":
    """The async public method (named like ``blocking`` names it): runs the plan with the
    asyncio driver."""

    async def shell(self: Any, /, *args: Any, **kwargs: Any) -> Any:
        return await arun(plan(self, *args, **kwargs), self._transport, self._clock.asleep)

    _public(shell, plan, name)
    return shell
