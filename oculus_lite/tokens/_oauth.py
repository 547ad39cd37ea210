"""The token endpoint without I/O: what a client-credentials or refresh request looks like,
how a reply becomes a cache entry, and what a 401/403 probably means.

The client (``_client.py``) only sends what this builds and waits; the property tests
feed ``TokenEndpoint.parse`` arbitrary replies.
"""

import logging
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple
from urllib.parse import urlencode

from .._config import check_text
from .._engine._clock import Clock
from .._engine._plan import Plan
from .._http._models import Request, Response
from .._http._send import RetryPolicy, parse_json, send_plan
from .._secret import Secret, SecretLike, reveal
from ..exceptions import OculusAPIError, ValidationError
from ._cache import CacheKey, Entry, timing

__all__ = ["DEFAULT_LIFETIME", "TokenEndpoint", "lifetime", "normalise_scope", "token_plan"]

log = logging.getLogger("oculus_lite.client")

#: The service's default token lifetime, assumed when ``expires_in`` is absent or unusable.
DEFAULT_LIFETIME = 600.0
_MAX_LIFETIME = 366 * 86400.0
_MAX_SCOPE_LEN = 4096
_MAX_SCOPES = 64

HINT_401 = (
    "Likely causes: credentials not loaded (check AGENT_CLIENT_ID / AGENT_CLIENT_SECRET), "
    "the agent is not Active (Suspended or Revoked agents cannot authenticate), the secret was "
    "rotated (rotation invalidates the old secret at once: use the new one), or base_url points "
    "at the wrong server ({base_url})"
)
HINT_403 = (
    "Likely causes: no active policy assigned to this agent grants scope {scope!r}, the policy is "
    "inactive or in Shadow Mode (evaluated but never granting), or the scope is malformed "
    "(scopes are case-sensitive, colon-separated, e.g. 'stripe:customer:read'); policy changes "
    "take up to 60 s to apply"
)


def normalise_scope(scope: object) -> str:
    """Validated, de-duplicated, sorted, single-space scope string (the cache key's scope)."""
    check_text(scope, "scope", max_len=_MAX_SCOPE_LEN)
    assert isinstance(scope, str)
    parts = sorted(set(scope.split(" ")) - {""})
    if len(parts) > _MAX_SCOPES:
        raise ValidationError("scope lists {} scopes; the limit is {}".format(len(parts), _MAX_SCOPES))
    return " ".join(parts)


