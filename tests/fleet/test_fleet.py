"""A fleet of real processes sharing tokens through a store, end to end.

Four worker processes (``spawn``), eight caller threads each, released together (the
coordinator's barrier: ``_fleet_harness``), against the emulator in this process. Each test
counts token requests from the emulator's own stats and verifies every token a caller got
(issuer signature through ``JwksVerifier``, the caller's own scope and audience). No timing
asserts: where the protocol's outcome depends on timing (a store that hangs or dies) the
assertion is the bound the protocol promises, never a duration.

The file store runs in every interpreter's suite; the Redis store (a real ``redis-server``,
reached as an ACL user limited to ``~oculus:*`` and the store's commands) runs where
redis-py, cryptography and redis-server exist, and ``tox -e store-redis`` requires it.
"""

import importlib
import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Set

import pytest

from oculus_lite import JwksVerifier
from oculus_lite.emulator import Emulator
from oculus_lite.exceptions import RateLimitError, TokenRevokedException
from oculus_lite.jwt import decode
from oculus_lite.tokens._store import SharedToken, StoreKey, key_material_for

from ._fleet_harness import (
    Fleet,
    Key,
    Outcome,
    admin_client,
    fleet_url,
    redis_missing,
    start_redis,
    wait_for,
)

PROCESSES, THREADS = 4, 8
CLIENT_ID = "fleet-agent-c1d7e4"
SECRET = "fleet-canary-S3CRET-91b2"
AUDIENCE = "https://fleet-audience.example"
KEYS: List[Key] = [("fleet:read", None), ("fleet:write fleet:read", None), ("fleet:read", AUDIENCE)]
_REQUIRED = os.environ.get("OCULUS_STORE_REDIS_REQUIRED") == "1"


# ---------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def processes() -> Iterator[Fleet]:
    with Fleet(PROCESSES) as fleet:
        yield fleet


@pytest.fixture
def fleet(processes: Fleet) -> Iterator[Fleet]:
    processes.replace_dead()
    yield processes
    processes.ask({"op": "close"})
    processes.replace_dead()


@pytest.fixture(scope="module")
def redis_server() -> Iterator[Any]:
    missing = redis_missing()
    if missing is not None:
        if _REQUIRED:
            raise RuntimeError(missing)
        pytest.skip(missing)
    server = start_redis()
    yield server
    server.stop()


class Backend:
    """Where the fleet's store lives, and how the test reaches it directly."""

    def __init__(self, kind: str, url: Optional[str], admin: Any = None, directory: Optional[Path] = None):
        self.kind = kind
        self.url = url
        self.admin = admin
        self.directory = directory

    def spec(self, **extra: Any) -> Optional[Dict[str, Any]]:
        return None if self.url is None else dict(extra, url=self.url)

    def open(self) -> Any:
        from oculus_lite.tokens._store_spec import open_store

        assert self.url is not None
        return open_store(self.url)


@pytest.fixture
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    kind = request.param
    if kind == "none":
        yield Backend(kind, None)
    elif kind == "file":
        directory = tmp_path / "tokens"
        yield Backend(kind, "file:" + str(directory), directory=directory)
    else:
        server = request.getfixturevalue("redis_server")
        admin = admin_client(server)
        admin.flushall()
        yield Backend(kind, fleet_url(server), admin=admin)
        admin.close()


STORES = pytest.mark.parametrize("backend", ["file", "redis"], indirect=True)


@pytest.fixture
def agent(emulator: Emulator) -> str:
    emulator.add_agent(CLIENT_ID, SECRET, scopes=["fleet:*"])
    return CLIENT_ID


def setup(fleet: Fleet, emulator: Emulator, store: Optional[Dict[str, Any]], **options: Any) -> None:
    fleet.setup(client_id=CLIENT_ID, secret=SECRET, url=emulator.url, store=store, **options)


def requests(emulator: Emulator) -> int:
    return int(emulator.stats()["token_requests"])


def store_key(emulator: Emulator, key: Key) -> StoreKey:
    """The store's name for ``key``, as the clients build it (scopes normalised)."""
    scope = " ".join(sorted(set(key[0].split())))
    return StoreKey.build(emulator.url + "/oauth/token", CLIENT_ID, scope, key[1], key_material_for(SECRET))


# ---------------------------------------------------------------------- checks


def check_tokens(emulator: Emulator, outcome: Outcome) -> Set[str]:
    """Every token a caller got is the issuer's, for this agent, with the caller's scope and
    audience; returns their jtis."""
    verifiers: Dict[Optional[str], JwksVerifier] = {}
    jtis = set()
    for index, (scope, audience) in enumerate(outcome.keys):
        verifier = verifiers.get(audience)
        if verifier is None:
            verifier = verifiers[audience] = JwksVerifier(
                emulator.url, audience=audience, check_revocation=False
            )
        for token in outcome.tokens(index):
            claims = verifier.verify(token)
            assert claims["sub"] == CLIENT_ID
            assert claims["scope"] == " ".join(sorted(scope.split()))
            assert claims.get("aud") == audience
            jtis.add(str(claims["jti"]))
    for verifier in verifiers.values():
        verifier.close()
    return jtis


def check_clean(outcome: Outcome, calls: int) -> None:
    assert outcome.crashes() == []
    assert outcome.errors() == []
    assert outcome.calls() == calls


def one_token_per_key(outcome: Outcome) -> List[str]:
    tokens: List[str] = []
    for index in range(len(outcome.keys)):
        got = outcome.tokens(index)
        assert len(got) == 1, "key {} got {} distinct tokens".format(index, len(got))
        tokens.extend(got)
    return tokens


def jti(token: str) -> str:
    return str(decode(token).claims["jti"])


# ---------------------------------------------------------------------- the cold burst


@pytest.mark.parametrize("backend", ["none", "file", "redis"], indirect=True)
def test_a_cold_burst_asks_once_per_key_with_a_store_and_once_per_process_without(
    fleet: Fleet, emulator: Emulator, agent: str, backend: Backend
) -> None:
    setup(fleet, emulator, backend.spec())
    outcome = fleet.burst(KEYS, THREADS)

    check_clean(outcome, PROCESSES * THREADS * len(KEYS))
    check_tokens(emulator, outcome)
    if backend.kind == "none":
        assert requests(emulator) == PROCESSES * len(KEYS)
        assert [len(outcome.tokens(i)) for i in range(len(KEYS))] == [PROCESSES] * len(KEYS)
    else:
        assert requests(emulator) == len(KEYS)
        one_token_per_key(outcome)
        stats = outcome.stats()
        assert stats["leases_won"] == len(KEYS)
        assert stats["local_fetches"] == stats["store_errors"] == stats["rejected_reads"] == 0
        assert stats["store_hits"] == (PROCESSES - 1) * len(KEYS)


@STORES
def test_tokens_with_a_short_life_are_shared_kept_while_renewal_fails_and_renewed_once(
    fleet: Fleet, emulator: Emulator, backend: Backend
) -> None:
    """8 s tokens: the refresh margin shrinks to 2 s (a quarter of the life), and a stored
    token is judged on the schedule of the leader that fetched it, so it is shared. Past its
    refresh point it is renewed by one process rather than adopted; while the service cannot
    renew it, processes that start then still get it (it is valid) instead of an error; once
    the service answers again, one process renews it for all."""
    emulator.add_agent(CLIENT_ID, SECRET, scopes=["fleet:*"], token_ttl=8)
    keys = KEYS[:2]
    setup(fleet, emulator, backend.spec(), refresh_margin=10.0)
    first = fleet.burst(keys, THREADS)
    check_clean(first, PROCESSES * THREADS * len(keys))
    old = one_token_per_key(first)
    assert requests(emulator) == len(keys)

    time.sleep(4.5)  # past the refresh point (8 - 2 - 2 = 4 s after the fetch), before expiry
    emulator.set_faults([{"path": "/oauth/token", "kind": "status", "status": 503}])
    late = fleet.workers[2:]  # two processes that start now: nothing cached
    fleet.setup(late, client_id=CLIENT_ID, secret=SECRET, url=emulator.url, store=backend.spec(), retries=0)
    during = fleet.start(keys, THREADS, workers=late).finish()
    check_clean(during, len(late) * THREADS * len(keys))
    assert [during.tokens(i) for i in range(len(keys))] == [{token: len(late) * THREADS} for token in old]
    assert requests(emulator) == len(keys) + len(late) * len(keys)  # each tried once, under the lease

    emulator.clear_faults()
    renewed = fleet.ask({"op": "wait_new", "keys": keys, "old": old})
    news = {index: {reply["tokens"][index] for reply in renewed.values()} for index in range(len(keys))}
    assert all(len(tokens) == 1 for tokens in news.values()), news
    assert all(news[index] != {old[index]} for index in news)
    assert requests(emulator) == len(keys) + len(late) * len(keys) + len(keys)


# ---------------------------------------------------------------------- leaders that fail


def won_leases(spy: Path) -> List[Dict[str, Any]]:
    """The leases won so far, in order (``_fleet_worker._Spy`` writes one file per win)."""
    found = []
    for path in spy.glob("won-*"):
        if path.name.endswith(".tmp"):
            continue
        record = json.loads(path.read_text())
        record["at"] = path.stat().st_mtime_ns
        found.append(record)
    return sorted(found, key=lambda r: r["at"])


@STORES
def test_a_leader_killed_mid_fetch_costs_one_more_request_and_no_caller_error(
    fleet: Fleet, emulator: Emulator, agent: str, backend: Backend, tmp_path: Path
) -> None:
    spy = tmp_path / "spy"
    spy.mkdir()
    setup(fleet, emulator, backend.spec(spy_dir=str(spy)))
    emulator.set_faults([{"path": "/oauth/token", "kind": "delay", "delay_ms": 1500}])
    burst = fleet.start(KEYS, THREADS)
    wait_for(lambda: len(won_leases(spy)) >= len(KEYS) and requests(emulator) >= len(KEYS))
    leases = won_leases(spy)
    victim = leases[-1]["pid"]  # its request arrived last: surely still inside the delay
    led = Counter(record["scope"] for record in leases if record["pid"] == victim)
    fleet.kill(victim)
    outcome = burst.finish()

    check_clean(outcome, (PROCESSES - 1) * THREADS * len(KEYS))
    used = check_tokens(emulator, outcome)
    one_token_per_key(outcome)
    wait_for(lambda: emulator.stats()["tokens_issued"] == requests(emulator))  # the victim's too
    issued = {record["jti"]: record["scope"] for record in emulator.issued_tokens()}
    wasted = Counter(scope for token_id, scope in issued.items() if token_id not in used)
    # only fetches the victim led were lost (at least the one the kill landed in), each once
    assert 1 <= sum(wasted.values()) and not wasted - led
    assert requests(emulator) == len(KEYS) + sum(wasted.values())


@STORES
def test_a_leader_slower_than_its_lease_keeps_it_by_extending_it(
    fleet: Fleet, emulator: Emulator, agent: str, backend: Backend
) -> None:
    from oculus_lite.tokens._fleet import LEASE_SECONDS

    setup(fleet, emulator, backend.spec())
    emulator.set_faults([{"path": "/oauth/token", "kind": "delay", "delay_ms": LEASE_SECONDS * 1000 + 1000}])
    outcome = fleet.burst(KEYS, THREADS)

    check_clean(outcome, PROCESSES * THREADS * len(KEYS))
    check_tokens(emulator, outcome)
    one_token_per_key(outcome)
    assert requests(emulator) == len(KEYS)


