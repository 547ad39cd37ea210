"""The emulator's agents: their grants (policies and scope patterns), settings, and validation.

``make_agent`` is the one definition of an agent's fields: ``Emulator.add_agent``, the config
file and ``POST /_emulator/agents`` all go through it, so each refuses the same mistakes
with a ValueError naming the field. Scopes are colon-separated (``stripe:customer:read``) or
dotted capability names (``stripe.customers.read``); policies grant them by glob pattern.
"""

import copy
import inspect
import json
import re
import secrets
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

__all__ = ["AGENT_FIELDS", "Agent", "Policy", "SCOPE_RULE", "STATUSES", "make_agent", "valid_scope"]

STATUSES = ("active", "suspended", "revoked")
POLICY_MODES = ("active", "inactive", "shadow")
ERROR_STYLES = ("oculus", "rfc6749")
_SEGMENT = r"[a-z0-9*][a-z0-9_.*-]*"  # a colon-separated segment may hold dots
_DOTTED = r"[a-z0-9*][a-z0-9_*-]*"
# colon-separated segments (stripe:customer:read) or a dotted capability name
# (stripe.customers.read): at least two segments either way
_SCOPE_RE = re.compile(r"\A(?:{0}(?::{0})+|{1}(?:\.{1})+)\Z".format(_SEGMENT, _DOTTED))
SCOPE_RULE = (
    "scopes are lowercase, with at least two segments separated by ':' or '.', "
    "e.g. 'stripe:customer:read' or 'stripe.customers.read'"
)


def valid_scope(scope: str) -> bool:
    return _SCOPE_RE.match(scope) is not None


@dataclass(frozen=True)
class Policy:
    name: str
    scopes: Tuple[str, ...]
    mode: str = "active"

    def matches(self, scope: str) -> bool:
        return any(_pattern(p).match(scope) is not None for p in self.scopes)


_PATTERNS: Dict[str, "re.Pattern[str]"] = {}


def _pattern(glob: str) -> "re.Pattern[str]":
    compiled = _PATTERNS.get(glob)
    if compiled is None:
        compiled = re.compile(r"\A" + ".*".join(re.escape(p) for p in glob.split("*")) + r"\Z")
        _PATTERNS[glob] = compiled
    return compiled


@dataclass
class Agent:
    client_id: str
    client_secret: str = field(repr=False)
    policies: List[Policy]
    status: str = "active"
    token_ttl: int = 600
    refresh_tokens: bool = False
    rotate_refresh_tokens: bool = True
    error_style: Optional[str] = None
    tenant_id: Optional[str] = None
    framework: Optional[str] = None
    constraints: Optional[Dict[str, Any]] = None
    policy_id: Optional[str] = None
    default_scopes: Tuple[str, ...] = ()
    max_delegation_depth: Optional[int] = None
    sdk_token_ttl: int = 3600

    def default_grant(self) -> List[str]:
        """The scopes a request without ``scope`` gets: ``default_scopes``, else every concrete
        (wildcard-free) scope of the active policies."""
        if self.default_scopes:
            return list(self.default_scopes)
        seen: List[str] = []
        for policy in self.policies:
            if policy.mode == "active":
                seen.extend(s for s in policy.scopes if "*" not in s and s not in seen)
        return seen

    def describe(self) -> Dict[str, Any]:
        """Everything about the agent except its secret (admin listing, dashboards)."""
        return {
            "client_id": self.client_id,
            "status": self.status,
            "token_ttl": self.token_ttl,
            "refresh_tokens": self.refresh_tokens,
            "policies": [{"name": p.name, "scopes": list(p.scopes), "mode": p.mode} for p in self.policies],
            "default_scopes": list(self.default_scopes),
            "constraints": copy.deepcopy(self.constraints),
            "policy_id": self.policy_id,
            "max_delegation_depth": self.max_delegation_depth,
            "framework": self.framework,
            "tenant_id": self.tenant_id,
        }


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ValueError(message)


