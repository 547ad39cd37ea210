"""Configuration precedence and the checks that refuse unsafe settings."""

import pytest

from oculus_lite import Client, ConfigurationError


def test_missing_credentials_name_arguments_and_variables():
    # Construction is allowed (the official SDK allows it: delegation and enrollment build
    # clients without credentials); the first call that needs them says what to set.
    client = Client()
    with pytest.raises(ConfigurationError) as info:
        client.get_token("db:read")
    text = str(info.value)
    for name in ("client_id", "client_secret", "AGENT_CLIENT_ID", "OCULUS_CLIENT_SECRET"):
        assert name in text
    assert isinstance(info.value, ValueError)


def test_default_base_url():
    client = Client("id", "secret")
    assert client.base_url == "https://api.antiailabs.com"
    client.stop()


def test_precedence_argument_then_agent_then_oculus(monkeypatch):
    monkeypatch.setenv("OCULUS_CLIENT_ID", "from-oculus")
    monkeypatch.setenv("OCULUS_CLIENT_SECRET", "oculus-secret")
    monkeypatch.setenv("OCULUS_BASE_URL", "https://oculus.example.com")
    assert Client().client_id == "from-oculus"
    assert Client().base_url == "https://oculus.example.com"
    monkeypatch.setenv("AGENT_CLIENT_ID", "from-agent")
    monkeypatch.setenv("AGENT_CLIENT_SECRET", "agent-secret")
    monkeypatch.setenv("ANTI_AI_URL", "https://anti.example.com/")
    client = Client()
    assert client.client_id == "from-agent" and client.base_url == "https://anti.example.com"
    assert client._endpoint is not None and client._endpoint._secret.reveal() == "agent-secret"
    explicit = Client("explicit", "explicit-secret", "https://explicit.example.com")
    assert explicit.client_id == "explicit" and explicit.base_url == "https://explicit.example.com"


@pytest.mark.parametrize(
    "url, fragment",
    [
        ("http://api.example.com", "allow_insecure_http"),
        ("file:///etc/passwd", "https://"),
        ("ftp://api.example.com", "https://"),
        ("https://user:pw@api.example.com", "credentials"),
        ("https://", "no host"),
        ("api.example.com", "https://"),
        ("https://api.example.com/\r\nX: y", "control"),
        ("https://api.example.com?x=1", "query"),
    ],
)
def test_unsafe_base_urls_are_refused(url, fragment):
    with pytest.raises(ConfigurationError) as info:
        Client("id", "secret", url)
    assert fragment in str(info.value)


def test_http_allowed_for_loopback_and_with_opt_in():
    assert Client("id", "s", "http://127.0.0.1:8400").base_url == "http://127.0.0.1:8400"
    assert Client("id", "s", "http://localhost:1").base_url == "http://localhost:1"
    assert Client("id", "s", "http://[::1]:9").base_url == "http://[::1]:9"
    opted = Client("id", "s", "http://internal.example.com", allow_insecure_http=True)
    assert opted.base_url == "http://internal.example.com"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"timeout": 0},
        {"timeout": "10"},
        {"retries": -1},
        {"retries": True},
        {"cache_size": 0},
        {"refresh_margin": -1},
        {"revocation_interval": 0},
        {"transport": 42},
        {"transport": "no-such-transport"},
    ],
)
def test_bad_options_are_configuration_errors(kwargs):
    with pytest.raises(ConfigurationError):
        Client("id", "secret", **kwargs)


def test_unknown_transport_name_says_how_plugins_register():
    with pytest.raises(ConfigurationError) as info:
        Client("id", "secret", transport="carrier-pigeon")
    assert "oculus_lite.transports" in str(info.value)


def test_client_repr_has_no_secret(canary):
    client = Client("id", canary)
    assert canary not in repr(client)
