"""OpenAI function-calling adapter under the official SDK's module name (``oculus_sdk.openai``).

    from oculus_lite.openai import OculusOpenAI

    client = OculusOpenAI()                         # the Client's arguments
    client.register_function("get_customer", "stripe.customers.read")
    client.register_function("create_charge", "stripe.charges.create")
    reply = client.openai.chat.completions.create(model=..., messages=..., tools=...)
    message = reply.choices[0].message
    client.set_last_assistant_message(message.content)
    messages += client.execute_tool_calls(message.tool_calls or [], registry)

Each tool call is checked and audited (``framework="openai"``) by the client's one enforcing
wrapper, amounts and result counts included (``register_function(..., amount=...,
result_count=...)``, or ``@client.tool``). Unlike the official adapter it fails closed: a
function name that was not registered is refused, not run unenforced; arguments that are not
a JSON object are an error, not ``{}``; and what ``execute_tool_calls`` sends back to the
model for a failed call says only what the model needs (a denial's capability and reason, an
unknown function, unusable arguments, else the exception's class name: never its message),
scrubbed of the client's secret, its credentials and anything shaped like a key.

Only the standard library is imported here; ``openai`` is imported by the ``openai`` property
(``pip install openai``). Tool calls are read by attribute or key, so the ``openai`` types and
their ``model_dump()`` dictionaries both work.
"""

import inspect
import json
import logging
import threading
from contextvars import ContextVar
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple

from .exceptions import ConfigurationError, OculusError, PolicyViolationError, ValidationError
from .governance._adapters import enforce_for, refusal_text, require, scrub
from .governance._current import intent
from .governance._enforce import _check_capability
from .tokens._client import Client

__all__ = ["OculusOpenAI"]

_log = logging.getLogger(__name__)
_FRAMEWORK = "openai"
_UNKNOWN_FUNCTION = "unknown_function"
_INVALID_ARGUMENTS = "invalid_tool_arguments"
_UNSUPPORTED_CALL = "unsupported_tool_call"
_MAX_NAME = 64  # of a model-supplied name echoed back to the model

_Registration = Tuple[str, Optional[str], Optional[str]]  # capability, amount, result_count
_Enforced = Tuple[Callable[..., Any], _Registration, Callable[..., Any]]  # (registry fn, as, enforced)


