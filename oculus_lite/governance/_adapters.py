"""What the framework adapters (``oculus_lite.langchain``, ``.crewai``, ``.openai``) share, so
each stays a thin translation onto the one enforcing wrapper of ``_enforce``:

- ``require``: the framework, imported when an adapter object is built, with an install hint;
- ``capability_of`` and ``enforce_for``: a tool's capability (``@client.tool`` or the official
  ``_oculus_capability`` attribute) and the tool enforced for one framework, so its audit
  events carry that framework's name, without stacking a second check on an enforced tool;
- ``refusal_text`` and ``scrub``: what a model is told when a call is refused or fails (the
  capability and reason of a denial, an exception's class name, never its message), with
  every secret the client knows and anything shaped like a credential removed.
"""

import copy
import functools
import importlib
import inspect
import types
from typing import TYPE_CHECKING, Callable, List, Optional, TypeVar

from ..exceptions import ConfigurationError, PolicyViolationError
from ._enforce import _MARK, _is_async, core_of, enforce, is_enforced
from ._redact import Redactor

if TYPE_CHECKING:  # pragma: no cover
    from ..tokens._client import Client

__all__ = ["capability_of", "enforce_for", "refusal_text", "require", "scrub"]

F = TypeVar("F", bound=Callable[..., object])


def require(module: str, package: str, adapter: str) -> types.ModuleType:
    """``module`` imported, or ImportError saying which package to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            "{} needs the {} package: pip install {}".format(adapter, package, package), name=module
        ) from exc


def capability_of(obj: object) -> Optional[str]:
    """The capability a tool was tagged with (``@client.tool`` or ``_oculus_capability``), if any."""
    capability = getattr(obj, "_oculus_capability", None)
    return capability if isinstance(capability, str) and capability else None


def enforce_for(
    client: "Client",
    capability: Optional[str],
    fn: F,
    framework: str,
    *,
    amount: Optional[str] = None,
    result_count: Optional[str] = None,
    name: Optional[str] = None,
) -> F:
    """``fn`` enforced for ``capability`` with audit events tagged ``framework`` (and naming the
    tool ``name`` when given: a framework's tool name rather than ``_run``).

    A function already enforced by ``@client.tool`` keeps its check and its declared
    arguments; it is re-issued with the framework's tag (a twin of the same check, never a
    second check around the first). One already tagged for ``framework`` comes back as it is,
    so wrapping twice does not stack.

    Raises:
        ConfigurationError: no capability, a capability other than the one ``fn`` is enforced
            for, ``fn`` enforced by another client, or ``amount``/``result_count`` given for a
            function whose declared arguments were set by ``@client.tool``.
    """
    tagged = capability_of(fn)
    if not is_enforced(fn):
        capability = capability or tagged
        if capability is None:
            raise ConfigurationError(
                '{!r} has no capability: decorate it with @client.tool("...") or pass capability='.format(
                    getattr(fn, "__name__", fn)
                )
            )
        wrapped = enforce(
            client, capability, fn, amount=amount, result_count=result_count, framework=framework
        )
        core = core_of(wrapped)
        if name is not None and core is not None:
            core.tool_name = name
        return wrapped
    owner, enforced_as, _ = getattr(fn, _MARK)
    shown = getattr(fn, "__name__", "this tool")
    if owner is not client:
        raise ConfigurationError("{} is enforced by another client; wrap the original function".format(shown))
    if capability is not None and capability != enforced_as:
        raise ConfigurationError(
            "{} is enforced as {!r}, not {!r}; use one capability for one tool".format(
                shown, enforced_as, capability
            )
        )
    core = core_of(fn)
    if core is None or core.framework == framework:
        return fn  # already enforced for this framework: as it was first wrapped
    if amount is not None or result_count is not None:
        raise ConfigurationError(
            "{} is already enforced: declare amount=/result_count= on @client.tool(...)".format(shown)
        )
    twin = copy.copy(core)
    twin.framework = framework
    if name is not None:
        twin.tool_name = name
    wrapper = twin.async_wrapper() if _is_async(core.fn) else twin.sync_wrapper()
    original = core.fn
    updated = ("__dict__",) if inspect.isfunction(original) or inspect.ismethod(original) else ()
    functools.update_wrapper(wrapper, original, updated=updated)
    if core.signature is not None:
        wrapper.__signature__ = core.signature  # type: ignore[attr-defined]
    setattr(wrapper, _MARK, (client, enforced_as, twin))
    wrapper._oculus_capability = enforced_as  # type: ignore[attr-defined]
    if inspect.ismethod(fn):  # a method enforced in its class body, read from an instance
        return types.MethodType(wrapper, fn.__self__)  # type: ignore[return-value]
    return wrapper  # type: ignore[return-value]


def refusal_text(error: PolicyViolationError) -> str:
    """What the model is told about a denial: the capability and the reason code (the official
    adapters' wording), nothing about the token, the policy or the arguments."""
    return "Error: capability {!r} denied \u2014 {}".format(error.capability, error.reason)


def _known_secrets(client: "Client") -> List[str]:
    secrets: List[str] = []
    endpoint = client._endpoint
    if endpoint is not None:
        secrets.append(endpoint._secret.reveal())
    state = client._fresh_state()
    if state is not None:
        secrets.extend(state.credentials.secrets())
    return secrets


def scrub(client: "Client", text: str) -> str:
    """``text`` without the client's secret, its integrations' credentials, or anything shaped
    like a credential (bearer tokens, JWTs, provider keys, ``password=...``)."""
    return Redactor(_known_secrets(client)).text(text)
