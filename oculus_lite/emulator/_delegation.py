"""Delegation (``POST /oauth/delegate``) and enrollment (``POST /oauth/enroll``) in the emulator.

Delegation narrows, never widens: the parent's access token is verified (signature,
issuer, expiry, revocation), the child gets a subset of the parent's scope, constraints no
looser than the parent's, a lifetime inside the parent's, and a depth under its chain's
limit: the smallest ``max_delegation_depth`` an agent of the chain set, else the server's
``delegation_depth_limit`` (default 3). The child token names its parent
(``agent.parent_jti`` and an RFC 8693 ``act`` claim), so revoking the parent revokes it too.
Enrollment trades a one-time, expiring enroll token for a new agent's client credentials.
No HTTP here: methods return a ``Reply``.
"""

import copy
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from ..exceptions import MalformedTokenError
from ..governance._tightening import ConstraintEscalation, tighten
from ..jwt import decode
from ..verify import _rsa
from ._agents import Agent, make_agent
from ._tokens import Lineage, Reply, TokenService

__all__ = ["DelegationService", "EnrollToken"]

DEFAULT_ENROLL_TTL = 3600


class _Refused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class EnrollToken:
    """A minted enroll token's grant: the agent it will create, until ``expires_at``."""

    client_id: Optional[str]
    spec: Dict[str, Any] = field(repr=False)
    expires_at: float
    used: bool = False