@pytest.mark.parametrize("backend", ["redis"], indirect=True)
def test_a_lease_that_lapses_under_a_slow_leader_costs_at_most_one_duplicate(
    fleet: Fleet, emulator: Emulator, agent: str, backend: Backend
) -> None:
    """The leader's extensions never land (a store that evicts, a stalled worker): the lease
    lapses mid-fetch, one waiter takes it over. (A file store's lease is the kernel's flock:
    it cannot lapse while its holder lives.)"""
    lease = 1.5
    setup(fleet, emulator, backend.spec(extend=False), patches={"LEASE_SECONDS": lease})
    emulator.set_faults([{"path": "/oauth/token", "kind": "delay", "delay_ms": lease * 1500}])
    outcome = fleet.burst(KEYS, THREADS)

    check_clean(outcome, PROCESSES * THREADS * len(KEYS))
    check_tokens(emulator, outcome)
    assert len(KEYS) <= requests(emulator) <= 2 * len(KEYS)
    store = backend.open()
    try:
        for index, key in enumerate(KEYS):
            got = outcome.tokens(index)
            assert 1 <= len(got) <= 2
            shared = store.get(store_key(emulator, key))
            assert shared is not None  # the longer-lived of the two stays
            assert shared.access_token == max(got, key=lambda token: decode(token).claims["exp"])
    finally:
        store.close()


# ---------------------------------------------------------------------- the store fails


@pytest.mark.parametrize("failure", ["stopped", "killed"])
def test_redis_stopped_or_killed_mid_run_never_reaches_a_caller_and_sharing_resumes(
    fleet: Fleet, emulator: Emulator, agent: str, failure: str
) -> None:
    missing = redis_missing()
    if missing is not None:
        if _REQUIRED:
            raise RuntimeError(missing)
        pytest.skip(missing)
    server = start_redis()
    try:
        setup(fleet, emulator, {"url": fleet_url(server)}, patches={"STORE_COOL_OFF": 1.0})
        emulator.set_faults([{"path": "/oauth/token", "kind": "delay", "delay_ms": 1000}])
        burst = fleet.start(KEYS, THREADS)
        wait_for(lambda: requests(emulator) >= 1)  # leaders are fetching, the rest wait on Redis
        if failure == "stopped":
            server.pause()
        else:
            server.kill()
        outcome = burst.finish()
        check_clean(outcome, PROCESSES * THREADS * len(KEYS))
        check_tokens(emulator, outcome)
        assert len(KEYS) <= requests(emulator) <= PROCESSES * len(KEYS)
        assert outcome.stats()["store_errors"] >= 1

        if failure == "stopped":
            server.resume()
        else:
            server.start()  # empty, on the same port
        emulator.clear_faults()
        time.sleep(2 * 1.0 + 0.5)  # every process's cool-off (jittered up to twice 1 s) is over
        before = requests(emulator)
        again = fleet.burst([("fleet:again", None), ("fleet:again", AUDIENCE)], THREADS)
        check_clean(again, PROCESSES * THREADS * 2)
        check_tokens(emulator, again)
        one_token_per_key(again)
        assert requests(emulator) - before == 2
    finally:
        server.stop()


@STORES
def test_garbage_swapped_and_forged_values_are_misses_never_errors(
    fleet: Fleet, emulator: Emulator, agent: str, backend: Backend
) -> None:
    keys = [store_key(emulator, key) for key in KEYS]
    genuine = emulator.issue_token(CLIENT_ID, scope="fleet:read fleet:write", ttl=300)
    if backend.kind == "redis":
        sealer_for = importlib.import_module("oculus_lite_redis._seal").sealer_for
        sealer = sealer_for(key_material_for(SECRET), True)
        names = [sealer.names(key).token for key in keys]
        foreign = sealer_for(key_material_for("another-secret"), True)
        backend.admin.set(names[0], os.urandom(200), px=300_000)
        backend.admin.set(names[1], sealer.seal(names[2], SharedToken(genuine, 300)), px=300_000)
        backend.admin.set(names[2], foreign.seal(names[2], SharedToken(genuine, 300)), px=300_000)
    else:
        from oculus_lite.tokens._file_store import FileTokenStore

        assert backend.directory is not None
        store = FileTokenStore(backend.directory)
        slots = [store._slot(key)[0] for key in keys]
        store.put(keys[2], SharedToken(genuine, 300))  # written for key 2: swapped onto key 1
        sealed = (backend.directory / (slots[2] + ".tok")).read_bytes()
        forged = genuine.rsplit(".", 1)[0] + "." + "A" * len(genuine.rsplit(".", 1)[1])
        store.put(keys[2], SharedToken(forged, 300))  # authentic HMAC, signature not the issuer's
        for slot, data in ((slots[0], os.urandom(200)), (slots[1], sealed)):
            path = backend.directory / (slot + ".tok")
            path.write_bytes(data)
            path.chmod(0o600)
        store.close()

    setup(fleet, emulator, backend.spec())
    outcome = fleet.burst(KEYS, THREADS)
    check_clean(outcome, PROCESSES * THREADS * len(KEYS))
    check_tokens(emulator, outcome)  # each caller's own scope, never the planted token
    assert genuine not in {t for i in range(len(KEYS)) for t in outcome.tokens(i)}
    one_token_per_key(outcome)
    assert requests(emulator) == len(KEYS)
    if backend.kind == "file":  # the forged token was read, checked against the JWKS, refused
        assert outcome.stats()["rejected_reads"] >= 1


