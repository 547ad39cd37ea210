"""Hostile input is refused with a precise typed error before anything is sent.

Extends tests/client (which covers CR/LF/NUL, empty values, a few non-strings,
5000-character scopes and the common unsafe base URLs) with the rest: every
other control character, C1 controls and Unicode line separators, the async and
token-info paths, absurd sizes and counts, hostile credentials and environment
values, and URL tricks that try to smuggle a non-loopback host past the http rule.
"""

import asyncio
from typing import Any

import pytest

from oculus_lite import Client, ConfigurationError, ForbiddenError, ValidationError

CONTROL = ["\t", "\x0b", "\x0c", "\x1b", "\x7f", "\x85", "\x9b", "\u2028", "\u2029", "\r", "\n", "\x00"]


def refused(client: Any, token_requests: Any, fragment: str, scope: Any, audience: Any = None) -> None:
    """The sync, async and token-info paths all refuse it, naming the problem, sending nothing."""
    for call in (
        lambda: client.get_token(scope, audience),
        lambda: client.get_token_info(scope, audience),
        lambda: asyncio.run(client.aget_token(scope, audience)),
    ):
        with pytest.raises(ValidationError) as info:
            call()
        assert fragment in str(info.value)
        assert info.value.status_code is None  # ours, not the server's
    assert token_requests() == 0


@pytest.mark.parametrize("char", CONTROL, ids=[hex(ord(c)) for c in CONTROL])
def test_control_characters_in_scope(make_client, token_requests, char):
    refused(make_client(), token_requests, "control", "db:read" + char + "db:write")


@pytest.mark.parametrize("char", CONTROL, ids=[hex(ord(c)) for c in CONTROL])
def test_control_characters_in_audience(make_client, token_requests, char):
    refused(make_client(), token_requests, "control", "db:read", "https://api.example.com" + char + "x")


@pytest.mark.parametrize(
    "scope, fragment",
    [
        (3.5, "float"),
        ({"db": "read"}, "dict"),
        (("db:read",), "tuple"),
        ({"db:read"}, "set"),  # unhashable: the lock-free lookup must not crash on it
        (True, "bool"),
        (object(), "object"),
        (bytearray(b"db:read"), "bytearray"),
    ],
)
def test_non_string_scopes_name_the_type(make_client, token_requests, scope, fragment):
    refused(make_client(), token_requests, fragment, scope)


@pytest.mark.parametrize("audience", [b"https://a.example", ["https://a.example"], 1.0, {"aud"}])
def test_non_string_audiences(make_client, token_requests, audience):
    refused(make_client(), token_requests, "audience must be a string", "db:read", audience)


def test_absurd_sizes(make_client, token_requests):
    client = make_client()
    refused(client, token_requests, "limit is 4096", "db:" + "r" * 1_000_000)
    refused(client, token_requests, "limit is 2048", "db:read", "https://" + "a" * 100_000)
    many = " ".join("db:r{}".format(i) for i in range(65))
    refused(client, token_requests, "65 scopes; the limit is 64", many)
    # exactly at the limits is accepted (the emulator grants db:*)
    assert client.get_token(" ".join("db:r{}".format(i) for i in range(64)))


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"client_id": "agent\r\nX-Injected: 1"}, "client_id contains a control character"),
        ({"client_secret": "s3cret\x00"}, "client_secret contains a control character"),
        ({"client_id": "a" * 10_000}, "client_id is 10000 characters long"),
        ({"client_secret": "s" * 100_000}, "client_secret is 100000 characters long"),
        ({"client_id": 42}, "client_id must be a string"),
        ({"client_secret": b"bytes"}, "client_secret must be a string"),
        ({"client_id": "   "}, "client_id must not be empty"),
    ],
)
def test_hostile_credentials(emulator, token_requests, kwargs, fragment):
    args = {"client_id": "agent-1", "client_secret": "x", "base_url": emulator.url}
    args.update(kwargs)
    with pytest.raises(ConfigurationError) as info:
        Client(**args)
    assert fragment in str(info.value)
    assert "s" * 100 not in str(info.value)  # a huge secret is measured, never echoed
    assert token_requests() == 0


@pytest.mark.parametrize(
    "name, value, fragment",
    [
        ("AGENT_CLIENT_ID", "agent\nX: y", "client_id contains a control character"),
        ("AGENT_CLIENT_SECRET", "sec\rret", "client_secret contains a control character"),
        ("ANTI_AI_URL", "file:///etc/passwd", "not 'file:'"),
        ("OCULUS_BASE_URL", "http://user:pw@127.0.0.1:1", "credentials"),
    ],
)
def test_hostile_environment(monkeypatch, name, value, fragment):
    monkeypatch.setenv("OCULUS_CLIENT_ID", "agent-1")
    monkeypatch.setenv("OCULUS_CLIENT_SECRET", "secret")
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError) as info:
        Client()
    assert fragment in str(info.value)
    assert "pw" not in str(info.value)


@pytest.mark.parametrize(
    "url, fragment",
    [
        ("https://user@api.example.com", "credentials"),
        ("https://:pw@api.example.com", "credentials"),
        ("http://127.0.0.1@evil.example.com", "credentials"),
        ("HTTP://evil.example.com", "allow_insecure_http"),
        ("http://127.0.0.1.evil.example.com", "allow_insecure_http"),
        ("http://localhost.evil.example.com", "allow_insecure_http"),
        ("http://10.0.0.1:8400", "allow_insecure_http"),
        ("http://0.0.0.0:8400", "allow_insecure_http"),
        ("http://evil.example.com#@127.0.0.1", "fragment"),
        ("http://evil.example.com\\@127.0.0.1", "credentials"),
        ("file:relative/path", "not 'file:'"),
        ("ftp://user:pw@files.example.com", "not 'ftp:'"),
        ("gopher://api.example.com", "not 'gopher:'"),
        ("javascript:alert(1)", "not 'javascript:'"),
        ("data:text/plain,hi", "not 'data:'"),
        ("ws://127.0.0.1:1", "not 'ws:'"),
        ("https://api.example.com:99999", "not a valid URL"),
        ("https://[::1", "not a valid URL"),
        ("https://api.example.com/v1\u2028x", "control"),
        ("https://api.example.com/v1\x85x", "control"),
        ("https://api .example.com", "whitespace"),
        (42, "non-empty string"),
        (b"https://api.example.com", "non-empty string"),
    ],
)
def test_hostile_base_urls(url, fragment):
    with pytest.raises(ConfigurationError) as info:
        Client("id", "secret", url)
    assert fragment in str(info.value)
    assert "pw" not in str(info.value)


def test_scope_injection_stays_inside_the_form_field(make_client, emulator, token_requests):
    # '&' and '=' are legal in a scope string: they must be form-encoded, never split into fields
    # (an injected client_id=other would come first in the form and make this a 401)
    client = make_client()
    with pytest.raises(ForbiddenError) as info:
        client.get_token("db:read&client_id=other&scope=admin:all")
    assert token_requests() == 1
    assert info.value.code == "invalid_scope" and "db:read&client_id=other" in str(info.value)
