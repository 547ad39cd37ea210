"""oculus_lite: a zero-dependency, pure-standard-library client for AI-agent identity.

Scoped short-lived tokens (OAuth 2.0 client credentials), one-time permissions
approved by a human (Agent OTP), and RS256 verification for the services that
receive tokens.

    from oculus_lite import Client

    with Client() as client:            # AGENT_CLIENT_ID / AGENT_CLIENT_SECRET / ANTI_AI_URL
        token = client.get_token(scope="db:read")

Public names are loaded on first use, so ``import oculus_lite`` stays cheap.
"""

from __future__ import annotations

import importlib

from ._version import __version__ as __version__

# Not `from typing import TYPE_CHECKING`: importing typing costs ~10 ms in a fresh venv, and type
# checkers treat any name TYPE_CHECKING as true.
TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover - explicit re-exports for type checkers
    from typing import Any, Dict, List

    from ._engine import Clock as Clock
    from ._engine import ManualClock as ManualClock
    from ._engine import SystemClock as SystemClock
    from .audit import AuditEmitter as AuditEmitter
    from .audit import AuditStats as AuditStats
    from .context import TaskContext as TaskContext
    from .emulator import Emulator as Emulator
    from .evaluator import CapabilityEvaluator as CapabilityEvaluator
    from .evaluator import EvalResult as EvalResult
    from .exceptions import AgentOTPError as AgentOTPError
    from .exceptions import ApprovalTimeoutError as ApprovalTimeoutError
    from .exceptions import AuthenticationError as AuthenticationError
    from .exceptions import CapabilityMapError as CapabilityMapError
    from .exceptions import ClientClosedError as ClientClosedError
    from .exceptions import ConfigurationError as ConfigurationError
    from .exceptions import ConflictError as ConflictError
    from .exceptions import CredentialError as CredentialError
    from .exceptions import DelegationError as DelegationError
    from .exceptions import EnrollmentError as EnrollmentError
    from .exceptions import ExpiredTokenError as ExpiredTokenError
    from .exceptions import ForbiddenError as ForbiddenError
    from .exceptions import ImmatureTokenError as ImmatureTokenError
    from .exceptions import InvalidAudienceError as InvalidAudienceError
    from .exceptions import InvalidIssuerError as InvalidIssuerError
    from .exceptions import InvalidResponseError as InvalidResponseError
    from .exceptions import InvalidSignatureError as InvalidSignatureError
    from .exceptions import InvalidTokenError as InvalidTokenError
    from .exceptions import KeyNotFoundError as KeyNotFoundError
    from .exceptions import MalformedTokenError as MalformedTokenError
    from .exceptions import NetworkError as NetworkError
    from .exceptions import NetworkTimeoutError as NetworkTimeoutError
    from .exceptions import NotFoundError as NotFoundError
    from .exceptions import OculusAPIError as OculusAPIError
    from .exceptions import OculusAuthError as OculusAuthError
    from .exceptions import OculusError as OculusError
    from .exceptions import OculusStartupError as OculusStartupError
    from .exceptions import PolicyViolationError as PolicyViolationError
    from .exceptions import ProjectFileError as ProjectFileError
    from .exceptions import RateLimitError as RateLimitError
    from .exceptions import ResponseTooLargeError as ResponseTooLargeError
    from .exceptions import RevokedTokenError as RevokedTokenError
    from .exceptions import ServerError as ServerError
    from .exceptions import TLSError as TLSError
    from .exceptions import TokenExpiredError as TokenExpiredError
    from .exceptions import TokenRevokedException as TokenRevokedException
    from .exceptions import UnsupportedAlgorithmError as UnsupportedAlgorithmError
    from .exceptions import ValidationError as ValidationError
    from .jwt import Claims as Claims
    from .jwt import JwksVerifier as JwksVerifier
    from .permissions import AgentOTPClient as AgentOTPClient
    from .permissions import AsyncAgentOTPClient as AsyncAgentOTPClient
    from .permissions import AsyncPermissionClient as AsyncPermissionClient
    from .permissions import Permission as Permission
    from .permissions import PermissionClient as PermissionClient
    from .permissions import PermissionRequest as PermissionRequest
    from .permissions import PermissionResponse as PermissionResponse
    from .permissions import PermissionStatus as PermissionStatus
    from .permissions import TokenUsage as TokenUsage
    from .permissions import TokenVerification as TokenVerification
    from .store import FileTokenStore as FileTokenStore
    from .store import SharedToken as SharedToken
    from .store import StoreKey as StoreKey
    from .store import TokenStore as TokenStore
    from .tokens._client import Client as Client
    from .tokens._client import OculusClient as OculusClient
    from .tokens._models import Token as Token
    from .transport import AsyncTransport as AsyncTransport
    from .transport import Request as Request
    from .transport import Response as Response
    from .transport import Transport as Transport
    from .transport import UrllibTransport as UrllibTransport
    from .transport import register_transport as register_transport

_EXCEPTIONS = (
    "AgentOTPError ApprovalTimeoutError AuthenticationError CapabilityMapError ClientClosedError "
    "ConfigurationError ConflictError CredentialError DelegationError EnrollmentError "
    "ExpiredTokenError ForbiddenError ImmatureTokenError InvalidAudienceError "
    "InvalidIssuerError InvalidResponseError InvalidSignatureError InvalidTokenError "
    "KeyNotFoundError MalformedTokenError NetworkError NetworkTimeoutError NotFoundError "
    "OculusAPIError OculusAuthError OculusError OculusStartupError PolicyViolationError "
    "ProjectFileError RateLimitError ResponseTooLargeError RevokedTokenError ServerError TLSError "
    "TokenExpiredError TokenRevokedException UnsupportedAlgorithmError ValidationError"
).split()

_WHERE: Dict[str, str] = {name: "exceptions" for name in _EXCEPTIONS}
_WHERE.update(
    {
        "Client": "tokens._client",
        "OculusClient": "tokens._client",
        "Emulator": "emulator",
        "AuditEmitter": "audit",
        "AuditStats": "audit",
        "CapabilityEvaluator": "evaluator",
        "EvalResult": "evaluator",
        "TaskContext": "context",
        "Claims": "jwt",
        "JwksVerifier": "jwt",
        "Token": "tokens._models",
        "Clock": "_engine",
        "ManualClock": "_engine",
        "SystemClock": "_engine",
        "FileTokenStore": "store",
        "SharedToken": "store",
        "StoreKey": "store",
        "TokenStore": "store",
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
