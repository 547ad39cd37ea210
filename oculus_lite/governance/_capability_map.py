"""The capability map: which integrations exist, their capabilities, and what is always denied.

Wire shape (``GET /v1/sync/capability-maps``)::

    {"integrations": {"stripe": {"capabilities": {"stripe.charges.create": {...}},
                                 "deny_always": ["stripe.payouts.create"]}}}

``CapabilityMap.from_wire`` parses it strictly: anything else raises ``CapabilityMapError``
naming the bad part, and the client keeps its previous map. Custom capabilities (from the
project file) live beside the integrations and survive every refresh (``refreshed``).
"""

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Dict, FrozenSet, List, Mapping, Optional, Tuple

from ..exceptions import CapabilityMapError

__all__ = ["EMPTY_MAP", "CapabilityMap", "Integration", "freeze_metadata", "integration_prefix"]

_EMPTY: Mapping[str, object] = MappingProxyType({})
_MAX_DEPTH = 16


def _fail(path: str, problem: str) -> CapabilityMapError:
    return CapabilityMapError("capability map: {} {}".format(path, problem), path=path)


def freeze_metadata(value: object, path: str, depth: int = 0) -> object:
    """A read-only copy of JSON metadata (objects become read-only mappings, arrays tuples)."""
    if depth > _MAX_DEPTH:
        raise _fail(path, "is nested too deep")
    if isinstance(value, Mapping):
        return MappingProxyType(
            {str(k): freeze_metadata(v, "{}.{}".format(path, k), depth + 1) for k, v in value.items()}
        )
    if isinstance(value, (list, tuple)):
        return tuple(freeze_metadata(v, "{}[{}]".format(path, i), depth + 1) for i, v in enumerate(value))
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise _fail(path, "is not JSON data ({})".format(type(value).__name__))


def _name(value: object, path: str) -> str:
    if not isinstance(value, str) or not value.strip() or value != value.strip():
        raise _fail(path, "must be a non-empty name without surrounding spaces, got {!r}".format(value)[:200])
    return value


def _capabilities(value: object, path: str) -> Mapping[str, Mapping[str, object]]:
    if not isinstance(value, Mapping):
        raise _fail(
            path, "must be an object of capability name -> metadata, got {}".format(type(value).__name__)
        )
    parsed: Dict[str, Mapping[str, object]] = {}
    for name, meta in value.items():
        where = "{}.{}".format(path, name)
        _name(name, where)
        if meta is None:
            parsed[name] = _EMPTY
        elif isinstance(meta, Mapping):
            frozen = freeze_metadata(meta, where)
            assert isinstance(frozen, Mapping)
            parsed[name] = frozen
        else:
            raise _fail(where, "must be an object of metadata, got {}".format(type(meta).__name__))
    return MappingProxyType(parsed)


def integration_prefix(capability: str) -> Optional[str]:
    """The integration a capability names by convention: the part before the first "." or ":"
    (``stripe.charges.create`` and ``stripe:customer:read`` -> ``stripe``)."""
    cut = len(capability)
    for separator in (".", ":"):
        index = capability.find(separator)
        if 0 < index < cut:
            cut = index
    return capability[:cut] if cut < len(capability) else None


@dataclass(frozen=True)
class Integration:
    """One integration of the map."""

    name: str
    capabilities: Mapping[str, Mapping[str, object]] = field(default_factory=lambda: MappingProxyType({}))
    deny_always: FrozenSet[str] = frozenset()


@dataclass(frozen=True)
class CapabilityMap:
    """An immutable capability map plus the project's custom capabilities."""

    integrations: Mapping[str, Integration] = field(default_factory=lambda: MappingProxyType({}))
    custom: Mapping[str, Mapping[str, object]] = field(default_factory=lambda: MappingProxyType({}))
    etag: Optional[str] = None
    deny_always: FrozenSet[str] = field(init=False, repr=False)
    _owners: Mapping[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        owners: Dict[str, str] = {}
        denied: List[str] = []
        for name, integration in self.integrations.items():
            denied.extend(integration.deny_always)
            for capability in integration.capabilities:
                owners.setdefault(capability, name)
            for capability in integration.deny_always:
                owners.setdefault(capability, name)
        object.__setattr__(self, "deny_always", frozenset(denied))
        object.__setattr__(self, "_owners", MappingProxyType(owners))

    @classmethod
    def from_wire(
        cls,
        data: object,
        *,
        etag: Optional[str] = None,
        custom: Optional[Mapping[str, Mapping[str, object]]] = None,
    ) -> "CapabilityMap":
        """Parse the server's JSON strictly; ``CapabilityMapError`` says what is wrong."""
        if not isinstance(data, Mapping):
            raise _fail("the body", "must be a JSON object, got {}".format(type(data).__name__))
        if "integrations" not in data:
            raise _fail("integrations", "is missing")
        raw = data["integrations"]
        if not isinstance(raw, Mapping):
            raise _fail("integrations", "must be an object, got {}".format(type(raw).__name__))
        integrations: Dict[str, Integration] = {}
        for name, body in raw.items():
            path = "integrations.{}".format(name)
            _name(name, path)
            if not isinstance(body, Mapping):
                raise _fail(path, "must be an object, got {}".format(type(body).__name__))
            capabilities = _capabilities(body.get("capabilities", {}), path + ".capabilities")
            deny = body.get("deny_always", [])
            if not isinstance(deny, (list, tuple)):
                raise _fail(path + ".deny_always", "must be a list of capability names")
            denied = frozenset(
                _name(item, "{}.deny_always[{}]".format(path, i)) for i, item in enumerate(deny)
            )
            integrations[name] = Integration(name, capabilities, denied)
        return cls(MappingProxyType(integrations), _frozen_custom(custom), etag)

    def refreshed(self, data: object, *, etag: Optional[str] = None) -> "CapabilityMap":
        """The map the server sent, keeping this map's custom capabilities."""
        return CapabilityMap.from_wire(data, etag=etag, custom=self.custom)

    def with_custom(self, custom: Mapping[str, Mapping[str, object]]) -> "CapabilityMap":
        """This map with ``custom`` added to its custom capabilities (later names win)."""
        merged: Dict[str, Mapping[str, object]] = dict(self.custom)
        merged.update(_frozen_custom(custom))
        return CapabilityMap(self.integrations, MappingProxyType(merged), self.etag)

    def integration_of(self, capability: str) -> Optional[str]:
        """The integration that owns ``capability``: the map's owner when it lists it, else the
        name before the first "." or ":"; None when neither says."""
        owner = self._owners.get(capability)
        if owner is not None:
            return owner
        return integration_prefix(capability) if isinstance(capability, str) else None

    @property
    def capabilities(self) -> FrozenSet[str]:
        """Every capability the map or the project file names."""
        return frozenset(self._owners) | frozenset(self.custom)

    def integration_names(self) -> Tuple[str, ...]:
        """The integrations whose credentials the client fetches."""
        return tuple(name for name in self.integrations if name != "custom")


def _frozen_custom(
    custom: Optional[Mapping[str, Mapping[str, object]]],
) -> Mapping[str, Mapping[str, object]]:
    if not custom:
        return MappingProxyType({})
    return _capabilities(custom, "custom_capabilities")


EMPTY_MAP = CapabilityMap()
