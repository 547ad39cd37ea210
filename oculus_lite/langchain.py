"""LangChain adapter under the official SDK's module name (``oculus_sdk.langchain``).

    from oculus_lite.langchain import OculusLangChain

    client = OculusLangChain()                      # the Client's arguments
    tools = client.wrap_tools([get_customer, create_charge])
    agent.invoke(inputs, config={"callbacks": [client.callback_handler]})

``wrap_tools`` returns ``langchain_core.tools.StructuredTool`` objects with a sync ``func`` and
an async ``coroutine``, each enforced and audited (``framework="langchain"``) by the client's
one enforcing wrapper, amounts and result counts included (declare them with
``@client.tool(capability, amount=..., result_count=...)``). A denial becomes a
``ToolException`` that the tool turns into an error result for the model (a ``ToolMessage``
with ``status="error"`` for a tool call), so the agent can go on; anything else the tool
raises propagates as LangChain decides.

``OculusCallbackHandler`` is a real ``BaseCallbackHandler``. It reads the model's reasoning
from each agent action (``AgentAction.log``) and from each tool-calling model answer (the
text beside the tool calls, and the model's name), keyed by run and tool-call id, so each
tool call is audited with its own reasoning (redacted before sending) even when agents run
concurrently in threads or asyncio tasks.

Only the standard library is imported here; ``langchain_core`` is imported when a tool or
the handler is built (``pip install langchain-core``).
"""

import asyncio
import contextvars
import functools
import inspect
import logging
import threading
from collections import OrderedDict
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, cast
from uuid import UUID

from .exceptions import ConfigurationError, PolicyViolationError
from .governance._adapters import capability_of, enforce_for, refusal_text, require, scrub
from .governance._current import intent
from .tokens._client import Client

__all__ = ["OculusCallbackHandler", "OculusLangChain"]  # noqa: F822 - OculusCallbackHandler: __getattr__

_log = logging.getLogger(__name__)
_FRAMEWORK = "langchain"
_PACKAGE = "langchain-core"
_ADAPTER = "oculus_lite.langchain"
#: How many unfinished runs, unconsumed tool calls and running tools one handler remembers.
_LIMIT = 10000

_Intent = Tuple[Optional[str], Optional[str]]  # (agent_reasoning, llm_model)


def _thought(log: object) -> Optional[str]:
    """The reasoning in an agent action's log: the text after "Thought:" and before "Action:"
    when there is one (as the official handler reads it), else the whole log."""
    if not isinstance(log, str):
        return None
    if "Thought:" in log:
        thought = log.split("Thought:")[-1].split("Action:")[0].strip()
        if thought:
            return thought
    return log.strip() or None


def _message_text(message: object) -> Optional[str]:
    """The text (and reasoning blocks) of a model message, beside its tool calls."""
    content = getattr(message, "content", None)
    if isinstance(content, str):
        return content.strip() or None
    if not isinstance(content, list):
        return None
    parts = []
    for block in content:
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, dict):
            for key in ("text", "reasoning", "thinking"):
                value = block.get(key)
                if isinstance(value, str):
                    parts.append(value)
    return "\n".join(p.strip() for p in parts if p.strip()) or None


def _model_name(*sources: object) -> Optional[str]:
    for source in sources:
        if isinstance(source, dict):
            for key in ("ls_model_name", "model_name", "model"):
                value = source.get(key)
                if isinstance(value, str) and value:
                    return value
    return None


