"""Fixtures for the governance core: a loopback audit server, emitters that are always stopped,
and ``Agent``, a small in-memory implementation of the ``Governed`` protocol (the seam the
client implements), so the enforcing wrapper and TaskContext are tested on their own."""

import time
from typing import Any, Callable, Iterator, List, Optional

import pytest

from oculus_lite.audit import AuditEmitter
from oculus_lite.evaluator import CapabilityEvaluator
from oculus_lite.exceptions import ClientClosedError
from oculus_lite.governance._capability_map import CapabilityMap
from oculus_lite.governance._credentials import Credentials
from oculus_lite.governance._state import AgentState

from ._audit_server import AuditServer

#: A Wednesday, 2024-01-03 12:00:00 UTC.
NOON_WEDNESDAY = 1704283200.0


class Agent:
    """Implements ``Governed``: the state is swapped as one object, like the client does."""

    def __init__(
        self,
        state: AgentState,
        emitter: Optional[AuditEmitter] = None,
        *,
        now: Callable[[], float] = lambda: NOON_WEDNESDAY,
        task_id: Optional[str] = None,
    ) -> None:
        self.state = state
        self._governance_audit = emitter
        self._governance_evaluator = CapabilityEvaluator(now=now)
        self.task_id = task_id
        self.closed = False
        self.failure: Optional[BaseException] = None
        self.state_reads = 0

    def _governance_state(self) -> AgentState:
        self.state_reads += 1
        if self.closed:
            raise ClientClosedError("the client was stopped")
        if self.failure is not None:
            raise self.failure
        return self.state

    async def _agovernance_state(self) -> AgentState:
        return self._governance_state()


def make_state(
    scopes: Any = ("stripe.charges.create", "stripe.customers.read"),
    constraints: Any = None,
    **kwargs: Any,
) -> AgentState:
    kwargs.setdefault("agent_id", "agent-7")
    kwargs.setdefault("jti", "jti-1")
    kwargs.setdefault("policy_id", "pol-1")
    return AgentState(
        scopes=frozenset(scopes), constraints={} if constraints is None else constraints, **kwargs
    )


STRIPE_MAP = CapabilityMap.from_wire(
    {
        "integrations": {
            "stripe": {
                "capabilities": {"stripe.charges.create": {}, "stripe.customers.read": {}},
                "deny_always": ["stripe.payouts.create"],
            },
            "github": {"capabilities": {"github:repo:read": {}}},
        }
    }
)
STRIPE_CREDENTIALS = Credentials({"stripe": {"api_key": "sk_live_CREDENTIALVALUE123"}})


@pytest.fixture
def audit_server() -> Iterator[AuditServer]:
    with AuditServer() as server:
        yield server


@pytest.fixture
def make_emitter(audit_server: AuditServer) -> Iterator[Callable[..., AuditEmitter]]:
    made: List[AuditEmitter] = []

    def make(**kwargs: Any) -> AuditEmitter:
        kwargs.setdefault("stop_timeout", 20.0)
        emitter = AuditEmitter(
            kwargs.pop("base_url", audit_server.url),
            kwargs.pop("sdk_service_token", "svc-token"),
            kwargs.pop("agent_id", "agent-7"),
            **kwargs,
        )
        made.append(emitter)
        return emitter

    yield make
    for emitter in made:
        emitter.stop(timeout=5.0)


def wait_until(predicate: Callable[[], bool], timeout: float = 20.0) -> bool:
    """Poll a condition another thread makes true (a sync point, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True
