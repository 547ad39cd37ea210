"""Inputs refused before anything is sent (issue 16, "Inputs the client should refuse before
sending"): base URLs that are not what they look like, names that only look like loopback,
and numbers of seconds that are not finite or not in range, at every place that takes one."""

import asyncio
import math
import unicodedata
from decimal import Decimal
from fractions import Fraction
from typing import Any, Callable, Dict, List, Tuple

import pytest

from oculus_lite import AsyncPermissionClient, Client, PermissionClient
from oculus_lite._config import MAX_SECONDS, check_count, check_seconds, validate_base_url
from oculus_lite.cli import main
from oculus_lite.exceptions import ConfigurationError, ValidationError
from oculus_lite.jwt import JwksVerifier
from oculus_lite.transport import is_loopback_host
from oculus_lite.verify._revocation import RevocationList

# ------------------------------------------------------------------ base_url

#: Spaces other than U+0020, zero-width and bidi format characters, invisible fillers,
#: controls, private use: each makes a URL that is not what it looks like.
HIDDEN = [
    "\u00a0",  # no-break space
    "\u3000",  # ideographic space
    "\u1680",
    "\u2000",
    "\u2002",
    "\u2007",
    "\u2009",
    "\u200a",
    "\u202f",
    "\u205f",
    "\u200b",  # zero width space
    "\u200c",
    "\u200d",
    "\u200e",
    "\u200f",
    "\u202a",
    "\u202e",  # right-to-left override
    "\u2060",
    "\u2061",
    "\u2064",
    "\u2066",
    "\u2069",
    "\ufeff",  # byte order mark
    "\u00ad",  # soft hyphen
    "\u034f",  # combining grapheme joiner
    "\u061c",
    "\u115f",  # hangul choseong filler
    "\u1160",
    "\u17b4",
    "\u180b",
    "\u180e",
    "\u3164",  # hangul filler
    "\uffa0",
    "\ufe0f",  # variation selector
    "\U000e0001",
    "\U000e0020",  # tag space
    "\U000e0100",
    "\ue000",  # private use
    "\U0010fffd",
    "\ud800",  # lone surrogate
    "\u0378",  # unassigned
    "\x85",
    "\u2028",
    "\u2029",
    "\x00",
    "\x7f",
    "\x9f",
    " ",
    "\t",
    "\n",
]

PLACES = [
    "https://api{}.example.com",
    "https://{}api.example.com",
    "https://api.example.com{}",
    "https://api.example.com{}:443",
    "https://api.example.com/v1{}",
    "https://api.example.com{}/v1",
    "https://127.0.0.1{}",
]


def _entry_points(url: str) -> List[Callable[[], Any]]:
    return [
        lambda: validate_base_url(url),
        lambda: Client("id", "secret", url),
        lambda: JwksVerifier(url),
        lambda: JwksVerifier(jwks_url=url, check_revocation=False),
        lambda: JwksVerifier("https://api.example.com", revocation_url=url),
        lambda: PermissionClient("ak_x", url),
        lambda: AsyncPermissionClient("ak_x", url),
    ]


@pytest.mark.parametrize("char", HIDDEN, ids=lambda c: "U+{:04X}".format(ord(c)))
@pytest.mark.parametrize("place", PLACES)
def test_a_url_with_a_hidden_character_is_refused(char, place):
    url = place.format(char)
    if url.strip(" \t\r\n\f\v") != url:  # an ASCII space or newline at an end is trimmed, harmlessly
        return
    for make in _entry_points(url):
        with pytest.raises(ConfigurationError) as info:
            make()
        text = str(info.value)
        assert "invisible" in text and "U+{:04X}".format(ord(char)) in text


def test_a_hidden_character_from_the_environment_is_refused(monkeypatch):
    monkeypatch.setenv("ANTI_AI_URL", "https://api\u00a0.example.com")
    with pytest.raises(ConfigurationError, match="ANTI_AI_URL|base_url"):
        Client("id", "secret")
    monkeypatch.setenv("AGENT_OTP_URL", "https://otp\u3000.example.com")
    with pytest.raises(ConfigurationError, match="AGENT_OTP_URL"):
        PermissionClient("ak_x")


def test_every_space_control_format_and_unassigned_code_point_of_the_bmp_is_refused():
    refused = 0
    for code in range(0x80, 0x10000):
        char = chr(code)
        if unicodedata.category(char)[0] not in "ZC":
            continue
        with pytest.raises(ConfigurationError):
            validate_base_url("https://api{}.example.com".format(char))
        refused += 1
    assert refused > 8000  # spaces, controls, format, surrogates, private use, unassigned


