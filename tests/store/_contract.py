"""The TokenStore contract, written once and run against every store.

A test module subclasses ``StoreContract`` and provides two fixtures: ``store`` and
``other_store``, two independent instances (separate connections or descriptors) on the same
backend, as two processes of a fleet would have.
"""

import threading
from typing import List

from oculus_lite.tokens._store import SharedToken, StoreKey, TokenStore, key_material_for

SECRET = "canary-S3CRET-7f3a9c"
CLIENT_ID = "agent-canary-client"
AUDIENCE = "https://canary-audience.example"
SCOPE = "canary:scope"


def make_key(scope: str = SCOPE, secret: str = SECRET, client_id: str = CLIENT_ID) -> StoreKey:
    return StoreKey.build(
        "https://issuer.example/oauth/token", client_id, scope, AUDIENCE, key_material_for(secret)
    )


def token(name: str, life: float = 60.0) -> SharedToken:
    return SharedToken(
        access_token="canary.token." + name,
        expires_in=life,
        scope=SCOPE,
        service_token="canary.service." + name,
    )


class StoreContract:
    def test_is_a_token_store(self, store: TokenStore) -> None:
        assert isinstance(store, TokenStore)

    def test_missing_entry_is_none(self, store: TokenStore) -> None:
        assert store.get(make_key()) is None
        assert store.cooling(make_key()) == 0.0

    def test_round_trip_keeps_every_field(self, store: TokenStore, other_store: TokenStore) -> None:
        store.put(make_key(), token("a", life=60))
        got = other_store.get(make_key())
        assert got is not None
        assert (got.access_token, got.token_type, got.scope, got.service_token) == (
            "canary.token.a",
            "Bearer",
            SCOPE,
            "canary.service.a",
        )
        assert 0 < got.expires_in <= 60

    def test_entries_are_per_key_and_per_secret(self, store: TokenStore) -> None:
        store.put(make_key("db:read"), token("read"))
        store.put(make_key("db:write"), token("write"))
        read, write = store.get(make_key("db:read")), store.get(make_key("db:write"))
        assert read is not None and read.access_token == "canary.token.read"
        assert write is not None and write.access_token == "canary.token.write"
        assert store.get(make_key("db:read", secret="rotated-secret")) is None
        assert store.get(make_key("db:read", client_id="another-agent")) is None

    def test_put_keeps_the_longer_lived_token(self, store: TokenStore, other_store: TokenStore) -> None:
        key = make_key()
        store.put(key, token("long", life=300))
        other_store.put(key, token("short", life=30))
        got = store.get(key)
        assert got is not None and got.access_token == "canary.token.long"
        other_store.put(key, token("longer", life=600))
        got = store.get(key)
        assert got is not None and got.access_token == "canary.token.longer"
        assert got.expires_in > 300

    def test_put_ignores_a_token_without_life(self, store: TokenStore) -> None:
        store.put(make_key(), token("dead", life=0))
        store.put(make_key(), token("nan", life=float("nan")))
        assert store.get(make_key()) is None

    def test_invalidate_deletes_only_the_exact_token(
        self, store: TokenStore, other_store: TokenStore
    ) -> None:
        key = make_key()
        store.put(key, token("current"))
        other_store.invalidate(key, "canary.token.older")
        got = store.get(key)
        assert got is not None and got.access_token == "canary.token.current"
        other_store.invalidate(key, "canary.token.curren")  # a prefix is not the token
        assert store.get(key) is not None
        other_store.invalidate(key, "canary.token.current")
        assert store.get(key) is None
        other_store.invalidate(key, "canary.token.current")  # nothing there: no error

    def test_lease_excludes_another_store(self, store: TokenStore, other_store: TokenStore) -> None:
        key = make_key()
        assert store.acquire(key, "owner-a", 10)
        assert not other_store.acquire(key, "owner-b", 10)
        assert store.acquire(make_key("other:scope"), "owner-a", 10)  # leases are per key
        store.release(key, "owner-a")
        assert other_store.acquire(key, "owner-b", 10)
        assert not store.acquire(key, "owner-a", 10)
        other_store.release(key, "owner-b")

    def test_only_the_owner_extends_and_releases(self, store: TokenStore, other_store: TokenStore) -> None:
        key = make_key()
        assert store.acquire(key, "owner-a", 10)
        assert store.extend(key, "owner-a", 10)
        assert not other_store.extend(key, "owner-b", 10)
        other_store.release(key, "owner-b")  # not its lease: nothing happens
        assert not other_store.acquire(key, "owner-b", 10)
        store.release(key, "owner-a")
        assert not store.extend(key, "owner-a", 10)
        assert other_store.acquire(key, "owner-b", 10)
        other_store.release(key, "owner-b")

    def test_one_of_many_racing_callers_gets_the_lease(
        self, store: TokenStore, other_store: TokenStore
    ) -> None:
        key = make_key()
        callers = 16
        barrier = threading.Barrier(callers)
        won: List[str] = []
        lock = threading.Lock()

        def race(index: int) -> None:
            target = store if index % 2 else other_store
            barrier.wait()
            if target.acquire(key, "owner-{}".format(index), 10):
                with lock:
                    won.append("owner-{}".format(index))

        threads = [threading.Thread(target=race, args=(i,)) for i in range(callers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert len(won) == 1
        winner = won[0]
        (store if int(winner.split("-")[1]) % 2 else other_store).release(key, winner)

    def test_cool_down_is_seen_by_the_fleet(self, store: TokenStore, other_store: TokenStore) -> None:
        key = make_key()
        store.cool_down(key, 30)
        assert 0 < other_store.cooling(key) <= 30
        assert other_store.cooling(make_key("other:scope")) == 0.0
        store.cool_down(key, 0)  # nothing to do
        assert other_store.cooling(key) > 0

    def test_repr_shows_no_secret(self, store: TokenStore) -> None:
        store.put(make_key(), token("a"))
        text = repr(store) + repr(make_key()) + repr(store.get(make_key()))
        for secret in (SECRET, CLIENT_ID, "canary.token", "canary.service"):
            assert secret not in text
