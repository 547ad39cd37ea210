"""The Redis token store against a real ``redis-server`` (Debian's package) started on a free
loopback port with no persistence: the TokenStore contract, what Redis holds after a run,
hostile values, a server stopped (SIGSTOP) or killed mid-run, ACLs, fork. ``tox -e
store-redis`` runs these; without redis-server, redis-py or cryptography they are skipped."""

import importlib
import os
import re
import socket
import sys
import threading
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

import pytest

from oculus_lite.exceptions import ConfigurationError, NetworkError, NetworkTimeoutError
from oculus_lite.tokens._store import SharedToken, StoreKey
from oculus_lite.tokens._store_spec import open_store, store_from_environment

from ._contract import AUDIENCE, CLIENT_ID, SCOPE, SECRET, StoreContract, make_key, token
from ._redis_server import REDIS_SERVER, RedisServer

_PLUGIN_DIR = Path(__file__).resolve().parents[2] / "transports" / "oculus_lite_redis"
if str(_PLUGIN_DIR) not in sys.path:  # last: an installed plugin (tox) wins
    sys.path.append(str(_PLUGIN_DIR))

# tox -e store-redis sets OCULUS_STORE_REDIS_REQUIRED=1: there a missing piece is an error, not a skip
_REQUIRED = os.environ.get("OCULUS_STORE_REDIS_REQUIRED") == "1"


def _need(module: str, why: str) -> Any:
    return importlib.import_module(module) if _REQUIRED else pytest.importorskip(module, reason=why)


redis: Any = _need("redis", "redis-py is not installed (tox -e store-redis runs these)")
_need("cryptography", "cryptography is not installed (tox -e store-redis runs these)")
plugin: Any = _need("oculus_lite_redis", "the oculus-lite-redis plugin does not import")
if REDIS_SERVER is None:
    if _REQUIRED:
        raise RuntimeError("redis-server is not installed (apt-get install -y redis-server)")
    pytest.skip("redis-server is not installed (apt-get install -y redis-server)", allow_module_level=True)

RedisTokenStore = plugin.RedisTokenStore
KEY_PATTERN = re.compile(r"^oculus:v1:\{[0-9a-f]{32}\}:(tok|lease|cool)$")
PASSWORD = "acl-pa55word-canary"


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    started = RedisServer().start()
    yield started
    started.stop()


@pytest.fixture
def own_server() -> Iterator[RedisServer]:
    """A server this test may stop, pause or kill."""
    started = RedisServer().start()
    yield started
    started.stop()


@pytest.fixture
def raw(server: RedisServer) -> Iterator[Any]:
    client = redis.Redis(port=server.port, socket_timeout=10)
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def stores() -> Iterator[Callable[..., Any]]:
    made: List[Any] = []

    def make(*args: Any, **kwargs: Any) -> Any:
        store = RedisTokenStore(*args, **kwargs)
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


@pytest.fixture
def store(server: RedisServer, raw: Any, stores: Callable[..., Any]) -> Any:
    return stores(url=server.url)


@pytest.fixture
def other_store(server: RedisServer, raw: Any, stores: Callable[..., Any]) -> Any:
    return stores(url=server.url)


class TestRedisStoreContract(StoreContract):
    pass


def _dump(raw: Any) -> Dict[bytes, bytes]:
    """Every key in the server and its value (all our keys are strings)."""
    found: Dict[bytes, bytes] = {}
    for name in raw.scan_iter(count=100):
        assert raw.type(name) == b"string"
        value = raw.get(name)
        if value is not None:
            found[name] = value
    return found


def _names(store: Any, key: StoreKey) -> Any:
    return store._names(key)[1]  # the key names the store uses for one entry


def _run_in_thread(call: Callable[[], Any]) -> Optional[BaseException]:
    """Run ``call``; fail if it is still running after 60 s (a hang), else return what it raised."""
    outcome: List[Optional[BaseException]] = []

    def run() -> None:
        try:
            call()
            outcome.append(None)
        except BaseException as exc:  # noqa: B036 - handed back to the test
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), "a store call hung"
    return outcome[0]


# -- what Redis holds ---------------------------------------------------------------------------


def test_redis_holds_no_identifier_secret_or_token_in_clear(store: Any, other_store: Any, raw: Any) -> None:
    for scope in (SCOPE, "db:read", "db:write"):
        key = make_key(scope)
        store.put(key, token(scope, life=300))
        assert other_store.acquire(key, "owner-1", 30)
        store.cool_down(key, 30)
    store.put(make_key("db:read"), token("db:read-newer", life=600))
    other_store.invalidate(make_key("db:write"), "canary.token.db:write")
    dump = _dump(raw)
    assert len(dump) == 3 * 3 - 1
    everything = b" ".join(name + b" " + value for name, value in dump.items())
    for clear in (
        CLIENT_ID,
        SCOPE,
        "db:read",
        AUDIENCE,
        "canary-audience",
        SECRET,
        "canary.token",
        "canary.service",
    ):
        assert clear.encode() not in everything, clear
    for name in dump:
        assert KEY_PATTERN.match(name.decode()), name
        assert raw.pttl(name) > 0  # no entry without an expiry


def test_the_keys_of_one_entry_share_a_cluster_hash_slot(store: Any) -> None:
    key_slot = importlib.import_module("redis.crc").key_slot
    names = _names(store, make_key())
    slots = {key_slot(name.encode()) for name in (names.token, names.lease, names.cool)}
    assert len(slots) == 1
    assert names.token.split(":")[2] == names.lease.split(":")[2] == names.cool.split(":")[2]


def test_unencrypted_values_are_a_separate_namespace_and_say_what_they_are(
    server: RedisServer, raw: Any, stores: Callable[..., Any], store: Any
) -> None:
    plain = stores(url=server.url, allow_unencrypted=True)
    plain.put(make_key(), token("plain"))
    assert store.get(make_key()) is None  # the sealed store never reads a plaintext entry
    (name,) = [n for n in _dump(raw)]
    assert KEY_PATTERN.match(name.decode()) and CLIENT_ID.encode() not in name
    assert b"canary.token.plain" in raw.get(name)  # in clear, as the docstring warns
    got = plain.get(make_key())
    assert got is not None and got.access_token == "canary.token.plain"
    assert "encrypted=False" in repr(plain)


def test_a_store_key_names_and_seals_for_the_whole_fleet(
    server: RedisServer, raw: Any, stores: Callable[..., Any], store: Any
) -> None:
    shared = b"k" * 32
    before = stores(url=server.url, store_key=shared)
    after = stores(url=server.url, store_key=shared)
    before.put(make_key(secret="old-secret"), token("shared"))
    got = after.get(make_key(secret="rotated-secret"))  # the secret is not what keys it now
    assert got is not None and got.access_token == "canary.token.shared"
    assert store.get(make_key(secret="old-secret")) is None
    assert stores(url=server.url, store_key=b"x" * 32).get(make_key(secret="old-secret")) is None


# -- hostile values ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "damage",
    ["garbage", "truncated", "flipped", "swapped", "wrong-key", "plaintext-form", "no-expiry", "empty"],
)
def test_a_value_that_does_not_open_is_a_miss_and_is_deleted(
    server: RedisServer, raw: Any, stores: Callable[..., Any], store: Any, damage: str
) -> None:
    key, neighbour = make_key("db:read"), make_key("db:write")
    store.put(key, token("read"))
    store.put(neighbour, token("write"))
    name = _names(store, key).token
    good = raw.get(name)
    if damage == "garbage":
        raw.set(name, b"\x00garbage", px=60000)
    elif damage == "truncated":
        raw.set(name, good[:-1], px=60000)
    elif damage == "flipped":
        raw.set(name, good[:-5] + bytes([good[-5] ^ 1]) + good[-4:], px=60000)
    elif damage == "swapped":  # a valid value of another entry
        raw.set(name, raw.get(_names(store, neighbour).token), px=60000)
    elif damage == "wrong-key":  # sealed with another key, copied under this name
        foreign = stores(url=server.url, store_key=b"f" * 32)
        foreign.put(key, token("foreign"))
        raw.set(name, raw.get(_names(foreign, key).token), px=60000)
    elif damage == "plaintext-form":
        plain = stores(url=server.url, allow_unencrypted=True)
        plain.put(key, token("plain"))
        raw.set(name, raw.get(_names(plain, key).token), px=60000)
    elif damage == "no-expiry":  # a good value, but nothing we wrote lives forever
        raw.set(name, good)
    else:
        raw.set(name, b"", px=60000)
    assert store.get(key) is None
    assert raw.exists(name) == 0
    got = store.get(neighbour)
    assert got is not None and got.access_token == "canary.token.write"
    store.put(key, token("healed"))
    got = store.get(key)
    assert got is not None and got.access_token == "canary.token.healed"


