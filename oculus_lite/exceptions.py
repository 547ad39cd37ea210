"""One error hierarchy for the token client, the permission client and the verifier.

    OculusError  (alias AgentOTPError)          .message .code .details .retryable
    ├── ConfigurationError (ValueError)         bad arguments/environment at construction
    │   └── ProjectFileError                    oculus.json/.toml/.yaml missing or malformed; .path
    ├── ClientClosedError (RuntimeError)        use after stop()/close()
    ├── NetworkError                            transport failure; retryable
    │   ├── NetworkTimeoutError (TimeoutError)
    │   ├── TLSError                            certificate/handshake failure; not retried
    │   └── ResponseTooLargeError               body over the transport's cap; not retried
    ├── OculusAPIError                          the server said no; .status_code
    │   ├── OculusAuthError                     401/403 from either service
    │   │   ├── AuthenticationError             401
    │   │   ├── ForbiddenError                  403
    │   │   └── EnrollmentError                 an enroll token was refused
    │   ├── ValidationError (ValueError)        400/422, or bad arguments caught before sending
    │   ├── NotFoundError                       404
    │   ├── ConflictError                       409
    │   ├── RateLimitError                      429; .retry_after
    │   ├── ServerError                         5xx; retryable
    │   └── InvalidResponseError                a reply we cannot use (bad JSON, 3xx, missing field)
    │       └── CapabilityMapError              a capability map that does not parse; .path
    ├── TokenRevokedException                   a token's jti is on the revocation list; .jti
    ├── TokenExpiredError                       no valid agent token can be had right now
    ├── PolicyViolationError                    a tool call was denied; .capability .reason
    ├── CredentialError                         no credential loaded for an integration; .integration
    ├── DelegationError                         the server refused a delegation; .reason
    ├── OculusStartupError                      startup() failed at a step; .step .cause
    ├── ApprovalTimeoutError (TimeoutError)     a human did not decide in time
    └── InvalidTokenError                       JWT verification failed; .reason
        ├── ExpiredTokenError, ImmatureTokenError, InvalidAudienceError,
        ├── InvalidIssuerError, InvalidSignatureError, RevokedTokenError,
        ├── MalformedTokenError, KeyNotFoundError, UnsupportedAlgorithmError

Messages never carry secrets: they are built from status codes, error codes and
server messages that the HTTP layer has scrubbed of every secret it sent, and the
governance errors name capabilities, integrations and steps, never values.

The classes the official SDK defines keep its constructor signatures, positional
order included (``PolicyViolationError(capability, reason, granted_capabilities,
policy_id)``, ``TokenRevokedException(jti, message)``, ``OculusAPIError(message,
status_code, details)``...), so code written against ``oculus_sdk`` raises and
catches them unchanged.
"""

from typing import AbstractSet, Any, Iterable, Mapping, Optional

