"""Delegation and enrollment: a parent hands a child agent narrower rights, a new agent trades a
one-time enroll token for its credentials.

``delegate`` checks locally what it can (capabilities within the parent's scope, a ttl within
the parent token's remaining life, constraints no looser than the parent's: the same codes the
server uses), then asks ``POST /oauth/delegate`` with the parent's current token. A client
built by ``from_delegation_token`` holds only that token: it never reads credentials from the
environment, verifies the token before trusting a claim, and when the token expires (no
leeway) raises ``TokenExpiredError`` unless the parent supplied a ``renew`` callback.
"""

import datetime as _dt
import json
import os
import stat
import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union
from urllib.parse import urlencode

from .._config import B64_TOKEN, check_text
from .._engine._plan import Call, Plan
from .._http._models import Request
from .._http._send import RetryPolicy, parse_json, send_plan
from .._secret import Private, Secret
from ..exceptions import (
    ConfigurationError,
    DelegationError,
    EnrollmentError,
    InvalidResponseError,
    OculusAPIError,
    TokenExpiredError,
    ValidationError,
)
from ..tokens._cache import CacheKey, Entry, timing
from ._tightening import ConstraintEscalation, tighten

if TYPE_CHECKING:  # pragma: no cover
    from ..tokens._client import Client
    from ..verify._verifier import JwksVerifier
    from ._state import AgentState

__all__ = ["DelegatedSource", "DelegatedToken", "delegate_plan", "enroll_plan", "save_credentials"]

_POLICY = RetryPolicy(retries=1)
#: Renew: the parent's callback, returning a new delegated token (a ``str``).
Renew = Callable[[], Union[str, Any]]


@dataclass(frozen=True, eq=False, repr=False)
class DelegatedToken(str):
    """A delegated access token: a ``str`` (so ``f"Bearer {token}"``, headers and ``==`` work as
    with the official SDK's plain string) that also knows its expiry, jti, capabilities and
    delegation depth. ``repr`` never shows the token."""

    token: str
    expires_at: _dt.datetime
    jti: Optional[str]
    capabilities: Tuple[str, ...]
    depth: int

    def __new__(
        cls,
        token: str,
        expires_at: _dt.datetime,
        jti: Optional[str],
        capabilities: Tuple[str, ...],
        depth: int,
    ) -> "DelegatedToken":
        return str.__new__(cls, token)

    def __repr__(self) -> str:
        return "DelegatedToken(jti={!r}, capabilities={!r}, depth={}, expires_at={})".format(
            self.jti, self.capabilities, self.depth, self.expires_at.isoformat()
        )

    def __reduce__(self) -> Tuple[Any, ...]:
        return (DelegatedToken, (str(self), self.expires_at, self.jti, self.capabilities, self.depth))


def _thaw(value: Any) -> Any:
    """Frozen state (mapping proxies, tuples) back into JSON-shaped dicts and lists."""
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_thaw(v) for v in value]
    return value


def _check_request(
    child_agent_id: object, capabilities: object, task_id: object, ttl_seconds: object, constraints: object
) -> Tuple[str, List[str], str, int, Optional[Dict[str, Any]]]:
    child = check_text(child_agent_id, "child_agent_id", max_len=512)
    if isinstance(capabilities, str) or not isinstance(capabilities, Sequence) or not capabilities:
        raise ValidationError("capabilities must be a non-empty list of capability names")
    caps = [check_text(c, "each capability", max_len=256) for c in capabilities]
    task = check_text(task_id, "task_id", max_len=512)
    if isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, int):
        raise ValidationError("ttl_seconds must be an int number of seconds")
    if constraints is not None and not isinstance(constraints, Mapping):
        raise ValidationError("constraints must be an object (a dict) or None")
    return child, caps, task, ttl_seconds, (dict(constraints) if constraints else None)


def _refused(code: str, detail: str) -> DelegationError:
    return DelegationError(code, "delegation refused: {}: {}".format(code, detail))