def test_invalidate_removes_a_value_that_does_not_open(store: Any, raw: Any) -> None:
    name = _names(store, make_key()).token
    raw.set(name, b"garbage", px=60000)
    store.invalidate(make_key(), "canary.token.anything")
    assert raw.exists(name) == 0


def test_a_lapsed_lease_goes_to_the_next_owner_and_the_old_one_cannot_touch_it(
    store: Any, other_store: Any, raw: Any
) -> None:
    key = make_key()
    assert store.acquire(key, "old-owner", 30)
    lease = _names(store, key).lease
    raw.pexpire(lease, 1)
    for _ in range(10000):  # until Redis has expired it (milliseconds)
        if raw.exists(lease) == 0:
            break
        threading.Event().wait(0.001)
    assert other_store.acquire(key, "new-owner", 30)
    assert not store.extend(key, "old-owner", 30)
    store.release(key, "old-owner")
    assert raw.get(lease) == b"new-owner"
    assert other_store.extend(key, "new-owner", 30)
    assert 25000 < raw.pttl(lease) <= 30000


# -- faults: stopped, killed, no retries ---------------------------------------------------------


def _all_calls(store: Any, key: StoreKey) -> Dict[str, Callable[[], Any]]:
    return {
        "get": lambda: store.get(key),
        "put": lambda: store.put(key, token("b", life=120)),
        "acquire": lambda: store.acquire(key, "owner", 10),
        "extend": lambda: store.extend(key, "owner", 10),
        "release": lambda: store.release(key, "owner"),
        "invalidate": lambda: store.invalidate(key, "canary.token.zzz"),
        "cool_down": lambda: store.cool_down(key, 10),
        "cooling": lambda: store.cooling(key),
    }


def test_a_stopped_server_makes_every_call_time_out_then_work_again(
    own_server: RedisServer, stores: Callable[..., Any]
) -> None:
    store = stores(url=own_server.url, socket_timeout=0.3, connect_timeout=0.3)
    key = make_key()
    store.put(key, token("a", life=300))
    own_server.pause()
    try:
        for name, call in _all_calls(store, key).items():
            raised = _run_in_thread(call)
            assert isinstance(raised, NetworkTimeoutError), (name, raised)
            assert own_server.url not in str(raised)
    finally:
        own_server.resume()
    got = store.get(key)
    assert got is not None and got.access_token == "canary.token.a"
    assert store.acquire(make_key("fresh"), "owner", 10)


def test_a_killed_server_makes_calls_fail_and_a_restarted_one_works(
    own_server: RedisServer, stores: Callable[..., Any]
) -> None:
    store = stores(url=own_server.url, socket_timeout=0.3, connect_timeout=0.3)
    key = make_key()
    store.put(key, token("a"))
    own_server.kill()
    for name, call in _all_calls(store, key).items():
        raised = _run_in_thread(call)
        assert isinstance(raised, NetworkError), (name, raised)
    own_server.start()
    assert store.get(key) is None  # no persistence: the restarted server is empty
    store.put(key, token("after"))
    got = store.get(key)
    assert got is not None and got.access_token == "canary.token.after"


