"""The agent token's life under governance: renewed ahead of expiry by the client's own machinery
(single flight, refresh ahead, backoff), a failed renewal keeps the valid token, short tokens are
not re-fetched every few seconds, a revoked token is re-fetched once, ``TokenExpiredError`` only when
no valid token can be had (official flaw C6). Time moves only by ``clock.advance``."""

import asyncio
import threading
from typing import List

import pytest

from oculus_lite import ManualClock
from oculus_lite.emulator import Emulator
from oculus_lite.exceptions import TokenExpiredError, TokenRevokedException

from .conftest import (
    MakeClient,
    configure_agent,
    events,
    jti_of,
    published,
    runtime,
    wait_for,
    worker_barrier,
)

READ = "stripe.customers.read"


def test_renewed_ahead_of_expiry_in_the_background(
    emu: Emulator, make_client: MakeClient, clock: ManualClock
) -> None:
    """A 120 s token is refreshed from 80 s on (a quarter of its life ahead, before the 10 s
    margin) while callers keep the current one; 16 callers at once cause one request."""
    configure_agent(emu, token_ttl=120)
    client = make_client(sync_interval=3600.0)
    read = client.tool(READ)(lambda: "ok")
    read()
    first = jti_of(client)
    clock.advance(79.0)
    read()
    worker_barrier(client)
    assert emu.stats()["token_requests"] == 1  # still fresh: nothing asked
    clock.advance(2.0)  # 81 s: refresh ahead
    barrier = threading.Barrier(16)
    seen: List[str] = []

    def call() -> None:
        barrier.wait()
        seen.append(read())

    threads = [threading.Thread(target=call) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == ["ok"] * 16  # nobody waited for the renewal
    worker_barrier(client)
    assert emu.stats()["token_requests"] == 2  # single flight
    read()
    second = jti_of(client)
    assert second != first
    client.stop()
    jtis = [e["jti"] for e in events(emu, tool_name="<lambda>")]
    assert jtis.count(first) == 18 and jtis[-1] == second


def test_the_sync_renews_the_token_and_the_state_without_tool_calls(
    emu: Emulator, make_client: MakeClient, clock: ManualClock
) -> None:
    configure_agent(emu, token_ttl=120)
    client = make_client(sync_interval=60.0)
    client.startup()
    first = published(client).jti
    for _ in range(3):  # syncs at 60 s (fresh), 120 s (expired: renewed), 180 s
        clock.advance(60.0)
        worker_barrier(client)
    state, entry = published(client), runtime(client).current[1]
    assert state.jti != first and entry is client._cache.get(runtime(client).key)
    assert client._governance_state() is state  # the hit path serves what the sync published
    client.stop()
    assert emu.stats()["token_requests"] == 2  # at 0 s and 120 s (the second is fresh until 200 s)


def test_a_failed_renewal_keeps_the_valid_token(
    emu: Emulator, make_client: MakeClient, clock: ManualClock
) -> None:
    configure_agent(emu, token_ttl=120)
    client = make_client(retries=0, sync_interval=3600.0)
    read = client.tool(READ)(lambda: "ok")
    read()
    first = jti_of(client)
    emu.set_faults([{"path": "/oauth/token", "status": 503}])
    clock.advance(85.0)  # stale: a background renewal fails
    assert read() == "ok"
    worker_barrier(client)
    assert emu.stats()["token_requests"] == 2
    for _ in range(20):  # backing off: no request per call, no storm
        assert read() == "ok"
        worker_barrier(client)
    assert emu.stats()["token_requests"] == 2
    clock.advance(27.0)  # 112 s: inside the margin, a caller leads a renewal that fails...
    assert read() == "ok"  # ...and still gets the valid token
    assert jti_of(client) == first
    assert emu.stats()["token_requests"] == 3
    emu.clear_faults()
    clock.advance(4.0)  # past the backoff, still before expiry
    assert read() == "ok"
    worker_barrier(client)
    assert read() == "ok"
    assert jti_of(client) != first


def test_token_expired_error_only_when_no_valid_token_can_be_had(
    emu: Emulator, make_client: MakeClient, clock: ManualClock
) -> None:
    """Official flaw C6: TokenExpiredError told users to call startup() again (which leaked a
    thread each time); renewal was not automatic."""
    configure_agent(emu, token_ttl=120)
    client = make_client(retries=0, sync_interval=3600.0)
    read = client.tool(READ)(lambda: "ok")
    read()
    emu.set_faults([{"path": "/oauth/token", "status": 503}])
    clock.advance(119.0)
    assert read() == "ok"  # one second left: still valid, still served
    clock.advance(2.0)
    with pytest.raises(TokenExpiredError) as raised:
        read()
    message = str(raised.value)
    assert "startup" not in message
    assert "ServerError" in message or "503" in message
    with pytest.raises(TokenExpiredError):
        asyncio.run(client.tool(READ)(_async_ok)())
    emu.clear_faults()
    clock.advance(60.0)  # past any backoff
    assert read() == "ok"  # renewed by itself: no startup() again
    assert emu.stats()["tokens_issued"] == 2


async def _async_ok() -> str:
    return "ok"


@pytest.mark.parametrize("ttl,renew_every", [(30, 15), (60, 35)])
def test_a_short_token_is_not_refetched_every_few_seconds(
    emu: Emulator, make_client: MakeClient, clock: ManualClock, ttl, renew_every
) -> None:
    """Official flaw C6: tokens of 60 s or less were re-fetched every 10 s forever, with no
    backoff (30 s tokens at t = 0, 10, 20 s). Here a token lives until a quarter of its life
    (plus the margin) is left: a 30 s token is renewed every 15 s, a 60 s one every 35 s.
    One tool call every second for five lifetimes, the worker drained after each."""
    configure_agent(emu, token_ttl=ttl)
    client = make_client(sync_interval=3600.0)
    read = client.tool(READ)(lambda: "ok")
    read()
    total = 5 * ttl
    for _ in range(total):
        clock.advance(1.0)
        assert read() == "ok"
        worker_barrier(client)
    client.stop()
    assert emu.stats()["token_requests"] == 1 + total // renew_every


def test_a_revoked_token_triggers_exactly_one_refetch(
    emu: Emulator, make_client: MakeClient, clock: ManualClock
) -> None:
    """Official flaw C6: revocation did not trigger a re-fetch; the client was dead until the
    refresh window near exp."""
    client = make_client(revocation_interval=15.0, sync_interval=3600.0)
    read = client.tool(READ)(lambda: "ok")
    read()
    first = jti_of(client)
    wait_for(lambda: emu.stats()["revocation_requests"] == 2, "the revocation poller's first poll")
    worker_barrier(client)  # the poll has rescheduled itself (15 s from its end), not only been served
    emu.revoke(first)
    clock.advance(15.0)
    wait_for(lambda: emu.stats()["revocation_requests"] == 3, "the next revocation poll")
    worker_barrier(client)
    barrier = threading.Barrier(8)
    seen: List[str] = []

    def call() -> None:
        barrier.wait()
        seen.append(read())

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == ["ok"] * 8
    second = jti_of(client)
    assert second != first
    client.stop()
    assert emu.stats()["token_requests"] == 2
    assert [e["jti"] for e in events(emu)] == [first] + [second] * 8


def test_a_revocation_found_by_check_revocation_triggers_one_refetch(
    emu: Emulator, make_client: MakeClient
) -> None:
    client = make_client()
    read = client.tool(READ)(lambda: "ok")
    read()
    first = jti_of(client)
    emu.revoke(first)
    assert client.check_revocation()
    assert read() == "ok"
    assert read() == "ok"
    assert jti_of(client) != first
    assert emu.stats()["token_requests"] == 2


def test_a_revoked_agent_gets_no_token_and_a_typed_error(emu: Emulator, make_client: MakeClient) -> None:
    client = make_client()
    read = client.tool(READ)(lambda: "ok")
    read()
    emu.revoke(jti_of(client))
    emu.set_status("gov-agent", "revoked")
    client.check_revocation()
    with pytest.raises((TokenExpiredError, TokenRevokedException)) as raised:
        read()
    assert "startup" not in str(raised.value)
