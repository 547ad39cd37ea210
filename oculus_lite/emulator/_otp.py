"""The emulator's approval service: Agent OTP's one-time, human-approved permissions.

Speaks PROTOCOL part B under ``/api/v1/`` (the ``{success, data, error}``
envelope, statuses, expiry, one-time ``otp_`` tokens, a per-agent rate limit,
priority-ordered policies) and an operator side under ``/_emulator/otp/``. One
gap of the reference API is closed: ``GET /api/v1/permissions/{id}`` returns the
token and final scope to the owning agent while the request is approved and
unused, so an agent that waited for a human can receive its token.

A pending request's ``approvalUrl`` is the emulator's approval page
(``/_emulator/ui/permissions/{id}``, see ``_ui``); only a signed-in approver
decides there (``approvers``). ``POST /api/v1/permissions/request`` honours an
``Idempotency-Key`` header: the same key from the same agent, within the first
request's ttl, gets the first answer again instead of a second request.

Configuration (the ``otp`` section of the emulator's ``--config`` JSON)::

    {"rate_limit": 60, "rate_window": 60, "token_uses": 1, "demo_api_key": "ak_demo_...",
     "agents": [{"api_key": "ak_...", "name": "mailer", "rate_limit": 60}],
     "policies": [{"api_key": "ak_..." (absent: every agent), "name": "small reads",
                   "priority": 10, "conditions": {"action": {"startsWith": "file."},
                   "scope.max_size": {"lessThanOrEqual": 1048576}},
                   "action": "auto_approve" | "require_approval" | "deny",
                   "scope_template": {...}, "token_uses": 1}]}
"""

import collections
import copy
import hashlib
import hmac
import json
import math
import re
import secrets
import threading
import time
from typing import Any, Callable, Deque, Dict, List, Mapping, Optional, Tuple

from .._engine import SYSTEM_CLOCK, Clock
from ._otp_model import (
    AgentRecord,
    PermissionRecord,
    PermissionView,
    Policy,
    Reply,
    bearer,
    fail,
    iso,
    ok,
    reply,
    validate_request,
)
from ._ui_auth import ApproverAuth

__all__ = ["OtpService"]


_MAX_PERMISSIONS = 10000
_MAX_IDEMPOTENCY_KEYS = 10000
_ROUTE = re.compile(r"^/api/v1/permissions/([^/]+)(/verify|/use|/decide)?$")
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
_HOST = re.compile(r"^[A-Za-z0-9.\-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$")
APPROVAL_PATH = "/_emulator/ui/permissions/"


