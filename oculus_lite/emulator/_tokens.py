"""The emulator's token service: grants, refresh and SDK service tokens, issued tokens, revocation.

It reproduces the failure modes of the real service as the troubleshooting
guide describes them (401 for credentials and agent status, 403 for policy and
scope problems) so clients can be tested against each cause. No HTTP here:
the server turns a ``Reply`` into bytes. Every instant comes from the injected
clock, so tests expire tokens by moving a ``ManualClock``.
"""

import collections
import copy
import hashlib
import hmac
import secrets
import threading
from dataclasses import dataclass
from typing import Any, Deque, Dict, List, Mapping, Optional, Set, Tuple

from .._engine import Clock
from ._agents import SCOPE_RULE, STATUSES, Agent, valid_scope
from ._keys import KeyRing

__all__ = ["DEFAULT_DELEGATION_DEPTH_LIMIT", "Lineage", "Reply", "TokenService", "error_body"]

DEFAULT_DELEGATION_DEPTH_LIMIT = 3
ISSUED_KEPT = 10_000  # issued_tokens() keeps the most recent this many


@dataclass(frozen=True)
class Reply:
    status: int
    body: Dict[str, Any]
    headers: Tuple[Tuple[str, str], ...] = ()


def error_body(code: str, message: str, style: Optional[str]) -> Dict[str, Any]:
    if style == "rfc6749":
        return {"error": code, "error_description": message}
    return {"error": {"code": code, "message": message}}


NO_STORE = (("Cache-Control", "no-store"),)


@dataclass
class _Grant:
    client_id: str
    scope: str
    audience: Optional[str]
    task_id: Optional[str]


@dataclass(frozen=True)
class _ServiceToken:
    client_id: str
    expires_at: float  # clock.time()


@dataclass(frozen=True)
class Lineage:
    """Where a delegated token comes from: its parent's jti, and the smallest
    ``max_delegation_depth`` an agent of its chain set (None: the server's limit applies)."""

    parent_jti: str
    depth_limit: Optional[int]


