"""The emulator's token service: agents, policies, grants, refresh tokens, revocation.

It reproduces the failure modes of the real service as the troubleshooting
guide describes them (401 for credentials and agent status, 403 for policy and
scope problems) so clients can be tested against each cause. No HTTP here:
the server turns a ``Reply`` into bytes.
"""

import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from ._keys import KeyRing

__all__ = ["Agent", "Policy", "Reply", "TokenService", "error_body"]

STATUSES = ("active", "suspended", "revoked")
POLICY_MODES = ("active", "inactive", "shadow")
ERROR_STYLES = ("oculus", "rfc6749")
_SEGMENT = r"[a-z0-9*][a-z0-9_.*-]*"
_SCOPE_RE = re.compile(r"\A{0}(?::{0})+\Z".format(_SEGMENT))


@dataclass(frozen=True)
class Reply:
    status: int
    body: Dict[str, Any]
    headers: Tuple[Tuple[str, str], ...] = ()


def error_body(code: str, message: str, style: Optional[str]) -> Dict[str, Any]:
    if style == "rfc6749":
        return {"error": code, "error_description": message}
    return {"error": {"code": code, "message": message}}


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


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ValueError(message)


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
) -> Agent:
    """Validate the agent fields (ValueError naming the field) and build an Agent."""
    _check(isinstance(client_id, str) and client_id != "", "client_id must be a non-empty string")
    if client_secret is None:
        client_secret = "sk_emu_" + secrets.token_urlsafe(24)
    _check(isinstance(client_secret, str) and client_secret != "", "client_secret must be a non-empty string")
    _check(status in STATUSES, "status must be one of " + ", ".join(STATUSES))
    _check(
        isinstance(token_ttl, int) and not isinstance(token_ttl, bool) and token_ttl >= 1,
        "token_ttl must be an integer >= 1 (seconds)",
    )
    _check(error_style is None or error_style in ERROR_STYLES, "error_style must be 'oculus' or 'rfc6749'")
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
    )


@dataclass
class _Grant:
    client_id: str
    scope: str
    audience: Optional[str]
    task_id: Optional[str]


