"""The one place that sends requests: retries, backoff, Retry-After, deadlines, and turning
HTTP error responses into typed exceptions. Every client's flows ``yield from send_plan(...)``.

``send_plan`` returns a response whose status is 2xx or 304 and raises the mapped
``OculusError`` for everything else. Retried: transport failures marked retryable, 5xx and
429, waiting ``Retry-After`` when the server sends one and the deadline allows. Never
retried: other 4xx, TLS failures, oversized bodies, redirects.
"""

import dataclasses
import json
import logging
import random
import time
from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional, Sequence, Tuple

from .._config import CONTROL_CHARACTERS
from .._engine._clock import Clock
from .._engine._plan import Sleep
from .._secret import SecretLike, scrub_text
from ..exceptions import (
    AuthenticationError,
    ConflictError,
    ForbiddenError,
    InvalidResponseError,
    NetworkError,
    NetworkTimeoutError,
    NotFoundError,
    OculusAPIError,
    OculusError,
    RateLimitError,
    ServerError,
    ValidationError,
)
from ._models import Request, Response

if TYPE_CHECKING:  # pragma: no cover
    from .._engine._plan import Plan

__all__ = [
    "RetryPolicy",
    "error_from_response",
    "parse_json",
    "parse_retry_after",
    "scrub",
    "send_plan",
]

log = logging.getLogger("oculus_lite.http")
# A library never prints on its own: records go wherever the application configures logging.
logging.getLogger("oculus_lite").addHandler(logging.NullHandler())

_MAX_MESSAGE = 500


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """How many times and how patiently to retry one logical call."""

    retries: int = 3
    backoff: float = 0.1
    max_backoff: float = 5.0
    max_retry_after: float = 30.0

    def delay(self, attempt: int) -> float:
        """Full-jitter exponential backoff before retry number ``attempt`` (1-based)."""
        ceiling = min(self.max_backoff, self.backoff * (2 ** (attempt - 1)))
        return random.uniform(ceiling / 2, ceiling)


def scrub(text: str, secrets: Sequence[SecretLike]) -> str:
    """Remove every secret we sent, in every encoding we sent it in, from text a server (or a
    library) produced."""
    return scrub_text(text, secrets)