def test_a_store_built_from_a_url_never_retries() -> None:
    """A server that accepts and never answers: one call makes exactly one connection."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        port = listener.getsockname()[1]
        store = RedisTokenStore(url="redis://127.0.0.1:{}/0".format(port), socket_timeout=0.2)
        try:
            raised = _run_in_thread(lambda: store.get(make_key()))
        finally:
            store.close()
        assert isinstance(raised, NetworkTimeoutError)
        listener.setblocking(False)
        accepted = []
        while True:
            try:
                accepted.append(listener.accept()[0])
            except BlockingIOError:
                break
        for conn in accepted:
            conn.close()
        assert len(accepted) == 1


# -- configuration, ACLs, ownership, fork -------------------------------------------------------


def test_an_acl_user_limited_to_oculus_keys_and_the_documented_commands_is_enough(
    stores: Callable[..., Any],
) -> None:
    acl = RedisServer(
        [
            "--user", "default", "off",
            "--user", "fleet", "on", ">" + PASSWORD, "~oculus:*", "resetchannels", "-@all",
            "+get", "+set", "+del", "+pttl", "+pexpire", "+eval", "+evalsha", "+script|load",
            "+multi", "+exec",
        ]
    ).start()  # fmt: skip
    try:
        url = "redis://fleet:{}@127.0.0.1:{}/0".format(PASSWORD, acl.port)
        store, other = stores(url=url), stores(url=url)
        for test in (
            "round_trip_keeps_every_field",
            "put_keeps_the_longer_lived_token",
            "lease_excludes_another_store",
        ):
            getattr(StoreContract, "test_" + test)(StoreContract(), store, other)
        key = make_key("acl:check")
        store.cool_down(key, 10)
        assert other.cooling(key) > 0
        store.put(key, token("acl"))
        other.invalidate(key, "canary.token.acl")
        assert store.get(key) is None

        wrong = stores(url="redis://fleet:not-the-password@127.0.0.1:{}/0".format(acl.port))
        with pytest.raises(NetworkError) as caught:
            wrong.get(key)
        assert "not-the-password" not in str(caught.value) and PASSWORD not in str(caught.value)
    finally:
        acl.stop()


def test_a_client_you_pass_is_used_as_is_and_stays_open(server: RedisServer, raw: Any) -> None:
    client = redis.Redis(port=server.port, socket_timeout=1)
    try:
        store = RedisTokenStore(client)
        store.put(make_key(), token("mine"))
        store.close()
        store.close()
        assert client.ping()
        got = RedisTokenStore(client=client).get(make_key())
        assert got is not None and got.access_token == "canary.token.mine"
    finally:
        client.close()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, "exactly one of client= or url="),
        ({"url": "redis://127.0.0.1:1/0", "client": "x"}, "exactly one of client= or url="),
        ({"url": "redis://127.0.0.1:1/0", "store_key": b"short"}, "at least 32"),
        ({"url": "redis://127.0.0.1:1/0", "store_key": "k" * 40}, "at least 32"),
        ({"url": "redis://127.0.0.1:1/0", "socket_timeout": 0}, "socket_timeout"),
        ({"url": "redis://127.0.0.1:1/0", "connect_timeout": float("inf")}, "connect_timeout"),
        ({"url": "http://user:{}@127.0.0.1:1/0".format(PASSWORD)}, "not a Redis URL"),
    ],
)
def test_bad_configuration_is_refused_without_repeating_secrets(kwargs: Dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as caught:
        RedisTokenStore(**kwargs)
    assert PASSWORD not in str(caught.value) and "k" * 40 not in str(caught.value)


def test_a_client_that_decodes_replies_is_refused(server: RedisServer) -> None:
    client = redis.Redis(port=server.port, decode_responses=True)
    try:
        with pytest.raises(ConfigurationError, match="decode_responses"):
            RedisTokenStore(client)
    finally:
        client.close()


def test_open_store_and_the_environment_build_a_working_redis_store(server: RedisServer, raw: Any) -> None:
    for store in (open_store(server.url), store_from_environment({"OCULUS_TOKEN_STORE": " " + server.url})):
        assert isinstance(store, RedisTokenStore)
        try:
            store.put(make_key(), token("env", life=100))
            got = store.get(make_key())
            assert got is not None and got.access_token == "canary.token.env"
        finally:
            store.close()


def test_a_forked_child_makes_its_own_connection(server: RedisServer, raw: Any, store: Any) -> None:
    store.put(make_key("parent"), token("parent"))  # the parent's pool has a connection now
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with other threads alive
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            for index in range(50):
                store.put(make_key("child"), token("child-{}".format(index), life=100 + index))
                got = store.get(make_key("parent"))
                assert got is not None and got.access_token == "canary.token.parent"
            code = 0
        finally:
            os._exit(code)
    for _ in range(50):  # the parent keeps using its own connection meanwhile
        got = store.get(make_key("parent"))
        assert got is not None and got.access_token == "canary.token.parent"
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    got = store.get(make_key("child"))
    assert got is not None and got.access_token == "canary.token.child-49"


def test_tokens_keep_their_fields_through_the_seal(store: Any) -> None:
    store.put(make_key(), SharedToken("t" * 5000, 30, token_type="DPoP", scope=None, service_token=None))
    got = store.get(make_key())
    assert got is not None and (len(got.access_token), got.token_type, got.scope, got.service_token) == (
        5000,
        "DPoP",
        None,
        None,
    )