class TokenService:
    """Thread-safe state of the token side: agents, refresh tokens and the revocation list."""

    def __init__(
        self, keys: KeyRing, *, tenant_id: str = "tenant_emulator", error_style: Optional[str] = None
    ):
        self.keys = keys
        self.tenant_id = tenant_id
        self.error_style = error_style
        self.issuer = ""
        self._lock = threading.Lock()
        self._agents: Dict[str, Agent] = {}
        self._refresh: Dict[str, _Grant] = {}
        self._revoked: List[str] = []
        self._revoked_set: set = set()  # type: ignore[type-arg]
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
        _check(status in STATUSES, "status must be one of " + ", ".join(STATUSES))
        with self._lock:
            agent = self._agents.get(client_id)
            if agent is None:
                raise KeyError(client_id)
            agent.status = status

    def revoke(self, jti: str) -> bool:
        _check(isinstance(jti, str) and jti != "", "jti must be a non-empty string")
        with self._lock:
            if jti in self._revoked_set:
                return False
            self._revoked.append(jti)
            self._revoked_set.add(jti)
            return True

    def revoked(self) -> Tuple[List[str], str]:
        """The revoked jtis and their strong ETag."""
        with self._lock:
            jtis = list(self._revoked)
        digest = hashlib.sha256("\n".join(jtis).encode("utf-8")).hexdigest()[:32]
        return jtis, '"{}-{}"'.format(len(jtis), digest)

    def reset(self) -> None:
        with self._lock:
            self._agents.clear()
            self._refresh.clear()
            self._revoked = []
            self._revoked_set = set()
            self.tokens_issued = 0

    # ------------------------------------------------------------------ grants
    def _err(self, status: int, code: str, message: str, agent: Optional[Agent] = None) -> Reply:
        style = agent.error_style if agent is not None and agent.error_style else self.error_style
        return Reply(status, error_body(code, message, style), (("Cache-Control", "no-store"),))

    def _authenticate(self, client_id: str, client_secret: str) -> Tuple[Optional[Agent], Optional[Reply]]:
        if not client_id or not client_secret:
            return None, self._err(
                401, "invalid_client", "client credentials missing: send client_id and client_secret"
            )
        with self._lock:
            agent = self._agents.get(client_id)
            expected = agent.client_secret if agent is not None else ""
            status = agent.status if agent is not None else ""
        ok = hmac.compare_digest(client_secret.encode("utf-8"), expected.encode("utf-8"))
        if agent is None or not ok:
            return None, self._err(
                401, "invalid_client", "client authentication failed: unknown client or wrong secret"
            )
        if status == "suspended":
            return None, self._err(
                401, "agent_suspended", "agent is suspended: only Active agents authenticate", agent
            )
        if status == "revoked":
            return None, self._err(
                401, "agent_revoked", "agent is revoked: only Active agents authenticate", agent
            )
        return agent, None

    def _authorise(self, agent: Agent, scopes: List[str]) -> Tuple[Optional[str], Optional[Reply]]:
        """The granting policy id, or the 403 reply explaining the first refused scope."""
        for scope in scopes:
            if not _SCOPE_RE.match(scope):
                return None, self._err(
                    403,
                    "invalid_scope",
                    "malformed scope {!r}: scopes are lowercase, colon-separated segments "
                    "with at least two segments, e.g. 'stripe:customer:read'".format(scope[:100]),
                    agent,
                )
        policy_id: Optional[str] = None
        for scope in scopes:
            granting = [p for p in agent.policies if p.mode == "active" and p.matches(scope)]
            if granting:
                policy_id = policy_id or granting[0].name
                continue
            if any(p.mode == "shadow" and p.matches(scope) for p in agent.policies):
                return None, self._err(
                    403,
                    "policy_shadow_mode",
                    "scope {!r} is matched only by a policy in shadow mode: shadow policies are "
                    "evaluated but do not grant".format(scope),
                    agent,
                )
            if any(p.mode == "inactive" and p.matches(scope) for p in agent.policies):
                return None, self._err(
                    403,
                    "policy_inactive",
                    "scope {!r} is matched only by an inactive policy".format(scope),
                    agent,
                )
            return None, self._err(
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
            return self._err(400, "invalid_request", "grant_type is required")
        return self._err(400, "unsupported_grant_type", "unsupported grant_type {!r}".format(grant[:50]))

    def _client_credentials(self, form: Mapping[str, str]) -> Reply:
        agent, err = self._authenticate(form.get("client_id", ""), form.get("client_secret", ""))
        if err is not None or agent is None:
            return err  # type: ignore[return-value]
        scopes = form.get("scope", "").split()
        if not scopes:
            return self._err(400, "invalid_request", "scope is required (space-separated list)", agent)
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
            return self._err(400, "invalid_request", "refresh_token is required")
        client_id = form.get("client_id", "")
        with self._lock:
            grant = self._refresh.get(token)
        if grant is None:
            return self._err(400, "invalid_grant", "refresh token is invalid, expired or already used")
        if client_id or form.get("client_secret"):
            agent, err = self._authenticate(client_id, form.get("client_secret", ""))
            if err is not None:
                return err
            if client_id != grant.client_id:
                return self._err(400, "invalid_grant", "refresh token was issued to another client", agent)
        with self._lock:
            agent = self._agents.get(grant.client_id)
            status = agent.status if agent is not None else ""
            rotate = agent.rotate_refresh_tokens if agent is not None else True
            if self._refresh.get(token) is not grant:
                agent = None
            elif rotate:
                del self._refresh[token]
        if agent is None:
            return self._err(400, "invalid_grant", "refresh token is invalid, expired or already used")
        if status != "active":
            return self._err(
                401, "agent_" + status, "agent is {}: only Active agents authenticate".format(status), agent
            )
        policy_id, err = self._authorise(agent, grant.scope.split())
        if err is not None:
            return err
        return self._issue(agent, grant, policy_id, None if rotate else token)

    def _issue(
        self, agent: Agent, grant: _Grant, policy_id: Optional[str], keep_refresh: Optional[str]
    ) -> Reply:
        now = int(time.time())
        jti = secrets.token_hex(16)
        agent_claim: Dict[str, Any] = {"delegation_depth": 0}
        if grant.task_id:
            agent_claim["task_id"] = grant.task_id
        if agent.framework:
            agent_claim["framework"] = agent.framework
        if policy_id:
            agent_claim["policy_id"] = policy_id
        claims: Dict[str, Any] = {
            "iss": self.issuer,
            "sub": agent.client_id,
            "scope": grant.scope,
            "jti": jti,
            "iat": now,
            "nbf": now,
            "exp": now + agent.token_ttl,
            "tenant_id": agent.tenant_id or self.tenant_id,
            "agent": agent_claim,
        }
        if grant.audience:
            claims["aud"] = grant.audience
        body: Dict[str, Any] = {
            "access_token": self.keys.sign_jwt(claims),
            "expires_in": agent.token_ttl,
            "token_type": "Bearer",
            "scope": grant.scope,
        }
        if agent.refresh_tokens:
            refresh = keep_refresh or "rt_" + secrets.token_urlsafe(32)
            with self._lock:
                self._refresh[refresh] = grant
            body["refresh_token"] = refresh
        with self._lock:
            self.tokens_issued += 1
        return Reply(200, body, (("Cache-Control", "no-store"), ("Pragma", "no-cache")))

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
        now = int(time.time())
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


def dumps(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode("utf-8")
