"""RevocationList against the emulator: ETag/304, the poller thread, failures and backoff."""

import asyncio
import logging
import threading
from typing import Any, FrozenSet, Iterator, List, Optional

import pytest

from oculus_lite.emulator import Emulator
from oculus_lite.exceptions import ConfigurationError, InvalidResponseError, ServerError
from oculus_lite.transport import Request, Response, UrllibTransport
from oculus_lite.verify._revocation import RevocationList


class Watched:
    """The real urllib transport, counting completed requests so tests can wait for the N-th
    (a Condition, no sleeps); ``explode_next`` makes requests raise a non-Oculus bug."""

    def __init__(self) -> None:
        self.inner = UrllibTransport()
        self.cond = threading.Condition()
        self.count = 0
        self.explode_next = 0

    def request(self, request: Request) -> Response:
        try:
            with self.cond:
                if self.explode_next:
                    self.explode_next -= 1
                    raise RuntimeError("transport bug")
            return self.inner.request(request)
        finally:
            with self.cond:
                self.count += 1
                self.cond.notify_all()

    def wait_for(self, n: int, timeout: float = 20.0) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: self.count >= n, timeout)

    def close(self) -> None:
        self.inner.close()


class Changes:
    """on_change callback that records each new set and wakes waiters."""

    def __init__(self) -> None:
        self.seen: List[FrozenSet[str]] = []
        self.cond = threading.Condition()

    def __call__(self, revoked: FrozenSet[str]) -> None:
        with self.cond:
            self.seen.append(revoked)
            self.cond.notify_all()

    def wait_for_jti(self, jti: str, timeout: float = 20.0) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: any(jti in s for s in self.seen), timeout)


@pytest.fixture
def transport() -> Iterator[Watched]:
    t = Watched()
    yield t
    t.close()


@pytest.fixture
def lists() -> Iterator[List[RevocationList]]:
    made: List[RevocationList] = []
    yield made
    for rl in made:
        rl.stop()


def _make(emulator: Emulator, transport: Any, lists: List[RevocationList], **kw: Any) -> RevocationList:
    rl = RevocationList(emulator.url + "/oauth/revoked-tokens", transport=transport, **kw)
    lists.append(rl)
    return rl


def test_refresh_uses_etag_and_304(
    emulator: Emulator, transport: Watched, lists: List[RevocationList]
) -> None:
    rl = _make(emulator, transport, lists, interval=None)
    before = rl.last_success
    assert before is None and rl.revoked == frozenset()
    assert rl.refresh() is False  # empty list: nothing changed
    assert rl.last_success is not None
    emulator.revoke("jti-1")
    assert rl.refresh() is True and rl.revoked == frozenset({"jti-1"}) and "jti-1" in rl
    assert rl.refresh() is False and rl.refresh() is False
    stats = emulator.stats()
    assert stats["revocation_requests"] == 4 and stats["revocation_not_modified"] == 2
    emulator.revoke("jti-2")
    assert rl.refresh() is True and rl.revoked == frozenset({"jti-1", "jti-2"})


def test_arefresh(emulator: Emulator, transport: Watched, lists: List[RevocationList]) -> None:
    rl = _make(emulator, transport, lists, interval=None)
    emulator.revoke("jti-a")
    assert asyncio.run(rl.arefresh()) is True
    assert asyncio.run(rl.arefresh()) is False
    assert rl.revoked == frozenset({"jti-a"}) and emulator.stats()["revocation_not_modified"] == 1


def test_poller_picks_up_a_revocation_and_uses_304s(
    emulator: Emulator, transport: Watched, lists: List[RevocationList], clock: Any
) -> None:
    changes = Changes()
    rl = _make(
        emulator,
        transport,
        lists,
        interval=15.0,
        on_change=changes,
        name="test-revocation-poller",
        clock=clock,
    )
    rl.start()
    rl.start()  # idempotent
    clock.wait_idle()
    assert transport.count == 1  # the first poll runs at once
    emulator.revoke("jti-live")
    clock.advance(14.999)
    clock.wait_idle()
    assert transport.count == 1 and "jti-live" not in rl.revoked
    clock.advance(0.001)  # the interval is up: the next poll sees it
    clock.wait_idle()
    assert transport.count == 2 and changes.seen == [frozenset({"jti-live"})]
    assert "jti-live" in rl.revoked
    for _ in range(2):  # two more polls, both unchanged
        clock.advance(15.0)
        clock.wait_idle()
    assert transport.count == 4 and emulator.stats()["revocation_not_modified"] == 2
    assert len(changes.seen) == 1
    pollers = [t for t in threading.enumerate() if t.name == "test-revocation-poller"]
    assert len(pollers) == 1 and pollers[0].daemon
    rl.stop()
    rl.stop()
    assert not rl.running and not pollers[0].is_alive()