class OculusOpenAI(Client):
    """A ``Client`` that executes OpenAI tool calls under enforcement (see the module docstring)."""

    _oculus_lock = threading.Lock()  # builds the per-client state below, once

    @property
    def openai(self) -> Any:
        """An ``openai.OpenAI()`` client, made on first use (one per ``OculusOpenAI``)."""
        made = self.__dict__.get("_openai_client")
        if made is None:
            module = require("openai", "openai", "OculusOpenAI.openai")
            with self._oculus_lock:
                made = self.__dict__.get("_openai_client")
                if made is None:
                    made = module.OpenAI()
                    self.__dict__["_openai_client"] = made
        return made

    def register_function(
        self,
        name: str,
        capability: str,
        *,
        amount: Optional[str] = None,
        result_count: Optional[str] = None,
    ) -> None:
        """Allow tool calls of function ``name`` under ``capability``; calls of a name never
        registered are refused.

        Args:
            amount, result_count: the parameters carrying the amount in cents and the
                requested result count (default: ``amount_cents`` and ``result_count``), as
                with ``@client.tool``.
        """
        if not isinstance(name, str) or not name:
            raise ConfigurationError(
                "register_function: name must be a non-empty string, got {!r}".format(name)
            )
        _check_capability(capability)
        registrations, _ = self._oculus_tables()
        registrations[name] = (capability, amount, result_count)

    def set_last_assistant_message(self, message: object, llm_model: Optional[str] = None) -> None:
        """The assistant's text before its tool calls: the ``agent_reasoning`` of the audit
        events of the tool calls executed next (redacted before sending): a str, or a message
        object with a ``content`` str (``ChatCompletionMessage``). ``None`` clears it.

        It is kept per thread and per asyncio task (a ``contextvars`` variable), so concurrent
        agents do not see each other's reasoning; call it where the tool calls are executed.
        """
        text = message if isinstance(message, str) else getattr(message, "content", None)
        if not isinstance(text, str):
            text = None
        self._oculus_reasoning().set(None if text is None and llm_model is None else (text, llm_model))

    def execute_tool_call(self, tool_call: object, registry: Mapping[str, Callable[..., Any]]) -> str:
        """Run one tool call (a ``ChatCompletionMessageToolCall`` or its dict) under
        enforcement and return its result as text (JSON unless the function returned a str).

        Raises:
            PolicyViolationError: the call was denied.
            ConfigurationError: the function was not registered, is missing from
                ``registry``, or is async (use ``aexecute_tool_call``).
            ValidationError: the call is not a function call, or its arguments are not a
                JSON object.
            Exception: whatever the function raised.
        """
        name, arguments = _parse(tool_call)
        fn = self._enforced(name, registry)
        if inspect.iscoroutinefunction(fn):
            raise ConfigurationError(
                "{!r} is async: run it with `await client.aexecute_tool_call(...)`".format(name)
            )
        with intent(*self._intent()):
            return _to_text(fn(**arguments))

    async def aexecute_tool_call(self, tool_call: object, registry: Mapping[str, Callable[..., Any]]) -> str:
        """``execute_tool_call`` for coroutines: async functions are awaited, sync ones called."""
        name, arguments = _parse(tool_call)
        fn = self._enforced(name, registry)
        with intent(*self._intent()):
            if inspect.iscoroutinefunction(fn):
                return _to_text(await fn(**arguments))
            return _to_text(fn(**arguments))

    def execute_tool_calls(
        self, tool_calls: Iterable[object], registry: Mapping[str, Callable[..., Any]]
    ) -> List[Dict[str, str]]:
        """Run every tool call; one ``{"tool_call_id", "role": "tool", "content"}`` message per
        call, in order, ready to append to ``messages``. A call that fails or is refused gets an
        ``Error: ...`` content that is safe to send to the model; the others still run."""
        calls = [(_call_id(tool_call), tool_call) for tool_call in tool_calls]  # all ids before any runs
        results = []
        for call_id, tool_call in calls:
            try:
                content = self.execute_tool_call(tool_call, registry)
            except Exception as exc:
                content = self._error_text(tool_call, exc)
            results.append({"tool_call_id": call_id, "role": "tool", "content": content})
        return results

    async def aexecute_tool_calls(
        self, tool_calls: Iterable[object], registry: Mapping[str, Callable[..., Any]]
    ) -> List[Dict[str, str]]:
        """``execute_tool_calls`` for coroutines (the calls run one after another, in order)."""
        calls = [(_call_id(tool_call), tool_call) for tool_call in tool_calls]
        results = []
        for call_id, tool_call in calls:
            try:
                content = await self.aexecute_tool_call(tool_call, registry)
            except Exception as exc:
                content = self._error_text(tool_call, exc)
            results.append({"tool_call_id": call_id, "role": "tool", "content": content})
        return results

    # ------------------------------------------------------------------ internals

    def _oculus_tables(self) -> Tuple[Dict[str, _Registration], Dict[str, _Enforced]]:
        tables = self.__dict__.get("_oculus_openai_tables")
        if tables is None:
            with self._oculus_lock:
                tables = self.__dict__.setdefault("_oculus_openai_tables", ({}, {}))
        return tables  # type: ignore[no-any-return]

    def _oculus_reasoning(self) -> "ContextVar[Optional[Tuple[Optional[str], Optional[str]]]]":
        var = self.__dict__.get("_oculus_openai_reasoning")
        if var is None:
            with self._oculus_lock:
                var = self.__dict__.setdefault(
                    "_oculus_openai_reasoning", ContextVar("oculus_openai_reasoning", default=None)
                )
        return var  # type: ignore[no-any-return]

    def _intent(self) -> Tuple[Optional[str], Optional[str]]:
        return self._oculus_reasoning().get() or (None, None)

    def _enforced(self, name: str, registry: Mapping[str, Callable[..., Any]]) -> Callable[..., Any]:
        """The registry's function for ``name``, enforced (built once per function)."""
        registrations, enforced = self._oculus_tables()
        registration = registrations.get(name)
        if registration is None:
            raise ConfigurationError(
                "the model called {!r}, which was never registered: call "
                'client.register_function({!r}, "capability") to allow it'.format(name, name),
                code=_UNKNOWN_FUNCTION,
            )
        fn = registry.get(name)
        if fn is None or not callable(fn):
            raise ConfigurationError(
                "{!r} is registered but the registry has no function under that name".format(name),
                code=_UNKNOWN_FUNCTION,
            )
        built = enforced.get(name)
        if built is not None and built[0] is fn and built[1] == registration:
            return built[2]
        capability, amount, result_count = registration
        wrapped = enforce_for(
            self, capability, fn, _FRAMEWORK, amount=amount, result_count=result_count, name=name
        )
        enforced[name] = (fn, registration, wrapped)
        return wrapped

    def _error_text(self, tool_call: object, exc: Exception) -> str:
        """What the model is told about a failed call: never an exception's message."""
        if isinstance(exc, PolicyViolationError):
            text = refusal_text(exc)
        elif isinstance(exc, OculusError) and exc.code == _UNKNOWN_FUNCTION:
            text = "Error: unknown function {}".format(_shown_name(tool_call))
        elif isinstance(exc, ValidationError) and exc.code == _INVALID_ARGUMENTS:
            text = "Error: the arguments of {} must be a JSON object".format(_shown_name(tool_call))
        elif isinstance(exc, ValidationError) and exc.code == _UNSUPPORTED_CALL:
            text = "Error: only function tool calls can be executed"
        else:
            text = "Error: " + type(exc).__name__
            if isinstance(exc, OculusError):  # the governance itself failed (token, startup...)
                _log.warning("tool call not run: %s", exc)
        return scrub(self, text)


