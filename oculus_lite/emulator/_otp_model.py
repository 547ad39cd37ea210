"""The data and wire shapes of the emulator's approval service (``_otp``): policies,
agent and permission records, the ``{success, data, error}`` envelope and request
validation. Kept apart so ``_otp`` holds only the service's behaviour.

Policies are priority-ordered rules whose conditions test ``action``, ``resource``,
``scope.*`` and ``context.*`` and whose outcome is ``auto_approve``,
``require_approval`` (the default when none matches) or ``deny``. A condition is
``{field: {operator: value}}``; every operator of every field must hold. A missing
field only satisfies ``exists: false``.
"""

import collections
import datetime as _dt
import hmac
import json
import re
from dataclasses import dataclass
from typing import Any, Deque, Dict, List, Mapping, Optional, Tuple

__all__ = [
    "OPERATORS",
    "OUTCOMES",
    "AgentRecord",
    "PermissionRecord",
    "PermissionView",
    "Policy",
    "Reply",
    "bearer",
    "fail",
    "iso",
    "ok",
    "reply",
    "validate_request",
]

Reply = Tuple[int, Dict[str, str], bytes]

OPERATORS = (
    "equals",
    "notEquals",
    "lessThan",
    "greaterThan",
    "lessThanOrEqual",
    "greaterThanOrEqual",
    "startsWith",
    "endsWith",
    "contains",
    "matches",
    "in",
    "notIn",
    "exists",
)
OUTCOMES = ("auto_approve", "require_approval", "deny")
_MISSING = object()


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _lookup(request: Mapping[str, Any], path: str) -> Any:
    parts = path.split(".")
    value: Any = request.get(parts[0], _MISSING)
    for part in parts[1:]:
        if not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]
    return _MISSING if value is None and parts[0] == "resource" else value


def _test(op: str, actual: Any, expected: Any) -> bool:
    if op == "exists":
        return (actual is not _MISSING) == bool(expected)
    if actual is _MISSING:
        return False
    if op == "equals":
        return bool(actual == expected)
    if op == "notEquals":
        return bool(actual != expected)
    if op in ("lessThan", "greaterThan", "lessThanOrEqual", "greaterThanOrEqual"):
        if not (_is_number(actual) and _is_number(expected)):
            return False
        a, b = float(actual), float(expected)
        return {
            "lessThan": a < b,
            "greaterThan": a > b,
            "lessThanOrEqual": a <= b,
            "greaterThanOrEqual": a >= b,
        }[op]
    if op in ("startsWith", "endsWith"):
        if not isinstance(actual, str):
            return False
        return actual.startswith(expected) if op == "startsWith" else actual.endswith(expected)
    if op == "contains":
        if isinstance(actual, str):
            return isinstance(expected, str) and expected in actual
        return isinstance(actual, list) and expected in actual
    if op == "matches":
        return isinstance(actual, str) and expected.search(actual) is not None
    if op == "in":
        return actual in expected
    return actual not in expected  # notIn


class Policy:
    def __init__(self, spec: Mapping[str, Any], default_uses: int, order: int) -> None:
        if not isinstance(spec, Mapping):
            raise ValueError("a policy must be a JSON object")
        unknown = set(spec) - {
            "api_key",
            "name",
            "priority",
            "conditions",
            "action",
            "scope_template",
            "token_uses",
            "description",
        }
        if unknown:
            raise ValueError("policy: unknown field(s) " + ", ".join(sorted(unknown)))
        self.api_key = spec.get("api_key")
        if self.api_key is not None and not isinstance(self.api_key, str):
            raise ValueError("policy api_key must be a string or absent")
        self.name = str(spec.get("name") or "policy-{}".format(order))
        priority = spec.get("priority", 0)
        if not _is_number(priority):
            raise ValueError("policy priority must be a number")
        self.priority = float(priority)
        self.order = order
        self.action = spec.get("action", "require_approval")
        if self.action not in OUTCOMES:
            raise ValueError("policy action must be one of " + ", ".join(OUTCOMES))
        template = spec.get("scope_template")
        if template is not None and not isinstance(template, dict):
            raise ValueError("policy scope_template must be an object")
        self.scope_template: Dict[str, Any] = dict(template or {})
        uses = spec.get("token_uses", default_uses)
        if isinstance(uses, bool) or not isinstance(uses, int) or uses < 1:
            raise ValueError("policy token_uses must be an int >= 1")
        self.token_uses = uses
        conditions = spec.get("conditions") or {}
        if not isinstance(conditions, Mapping):
            raise ValueError("policy conditions must be an object {field: {operator: value}}")
        self.conditions: List[Tuple[str, str, Any]] = []
        for fld, tests in conditions.items():
            root = str(fld).split(".")[0]
            if root not in ("action", "resource", "scope", "context") or (
                root in ("scope", "context") and "." not in str(fld)
            ):
                raise ValueError(
                    "condition field {!r}: use action, resource, scope.X or context.X".format(fld)
                )
            if not isinstance(tests, Mapping) or not tests:
                raise ValueError("condition {!r} must be an object {{operator: value}}".format(fld))
            for op, value in tests.items():
                if op not in OPERATORS:
                    raise ValueError(
                        "condition {!r}: unknown operator {!r}; use one of {}".format(
                            fld, op, ", ".join(OPERATORS)
                        )
                    )
                if op in ("in", "notIn") and not isinstance(value, list):
                    raise ValueError("condition {!r}: {} needs a list".format(fld, op))
                if op in ("startsWith", "endsWith") and not isinstance(value, str):
                    raise ValueError("condition {!r}: {} needs a string".format(fld, op))
                if op == "matches":
                    try:
                        value = re.compile(str(value))
                    except re.error as exc:
                        raise ValueError(
                            "condition {!r}: bad regular expression ({})".format(fld, exc)
                        ) from None
                self.conditions.append((str(fld), op, value))

    def applies(self, api_key: str, request: Mapping[str, Any]) -> bool:
        if self.api_key is not None and not hmac.compare_digest(self.api_key.encode(), api_key.encode()):
            return False
        return all(_test(op, _lookup(request, fld), value) for fld, op, value in self.conditions)

    def describe(self) -> Dict[str, Any]:
        return {
            "name": self.name,
            "priority": self.priority,
            "action": self.action,
            "agent_specific": self.api_key is not None,
            "conditions": len(self.conditions),
        }