def delegate_plan(
    client: "Client",
    child_agent_id: str,
    capabilities: Sequence[str],
    task_id: str,
    ttl_seconds: int,
    constraints: Optional[Mapping[str, Any]],
) -> Plan[DelegatedToken]:
    child, caps, task, ttl, extra = _check_request(
        child_agent_id, capabilities, task_id, ttl_seconds, constraints
    )
    runtime = client._runtime()
    state: "AgentState" = yield from runtime.state_plan(client)
    missing = sorted(set(caps) - state.scopes)
    if missing:
        raise _refused(
            "CAPABILITY_ESCALATION",
            "cannot delegate {}: not in this agent's scope".format(", ".join(missing)),
        )
    if ttl <= 0:
        raise _refused("INVALID_TTL", "ttl_seconds must be positive")
    remaining = (state.expires_at or 0.0) - client._clock.time()
    if ttl > remaining:
        detail = "ttl_seconds {} outlives this agent's token, which expires in {:.0f} s".format(
            ttl, max(0.0, remaining)
        )
        raise _refused("TTL_EXCEEDS_PARENT", detail)
    try:
        tighten(_thaw(state.constraints), extra)
    except ConstraintEscalation as exc:
        raise _refused("CONSTRAINT_ESCALATION", str(exc)) from None
    except ValueError as exc:
        raise _refused("INVALID_CONSTRAINTS", str(exc)) from None
    entry = runtime.current[1]
    assert entry is not None  # state_plan published it
    body: Dict[str, Any] = {
        "child_agent_id": child,
        "capabilities": caps,
        "task_id": task,
        "ttl_seconds": ttl,
    }
    if extra:
        body["additional_constraints"] = extra
    parent = Secret(entry.token)
    request = Request(
        "POST",
        client.base_url + "/oauth/delegate",
        (
            ("Content-Type", "application/json"),
            ("Accept", "application/json"),
            ("Authorization", "Bearer " + parent.reveal()),
        ),
        json.dumps(body, separators=(",", ":")).encode("utf-8"),
        client._timeout,
    )
    try:
        response = yield from send_plan(
            request,
            policy=_POLICY,
            deadline=client._now() + client._timeout,
            clock=client._clock,
            what="delegation",
            secrets=(parent,),
        )
    except OculusAPIError as exc:  # both error-body shapes, typed by the one mapping
        code = exc.code or "DELEGATION_FAILED"
        raise DelegationError(
            code, "delegation refused: {}".format(exc.message), status_code=exc.status_code
        ) from exc
    data = parse_json(response, "delegation response")
    token = data.get("access_token")
    if not isinstance(token, str) or not B64_TOKEN.match(token):
        raise InvalidResponseError("delegation response: no usable access_token", status_code=response.status)
    claims = yield from client._verifier()._verify_plan(token)
    agent = claims.get("agent") if isinstance(claims.get("agent"), Mapping) else {}
    depth = agent.get("delegation_depth", state.delegation_depth + 1) if isinstance(agent, Mapping) else 0
    exp = claims.get("exp")
    return DelegatedToken(
        token,
        _dt.datetime.fromtimestamp(float(exp) if isinstance(exp, (int, float)) else 0.0, _dt.timezone.utc),
        claims.get("jti") if isinstance(claims.get("jti"), str) else None,
        tuple(caps),
        depth if isinstance(depth, int) and not isinstance(depth, bool) else state.delegation_depth + 1,
    )