class _ReasoningLedger:
    """The callback methods of ``OculusCallbackHandler`` (its LangChain base is added when the
    class is built): which reasoning belongs to which tool run.

    - ``on_agent_action`` (AgentExecutor-style agents) keeps the action's thought under the
      agent's run id; a tool run whose parent is that run gets it.
    - ``on_llm_end`` (tool-calling models) keeps the answer's text and model name under each
      tool call's id; the tool run started for that call id gets it.
    Entries go when their run ends; at most ``_LIMIT`` of each are kept (the oldest beyond
    that are dropped, counted in ``dropped`` and logged).
    """

    run_inline = True  # cheap and thread-safe: run on the caller's thread, in order

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: "OrderedDict[UUID, _Intent]" = OrderedDict()
        self._calls: "OrderedDict[str, _Intent]" = OrderedDict()
        self._tools: "OrderedDict[UUID, _Intent]" = OrderedDict()
        self._models: "OrderedDict[UUID, str]" = OrderedDict()
        self.dropped = 0

    def intent_for(self, tool_run_id: object) -> Optional[_Intent]:
        """(reasoning, model) for a running tool, or None."""
        return self._tools.get(cast(UUID, tool_run_id))

    def _keep(self, table: "OrderedDict[Any, Any]", key: object, value: object) -> None:
        with self._lock:
            table[key] = value
            table.move_to_end(key)
            if len(table) > _LIMIT:
                table.popitem(last=False)
                self.dropped += 1
                if self.dropped == 1 or self.dropped % 1000 == 0:
                    _log.warning(
                        "OculusCallbackHandler: forgot the reasoning of %d runs or tool calls it never "
                        "saw end (keeps %d of each)",
                        self.dropped,
                        _LIMIT,
                    )

    def _drop(self, table: "OrderedDict[Any, Any]", key: object) -> Any:
        with self._lock:
            return table.pop(key, None)

    # -- agents (AgentExecutor and other AgentAction emitters) ---------------------------------

    def on_agent_action(self, action: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._keep(self._runs, run_id, (_thought(getattr(action, "log", None)), None))

    def on_agent_finish(self, finish: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._drop(self._runs, run_id)

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        if run_id in self._runs:
            self._drop(self._runs, run_id)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        if run_id in self._runs:
            self._drop(self._runs, run_id)

    # -- tool-calling models --------------------------------------------------------------------

    def on_chat_model_start(
        self,
        serialized: Any,
        messages: Any,
        *,
        run_id: UUID,
        metadata: Optional[Dict[str, Any]] = None,
        **kwargs: Any,
    ) -> None:
        model = _model_name(metadata, kwargs.get("invocation_params"))
        if model is not None:
            self._keep(self._models, run_id, model)

    def on_llm_start(
        self,
        serialized: Any,
        prompts: Any,
        *,
        run_id: UUID,
        metadata: Optional[Dict[str, Any]] = None,
        **kwargs: Any,
    ) -> None:
        self.on_chat_model_start(serialized, prompts, run_id=run_id, metadata=metadata, **kwargs)

    def on_llm_end(self, response: Any, *, run_id: UUID, **kwargs: Any) -> None:
        model = self._drop(self._models, run_id)
        for generations in getattr(response, "generations", None) or ():
            for generation in generations:
                message = getattr(generation, "message", None)
                calls = getattr(message, "tool_calls", None)
                if not calls:
                    continue
                found = (
                    _message_text(message),
                    _model_name(getattr(message, "response_metadata", None)) or model,
                )
                for call in calls:
                    call_id = call.get("id") if isinstance(call, dict) else None
                    if isinstance(call_id, str) and call_id:
                        self._keep(self._calls, call_id, found)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._drop(self._models, run_id)

    # -- tools ------------------------------------------------------------------------------------

    def on_tool_start(
        self,
        serialized: Any,
        input_str: Any,
        *,
        run_id: UUID,
        parent_run_id: Optional[UUID] = None,
        **kwargs: Any,
    ) -> None:
        call_id = kwargs.get("tool_call_id")
        found = self._drop(self._calls, call_id) if isinstance(call_id, str) else None
        if found is None and parent_run_id is not None:
            found = self._runs.get(parent_run_id)
        if found is not None:
            self._keep(self._tools, run_id, found)

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._drop(self._tools, run_id)

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._drop(self._tools, run_id)


_handler_class_lock = threading.Lock()
_handler_class: Optional[type] = None


def _callback_handler_class() -> type:
    """``OculusCallbackHandler``: ``_ReasoningLedger`` on ``BaseCallbackHandler`` (built once)."""
    global _handler_class
    with _handler_class_lock:
        if _handler_class is None:
            base = require("langchain_core.callbacks", _PACKAGE, _ADAPTER).BaseCallbackHandler
            _handler_class = type(
                "OculusCallbackHandler",
                (_ReasoningLedger, base),
                {
                    "__module__": __name__,
                    "__doc__": "LangChain callback handler: the model's reasoning for each tool call's "
                    "audit event, kept per run (see oculus_lite.langchain).",
                },
            )
        return _handler_class


def __getattr__(name: str) -> Any:
    if name == "OculusCallbackHandler":  # a BaseCallbackHandler subclass: needs langchain-core
        return _callback_handler_class()
    raise AttributeError("module {!r} has no attribute {!r}".format(__name__, name))


def _intent_of(callbacks: object, own: object) -> _Intent:
    """The reasoning recorded for the running tool. StructuredTool hands a function with a
    ``callbacks`` parameter the tool run's child manager, whose parent is the tool run; the
    handlers that saw the run are the inherited ones there, and the client's own (attached
    to the tool, so not inherited by the child)."""
    run_id = getattr(callbacks, "parent_run_id", None)
    if run_id is not None:
        for handler in (own, *(getattr(callbacks, "handlers", None) or ())):
            if isinstance(handler, _ReasoningLedger):
                found = handler.intent_for(run_id)
                if found is not None:
                    return found
    return (None, None)


class OculusLangChain(Client):
    """A ``Client`` whose ``wrap_tools`` returns LangChain tools (see the module docstring)."""

    _oculus_handler: Any = None

    @property
    def callback_handler(self) -> Any:
        """This client's ``OculusCallbackHandler`` (one per client; add it to the agent's
        ``callbacks``). ``wrap_tools`` attaches it to every tool it returns."""
        handler = self._oculus_handler
        if handler is None:
            cls = _callback_handler_class()
            with _handler_class_lock:
                if self._oculus_handler is None:
                    self._oculus_handler = cls()
                handler = self._oculus_handler
        return handler

    def wrap_tools(
        self,
        tool_functions: Iterable[Any],
        callbacks: Any = None,
        *,
        unprotected: Iterable[Any] = (),
    ) -> List[Any]:
        """LangChain ``StructuredTool`` objects, enforced and audited.

        Args:
            tool_functions: functions (sync or async) decorated with ``@client.tool(...)`` or
                tagged the official way (``_oculus_capability``), or LangChain
                ``StructuredTool`` objects whose function is.
            callbacks: callback handlers (a list or a callback manager) attached to every
                tool, beside this client's ``callback_handler``.
            unprotected: tools to return without enforcement (functions become plain
                ``StructuredTool``s). Anything else without a capability raises.

        Raises:
            ImportError: langchain-core is not installed.
            ConfigurationError: a tool has no capability and is not listed in ``unprotected``.
        """
        tools = require("langchain_core.tools", _PACKAGE, _ADAPTER)
        attached = _with_handler(callbacks, self.callback_handler)
        allowed = list(unprotected)
        wrapped: List[Any] = []
        for item in tool_functions:
            if any(item is ok for ok in allowed):
                if not isinstance(item, tools.BaseTool):
                    name = getattr(item, "__name__", None) or type(item).__name__
                    description = inspect.getdoc(item) or "Tool {}".format(name)
                    item = tools.StructuredTool.from_function(
                        item, name=name, description=description, callbacks=attached
                    )
                wrapped.append(item)
            elif isinstance(item, tools.StructuredTool):
                made_by = _made_by(item)
                if made_by is self:
                    wrapped.append(item)  # wrapped here already: as it is, never twice
                elif made_by is not None:
                    raise ConfigurationError(
                        "wrap_tools: tool {!r} is enforced by another client; wrap its function".format(
                            item.name
                        )
                    )
                else:
                    wrapped.append(self._wrap_structured(tools, item, attached))
            elif isinstance(item, tools.BaseTool):
                raise ConfigurationError(
                    "wrap_tools: {!r} is a {} whose function cannot be reached; pass the function "
                    "decorated with @client.tool(...), or list the tool in unprotected=[...]".format(
                        item.name, type(item).__name__
                    )
                )
            elif callable(item):
                wrapped.append(self._wrap_function(tools, item, attached))
            else:
                raise ConfigurationError("wrap_tools: {!r} is neither a function nor a tool".format(item))
        return wrapped

    def _wrap_function(self, tools: Any, fn: Callable[..., Any], callbacks: Any) -> Any:
        capability = capability_of(fn)
        if capability is None:
            raise ConfigurationError(
                'wrap_tools: {!r} has no capability; decorate it with @client.tool("...") or list it '
                "in unprotected=[...] to run it unenforced".format(getattr(fn, "__name__", fn))
            )
        name = getattr(fn, "__name__", None) or type(fn).__name__
        original = inspect.unwrap(fn)
        doc = inspect.getdoc(fn)
        func, coroutine = self._enforced_pair(tools, fn, capability)
        return tools.StructuredTool.from_function(
            func=func,
            coroutine=coroutine,
            name=name,
            description=doc or "Tool requiring {}".format(capability),
            args_schema=tools.create_schema_from_function(
                name, original, filter_args=list(tools.FILTERED_ARGS)
            ),
            infer_schema=False,
            handle_tool_error=True,
            callbacks=callbacks,
        )

    def _wrap_structured(self, tools: Any, tool: Any, callbacks: Any) -> Any:
        """A copy of a StructuredTool whose func/coroutine are enforced (its name, description
        and schema kept)."""
        source = tool.func if tool.func is not None else tool.coroutine
        capability = capability_of(source) or capability_of(tool.coroutine)
        if capability is None:
            raise ConfigurationError(
                'wrap_tools: tool {!r} has no capability; decorate its function with @client.tool("...") '
                "before LangChain's @tool, or list it in unprotected=[...]".format(tool.name)
            )
        if tool.func is not None and tool.coroutine is not None:
            func = self._enforced_pair(tools, tool.func, capability)[0]
            coroutine = self._enforced_pair(tools, tool.coroutine, capability)[1]
        else:
            func, coroutine = self._enforced_pair(tools, source, capability)
        return tool.model_copy(
            update={"func": func, "coroutine": coroutine, "handle_tool_error": True, "callbacks": callbacks}
        )

    def _enforced_pair(
        self, tools: Any, fn: Callable[..., Any], capability: str
    ) -> Tuple[Callable[..., Any], Callable[..., Any]]:
        """(sync func, async coroutine) for StructuredTool: the enforced call with the run's
        reasoning attached and a denial turned into a ToolException."""
        enforced = enforce_for(self, capability, fn, _FRAMEWORK)
        call = _Call(self, enforced, tools.ToolException, "callbacks" in _parameters(fn))
        if inspect.iscoroutinefunction(enforced):
            return call.run_async_blocking, call.run_async
        return call.run, call.run_in_executor


class _Call:
    """One enforced tool as StructuredTool calls it: ``callbacks`` (the tool run's child
    manager) leads to the reasoning; a denial becomes ``ToolException`` (the model sees the
    capability and reason only). A sync tool's coroutine runs it in the loop's executor; an
    async tool's sync func runs it with ``asyncio.run`` when no loop is running here."""

    def __init__(
        self, client: OculusLangChain, enforced: Callable[..., Any], tool_exception: Any, forwards: bool
    ) -> None:
        self.client = client
        self.enforced = enforced
        self.tool_exception = tool_exception
        self.forwards = forwards  # the tool declares `callbacks` itself: hand it on

    def _intent(self, callbacks: object) -> _Intent:
        return _intent_of(callbacks, self.client._oculus_handler)

    def _refused(self, error: PolicyViolationError) -> BaseException:
        exc: BaseException = self.tool_exception(scrub(self.client, refusal_text(error)))
        return exc

    def run(self, *args: Any, callbacks: Any = None, **kwargs: Any) -> Any:
        if self.forwards:
            kwargs["callbacks"] = callbacks
        with intent(*self._intent(callbacks)):
            try:
                return self.enforced(*args, **kwargs)
            except PolicyViolationError as error:
                raise self._refused(error) from error

    async def run_in_executor(self, *args: Any, callbacks: Any = None, **kwargs: Any) -> Any:
        call = functools.partial(
            contextvars.copy_context().run, self.run, *args, callbacks=callbacks, **kwargs
        )
        return await asyncio.get_running_loop().run_in_executor(None, call)

    async def run_async(self, *args: Any, callbacks: Any = None, **kwargs: Any) -> Any:
        if self.forwards:
            kwargs["callbacks"] = callbacks
        with intent(*self._intent(callbacks)):
            try:
                return await self.enforced(*args, **kwargs)
            except PolicyViolationError as error:
                raise self._refused(error) from error

    def run_async_blocking(self, *args: Any, callbacks: Any = None, **kwargs: Any) -> Any:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.run_async(*args, callbacks=callbacks, **kwargs))
        raise RuntimeError(
            "{} is async: inside a running event loop call it with `await tool.ainvoke(...)`".format(
                getattr(self.enforced, "__name__", "this tool")
            )
        )


def _made_by(tool: Any) -> Optional[Client]:
    """The client whose ``wrap_tools`` made this StructuredTool, if one did."""
    call = getattr(tool.func or tool.coroutine, "__self__", None)
    return call.client if isinstance(call, _Call) else None


def _parameters(fn: Callable[..., Any]) -> Any:
    try:
        return inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return {}


def _with_handler(callbacks: Any, handler: Any) -> Any:
    """``callbacks`` (None, a list of handlers, or a callback manager) plus ``handler``."""
    if callbacks is None:
        return [handler]
    if isinstance(callbacks, (list, tuple)):
        return list(callbacks) + ([] if any(h is handler for h in callbacks) else [handler])
    manager = callbacks.copy()
    manager.add_handler(handler, inherit=True)
    return manager
