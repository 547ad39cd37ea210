"""The cache rules of the token client, against the emulator over loopback."""

import asyncio
import threading

import pytest

from oculus_lite import Client, ServerError, Token
from oculus_lite.tokens._cache import Entry, TokenCache, timing


def test_token_is_cached_and_reused(make_client, token_requests):
    client = make_client()
    first = client.get_token("db:read")
    assert first.count(".") == 2  # a JWT
    for _ in range(100):
        assert client.get_token("db:read") == first
    assert token_requests() == 1


def test_scope_spellings_share_one_entry(make_client, token_requests):
    client = make_client()
    a = client.get_token("db:read crm:read")
    b = client.get_token("crm:read db:read")
    c = client.get_token("crm:read   db:read")
    d = client.get_token("db:read crm:read db:read")
    assert a == b == c == d
    assert token_requests() == 1


def test_audiences_are_separate_entries(make_client, token_requests, emulator):
    client = make_client()
    plain = client.get_token("db:read")
    aud_a = client.get_token("db:read", audience="https://a.example.com")
    aud_b = client.get_token("db:read", audience="https://b.example.com")
    assert len({plain, aud_a, aud_b}) == 3
    assert client.get_token("db:read", audience="https://a.example.com") == aud_a
    assert token_requests() == 3
    info = client.get_token_info("db:read", audience="https://b.example.com")
    assert info.audience == "https://b.example.com"
    assert info.claims["aud"] == "https://b.example.com"


def test_expires_in_is_honoured_and_short_tokens_are_reused(emulator, make_client, token_requests):
    emulator.add_agent("short", "short-secret", scopes=["db:*"], token_ttl=8)
    client = make_client(client_id="short", client_secret="short-secret")
    tokens = {client.get_token("db:read") for _ in range(50)}
    assert len(tokens) == 1
    assert token_requests() == 1
    info = client.get_token_info("db:read")
    assert 0 < info.seconds_left() <= 8


def test_token_info_hides_secrets_and_decodes_claims(make_client):
    client = make_client()
    info = client.get_token_info("db:read")
    assert isinstance(info, Token)
    assert info.access_token not in repr(info) and info.access_token not in str(info)
    assert info.scopes == ("db:read",) and info.scope == "db:read"
    assert info.claims["sub"] == "agent-1"
    assert info.jti == info.claims["jti"]
    assert info.expires_at.tzinfo is not None


def test_lru_is_bounded(make_client, token_requests):
    client = make_client(cache_size=2)
    a = client.get_token("db:a")
    client.get_token("db:b")
    client.get_token("db:a")  # a is now the most recently used
    client.get_token("db:c")  # evicts b
    assert client.get_token("db:a") == a
    assert token_requests() == 3
    client.get_token("db:b")
    assert token_requests() == 4


def test_cache_drops_expired_entries_before_live_ones():
    cache = TokenCache(2)
    now = 100.0

    def entry(key, lifetime):
        refresh_at, margin_at, expires = timing(now - 1, lifetime, 10.0)
        return Entry("t-" + key, key, refresh_at, margin_at, expires, 0.0)

    cache.put(entry("live-old", 600), now)
    cache.put(entry("dead", 0.5), now)  # already expired at `now`
    cache.put(entry("live-new", 600), now)
    assert set(cache.lru) == {"live-old", "live-new"}


def test_a_full_cache_finds_entries_that_expired_since_it_last_looked():
    """A full cache looks for expired entries only once one can exist (it keeps a lower bound
    of the earliest expiry); entries that expire later are still found before live ones go."""
    cache = TokenCache(2)

    def entry(key, expires):
        return Entry("t-" + key, key, expires - 20, expires - 10, expires, 0.0)

    cache.put(entry("short", 300.0), 100.0)
    cache.put(entry("long", 900.0), 100.0)
    cache.put(entry("c", 900.0), 150.0)  # nothing expired yet: the least recent ("short") goes
    assert list(cache.lru) == ["long", "c"]
    cache.put(entry("d", 400.0), 160.0)  # still none expired: "long" goes
    assert list(cache.lru) == ["c", "d"]
    cache.put(entry("e", 900.0), 450.0)  # "d" expired at 400: it goes, not the least recent "c"
    assert list(cache.lru) == ["c", "e"]


def test_timing_shrinks_the_margin_for_short_lifetimes():
    refresh_at, margin_at, expires = timing(0.0, 600.0, 10.0)
    assert (refresh_at, margin_at, expires) == (530.0, 590.0, 600.0)
    refresh_at, margin_at, expires = timing(0.0, 8.0, 10.0)
    assert 0 < refresh_at < margin_at < expires == 8.0
    assert margin_at == 6.0


def test_single_flight_64_threads_and_64_tasks(emulator, make_client, token_requests):
    emulator.set_faults([{"path": "/oauth/token", "kind": "delay", "delay_ms": 300, "next": 1}])
    client = make_client()
    barrier = threading.Barrier(65)
    results, errors = [], []

    def thread_caller():
        barrier.wait()
        try:
            results.append(client.get_token("db:read db:write"))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    async def task_callers():
        barrier.wait()
        return await asyncio.gather(*(client.aget_token("db:write db:read") for _ in range(64)))

    threads = [threading.Thread(target=thread_caller) for _ in range(64)]
    for t in threads:
        t.start()
    task_results = asyncio.run(task_callers())
    for t in threads:
        t.join()
    assert not errors
    assert len(results) == 64 and len(task_results) == 64
    assert len(set(results) | set(task_results)) == 1
    assert token_requests() == 1


