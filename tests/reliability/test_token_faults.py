"""Every fault kind of the emulator against the token endpoint.

For each kind: what is retried, the typed error a caller gets, no canary secret in
it, and the rule that matters most in production: a token that is still valid is
never evicted because the endpoint misbehaves. Callers keep getting it until it
has really expired, and only then see the error.

Time is a ``ManualClock`` shared by the emulator and the client, moved to the exact
instants of a token's life; only a hung server (``delay``) and a trickle need real
time, because a socket timeout does.
"""

import asyncio
from typing import Any, Dict, Tuple, Type

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

# kind -> (rule, expected error, token requests sent for one call with retries=2). A hung
# request (delay) uses up the whole call's timeout: no time is left to retry it.
FAULTS: Dict[str, Tuple[Dict[str, Any], Type[OculusError], int]] = {
    "status-503": ({"kind": "status", "status": 503}, ServerError, 3),
    "status-429": ({"kind": "status", "status": 429, "retry_after": "0"}, RateLimitError, 3),
    "delay": ({"kind": "delay", "delay_ms": 5000}, NetworkTimeoutError, 1),
    "close": ({"kind": "close"}, NetworkError, 3),
    "truncate": ({"kind": "truncate"}, NetworkError, 3),
    "badjson": ({"kind": "badjson"}, InvalidResponseError, 1),
    "oversize": ({"kind": "oversize", "size": 2 << 20}, ResponseTooLargeError, 1),
    "content_type": ({"kind": "content_type"}, InvalidResponseError, 1),
}


#: Kinds the client retries (with retries=1 a fetch then sends two requests). On a manual
#: clock a hung request takes no time, so it is retried too.
RETRIED = {"status-503", "status-429", "delay", "close", "truncate"}
#: Kinds that fail at once, without real time passing.
INSTANT = sorted(set(FAULTS) - {"delay"})


def rule(name: str, **how: Any) -> Dict[str, Any]:
    spec = dict(FAULTS[name][0], path=TOKEN)
    spec.update(how or {"every": 1})
    return spec


def assert_clean(exc: BaseException, canary: str) -> None:
    for text in (str(exc), repr(exc), repr(getattr(exc, "details", None))):
        assert canary not in text


@pytest.fixture
def short_client(emulator, make_client, canary, clock):
    """A client (on the test's manual clock) for an agent whose tokens live 1 s: STALE after
    0.5 s, MARGIN after 0.75 s. Its 0.5 s timeout bounds the real wait on a hung server."""
    emulator.add_agent("short", canary, scopes=["db:*"], token_ttl=1)
    return make_client(client_id="short", timeout=0.5, retries=1)


@pytest.mark.parametrize("name", INSTANT)
def test_fault_without_a_cached_token(emulator, make_client, token_requests, canary, clock, name):
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


def test_hung_token_endpoint_uses_up_the_timeout(emulator, make_client, token_requests, canary):
    # Real time: a socket timeout. 0.5 s is the whole call's budget, so there is none left to retry.
    emulator.set_faults([rule("delay")])
    client = make_client(timeout=0.5, retries=2)
    with pytest.raises(NetworkTimeoutError) as info:
        client.get_token("db:read")
    assert_clean(info.value, canary)
    assert token_requests() == 1 and emulator.stats()["faults_fired"] == 1
    emulator.clear_faults()
    assert client.get_token("db:read")


@pytest.mark.parametrize("name", ["status-503", "close", "truncate"])
def test_transient_fault_is_retried_transparently(emulator, make_client, token_requests, clock, name):
    emulator.set_faults([rule(name, next=2)])
    assert make_client(retries=2).get_token("db:read")
    assert token_requests() == 3


def test_429_retry_after_is_honoured_and_reported(emulator, make_client, token_requests, clock):
    emulator.set_faults([rule("status-429", every=1, retry_after="1")])
    client = make_client(timeout=5, retries=1)
    started = clock.monotonic()
    with pytest.raises(RateLimitError) as info:
        client.get_token("db:read")
    assert info.value.retry_after == 1.0
    assert token_requests() == 2  # waited the Retry-After once, then gave up
    assert clock.monotonic() - started == pytest.approx(1.0)  # exactly the Retry-After, no more


