"""One-time permissions approved by a human (the Agent OTP flow).

An agent asks before a sensitive action, waits (politely) for a person to
decide, runs the action with the one-time token and marks it used. Every rule
(validation, request building, reply parsing, the polling schedule, pacing) is
written once; the blocking and asyncio clients differ only in how they wait.

    from oculus_lite import PermissionClient

    with PermissionClient() as client:        # AGENT_OTP_API_KEY / AGENT_OTP_URL
        permission = client.request_permission(
            action="email.send", scope={"max_emails": 1}, wait_for_approval=True)
        if permission.status == "approved":
            ...
            client.use_token(permission.id, permission.token)
"""

from ._clients import AsyncPermissionClient, PermissionClient
from ._models import (
    Permission,
    PermissionRequest,
    PermissionResponse,
    PermissionStatus,
    TokenUsage,
    TokenVerification,
)
from ._plans import DEFAULT_OTP_URL

__all__ = [
    "DEFAULT_OTP_URL",
    "AgentOTPClient",
    "AsyncAgentOTPClient",
    "AsyncPermissionClient",
    "Permission",
    "PermissionClient",
    "PermissionRequest",
    "PermissionResponse",
    "PermissionStatus",
    "TokenUsage",
    "TokenVerification",
]

#: The names the Agent OTP SDK documentation uses.
AgentOTPClient = PermissionClient
AsyncAgentOTPClient = AsyncPermissionClient
