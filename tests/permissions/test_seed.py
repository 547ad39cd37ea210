"""The snippets of seeds/002 (Agent OTP Python SDK reference), run unchanged except
``from agent_otp import`` -> ``from oculus_lite import``, against the emulator."""

import contextlib
import io
import textwrap
from typing import Any, Dict, List

import pytest

QUICK_START = """
from agent_otp import AgentOTPClient
# Initialize the client
client = AgentOTPClient(api_key="ak_live_xxxx")
# Request permission
permission = client.request_permission(
    action="email.send",
    resource="email:client@example.com",
    scope={
        "max_emails": 1,
        "allowed_recipients": ["client@example.com"],
    },
    context={
        "reason": "Sending monthly invoice",
    },
    wait_for_approval=True,
    timeout=60,
)
if permission.status == "approved":
    print(f"Token: {permission.token}")
    # Use the token
    send_email(recipient="client@example.com", otp_token=permission.token)
    # Mark token as used
    client.use_token(permission.id, permission.token)
"""

ASYNC = """
import asyncio
from agent_otp import AsyncAgentOTPClient
async def main():
    client = AsyncAgentOTPClient(api_key="ak_live_xxxx")
    permission = await client.request_permission(
        action="file.read",
        scope={"max_size": 1048576},
        wait_for_approval=True,
    )
    if permission.status == "approved":
        # Use the token
        await process_file(permission.token)
        await client.use_token(permission.id, permission.token)
asyncio.run(main())
"""

CONFIGURATION = """
from agent_otp import AgentOTPClient
client = AgentOTPClient(
    api_key="ak_live_xxxx",
    base_url="https://api.agentotp.com", # Optional
    timeout=30.0, # Request timeout in seconds
    retries=3, # Number of retry attempts
    debug=False, # Enable debug logging
)
"""

ERROR_HANDLING = """
from agent_otp import (
    AgentOTPClient,
    AgentOTPError,
    AuthenticationError,
    ValidationError,
    RateLimitError,
    NetworkError,
)
client = AgentOTPClient(api_key="ak_live_xxxx")
try:
    permission = client.request_permission(
        action="email.send",
        scope={"max_emails": 1},
    )
except AuthenticationError as e:
    print(f"Invalid API key: {e}")
except ValidationError as e:
    print(f"Invalid request: {e.details}")
except RateLimitError as e:
    print(f"Rate limited, retry after {e.retry_after}s")
except NetworkError as e:
    print(f"Network error: {e}")
except AgentOTPError as e:
    print(f"API error: {e.code} - {e.message}")
"""

CONTEXT_MANAGER = """
from agent_otp import AgentOTPClient
with AgentOTPClient(api_key="ak_live_xxxx") as client:
    permission = client.request_permission(
        action="file.write",
        scope={"max_size": 1048576},
    )
# Client is automatically closed when exiting the context
"""

TYPE_HINTS = """
from agent_otp import (
    AgentOTPClient,
    PermissionRequest,
    PermissionResponse,
    PermissionStatus,
)
def process_with_permission(
    client: AgentOTPClient,
    action: str,
) -> PermissionResponse:
    request: PermissionRequest = {
        "action": action,
        "scope": {"max_count": 1},
    }
    response: PermissionResponse = client.request_permission(**request)
    if response.status == PermissionStatus.APPROVED:
        return response
    raise ValueError(f"Permission {response.status}")
"""

# The LangChain example with ``from langchain.tools import BaseTool`` replaced by a plain base.
LANGCHAIN = """
from agent_otp import AgentOTPClient
class BaseTool:
    pass
class OTPProtectedTool(BaseTool):
    name = "email_sender"
    description = "Send emails with OTP protection"
    def __init__(self):
        self.otp_client = AgentOTPClient(api_key="ak_live_xxxx")
    def _run(self, recipient: str, subject: str, body: str) -> str:
        permission = self.otp_client.request_permission(
            action="email.send",
            resource=f"email:{recipient}",
            scope={"max_emails": 1},
            wait_for_approval=True,
        )
        if permission.status != "approved":
            return f"Permission denied: {permission.reason}"
        # Send email using the token
        result = send_email(recipient, subject, body, permission.token)
        self.otp_client.use_token(permission.id, permission.token)
        return "Email sent successfully"
"""

SEED_KEY = "ak_live_xxxx"


def run(snippet: str, **names: Any) -> Dict[str, Any]:
    code = textwrap.dedent(snippet).replace("from agent_otp import", "from oculus_lite import")
    namespace: Dict[str, Any] = dict(names)
    exec(compile(code, "<seed>", "exec"), namespace)
    return namespace


