"""Bad arguments are refused before anything is sent, with an error naming the field."""

import asyncio
from typing import Any, Dict

import pytest

from oculus_lite import (
    AsyncPermissionClient,
    ConfigurationError,
    PermissionClient,
    ValidationError,
)

GOOD: Dict[str, Any] = {"action": "email.send", "scope": {"n": 1}}


@pytest.mark.parametrize(
    "change, field",
    [
        ({"action": ""}, "action must not be empty"),
        ({"action": "a" * 256}, "action is 256 characters long; the limit is 255"),
        ({"action": 5}, "action must be a string"),
        ({"action": "email\nsend"}, "action contains a control character"),
        ({"resource": "r" * 256}, "resource is 256 characters long"),
        ({"resource": 3}, "resource must be a string"),
        ({"ttl": 29}, "ttl must be between 30 and 3600"),
        ({"ttl": 3601}, "ttl must be between 30 and 3600"),
        ({"ttl": True}, "ttl must be an int"),
        ({"ttl": 60.0}, "ttl must be an int"),
        ({"scope": ["not", "a", "dict"]}, "scope must be a dict"),
        ({"scope": {"when": object()}}, "scope must be JSON-serialisable"),
        ({"scope": {"x": float("nan")}}, "scope must be JSON-serialisable"),
        ({"context": "text"}, "context must be a dict"),
        ({"context": {1j: 1}}, "context must be JSON-serialisable"),
        ({"wait_for_approval": True, "timeout": 0}, "timeout must be a positive"),
        ({"wait_for_approval": True, "timeout": "60"}, "timeout must be a number"),
        (
            {"wait_for_approval": True, "poll_interval": -1},
            "poll_interval must be a positive",
        ),
        (
            {"wait_for_approval": True, "poll_interval": float("inf")},
            "poll_interval must be a positive",
        ),
    ],
)
def test_request_validation(client: Any, otp_agent: Any, change: Dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError, match=field.replace("(", r"\(")):
        client.request_permission(**dict(GOOD, **change))
    with pytest.raises(ValidationError, match=field.replace("(", r"\(")):
        asyncio.run(_async_request(otp_agent, dict(GOOD, **change)))
    assert otp_agent.otp.stats()["permission_requests"] == 0  # nothing was sent


async def _async_request(agent: Any, kwargs: Dict[str, Any]) -> Any:
    async with AsyncPermissionClient(api_key=agent.api_key, base_url=agent.url) as c:
        return await c.request_permission(**kwargs)


def test_boundaries_are_accepted(client: Any) -> None:
    assert client.request_permission("a" * 255, {}, resource="r" * 255, ttl=30).status == "pending"
    assert client.request_permission("a", None, ttl=3600).scope == {}


@pytest.mark.parametrize(
    "pid, message",
    [
        ("", "permission_id must be 1 to 128 letters, digits"),
        ("a/b", "permission_id must be 1 to 128 letters, digits"),
        ("a\x00", "permission_id must be 1 to 128 letters, digits"),
        (None, "permission_id must be a string"),
        ("x" * 129, "permission_id must be 1 to 128 letters, digits"),
    ],
)
def test_id_validation(client: Any, otp_agent: Any, pid: Any, message: str) -> None:
    for call in (
        lambda: client.get_permission(pid),
        lambda: client.wait_for_permission(pid),
        lambda: client.verify_token(pid, "otp_x"),
        lambda: client.use_token(pid, "otp_x"),
    ):
        with pytest.raises(ValidationError, match=message):
            call()
    assert otp_agent.otp.stats()["permission_polls"] == 0


@pytest.mark.parametrize(
    "token, message",
    [
        ("", "token must not be empty"),
        (None, "token must be a string"),
        (b"otp", "token must be a string"),
        ("otp\r\nx", "control"),
    ],
)
def test_token_validation(client: Any, token: Any, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        client.verify_token("perm_1", token)
    with pytest.raises(ValidationError, match=message):
        client.use_token("perm_1", token)


def test_action_details_must_be_a_json_dict(client: Any) -> None:
    with pytest.raises(ValidationError, match="action_details must be a dict"):
        client.use_token("perm_1", "otp_x", action_details=[1])


def test_validation_error_is_a_value_error(client: Any) -> None:
    with pytest.raises(ValueError):
        client.request_permission("", {})


# ------------------------------------------------------------------ configuration


def test_missing_api_key_names_argument_and_variable() -> None:
    with pytest.raises(ConfigurationError, match="api_key=.*AGENT_OTP_API_KEY"):
        PermissionClient()


def test_environment_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_OTP_API_KEY", "ak_env")
    monkeypatch.setenv("AGENT_OTP_URL", "http://127.0.0.1:8400/")
    with PermissionClient() as c:
        assert c.base_url == "http://127.0.0.1:8400"
    with PermissionClient(base_url="https://otp.example.com/api/v1") as c:  # argument wins
        assert c.base_url == "https://otp.example.com"
    monkeypatch.delenv("AGENT_OTP_URL")
    with PermissionClient() as c:
        assert c.base_url == "https://api.agentotp.com"


def test_plain_http_refused_for_remote_hosts(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError, match="plain http"):
        PermissionClient(api_key="ak_x", base_url="http://otp.example.com")
    monkeypatch.setenv("AGENT_OTP_URL", "http://otp.example.com")
    with pytest.raises(ConfigurationError, match="AGENT_OTP_URL uses plain http"):
        PermissionClient(api_key="ak_x")
    PermissionClient(api_key="ak_x", allow_insecure_http=True).close()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"timeout": 0}, "timeout must be a positive"),
        ({"retries": -1}, "retries must be an int"),
        ({"retries": True}, "retries must be an int"),
        ({"api_key": "ak\nx"}, "api_key contains a control"),
        ({"max_requests_per_minute": 0}, "max_requests_per_minute"),
        ({"transport": 42}, "transport must be"),
    ],
)
def test_bad_configuration(kwargs: Dict[str, Any], message: str) -> None:
    kwargs.setdefault("api_key", "ak_x")
    with pytest.raises(ConfigurationError, match=message):
        PermissionClient(**kwargs)
    with pytest.raises(ConfigurationError, match=message):
        AsyncPermissionClient(**kwargs)


def test_debug_logs_this_client_only_and_changes_no_global_logger(otp_agent: Any, caplog: Any) -> None:
    """debug=True used to set the process-wide ``oculus_lite.permissions`` logger to DEBUG."""
    import logging

    module_logger = logging.getLogger("oculus_lite.permissions")
    before = module_logger.level
    with PermissionClient(api_key=otp_agent.api_key, base_url=otp_agent.url, debug=True) as loud:
        loud.request_permission("files.read", {"max": 1})
    assert module_logger.level == before and not module_logger.isEnabledFor(logging.DEBUG)
    loud_records = [r for r in caplog.records if r.levelno == logging.DEBUG and r.name == module_logger.name]
    assert any("files.read" in r.getMessage() for r in loud_records)
    caplog.clear()
    with PermissionClient(api_key=otp_agent.api_key, base_url=otp_agent.url) as quiet:
        quiet.request_permission("files.read", {"max": 1})
    assert not [r for r in caplog.records if r.levelno == logging.DEBUG]


def test_emulator_rejects_what_the_client_would(otp_agent: Any) -> None:
    from .conftest import http_json

    status, _, body = http_json(
        "POST",
        otp_agent.url + "/api/v1/permissions/request",
        {"action": "", "scope": [], "ttl": 5},
        token=otp_agent.api_key,
    )
    assert status == 400 and body["success"] is False
    assert set(body["error"]["details"]) == {"action", "scope", "ttl"}