def test_poller_survives_endpoint_failures_and_keeps_the_list(
    emulator: Emulator,
    transport: Watched,
    lists: List[RevocationList],
    caplog: pytest.LogCaptureFixture,
    clock: Any,
) -> None:
    caplog.set_level(logging.INFO, logger="oculus_lite.revocation")
    changes = Changes()
    emulator.revoke("jti-old")
    interval = 15.0
    rl = _make(emulator, transport, lists, interval=interval, on_change=changes, retries=0, clock=clock)
    assert rl.refresh() is True
    emulator.set_faults([{"path": "/oauth/revoked-tokens", "next": 3, "kind": "status", "status": 503}])
    emulator.revoke("jti-new")
    rl.start()  # the list is fresh: the first poll is one interval away
    last = clock.monotonic()
    # After each failure the wait doubles (jittered down to 80 %), capped at 4 intervals.
    for failures, backoff in ((0, interval), (1, 2 * interval), (2, 4 * interval), (3, 4 * interval)):
        earliest = backoff if failures == 0 else 0.8 * backoff
        clock.advance_to(last + earliest - 0.001)
        clock.wait_idle()
        assert transport.count == 1 + failures and rl.failures == failures  # not yet
        clock.advance_to(last + backoff)
        clock.wait_idle()
        assert transport.count == 2 + failures  # polled once, in the window
        last = clock.monotonic()
        if failures < 3:
            assert rl.failures == failures + 1 and rl.revoked == frozenset({"jti-old"})
    # after three failed polls the list comes back, and it never lost the last good one
    assert changes.seen == [frozenset({"jti-old"}), frozenset({"jti-old", "jti-new"})]
    assert emulator.stats()["faults_fired"] == 3
    assert rl.revoked == frozenset({"jti-old", "jti-new"}) and rl.failures == 0
    stale = [r for r in caplog.records if "stale" in r.getMessage()]
    assert len(stale) == 3 and "last fetched" in stale[0].getMessage()
    assert [r.getMessage().rsplit("#", 1)[1] for r in stale] == ["1", "2", "3"]


def test_manual_refresh_failure_keeps_the_list(
    emulator: Emulator, transport: Watched, lists: List[RevocationList], clock: Any
) -> None:
    rl = _make(emulator, transport, lists, interval=None, retries=1, clock=clock)
    emulator.revoke("jti-1")
    rl.refresh()
    before = rl.last_success
    emulator.set_faults([{"path": "/oauth/revoked-tokens", "next": 2, "kind": "status", "status": 503}])
    with pytest.raises(ServerError):
        rl.refresh()  # 2 attempts, both 503
    assert rl.revoked == frozenset({"jti-1"}) and rl.last_success == before and rl.failures == 1
    emulator.set_faults([{"path": "/oauth/revoked-tokens", "next": 1, "kind": "badjson"}])
    with pytest.raises(InvalidResponseError):
        rl.refresh()
    assert rl.revoked == frozenset({"jti-1"}) and rl.failures == 2
    assert rl.refresh() is False and rl.failures == 0


def test_poller_survives_an_unexpected_exception(
    emulator: Emulator,
    transport: Watched,
    lists: List[RevocationList],
    caplog: pytest.LogCaptureFixture,
    clock: Any,
) -> None:
    changes = Changes()
    transport.explode_next = 1
    rl = _make(emulator, transport, lists, interval=15.0, on_change=changes, clock=clock)
    emulator.revoke("jti-x")
    rl.start()
    clock.wait_idle()  # the first poll hit the transport bug: logged, and the poller lives on
    assert transport.count == 1 and rl.running and not changes.seen
    assert any(r.exc_info and "unexpected error" in r.getMessage() for r in caplog.records)
    clock.advance(30.0)  # the backoff after one failure is at most two intervals
    clock.wait_idle()
    assert transport.count == 2 and changes.seen == [frozenset({"jti-x"})]


def test_broken_on_change_callback_does_not_break_refresh(
    emulator: Emulator, transport: Watched, lists: List[RevocationList]
) -> None:
    def broken(_: FrozenSet[str]) -> None:
        raise ValueError("callback bug")

    rl = _make(emulator, transport, lists, interval=None, on_change=broken)
    emulator.revoke("jti-1")
    assert rl.refresh() is True and "jti-1" in rl.revoked


def test_stop_wakes_a_sleeping_poller(
    emulator: Emulator, transport: Watched, lists: List[RevocationList]
) -> None:
    rl = _make(emulator, transport, lists, interval=3600.0)
    rl.start()
    assert transport.wait_for(1)
    rl.stop(timeout=30)
    states = [rl.running]
    rl.start()  # restartable after stop; the last fetch is recent, so it just waits
    states.append(rl.running)
    rl.stop(timeout=30)
    states.append(rl.running)
    assert states == [False, True, False] and transport.count == 1


def test_no_interval_means_no_thread(
    emulator: Emulator, transport: Watched, lists: List[RevocationList]
) -> None:
    rl = _make(emulator, transport, lists, interval=None)
    rl.start()
    assert not rl.running and transport.count == 0


@pytest.mark.parametrize("bad", [0, -1, "15", True])
def test_bad_interval(bad: Optional[Any]) -> None:
    with pytest.raises(ConfigurationError, match="interval"):
        RevocationList("http://127.0.0.1:1/x", transport=None, interval=bad)


def test_repr_is_safe(emulator: Emulator, transport: Watched, lists: List[RevocationList]) -> None:
    rl = _make(emulator, transport, lists, interval=None)
    assert "never fetched" in repr(rl)
    rl.refresh()
    assert "last fetched" in repr(rl) and "revoked=0" in repr(rl)
