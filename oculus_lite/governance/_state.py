"""The seam between the client and governance: one immutable ``AgentState`` per change, and the
``Governed`` protocol the client implements.

The client builds a new ``AgentState`` whenever the token, the capability map or the
credentials change, and swaps it in with one attribute write; a tool call reads it once and
decides on that one object, so it never sees a new scope with old constraints (the official
SDK writes three attributes while calls read them). Everything a decision needs is derived
once here: the compiled constraints (``policy``) and the set of capabilities that need no
further check (``unconstrained``).
"""

from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, FrozenSet, Mapping, Optional, Protocol

from ._capability_map import EMPTY_MAP, CapabilityMap
from ._credentials import EMPTY_CREDENTIALS, Credentials
from ._evaluator import CapabilityEvaluator, Policy, compile_policy, scope_set

if TYPE_CHECKING:  # pragma: no cover
    from ._audit import AuditEmitter

__all__ = ["AgentState", "Governed"]


def _frozen(value: object) -> object:
    if isinstance(value, Mapping):
        return MappingProxyType({k: _frozen(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    return value


def _text(value: object) -> Optional[str]:
    return value if isinstance(value, str) and value else None


@dataclass(frozen=True)
class AgentState:
    """What the agent may do right now: its token's claims, the capability map, credentials.

    ``constraints`` is the token's ``agent.constraints``: an object, ``{}`` when absent, and
    ``None`` when the token says ``null`` (which denies everything: malformed).
    """

    agent_id: str
    scopes: FrozenSet[str]
    constraints: object = field(default_factory=lambda: MappingProxyType({}))
    policy_id: Optional[str] = None
    delegation_depth: int = 0
    task_id: Optional[str] = None
    framework: Optional[str] = None
    jti: Optional[str] = None
    expires_at: Optional[float] = None
    capability_map: CapabilityMap = field(default_factory=lambda: EMPTY_MAP)
    credentials: Credentials = field(default_factory=lambda: EMPTY_CREDENTIALS)
    policy: Policy = field(init=False, repr=False, compare=False)
    unconstrained: FrozenSet[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "constraints", _frozen(self.constraints))
        policy = compile_policy(self.constraints)
        object.__setattr__(self, "policy", policy)
        allowed = self.scopes - self.capability_map.deny_always
        object.__setattr__(self, "unconstrained", allowed if policy.unconstrained else frozenset())

    @property
    def deny_always(self) -> FrozenSet[str]:
        return self.capability_map.deny_always

    @classmethod
    def from_claims(
        cls,
        claims: Mapping[str, object],
        *,
        capability_map: CapabilityMap = EMPTY_MAP,
        credentials: Credentials = EMPTY_CREDENTIALS,
        framework: Optional[str] = None,
    ) -> "AgentState":
        """The state a verified token's claims give (``sub``, ``scope``, ``jti``, ``exp`` and the
        ``agent`` object's ``constraints``, ``policy_id``, ``delegation_depth``, ``task_id``,
        ``framework``)."""
        agent = claims.get("agent")
        if not isinstance(agent, Mapping):
            agent = {}
        constraints = agent.get("constraints", {})  # present and null stays None: it denies
        depth = agent.get("delegation_depth", 0)
        exp = claims.get("exp")
        return cls(
            agent_id=_text(claims.get("sub")) or "",
            scopes=scope_set(claims.get("scope", "")),
            constraints=constraints,
            policy_id=_text(agent.get("policy_id")),
            delegation_depth=depth if isinstance(depth, int) and not isinstance(depth, bool) else 0,
            task_id=_text(agent.get("task_id")),
            framework=framework or _text(agent.get("framework")),
            jti=_text(claims.get("jti")),
            expires_at=float(exp) if isinstance(exp, (int, float)) and not isinstance(exp, bool) else None,
            capability_map=capability_map,
            credentials=credentials,
        )

    def with_map(self, capability_map: CapabilityMap) -> "AgentState":
        return replace(self, capability_map=capability_map)

    def with_credentials(self, credentials: Credentials) -> "AgentState":
        return replace(self, credentials=credentials)


class Governed(Protocol):
    """What the enforcing wrapper and ``TaskContext`` need from a client.

    ``_governance_state()`` returns the current ``AgentState``: it starts the client on first
    use, raises ``ClientClosedError`` after ``stop()``, and ``TokenExpiredError`` when no valid
    token can be had. ``_agovernance_state()`` is the same for coroutines.
    """

    @property
    def task_id(self) -> Optional[str]: ...

    @property
    def _governance_audit(self) -> Optional["AuditEmitter"]: ...

    @property
    def _governance_evaluator(self) -> CapabilityEvaluator: ...

    def _governance_state(self) -> AgentState: ...

    async def _agovernance_state(self) -> AgentState: ...
