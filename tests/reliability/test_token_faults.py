"""Every fault kind of the emulator against the token endpoint.

For each kind: what is retried, the typed error a caller gets, no canary secret in
it, and the rule that matters most in production: a token that is still valid is
never evicted because the endpoint misbehaves. Callers keep getting it until it
has really expired, and only then see the error.

Time is a ``ManualClock`` shared by the emulator and the client, moved to the exact
instants of a token's life; only a hung server (``delay``) and a trickle take real
time, because a socket timeout does. Timeouts stay as generous as the legitimate
requests of a test need on a loaded machine.
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


#: Kinds the client retries (with retries=1 a fetch then sends two requests).
RETRIED = {"status-503", "status-429", "close", "truncate"}
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
def make_agent_client(emulator, make_client, canary, clock):
    """A client (on the test's manual clock, one retry unless told) for an agent whose tokens
    live ``ttl`` seconds."""

    def make(ttl: int, retries: int = 1, timeout: float = 10.0) -> Any:
        emulator.add_agent("short", canary, scopes=["db:*"], token_ttl=ttl)
        return make_client(client_id="short", timeout=timeout, retries=retries)

    return make


@pytest.mark.parametrize("name", INSTANT)
def test_fault_without_a_cached_token(emulator, make_client, token_requests, canary, clock, name):
    _, expected, requests = FAULTS[name]
    emulator.set_faults([rule(name)])
    client = make_client(retries=2)
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
    # Real time: a socket timeout. 1.5 s is the whole call's budget, so there is none left to retry.
    emulator.set_faults([rule("delay")])
    client = make_client(timeout=1.5, retries=2)
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
    # Real time: ~860-byte body at one byte per 3 ms (~2.6 s) against a 0.25 s timeout
    emulator.set_faults([{"path": TOKEN, "kind": "trickle", "interval_ms": 3, "every": 1}])
    client = make_client(timeout=0.25, retries=0)
    with pytest.raises(NetworkTimeoutError):
        client.get_token("db:read")
    assert token_requests() == 1


def test_slow_but_timely_trickle_succeeds(emulator, make_client):
    emulator.set_faults([{"path": TOKEN, "kind": "trickle", "interval_ms": 0, "every": 1}])
    assert make_client(timeout=5).get_token("db:read")


def _per_fetch(name: str) -> int:
    """Requests one refresh sends with retries=1."""
    return 2 if name in RETRIED else 1


def _stale_resend(name: str) -> int:
    """Extra requests the first failing fetch sends after a healthy one.

    That fetch goes out on the kept-alive connection of the healthy one. A server that closes it
    before answering looks exactly like one that timed the idle connection out, so the transport
    resends once on a new connection (token grants are safe to resend) before the retry policy
    counts an attempt. Later fetches find no idle connection and open new ones.
    """
    return 1 if name == "close" else 0


@pytest.mark.parametrize("name", INSTANT)
def test_valid_token_is_served_while_the_endpoint_fails(emulator, make_agent_client, canary, clock, name):
    _, expected, _ = FAULTS[name]
    client = make_agent_client(600)
    first = client.get_token("db:read")
    entry = client._cache.get("db:read")
    emulator.set_faults([rule(name)])
    per_fetch = _per_fetch(name)
    extra = _stale_resend(name)

    def fired() -> int:
        return int(emulator.stats()["faults_fired"])

    # FRESH: served from the cache, nothing sent
    clock.advance_to(entry.refresh_at - 0.001)
    assert client.get_token("db:read") == first and fired() == 0
    # STALE: served at once; the background refresh fails (retried where the kind allows)
    clock.advance_to(entry.refresh_at)
    assert client.get_token("db:read") == first
    clock.wait_idle()
    assert fired() == per_fetch + extra
    # MARGIN: the caller waits for a refresh; it fails, and the still-valid token is served
    clock.advance_to(entry.margin_at)
    assert client.get_token("db:read") == first and fired() == 2 * per_fetch + extra
    # the last instant: no time left to refresh, still served
    clock.advance_to(entry.expires - 0.001)
    assert client.get_token("db:read") == first and fired() == 2 * per_fetch + extra
    # EXPIRED: the caller fetches, and gets the fault's typed error, not the expired token
    clock.advance_to(entry.expires)
    with pytest.raises(expected) as info:
        client.get_token("db:read")
    assert_clean(info.value, canary)
    assert fired() == 3 * per_fetch + extra
    emulator.clear_faults()
    assert client.get_token("db:read") != first


def test_valid_token_is_served_while_the_endpoint_hangs(emulator, make_agent_client, canary, clock):
    # A hung server costs real time (socket timeouts). A refresh may not outlive the token it
    # replaces, so a 1 s token keeps those waits short until it has expired, and the 1.5 s
    # timeout bounds the one after. No retries (on a manual clock a timed-out attempt takes no
    # time, so a retry would only repeat the wait).
    client = make_agent_client(1, retries=0, timeout=1.5)
    first = client.get_token("db:read")
    entry = client._cache.get("db:read")
    emulator.set_faults([rule("delay")])

    def fired() -> int:
        return int(emulator.stats()["faults_fired"])

    clock.advance_to(entry.refresh_at - 0.001)
    assert client.get_token("db:read") == first and fired() == 0
    # STALE: served; the background refresh hangs until just before expiry
    clock.advance_to(entry.refresh_at)
    assert client.get_token("db:read") == first
    clock.wait_idle()
    assert fired() == 1
    # MARGIN to the last instant: served without waiting (the failure backs off past expiry)
    for instant in (entry.margin_at, entry.expires - 0.001):
        clock.advance_to(instant)
        assert client.get_token("db:read") == first
    assert fired() == 1
    # EXPIRED: the caller waits out its timeout and gets the timeout error
    clock.advance_to(entry.expires)
    with pytest.raises(NetworkTimeoutError) as info:
        client.get_token("db:read")
    assert_clean(info.value, canary)
    assert fired() == 2
    emulator.clear_faults()
    assert client.get_token("db:read") != first


def test_valid_token_is_served_to_coroutines_while_the_endpoint_fails(emulator, make_agent_client, clock):
    client = make_agent_client(600)
    first = client.get_token("db:read")
    entry = client._cache.get("db:read")
    emulator.set_faults([rule("close")])

    async def main() -> None:
        clock.advance_to(entry.refresh_at - 0.001)
        assert await client.aget_token("db:read") == first
        assert emulator.stats()["faults_fired"] == 0
        clock.advance_to(entry.refresh_at)
        assert await client.aget_token("db:read") == first
        clock.wait_idle()  # the refresh STALE started runs on the worker thread
        # that one refresh, retried once, plus the resend of the kept-alive first try
        assert emulator.stats()["faults_fired"] == 3
        clock.advance_to(entry.margin_at)
        assert await client.aget_token("db:read") == first  # this coroutine's own refresh failed
        assert emulator.stats()["faults_fired"] == 5
        clock.advance_to(entry.expires)
        with pytest.raises(NetworkError):
            await client.aget_token("db:read")

    asyncio.run(main())
    assert emulator.stats()["faults_fired"] == 7


@pytest.mark.parametrize("name", ["status-503", "badjson", "content_type"])
def test_failing_refresh_backs_off_instead_of_storming(
    emulator, make_agent_client, token_requests, clock, name
):
    client = make_agent_client(600)
    first = client.get_token("db:read")
    entry = client._cache.get("db:read")
    emulator.set_faults([rule(name)])
    before = token_requests()
    # A caller every 0.1 s through STALE and MARGIN (70 s, 700 calls). After each failure the
    # next refresh waits 0.5 s, then 1, 2, 4, 8, 16, 30 (the cap): refreshes start at about
    # 530, 530.5, 531.5, 533.5, 537.5, 545.5, 561.5 and 591.5 s of the token's 600, 8 in all.
    calls = 0
    clock.advance_to(entry.refresh_at)
    while clock.monotonic() < entry.expires:
        assert client.get_token("db:read") == first
        calls += 1
        clock.wait_idle()  # a refresh a STALE call started has finished
        clock.advance(0.1)
    assert calls >= 690
    assert token_requests() - before == 8 * _per_fetch(name)