@pytest.mark.parametrize(
    "url",
    ["https://bücher.example", "https://例え.テスト/v1", "https://xn--bcher-kva.example", "https://a-b.c"],
)
def test_international_and_ordinary_names_are_still_accepted(url):
    assert validate_base_url(url) == url.lower() if url.isascii() else validate_base_url(url)


# ------------------------------------------------------------------ loopback


@pytest.mark.parametrize(
    "host",
    [
        "anything.localhost",
        "evil.localhost",
        "a.b.localhost",
        "localhost.localhost",
        "LOCALHOST.LOCALHOST",
        "localhost.",
        ".localhost",
        "localhost.evil.example.com",
        "127.0.0.1.nip.io",
        "127.1",  # inet_aton's shorthand, not a literal address
        "2130706433",
        "0x7f000001",
        "0.0.0.0",
        "::",
        "[::]",
        "10.0.0.1",
        "localhost\u200b",
        "ｌｏｃａｌｈｏｓｔ",
        "",
    ],
)
def test_only_literal_loopback_addresses_and_localhost_itself_are_loopback(host):
    assert not is_loopback_host(host)


@pytest.mark.parametrize(
    "host", ["localhost", "LOCALHOST", "LocalHost", "127.0.0.1", "127.255.0.9", "::1", "[::1]"]
)
def test_loopback_hosts(host):
    assert is_loopback_host(host)


@pytest.mark.parametrize(
    "url",
    [
        "http://anything.localhost:8400",
        "http://evil.localhost",
        "http://x.y.localhost:1/v1",
        "http://localhost.:8400",
        "http://127.1:8400",
    ],
)
def test_plain_http_to_a_name_under_localhost_is_refused(url):
    for make in _entry_points(url):
        with pytest.raises(ConfigurationError, match="allow_insecure_http"):
            make()
    assert validate_base_url(url, allow_insecure_http=True)  # an explicit opt-in still works


@pytest.mark.parametrize(
    "url", ["http://localhost:8400", "http://127.0.0.1", "http://[::1]:9", "http://127.9.9.9"]
)
def test_plain_http_to_loopback_is_accepted(url):
    assert validate_base_url(url).startswith("http://")


# ------------------------------------------------------------------ numbers of seconds

NOT_SECONDS: List[Any] = [
    float("nan"),
    float("inf"),
    float("-inf"),
    -1,
    -1e-9,
    -(10**400),
    10**400,
    10**5000,
    1e300,
    MAX_SECONDS + 1,
    2**63,
    True,
    False,
    "10",
    b"10",
    1j,
    [10],
]
NOT_SECONDS_OR_NONE = NOT_SECONDS + [None]
BASE = "https://api.example.com"

#: (argument name, builds the object with that argument, whether 0 is allowed, None allowed)
CONSTRUCTORS: List[Tuple[str, Callable[[Any], Any], bool, bool]] = [
    ("timeout", lambda v: Client("id", "s", BASE, timeout=v, revocation_interval=None), False, False),
    (
        "refresh_margin",
        lambda v: Client("id", "s", BASE, refresh_margin=v, revocation_interval=None),
        True,
        False,
    ),
    ("revocation_interval", lambda v: Client("id", "s", BASE, revocation_interval=v), False, True),
    ("leeway", lambda v: JwksVerifier(BASE, leeway=v, check_revocation=False), True, False),
    ("cache_ttl", lambda v: JwksVerifier(BASE, cache_ttl=v, check_revocation=False), True, False),
    ("min_cache_ttl", lambda v: JwksVerifier(BASE, min_cache_ttl=v, check_revocation=False), True, False),
    (
        "refetch_cooldown",
        lambda v: JwksVerifier(BASE, refetch_cooldown=v, check_revocation=False),
        True,
        False,
    ),
    ("timeout", lambda v: JwksVerifier(BASE, timeout=v, check_revocation=False), False, False),
    ("revocation_interval", lambda v: JwksVerifier(BASE, revocation_interval=v), False, True),
    (
        "revocation_interval",
        lambda v: JwksVerifier(BASE, revocation_interval=v, check_revocation=False),
        False,
        True,
    ),
    ("interval", lambda v: RevocationList(BASE, transport=None, interval=v), False, True),
    ("timeout", lambda v: RevocationList(BASE, transport=None, timeout=v), False, False),
    ("timeout", lambda v: PermissionClient("ak_x", BASE, timeout=v), False, False),
    ("timeout", lambda v: AsyncPermissionClient("ak_x", BASE, timeout=v), False, False),
]


def _close(made: Any) -> None:
    for name in ("stop", "close"):
        method = getattr(made, name, None)
        if callable(method):
            result = method()
            if asyncio.iscoroutine(result):
                asyncio.run(result)
            return


