"""Fixtures for the framework adapters: a governed agent on a real emulator (scopes, a 5,000-cent
amount cap, a 3-result cap, a capability map with a deny_always, a Stripe credential), adapter clients that are
always stopped, the audit events the emulator received, and the rule for a missing framework.

Each framework is a test-only dependency installed by its tox env (``adapters-langchain``,
``adapters-crewai``, ``adapters-openai``), which sets ``OCULUS_REQUIRE_ADAPTER`` to its name: there
a missing framework is an error; elsewhere its test module is skipped, saying which env runs it.
"""

import importlib
import os
import warnings
from types import ModuleType
from typing import Any, Callable, Dict, Iterator, List

import pytest

from oculus_lite.emulator import Emulator

AGENT = "adapter-agent"
SECRET = "adapter-S3CRET-41e7b2"
CHARGE = "stripe.charges.create"
READ = "stripe.customers.read"
PAYOUT = "stripe.payouts.create"  # granted by the token's scope, denied by the map's deny_always
DELETE = "github.repos.delete"  # never granted
STRIPE_KEY = "sk_live_ADAPTERKEY0123456789"
CAP_CENTS = 5000
MAX_RESULTS = 3
MAP = {
    "stripe": {
        "capabilities": {CHARGE: {"risk": "high"}, READ: {"risk": "low"}, PAYOUT: {"risk": "high"}},
        "deny_always": [PAYOUT],
    }
}


def framework(name: str, module: str, package: str) -> ModuleType:
    """Import a framework for a test module: skip without it, unless its tox env requires it.
    Warnings the framework raises while importing itself are its own, not ours."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ImportWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        if os.environ.get("OCULUS_REQUIRE_ADAPTER") == name:
            return importlib.import_module(module)  # an ImportError fails the env
        found: ModuleType = pytest.importorskip(
            module, reason="{} is installed by `tox run -e adapters-{}`".format(package, name)
        )
        return found


@pytest.fixture
def governed(emulator: Emulator) -> Emulator:
    emulator.add_agent(
        AGENT,
        SECRET,
        scopes=["stripe.*"],
        constraints={"max_amount_cents": CAP_CENTS, "max_results": MAX_RESULTS},
        policy_id="pol-adapters",
    )
    emulator.set_capability_map(MAP)
    emulator.set_credential("stripe", "api_key", STRIPE_KEY)
    return emulator


@pytest.fixture
def make(governed: Emulator) -> Iterator[Callable[..., Any]]:
    """``make(OculusLangChain)``: an adapter client of the governed agent, started, stopped later."""
    made: List[Any] = []

    def build(cls: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("scopes", [CHARGE, READ, PAYOUT])
        kwargs.setdefault("revocation_interval", None)
        client = cls(AGENT, SECRET, governed.url, **kwargs)
        made.append(client)
        client.startup()
        return client

    yield build
    for client in made:
        client.stop()


def audited(client: Any, emulator: Emulator, count: int) -> List[Dict[str, Any]]:
    """The audit events the emulator received once the client flushed: exactly ``count``."""
    assert client._governance_audit.flush(timeout=30)
    events = emulator.audit_events()
    assert len(events) == count, [(e["tool_name"], e["decision"], e["outcome"]) for e in events]
    return events
