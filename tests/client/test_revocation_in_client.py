"""The client never hands out a cached token whose jti the server revoked."""

import asyncio
import threading
import time

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


def test_poller_starts_with_the_first_token_and_stops(emulator, make_client):
    client = make_client(revocation_interval=0.2)

    def names():
        return {t.name for t in threading.enumerate() if t.name.startswith("oculus-lite-worker")}

    assert not names()
    info = client.get_token_info("db:read")
    assert names()
    deadline = time.monotonic() + 10
    while emulator.stats()["revocation_not_modified"] < 1:  # the poller sends If-None-Match
        assert time.monotonic() < deadline, "no 304 within 10 s"
        time.sleep(0.05)
    emulator.revoke(info.jti)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.get_token("db:read")
        except TokenRevokedException as exc:
            assert exc.jti == info.jti
            break
        assert time.monotonic() < deadline, "revocation not seen within 10 s"
        time.sleep(0.05)
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