def _is_int(value: Any, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def make_agent(
    client_id: str,
    client_secret: Optional[str] = None,
    *,
    scopes: Optional[Sequence[str]] = None,
    status: str = "active",
    token_ttl: int = 600,
    refresh_tokens: bool = False,
    rotate_refresh_tokens: bool = True,
    policies: Optional[Sequence[Mapping[str, Any]]] = None,
    error_style: Optional[str] = None,
    tenant_id: Optional[str] = None,
    framework: Optional[str] = None,
    constraints: Optional[Mapping[str, Any]] = None,
    policy_id: Optional[str] = None,
    default_scopes: Optional[Sequence[str]] = None,
    max_delegation_depth: Optional[int] = None,
    sdk_token_ttl: int = 3600,
) -> Agent:
    """Validate the agent fields (ValueError naming the field) and build an Agent.

    ``constraints`` becomes the token's ``agent.constraints`` verbatim (any JSON object: the
    known keys are not validated, so clients can be tested against malformed ones).
    """
    _check(isinstance(client_id, str) and client_id != "", "client_id must be a non-empty string")
    if client_secret is None:
        client_secret = "sk_emu_" + secrets.token_urlsafe(24)
    _check(isinstance(client_secret, str) and client_secret != "", "client_secret must be a non-empty string")
    _check(status in STATUSES, "status must be one of " + ", ".join(STATUSES))
    _check(_is_int(token_ttl, 1), "token_ttl must be an integer >= 1 (seconds)")
    _check(_is_int(sdk_token_ttl, 1), "sdk_token_ttl must be an integer >= 1 (seconds)")
    _check(error_style is None or error_style in ERROR_STYLES, "error_style must be 'oculus' or 'rfc6749'")
    _check(
        max_delegation_depth is None or _is_int(max_delegation_depth, 0),
        "max_delegation_depth must be an integer >= 0",
    )
    _check(
        policy_id is None or (isinstance(policy_id, str) and policy_id != ""), "policy_id must be a string"
    )
    built: List[Policy] = []
    if scopes is not None:
        _check(
            not isinstance(scopes, str) and all(isinstance(s, str) and s for s in scopes),
            "scopes must be a list of scope patterns such as 'db:*'",
        )
        built.append(Policy("default", tuple(scopes), "active"))
    for i, pol in enumerate(policies or ()):
        _check(isinstance(pol, Mapping), "policies[{}] must be an object".format(i))
        pscopes = pol.get("scopes")
        _check(
            isinstance(pscopes, (list, tuple)) and all(isinstance(s, str) and s for s in pscopes),
            "policies[{}].scopes must be a list of scope patterns".format(i),
        )
        mode = pol.get("mode", "active")
        _check(mode in POLICY_MODES, "policies[{}].mode must be one of {}".format(i, ", ".join(POLICY_MODES)))
        name = pol.get("name") or pol.get("id") or "policy-{}".format(i + 1)
        _check(isinstance(name, str), "policies[{}].name must be a string".format(i))
        built.append(Policy(name, tuple(pscopes), mode))  # type: ignore[arg-type]
    defaults: Tuple[str, ...] = ()
    if default_scopes is not None:
        _check(
            not isinstance(default_scopes, str)
            and all(isinstance(s, str) and valid_scope(s) and "*" not in s for s in default_scopes),
            "default_scopes must be a list of concrete scopes (no wildcard), e.g. ['stripe.customers.read']",
        )
        defaults = tuple(default_scopes)
    kept: Optional[Dict[str, Any]] = None
    if constraints is not None:
        _check(isinstance(constraints, Mapping), "constraints must be an object")
        try:
            kept = json.loads(json.dumps(dict(constraints)))
        except (TypeError, ValueError) as exc:
            raise ValueError("constraints must be JSON-serialisable ({})".format(exc)) from None
    return Agent(
        client_id=client_id,
        client_secret=client_secret,
        policies=built,
        status=status,
        token_ttl=token_ttl,
        refresh_tokens=bool(refresh_tokens),
        rotate_refresh_tokens=bool(rotate_refresh_tokens),
        error_style=error_style,
        tenant_id=tenant_id,
        framework=framework,
        constraints=kept,
        policy_id=policy_id,
        default_scopes=defaults,
        max_delegation_depth=max_delegation_depth,
        sdk_token_ttl=sdk_token_ttl,
    )


#: The fields an agent definition may hold (config file, admin API): make_agent's parameters.
AGENT_FIELDS: Tuple[str, ...] = tuple(inspect.signature(make_agent).parameters)
