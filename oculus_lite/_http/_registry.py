"""``transport="name"``: the built-in transports, ``register_transport`` and plugin entry points."""

import inspect
from typing import Any, Callable, Dict, Optional, Union

from ..exceptions import ConfigurationError
from ._models import AsyncTransport, Transport
from ._tls import VerifyTypes

__all__ = ["AnyTransport", "TransportFactory", "get_transport", "register_transport", "resolve_transport"]

AnyTransport = Union[Transport, AsyncTransport]
#: Builds a transport for ``transport="name"``. Called with no argument, or with
#: ``verify=<value>`` when the caller passed a ``verify`` other than ``True``; a factory
#: that cannot honour a ``verify`` value raises ``ConfigurationError``.
TransportFactory = Callable[..., AnyTransport]

_registry: Dict[str, TransportFactory] = {}
_ENTRY_POINT_GROUP = "oculus_lite.transports"
_KNOWN_PLUGINS = {
    "requests": "oculus-lite-requests",
    "httpx": "oculus-lite-httpx",
    "urllib3": "oculus-lite-urllib3",
    "pyodide": "oculus-lite-pyodide",
}


def register_transport(name: str, factory: TransportFactory) -> None:
    """Make ``transport=name`` resolve to ``factory()`` in this process (no packaging needed).
    Accept ``verify`` as a keyword in ``factory`` to honour ``Client(verify=...)``."""
    _registry[name] = factory


def _builtin(name: str) -> Optional[TransportFactory]:
    # "pooled" was a separate keep-alive transport; the default keeps connections now.
    if name in ("urllib", "pooled"):
        from ._urllib import UrllibTransport

        return UrllibTransport
    return None


def _entry_point(name: str) -> Optional[Any]:
    try:
        from importlib import metadata
    except ImportError:  # pragma: no cover
        return None
    try:
        eps: Any = metadata.entry_points()
    except Exception:  # broken metadata of some unrelated distribution
        return None
    if hasattr(eps, "select"):
        candidates = eps.select(group=_ENTRY_POINT_GROUP, name=name)
    else:  # Python 3.8/3.9: a dict of group -> entry points
        candidates = [ep for ep in eps.get(_ENTRY_POINT_GROUP, ()) if ep.name == name]
    for ep in candidates:
        return ep
    return None


def _factory(name: str) -> TransportFactory:
    factory = _registry.get(name) or _builtin(name)
    if factory is not None:
        return factory
    ep = _entry_point(name)
    if ep is None:
        hint = (
            "install it with: pip install {}".format(_KNOWN_PLUGINS[name])
            if name in _KNOWN_PLUGINS
            else "no plugin registers it in the '{}' entry-point group".format(_ENTRY_POINT_GROUP)
        )
        raise ConfigurationError("unknown transport {!r}: {}".format(name, hint))
    try:
        loaded: TransportFactory = ep.load()
    except ImportError as exc:
        raise ConfigurationError(
            "transport {!r} is registered but failed to import ({}); reinstall {} (it must match "
            "this oculus-lite version)".format(name, exc, _KNOWN_PLUGINS.get(name, "the plugin"))
        ) from exc
    return loaded


def _takes_verify(factory: TransportFactory) -> bool:
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # no signature to read (some builtins): let the call decide
        return True
    return any(p.name == "verify" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def get_transport(name: str, *, verify: VerifyTypes = True) -> AnyTransport:
    """Build the transport registered as ``name`` (core, ``register_transport`` or entry
    point), passing ``verify`` on to its factory when it is not ``True``."""
    factory = _factory(name)
    if verify is True:
        return factory()
    if not _takes_verify(factory):
        raise ConfigurationError(
            "transport {!r} does not accept verify=; configure TLS on a transport object "
            "instead, or register a factory that takes verify".format(name)
        )
    return factory(verify=verify)


def resolve_transport(
    transport: Union[None, str, Transport, AsyncTransport], *, verify: VerifyTypes = True
) -> AnyTransport:
    """What a client's ``transport=`` and ``verify=`` arguments mean together:
    ``None`` -> the default (urllib) with ``verify``; a name -> the registered transport,
    its factory given ``verify``; an object meeting a protocol -> itself, and then
    ``verify`` must be left ``True`` (that object's TLS settings are its own)."""
    if transport is None:
        from ._urllib import UrllibTransport

        return UrllibTransport(verify=verify)
    if isinstance(transport, str):
        return get_transport(transport, verify=verify)
    if callable(getattr(transport, "request", None)) or callable(getattr(transport, "arequest", None)):
        if verify is not True:
            raise ConfigurationError(
                "verify= applies only to a transport given by name or left to the default; the "
                "{} object passed as transport= has its own TLS settings: configure them on it "
                "and leave verify out".format(type(transport).__name__)
            )
        return transport
    raise ConfigurationError(
        "transport must be a name (e.g. 'urllib') or an object with request(Request) -> Response "
        "and close(), or arequest()/aclose(); got {}".format(type(transport).__name__)
    )
