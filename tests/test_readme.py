"""Every Python block in the README runs against the emulator, so the README stays true.

The only edit made to a block is pointing the documented production URL at the emulator.
"""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


@pytest.fixture
def configured(monkeypatch, emulator):
    monkeypatch.setenv("AGENT_CLIENT_ID", emulator.demo_client_id)
    monkeypatch.setenv("AGENT_CLIENT_SECRET", emulator.demo_client_secret)
    monkeypatch.setenv("ANTI_AI_URL", emulator.url)
    monkeypatch.setenv("AGENT_OTP_URL", emulator.url)
    monkeypatch.setenv("AGENT_OTP_API_KEY", emulator.otp.demo_api_key)
    return emulator


def run_block(code, emulator, namespace=None):
    code = code.replace("https://api.antiailabs.com", emulator.url)
    namespace = {} if namespace is None else namespace
    exec(compile(code, str(README), "exec"), namespace)
    return namespace


def test_the_readme_has_the_blocks_this_test_knows():
    blocks = python_blocks()
    assert len(blocks) == 6
    assert blocks[0].startswith("from oculus_lite import Client\n\nwith Client() as client:")


def test_first_screen_usage(configured):
    ns = run_block(python_blocks()[0], configured)
    assert ns["token"] and ns["both"] and ns["scoped"]
    assert ns["client"].closed


def test_constructor_reference(configured):
    ns = run_block(python_blocks()[1], configured)
    ns["client"].stop()


def test_emulator_example(configured):
    run_block(python_blocks()[2], configured)


def test_permission_example(configured):
    configured.otp.add_policy(
        name="mail", priority=1, action="auto_approve", conditions={"action": {"equals": "email.send"}}
    )
    ns = run_block(python_blocks()[3], configured)
    assert ns["permission"].status == "approved"
    assert configured.otp.list_permissions(status="used")


def test_verify_example(configured):
    from oculus_lite import Client

    with Client(revocation_interval=None) as client:
        token = client.get_token("db:read", audience="https://myservice.example.com")
    ns = run_block(python_blocks()[4], configured, {"token": token})
    assert ns["claims"]["aud"] == "https://myservice.example.com"


def test_custom_transport_example(configured):
    ns = run_block(python_blocks()[5], configured)
    stats = configured.stats()
    # one token request, plus the revocation poll that starts with the first cached token
    assert ns["client"]._transport.sent == stats["token_requests"] + stats["revocation_requests"] >= 1
    assert ns["client"].closed
