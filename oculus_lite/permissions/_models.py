"""Models and the sans-IO half of the Agent OTP permission flow.

Kept apart from the clients so the sync and async twins share one set of
rules: what a valid request is, what each endpoint's body looks like, and how
a reply becomes a typed object. Nothing here does I/O.
"""

import datetime as _dt
import enum
import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, TypedDict

from .._config import OPAQUE_TOKEN, check_count, check_text
from .._http._models import Response
from .._http._send import error_from_response, parse_json
from .._secret import SecretLike
from ..exceptions import InvalidResponseError, ValidationError

__all__ = [
    "Permission",
    "PermissionRequest",
    "PermissionResponse",
    "PermissionStatus",
    "TokenUsage",
    "TokenVerification",
]

MIN_TTL = 30
MAX_TTL = 3600
MAX_ACTION = 255
MAX_RESOURCE = 255
MAX_TOKEN = 4096
MAX_ID = 128


class PermissionStatus(str, enum.Enum):
    """Where a permission request stands. A ``str``: ``status == "approved"`` works."""

    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"
    USED = "used"

    def __str__(
        self,
    ) -> str:  # the same on 3.8 and 3.12+ (whose Enum.__format__ changed)
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    @property
    def is_final(self) -> bool:
        """True once waiting can stop (everything but ``pending``)."""
        return self is not PermissionStatus.PENDING


@dataclass(frozen=True)
class Permission:
    """A permission request as the service reports it. ``token`` never shows in repr.

    ``token`` is set only while the permission is approved and the token was
    handed to us (auto-approval, or a read of an approved, unused request).
    """

    id: str
    status: PermissionStatus
    token: Optional[str] = field(default=None, repr=False)
    scope: Dict[str, Any] = field(default_factory=dict)
    action: Optional[str] = None
    resource: Optional[str] = None
    context: Dict[str, Any] = field(default_factory=dict)
    reason: Optional[str] = None
    approval_url: Optional[str] = None
    webhook_url: Optional[str] = None
    expires_at: Optional[_dt.datetime] = None
    created_at: Optional[_dt.datetime] = None
    decided_at: Optional[_dt.datetime] = None
    decided_by: Optional[str] = None

    def __hash__(self) -> int:  # the dict fields would make the generated hash fail
        return hash((self.id, self.status, self.token, self.expires_at))

    @property
    def approved(self) -> bool:
        return self.status is PermissionStatus.APPROVED

    def is_expired(self, now: Optional[_dt.datetime] = None) -> bool:
        """True when ``expires_at`` has passed (by the local clock, or ``now``)."""
        if self.expires_at is None:
            return False
        return (now or _dt.datetime.now(_dt.timezone.utc)) >= self.expires_at


#: The name the seed's type hints use for what ``request_permission`` returns.
PermissionResponse = Permission


class _PermissionRequestRequired(TypedDict):
    action: str
    scope: Dict[str, Any]


class PermissionRequest(_PermissionRequestRequired, total=False):
    """Keyword arguments of ``request_permission``: ``client.request_permission(**request)``."""

    resource: str
    context: Dict[str, Any]
    ttl: int
    wait_for_approval: bool
    timeout: float
    poll_interval: float


@dataclass(frozen=True)
class TokenVerification:
    """Result of ``verify_token`` (which does not consume a use)."""

    valid: bool
    scope: Optional[Dict[str, Any]] = None
    uses_remaining: Optional[int] = None
    expires_at: Optional[_dt.datetime] = None
    reason: Optional[str] = None

    def __bool__(self) -> bool:
        return self.valid

    def __hash__(self) -> int:
        return hash((self.valid, self.uses_remaining, self.expires_at, self.reason))


@dataclass(frozen=True)
class TokenUsage:
    """Result of ``use_token``: ``success`` is False when the use was refused (``reason``)."""

    success: bool
    uses_remaining: Optional[int] = None
    reason: Optional[str] = None

    def __bool__(self) -> bool:
        return self.success


# --------------------------------------------------------------------------- validation

#: A permission id, whoever gives it: it becomes a path segment, so no '.', '/', '?', '%' or
#: space can ever reach the URL (the emulator's ids are ``perm_<hex>``, the service's UUIDs).
_ID = re.compile(r"[A-Za-z0-9_-]{1,%d}\Z" % MAX_ID)
_ID_RULE = "1 to {} letters, digits, '_' or '-'".format(MAX_ID)


