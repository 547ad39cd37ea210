"""Shared fixtures: a real emulator on loopback per test, a clean environment, and
clients that are always stopped.

A test that asks for ``clock`` gets a ``TestClock`` (a ``ManualClock``) shared by its
``emulator`` and every client ``make_client`` builds: token lifetimes, refresh ahead,
backoff and retry sleeps then move by hand (``clock.advance_to(entry.margin_at)``) instead
of passing in real time, and ``clock.wait_idle()`` waits for background workers to finish
what the last move made due. Sockets stay real; only time is injected.
"""

import os
import threading
from time import monotonic as _real_monotonic
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytest

from oculus_lite import ManualClock
from oculus_lite.emulator import Emulator

try:  # hypothesis is a test-only dependency; the property tests skip without it
    from hypothesis import HealthCheck, settings

    # Examples are generated, not waited for: no per-example deadline on a shared 2-core box.
    settings.register_profile(
        "oculus", deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
    )
    settings.load_profile("oculus")
except ImportError:  # pragma: no cover - hypothesis not installed
    pass

_SCRUBBED = (
    "AGENT_CLIENT_ID",
    "AGENT_CLIENT_SECRET",
    "ANTI_AI_URL",
    "OCULUS_CLIENT_ID",
    "OCULUS_CLIENT_SECRET",
    "OCULUS_BASE_URL",
    "OCULUS_TASK_ID",
    "AGENT_OTP_API_KEY",
    "AGENT_OTP_URL",
    "AGENT_OTP_ADMIN_TOKEN",
)

#: A secret that must never show up in any log record, repr, exception or CLI output.
CANARY_SECRET = "canary-S3CRET-7f3a9c"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _SCRUBBED:
        monkeypatch.delenv(name, raising=False)
    # Plugin backends (requests, httpx) would send loopback traffic to a configured proxy.
    no_proxy = ",".join(filter(None, [os.environ.get("NO_PROXY"), "127.0.0.1", "localhost"]))
    monkeypatch.setenv("NO_PROXY", no_proxy)
    monkeypatch.setenv("no_proxy", no_proxy)


class TestClock(ManualClock):
    """A ``ManualClock`` that moves to exact instants and knows when background workers rest.

    Background workers wait for their next job in ``wait_until``; a worker is idle when it
    waits there for an instant still in the future and nobody has woken it. ``wait_idle``
    returns once ``workers`` workers are idle, so a test advances time, waits for the work
    that became due (a refresh, a poll) to finish, and only then looks at the outcome."""

    __test__ = False  # not a test class, whatever its name

    def __init__(self) -> None:
        super().__init__()
        self._parked: Dict[int, Tuple[float, threading.Event]] = {}
        self._idle_changed = threading.Condition()

    def advance_to(self, instant: float) -> None:
        """Move ``monotonic()`` to ``instant`` (at most a rounding error past it, never back)."""
        while self.monotonic() < instant:
            self.advance(max(instant - self.monotonic(), 1e-9))

    def wait_until(self, deadline: float, wakeup: threading.Event) -> None:
        me = threading.get_ident()
        with self._idle_changed:
            self._parked[me] = (deadline, wakeup)
            self._idle_changed.notify_all()
        try:
            super().wait_until(deadline, wakeup)
        finally:
            with self._idle_changed:
                del self._parked[me]
                self._idle_changed.notify_all()

    def idle_workers(self) -> int:
        now = self.monotonic()
        with self._idle_changed:
            return sum(1 for due, woken in self._parked.values() if due > now and not woken.is_set())

    def wait_idle(self, workers: int = 1, timeout: float = 20.0) -> None:
        """Wait until ``workers`` background workers rest; the bound only turns a hang into a
        failure (a worker sees a wake-up within 20 ms, then runs what is due)."""
        deadline = _real_monotonic() + timeout
        with self._idle_changed:
            while self.idle_workers() < workers:
                if _real_monotonic() > deadline:
                    raise AssertionError(
                        "{} background worker(s) not idle within {} s ({} idle)".format(
                            workers, timeout, self.idle_workers()
                        )
                    )
                # Also re-checked every 10 ms: setting a wake-up Event does not notify us.
                self._idle_changed.wait(0.01)


@pytest.fixture
def clock() -> TestClock:
    """Time for this test's emulator and clients: it moves only when the test moves it."""
    return TestClock()


@pytest.fixture
def emulator(request: pytest.FixtureRequest) -> Iterator[Emulator]:
    shared: Optional[TestClock] = (
        request.getfixturevalue("clock") if "clock" in request.fixturenames else None
    )
    with Emulator(clock=shared) as emu:
        yield emu


@pytest.fixture
def agent(emulator: Emulator) -> Any:
    """An active agent whose secret is the canary, granted db:* and crm:* scopes."""
    emulator.add_agent("agent-1", CANARY_SECRET, scopes=["db:*", "crm:*"])

    class Agent:
        client_id = "agent-1"
        client_secret = CANARY_SECRET
        url = emulator.url

    return Agent


@pytest.fixture
def make_client(
    request: pytest.FixtureRequest, emulator: Emulator, agent: Any
) -> Iterator[Callable[..., Any]]:
    from oculus_lite import Client

    made: List[Any] = []

    def make(**kwargs: Any) -> Any:
        kwargs.setdefault("revocation_interval", None)
        if "clock" in request.fixturenames:
            kwargs.setdefault("clock", emulator.clock)
        client = Client(
            kwargs.pop("client_id", agent.client_id),
            kwargs.pop("client_secret", agent.client_secret),
            kwargs.pop("base_url", emulator.url),
            **kwargs,
        )
        made.append(client)
        return client

    yield make
    for client in made:
        client.stop()


@pytest.fixture
def canary() -> str:
    return CANARY_SECRET


@pytest.fixture
def token_requests(emulator: Emulator) -> Callable[[], int]:
    """How many token requests the emulator has received so far."""
    return lambda: int(emulator.stats()["token_requests"])
