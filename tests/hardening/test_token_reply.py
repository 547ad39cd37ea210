"""A hostile token endpoint (issue 16, "The token endpoint's reply is trusted too much").

The emulator answers ``POST /oauth/token`` with whatever body a test gives (a ``status``
fault with status 200), over a real socket. A token that could inject a header, a token
type the caller would misuse, or a lifetime that turns every call into a round trip must
never reach the caller or the cache.
"""

import json
import re
from typing import Any, Callable, Dict, List

import pytest

from oculus_lite import Client
from oculus_lite._engine import ManualClock
from oculus_lite.emulator import Emulator
from oculus_lite.exceptions import InvalidResponseError
from oculus_lite.tokens._oauth import TokenEndpoint
from oculus_lite.transport import Response

GOOD = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJl"
TOKEN_PATH = "/oauth/token"

#: Marks the hostile values, so a test can tell when an error message echoes one.
MARK = "Q7zMARK"

#: Access tokens that are not RFC 6750 b64tokens: each would be written after "Bearer ".
BAD_ACCESS_TOKENS = [
    MARK + "\r\nX-Injected: 1",
    MARK + "\nX-Injected: 1",
    MARK + "\rX",
    MARK + "\x00",
    MARK + " en",
    MARK + "\t",
    " " + MARK,
    MARK + " ",
    MARK + "\u00a0",
    MARK + "ö",
    MARK + "\u2028x",
    MARK + "\u3000",
    MARK + "\u200b",
    MARK + "\x7f",
    MARK + "\x85",
    MARK + "=k",  # '=' only as trailing padding
    "=" + MARK,
    MARK + ",other",
    MARK + '"',
    MARK + ";x",
    MARK + "a" * (16 * 1024),
    "   ",
    "\u00a0",
    "",
]
#: Non-string access tokens.
BAD_ACCESS_VALUES: List[Any] = [123, 1.5, True, ["tok"], {"t": "x"}]
#: Refresh and service tokens must be printable ASCII without whitespace.
BAD_OPAQUE_TOKENS: List[Any] = [
    MARK + "\r\nX: y",
    MARK + " x",
    MARK + "\t",
    MARK + "\x00",
    MARK + "é",
    MARK + "\u00a0",
    MARK + "\u2028",
    MARK + "\x7f",
    " ",
    MARK + "x" * (16 * 1024),
    5,
    ["rt"],
    {"rt": 1},
    True,
]


def _serve(emulator: Emulator, body: Dict[str, Any]) -> None:
    """Every token request gets HTTP 200 with ``body`` as JSON."""
    emulator.set_faults([{"path": TOKEN_PATH, "kind": "status", "status": 200, "body": body}])


def _token_requests(emulator: Emulator) -> int:
    return int(emulator.stats()["token_requests"])


def _refused_twice(
    emulator: Emulator, make_client: Callable[..., Client], body: Dict[str, Any]
) -> InvalidResponseError:
    """Two calls, two requests, two typed errors: nothing was handed out, nothing cached."""
    _serve(emulator, body)
    client = make_client(retries=0)
    errors = []
    for _ in range(2):
        with pytest.raises(InvalidResponseError) as info:
            client.get_token("db:read")
        errors.append(info.value)
    assert _token_requests(emulator) == 2
    assert client._cache.get("db:read") is None
    return errors[0]


@pytest.mark.parametrize("token", BAD_ACCESS_TOKENS + BAD_ACCESS_VALUES, ids=repr)
def test_an_access_token_that_is_not_a_b64token_is_refused(emulator, make_client, token):
    error = _refused_twice(emulator, make_client, {"access_token": token, "token_type": "Bearer"})
    assert error.status_code == 200 and "access_token" in str(error)
    assert MARK not in str(error) and MARK not in repr(error) and MARK not in repr(error.details)


@pytest.mark.parametrize(
    "token", ["abc", "a-b.c_d~e+f/g", "abc=", "abc==", "A" * 16384, GOOD], ids=lambda t: t[:16]
)
def test_b64tokens_are_handed_out(emulator, make_client, token):
    _serve(emulator, {"access_token": token, "token_type": "Bearer", "expires_in": 600})
    assert make_client().get_token("db:read") == token


@pytest.mark.parametrize("field", ["refresh_token", "sdk_service_token"])
@pytest.mark.parametrize("value", BAD_OPAQUE_TOKENS, ids=repr)
def test_a_refresh_or_service_token_outside_printable_ascii_is_refused(emulator, make_client, field, value):
    error = _refused_twice(emulator, make_client, {"access_token": GOOD, field: value})
    assert field in str(error)
    assert GOOD not in str(error) and MARK not in str(error) and MARK not in repr(error)


