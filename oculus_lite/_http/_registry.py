"""``transport="name"``: the built-in transports, ``register_transport`` and plugin entry points."""

from typing import Any, Callable, Dict, Optional

from ..exceptions import ConfigurationError

__all__ = ["TransportFactory", "get_transport", "register_transport", "resolve_transport"]

TransportFactory = Callable[[], Any]

_registry: Dict[str, TransportFactory] = {}
_ENTRY_POINT_GROUP = "oculus_lite.transports"
_KNOWN_PLUGINS = {
    "requests": "oculus-lite-requests",
    "httpx": "oculus-lite-httpx",
    "urllib3": "oculus-lite-urllib3",
    "pyodide": "oculus-lite-pyodide",
}


def register_transport(name: str, factory: TransportFactory) -> None:
    """Make ``transport=name`` resolve to ``factory()`` in this process (no packaging needed)."""
    _registry[name] = factory


def _builtin(name: str) -> Optional[TransportFactory]:
    if name == "urllib":
        from ._urllib import UrllibTransport

        return UrllibTransport
    if name == "pooled":
        from ._pooled import PooledTransport

        return PooledTransport
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


def get_transport(name: str) -> Any:
    """Build the transport registered as ``name`` (core, ``register_transport`` or entry point)."""
    factory = _registry.get(name) or _builtin(name)
    if factory is None:
        ep = _entry_point(name)
        if ep is None:
            hint = (
                "install it with: pip install {}".format(_KNOWN_PLUGINS[name])
                if name in _KNOWN_PLUGINS
                else "no plugin registers it in the '{}' entry-point group".format(_ENTRY_POINT_GROUP)
            )
            raise ConfigurationError("unknown transport {!r}: {}".format(name, hint))
        try:
            factory = ep.load()
        except ImportError as exc:
            raise ConfigurationError(
                "transport {!r} is registered but its backend failed to import ({}); reinstall {}".format(
                    name, exc, _KNOWN_PLUGINS.get(name, "the plugin")
                )
            ) from exc
    assert factory is not None
    return factory()


def resolve_transport(transport: Any) -> Any:
    """``None`` -> the default; a name -> the registered one; an object meeting a protocol -> itself."""
    if transport is None:
        from ._urllib import UrllibTransport

        return UrllibTransport()
    if isinstance(transport, str):
        return get_transport(transport)
    if callable(getattr(transport, "request", None)) or callable(getattr(transport, "arequest", None)):
        return transport
    raise ConfigurationError(
        "transport must be a name (e.g. 'urllib') or an object with request(Request) -> Response "
        "and close(), or arequest()/aclose(); got {}".format(type(transport).__name__)
    )
