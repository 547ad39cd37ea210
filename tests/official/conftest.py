"""The official SDK (``goantiai-sdk``, import ``oculus_sdk``) against a real emulator on loopback.

``oculus_sdk`` is a test-only dependency installed by ``tox run -e official`` (it imports only
on Python 3.11+): the test modules skip without it, except when ``OCULUS_REQUIRE_OFFICIAL`` is
set (the tox env sets it), where a missing package is an error, never a silent skip. This
conftest imports nothing of it, so it loads either way.
"""

import json
import threading
import time
from typing import Any, Callable, Dict, Iterator, List
from urllib.parse import urlencode
from urllib.request import urlopen

import pytest

from oculus_lite.emulator import Emulator

AGENT = "official-agent"
SECRET = "official-S3CRET"
CAPS = ["stripe.customers.read", "stripe.charges.create", "github.issues.read"]
CONSTRAINTS = {"max_amount_cents": 5000, "task_context_required": True}
STRIPE_KEY = "sk_test_official_stripe"
GITHUB_TOKEN = "ghp_official_github"
MAP = {
    "stripe": {
        "capabilities": {"stripe.customers.read": {"risk": "low"}, "stripe.charges.create": {"risk": "high"}},
        "deny_always": ["stripe.payouts.create"],
    },
    "github": {"capabilities": {"github.issues.read": {}}, "deny_always": []},
}


@pytest.fixture
def governed(emulator: Emulator) -> Emulator:
    """An emulator with one governed agent (dotted scopes by default, constraints, a policy id),
    a capability map, credentials for both integrations, and two child agents."""
    emulator.add_agent(
        AGENT,
        SECRET,
        scopes=CAPS + ["stripe.refunds.*"],
        default_scopes=CAPS,
        constraints=CONSTRAINTS,
        policy_id="pol-official",
    )
    emulator.add_agent("child-agent", "child-pw", scopes=["x.y"])
    emulator.add_agent("grandchild-agent", "gc-pw", scopes=["x.y"])
    emulator.set_capability_map(MAP)
    emulator.set_credential("stripe", "stripe_secret_key", STRIPE_KEY)
    emulator.set_credential("github", "token", GITHUB_TOKEN)
    return emulator


@pytest.fixture
def started(governed: Emulator) -> Iterator[Any]:
    """An official ``OculusClient`` after ``startup()``; stopped after the test."""
    from oculus_sdk import OculusClient  # type: ignore[import-not-found,import-untyped,unused-ignore]

    client = OculusClient(AGENT, SECRET, governed.url, task_id="task-official")
    client.startup()
    try:
        yield client
    finally:
        client.stop()


@pytest.fixture
def stop_later() -> Iterator[Callable[[Any], Any]]:
    """Register extra official clients to stop after the test."""
    clients: List[Any] = []

    def register(client: Any) -> Any:
        clients.append(client)
        return client

    yield register
    for client in clients:
        client.stop()


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Sync on a state the SDK's own threads reach (never a timing assertion)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.01)


def service_token(emu: Emulator, client_id: str, secret: str) -> str:
    """An SDK service token from a real token request (no scope: the agent's default grant)."""
    form = urlencode({"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret})
    with urlopen(emu.url + "/oauth/token", data=form.encode(), timeout=10) as resp:
        token: str = json.loads(resp.read())["sdk_service_token"]
    return token


def oculus_threads() -> List[str]:
    return sorted(
        t.name for t in threading.enumerate() if t.name.startswith("oculus-") and "emulator" not in t.name
    )


def events_by_tool(emu: Emulator) -> Dict[str, List[Dict[str, Any]]]:
    out: Dict[str, List[Dict[str, Any]]] = {}
    for event in emu.audit_events():
        out.setdefault(event["tool_name"], []).append(event)
    return out