class OtpService:
    """Agents, policies and permission requests behind one lock (the server is threaded)."""

    def __init__(
        self,
        admin_token: Optional[str] = None,
        config: Optional[Mapping[str, Any]] = None,
        *,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if config is not None and not isinstance(config, Mapping):
            raise ValueError("the otp config section must be an object")
        self._config: Mapping[str, Any] = config or {}
        self.admin_token = admin_token
        self._clock = clock
        self._offset = 0.0
        self._lock = threading.RLock()
        self._pending_cond = threading.Condition(self._lock)
        self._new_pending: Deque[str] = collections.deque(maxlen=1000)
        self.default_rate_limit = self._int_opt("rate_limit", 60)
        self.rate_window = float(self._int_opt("rate_window", 60))
        self.token_uses = self._int_opt("token_uses", 1)
        self.demo_api_key = str(self._config.get("demo_api_key") or "ak_demo_" + secrets.token_urlsafe(18))
        #: The emulator's own origin (set by the emulator once it listens); approval URLs use it.
        self.public_url: Optional[str] = None
        #: Who may decide on the approval page (the approver token and the signed-in sessions).
        self.approvers = ApproverAuth(admin_token, self.now)
        self.reset()

    @property
    def approver_token(self) -> str:
        """The token a person signs in with on the approval page (``--admin-token`` when set)."""
        return self.approvers.token

    def _int_opt(self, name: str, default: int) -> int:
        value = self._config.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError("otp.{} must be an int >= 1".format(name))
        return value

    # ------------------------------------------------------------------ python API
    def now(self) -> float:
        return self._clock.time() + self._offset

    def advance_clock(self, seconds: float) -> None:
        """Move this service's clock forward (expiry and rate windows) without sleeping."""
        with self._lock:
            self._offset += float(seconds)

    def reset(self) -> None:
        """Back to the start: the demo agent and the configured agents and policies only."""
        with self._lock:
            self._agents: Dict[str, AgentRecord] = {}
            self._policies: List[Policy] = []
            self._perms: Dict[str, PermissionRecord] = {}
            self._counts: Dict[str, int] = collections.defaultdict(int)
            self._replies: Dict[Tuple[str, str], Tuple[str, float, Reply]] = {}
            self._new_pending.clear()
            self.add_agent(self.demo_api_key, "demo-agent")
            for spec in self._config.get("agents") or ():
                if not isinstance(spec, Mapping) or set(spec) - {"api_key", "name", "rate_limit"}:
                    raise ValueError("otp.agents entries are objects with api_key, name, rate_limit")
                self.add_agent(spec.get("api_key"), spec.get("name"), spec.get("rate_limit"))  # type: ignore[arg-type]
            for spec in self._config.get("policies") or ():
                self.add_policy(spec)

    def add_agent(self, api_key: str, name: Optional[str] = None, rate_limit: Optional[int] = None) -> None:
        """Create or replace an agent identified by ``api_key`` (``ak_...``)."""
        if (
            not isinstance(api_key, str)
            or not api_key
            or len(api_key) > 256
            or re.search(r"[\s\x00-\x1f\x7f]", api_key)
        ):
            raise ValueError("api_key must be a non-empty string without spaces or control characters")
        limit = self.default_rate_limit if rate_limit is None else rate_limit
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError("rate_limit must be an int >= 1 (requests per rate window)")
        with self._lock:
            self._agents[api_key] = AgentRecord(
                api_key, str(name or "agent-{}".format(len(self._agents))), limit
            )

    def add_policy(self, spec: Optional[Mapping[str, Any]] = None, **fields: Any) -> Dict[str, Any]:
        """Add a policy (``add_policy({...})`` or keyword fields); returns its description."""
        merged = dict(spec or {})
        merged.update(fields)
        with self._lock:
            policy = Policy(merged, self.token_uses, len(self._policies))
            self._policies.append(policy)
            self._policies.sort(key=lambda p: (-p.priority, p.order))
            return policy.describe()

    def decide(
        self,
        permission_id: str,
        approved: bool,
        reason: Optional[str] = None,
        scope_modifications: Optional[Mapping[str, Any]] = None,
        decided_by: str = "operator",
    ) -> Dict[str, Any]:
        """The human's decision; raises KeyError (unknown id) or ValueError (already decided/expired)."""
        with self._lock:
            perm = self._perms[permission_id]
            now = self.now()
            status = perm.current_status(now)
            if status != "pending":
                raise ValueError("permission {} is already {}".format(permission_id, status))
            self._counts["permission_decisions"] += 1
            perm.decided_by, perm.decided_at, perm.reason = decided_by, now, reason
            if approved:
                if scope_modifications:
                    perm.scope = dict(perm.scope, **dict(scope_modifications))
                self._approve(perm, self.token_uses, now)
                return {
                    "id": perm.id,
                    "status": "approved",
                    "token": perm.token,
                    "scope": perm.scope,
                    "expiresAt": iso(perm.expires_at),
                }
            perm.status = "denied"
            perm.reason = reason or "denied by a human"
            return {
                "id": perm.id,
                "status": "denied",
                "reason": perm.reason,
                "expiresAt": iso(perm.expires_at),
            }

    def is_agent_key(self, key: Optional[str]) -> bool:
        """True when ``key`` is an agent's API key (those never decide)."""
        if not key:
            return False
        with self._lock:
            return key in self._agents

    def approval_url(self, permission_id: str, host: Optional[str] = None) -> str:
        """The absolute URL of a request's approval page on this emulator."""
        origin = self.public_url
        if origin is None:  # not started by an Emulator: trust a well-formed Host header only
            origin = "http://" + (host if host and _HOST.match(host) else "127.0.0.1")
        return origin + APPROVAL_PATH + permission_id

    def view(self, permission_id: str) -> Optional[PermissionView]:
        """What the approval page shows of one request (never its token), or None."""
        with self._lock:
            perm = self._perms.get(permission_id)
            return None if perm is None else self._view(perm, self.now())

    def views(self) -> List[PermissionView]:
        """Every request as the dashboard shows it, newest first."""
        with self._lock:
            now = self.now()
            return [self._view(p, now) for p in reversed(list(self._perms.values()))]

    def _view(self, perm: PermissionRecord, now: float) -> PermissionView:
        agent = self._agents.get(perm.owner)
        return PermissionView(
            id=perm.id,
            status=perm.current_status(now),
            action=perm.action,
            resource=perm.resource,
            scope=copy.deepcopy(perm.scope),
            context=copy.deepcopy(perm.context),
            agent_name=agent.name if agent is not None else "(removed agent)",
            decision_reason=perm.reason,
            decided_by=perm.decided_by,
            decided_at=perm.decided_at,
            created_at=perm.created_at,
            expires_at=perm.expires_at,
            now=now,
            uses_remaining=perm.uses_remaining,
        )

    def list_permissions(self, status: Optional[str] = None) -> List[Dict[str, Any]]:
        """Permissions (no tokens), oldest first, optionally only those with ``status``."""
        with self._lock:
            now = self.now()
            rows = [dict(p.public(now), expires_at=iso(p.expires_at)) for p in self._perms.values()]
        return [r for r in rows if status is None or r["status"] == status]

    def next_pending(self, timeout: float = 10.0) -> Optional[str]:
        """Block until a request goes pending (one not returned before); its id, or None on timeout.

        Lets a test or demo play the human without polling or sleeping.
        """
        deadline = time.monotonic() + timeout
        with self._pending_cond:
            while not self._new_pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._pending_cond.wait(remaining):
                    if not self._new_pending:
                        return None
            return self._new_pending.popleft()

    def stats(self) -> Dict[str, int]:
        with self._lock:
            out = {
                name: 0
                for name in (
                    "permission_requests",
                    "permission_polls",
                    "permission_verifies",
                    "permission_uses",
                    "permission_decisions",
                    "otp_rate_limited",
                    "otp_auth_failures",
                    "idempotent_replays",
                )
            }
            out.update(self._counts)
            return out

    # ------------------------------------------------------------------ HTTP
    def handle(
        self, method: str, path: str, query: Dict[str, List[str]], headers: Dict[str, str], body: bytes
    ) -> Optional[Reply]:
        if path.startswith("/_emulator/otp/"):
            return self._admin(method, path, query, headers, body)
        if not path.startswith("/api/v1/"):
            return None
        if path == "/api/v1/permissions/request":
            return self._guard(
                method, "POST", headers, body, lambda key, data: self._request(key, data, headers)
            )
        match = _ROUTE.match(path)
        if match is None:
            return fail(404, "NOT_FOUND", "no such API route")
        pid, action = match.group(1), match.group(2)
        if action == "/decide":
            if method != "POST":
                return fail(405, "METHOD_NOT_ALLOWED", "use POST", headers={"Allow": "POST"})
            return self._decide_http(pid, headers, body)
        if action is None:
            return self._guard(method, "GET", headers, body, lambda key, data: self._get(key, pid))
        if action == "/verify":
            return self._guard(
                method, "POST", headers, body, lambda key, data: self._token_op(pid, data, False)
            )
        return self._guard(method, "POST", headers, body, lambda key, data: self._token_op(pid, data, True))

    def _guard(
        self,
        method: str,
        allowed: str,
        headers: Mapping[str, str],
        body: bytes,
        fn: Callable[[str, Dict[str, Any]], Reply],
    ) -> Reply:
        """Auth, rate limit and JSON parsing shared by the agent routes."""
        if method != allowed:
            return fail(405, "METHOD_NOT_ALLOWED", "use " + allowed, headers={"Allow": allowed})
        key = bearer(headers)
        with self._lock:
            agent = self._agents.get(key) if key else None
            if agent is None:
                self._counts["otp_auth_failures"] += 1
                return fail(
                    401,
                    "UNAUTHORIZED",
                    "missing or invalid API key (send Authorization: Bearer ak_...)",
                    headers={"WWW-Authenticate": 'Bearer realm="agent-otp"'},
                )
            now = self.now()
            recent = agent.recent
            while recent and recent[0] <= now - self.rate_window:
                recent.popleft()
            if len(recent) >= agent.rate_limit:
                self._counts["otp_rate_limited"] += 1
                wait = max(1, int(math.ceil(recent[0] + self.rate_window - now)))
                return fail(
                    429,
                    "RATE_LIMITED",
                    "rate limit of {} requests per {:g} s exceeded".format(
                        agent.rate_limit, self.rate_window
                    ),
                    {"retryAfter": wait},
                    headers={"Retry-After": str(wait)},
                )
            recent.append(now)
        data: Dict[str, Any] = {}
        if allowed == "POST":
            try:
                parsed = json.loads(body.decode("utf-8") or "{}")
            except (UnicodeDecodeError, ValueError):
                return fail(400, "VALIDATION_ERROR", "the body must be JSON", {"body": "not JSON"})
            if not isinstance(parsed, dict):
                return fail(
                    400, "VALIDATION_ERROR", "the body must be a JSON object", {"body": "not an object"}
                )
            data = parsed
        return fn(agent.api_key, data)

    def _approve(self, perm: PermissionRecord, uses: int, now: float) -> None:
        perm.status = "approved"
        perm.token = "otp_" + secrets.token_urlsafe(24)
        perm.uses_remaining = perm.token_uses = uses
        perm.expires_at = now + perm.ttl

    def _request(self, key: str, data: Dict[str, Any], headers: Mapping[str, str]) -> Reply:
        idem = headers.get("idempotency-key")
        if idem is not None and not _IDEMPOTENCY_KEY.match(idem):
            return fail(
                400,
                "VALIDATION_ERROR",
                "Idempotency-Key must be 1-255 visible ASCII characters",
                {"Idempotency-Key": "1-255 visible ASCII characters"},
            )
        body, errors = validate_request(data)
        if body is None:
            return fail(
                400, "VALIDATION_ERROR", "invalid permission request: " + ", ".join(sorted(errors)), errors
            )
        if idem is None:
            return self._create(key, body, headers)
        fingerprint = hashlib.sha256(json.dumps(body, sort_keys=True).encode("utf-8")).hexdigest()
        slot = (key, idem)
        with self._lock:  # held across the creation: two concurrent retries create one request
            now = self.now()
            seen = self._replies.get(slot)
            if seen is not None and now < seen[1]:
                if not hmac.compare_digest(seen[0], fingerprint):
                    return fail(
                        422,
                        "IDEMPOTENCY_KEY_REUSED",
                        "this Idempotency-Key was already used for a different request",
                        {"Idempotency-Key": "reused with another body"},
                    )
                self._counts["idempotent_replays"] += 1
                status, hdrs, raw = seen[2]
                return status, dict(hdrs, **{"Idempotent-Replayed": "true"}), raw
            answer = self._create(key, body, headers)
            if 200 <= answer[0] < 300:
                for old in [k for k, v in self._replies.items() if v[1] <= now]:
                    del self._replies[old]
                self._replies[slot] = (fingerprint, now + body["ttl"], answer)
                while len(self._replies) > _MAX_IDEMPOTENCY_KEYS:
                    del self._replies[next(iter(self._replies))]
            return answer

    def _create(self, key: str, body: Dict[str, Any], headers: Mapping[str, str]) -> Reply:
        with self._lock:
            self._counts["permission_requests"] += 1
            now = self.now()
            perm = PermissionRecord("perm_" + secrets.token_hex(12), key, body, now)
            self._perms[perm.id] = perm
            while len(self._perms) > _MAX_PERMISSIONS:  # a long-running emulator stays bounded
                del self._perms[next(iter(self._perms))]
            policy = next((p for p in self._policies if p.applies(key, body)), None)
            outcome = policy.action if policy else "require_approval"
            if outcome == "auto_approve" and policy is not None:
                perm.scope = dict(perm.scope, **policy.scope_template)
                perm.decided_by, perm.decided_at = "policy:" + policy.name, now
                perm.reason = "auto-approved by policy " + policy.name
                self._approve(perm, policy.token_uses, now)
                return ok(
                    201,
                    {
                        "id": perm.id,
                        "status": "approved",
                        "token": perm.token,
                        "scope": perm.scope,
                        "expiresAt": iso(perm.expires_at),
                    },
                )
            if outcome == "deny" and policy is not None:
                perm.status, perm.decided_by, perm.decided_at = "denied", "policy:" + policy.name, now
                perm.reason = "denied by policy " + policy.name
                return ok(
                    200,
                    {
                        "id": perm.id,
                        "status": "denied",
                        "reason": perm.reason,
                        "expiresAt": iso(perm.expires_at),
                    },
                )
            self._new_pending.append(perm.id)
            self._pending_cond.notify_all()
        approval_url = self.approval_url(perm.id, headers.get("host"))
        origin = approval_url[: -len(APPROVAL_PATH + perm.id)]
        return ok(
            202,
            {
                "id": perm.id,
                "status": "pending",
                "approvalUrl": approval_url,
                "webhookUrl": "{}/api/v1/permissions/{}/decide".format(origin, perm.id),
                "expiresAt": iso(perm.expires_at),
            },
        )

    def _get(self, key: str, pid: str) -> Reply:
        with self._lock:
            self._counts["permission_polls"] += 1
            perm = self._perms.get(pid)
            if perm is None or not hmac.compare_digest(perm.owner.encode(), key.encode()):
                return fail(404, "NOT_FOUND", "no permission with that id for this API key")
            now = self.now()
            data = perm.public(now)
            if data["status"] == "approved" and perm.token and perm.uses_remaining == perm.token_uses:
                data["token"] = perm.token  # the gap closed: the owner receives its token
            return ok(200, data)

    def _token_op(self, pid: str, data: Dict[str, Any], consume: bool) -> Reply:
        token = data.get("token")
        if not isinstance(token, str) or not token:
            return fail(400, "VALIDATION_ERROR", "token is required", {"token": "required string"})
        with self._lock:
            self._counts["permission_uses" if consume else "permission_verifies"] += 1
            perm = self._perms.get(pid)
            if perm is None:
                return fail(404, "NOT_FOUND", "no permission with that id")
            now = self.now()
            status = perm.current_status(now)
            reason: Optional[str] = None
            if perm.token is None or not hmac.compare_digest(perm.token.encode(), token.encode()):
                reason = "invalid token"
            elif status == "used":
                reason = "token already used"
            elif status != "approved":
                reason = "permission is " + status
            if consume:
                if reason is not None:
                    return ok(200, {"success": False, "usesRemaining": 0, "reason": reason})
                perm.uses_remaining -= 1
                if perm.uses_remaining <= 0:
                    perm.status = "used"
                return ok(200, {"success": True, "usesRemaining": perm.uses_remaining})
            if reason is not None:
                return ok(200, {"valid": False, "reason": reason})
            return ok(
                200,
                {
                    "valid": True,
                    "scope": perm.scope,
                    "usesRemaining": perm.uses_remaining,
                    "expiresAt": iso(perm.expires_at),
                },
            )

    def _decide_http(self, pid: str, headers: Mapping[str, str], body: bytes) -> Reply:
        key = bearer(headers)
        with self._lock:
            is_agent = key is not None and key in self._agents
        if is_agent:
            return fail(403, "FORBIDDEN", "an agent's API key cannot decide permission requests")
        if self.admin_token is not None and not (
            key is not None and hmac.compare_digest(key.encode(), self.admin_token.encode())
        ):
            return fail(
                401,
                "UNAUTHORIZED",
                "the operator's admin token is required",
                headers={"WWW-Authenticate": 'Bearer realm="agent-otp-operator"'},
            )
        try:
            data = json.loads(body.decode("utf-8") or "{}")
        except (UnicodeDecodeError, ValueError):
            data = None
        if not isinstance(data, dict) or not isinstance(data.get("approved"), bool):
            return fail(
                400, "VALIDATION_ERROR", 'send {"approved": true|false}', {"approved": "required boolean"}
            )
        reason, mods = data.get("reason"), data.get("scopeModifications")
        if reason is not None and not isinstance(reason, str):
            return fail(400, "VALIDATION_ERROR", "reason must be a string", {"reason": "string"})
        if mods is not None and not isinstance(mods, dict):
            return fail(
                400,
                "VALIDATION_ERROR",
                "scopeModifications must be an object",
                {"scopeModifications": "object"},
            )
        try:
            result = self.decide(pid, data["approved"], reason, mods, decided_by="operator")
        except KeyError:
            return fail(404, "NOT_FOUND", "no permission with that id")
        except ValueError as exc:
            return fail(409, "CONFLICT", str(exc))
        return ok(200, result)

    # ------------------------------------------------------------------ operator side
    def _admin(
        self, method: str, path: str, query: Dict[str, List[str]], headers: Mapping[str, str], body: bytes
    ) -> Reply:
        def err(status: int, code: str, message: str) -> Reply:
            return reply(status, {"error": {"code": code, "message": message}})

        if path == "/_emulator/otp/permissions" and method == "GET":
            wanted = query.get("status") or [""]
            return reply(200, {"permissions": self.list_permissions(wanted[0] or None)})
        if path.startswith("/_emulator/otp/permissions/") and method == "GET":
            pid = path[len("/_emulator/otp/permissions/") :]
            rows = [r for r in self.list_permissions() if r["id"] == pid]
            return reply(200, rows[0]) if rows else err(404, "not_found", "no permission with that id")
        if path in ("/_emulator/otp/agents", "/_emulator/otp/policies") and method == "POST":
            try:
                spec = json.loads(body.decode("utf-8") or "{}")
            except (UnicodeDecodeError, ValueError):
                return err(400, "invalid_request", "the body must be JSON")
            if not isinstance(spec, dict):
                return err(400, "invalid_request", "the body must be a JSON object")
            try:
                if path.endswith("/agents"):
                    if set(spec) - {"api_key", "name", "rate_limit"}:
                        raise ValueError("fields: api_key, name, rate_limit")
                    self.add_agent(spec.get("api_key"), spec.get("name"), spec.get("rate_limit"))  # type: ignore[arg-type]
                    return reply(201, {"name": self._agents[spec["api_key"]].name, "created": True})
                return reply(201, self.add_policy(spec))
            except ValueError as exc:
                return err(400, "invalid_request", str(exc))
        if path == "/_emulator/otp/reset" and method == "POST":
            self.reset()
            return reply(200, {"reset": True})
        return err(404, "not_found", "no such emulator OTP route")
