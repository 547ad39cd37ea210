"""Every fault kind of the emulator against the token endpoint.

For each kind: what is retried, the typed error a caller gets, no canary secret in
it, and the rule that matters most in production: a token that is still valid is
never evicted because the endpoint misbehaves. Callers keep getting it until it
has really expired, and only then see the error.
"""

import asyncio
import time
from typing import Any, Dict, List, Tuple, Type

import pytest

from oculus_lite import (
    InvalidResponseError,
    NetworkError,
    NetworkTimeoutError,
    OculusError,
    RateLimitError,
    ResponseTooLargeError,
    ServerError,
)

TOKEN = "/oauth/token"

# kind -> (rule, expected error, token requests sent for one call with retries=2, timeout=1.5)
FAULTS: Dict[str, Tuple[Dict[str, Any], Type[OculusError], int]] = {
    "status-503": ({"kind": "status", "status": 503}, ServerError, 3),
    "status-429": ({"kind": "status", "status": 429, "retry_after": "0"}, RateLimitError, 3),
    "delay": ({"kind": "delay", "delay_ms": 4000}, NetworkTimeoutError, 1),
    "close": ({"kind": "close"}, NetworkError, 3),
    "truncate": ({"kind": "truncate"}, NetworkError, 3),
    "badjson": ({"kind": "badjson"}, InvalidResponseError, 1),
    "oversize": ({"kind": "oversize", "size": 2 << 20}, ResponseTooLargeError, 1),
    "content_type": ({"kind": "content_type"}, InvalidResponseError, 1),
}


def rule(name: str, **how: Any) -> Dict[str, Any]:
    spec = dict(FAULTS[name][0], path=TOKEN)
    spec.update(how or {"every": 1})
    return spec


def assert_clean(exc: BaseException, canary: str) -> None:
    for text in (str(exc), repr(exc), repr(getattr(exc, "details", None))):
        assert canary not in text


@pytest.fixture
def short_client(emulator, make_client, canary):
    """A client for an agent whose tokens live 1 s: STALE after 0.5 s, MARGIN after 0.75 s."""
    emulator.add_agent("short", canary, scopes=["db:*"], token_ttl=1)
    return make_client(client_id="short", timeout=1.5, retries=1)


@pytest.mark.parametrize("name", sorted(FAULTS))
def test_fault_without_a_cached_token(emulator, make_client, token_requests, canary, name):
    _, expected, requests = FAULTS[name]
    emulator.set_faults([rule(name)])
    client = make_client(timeout=1.5, retries=2)
    with pytest.raises(expected) as info:
        client.get_token("db:read")
    assert isinstance(info.value, OculusError)
    assert_clean(info.value, canary)
    assert token_requests() == requests
    assert emulator.stats()["faults_fired"] == requests
    # the endpoint recovers: the next call works, nothing poisoned the cache
    emulator.clear_faults()
    assert client.get_token("db:read")


@pytest.mark.parametrize("name", ["status-503", "close", "truncate"])
def test_transient_fault_is_retried_transparently(emulator, make_client, token_requests, name):
    emulator.set_faults([rule(name, next=2)])
    assert make_client(retries=2).get_token("db:read")
    assert token_requests() == 3


def test_429_retry_after_is_honoured_and_reported(emulator, make_client, token_requests):
    emulator.set_faults([rule("status-429", every=1, retry_after="1")])
    client = make_client(timeout=5, retries=1)
    with pytest.raises(RateLimitError) as info:
        client.get_token("db:read")
    assert info.value.retry_after == 1.0
    assert token_requests() == 2  # waited the Retry-After once, then gave up


def test_trickle_beyond_the_timeout_is_a_timeout(emulator, make_client, token_requests):
    # ~860-byte body at one byte per 3 ms: ~2.6 s of trickle against a 1 s timeout
    emulator.set_faults([{"path": TOKEN, "kind": "trickle", "interval_ms": 3, "every": 1}])
    client = make_client(timeout=1, retries=0)
    with pytest.raises(NetworkTimeoutError):
        client.get_token("db:read")


def test_slow_but_timely_trickle_succeeds(emulator, make_client):
    emulator.set_faults([{"path": TOKEN, "kind": "trickle", "interval_ms": 0, "every": 1}])
    assert make_client(timeout=5).get_token("db:read")


def _serve_until_expired(client: Any, entry: Any) -> List[Tuple[str, Any, float]]:
    """Call get_token every 20 ms until just after the cached entry expired."""
    calls: List[Tuple[str, Any, float]] = []
    while time.monotonic() < entry.expires + 0.2:
        try:
            calls.append(("ok", client.get_token("db:read"), time.monotonic()))
        except OculusError as exc:
            calls.append(("error", exc, time.monotonic()))
        time.sleep(0.02)
    return calls


@pytest.mark.parametrize("name", sorted(FAULTS))
def test_valid_token_is_served_while_the_endpoint_fails(emulator, short_client, canary, name):
    _, expected, _ = FAULTS[name]
    first = short_client.get_token("db:read")
    entry = short_client._cache.get("db:read")
    emulator.set_faults([rule(name)])
    calls = _serve_until_expired(short_client, entry)
    served = [c for c in calls if c[0] == "ok"]
    errors = [c for c in calls if c[0] == "error"]
    # the whole life of the token was covered, through STALE and (unless the server hangs) MARGIN
    assert any(t >= entry.refresh_at for _, _, t in served)
    if name != "delay":  # a hung refresh holds MARGIN callers until expiry, then they get the error
        assert any(t >= entry.margin_at for _, _, t in served)
    assert all(value == first for _, value, _ in served)
    # an error reaches a caller only once the token has really run out
    assert all(t >= entry.expires for _, _, t in errors)
    for _, exc, _ in errors:
        # a refresh may not outlive the token it replaces, so one that straddles the expiry
        # can end as a timeout instead of the fault's own error
        assert isinstance(exc, (expected, NetworkTimeoutError))
        assert_clean(exc, canary)
    assert emulator.stats()["faults_fired"] >= 1
    # afterwards: the typed error, not the expired token
    with pytest.raises(expected) as info:
        short_client.get_token("db:read")
    assert_clean(info.value, canary)
    emulator.clear_faults()
    assert short_client.get_token("db:read") != first


def test_valid_token_is_served_to_coroutines_while_the_endpoint_fails(emulator, short_client):
    first = short_client.get_token("db:read")
    entry = short_client._cache.get("db:read")
    emulator.set_faults([rule("close")])

    async def main() -> Tuple[List[str], List[Tuple[OculusError, float]]]:
        got: List[str] = []
        failed: List[Tuple[OculusError, float]] = []
        while time.monotonic() < entry.expires + 0.2:
            try:
                got.append(await short_client.aget_token("db:read"))
            except OculusError as exc:
                failed.append((exc, time.monotonic()))
            await asyncio.sleep(0.02)
        return got, failed

    got, failed = asyncio.run(main())
    assert got and set(got) == {first}
    assert all(isinstance(e, NetworkError) and t >= entry.expires for e, t in failed)


@pytest.mark.parametrize(
    "name",
    [
        "status-503",
        "badjson",
        "content_type",
    ],
)
def test_failing_refresh_backs_off_instead_of_storming(emulator, short_client, token_requests, name):
    short_client.get_token("db:read")
    entry = short_client._cache.get("db:read")
    emulator.set_faults([rule(name)])
    before = token_requests()
    calls = _serve_until_expired(short_client, entry)
    sent = token_requests() - before
    # with backoff (0.5 s, then 1 s) one or two refresh attempts fit in the token's last half second
    assert sent * 4 <= len(calls), (sent, len(calls))
