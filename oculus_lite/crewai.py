"""CrewAI adapter under the official SDK's module name (``oculus_sdk.crewai``).

    from oculus_lite.crewai import OculusCrew

    client = OculusCrew()                           # the Client's arguments
    crew = client.wrap_crew(Crew(agents=[...], tasks=[...]))
    crew.kickoff()

``wrap_crew`` enforces, in place, every tool of the crew's agents, of its tasks and of its
manager agent. CrewAI tools stay the ``BaseTool`` objects they were (CrewAI accepts nothing
else): a function tool (CrewAI's ``@tool``) gets its function enforced; any other ``BaseTool``
gets both ``_run`` and ``_arun`` enforced on the instance. Every call is checked (amounts and
result counts included) and audited with ``framework="crewai"`` by the client's one enforcing
wrapper. A tool's capability comes from ``@client.tool`` (on the function, or on ``_run``) or
from an ``_oculus_capability`` attribute, as in the official SDK; a tool with none raises
unless it is listed in ``unprotected``. Wrapping again changes nothing.

Only the standard library is imported here; ``crewai`` is imported when a tool is wrapped
(``pip install crewai``).
"""

from typing import Any, Iterable, List, Optional, TypeVar

from .exceptions import ConfigurationError
from .governance._adapters import capability_of, enforce_for, require
from .tokens._client import Client

__all__ = ["OculusCrew"]

_FRAMEWORK = "crewai"
_T = TypeVar("_T")
_C = TypeVar("_C")


class OculusCrew(Client):
    """A ``Client`` that enforces CrewAI tools (see the module docstring)."""

    def wrap_tool(
        self,
        tool_fn: _T,
        capability: Optional[str] = None,
        *,
        amount: Optional[str] = None,
        result_count: Optional[str] = None,
    ) -> _T:
        """``tool_fn`` enforced: a function comes back as an enforced function (give it to
        CrewAI's ``@tool``), a CrewAI ``BaseTool`` comes back as the same object, enforced.

        Args:
            capability: required unless the tool carries one (``@client.tool`` or
                ``_oculus_capability``).
            amount, result_count: the parameters carrying the amount in cents and the
                requested result count (default: ``amount_cents`` and ``result_count``), as
                with ``@client.tool``.

        Raises:
            ImportError: crewai is not installed.
            ConfigurationError: no capability, or one that contradicts the tool's own.
        """
        base_tool = _base_tool_class()
        if isinstance(tool_fn, base_tool):
            self._enforce_tool(tool_fn, capability, amount, result_count)
            return tool_fn
        if not callable(tool_fn):
            raise ConfigurationError(
                "wrap_tool: {!r} is neither a function nor a crewai BaseTool".format(tool_fn)
            )
        return enforce_for(self, capability, tool_fn, _FRAMEWORK, amount=amount, result_count=result_count)

    def wrap_crew(self, crew: _C, *, unprotected: Iterable[object] = ()) -> _C:
        """Enforce every tool of ``crew`` in place (agents', tasks', the manager agent's) and
        return ``crew``.

        Args:
            unprotected: tools to leave unenforced; any other tool without a capability raises.

        Raises:
            ImportError: crewai is not installed.
            ConfigurationError: a tool without a capability that is not in ``unprotected``.
        """
        base_tool = _base_tool_class()
        allowed = list(unprotected)
        for holder in _tool_holders(crew):
            tools = getattr(holder, "tools", None)
            if not tools:
                continue
            for tool in tools:
                if any(tool is ok for ok in allowed):
                    continue
                if not isinstance(tool, base_tool):
                    raise ConfigurationError(
                        "wrap_crew: {!r} is not a crewai BaseTool; make it one with crewai's @tool".format(
                            tool
                        )
                    )
                self._enforce_tool(tool, None, None, None)
        return crew

    def _enforce_tool(
        self, tool: Any, capability: Optional[str], amount: Optional[str], result_count: Optional[str]
    ) -> None:
        """Enforce a BaseTool in place: a function tool's ``func``, else ``_run`` and ``_arun``
        (instance attributes, so ``run``/``arun`` and the agent's structured tool use them)."""
        function = getattr(tool, "func", None)
        is_function_tool = "func" in type(tool).model_fields and callable(function)
        capability = (
            capability
            or capability_of(tool)
            or (capability_of(function) if is_function_tool else None)
            or capability_of(tool._run)
            or capability_of(tool._arun)
        )
        if capability is None:
            raise ConfigurationError(_no_capability(getattr(tool, "name", type(tool).__name__)))
        for name in ("func",) if is_function_tool else ("_run", "_arun"):
            current = getattr(tool, name)
            enforced = enforce_for(
                self,
                capability,
                current,
                _FRAMEWORK,
                amount=amount,
                result_count=result_count,
                name=tool.name,
            )
            if enforced is not current:
                # Into the instance's __dict__: found before the class's method, and past
                # pydantic's __setattr__ (which keeps unknown _names aside, behind the method).
                object.__setattr__(tool, name, enforced)


def _base_tool_class() -> type:
    base: type = require("crewai.tools", "crewai", "oculus_lite.crewai").BaseTool
    return base


def _tool_holders(crew: object) -> List[object]:
    """The crew's agents, its tasks, their agents and its manager agent, each once."""
    holders: List[object] = []
    seen = set()
    tasks = list(getattr(crew, "tasks", None) or ())
    candidates = list(getattr(crew, "agents", None) or ())
    candidates += tasks + [getattr(task, "agent", None) for task in tasks]
    candidates.append(getattr(crew, "manager_agent", None))
    for holder in candidates:
        if holder is not None and id(holder) not in seen:
            seen.add(id(holder))
            holders.append(holder)
    return holders


def _no_capability(name: str) -> str:
    return (
        "crewai tool {!r} has no capability: decorate its function (or _run) with "
        '@client.tool("..."), set _oculus_capability, call client.wrap_tool(tool, capability=...) first, '
        "or list it in unprotected=[...] to run it unenforced".format(name)
    )