class DelegatedSource:
    """Where a delegated client's token comes from: the token it was built with, then the
    parent's ``renew`` callback (if any). Never the token endpoint, never the environment."""

    def __init__(self, token: str, key: CacheKey, service_token: str, renew: Optional[Renew]) -> None:
        self._token = Secret(token)
        self._key = key
        self._service_token = service_token
        self._renew = renew

    def fetch_plan(self, client: "Client", key: CacheKey) -> Plan[Entry]:
        if key != self._key:
            raise ConfigurationError(
                "a client built from a delegation token holds only that token; it cannot get "
                "tokens for other scopes (no credentials are read from the environment)"
            )
        verifier: "JwksVerifier" = client._verifier()
        token = self._token.reveal()
        if self._renew is not None and self._expired(client, token):
            fresh = yield Call(self._renew)
            if not isinstance(fresh, str) or not B64_TOKEN.match(fresh):
                raise TokenExpiredError("the delegated token expired and renew() returned no usable token")
            token = str(fresh)
            self._token = Secret(token)
        try:
            claims = yield from verifier._verify_plan(token)
        except OculusAPIError:
            raise
        except Exception as exc:
            from ..exceptions import ExpiredTokenError

            if isinstance(exc, ExpiredTokenError):
                raise TokenExpiredError(
                    "the delegated token expired; ask the parent agent for a new one (pass renew= to "
                    "from_delegation_token to have it asked automatically)"
                ) from exc
            raise
        now_wall, now_mono = client._clock.time(), client._now()
        lifetime = float(claims["exp"]) - now_wall
        refresh_at, margin_at, expires = timing(now_mono, lifetime, 0.0)
        if self._renew is None:  # nothing to refresh ahead with: usable to the last second
            refresh_at = margin_at = expires
        extra: Dict[str, Any] = {}
        if self._service_token:
            extra["sdk_service_token"] = self._service_token
        scope = claims.get("scope")
        if isinstance(scope, str):
            extra["scope"] = scope
        return Entry(token, key, refresh_at, margin_at, expires, now_wall + lifetime, None, extra or None)

    @staticmethod
    def _expired(client: "Client", token: str) -> bool:
        from ..jwt import decode

        try:
            exp = decode(token).claims.get("exp")
        except Exception:
            return True
        return not isinstance(exp, (int, float)) or client._clock.time() >= float(exp) - 1.0


def enroll_plan(client_timeout: float, base_url: str, enroll_token: str, clock: Any) -> Plan[Tuple[str, str]]:
    """``POST /oauth/enroll``: (client_id, client_secret) for a one-time enroll token."""
    token = Secret(check_text(enroll_token, "enroll_token", max_len=4096))
    request = Request(
        "POST",
        base_url + "/oauth/enroll",
        (("Content-Type", "application/x-www-form-urlencoded"), ("Accept", "application/json")),
        urlencode([("enroll_token", token.reveal())]).encode("ascii"),
        client_timeout,
    )
    try:
        response = yield from send_plan(
            request,
            policy=RetryPolicy(retries=0),  # one-time: a resend could burn it
            deadline=clock.monotonic() + client_timeout,
            clock=clock,
            what="enrollment",
            secrets=(token,),
        )
    except OculusAPIError as exc:
        raise EnrollmentError(
            "enrollment refused: {}".format(exc.message), code=exc.code, status_code=exc.status_code
        ) from exc
    data = Private(parse_json(response, "enrollment response"))
    client_id, secret = data.get("client_id"), data.get("client_secret")
    if not isinstance(client_id, str) or not client_id or not isinstance(secret, str) or not secret:
        raise EnrollmentError(
            "enrollment response has no client_id/client_secret", status_code=response.status
        )
    return client_id, secret


def save_credentials(
    store: Union[str, "os.PathLike[str]", Callable[..., Any]], client_id: str, secret: str
) -> None:
    """Hand the issued credentials to ``store`` before anything else can lose them: a callable
    (called with ``client_id=`` and ``client_secret=``), or a path written atomically, mode
    0600, never through a symlink."""
    if callable(store):
        store(client_id=client_id, client_secret=secret)
        return
    path = os.path.abspath(os.fspath(store))
    directory = os.path.dirname(path)
    if os.path.islink(path):
        raise ConfigurationError("refusing to write credentials through the symlink {}".format(path))
    fd, temp = tempfile.mkstemp(prefix=".oculus-credentials-", dir=directory)
    try:
        os.fchmod(fd, stat.S_IRUSR | stat.S_IWUSR) if hasattr(os, "fchmod") else None
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump({"client_id": client_id, "client_secret": secret}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        if os.path.islink(path):  # planted between the check and now
            raise ConfigurationError("refusing to write credentials through the symlink {}".format(path))
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise
