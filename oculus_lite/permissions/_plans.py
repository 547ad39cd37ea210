"""The half of the permission clients that does no waiting: configuration, client-side
pacing, the polling schedule, request building and reply handling. ``permissions``
adds the sync and async I/O on top, so both twins follow exactly the same rules."""

import collections
import dataclasses
import datetime as _dt
import json
import logging
import threading
import time
from typing import Any, Deque, Dict, Optional, Tuple, Union
from urllib.parse import quote

from .._config import check_text, from_env, validate_base_url
from .._http import _send as _http
from .._http._models import Request
from .._http._registry import resolve_transport
from .._version import __version__
from ..exceptions import (
    ApprovalTimeoutError,
    ClientClosedError,
    ConfigurationError,
    ForbiddenError,
    InvalidResponseError,
    OculusError,
    RateLimitError,
)
from ._models import (
    Permission,
    PermissionStatus,
    check_number,
    parse_permission,
    unwrap_envelope,
)

__all__ = ["DEFAULT_OTP_URL", "MAX_POLL_INTERVAL"]

log = logging.getLogger("oculus_lite.permissions")

DEFAULT_OTP_URL = "https://api.agentotp.com"
MAX_POLL_INTERVAL = 10.0
_BACKOFF = 1.5
_EXPIRED_REASON = "no decision before the request expired"

_HINTS = {
    401: "Check the api key (api_key= or AGENT_OTP_API_KEY) and base_url (AGENT_OTP_URL)",
    403: "The api key is not allowed to do this",
    404: "No such permission for this api key (wrong id, or another agent's request)",
}


class _Pacer:
    """Client-side sliding window: never more than ``limit`` requests per ``window`` seconds."""

    def __init__(self, limit: int, window: float = 60.0) -> None:
        self._limit = limit
        self._window = window
        self._sent: Deque[float] = collections.deque()
        self._lock = threading.Lock()

    def reserve(self, until: float) -> Optional[float]:
        """Book a send slot no later than ``until`` (monotonic); the wait before using it,
        or None (nothing booked) when the next free slot is later than that."""
        with self._lock:
            now = time.monotonic()
            while self._sent and self._sent[0] <= now - self._window:
                self._sent.popleft()
            at = now
            if len(self._sent) >= self._limit:
                at = max(now, self._sent[-self._limit] + self._window)
            if at > until:
                return None
            self._sent.append(at)
            return at - now

    def too_fast(self, what: str) -> RateLimitError:
        with self._lock:
            wait = self._sent[-self._limit] + self._window - time.monotonic() if self._sent else 0.0
        return RateLimitError(
            "{}: not sent, this client already made {} requests in the last {:g} s (the "
            "service's per-agent limit); retry in {:.1f} s".format(what, self._limit, self._window, wait),
            code="client_rate_limit",
            retry_after=max(wait, 0.0),
        )


def survivable(exc: OculusError) -> bool:
    """Failures a wait outlasts: the service may be back before the human decides."""
    return exc.retryable or isinstance(exc, InvalidResponseError)


class _Waiter:
    """The polling schedule (no I/O): back off from ``poll_interval`` up to 10 s, honour
    Retry-After, stop at a final status, at ``expiresAt`` or at the timeout."""

    def __init__(self, permission_id: str, timeout: float, poll_interval: float) -> None:
        self.permission_id = permission_id
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self.interval = poll_interval
        self.cap = max(poll_interval, MAX_POLL_INTERVAL)

    def request_deadline(self, call_deadline: float) -> float:
        # A poll may not outlive the wait by much (a long Retry-After would overrun it).
        return min(call_deadline, max(self.deadline, time.monotonic() + 2.0))

    def after_error(self, exc: OculusError) -> float:
        """Seconds to sleep after a failed poll the wait survives (raises when it must not)."""
        if not survivable(exc):
            raise exc
        log.warning(
            "permission %s: polling failed (%s); still waiting", self.permission_id, type(exc).__name__
        )
        retry_after = exc.retry_after if isinstance(exc, RateLimitError) else None
        try:
            step = self.next_step(None, retry_after)
        except ApprovalTimeoutError as timeout:
            raise timeout from exc
        assert not isinstance(step, Permission)  # only a status ends the wait
        return step

    def next_step(
        self, permission: Optional[Permission], retry_after: Optional[float]
    ) -> Union[Permission, float]:
        """The final permission, or the seconds to sleep before the next poll."""
        delay = self.interval
        if permission is not None:
            if permission.status is PermissionStatus.EXPIRED and not permission.reason:
                return dataclasses.replace(permission, reason=_EXPIRED_REASON)
            if permission.status.is_final:
                return permission
            now = _dt.datetime.now(_dt.timezone.utc)
            if permission.is_expired(now):
                return dataclasses.replace(
                    permission,
                    status=PermissionStatus.EXPIRED,
                    token=None,
                    reason=permission.reason or "no decision before the request expired",
                )
            if permission.expires_at is not None:  # wake up right after expiry
                until = (permission.expires_at - now).total_seconds() + 0.05
                delay = min(delay, max(until, 0.05))
            self.interval = min(self.interval * _BACKOFF, self.cap)
        elif retry_after is not None:
            delay = max(retry_after, 0.0)
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise ApprovalTimeoutError(
                "permission {} is still pending after {:g} s; a human may still decide it "
                "(wait again with wait_for_permission)".format(self.permission_id, self.timeout),
                code="approval_timeout",
                permission_id=self.permission_id,
            )
        return min(delay, remaining)


class _Base:
    """Configuration, request building and reply parsing shared by both clients."""

    def __init__(
        self,
        api_key: Optional[str],
        base_url: Optional[str],
        *,
        timeout: float,
        retries: int,
        debug: bool,
        transport: Any,
        allow_insecure_http: bool,
        max_requests_per_minute: int,
    ) -> None:
        key, _ = from_env(api_key, ("AGENT_OTP_API_KEY",))
        if key is None:
            raise ConfigurationError(
                "no api key: pass api_key='ak_...' or set the AGENT_OTP_API_KEY environment variable"
            )
        self._api_key = check_text(key, "api_key", max_len=4096, error=ConfigurationError)
        url, source = from_env(base_url, ("AGENT_OTP_URL",))
        what = "base_url" if source in (None, "argument") else source or "base_url"
        url = validate_base_url(
            url if url is not None else DEFAULT_OTP_URL,
            allow_insecure_http=allow_insecure_http,
            what=what,
        )
        if url.endswith("/api/v1"):  # tolerate the API root; the base URL is the origin
            url = url[: -len("/api/v1")]
        self._base_url = url
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ConfigurationError("timeout must be a positive number of seconds")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ConfigurationError("retries must be an int >= 0")
        if (
            isinstance(max_requests_per_minute, bool)
            or not isinstance(max_requests_per_minute, int)
            or max_requests_per_minute < 1
        ):
            raise ConfigurationError("max_requests_per_minute must be an int >= 1")
        self._timeout = float(timeout)
        self._policy = _http.RetryPolicy(retries=retries)
        self._transport = resolve_transport(transport)
        self._pacer = _Pacer(max_requests_per_minute)
        self._closed = threading.Event()
        if debug:
            log.setLevel(logging.DEBUG)

    @property
    def base_url(self) -> str:
        return self._base_url

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def __repr__(self) -> str:
        return "{}(base_url={!r}, api_key=<hidden>, closed={})".format(
            type(self).__name__, self._base_url, self.closed
        )

    def _check_open(self) -> None:
        if self._closed.is_set():
            raise ClientClosedError("{} is closed; create a new client".format(type(self).__name__))

    def _build(self, method: str, path: str, payload: Optional[Dict[str, Any]]) -> Request:
        headers = [
            ("Authorization", "Bearer " + self._api_key),
            ("Accept", "application/json"),
            ("User-Agent", "oculus-lite/" + __version__),
        ]
        body = b""
        if payload is not None:
            headers.append(("Content-Type", "application/json"))
            body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        return Request(
            method,
            self._base_url + "/api/v1" + path,
            tuple(headers),
            body,
            self._timeout,
        )

    def _call_deadline(self) -> float:
        return time.monotonic() + self._timeout * (self._policy.retries + 1) + 5.0

    @staticmethod
    def _path(permission_id: str, suffix: str = "") -> str:
        return "/permissions/" + quote(permission_id, safe="") + suffix

    @staticmethod
    def _data(response: Any, what: str) -> Dict[str, Any]:
        return unwrap_envelope(_http.parse_json(response, what), what)

    @staticmethod
    def _requested(data: Dict[str, Any], body: Dict[str, Any], what: str) -> Permission:
        """The Permission a request created; fields the reply omits come from what we sent."""
        permission = parse_permission(data, what)
        permission = dataclasses.replace(
            permission,
            action=permission.action or body["action"],
            resource=permission.resource or body.get("resource"),
            scope=permission.scope or dict(body["scope"]),
            context=permission.context or dict(body["context"]),
        )
        log.debug(
            "permission %s for action %r: %s",
            permission.id,
            permission.action,
            permission.status.value,
        )
        return permission


def _check_wait(timeout: object, poll_interval: object) -> Tuple[float, float]:
    return (
        check_number(timeout, "timeout"),
        check_number(poll_interval, "poll_interval"),
    )


def _final_for_execute(permission: Permission) -> Tuple[str, Dict[str, Any]]:
    if permission.status is not PermissionStatus.APPROVED:
        raise ForbiddenError(
            "permission {} was {}{}".format(
                permission.id,
                permission.status.value,
                ": " + permission.reason if permission.reason else "",
            ),
            code="permission_" + permission.status.value,
        )
    if not permission.token:
        raise InvalidResponseError(
            "permission {} was approved but the server did not hand over its token".format(permission.id)
        )
    return permission.token, dict(permission.scope)
