"""Fixtures for governance through a real ``Client`` against the emulator over loopback sockets.

One ``ManualClock`` drives both the emulator and the client, so every time-dependent rule
(token expiry, ``sync_interval``, service-token expiry) is exercised by ``clock.advance``
instead of sleeping. Background threads are awaited on the state they produce (``wait_for``:
a sync point, never a timing assertion), and request counts are read from
``emulator.stats()`` after ``client.stop()`` has joined the client's threads, so they are
exact.
"""

import threading
import time
from typing import Any, Callable, Dict, Iterator, List

import pytest

from oculus_lite import Client, ManualClock
from oculus_lite.audit import AuditEmitter
from oculus_lite.emulator import Emulator
from oculus_lite.governance._runtime import Runtime
from oculus_lite.governance._state import AgentState

#: A Wednesday, 2024-01-03 12:00:00 UTC: inside any "mon-fri 09:00-17:00" window.
NOON_WEDNESDAY = 1704283200.0
AGENT = "gov-agent"
SECRET = "gov-S3CRET-4c1d9e"
CAPS = ["stripe.customers.read", "stripe.charges.create", "github.issues.read"]
CONSTRAINTS = {"max_amount_cents": 5000}
STRIPE_KEY = "sk_live_STRIPEKEY0123456789"
GITHUB_TOKEN = "ghp_GITHUBTOKEN0123456789abcdef"
MAP: Dict[str, Any] = {
    "stripe": {
        "capabilities": {"stripe.customers.read": {"risk": "low"}, "stripe.charges.create": {"risk": "high"}},
        "deny_always": ["stripe.payouts.create"],
    },
    "github": {"capabilities": {"github.issues.read": {}}, "deny_always": []},
}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start=NOON_WEDNESDAY)


@pytest.fixture
def emu(clock: ManualClock) -> Iterator[Emulator]:
    """An emulator on the test's clock with one governed agent: a default grant (no scope sent),
    a wider policy (``stripe.payouts.create`` and refunds are grantable only by asking), a cap of
    5000 cents, a policy id, the capability map and both integrations' credentials."""
    with Emulator(clock=clock) as emulator:
        configure_agent(emulator)
        emulator.set_capability_map(MAP)
        emulator.set_credential("stripe", "api_key", STRIPE_KEY)
        emulator.set_credential("github", "token", GITHUB_TOKEN)
        yield emulator


def configure_agent(emulator: Emulator, **overrides: Any) -> None:
    """(Re)define the governed agent, keeping its secret; ``overrides`` replace the defaults."""
    settings: Dict[str, Any] = dict(
        scopes=CAPS + ["stripe.payouts.create", "stripe.refunds.create"],
        default_scopes=CAPS + ["stripe.payouts.create"],
        constraints=CONSTRAINTS,
        policy_id="pol-gov",
    )
    settings.update(overrides)
    emulator.add_agent(AGENT, SECRET, **settings)


@pytest.fixture
def make_client(emu: Emulator, clock: ManualClock) -> Iterator[Callable[..., Client]]:
    """Clients of the governed agent on the shared clock (no revocation poller unless asked);
    every one is stopped after the test."""
    made: List[Client] = []

    def make(*args: Any, **kwargs: Any) -> Client:
        kwargs.setdefault("clock", clock)
        kwargs.setdefault("revocation_interval", None)
        if not args:
            args = (kwargs.pop("client_id", AGENT), kwargs.pop("client_secret", SECRET), emu.url)
        client = Client(*args, **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        client.stop()


@pytest.fixture
def client(make_client: Callable[..., Client]) -> Client:
    return make_client()


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Wait for a state a background thread reaches (a sync point, never a timing assertion)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.005)


def client_threads() -> List[str]:
    """Names of the live threads a client starts (the emulator's own excluded, and the transport's
    per-process keep-alive reaper, which ends by itself once no connection is idle)."""
    return sorted(
        t.name
        for t in threading.enumerate()
        if t.name.startswith(("oculus-lite-", "oculus-audit", "oculus-jwks", "oculus-revocation"))
        and t.name != "oculus-lite-keepalive"
    )


def counts(emu: Emulator, *names: str) -> Dict[str, Any]:
    stats = emu.stats()
    return {name: stats[name] for name in names}


def events(emu: Emulator, **match: Any) -> List[Dict[str, Any]]:
    """The audit events the emulator received whose fields equal ``match``."""
    return [e for e in emu.audit_events() if all(e.get(k) == v for k, v in match.items())]


def worker_barrier(client: Client) -> None:
    """Wait until the client's worker has run every job due now: a probe job due now runs after
    every job due earlier (a sync point, so counts read afterwards are exact)."""
    ran = threading.Event()

    def probe(_: Any) -> None:
        ran.set()

    client._worker.schedule("test-probe", 0.0, probe)
    assert ran.wait(30), "the client's worker did not run a job due now"


#: The ``make_client`` fixture's type.
MakeClient = Callable[..., Client]


def runtime(client: Client) -> Runtime:
    """The client's governance runtime (created by the first governed call)."""
    gov = client._gov
    assert gov is not None, "the client has no governance runtime yet"
    return gov


def emitter_of(client: Client) -> AuditEmitter:
    """The client's audit emitter (started by startup)."""
    emitter = client._governance_audit
    assert emitter is not None, "the client has no audit emitter"
    return emitter


def jti_of(client: Client) -> str:
    """The jti of the token the client enforces on now."""
    jti = client._governance_state().jti
    assert jti
    return jti


def published(client: Client) -> AgentState:
    """The state the client published last (without going through the governed-call path)."""
    state = runtime(client).current[0]
    assert state is not None, "no state published yet"
    return state


def service_token_of(client: Client) -> str:
    """The sdk_service_token of the agent token the client holds."""
    entry = client._cache.get(runtime(client).key)
    assert entry is not None and entry.extra is not None
    token = entry.extra["sdk_service_token"]
    assert isinstance(token, str)
    return token
