"""Every snippet of the token-service seed documents, run with only the import changed."""

import ast
import asyncio
import io
import re
from contextlib import redirect_stdout
from pathlib import Path

import pytest

SEEDS = Path(__file__).resolve().parents[1] / "seeds"
SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "seeds"


def python_blocks(name):
    text = next(SEEDS.glob(name)).read_text(encoding="utf-8")
    return re.findall(r"```python[^\n]*\n(.*?)```", text, flags=re.S)


def as_oculus_lite(code):
    return code.replace("from oculus_sdk", "from oculus_lite").replace("from agent_otp", "from oculus_lite")


def run(code, namespace):
    """Run a snippet; top-level ``await`` (as the quick reference has) runs in an event loop."""
    compiled = compile(code, "<seed>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    result = eval(compiled, namespace)
    if asyncio.iscoroutine(result):
        asyncio.run(result)
    return namespace


def test_seed_copies_match_shared():
    if not SHARED.is_dir():
        pytest.skip("../shared/seeds is not beside this checkout")
    for path in SHARED.glob("*.txt"):
        assert (SEEDS / path.name).read_bytes() == path.read_bytes(), path.name


def test_quick_reference(emulator):
    code = python_blocks("000_*.txt")[0]
    assert "await client.aget_token" in code
    emulator.add_agent("your-client-id", "your-client-secret", scopes=["db:*", "stripe:*"])
    code = as_oculus_lite(code).replace("https://api.antiailabs.com", emulator.url)
    ns = run(code, {})
    assert ns["token"].count(".") == 2
    assert ns["client"].closed  # client.stop() ran
    # four get_token calls + one aget_token, three distinct (scope, audience) keys
    assert emulator.stats()["token_requests"] == 3


@pytest.fixture
def full_example(emulator, monkeypatch):
    pytest.importorskip("httpx")
    emulator.add_agent("seed-agent", "seed-secret", scopes=["db:*"])
    monkeypatch.setenv("AGENT_CLIENT_ID", "seed-agent")
    monkeypatch.setenv("AGENT_CLIENT_SECRET", "seed-secret")
    monkeypatch.setenv("ANTI_AI_URL", emulator.url)
    code = as_oculus_lite(python_blocks("000_*.txt")[1])
    ns = run(code, {})
    yield ns
    ns["client"].stop()


def test_full_example_calls_an_api(full_example, emulator):
    data = full_example["call_api"](emulator.url + "/.well-known/jwks.json", "db:read")
    assert data["keys"]


def test_full_example_auth_branch(full_example, emulator):
    emulator.rotate_secret("seed-agent")
    with pytest.raises(RuntimeError, match="Authentication failed"):
        full_example["call_api"](emulator.url + "/.well-known/jwks.json", "db:read")


def test_full_example_revoked_branch(full_example, emulator):
    client = full_example["client"]
    jti = client.get_token_info("db:read").jti
    emulator.revoke(jti)
    client.check_revocation()
    with pytest.raises(RuntimeError, match="revoked"):
        full_example["call_api"](emulator.url + "/.well-known/jwks.json", "db:read")


def test_full_example_api_error_branch(full_example, emulator):
    emulator.set_faults([{"path": "/oauth/token", "kind": "status", "status": 500, "every": 1}])
    with pytest.raises(RuntimeError, match="Anti AI error"):
        full_example["call_api"](emulator.url + "/.well-known/jwks.json", "db:write")


TROUBLESHOOTING_CHECK = """
import os
print("Client ID:", os.environ.get("AGENT_CLIENT_ID", "NOT SET"))
print("Secret set:", bool(os.environ.get("AGENT_CLIENT_SECRET")))
"""

TROUBLESHOOTING_GOOD_AND_BAD = """
from oculus_sdk import OculusClient
# ✅ Good — one client, tokens cached and renewed automatically
client = OculusClient(client_id="...", client_secret="...")

# ❌ Bad — new client every call, no caching
def my_function():
    client = OculusClient(...)  # don't do this
"""


def test_troubleshooting_snippets(monkeypatch, canary):
    text = next(SEEDS.glob("001_*.txt")).read_text(encoding="utf-8")
    for line in TROUBLESHOOTING_CHECK.strip().splitlines()[1:]:
        assert line.strip() in text
    monkeypatch.setenv("AGENT_CLIENT_ID", "agent-7")
    monkeypatch.setenv("AGENT_CLIENT_SECRET", canary)
    out = io.StringIO()
    with redirect_stdout(out):
        run(TROUBLESHOOTING_CHECK, {})
    assert out.getvalue() == "Client ID: agent-7\nSecret set: True\n"
    ns = run(as_oculus_lite(TROUBLESHOOTING_GOOD_AND_BAD), {})
    assert ns["client"].client_id == "..."  # constructing a client does no I/O
    ns["client"].stop()
