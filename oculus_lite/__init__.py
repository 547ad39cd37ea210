"""oculus_lite: a zero-dependency, pure-standard-library client for AI-agent identity.

Scoped short-lived tokens (OAuth 2.0 client credentials), one-time permissions
approved by a human (Agent OTP), and RS256 verification for the services that
receive tokens.

    from oculus_lite import Client

    with Client() as client:            # AGENT_CLIENT_ID / AGENT_CLIENT_SECRET / ANTI_AI_URL
        token = client.get_token(scope="db:read")

Public names are loaded on first use, so ``import oculus_lite`` stays cheap.
"""

import importlib
from typing import TYPE_CHECKING, Any, Dict, List

from ._version import __version__

if TYPE_CHECKING:  # pragma: no cover
    from .client import Client, OculusClient
    from .emulator import Emulator
    from .exceptions import (
        AgentOTPError,
        ApprovalTimeoutError,
        AuthenticationError,
        ClientClosedError,
        ConfigurationError,
        ConflictError,
        ExpiredTokenError,
        ForbiddenError,
        ImmatureTokenError,
        InvalidAudienceError,
        InvalidIssuerError,
        InvalidResponseError,
        InvalidSignatureError,
        InvalidTokenError,
        KeyNotFoundError,
        MalformedTokenError,
        NetworkError,
        NetworkTimeoutError,
        NotFoundError,
        OculusAPIError,
        OculusAuthError,
        OculusError,
        RateLimitError,
        ResponseTooLargeError,
        RevokedTokenError,
        ServerError,
        TLSError,
        TokenRevokedException,
        UnsupportedAlgorithmError,
        ValidationError,
    )
    from .jwt import Claims, JwksVerifier
    from .models import Token
    from .permissions import (
        AgentOTPClient,
        AsyncAgentOTPClient,
        AsyncPermissionClient,
        Permission,
        PermissionClient,
        PermissionRequest,
        PermissionResponse,
        PermissionStatus,
        TokenUsage,
        TokenVerification,
    )
    from .transport import (
        AsyncTransport,
        Request,
        Response,
        Transport,
        UrllibTransport,
        register_transport,
    )

_EXCEPTIONS = (
    "AgentOTPError ApprovalTimeoutError AuthenticationError ClientClosedError ConfigurationError "
    "ConflictError ExpiredTokenError ForbiddenError ImmatureTokenError InvalidAudienceError "
    "InvalidIssuerError InvalidResponseError InvalidSignatureError InvalidTokenError "
    "KeyNotFoundError MalformedTokenError NetworkError NetworkTimeoutError NotFoundError "
    "OculusAPIError OculusAuthError OculusError RateLimitError ResponseTooLargeError "
    "RevokedTokenError ServerError TLSError TokenRevokedException UnsupportedAlgorithmError "
    "ValidationError"
).split()

_WHERE: Dict[str, str] = {name: "exceptions" for name in _EXCEPTIONS}
_WHERE.update(
    {
        "Client": "client",
        "OculusClient": "client",
        "Emulator": "emulator",
        "Claims": "jwt",
        "JwksVerifier": "jwt",
        "Token": "models",
        "AgentOTPClient": "permissions",
        "AsyncAgentOTPClient": "permissions",
        "AsyncPermissionClient": "permissions",
        "Permission": "permissions",
        "PermissionClient": "permissions",
        "PermissionRequest": "permissions",
        "PermissionResponse": "permissions",
        "PermissionStatus": "permissions",
        "TokenUsage": "permissions",
        "TokenVerification": "permissions",
        "AsyncTransport": "transport",
        "Request": "transport",
        "Response": "transport",
        "Transport": "transport",
        "UrllibTransport": "transport",
        "register_transport": "transport",
    }
)

__all__ = sorted(list(_WHERE) + ["__version__"])


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError("module 'oculus_lite' has no attribute {!r}".format(name))
    value = getattr(importlib.import_module("." + module, __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(__all__))