def test_good_refresh_and_service_tokens_are_kept(emulator, make_client):
    _serve(emulator, {"access_token": GOOD, "refresh_token": "rt_!~x", "sdk_service_token": "st_AZ09-_."})
    token = make_client().get_token_info("db:read")
    assert token.sdk_service_token == "st_AZ09-_."
    for empty in ({"refresh_token": None, "sdk_service_token": ""}, {}):  # absent, null or "" is none
        emulator.clear_faults()
        _serve(emulator, dict(empty, access_token=GOOD))
        assert make_client().get_token_info("db:read").sdk_service_token is None


@pytest.mark.parametrize(
    "token_type",
    ["mac", "MAC", "DPoP", "Bearer2", "Bear", "", " Bearer", "Bearer ", "N_A", "bearer\r\nX-Evil: 1"],
)
def test_a_token_type_other_than_bearer_is_refused_by_name(emulator, make_client, token_type):
    error = _refused_twice(emulator, make_client, {"access_token": GOOD, "token_type": token_type})
    text = str(error)
    assert "token_type" in text and "Bearer" in text
    assert re.sub(r"[\x00-\x1f\x7f]", "", token_type)[:40] in text
    assert not re.search(r"[\x00-\x1f\x7f]", text)
    assert GOOD not in text


@pytest.mark.parametrize("token_type", [5, 0.5, ["Bearer"], {"t": "Bearer"}, True, False])
def test_a_token_type_that_is_not_a_string_is_refused(emulator, make_client, token_type):
    error = _refused_twice(emulator, make_client, {"access_token": GOOD, "token_type": token_type})
    assert "token_type" in str(error)


def test_a_long_hostile_token_type_is_truncated_and_scrubbed(emulator, make_client, canary):
    token_type = "x" * 10 + "\x00\x1b[31m" + canary + "y" * 5000
    error = _refused_twice(emulator, make_client, {"access_token": GOOD, "token_type": token_type})
    text = str(error)
    assert canary not in text and "\x1b" not in text and "\x00" not in text
    assert len(text) < 300


@pytest.mark.parametrize("token_type", ["Bearer", "bearer", "BEARER", "bEaReR", None])
def test_bearer_in_any_case_or_absent_is_accepted(emulator, make_client, token_type):
    body: Dict[str, Any] = {"access_token": GOOD}
    if token_type is not None:
        body["token_type"] = token_type
    _serve(emulator, body)
    info = make_client().get_token_info("db:read")
    assert info.access_token == GOOD and info.token_type == "Bearer"


@pytest.mark.parametrize("expires_in", [0, -1, -3600, 0.0001, 0.01, "0", "-5", -(10**30), 1])
def test_an_already_expired_grant_never_makes_a_request_storm(emulator, agent, expires_in):
    """Chosen behaviour: such a token is reused for a floor lifetime of 1 s (see
    ``oculus_lite.tokens._oauth.lifetime``). 20 calls 20 ms apart make one request; once the
    second is over, the next 20 make one more. (``1`` is the control: a real 1 s grant.)"""
    _serve(emulator, {"access_token": GOOD, "token_type": "Bearer", "expires_in": expires_in})
    clock = ManualClock()
    client = Client(agent.client_id, agent.client_secret, emulator.url, revocation_interval=None, clock=clock)

    def twenty_calls() -> List[str]:
        tokens = []
        for _ in range(20):
            tokens.append(client.get_token("db:read"))
            clock.advance(0.02)  # 20 calls within 0.4 s: never in the refresh-ahead window
        return tokens

    try:
        assert twenty_calls() == [GOOD] * 20
        assert _token_requests(emulator) == 1
        clock.advance(0.7)  # past the 1 s floor
        assert twenty_calls() == [GOOD] * 20
        assert _token_requests(emulator) == 2
    finally:
        client.stop()


# ------------------------------------------------------------------ the sans-IO half, more cases

ENDPOINT = TokenEndpoint("http://127.0.0.1:9", "id", "canary-S3CRET-7f3a9c", timeout=10.0, margin=10.0)
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


def _parse(body: Dict[str, Any]) -> Any:
    return ENDPOINT.parse("db:read", Response(200, {}, json.dumps(body).encode()), 0.0, ManualClock())


def test_every_character_outside_the_b64token_set_is_refused():
    for code in range(0x2000):
        char = chr(code)
        token = "abc" + char + "def"
        if _B64TOKEN.fullmatch(token):
            assert _parse({"access_token": token}).token == token
        else:
            with pytest.raises(InvalidResponseError):
                _parse({"access_token": token})


def test_every_character_outside_printable_ascii_is_refused_in_a_refresh_token():
    for code in range(0x2000):
        char = chr(code)
        if 0x21 <= code <= 0x7E:
            assert _parse({"access_token": GOOD, "refresh_token": "rt" + char}).refresh_token == "rt" + char
        else:
            with pytest.raises(InvalidResponseError):
                _parse({"access_token": GOOD, "refresh_token": "rt" + char})