def test_trickle_beyond_the_timeout_is_a_timeout(emulator, make_client, token_requests):
    # Real time: ~860-byte body at one byte per 3 ms (~2.6 s) against a 0.5 s timeout
    emulator.set_faults([{"path": TOKEN, "kind": "trickle", "interval_ms": 3, "every": 1}])
    client = make_client(timeout=0.5, retries=0)
    with pytest.raises(NetworkTimeoutError):
        client.get_token("db:read")
    assert token_requests() == 1


def test_slow_but_timely_trickle_succeeds(emulator, make_client):
    emulator.set_faults([{"path": TOKEN, "kind": "trickle", "interval_ms": 0, "every": 1}])
    assert make_client(timeout=5).get_token("db:read")


def _per_fetch(name: str) -> int:
    """Requests one refresh sends with retries=1."""
    return 2 if name in RETRIED else 1


@pytest.mark.parametrize("name", sorted(FAULTS))
def test_valid_token_is_served_while_the_endpoint_fails(emulator, short_client, canary, clock, name):
    _, expected, _ = FAULTS[name]
    first = short_client.get_token("db:read")
    entry = short_client._cache.get("db:read")
    emulator.set_faults([rule(name)])

    def fired() -> int:
        return int(emulator.stats()["faults_fired"])

    # FRESH: served from the cache, nothing sent
    clock.advance_to(entry.refresh_at - 0.001)
    assert short_client.get_token("db:read") == first and fired() == 0
    # STALE: served at once; the background refresh fails (retried where the kind allows)
    clock.advance_to(entry.refresh_at)
    assert short_client.get_token("db:read") == first
    clock.wait_idle()
    assert fired() == _per_fetch(name)
    # MARGIN, to the last instant: still served (the failure backs off; nothing more is sent)
    for instant in (entry.margin_at, entry.expires - 0.001):
        clock.advance_to(instant)
        assert short_client.get_token("db:read") == first
    assert fired() == _per_fetch(name)
    # EXPIRED: the caller fetches, and gets the fault's typed error, not the expired token
    clock.advance_to(entry.expires)
    with pytest.raises(expected) as info:
        short_client.get_token("db:read")
    assert_clean(info.value, canary)
    assert fired() == 2 * _per_fetch(name)
    emulator.clear_faults()
    assert short_client.get_token("db:read") != first


def test_valid_token_is_served_to_coroutines_while_the_endpoint_fails(emulator, short_client, clock):
    first = short_client.get_token("db:read")
    entry = short_client._cache.get("db:read")
    emulator.set_faults([rule("close")])

    async def main() -> None:
        clock.advance_to(entry.refresh_at - 0.001)
        assert await short_client.aget_token("db:read") == first
        assert emulator.stats()["faults_fired"] == 0
        clock.advance_to(entry.refresh_at)
        assert await short_client.aget_token("db:read") == first
        clock.wait_idle()  # the refresh STALE started runs on the worker thread
        for instant in (entry.margin_at, entry.expires - 0.001):
            clock.advance_to(instant)
            assert await short_client.aget_token("db:read") == first
        assert emulator.stats()["faults_fired"] == 2  # that one refresh, retried once
        clock.advance_to(entry.expires)
        with pytest.raises(NetworkError):
            await short_client.aget_token("db:read")

    asyncio.run(main())
    assert emulator.stats()["faults_fired"] == 4


@pytest.mark.parametrize("name", ["status-503", "badjson", "content_type"])
def test_failing_refresh_backs_off_instead_of_storming(emulator, short_client, token_requests, clock, name):
    first = short_client.get_token("db:read")
    entry = short_client._cache.get("db:read")
    emulator.set_faults([rule(name)])
    before = token_requests()
    # a caller every 20 ms through STALE and MARGIN: 25 calls, one refresh (the first failure
    # backs off 0.5 s, past the token's end)
    calls = 0
    clock.advance_to(entry.refresh_at)
    while clock.monotonic() < entry.expires:
        assert short_client.get_token("db:read") == first
        calls += 1
        if calls == 1:
            clock.wait_idle()  # the background refresh the first STALE call started
        clock.advance(0.02)
    assert calls >= 20
    assert token_requests() - before == _per_fetch(name)