@pytest.mark.parametrize("name, make, zero_ok, none_ok", CONSTRUCTORS, ids=[c[0] for c in CONSTRUCTORS])
def test_every_constructor_refuses_a_number_of_seconds_that_is_not_one(name, make, zero_ok, none_ok):
    for value in NOT_SECONDS + ([] if zero_ok else [0, 0.0, -0.0]) + ([] if none_ok else [None]):
        with pytest.raises(ConfigurationError) as info:
            _close(make(value))
        text = str(info.value)
        assert text.split(" must ")[0].replace(" ", "_").endswith(name.split("_")[-1]), text
        assert "number of seconds" in text, text
    for value in [0.001, 1, 30, MAX_SECONDS] + ([0] if zero_ok else []) + ([None] if none_ok else []):
        _close(make(value))


@pytest.mark.parametrize("value", [-1, 1.5, True, "2", None, float("nan")])
def test_the_verifier_refuses_counts_that_are_not_counts(value):
    with pytest.raises(ConfigurationError, match="retries"):
        JwksVerifier(BASE, retries=value, check_revocation=False)
    with pytest.raises(ConfigurationError, match="memo_size"):
        JwksVerifier(BASE, memo_size=value, check_revocation=False)
    with pytest.raises(ConfigurationError, match="memo_size"):
        JwksVerifier(BASE, memo_size=0, check_revocation=False)


def _calls(client: PermissionClient) -> List[Tuple[str, Callable[[Dict[str, Any]], Any]]]:
    return [
        ("request", lambda kw: client.request_permission("x", {}, wait_for_approval=True, **kw)),
        ("wait", lambda kw: client.wait_for_permission("perm_1", **kw)),
        ("execute", lambda kw: client.execute_with_permission(lambda token, scope: None, action="x", **kw)),
    ]


def test_every_permission_call_refuses_bad_seconds_before_sending(emulator):
    key = emulator.otp.demo_api_key
    before = emulator.stats()["requests"]
    with PermissionClient(key, emulator.url) as client:
        for what, call in _calls(client):
            for argument in ("timeout", "poll_interval"):
                for value in NOT_SECONDS_OR_NONE + [0]:
                    with pytest.raises(ValidationError, match=argument) as info:
                        call({argument: value})
                    assert "number of seconds" in str(info.value), (what, argument, value)
        for value in [29, 3601, 10**400, True, 60.0, None, "60"]:
            with pytest.raises(ValidationError, match="ttl"):
                client.request_permission("x", {}, ttl=value)  # type: ignore[arg-type]
    assert emulator.stats()["requests"] == before  # nothing was sent


def test_the_async_permission_client_refuses_them_too(emulator):
    async def main_() -> None:
        async with AsyncPermissionClient(emulator.otp.demo_api_key, emulator.url) as client:
            for value in (float("nan"), float("inf"), 10**400, -1):
                with pytest.raises(ValidationError, match="timeout"):
                    await client.wait_for_permission("perm_1", timeout=value)
                with pytest.raises(ValidationError, match="poll_interval"):
                    await client.request_permission("x", {}, wait_for_approval=True, poll_interval=value)

    before = emulator.stats()["requests"]
    asyncio.run(main_())
    assert emulator.stats()["requests"] == before


@pytest.mark.parametrize("text", ["inf", "-inf", "nan", "1e999", "0", "-1", "301", "1e9", "soon", ""])
def test_the_doctor_timeout_is_checked_the_same_way(capsys, text):
    assert main(["doctor", "--timeout=" + text]) == 2
    assert "between 0 and 300" in capsys.readouterr().err


def test_the_helper_itself():
    assert check_seconds(5, "x") == 5.0 and isinstance(check_seconds(5, "x"), float)
    assert check_seconds(0, "x", allow_zero=True) == 0.0
    assert check_seconds(300, "x", maximum=300) == 300.0
    assert check_seconds(Fraction(1, 2), "x") == 0.5  # any Real (numpy's numbers too)
    for bad in (Decimal("1"), Fraction(10**400), -Fraction(10**400)):
        with pytest.raises(ConfigurationError):
            check_seconds(bad, "x")
    with pytest.raises(ConfigurationError, match="at most 300"):
        check_seconds(300.5, "x", maximum=300)
    with pytest.raises(ValidationError):
        check_seconds(math.nan, "x", error=ValidationError)
    assert check_count(3, "n", minimum=1, maximum=3) == 3
    for bad in (0, 4, True, 2.0, "2"):  # type: ignore[assignment]
        with pytest.raises(ConfigurationError, match="n must be"):
            check_count(bad, "n", minimum=1, maximum=3)