@pytest.mark.parametrize("backend", ["redis"], indirect=True)
def test_redis_holds_no_client_id_scope_audience_secret_or_token_in_clear(
    fleet: Fleet, emulator: Emulator, agent: str, backend: Backend
) -> None:
    setup(fleet, emulator, backend.spec())
    outcome = fleet.burst(KEYS, THREADS)
    check_clean(outcome, PROCESSES * THREADS * len(KEYS))
    tokens = one_token_per_key(outcome)

    needles = {CLIENT_ID, SECRET, AUDIENCE, "fleet:read", "fleet:write", "fleet-audience", "sst_"}
    for token in tokens:
        header, payload, signature = token.split(".")
        needles |= {token, header, payload, signature, jti(token)}
    keys = list(backend.admin.scan_iter(count=1000))
    assert len(keys) == len(KEYS)  # one token each; leases released, no cool-down
    for name in keys:
        text = name.decode("ascii")
        assert text.startswith("oculus:v1:{") and text.endswith("}:tok") and len(text) == 48
        value = backend.admin.get(name)
        assert value.startswith(b"v1") and len(value) > 500
        for blob in (name, value):
            for needle in needles:
                assert needle.encode("utf-8") not in blob


# ---------------------------------------------------------------------- revocation and 401s


@STORES
def test_a_revoked_token_is_refetched_once_for_the_whole_fleet(
    fleet: Fleet, emulator: Emulator, agent: str, backend: Backend
) -> None:
    keys = KEYS[:2]
    setup(fleet, emulator, backend.spec())
    first = fleet.burst(keys, THREADS)
    check_clean(first, PROCESSES * THREADS * len(keys))
    old = one_token_per_key(first)
    emulator.revoke(jti(old[0]))

    noticed = fleet.ask({"op": "check_revocation"})
    assert all(reply["changed"] for reply in noticed.values())
    after = fleet.burst(keys, THREADS)

    assert after.crashes() == []
    # each process tells exactly one caller that its cached token was revoked, once
    revoked = [e for e in after.errors() if e[1] == TokenRevokedException.__name__]
    assert len(revoked) == PROCESSES and len(after.errors()) == PROCESSES
    check_tokens(emulator, after)
    new = one_token_per_key(after)
    assert new[0] != old[0] and new[1] == old[1]
    assert requests(emulator) == len(keys) + 1


@STORES
def test_a_token_every_process_reports_rejected_is_refetched_once(
    fleet: Fleet, emulator: Emulator, agent: str, backend: Backend
) -> None:
    keys = KEYS[:2]
    setup(fleet, emulator, backend.spec())
    first = fleet.burst(keys, THREADS)
    old = one_token_per_key(first)

    held = fleet.ask({"op": "invalidate", "tokens": [old[0]]})  # a downstream said 401
    assert all(reply["held"] == [True] for reply in held.values())
    after = fleet.burst(keys, THREADS)

    check_clean(after, PROCESSES * THREADS * len(keys))
    check_tokens(emulator, after)
    new = one_token_per_key(after)
    assert new[0] != old[0] and new[1] == old[1]
    assert requests(emulator) == len(keys) + 1