def iso(ts: float) -> str:
    moment = _dt.datetime.fromtimestamp(ts, _dt.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + "{:03d}Z".format(moment.microsecond // 1000)


class AgentRecord:
    def __init__(self, api_key: str, name: str, rate_limit: int) -> None:
        self.api_key, self.name, self.rate_limit = api_key, name, rate_limit
        self.recent: Deque[float] = collections.deque()


class PermissionRecord:
    def __init__(self, pid: str, owner: str, body: Dict[str, Any], now: float) -> None:
        self.id, self.owner = pid, owner
        self.action: str = body["action"]
        self.resource: Optional[str] = body.get("resource")
        self.scope: Dict[str, Any] = body["scope"]
        self.context: Dict[str, Any] = body["context"]
        self.ttl: int = body["ttl"]
        self.created_at = now
        self.expires_at = now + self.ttl
        self.status = "pending"
        self.token: Optional[str] = None
        self.uses_remaining = 0
        self.token_uses = 1
        self.reason: Optional[str] = None
        self.decided_by: Optional[str] = None
        self.decided_at: Optional[float] = None

    def current_status(self, now: float) -> str:
        if self.status in ("pending", "approved") and now >= self.expires_at:
            return "expired"
        return self.status

    def public(self, now: float) -> Dict[str, Any]:
        return {
            "id": self.id,
            "status": self.current_status(now),
            "action": self.action,
            "resource": self.resource,
            "scope": self.scope,
            "context": self.context,
            "decisionReason": self.reason,
            "decidedBy": self.decided_by,
            "decidedAt": iso(self.decided_at) if self.decided_at is not None else None,
            "expiresAt": iso(self.expires_at),
            "createdAt": iso(self.created_at),
        }


@dataclass(frozen=True)
class PermissionView:
    """What a human may see of a request (the approval page, the dashboard): never the token.

    A snapshot taken under the service's lock; ``scope`` and ``context`` are copies.
    """

    id: str
    status: str
    action: str
    resource: Optional[str]
    scope: Dict[str, Any]
    context: Dict[str, Any]
    agent_name: str
    decision_reason: Optional[str]
    decided_by: Optional[str]
    decided_at: Optional[float]
    created_at: float
    expires_at: float
    now: float
    uses_remaining: int

    @property
    def reason(self) -> Optional[str]:
        """The agent's own explanation (``context.reason``), when it gave one as text."""
        value = self.context.get("reason")
        return value if isinstance(value, str) else None

    @property
    def remaining(self) -> float:
        """Seconds left before expiry, on the service's clock (0 when past)."""
        return max(0.0, self.expires_at - self.now)


def reply(status: int, payload: Any, headers: Optional[Dict[str, str]] = None) -> Reply:
    out = {"Content-Type": "application/json", "Cache-Control": "no-store"}
    out.update(headers or {})
    return status, out, json.dumps(payload, separators=(",", ":")).encode("utf-8")


def ok(status: int, data: Dict[str, Any]) -> Reply:
    return reply(status, {"success": True, "data": data, "error": None})


def fail(
    status: int,
    code: str,
    message: str,
    details: Optional[Dict[str, Any]] = None,
    headers: Optional[Dict[str, str]] = None,
) -> Reply:
    error = {"code": code, "message": message, "details": details or {}}
    return reply(status, {"success": False, "data": None, "error": error}, headers)


def bearer(headers: Mapping[str, str]) -> Optional[str]:
    auth = headers.get("authorization", "")
    if auth[:7].lower() != "bearer ":
        return None
    return auth[7:].strip() or None


def validate_request(body: Any) -> Tuple[Optional[Dict[str, Any]], Dict[str, str]]:
    errors: Dict[str, str] = {}
    if not isinstance(body, dict):
        return None, {"body": "must be a JSON object"}
    action = body.get("action")
    if not isinstance(action, str) or not 1 <= len(action) <= 255:
        errors["action"] = "must be a string of 1-255 characters"
    resource = body.get("resource")
    if resource is not None and (not isinstance(resource, str) or len(resource) > 255):
        errors["resource"] = "must be a string of at most 255 characters"
    for name in ("scope", "context"):
        if body.get(name) is not None and not isinstance(body.get(name), dict):
            errors[name] = "must be an object"
    ttl = body.get("ttl", 300)
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 30 <= ttl <= 3600:
        errors["ttl"] = "must be an integer between 30 and 3600"
    if errors:
        return None, errors
    clean = {
        "action": action,
        "resource": resource,
        "scope": dict(body.get("scope") or {}),
        "context": dict(body.get("context") or {}),
        "ttl": ttl,
    }
    return clean, errors