class TokenService:
    """Thread-safe state of the token side: agents, refresh and SDK service tokens, revocation."""

    def __init__(
        self,
        keys: KeyRing,
        clock: Clock,
        *,
        tenant_id: str = "tenant_emulator",
        error_style: Optional[str] = None,
        delegation_depth_limit: int = DEFAULT_DELEGATION_DEPTH_LIMIT,
    ):
        self.keys = keys
        self.clock = clock
        self.tenant_id = tenant_id
        self.error_style = error_style
        self.delegation_depth_limit = delegation_depth_limit
        self.issuer = ""
        self._lock = threading.Lock()
        self._agents: Dict[str, Agent] = {}
        self._refresh: Dict[str, _Grant] = {}
        self._service_tokens: Dict[str, _ServiceToken] = {}
        self._prune_at = 1024
        self._revoked: List[str] = []
        self._revoked_set: Set[str] = set()
        self._children: Dict[str, List[str]] = {}
        self._lineage: Dict[str, Lineage] = {}
        self._issued: Deque[Dict[str, Any]] = collections.deque(maxlen=ISSUED_KEPT)
        self.tokens_issued = 0

    # ------------------------------------------------------------------ admin
    def put_agent(self, agent: Agent) -> None:
        with self._lock:
            self._agents[agent.client_id] = agent

    def get_agent(self, client_id: str) -> Optional[Agent]:
        with self._lock:
            return self._agents.get(client_id)

    def agent_ids(self) -> List[str]:
        with self._lock:
            return list(self._agents)

    def rotate_secret(self, client_id: str) -> str:
        with self._lock:
            agent = self._agents.get(client_id)
            if agent is None:
                raise KeyError(client_id)
            agent.client_secret = "sk_emu_" + secrets.token_urlsafe(24)
            return agent.client_secret

    def set_status(self, client_id: str, status: str) -> None:
        if status not in STATUSES:
            raise ValueError("status must be one of " + ", ".join(STATUSES))
        with self._lock:
            agent = self._agents.get(client_id)
            if agent is None:
                raise KeyError(client_id)
            agent.status = status

    def revoke(self, jti: str) -> bool:
        """Revoke ``jti`` and every token delegated from it (transitively); False if already revoked."""
        if not isinstance(jti, str) or jti == "":
            raise ValueError("jti must be a non-empty string")
        with self._lock:
            if jti in self._revoked_set:
                return False
            pending = [jti]
            while pending:
                current = pending.pop()
                if current not in self._revoked_set:
                    self._revoked.append(current)
                    self._revoked_set.add(current)
                pending.extend(self._children.get(current, ()))
            return True

    def is_revoked(self, jti: str) -> bool:
        with self._lock:
            return jti in self._revoked_set

    def revoked(self) -> Tuple[List[str], str]:
        """The revoked jtis and their strong ETag."""
        with self._lock:
            jtis = list(self._revoked)
        digest = hashlib.sha256("\n".join(jtis).encode("utf-8")).hexdigest()[:32]
        return jtis, '"{}-{}"'.format(len(jtis), digest)

    def lineage(self, jti: str) -> Optional[Lineage]:
        with self._lock:
            return self._lineage.get(jti)

    def issued_tokens(self) -> List[Dict[str, Any]]:
        """Tokens this service issued (most recent ``ISSUED_KEPT``), never the token strings."""
        with self._lock:
            records = [dict(r) for r in self._issued]
            revoked = set(self._revoked_set)
        for record in records:
            record["revoked"] = record["jti"] in revoked
        return records

    def service_token_owner(self, token: str) -> Optional[Agent]:
        """The active agent an SDK service token belongs to, while it is unexpired; else None."""
        now = self.clock.time()
        with self._lock:
            entry = self._service_tokens.get(token)
            if entry is None or now >= entry.expires_at:
                return None
            agent = self._agents.get(entry.client_id)
        return agent if agent is not None and agent.status == "active" else None

    def reset(self) -> None:
        with self._lock:
            self._agents.clear()
            self._refresh.clear()
            self._service_tokens.clear()
            self._revoked = []
            self._revoked_set = set()
            self._children.clear()
            self._lineage.clear()
            self._issued.clear()
            self.tokens_issued = 0

    # ------------------------------------------------------------------ grants
    def err(self, status: int, code: str, message: str, agent: Optional[Agent] = None) -> Reply:
        style = agent.error_style if agent is not None and agent.error_style else self.error_style
        return Reply(status, error_body(code, message, style), NO_STORE)

    def _authenticate(self, client_id: str, client_secret: str) -> Tuple[Optional[Agent], Optional[Reply]]:
        if not client_id or not client_secret:
            return None, self.err(
                401, "invalid_client", "client credentials missing: send client_id and client_secret"
            )
        with self._lock:
            agent = self._agents.get(client_id)
            expected = agent.client_secret if agent is not None else ""
            status = agent.status if agent is not None else ""
        ok = hmac.compare_digest(client_secret.encode("utf-8"), expected.encode("utf-8"))
        if agent is None or not ok:
            return None, self.err(
                401, "invalid_client", "client authentication failed: unknown client or wrong secret"
            )
        if status == "suspended":
            return None, self.err(
                401, "agent_suspended", "agent is suspended: only Active agents authenticate", agent
            )
        if status == "revoked":
            return None, self.err(
                401, "agent_revoked", "agent is revoked: only Active agents authenticate", agent
            )
        return agent, None

    def _authorise(self, agent: Agent, scopes: List[str]) -> Tuple[Optional[str], Optional[Reply]]:
        """The granting policy id, or the 403 reply explaining the first refused scope."""
        for scope in scopes:
            if not valid_scope(scope):
                return None, self.err(
                    403, "invalid_scope", "malformed scope {!r}: {}".format(scope[:100], SCOPE_RULE), agent
                )
        policy_id: Optional[str] = None
        for scope in scopes:
            granting = [p for p in agent.policies if p.mode == "active" and p.matches(scope)]
            if granting:
                policy_id = policy_id or granting[0].name
                continue
            if any(p.mode == "shadow" and p.matches(scope) for p in agent.policies):
                return None, self.err(
                    403,
                    "policy_shadow_mode",
                    "scope {!r} is matched only by a policy in shadow mode: shadow policies are "
                    "evaluated but do not grant".format(scope),
                    agent,
                )
            if any(p.mode == "inactive" and p.matches(scope) for p in agent.policies):
                return None, self.err(
                    403,
                    "policy_inactive",
                    "scope {!r} is matched only by an inactive policy".format(scope),
                    agent,
                )
            return None, self.err(
                403, "insufficient_scope", "no active policy grants scope {!r}".format(scope), agent
            )
        return policy_id, None

    def token(self, form: Mapping[str, str]) -> Reply:
        grant = form.get("grant_type", "")
        if grant == "client_credentials":
            return self._client_credentials(form)
        if grant == "refresh_token":
            return self._refresh_grant(form)
        if not grant:
            return self.err(400, "invalid_request", "grant_type is required")
        return self.err(400, "unsupported_grant_type", "unsupported grant_type {!r}".format(grant[:50]))

    def _client_credentials(self, form: Mapping[str, str]) -> Reply:
        agent, err = self._authenticate(form.get("client_id", ""), form.get("client_secret", ""))
        if err is not None or agent is None:
            return err  # type: ignore[return-value]
        scopes = form.get("scope", "").split() or agent.default_grant()
        if not scopes:
            return self.err(
                400,
                "invalid_scope",
                "no scope requested and agent {!r} has no default grant (its scopes all hold "
                "wildcards and it has no default_scopes): send scope, or configure default_scopes".format(
                    agent.client_id
                ),
                agent,
            )
        policy_id, err = self._authorise(agent, scopes)
        if err is not None:
            return err
        grant = _Grant(
            agent.client_id, " ".join(scopes), form.get("audience") or None, form.get("task_id") or None
        )
        return self._issue(agent, grant, policy_id, None)

    def _refresh_grant(self, form: Mapping[str, str]) -> Reply:
        token = form.get("refresh_token", "")
        if not token:
            return self.err(400, "invalid_request", "refresh_token is required")
        client_id = form.get("client_id", "")
        with self._lock:
            grant = self._refresh.get(token)
        if grant is None:
            return self.err(400, "invalid_grant", "refresh token is invalid, expired or already used")
        if client_id or form.get("client_secret"):
            agent, err = self._authenticate(client_id, form.get("client_secret", ""))
            if err is not None:
                return err
            if client_id != grant.client_id:
                return self.err(400, "invalid_grant", "refresh token was issued to another client", agent)
        with self._lock:
            agent = self._agents.get(grant.client_id)
            status = agent.status if agent is not None else ""
            rotate = agent.rotate_refresh_tokens if agent is not None else True
            if self._refresh.get(token) is not grant:
                agent = None
            elif rotate:
                del self._refresh[token]
        if agent is None:
            return self.err(400, "invalid_grant", "refresh token is invalid, expired or already used")
        if status != "active":
            return self.err(
                401, "agent_" + status, "agent is {}: only Active agents authenticate".format(status), agent
            )
        policy_id, err = self._authorise(agent, grant.scope.split())
        if err is not None:
            return err
        return self._issue(agent, grant, policy_id, None if rotate else token)

    def _issue(
        self, agent: Agent, grant: _Grant, policy_id: Optional[str], keep_refresh: Optional[str]
    ) -> Reply:
        instant = self.clock.time()
        now = int(instant)
        agent_claim: Dict[str, Any] = {"delegation_depth": 0}
        if grant.task_id:
            agent_claim["task_id"] = grant.task_id
        if agent.framework:
            agent_claim["framework"] = agent.framework
        if agent.policy_id or policy_id:
            agent_claim["policy_id"] = agent.policy_id or policy_id
        if agent.constraints is not None:
            agent_claim["constraints"] = copy.deepcopy(agent.constraints)
        claims: Dict[str, Any] = {
            "iss": self.issuer,
            "sub": agent.client_id,
            "scope": grant.scope,
            "jti": secrets.token_hex(16),
            "iat": now,
            "nbf": now,
            "exp": now + agent.token_ttl,
            "tenant_id": agent.tenant_id or self.tenant_id,
            "agent": agent_claim,
        }
        if grant.audience:
            claims["aud"] = grant.audience
        service_token = "sst_" + secrets.token_urlsafe(32)
        body: Dict[str, Any] = {
            "access_token": self.sign(claims),
            "expires_in": agent.token_ttl,
            "token_type": "Bearer",
            "scope": grant.scope,
            "sdk_service_token": service_token,
            "sdk_service_token_expires_in": agent.sdk_token_ttl,
        }
        with self._lock:
            self._service_tokens[service_token] = _ServiceToken(
                agent.client_id, instant + agent.sdk_token_ttl
            )
            self._prune_service_tokens(instant)
        if agent.refresh_tokens:
            refresh = keep_refresh or "rt_" + secrets.token_urlsafe(32)
            with self._lock:
                self._refresh[refresh] = grant
            body["refresh_token"] = refresh
        return Reply(200, body, NO_STORE + (("Pragma", "no-cache"),))

    def _prune_service_tokens(self, now: float) -> None:
        """Drop expired service tokens once the table has doubled (caller holds the lock)."""
        if len(self._service_tokens) < self._prune_at:
            return
        self._service_tokens = {k: v for k, v in self._service_tokens.items() if v.expires_at > now}
        self._prune_at = max(1024, 2 * len(self._service_tokens))

    def sign(self, claims: Dict[str, Any], lineage: Optional[Lineage] = None) -> str:
        """Sign an issued token and record it (issued_tokens, counters, delegation lineage)."""
        token = self.keys.sign_jwt(claims)
        agent_claim = claims.get("agent") or {}
        record = {
            "jti": claims["jti"],
            "sub": claims["sub"],
            "scope": claims["scope"],
            "iat": claims["iat"],
            "exp": claims["exp"],
            "delegation_depth": agent_claim.get("delegation_depth", 0),
            "parent_jti": lineage.parent_jti if lineage is not None else None,
        }
        with self._lock:
            self.tokens_issued += 1
            self._issued.append(record)
            if lineage is not None:
                self._lineage[claims["jti"]] = lineage
                self._children.setdefault(lineage.parent_jti, []).append(claims["jti"])
        return token

    def issue_token(
        self,
        client_id: str,
        scope: str,
        *,
        audience: Optional[str] = None,
        ttl: Optional[int] = None,
        claims: Optional[Mapping[str, Any]] = None,
        header: Optional[Mapping[str, Any]] = None,
    ) -> str:
        """A signed token outside the grant checks, for verification tests.

        ``claims`` override the defaults (a value of None removes the claim);
        ``header`` entries override the JWS header (None removes one).
        """
        agent = self.get_agent(client_id)
        if agent is None:
            raise KeyError(client_id)
        now = int(self.clock.time())
        body: Dict[str, Any] = {
            "iss": self.issuer,
            "sub": client_id,
            "scope": scope,
            "jti": secrets.token_hex(16),
            "iat": now,
            "nbf": now,
            "exp": now + (agent.token_ttl if ttl is None else ttl),
            "tenant_id": agent.tenant_id or self.tenant_id,
            "agent": {"delegation_depth": 0},
        }
        if audience:
            body["aud"] = audience
        for name, value in (claims or {}).items():
            if value is None:
                body.pop(name, None)  # None removes a claim
            else:
                body[name] = value
        return self.keys.sign_jwt(body, dict(header) if header else None)