class DelegationService:
    """Child tokens from parent tokens, and agents from enroll tokens."""

    def __init__(self, tokens: TokenService) -> None:
        self.tokens = tokens
        self._lock = threading.Lock()
        self._enroll: Dict[str, EnrollToken] = {}

    def reset(self) -> None:
        with self._lock:
            self._enroll.clear()

    # ------------------------------------------------------------------ delegation
    def delegate(self, authorization: str, data: Any) -> Reply:
        agent: Optional[Agent] = None
        try:
            parent = self._verified_parent(authorization)
            agent = self.tokens.get_agent(str(parent.get("sub")))
            return self._delegate(parent, data)
        except _Refused as refused:
            return self.tokens.err(refused.status, refused.code, refused.message, agent)

    def _verified_parent(self, authorization: str) -> Dict[str, Any]:
        if authorization[:7].lower() != "bearer " or not authorization[7:].strip():
            raise _Refused(
                401, "INVALID_TOKEN", "send the parent's access token as Authorization: Bearer <token>"
            )
        try:
            decoded = decode(authorization[7:].strip())
        except MalformedTokenError as exc:
            raise _Refused(401, "INVALID_TOKEN", "parent token is malformed: {}".format(exc.reason)) from None
        kid = decoded.header.get("kid")
        key = self.tokens.keys.public_key(kid) if isinstance(kid, str) else None
        if (
            decoded.header.get("alg") != "RS256"
            or key is None
            or not _rsa.verify(key, "RS256", decoded.signing_input, decoded.signature)
        ):
            raise _Refused(
                401, "INVALID_TOKEN", "parent token signature does not verify against this issuer's keys"
            )
        claims = decoded.claims
        now = self.tokens.clock.time()
        jti, sub = claims.get("jti"), claims.get("sub")
        if claims.get("iss") != self.tokens.issuer:
            raise _Refused(401, "INVALID_TOKEN", "parent token was issued by another issuer")
        if not _number(claims.get("exp")) or not isinstance(jti, str) or not isinstance(sub, str):
            raise _Refused(401, "INVALID_TOKEN", "parent token lacks a numeric exp, a jti or a sub")
        exp = float(claims["exp"])
        if now >= exp:
            raise _Refused(401, "TOKEN_EXPIRED", "parent token expired {:.0f} s ago".format(now - exp))
        if _number(claims.get("nbf")) and claims["nbf"] > now:
            raise _Refused(401, "INVALID_TOKEN", "parent token is not valid yet (nbf)")
        if self.tokens.is_revoked(jti):
            raise _Refused(401, "TOKEN_REVOKED", "parent token {} is revoked".format(jti))
        return claims

    def _delegate(self, parent: Dict[str, Any], data: Any) -> Reply:
        child_id, capabilities, task_id, ttl, extra = _request(data)
        delegator = self.tokens.get_agent(parent["sub"])
        if delegator is None or delegator.status != "active":
            raise _Refused(
                403,
                "PARENT_AGENT_INACTIVE",
                "the parent token's agent {!r} is {}: only Active agents delegate".format(
                    parent["sub"][:100], delegator.status if delegator is not None else "unknown"
                ),
            )
        child = self.tokens.get_agent(child_id)
        if child is None:
            raise _Refused(
                404, "CHILD_AGENT_NOT_FOUND", "no agent with client_id {!r}".format(child_id[:100])
            )
        if child.status != "active":
            raise _Refused(
                403,
                "CHILD_AGENT_INACTIVE",
                "child agent {!r} is {}: only Active agents take delegations".format(
                    child_id[:100], child.status
                ),
            )
        granted = str(parent.get("scope") or "").split()
        missing = [c for c in capabilities if c not in granted]
        if missing:
            raise _Refused(
                403,
                "CAPABILITY_ESCALATION",
                "capabilities {} are not in the parent token's scope".format(missing[:10]),
            )
        parent_agent: Dict[str, Any] = parent["agent"] if isinstance(parent.get("agent"), dict) else {}
        depth = parent_agent.get("delegation_depth", 0)
        if not isinstance(depth, int) or isinstance(depth, bool) or depth < 0:
            raise _Refused(
                401, "INVALID_TOKEN", "parent token's agent.delegation_depth is not an integer >= 0"
            )
        chain_limit = self._chain_limit(parent)
        limit = self.tokens.delegation_depth_limit if chain_limit is None else chain_limit
        if depth + 1 > limit:
            raise _Refused(
                403,
                "DELEGATION_DEPTH_EXCEEDED",
                "a child of this token would be at depth {}; this chain allows at most {}".format(
                    depth + 1, limit
                ),
            )
        try:
            constraints = tighten(parent_agent.get("constraints"), extra)
        except ConstraintEscalation as exc:
            raise _Refused(403, "CONSTRAINT_ESCALATION", str(exc)) from None
        except ValueError as exc:
            raise _Refused(400, "INVALID_CONSTRAINTS", str(exc)) from None
        now = int(self.tokens.clock.time())
        remaining = parent["exp"] - self.tokens.clock.time()
        if ttl > remaining:
            raise _Refused(
                400,
                "TTL_EXCEEDS_PARENT",
                "ttl_seconds {} exceeds the parent token's remaining life ({:.0f} s)".format(ttl, remaining),
            )
        agent_claim: Dict[str, Any] = {
            "delegation_depth": depth + 1,
            "task_id": task_id,
            "parent_jti": parent["jti"],
        }
        if constraints is not None:
            agent_claim["constraints"] = constraints
        if isinstance(parent_agent.get("policy_id"), str):
            agent_claim["policy_id"] = parent_agent["policy_id"]
        if child.framework:
            agent_claim["framework"] = child.framework
        act: Dict[str, Any] = {"sub": parent["sub"]}
        if isinstance(parent.get("act"), dict):
            act["act"] = copy.deepcopy(parent["act"])  # RFC 8693 4.1: the chain of prior actors
        claims: Dict[str, Any] = {
            "iss": self.tokens.issuer,
            "sub": child_id,
            "scope": " ".join(capabilities),
            "jti": secrets.token_hex(16),
            "iat": now,
            "nbf": now,
            "exp": now + ttl,
            "tenant_id": parent.get("tenant_id") or child.tenant_id or self.tokens.tenant_id,
            "agent": agent_claim,
            "act": act,
        }
        if "aud" in parent:
            claims["aud"] = copy.deepcopy(parent["aud"])
        token = self.tokens.sign(claims, Lineage(parent["jti"], chain_limit))
        return Reply(
            200,
            {"access_token": token, "expires_in": ttl, "token_type": "Bearer", "scope": claims["scope"]},
            (("Cache-Control", "no-store"),),
        )

    def _chain_limit(self, parent: Mapping[str, Any]) -> Optional[int]:
        """The smallest ``max_delegation_depth`` set by an agent along the chain, or None."""
        own = self.tokens.get_agent(str(parent["sub"]))
        limits = (
            [own.max_delegation_depth] if own is not None and own.max_delegation_depth is not None else []
        )
        lineage = self.tokens.lineage(str(parent["jti"]))
        if lineage is not None and lineage.depth_limit is not None:
            limits.append(lineage.depth_limit)
        return min(limits) if limits else None

    # ------------------------------------------------------------------ enrollment
    def mint_enroll_token(
        self,
        scopes: Sequence[str],
        *,
        client_id: Optional[str] = None,
        policies: Optional[Sequence[Mapping[str, Any]]] = None,
        constraints: Optional[Mapping[str, Any]] = None,
        ttl: float = DEFAULT_ENROLL_TTL,
    ) -> Tuple[str, float]:
        """A one-time enroll token for a new agent with these grants; returns it and its expiry
        (seconds since the epoch). The agent spec is validated now, so mistakes surface here."""
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not ttl > 0:
            raise ValueError("ttl must be a positive number of seconds")
        if client_id is not None and self.tokens.get_agent(client_id) is not None:
            raise ValueError("an agent with client_id {!r} already exists".format(client_id))
        spec: Dict[str, Any] = {"scopes": list(scopes) if not isinstance(scopes, str) else scopes}
        if policies is not None:
            spec["policies"] = [dict(p) if isinstance(p, Mapping) else p for p in policies]
        if constraints is not None:
            spec["constraints"] = constraints
        make_agent(client_id or "agt_check", "x", **spec)  # ValueError names the bad field
        token = "enr_" + secrets.token_urlsafe(32)
        expires_at = self.tokens.clock.time() + float(ttl)
        with self._lock:
            self._enroll[token] = EnrollToken(client_id, copy.deepcopy(spec), expires_at)
        return token, expires_at

    def enroll(self, form: Mapping[str, str]) -> Reply:
        token = form.get("enroll_token", "")
        now = self.tokens.clock.time()
        with self._lock:
            entry = self._enroll.get(token) if token else None
            if entry is None:
                refused: Optional[Tuple[str, str]] = ("ENROLL_TOKEN_INVALID", "enroll token is unknown")
            elif entry.used:
                refused = ("ENROLL_TOKEN_USED", "enroll token was already used: each one works once")
            elif now >= entry.expires_at:
                refused = (
                    "ENROLL_TOKEN_EXPIRED",
                    "enroll token expired {:.0f} s ago".format(now - entry.expires_at),
                )
            else:
                refused = None
                entry.used = True
        if refused is not None or entry is None:
            code, message = refused or ("ENROLL_TOKEN_INVALID", "enroll token is unknown")
            return self.tokens.err(401, code, message)
        client_id = entry.client_id or "agt_" + secrets.token_hex(8)
        if self.tokens.get_agent(client_id) is not None:
            with self._lock:
                entry.used = False  # not consumed: the operator can free the id and retry
            return self.tokens.err(
                409, "AGENT_EXISTS", "an agent with client_id {!r} already exists".format(client_id)
            )
        agent = make_agent(client_id, **entry.spec)
        self.tokens.put_agent(agent)
        return Reply(
            200,
            {"client_id": agent.client_id, "client_secret": agent.client_secret},
            (("Cache-Control", "no-store"),),
        )


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _request(data: Any) -> Tuple[str, List[str], str, int, Optional[Dict[str, Any]]]:
    """The validated delegation request, else a 400."""

    def bad(message: str) -> _Refused:
        return _Refused(400, "INVALID_REQUEST", message)

    if not isinstance(data, dict):
        raise bad("body must be a JSON object {child_agent_id, capabilities, task_id, ttl_seconds}")
    child_id, caps, task_id, ttl = (
        data.get(k) for k in ("child_agent_id", "capabilities", "task_id", "ttl_seconds")
    )
    if not isinstance(child_id, str) or not child_id:
        raise bad("child_agent_id must be a non-empty string")
    if not isinstance(caps, list) or not caps or not all(isinstance(c, str) and c for c in caps):
        raise bad("capabilities must be a non-empty list of capability names")
    if not isinstance(task_id, str) or not task_id:
        raise bad("task_id must be a non-empty string")
    if not isinstance(ttl, int) or isinstance(ttl, bool) or ttl <= 0:
        raise _Refused(400, "INVALID_TTL", "ttl_seconds must be a positive integer")
    extra = data.get("additional_constraints")
    if extra is not None and not isinstance(extra, dict):
        raise _Refused(400, "INVALID_CONSTRAINTS", "additional_constraints must be an object")
    unique: List[str] = []
    for cap in caps:
        if cap not in unique:
            unique.append(cap)
    return child_id, unique, task_id, ttl, extra
