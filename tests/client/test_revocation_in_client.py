"""The client never hands out a cached token whose jti the server revoked."""

import asyncio
import threading

import pytest

from oculus_lite import TokenRevokedException


def test_check_revocation_then_get_token_raises(emulator, make_client, token_requests):
    client = make_client()
    info = client.get_token_info("db:read")
    other = client.get_token("crm:read")
    emulator.revoke(info.jti)
    assert client.check_revocation() is True
    with pytest.raises(TokenRevokedException) as raised:
        client.get_token("db:read")
    assert raised.value.jti == info.jti and "alert your team" in str(raised.value)
    assert client.get_token("crm:read") == other  # untouched
    # The revoked entry was evicted: the next call fetches a new token.
    assert client.get_token("db:read") != info.access_token
    assert token_requests() == 3


def test_poller_starts_with_the_first_token_and_stops(emulator, make_client, clock):
    client = make_client(revocation_interval=15.0)

    def names():
        return {t.name for t in threading.enumerate() if t.name.startswith("oculus-lite-worker")}

    def polls():
        stats = emulator.stats()
        return stats["revocation_requests"], stats["revocation_not_modified"]

    assert not names()
    info = client.get_token_info("db:read")
    started = clock.monotonic()
    assert names()
    clock.wait_idle()
    assert polls() == (1, 0)  # the first poll runs with the first token
    clock.advance_to(started + 15.0)
    clock.wait_idle()
    assert polls() == (2, 1)  # then every 15 s, with If-None-Match: a 304
    emulator.revoke(info.jti)
    clock.advance_to(started + 29.999)
    clock.wait_idle()
    assert polls() == (2, 1)
    assert client.get_token("db:read") == info.access_token  # not known here before the next poll
    clock.advance_to(started + 30.0)
    clock.wait_idle()
    assert polls() == (3, 1)
    with pytest.raises(TokenRevokedException) as raised:
        client.get_token("db:read")
    assert raised.value.jti == info.jti
    client.stop()
    assert not names()


def test_async_check_revocation(emulator, make_client):
    client = make_client()

    async def main():
        info = await client.aget_token_info("db:read")
        emulator.revoke(info.jti)
        assert await client.acheck_revocation()
        with pytest.raises(TokenRevokedException):
            await client.aget_token("db:read")

    asyncio.run(main())