def check_id(value: object, name: str = "permission_id") -> str:
    """A caller's permission id, refused before anything is sent unless it is a safe segment."""
    if not isinstance(value, str):
        raise ValidationError("{} must be a string, not {}".format(name, type(value).__name__))
    if not _ID.match(value):
        raise ValidationError("{} must be {}, like 'perm_3f2a...'".format(name, _ID_RULE))
    return value


def check_token(value: object, name: str = "token") -> str:
    """A caller's OTP token: what the service hands out, printable ASCII without whitespace."""
    text = check_text(value, name, max_len=MAX_TOKEN)
    if not OPAQUE_TOKEN.match(text):
        raise ValidationError("{} must be printable ASCII without spaces (an 'otp_...' token)".format(name))
    return text


def check_object(value: object, name: str, *, required: bool = False) -> Dict[str, Any]:
    """A JSON-serialisable dict (a copy); None gives {} unless required."""
    if value is None:
        if required:
            raise ValidationError("{} is required: pass a dict, e.g. {{}}".format(name))
        return {}
    if not isinstance(value, Mapping):
        raise ValidationError("{} must be a dict, not {}".format(name, type(value).__name__))
    try:
        text = json.dumps(dict(value), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValidationError(
            "{} must be JSON-serialisable (str keys; str, number, bool, None, list, dict values): {}".format(
                name, type(exc).__name__
            )
        ) from None
    copy: Dict[str, Any] = json.loads(text)
    return copy


def build_request_body(
    action: object, scope: object, resource: object, context: object, ttl: object
) -> Dict[str, Any]:
    """The JSON body of ``POST /permissions/request``; ValidationError names the bad field."""
    body: Dict[str, Any] = {"action": check_text(action, "action", max_len=MAX_ACTION)}
    if resource is not None:
        body["resource"] = check_text(resource, "resource", max_len=MAX_RESOURCE)
    body["scope"] = check_object(scope, "scope")
    body["context"] = check_object(context, "context")
    body["ttl"] = check_count(ttl, "ttl", minimum=MIN_TTL, maximum=MAX_TTL, error=ValidationError)
    return body


# --------------------------------------------------------------------------- parsing

_ISO = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}(?::\d{2})?)(?:\.(\d+))?(Z|[+-]\d{2}:?\d{2})?$",
    re.I,
)


