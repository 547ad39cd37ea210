"""Redaction (official flaw S6: key-name based, top level only, over-redacting max_tokens and
missing authorization, cookie, dsn, nested dicts and secret values under harmless keys)."""

import json
from typing import Any, Dict

import pytest

from oculus_lite.governance._redact import REDACTED, Redactor, freeze, is_secret_key


@pytest.mark.parametrize(
    "key",
    [
        "authorization", "Authorization", "auth", "cookie", "Set-Cookie", "password", "passwd", "pwd",
        "secret", "client_secret", "token", "access_token", "accessToken", "api_key", "apikey", "apiKey",
        "X-Api-Key", "APIKey", "credential", "credentials", "dsn", "private_key", "privateKey", "db_password",
        "refreshtoken", "session_token",
    ],
)  # fmt: skip
def test_secret_keys(key):
    assert is_secret_key(key)


@pytest.mark.parametrize(
    "key",
    [
        "max_tokens",
        "keyword",
        "monkey",
        "tokenizer",
        "prompt_tokens",
        "author",
        "key",
        "sort_key",
        "customer_id",
    ],
)
def test_harmless_keys_are_kept(key):
    """Official flaw S6: max_tokens, keyword, monkey, tokenizer were over-redacted."""
    assert not is_secret_key(key)


@pytest.mark.parametrize(
    "text, leaked",
    [
        ("my key is sk_live_abcdef123456 thanks", "sk_live_abcdef123456"),
        ("Authorization: Bearer abc.def-ghi_123456", "abc.def-ghi_123456"),
        ("send header bearer Zm9vYmFyYmF6cXV4", "Zm9vYmFyYmF6cXV4"),
        ("postgres://user:pa55word@db.internal:5432/app", "pa55word"),
        ("token=abc123xyz&x=1", "abc123xyz"),
        ("password: 'hunter2 again'", "hunter2 again"),
        ("jwt eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhZ2VudCJ9.c2lnbmF0dXJl", "eyJzdWIiOiJhZ2VudCJ9"),
        ("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\n-----END PRIVATE KEY-----", "MIIEvQIBADANBg"),
        ("cut -----BEGIN RSA PRIVATE KEY-----\nMIIEvQIBADANBgkq", "MIIEvQIBADANBgkq"),
        ("gh token ghp_abcdefghijklmnopqrstuvwx12", "ghp_abcdefghijklmnopqrstuvwx12"),
        ("aws AKIAABCDEFGHIJKLMNOP here", "AKIAABCDEFGHIJKLMNOP"),
        ("otp otp_0123456789abcdef used", "otp_0123456789abcdef"),
        ("openai sk-proj0123456789abcdefghij", "sk-proj0123456789abcdefghij"),
    ],
)
def test_secret_looking_values_are_redacted(text, leaked):
    """Official flaw S6: secret values under harmless keys ("my key is sk_live_...") went out."""
    redacted = Redactor().text(text)
    assert leaked not in redacted and REDACTED in redacted


def test_ordinary_text_is_untouched():
    redactor = Redactor()
    for text in (
        "cus_123",
        "hello world",
        "max_tokens=5",
        "refund 42 EUR for order 9",
        "2024-01-03T12:00:00",
    ):
        assert redactor.text(text) == text


def test_known_secrets_anywhere_and_at_any_depth():
    redactor = Redactor(["canary-S3CRET-7f3a9c"])
    redactor.add_secrets("second-secret-value", None, "ab")  # None and too-short values are ignored
    value = {
        "note": "see canary-S3CRET-7f3a9c",
        "deep": [{"x": ("second-secret-value",)}],
        "canary-S3CRET-7f3a9c": 1,
    }
    out = json.dumps(redactor.redact(freeze(value)[0]))
    assert "canary-S3CRET" not in out and "second-secret" not in out
    assert redactor.bytes_scrub(b"xx canary-S3CRET-7f3a9c yy") == b"xx [REDACTED] yy"


def test_nested_keys_redacted_at_any_depth():
    value = {
        "config": {"api_key": "k1", "region": "eu"},
        "headers": {"Authorization": "Basic dXNlcjpwYXNz"},
        "items": [{"password": "p"}, {"name": "n"}],
        "max_tokens": 50,
    }
    out = Redactor().redact(freeze(value)[0])
    assert out == {
        "config": {"api_key": REDACTED, "region": "eu"},
        "headers": {"Authorization": REDACTED},
        "items": [{"password": REDACTED}, {"name": "n"}],
        "max_tokens": 50,
    }


class Unprintable:
    def __repr__(self):
        raise RuntimeError("no repr")


class Hostile(Dict[str, int]):
    def items(self):
        raise RuntimeError("boom")


def test_freeze_makes_a_private_json_safe_copy():
    source: Dict[Any, Any] = {"list": [1, 2], "set": {3}, "nan": float("nan"), "inf": float("inf"), "obj": object(), "bytes": b"xyz",
              1: "int key", None: "none key", ("t",): "tuple key", "bad": Unprintable()}  # fmt: skip
    frozen, size = freeze(source)
    source["list"].append(99)
    text = json.dumps(frozen, allow_nan=False)  # always encodes
    data = json.loads(text)
    assert data["list"] == [1, 2] and data["set"] == [3] and data["nan"] == "nan" and data["inf"] == "inf"
    assert data["obj"].startswith("<object object") and data["bytes"] == "<3 bytes>"
    assert data["bad"] == "<unrepresentable Unprintable>"
    assert data["1"] == "int key" and data["None"] == "none key" and data["('t',)"] == "tuple key"
    assert size > 0
    assert freeze(Hostile(a=1))[0] == "<unreadable Hostile>"


def test_freeze_bounds_depth_breadth_and_length():
    deep: Dict[str, Any] = {}
    cursor = deep
    for _ in range(50):
        cursor["d"] = {}
        cursor = cursor["d"]
    assert "[nested too deep]" in json.dumps(freeze(deep)[0])
    wide: Any = freeze(list(range(1000)))[0]
    assert len(wide) == 201 and wide[-1] == "[800 more items]"
    long_text: Any = Redactor().redact(freeze("x" * 100_000)[0])
    assert len(long_text) < 5000 and long_text.endswith("more characters]")
