"""The token endpoint without I/O: what a client-credentials or refresh request looks like,
how a reply becomes a cache entry, and what a 401/403 probably means.

The client (``_client.py``) only sends what this builds and waits; the property tests
feed ``TokenEndpoint.parse`` arbitrary replies.
"""

import logging
from typing import Any, Dict, Iterator, Mapping, Optional, Sequence, Tuple
from urllib.parse import quote_plus

from .._config import B64_TOKEN, CONTROL_CHARACTERS, OPAQUE_TOKEN, check_text
from .._engine._clock import Clock
from .._engine._plan import Plan
from .._http._models import Request, Response
from .._http._send import RetryPolicy, parse_json, scrub, send_plan
from .._secret import Secret, SecretLike, reveal
from ..exceptions import InvalidResponseError, OculusAPIError, ValidationError
from ._cache import CacheKey, Entry, timing

__all__ = ["DEFAULT_LIFETIME", "MIN_LIFETIME", "TokenEndpoint", "lifetime", "normalise_scope", "token_plan"]

log = logging.getLogger("oculus_lite.client")

#: The service's default token lifetime, assumed when ``expires_in`` is absent or unusable.
DEFAULT_LIFETIME = 600.0
#: The shortest lifetime a granted token is kept for, whatever ``expires_in`` says (see lifetime).
MIN_LIFETIME = 1.0
_MAX_LIFETIME = 366 * 86400.0
#: The longest token accepted from the server (as long as the longest JWT ``decode`` reads).
_MAX_TOKEN_LEN = 16 * 1024
_MAX_SCOPE_LEN = 4096
_MAX_SCOPES = 64