def parse_time(value: object) -> Optional[_dt.datetime]:
    """An aware UTC datetime from ISO 8601 (any fraction, 'Z') or epoch seconds; None if unusable."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        try:
            return _dt.datetime.fromtimestamp(float(value), _dt.timezone.utc)
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(value, str):
        return None
    match = _ISO.match(value.strip())
    if not match:
        return None
    date, clock, fraction, zone = match.groups()
    text = "{}T{}".format(date, clock if clock.count(":") == 2 else clock + ":00")
    if fraction:
        text += "." + (fraction + "000000")[:6]
    if zone is None or zone.upper() == "Z":
        text += "+00:00"
    else:
        text += zone if ":" in zone else zone[:3] + ":" + zone[3:]
    try:
        return _dt.datetime.fromisoformat(text).astimezone(_dt.timezone.utc)
    except ValueError:
        return None


def _get(data: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        if name in data and data[name] is not None:
            return data[name]
    return None


def _opt_str(value: Any) -> Optional[str]:
    return value if isinstance(value, str) else None


def _opt_int(value: Any) -> Optional[int]:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def parse_status(value: Any, what: str) -> PermissionStatus:
    try:
        return PermissionStatus(str(value).lower())
    except ValueError:
        raise InvalidResponseError(
            "{}: unknown permission status {!r}".format(what, str(value)[:40])
        ) from None


def parse_permission(
    data: Mapping[str, Any],
    what: str,
    base: Optional[Permission] = None,
    *,
    expected_id: Optional[str] = None,
) -> Permission:
    """A Permission from one of the endpoint payloads; ``base`` fills fields the reply omits.
    A reply about another permission than ``expected_id`` (or ``base``'s) is refused."""
    if base is not None:
        expected_id = base.id
    pid = _get(data, "id")
    if pid is None:
        pid = expected_id
    if pid is None:
        raise InvalidResponseError("{}: the reply has no permission id".format(what))
    if not isinstance(pid, str) or not _ID.match(pid):
        raise InvalidResponseError(
            "{}: the reply's permission id is not {} (refused: it would become a request path)".format(
                what, _ID_RULE
            )
        )
    if expected_id is not None and pid != expected_id:
        raise InvalidResponseError(
            "{}: the reply is about permission {}, not the {} we asked for".format(what, pid, expected_id)
        )
    raw_status = _get(data, "status")
    if raw_status is None:
        raise InvalidResponseError("{}: the reply has no status".format(what))
    status = parse_status(raw_status, what)
    scope = _get(data, "scope")
    context = _get(data, "context")
    token = _get(data, "token")
    if token is not None and (
        not isinstance(token, str) or len(token) > MAX_TOKEN or not OPAQUE_TOKEN.match(token)
    ):
        raise InvalidResponseError(
            "{}: the reply's token for permission {} is not printable ASCII without spaces (at most "
            "{} characters); refused".format(what, pid, MAX_TOKEN)
        )

    def keep(new: Any, old: Any) -> Any:
        return new if new is not None else old

    b = base
    return Permission(
        id=pid,
        status=status,
        token=token if status is PermissionStatus.APPROVED else None,
        scope=dict(scope) if isinstance(scope, dict) else (dict(b.scope) if b else {}),
        action=keep(_opt_str(_get(data, "action")), b.action if b else None),
        resource=keep(_opt_str(_get(data, "resource")), b.resource if b else None),
        context=dict(context) if isinstance(context, dict) else (dict(b.context) if b else {}),
        reason=_opt_str(_get(data, "reason", "decisionReason", "decision_reason")),
        approval_url=keep(
            _opt_str(_get(data, "approvalUrl", "approval_url")),
            b.approval_url if b else None,
        ),
        webhook_url=keep(
            _opt_str(_get(data, "webhookUrl", "webhook_url")),
            b.webhook_url if b else None,
        ),
        expires_at=keep(
            parse_time(_get(data, "expiresAt", "expires_at")),
            b.expires_at if b else None,
        ),
        created_at=keep(
            parse_time(_get(data, "createdAt", "created_at")),
            b.created_at if b else None,
        ),
        decided_at=parse_time(_get(data, "decidedAt", "decided_at")),
        decided_by=_opt_str(_get(data, "decidedBy", "decided_by")),
    )


def parse_verification(data: Mapping[str, Any], what: str) -> TokenVerification:
    valid = data.get("valid")
    if not isinstance(valid, bool):
        raise InvalidResponseError("{}: the reply has no boolean 'valid'".format(what))
    scope = data.get("scope")
    return TokenVerification(
        valid=valid,
        scope=dict(scope) if isinstance(scope, dict) else None,
        uses_remaining=_opt_int(_get(data, "usesRemaining", "uses_remaining")),
        expires_at=parse_time(_get(data, "expiresAt", "expires_at")),
        reason=_opt_str(data.get("reason")),
    )


def parse_usage(data: Mapping[str, Any], what: str) -> TokenUsage:
    success = data.get("success")
    if not isinstance(success, bool):
        raise InvalidResponseError("{}: the reply has no boolean 'success'".format(what))
    return TokenUsage(
        success=success,
        uses_remaining=_opt_int(_get(data, "usesRemaining", "uses_remaining")),
        reason=_opt_str(data.get("reason")),
    )


_ENVELOPE_KEYS = frozenset(("success", "data", "error"))


def unwrap_envelope(response: Response, what: str, secrets: Sequence[SecretLike]) -> Dict[str, Any]:
    """``data`` of a ``{success, data, error}`` envelope, whatever the HTTP status said: anything
    but ``"success": true`` is the envelope's error (scrubbed of ``secrets``). A bare object,
    with none of the envelope's keys, is taken as the data itself."""
    body = parse_json(response, what)
    if not _ENVELOPE_KEYS.intersection(body):
        return body
    success = body.get("success", _MISSING)
    if success is not True:
        cause = error_from_response(response, what=what, secrets=secrets)
        raise InvalidResponseError(
            "{} (an HTTP {} reply whose envelope says {}, so it is an error)".format(
                cause.message, response.status, _success_text(success)
            ),
            code=cause.code,
            details=cause.details,
            status_code=response.status,
        )
    data = body.get("data")
    if not isinstance(data, dict):
        raise InvalidResponseError(
            "{}: the envelope has no 'data' object".format(what), status_code=response.status
        )
    return data


_MISSING = object()


def _success_text(value: object) -> str:
    if value is _MISSING:
        return "nothing about success"
    if value is None or isinstance(value, bool):
        return "success=" + json.dumps(value)
    return "success is a {}, not true".format(type(value).__name__)


OnPending = Callable[[Permission], Any]