@STORES
def test_a_429_with_retry_after_cools_the_whole_fleet_for_that_key(
    fleet: Fleet, emulator: Emulator, agent: str, backend: Backend
) -> None:
    key = KEYS[0]
    setup(fleet, emulator, backend.spec())
    # one 429, slow enough that every other process is waiting on the lease when it comes
    emulator.set_faults(
        [
            {
                "path": "/oauth/token",
                "kind": "status",
                "status": 429,
                "retry_after": "60",
                "delay_ms": 500,
                "next": 1,
            }
        ]
    )
    for _ in range(2):  # the burst that meets the 429, then one inside the window
        outcome = fleet.burst([key], THREADS)
        assert outcome.crashes() == []
        errors = outcome.errors()
        assert len(errors) == PROCESSES * THREADS
        assert {e[1] for e in errors} == {RateLimitError.__name__}
        assert requests(emulator) == 1
    assert {e[2] for e in errors} == {"fleet_cool_down"}
    # another key is not cooling: the service answers it (the 429 rule fired its one time)
    other = fleet.burst([KEYS[1]], THREADS)
    check_clean(other, PROCESSES * THREADS)
    assert requests(emulator) == 2


# ---------------------------------------------------------------------- fork


@STORES
def test_a_client_built_before_fork_shares_through_the_store_in_its_children(
    fleet: Fleet, emulator: Emulator, agent: str, backend: Backend
) -> None:
    """The gunicorn ``--preload`` shape: one process builds the client (and uses it: its
    store connection, worker thread and cache exist), then forks workers that use it."""
    master = [fleet.workers[0]]
    fleet.ask(
        {
            "op": "setup",
            "client_id": CLIENT_ID,
            "secret": SECRET,
            "url": emulator.url,
            "store": backend.spec(),
        },
        master,
    )
    fleet.ask({"op": "prepare", "keys": KEYS[:1], "threads": 1}, master)
    warm = fleet.ask({"op": "go"}, master)
    assert not next(iter(warm.values()))["errors"]

    children = 3
    forked = fleet.ask({"op": "fork", "children": children, "keys": KEYS, "threads": THREADS}, master)
    replies = next(iter(forked.values()))["children"]
    assert [child["status"] for child in replies] == [0] * children
    outcome = Outcome({i: child["reply"] for i, child in enumerate(replies)}, list(KEYS))
    check_clean(outcome, children * THREADS * len(KEYS))
    check_tokens(emulator, outcome)
    one_token_per_key(outcome)
    assert requests(emulator) == len(KEYS)  # the parent's one, then one per new key for all children


@STORES
def test_a_child_forked_while_its_parent_leads_a_fetch_holds_none_of_its_leases(
    fleet: Fleet, emulator: Emulator, agent: str, backend: Backend
) -> None:
    """The child must not extend (and so keep alive) a lease whose fetch runs in its parent:
    it waits like any other process and adopts the parent's token."""
    master = [fleet.workers[0]]
    fleet.setup(master, client_id=CLIENT_ID, secret=SECRET, url=emulator.url, store=backend.spec())
    # One call first, as an app that uses its client at start-up does: a fork that lands
    # while another thread is still importing (the transport's first request imports
    # urllib) leaves that module's import lock held in the child, which then hangs.
    fleet.ask({"op": "prepare", "keys": KEYS[1:2], "threads": 1}, master)
    fleet.ask({"op": "go"}, master)
    emulator.set_faults([{"path": "/oauth/token", "kind": "delay", "delay_ms": 1000, "next": 1}])
    reply = next(iter(fleet.ask({"op": "fork_mid_fetch", "key": KEYS[0]}, master).values()))

    assert reply["status"] == 0
    assert reply["child"]["held"] is False
    assert reply["child"]["token"] == reply["parent"]
    assert requests(emulator) == 2
