"""One error hierarchy for the token client, the permission client and the verifier.

    OculusError  (alias AgentOTPError)          .message .code .details .retryable
    ├── ConfigurationError (ValueError)         bad arguments/environment at construction
    ├── ClientClosedError (RuntimeError)        use after stop()/close()
    ├── NetworkError                            transport failure; retryable
    │   ├── NetworkTimeoutError (TimeoutError)
    │   ├── TLSError                            certificate/handshake failure; not retried
    │   └── ResponseTooLargeError               body over the transport's cap; not retried
    ├── OculusAPIError                          the server said no; .status_code
    │   ├── OculusAuthError                     401/403 from either service
    │   │   ├── AuthenticationError             401
    │   │   └── ForbiddenError                  403
    │   ├── ValidationError (ValueError)        400/422, or bad arguments caught before sending
    │   ├── NotFoundError                       404
    │   ├── ConflictError                       409
    │   ├── RateLimitError                      429; .retry_after
    │   ├── ServerError                         5xx; retryable
    │   └── InvalidResponseError                a reply we cannot use (bad JSON, 3xx, missing field)
    ├── TokenRevokedException                   a cached token's jti is on the revocation list
    ├── ApprovalTimeoutError (TimeoutError)     a human did not decide in time
    └── InvalidTokenError                       JWT verification failed; .reason
        ├── ExpiredTokenError, ImmatureTokenError, InvalidAudienceError,
        ├── InvalidIssuerError, InvalidSignatureError, RevokedTokenError,
        ├── MalformedTokenError, KeyNotFoundError, UnsupportedAlgorithmError

Messages never carry secrets: they are built from status codes, error codes and
server messages that the HTTP layer has scrubbed of every secret it sent.
"""

from typing import Any, Mapping, Optional

__all__ = [
    "AgentOTPError",
    "ApprovalTimeoutError",
    "AuthenticationError",
    "ClientClosedError",
    "ConfigurationError",
    "ConflictError",
    "ExpiredTokenError",
    "ForbiddenError",
    "ImmatureTokenError",
    "InvalidAudienceError",
    "InvalidIssuerError",
    "InvalidResponseError",
    "InvalidSignatureError",
    "InvalidTokenError",
    "KeyNotFoundError",
    "MalformedTokenError",
    "NetworkError",
    "NetworkTimeoutError",
    "NotFoundError",
    "OculusAPIError",
    "OculusAuthError",
    "OculusError",
    "RateLimitError",
    "ResponseTooLargeError",
    "RevokedTokenError",
    "ServerError",
    "TLSError",
    "TokenRevokedException",
    "UnsupportedAlgorithmError",
    "ValidationError",
]


class OculusError(Exception):
    """Root of every error oculus_lite raises."""

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        code: Optional[str] = None,
        details: Optional[Mapping[str, Any]] = None,
        status_code: Optional[int] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.details: Mapping[str, Any] = dict(details) if details else {}
        self.status_code = status_code

    def __repr__(self) -> str:
        return "{}({!r}, code={!r}, status_code={!r})".format(
            type(self).__name__, self.message, self.code, self.status_code
        )


#: The Agent OTP SDK's root error is the same class: one hierarchy for both APIs.
AgentOTPError = OculusError


class ConfigurationError(OculusError, ValueError):
    """Arguments or environment cannot make a working client; the message says what to set."""


class ClientClosedError(OculusError, RuntimeError):
    """The client was used after stop()/close()."""


class NetworkError(OculusError):
    """The request did not complete: connection refused or reset, timeout, TLS, truncated reply."""

    retryable = True


class NetworkTimeoutError(NetworkError, TimeoutError):
    """The server did not answer within the timeout."""


class TLSError(NetworkError):
    """TLS handshake or certificate verification failed; retrying would not help."""

    retryable = False


class ResponseTooLargeError(NetworkError):
    """The response body exceeded the transport's size cap."""

    retryable = False


class OculusAPIError(OculusError):
    """The server answered with an error status."""


class OculusAuthError(OculusAPIError):
    """401 or 403: credentials, agent status or policy; the message carries the likely cause."""


class AuthenticationError(OculusAuthError):
    """401: the credentials or api key were not accepted."""


class ForbiddenError(OculusAuthError):
    """403: authenticated, but not allowed to do this."""


class ValidationError(OculusAPIError, ValueError):
    """400/422 from the server, or an argument rejected before anything was sent."""


class NotFoundError(OculusAPIError):
    """404: no such resource."""


class ConflictError(OculusAPIError):
    """409: the resource is not in a state that allows this (e.g. already decided)."""


class RateLimitError(OculusAPIError):
    """429: slow down; retry_after is the server's Retry-After in seconds when it sent one."""

    retryable = True

    def __init__(self, message: str, *, retry_after: Optional[float] = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ServerError(OculusAPIError):
    """5xx: the server failed; retried automatically."""

    retryable = True


class InvalidResponseError(OculusAPIError):
    """The server's reply could not be used: not JSON, a missing field, or a redirect."""


class TokenRevokedException(OculusError):
    """A cached token's jti is on the revocation list: revocation is intentional, alert your team."""

    def __init__(self, message: str, *, jti: Optional[str] = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.jti = jti


class ApprovalTimeoutError(OculusError, TimeoutError):
    """Waiting for a human decision ran out of time; the request may still be decided later."""

    def __init__(self, message: str, *, permission_id: Optional[str] = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.permission_id = permission_id


class InvalidTokenError(OculusError):
    """A JWT failed verification; reason says what is wrong."""

    def __init__(self, reason: str, **kwargs: Any) -> None:
        super().__init__(reason, **kwargs)
        self.reason = reason


class MalformedTokenError(InvalidTokenError):
    """Not a well-formed JWS compact token (segments, base64url, JSON, size)."""


class UnsupportedAlgorithmError(InvalidTokenError):
    """The token's alg is refused or not implemented (none, HMAC, EC, PSS, EdDSA...)."""


class InvalidSignatureError(InvalidTokenError):
    """The signature does not verify against the key."""


class KeyNotFoundError(InvalidTokenError):
    """No usable key with the token's kid, even after refetching the key set."""


class ExpiredTokenError(InvalidTokenError):
    """exp is in the past (beyond leeway)."""


class ImmatureTokenError(InvalidTokenError):
    """nbf or iat is in the future (beyond leeway)."""


class InvalidAudienceError(InvalidTokenError):
    """aud does not contain the expected audience."""


class InvalidIssuerError(InvalidTokenError):
    """iss is not the expected issuer."""


class RevokedTokenError(InvalidTokenError):
    """The token's jti is on the revocation list."""
