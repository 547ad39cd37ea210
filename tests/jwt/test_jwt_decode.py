"""decode(): parse without verifying, and refuse anything that is not a canonical JWS with a precise reason."""

import json

import pytest

from oculus_lite.exceptions import MalformedTokenError, OculusError
from oculus_lite.jwt import MAX_TOKEN_LENGTH, Claims, decode

from .jwks_server import b64, b64json, claims, rsa_key, sign


@pytest.fixture(scope="module")
def token() -> str:
    return str(sign(rsa_key(2048, 0), claims(sub="agent-7", aud="svc"), kid="k1"))


def test_decode_returns_header_claims_signing_input_and_signature(token: str) -> None:
    decoded = decode(token)
    assert decoded.header == {"alg": "RS256", "typ": "JWT", "kid": "k1"}
    assert decoded.claims["sub"] == "agent-7"
    assert decoded.signing_input == token.rsplit(".", 1)[0].encode()
    assert len(decoded.signature) == 256
    assert decode(token.encode()) == decoded  # bytes accepted too


def test_decoded_repr_never_shows_the_token(token: str) -> None:
    text = repr(decode(token))
    assert "agent-7" in text
    assert token.split(".")[1] not in text and token.split(".")[2] not in text


@pytest.mark.parametrize(
    "bad, reason",
    [
        ("", "empty"),
        ("abc", "1 segment(s)"),
        ("a.b", "2 segment(s)"),
        ("a.b.c.d", "4 segment(s)"),
        ("a.b.c.d.e", "JWE"),
        (" x.y.z", "whitespace"),
        ("Bearer x.y.z", "Bearer"),
        (".eyJ9.", "header segment is empty"),
    ],
)
def test_shape_errors_say_what_is_wrong(bad: str, reason: str) -> None:
    with pytest.raises(MalformedTokenError) as info:
        decode(bad)
    assert reason in info.value.reason


def test_segment_errors(token: str) -> None:
    h, p, s = token.split(".")
    cases = {
        h + "=." + p + "." + s: "header segment is not base64url",
        h + "." + p + "==." + s: "payload segment",
        h + "." + p + "." + s.replace(s[5], "+", 1): "signature segment is not base64url",
        h + "." + p[: len(p) - (len(p) - 1) % 4] + "." + s: "payload segment has an impossible",
        b64(b"\xff\xfe") + "." + p + "." + s: "header is not UTF-8",
        b64(b"{") + "." + p + "." + s: "header is not valid JSON",
        b64json([1, 2]) + "." + p + "." + s: "header is a JSON list, expected an object",
        h + "." + b64(b'{"a":1,"a":2}') + "." + s: "duplicate member",
        h + "." + b64(b'{"exp":NaN}') + "." + s: "NaN is not JSON",
        h + "." + b64(b"[" * 5000 + b"]" * 5000) + "." + s: "payload",
    }
    for bad, reason in cases.items():
        with pytest.raises(MalformedTokenError) as info:
            decode(bad)
        assert reason in info.value.reason, (reason, info.value.reason)


def test_non_canonical_base64_trailing_bits_are_refused(token: str) -> None:
    h, p, s = token.split(".")
    assert len(s) % 4 == 2  # 256 bytes -> 342 chars: the last char carries 4 unused bits
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    twin = s[:-1] + alphabet[alphabet.index(s[-1]) | 1]
    with pytest.raises(MalformedTokenError, match="canonical"):
        decode(h + "." + p + "." + twin)


def test_size_cap() -> None:
    big = b64json({"alg": "RS256"}) + "." + b64json({"x": "a" * MAX_TOKEN_LENGTH}) + ".sig"
    with pytest.raises(MalformedTokenError, match="limit is 16384"):
        decode(big)


def test_non_string_input() -> None:
    for value in (None, 12, ["a.b.c"], b"\xff.a.b"):
        with pytest.raises(MalformedTokenError):
            decode(value)  # type: ignore[arg-type]


def test_malformed_is_an_oculus_error_and_never_echoes_the_token(token: str) -> None:
    h, p, s = token.split(".")
    with pytest.raises(OculusError) as info:
        decode(h + "." + p + "." + s + "." + s)
    assert s not in str(info.value) and s not in repr(info.value)


def test_claims_mapping_is_read_only_and_serialisable() -> None:
    c = Claims(
        {
            "sub": "a",
            "scope": "db:read  db:write",
            "aud": ["x", "y"],
            "exp": 5,
            "agent": {"constraints": {"max_results": 3}, "tags": [1, 2]},
        }
    )
    assert c.sub == "a" and c.scopes == ("db:read", "db:write") and c.aud == ("x", "y") and c.exp == 5.0
    assert c["agent"]["constraints"]["max_results"] == 3
    assert dict(c)["sub"] == "a" and c == {**c.to_dict()}
    with pytest.raises(TypeError):
        c["sub"] = "b"  # type: ignore[index]
    with pytest.raises(TypeError):
        c["agent"]["constraints"]["max_results"] = 1000
    with pytest.raises(TypeError):
        c.agent.update({"x": 1})  # type: ignore[attr-defined]
    assert json.loads(json.dumps(c.to_dict()))["agent"]["tags"] == [1, 2]
    copy = c.to_dict()
    copy["agent"]["tags"].append(3)
    assert c["agent"]["tags"] == [1, 2]
    with pytest.raises(TypeError):
        c["agent"]["tags"].append(3)
    assert Claims({}).scopes == () and Claims({}).jti is None and Claims({"exp": True}).exp is None