def _field(obj: object, name: str) -> object:
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def _call_id(tool_call: object) -> str:
    call_id = _field(tool_call, "id")
    if not isinstance(call_id, str) or not call_id:
        raise ValidationError(
            "a tool call has no id (got {}); pass the model's tool_calls as they came".format(
                type(tool_call).__name__
            ),
            code=_UNSUPPORTED_CALL,
        )
    return call_id


def _shown_name(tool_call: object) -> str:
    name = _field(_field(tool_call, "function"), "name")
    if not isinstance(name, str):
        return "(no name)"
    return repr(name if len(name) <= _MAX_NAME else name[:_MAX_NAME] + "...")


def _reject_constant(value: str) -> object:
    raise ValueError("{} is not JSON".format(value))


def _parse(tool_call: object) -> Tuple[str, Dict[str, Any]]:
    """(function name, arguments) of a function tool call; ValidationError otherwise."""
    kind = _field(tool_call, "type")
    function = _field(tool_call, "function")
    if kind not in (None, "function") or function is None:
        raise ValidationError(
            "tool call of type {!r} cannot be executed: only function tool calls can".format(kind),
            code=_UNSUPPORTED_CALL,
        )
    name = _field(function, "name")
    if not isinstance(name, str) or not name:
        raise ValidationError("a function tool call has no function name", code=_UNSUPPORTED_CALL)
    raw = _field(function, "arguments")
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return name, {}  # a call without arguments
    if isinstance(raw, Mapping):
        arguments: object = dict(raw)
    elif isinstance(raw, str):
        try:
            arguments = json.loads(raw, parse_constant=_reject_constant)
        except ValueError:
            raise ValidationError(
                "the arguments of {!r} are not valid JSON".format(name), code=_INVALID_ARGUMENTS
            ) from None
    else:
        arguments = raw
    if not isinstance(arguments, dict):
        raise ValidationError(
            "the arguments of {!r} must be a JSON object, got {}".format(name, type(arguments).__name__),
            code=_INVALID_ARGUMENTS,
        )
    return name, arguments


def _to_text(value: object) -> str:
    """A function's result as the tool message content (the official adapter's conversion)."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, default=str)
    except (TypeError, ValueError):
        return str(value)