def lifetime(value: object) -> float:
    """Seconds from ``expires_in``: absent or unusable means the service default (600 s);
    clamped to [0, 1 year] so a hostile value cannot overflow the clock arithmetic."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return DEFAULT_LIFETIME
    try:
        seconds = float(value)
    except (ValueError, OverflowError):
        return DEFAULT_LIFETIME
    if seconds != seconds:  # NaN
        return DEFAULT_LIFETIME
    return max(0.0, min(seconds, _MAX_LIFETIME))


def _scope_of(key: CacheKey) -> str:
    return key if isinstance(key, str) else key[0]


class _Hints(Mapping[int, str]):
    """The 401/403 hints for one request, written out only if an error needs them."""

    def __init__(self, base_url: str, scope: str) -> None:
        self._base_url = base_url
        self._scope = scope

    def __getitem__(self, status: int) -> str:
        if status == 401:
            return HINT_401.format(base_url=self._base_url)
        if status == 403:
            return HINT_403.format(scope=self._scope)
        raise KeyError(status)

    def __iter__(self) -> Iterator[int]:
        return iter((401, 403))

    def __len__(self) -> int:
        return 2


class TokenEndpoint:
    """One agent's view of ``POST /oauth/token``. ``repr`` never shows the secret."""

    def __init__(
        self,
        base_url: str,
        client_id: str,
        client_secret: str,
        *,
        timeout: float,
        margin: float,
        task_id: Optional[str] = None,
    ) -> None:
        self.base_url = base_url
        self.url = base_url + "/oauth/token"
        self.client_id = client_id
        self._secret = Secret(client_secret)
        self.timeout = timeout
        self.margin = margin
        self.task_id = task_id

    def __repr__(self) -> str:
        return "TokenEndpoint({!r}, client_id={!r})".format(self.url, self.client_id)

    def request(
        self, key: CacheKey, refresh_token: Optional[SecretLike] = None
    ) -> Tuple[Request, Sequence[Secret]]:
        """The request for ``key`` (a refresh grant when given a refresh token), and the
        secrets it carries, which the HTTP layer scrubs from anything the server says back."""
        form: List[Tuple[str, str]]
        if refresh_token is not None:
            form = [("grant_type", "refresh_token"), ("refresh_token", reveal(refresh_token))]
        else:
            form = [("grant_type", "client_credentials"), ("scope", _scope_of(key))]
            if not isinstance(key, str):
                form.append(("audience", key[1]))
            if self.task_id:
                form.append(("task_id", self.task_id))
        # A confidential client authenticates on every grant (RFC 6749 section 6).
        form += [("client_id", self.client_id), ("client_secret", self._secret.reveal())]
        request = Request(
            "POST",
            self.url,
            (
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Accept", "application/json"),
                ("User-Agent", "oculus-lite"),
            ),
            urlencode(form).encode("ascii"),
            self.timeout,
        )
        secrets = (self._secret,) if refresh_token is None else (self._secret, Secret(reveal(refresh_token)))
        return request, secrets

    def hints(self, key: CacheKey) -> "_Hints":
        """The troubleshooting guide's likely causes, appended to 401/403 messages."""
        return _Hints(self.base_url, _scope_of(key))

    @staticmethod
    def refresh_refused(exc: OculusAPIError) -> bool:
        """A refused refresh token (used, expired, rotated away) means: get a new grant instead."""
        return exc.status_code in (400, 401)

    def parse(self, key: CacheKey, response: Response, sent_at: float, clock: Clock) -> Entry:
        """A cache entry from a 2xx reply; deadlines count from when the request was sent."""
        data = parse_json(response, "token response")
        token = data.get("access_token")
        if not isinstance(token, str) or not token:
            raise OculusAPIError(
                "token response has no access_token (fields: {})".format(
                    ", ".join(sorted(data))[:200] or "none"
                ),
                status_code=response.status,
            )
        refresh_at, block_at, expires = timing(sent_at, lifetime(data.get("expires_in")), self.margin)
        # Keep only what is unusual: most entries carry no extra dict at all (memory per token).
        extra: Dict[str, Any] = {}
        granted = data.get("scope")
        if isinstance(granted, str) and " ".join(sorted(set(granted.split()))) != _scope_of(key):
            extra["scope"] = granted
        token_type = data.get("token_type")
        if isinstance(token_type, str) and token_type.lower() != "bearer":
            extra["token_type"] = token_type
        service_token = data.get("sdk_service_token")
        if isinstance(service_token, str) and service_token:
            extra["sdk_service_token"] = service_token
        refresh_token = data.get("refresh_token")
        return Entry(
            token,
            key,
            refresh_at,
            block_at,
            expires,
            clock.time() + (expires - clock.monotonic()),
            refresh_token if isinstance(refresh_token, str) and refresh_token else None,
            extra or None,
        )


def token_plan(
    endpoint: TokenEndpoint,
    key: CacheKey,
    refresh_token: Optional[Secret],
    *,
    deadline: float,
    policy: RetryPolicy,
    clock: Clock,
) -> Plan[Entry]:
    """Get a token for ``key``: the refresh grant when we hold a refresh token, falling back to
    client credentials when the server refuses it (used, expired or rotated away)."""
    while True:
        request, secrets = endpoint.request(key, refresh_token)
        sent_at = clock.monotonic()
        try:
            response = yield from send_plan(
                request,
                policy=policy,
                deadline=deadline,
                clock=clock,
                what="token request",
                secrets=secrets,
                hints=endpoint.hints(key),
            )
        except OculusAPIError as exc:
            if refresh_token is None or not endpoint.refresh_refused(exc):
                raise
            log.info("refresh token refused (%s); falling back to client credentials", exc.code)
            refresh_token = None
            continue
        return endpoint.parse(key, response, sent_at, clock)