@pytest.fixture
def seed_env(emulator: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    emulator.otp.add_agent(SEED_KEY, "seed-agent")
    monkeypatch.setenv("AGENT_OTP_URL", emulator.url)
    return emulator


def hold_first_poll(emu: Any) -> None:
    """Hold the agent's first status poll 0.2 s, so the human (woken the moment the request
    goes pending) decides before it is answered. The snippets poll every 2 s (the default):
    a human who lost that race would cost a real 2 s wait; a slow one still passes, later."""
    emu.set_faults(
        [{"path": "/api/v1/permissions/*", "method": "GET", "kind": "delay", "delay_ms": 200, "next": 1}]
    )


def test_quick_start_waits_for_a_human(seed_env: Any, human: Any) -> None:
    sent: List[Dict[str, Any]] = []
    out = io.StringIO()
    hold_first_poll(seed_env)
    human.will_decide(approved=True)
    with contextlib.redirect_stdout(out):
        ns = run(QUICK_START, send_email=lambda **kw: sent.append(kw))
    human.join()
    permission = ns["permission"]
    assert permission.status == "approved"
    assert out.getvalue() == "Token: {}\n".format(permission.token)
    assert permission.token.startswith("otp_")
    assert sent == [{"recipient": "client@example.com", "otp_token": permission.token}]
    assert permission.scope == {
        "max_emails": 1,
        "allowed_recipients": ["client@example.com"],
    }
    # the snippet marked the token used: it is now spent
    assert ns["client"].get_permission(permission.id).status == "used"
    ns["client"].close()


def test_async_snippet(seed_env: Any, human: Any) -> None:
    processed: List[str] = []

    async def process_file(token: str) -> None:
        processed.append(token)

    hold_first_poll(seed_env)
    human.will_decide(approved=True)
    run(ASYNC, process_file=process_file)
    ((pid, status, payload),) = human.join()
    assert status == 200
    assert processed == [payload["data"]["token"]]
    assert seed_env.otp.list_permissions()[0]["status"] == "used"


def test_configuration_snippet() -> None:
    ns = run(CONFIGURATION)
    client = ns["client"]
    assert client.base_url == "https://api.agentotp.com"
    assert "ak_live_xxxx" not in repr(client)
    client.close()


def test_error_handling_snippet_unknown_key(emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_OTP_URL", emulator.url)  # ak_live_xxxx is not an agent here
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        run(ERROR_HANDLING)
    assert out.getvalue().startswith("Invalid API key: permission request failed: HTTP 401")


def test_error_handling_snippet_rate_limited(seed_env: Any) -> None:
    seed_env.otp.add_agent(SEED_KEY, "seed-agent", rate_limit=1)
    from oculus_lite import AgentOTPClient

    with AgentOTPClient(api_key=SEED_KEY) as first:
        first.request_permission(action="email.send", scope={})
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        run(ERROR_HANDLING)
    assert out.getvalue() == "Rate limited, retry after 60.0s\n"


def test_error_handling_snippet_network(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("AGENT_OTP_URL", "http://127.0.0.1:{}".format(port))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        run(ERROR_HANDLING)
    assert out.getvalue().startswith("Network error: POST http://127.0.0.1")
    assert "connection refused" in out.getvalue()


def test_error_handling_snippet_pending_raises_nothing(seed_env: Any) -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        ns = run(ERROR_HANDLING)
    assert out.getvalue() == ""
    assert ns["permission"].status == "pending"


def test_context_manager_snippet_closes(seed_env: Any) -> None:
    from oculus_lite import ClientClosedError

    ns = run(CONTEXT_MANAGER)
    assert ns["permission"].status == "pending"
    assert ns["client"].closed
    with pytest.raises(ClientClosedError):
        ns["client"].get_permission(ns["permission"].id)


def test_type_hints_snippet(seed_env: Any) -> None:
    from oculus_lite import AgentOTPClient

    ns = run(TYPE_HINTS)
    with AgentOTPClient(api_key=SEED_KEY) as client:
        with pytest.raises(ValueError, match=r"^Permission pending$"):
            ns["process_with_permission"](client, "report.read")
        seed_env.otp.add_policy(
            name="reports",
            conditions={"action": {"equals": "report.read"}},
            action="auto_approve",
        )
        response = ns["process_with_permission"](client, "report.read")
        assert response.status == "approved" and response.token


def test_langchain_pattern_approved_and_denied(seed_env: Any, human: Any) -> None:
    sent: List[Any] = []
    ns = run(LANGCHAIN, send_email=lambda *args: sent.append(args))
    tool = ns["OTPProtectedTool"]()
    seed_env.otp.add_policy(
        name="mail",
        conditions={"resource": {"equals": "email:a@example.com"}},
        action="auto_approve",
    )
    assert tool._run("a@example.com", "hi", "body") == "Email sent successfully"
    assert sent[0][:3] == ("a@example.com", "hi", "body") and sent[0][3].startswith("otp_")
    hold_first_poll(seed_env)
    human.will_decide(approved=False, reason="not today")
    assert tool._run("b@example.com", "hi", "body") == "Permission denied: not today"
    human.join()
    assert len(sent) == 1
    tool.otp_client.close()