HINT_401 = (
    "Likely causes: credentials not loaded (check AGENT_CLIENT_ID / AGENT_CLIENT_SECRET), "
    "the agent is not Active (Suspended or Revoked agents cannot authenticate), the secret was "
    "rotated (rotation invalidates the old secret at once: use the new one), or base_url points "
    "at the wrong server ({base_url})"
)
HINT_403 = (
    "Likely causes: no active policy assigned to this agent grants {scope}, the policy is "
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
    clamped to [1 s, 1 year] so a hostile value cannot overflow the clock arithmetic.

    A server that grants a token with ``expires_in`` of 0, a negative number or a fraction of
    a second is misbehaving. We chose to reuse such a token for ``MIN_LIFETIME`` (1 s) rather
    than to treat the reply as a failed fetch: either way the server is asked at most about
    once a second per scope (never once per ``get_token`` call, a request storm), and callers
    get the token the server granted instead of an error; whether it is still accepted is for
    the resource server to say. ``TokenEndpoint.parse`` logs each such grant as a warning."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return DEFAULT_LIFETIME
    try:
        seconds = float(value)
    except (ValueError, OverflowError):
        return DEFAULT_LIFETIME
    if seconds != seconds:  # NaN
        return DEFAULT_LIFETIME
    return max(MIN_LIFETIME, min(seconds, _MAX_LIFETIME))


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
            asked = (
                "scope {!r}".format(self._scope)
                if self._scope
                else "the scopes of its default grant (none were requested; pass scopes= to choose)"
            )
            return HINT_403.format(scope=asked)
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
        # What every grant carries, form-encoded once: request() costs half of urlencode alone.
        self._task_field = "&task_id=" + quote_plus(task_id) if task_id else ""
        self._credentials = Secret(
            "&client_id=" + quote_plus(client_id) + "&client_secret=" + quote_plus(client_secret)
        )

    def __repr__(self) -> str:
        return "TokenEndpoint({!r}, client_id={!r})".format(self.url, self.client_id)

    def request(
        self, key: CacheKey, refresh_token: Optional[SecretLike] = None
    ) -> Tuple[Request, Sequence[Secret]]:
        """The request for ``key`` (a refresh grant when given a refresh token), and the
        secrets it carries, which the HTTP layer scrubs from anything the server says back."""
        if refresh_token is not None:
            form = "grant_type=refresh_token&refresh_token=" + quote_plus(reveal(refresh_token))
        else:
            form = "grant_type=client_credentials"
            scope = _scope_of(key)
            if scope:  # an empty scope asks for the server's default grant (startup())
                form += "&scope=" + quote_plus(scope)
            if not isinstance(key, str):
                form += "&audience=" + quote_plus(key[1])
            form += self._task_field
        # A confidential client authenticates on every grant (RFC 6749 section 6).
        form += self._credentials.reveal()
        request = Request(
            "POST",
            self.url,
            (
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Accept", "application/json"),
                ("User-Agent", "oculus-lite"),
            ),
            form.encode("ascii"),
            self.timeout,
            # a client-credentials grant may be resent after a reset; a refresh token works once
            resend_safe=refresh_token is None,
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
        """A cache entry from a 2xx reply; deadlines count from when the request was sent.

        Nothing the server says is trusted as is: an access token that is not an RFC 6750
        ``b64token`` (it would be written after "Bearer " in a header), a refresh or service
        token that is not printable ASCII without spaces, or a ``token_type`` other than Bearer
        is an ``InvalidResponseError`` (which never shows the token), and nothing is cached."""
        data = parse_json(response, "token response")
        token = _access_token(data, response.status)
        _check_token_type(data.get("token_type"), response.status, (self._secret,))
        refresh_token = _opaque(data, "refresh_token", response.status)
        service_token = _opaque(data, "sdk_service_token", response.status)
        seconds = lifetime(data.get("expires_in"))
        if seconds == MIN_LIFETIME:
            log.warning(
                "token endpoint granted a token for %r that expires at once or within a second; "
                "reusing it for %g s",
                _scope_of(key),
                MIN_LIFETIME,
            )
        refresh_at, block_at, expires = timing(sent_at, seconds, self.margin)
        # Keep only what is unusual: most entries carry no extra dict at all (memory per token).
        extra: Dict[str, Any] = {}
        granted = data.get("scope")
        if isinstance(granted, str) and " ".join(sorted(set(granted.split()))) != _scope_of(key):
            extra["scope"] = granted
        if service_token is not None:
            extra["sdk_service_token"] = service_token
        return Entry(
            token,
            key,
            refresh_at,
            block_at,
            expires,
            clock.time() + (expires - clock.monotonic()),
            refresh_token,
            extra or None,
        )


def _access_token(data: Mapping[str, Any], status: int) -> str:
    token = data.get("access_token")
    if token is None:
        raise InvalidResponseError(
            "token response has no access_token ({} other field(s))".format(len(data)), status_code=status
        )
    if not isinstance(token, str) or len(token) > _MAX_TOKEN_LEN or not B64_TOKEN.match(token):
        raise InvalidResponseError(
            "token response: the access_token is not a bearer token (RFC 6750: 1 to {} letters, "
            "digits and -._~+/ then optional '='); refused, nothing cached".format(_MAX_TOKEN_LEN),
            status_code=status,
        )
    return token


def _check_token_type(value: object, status: int, secrets: Sequence[SecretLike]) -> None:
    """Absent means Bearer (RFC 6749 makes it required, servers forget); Bearer in any case."""
    if value is None or (isinstance(value, str) and value.lower() == "bearer"):
        return
    if isinstance(value, str):
        shown = scrub(CONTROL_CHARACTERS.sub("", value), secrets)
        named = repr(shown[:40] + ("..." if len(shown) > 40 else ""))
    else:
        named = "of JSON type {}".format(type(value).__name__)
    raise InvalidResponseError(
        "token response: token_type {} is not supported; only Bearer tokens are (refused, "
        "nothing cached)".format(named),
        status_code=status,
    )


def _opaque(data: Mapping[str, Any], name: str, status: int) -> Optional[str]:
    """An optional opaque token from the reply: None when absent or empty."""
    value = data.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > _MAX_TOKEN_LEN or not OPAQUE_TOKEN.match(value):
        raise InvalidResponseError(
            "token response: the {} is not printable ASCII without spaces (at most {} characters); "
            "refused, nothing cached".format(name, _MAX_TOKEN_LEN),
            status_code=status,
        )
    return value


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