def test_single_flight_shares_the_error(emulator, make_client, token_requests):
    emulator.set_faults([{"path": "/oauth/token", "kind": "delay", "delay_ms": 300, "next": 1}])
    emulator.set_status("agent-1", "suspended")
    client = make_client()
    barrier = threading.Barrier(16)
    outcomes = []

    def caller():
        barrier.wait()
        try:
            client.get_token("db:read")
        except Exception as exc:
            outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=caller) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes == ["AuthenticationError"] * 16
    assert token_requests() == 1


def test_refresh_ahead_renews_in_background(emulator, make_client, token_requests, clock):
    emulator.add_agent("brief", "brief-secret", scopes=["db:*"], token_ttl=600)
    client = make_client(client_id="brief", client_secret="brief-secret")
    first = client.get_token("db:read")
    entry = client._cache.get("db:read")
    assert (entry.refresh_at, entry.margin_at, entry.expires) == timing(clock.monotonic(), 600.0, 10.0)
    # FRESH until refresh_at: served from the cache, nothing else happens.
    clock.advance_to(entry.refresh_at - 0.001)
    assert client.get_token("db:read") == first
    assert token_requests() == 1
    # STALE from refresh_at: the caller still gets the old token at once...
    clock.advance_to(entry.refresh_at)
    assert client.get_token("db:read") == first
    # ...while one background refresh fetches the next, timed from when it was sent.
    clock.wait_idle()
    assert token_requests() == 2
    renewed = client._cache.get("db:read")
    assert renewed.token != first and renewed.expires == pytest.approx(entry.refresh_at + 600.0)
    for _ in range(10):
        assert client.get_token("db:read") == renewed.token
    assert token_requests() == 2
    refreshers = [t for t in threading.enumerate() if t.name.startswith("oculus-lite-worker")]
    assert refreshers and all(t.daemon for t in refreshers)
    client.stop()
    for t in refreshers:
        t.join(timeout=5)
    assert not any(t.is_alive() for t in refreshers)


def test_refresh_token_grant_is_used_and_rotating_tokens_coalesce(emulator, make_client, clock):
    emulator.add_agent(
        "rot", "rot-secret", scopes=["db:*"], token_ttl=600, refresh_tokens=True, rotate_refresh_tokens=True
    )
    client = make_client(client_id="rot", client_secret="rot-secret")
    first = client.get_token("db:read")
    # Move (without calling get_token, so no refresh ahead starts) to where callers must block.
    clock.advance_to(client._cache.get("db:read").margin_at)
    barrier = threading.Barrier(64)
    results, errors = [], []

    def caller():
        barrier.wait()
        try:
            results.append(client.get_token("db:read"))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    before = dict(emulator.stats()["token_requests_by_grant"])
    threads = [threading.Thread(target=caller) for _ in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    after = emulator.stats()["token_requests_by_grant"]
    assert not errors
    assert len(set(results)) == 1 and first not in results
    assert after.get("refresh_token", 0) - before.get("refresh_token", 0) == 1
    assert after.get("client_credentials", 0) == before.get("client_credentials", 0)


def test_failed_refresh_keeps_the_valid_token(emulator, make_client, clock):
    emulator.add_agent("flaky", "flaky-secret", scopes=["db:*"], token_ttl=600)
    client = make_client(client_id="flaky", client_secret="flaky-secret", retries=0)
    first = client.get_token("db:read")
    entry = client._cache.get("db:read")
    emulator.set_faults([{"path": "/oauth/token", "kind": "status", "status": 503, "every": 1}])

    def fired():
        return emulator.stats()["faults_fired"]

    # In the margin a caller waits for the refresh; it fails, and it gets the still-valid token.
    clock.advance_to(entry.margin_at)
    assert client.get_token("db:read") == first and fired() == 1
    # The failure backs off (0.5 s, then 1 s): meanwhile callers get the token without waiting.
    clock.advance_to(entry.margin_at + 0.499)
    assert client.get_token("db:read") == first and fired() == 1
    clock.advance_to(entry.margin_at + 0.501)
    assert client.get_token("db:read") == first and fired() == 2
    clock.advance_to(entry.expires - 0.2)
    assert client.get_token("db:read") == first and fired() == 3
    # Once it has really expired, the error surfaces.
    clock.advance_to(entry.expires)
    with pytest.raises(ServerError):
        client.get_token("db:read")
    assert fired() == 4
    emulator.clear_faults()
    assert client.get_token("db:read") != first
    assert emulator.stats()["token_requests"] == 6


def test_async_hit_takes_no_thread_hop(make_client):
    client = make_client()

    async def main():
        loop = asyncio.get_running_loop()
        submitted = []

        from concurrent.futures import ThreadPoolExecutor

        class CountingExecutor(ThreadPoolExecutor):
            def submit(self, fn, /, *args, **kwargs):
                submitted.append(fn)
                return super().submit(fn, *args, **kwargs)

        loop.set_default_executor(CountingExecutor(2))
        first = await client.aget_token("db:read")
        misses = len(submitted)
        for _ in range(50):
            assert await client.aget_token("db:read") == first
        info = await client.aget_token_info("db:read")
        return misses, len(submitted), info

    misses, total, info = asyncio.run(main())
    assert misses == 1  # the miss ran the blocking transport in a worker thread
    assert total == 1  # the 51 hits did not
    assert info.scope == "db:read"


def test_async_context_manager(emulator, agent):
    async def main():
        async with Client(agent.client_id, agent.client_secret, emulator.url, revocation_interval=None) as c:
            return await c.aget_token("db:read"), c

    token, client = asyncio.run(main())
    assert token.count(".") == 2
    assert client.closed
