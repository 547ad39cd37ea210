"""AgentState, the one snapshot the client swaps atomically (official flaw C7: claims were
three attribute writes read mid-swap)."""

import dataclasses

import pytest

from oculus_lite.evaluator import REASON_MALFORMED_CONSTRAINT
from oculus_lite.governance._capability_map import EMPTY_MAP
from oculus_lite.governance._state import AgentState

from .conftest import STRIPE_CREDENTIALS, STRIPE_MAP

CLAIMS = {
    "sub": "agent-9",
    "scope": "stripe.charges.create stripe.payouts.create  crm:read",
    "jti": "jti-9",
    "exp": 1700000000,
    "agent": {
        "constraints": {"max_amount_cents": 500},
        "policy_id": "pol-9",
        "delegation_depth": 2,
        "task_id": "task-9",
        "framework": "crewai",
    },
}


def test_from_claims():
    state = AgentState.from_claims(CLAIMS, capability_map=STRIPE_MAP, credentials=STRIPE_CREDENTIALS)
    assert state.agent_id == "agent-9" and state.jti == "jti-9" and state.expires_at == 1700000000.0
    assert state.scopes == {"stripe.charges.create", "stripe.payouts.create", "crm:read"}
    assert (state.policy_id, state.delegation_depth, state.task_id, state.framework) == (
        "pol-9",
        2,
        "task-9",
        "crewai",
    )
    assert state.constraints == {"max_amount_cents": 500}
    assert state.deny_always == {"stripe.payouts.create"}
    assert state.unconstrained == frozenset()  # constrained: every call is evaluated
    with pytest.raises(TypeError):
        state.constraints["max_amount_cents"] = 10**9  # type: ignore[index,unused-ignore]
    with pytest.raises(dataclasses.FrozenInstanceError):
        state.scopes = frozenset()  # type: ignore[misc]


def test_unconstrained_set_excludes_deny_always_and_follows_the_map():
    claims = dict(CLAIMS, agent={})
    state = AgentState.from_claims(claims, capability_map=STRIPE_MAP)
    assert state.unconstrained == {"stripe.charges.create", "crm:read"}
    assert state.with_map(EMPTY_MAP).unconstrained == state.scopes
    assert state.with_credentials(STRIPE_CREDENTIALS).credentials is STRIPE_CREDENTIALS


def test_null_or_odd_claims_fail_closed():
    null = AgentState.from_claims(dict(CLAIMS, agent={"constraints": None}))
    assert null.constraints is None and null.unconstrained == frozenset()
    denial = null.policy.check(None, None, None, lambda: 0.0)
    assert denial is not None and denial[0] == REASON_MALFORMED_CONSTRAINT and "null" in denial[1]
    odd = AgentState.from_claims({"sub": 5, "scope": ["a"], "agent": "x", "exp": True})
    assert odd.agent_id == "" and odd.scopes == {"a"} and odd.expires_at is None and odd.constraints == {}
    assert AgentState.from_claims({"agent": {"delegation_depth": "2"}}).delegation_depth == 0