def _scrub_value(value: Any, secrets: Sequence[SecretLike], depth: int = 0) -> Any:
    if isinstance(value, str):
        return scrub(value, secrets)
    if depth > 8:
        return None
    if isinstance(value, Mapping):
        return {scrub(str(k), secrets): _scrub_value(v, secrets, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrub_value(v, secrets, depth + 1) for v in value]
    return value


def parse_json(response: Response, what: str) -> Dict[str, Any]:
    """The body as a JSON object, or InvalidResponseError saying what came instead."""
    try:
        data = json.loads(response.body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # RecursionError: absurd nesting
        raise InvalidResponseError(
            "{}: HTTP {} with a body that is not JSON ({}, {} bytes)".format(
                what,
                response.status,
                response.header("content-type") or "no content-type",
                len(response.body),
            ),
            status_code=response.status,
        ) from exc
    if not isinstance(data, dict):
        raise InvalidResponseError(
            "{}: expected a JSON object, got {}".format(what, type(data).__name__),
            status_code=response.status,
        )
    return data


def parse_retry_after(value: Optional[str]) -> Optional[float]:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date); None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        import email.utils

        try:  # 3.8/3.9 raise TypeError on garbage, later versions ValueError
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - time.time()
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        return None
    return max(0.0, seconds)


def _clean(text: Any) -> Optional[str]:
    if text is None:
        return None
    clean = CONTROL_CHARACTERS.sub(" ", str(text)).strip()
    return clean[:_MAX_MESSAGE] + ("..." if len(clean) > _MAX_MESSAGE else "")


def _error_fields(response: Response) -> Tuple[Optional[str], Optional[str], Dict[str, Any]]:
    """(code, message, details) from any of the error shapes we meet."""
    try:
        data = json.loads(response.body.decode("utf-8")) if response.body else None
    except (UnicodeDecodeError, ValueError, RecursionError):
        data = None
    if not isinstance(data, dict):
        if response.body:
            what = "a non-JSON body ({}, {} bytes)".format(
                response.header("content-type") or "no content-type", len(response.body)
            )
        else:
            what = "an empty body"
        return None, "the server answered with " + what, {}
    err = data.get("error")
    details: Any = None
    if isinstance(err, dict):  # {"error": {"code", "message", "details"}} and the OTP envelope
        code, message, details = err.get("code"), err.get("message"), err.get("details")
    elif isinstance(err, str):  # RFC 6749 section 5.2
        code, message = err, data.get("error_description")
    else:
        code = data.get("code")
        message = data.get("message") or data.get("detail") or data.get("error_description")
    if not isinstance(details, dict):
        details = {"errors": details} if details is not None else {}
    return _clean(code), _clean(message), details


_STATUS_CLASSES = {
    400: ValidationError,
    401: AuthenticationError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
    422: ValidationError,
    429: RateLimitError,
}


def error_from_response(
    response: Response,
    *,
    what: str = "request",
    secrets: Sequence[SecretLike] = (),
    hints: Optional[Mapping[int, str]] = None,
) -> OculusAPIError:
    """The typed error for a response that is not 2xx/304. Secrets we sent are scrubbed."""
    status = response.status
    if 300 <= status < 400:
        location = _clean(response.header("location"))
        return InvalidResponseError(
            "{}: the server answered {} (a redirect), which is never followed so credentials "
            "cannot travel elsewhere; point base_url at the final address".format(what, status),
            status_code=status,
            details={"location": location} if location else None,
        )
    code, message, details = _error_fields(response)
    code = scrub(code, secrets) if code else code
    message = scrub(message or "", secrets)
    details = _scrub_value(details, secrets)
    text = "{} failed: HTTP {}".format(what, status)
    if code:
        text += " " + code
    if message:
        text += ": " + message
    hint = (hints or {}).get(status)
    if hint:
        text += ". " + hint
    cls = _STATUS_CLASSES.get(status)
    kwargs: Dict[str, Any] = {"code": code, "details": details, "status_code": status}
    if cls is RateLimitError:
        return RateLimitError(text, retry_after=parse_retry_after(response.header("retry-after")), **kwargs)
    if cls is not None:
        error: OculusAPIError = cls(text, **kwargs)
        return error
    if status >= 500:
        return ServerError(text, **kwargs)
    return OculusAPIError(text, **kwargs)


def send_plan(
    request: Request,
    *,
    policy: RetryPolicy,
    deadline: float,
    clock: Clock,
    what: str = "request",
    secrets: Sequence[SecretLike] = (),
    hints: Optional[Mapping[int, str]] = None,
) -> "Plan[Response]":
    """Send ``request`` with retries until ``deadline`` (an instant on ``clock.monotonic``)."""
    attempts = _Attempts(request, policy, deadline, clock, what, secrets, hints)
    while True:
        current = attempts.next_request()
        started = clock.monotonic()
        try:
            response = yield current
        except NetworkError as exc:
            _log_attempt(current, attempts.attempt, type(exc).__name__, clock.monotonic() - started)
            delay = attempts.on_error(exc)
        else:
            if not isinstance(response, Response):
                raise InvalidResponseError(
                    "{}: the transport returned {} instead of a Response".format(
                        what, type(response).__name__
                    )
                )
            _log_attempt(current, attempts.attempt, str(response.status), clock.monotonic() - started)
            done, delay = attempts.on_response(response)
            if done is not None:
                return done
        yield Sleep(delay)


def _log_attempt(request: Request, attempt: int, outcome: str, took: float) -> None:
    if log.isEnabledFor(logging.DEBUG):
        log.debug(
            "%s %s -> %s (attempt %d, %.1f ms)",
            request.method,
            request.url.split("?", 1)[0],
            outcome,
            attempt,
            took * 1000.0,
        )


@dataclasses.dataclass
class _Attempts:
    """The retry decisions of one call (no I/O here)."""

    request: Request
    policy: RetryPolicy
    deadline: float
    clock: Clock
    what: str
    secrets: Sequence[SecretLike]
    hints: Optional[Mapping[int, str]]
    attempt: int = 0

    def next_request(self) -> Request:
        self.attempt += 1
        remaining = self.deadline - self.clock.monotonic()
        if remaining <= 0:
            raise NetworkTimeoutError(
                "{}: no time left within the timeout (after {} attempt(s))".format(
                    self.what, self.attempt - 1
                )
            )
        r = self.request
        if r.timeout <= remaining:
            return r
        return dataclasses.replace(r, timeout=remaining)

    def on_response(self, response: Response) -> Tuple[Optional[Response], float]:
        """(response to return, 0) or (None, delay before retrying); raises when giving up."""
        if 200 <= response.status < 300 or response.status == 304:
            return response, 0.0
        error = error_from_response(response, what=self.what, secrets=self.secrets, hints=self.hints)
        if not error.retryable:
            raise error
        # Retry-After is honoured on every retryable status (429 and 5xx alike).
        retry_after = parse_retry_after(response.header("retry-after"))
        if retry_after is not None and retry_after > self.policy.max_retry_after:
            raise error
        return None, self._delay_or_raise(error, retry_after)

    def on_error(self, error: OculusError) -> float:
        if not error.retryable:
            raise error
        return self._delay_or_raise(error, None)

    def _delay_or_raise(self, error: OculusError, retry_after: Optional[float]) -> float:
        if self.attempt > self.policy.retries:
            raise error
        delay = retry_after if retry_after is not None else self.policy.delay(self.attempt)
        if self.clock.monotonic() + delay >= self.deadline:
            raise error
        return delay