__all__ = [
    "AgentOTPError",
    "ApprovalTimeoutError",
    "AuthenticationError",
    "CapabilityMapError",
    "ClientClosedError",
    "ConfigurationError",
    "ConflictError",
    "CredentialError",
    "DelegationError",
    "EnrollmentError",
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
    "OculusStartupError",
    "PolicyViolationError",
    "ProjectFileError",
    "RateLimitError",
    "ResponseTooLargeError",
    "RevokedTokenError",
    "ServerError",
    "TLSError",
    "TokenExpiredError",
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
    """The server answered with an error status.

    ``OculusAPIError(message, status_code=None, details=None)`` as in the official SDK;
    ``code=`` is keyword-only.
    """

    def __init__(
        self,
        message: str,
        status_code: Optional[int] = None,
        details: Optional[Mapping[str, Any]] = None,
        *,
        code: Optional[str] = None,
    ) -> None:
        super().__init__(message, code=code, details=details, status_code=status_code)


class OculusAuthError(OculusAPIError):
    """401 or 403: credentials, agent status or policy; the message carries the likely cause."""


class AuthenticationError(OculusAuthError):
    """401: the credentials or api key were not accepted."""


class ForbiddenError(OculusAuthError):
    """403: authenticated, but not allowed to do this."""


class EnrollmentError(OculusAuthError):
    """An enroll token was refused (unknown, already used or expired); ``code`` says which."""


class ValidationError(OculusAPIError, ValueError):
    """400/422 from the server, or an argument rejected before anything was sent."""


class NotFoundError(OculusAPIError):
    """404: no such resource."""


class ConflictError(OculusAPIError):
    """409: the resource is not in a state that allows this (e.g. already decided)."""


class RateLimitError(OculusAPIError):
    """429: slow down; retry_after is the server's Retry-After in seconds when it sent one."""

    retryable = True

    def __init__(
        self,
        message: str,
        status_code: Optional[int] = None,
        details: Optional[Mapping[str, Any]] = None,
        *,
        retry_after: Optional[float] = None,
        code: Optional[str] = None,
    ) -> None:
        super().__init__(message, status_code, details, code=code)
        self.retry_after = retry_after


class ServerError(OculusAPIError):
    """5xx: the server failed; retried automatically."""

    retryable = True


class InvalidResponseError(OculusAPIError):
    """The server's reply could not be used: not JSON, a missing field, or a redirect."""


class CapabilityMapError(InvalidResponseError):
    """A capability map that does not have the wire shape; ``path`` names the bad part
    (``integrations.stripe.deny_always[2]``). The previous map stays in force."""

    def __init__(self, message: str, *, path: str = "", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.path = path


class ProjectFileError(ConfigurationError):
    """The project file (oculus.json, oculus.toml, oculus.yaml) is missing or malformed."""

    def __init__(self, message: str, *, path: Optional[str] = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.path = path


class TokenRevokedException(OculusError):
    """A token's jti is on the revocation list: revocation is intentional, alert your team.

    Both forms work: the official ``TokenRevokedException(jti, message=None)`` and
    ``TokenRevokedException(message, jti=...)`` (a ``jti`` keyword makes the first positional
    argument the message).
    """

    def __init__(
        self,
        jti_or_message: Optional[str] = None,
        message: Optional[str] = None,
        /,
        *,
        jti: Optional[str] = None,
        **kwargs: Any,
    ) -> None:
        keyword_message = kwargs.pop("message", None)
        if jti is None:  # official form: (jti, message=None)
            jti, text = jti_or_message, message or keyword_message
        else:  # today's form: (message, *, jti=...)
            text = jti_or_message or message or keyword_message
        if not text:
            text = "token {!r} has been revoked".format(jti) if jti else "the token has been revoked"
        super().__init__(text, **kwargs)
        self.jti = jti


class TokenExpiredError(OculusError):
    """The agent token has expired and no valid one could be obtained (renewal keeps failing,
    or the token cannot be renewed). Renewal is automatic: the call can simply be retried."""

    def __init__(self, message: Optional[str] = None, **kwargs: Any) -> None:
        super().__init__(
            message or "the agent token has expired and no valid token could be obtained", **kwargs
        )


class PolicyViolationError(OculusError):
    """A capability was denied. ``reason`` is the evaluator's code (``capability_not_in_scope``,
    ``amount_limit_exceeded``...), also in ``code``; ``granted_capabilities`` is the token's scope
    set. The message is the official one: ``Capability 'x' denied: reason (policy: id)``."""

    def __init__(
        self,
        capability: str,
        reason: str,
        granted_capabilities: Optional[Iterable[str]] = None,
        policy_id: Optional[str] = None,
        *,
        detail: Optional[str] = None,
    ) -> None:
        text = "Capability {!r} denied: {}".format(capability, reason)
        if policy_id:
            text += " (policy: {})".format(policy_id)
        if detail:
            text += ": " + detail
        super().__init__(text, code=reason)
        self.capability = capability
        self.reason = reason
        self.granted_capabilities: AbstractSet[str] = frozenset(granted_capabilities or ())
        self.policy_id = policy_id
        self.detail = detail


class CredentialError(OculusError):
    """No credential is loaded for an integration (or for one credential type of it)."""

    def __init__(
        self, integration: str, message: Optional[str] = None, *, credential_type: Optional[str] = None
    ) -> None:
        if not message:
            if credential_type is not None:
                message = "no credential of type {!r} is loaded for integration {!r}".format(
                    credential_type, integration
                )
            else:
                message = "no credential is loaded for integration {!r}".format(integration)
            message += (
                "; an administrator registers it in the control plane, and the client loads it at "
                "startup and on every sync"
            )
        super().__init__(message)
        self.integration = integration
        self.credential_type = credential_type


class DelegationError(OculusError):
    """The server refused a delegation; ``reason`` is its code (CAPABILITY_ESCALATION,
    DELEGATION_DEPTH_EXCEEDED, CONSTRAINT_ESCALATION...)."""

    def __init__(self, reason: str, message: Optional[str] = None, **kwargs: Any) -> None:
        kwargs.setdefault("code", reason)
        super().__init__(message or "Delegation failed: {}".format(reason), **kwargs)
        self.reason = reason


class OculusStartupError(OculusError):
    """``startup()`` failed at ``step`` (fetch_token, verify_token, fetch_jwks,
    fetch_capability_map, fetch_revocation_list, fetch_credentials...); ``cause`` is the error.

    The message names the step and the cause's type; it carries the cause's text only when the
    cause is an ``OculusError`` (whose messages are scrubbed of secrets).
    """

    def __init__(
        self, step: str, message: Optional[str] = None, cause: Optional[BaseException] = None
    ) -> None:
        if not message:
            message = "startup failed at step {!r}".format(step)
            if cause is not None:
                if isinstance(cause, OculusError):
                    message += ": {}".format(cause.message)
                else:
                    message += ": {}".format(type(cause).__name__)
        super().__init__(message)
        self.step = step
        self.cause = cause
        if cause is not None:
            self.__cause__ = cause


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
