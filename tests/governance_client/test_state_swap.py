"""Claims, scopes and constraints are swapped as one immutable object (official flaw C7: the
official client wrote ``_jwt``, ``_jwt_claims`` and ``_jwt_exp`` one after the other while tool
calls read them, so a call could see the scope of one token with the constraints of another)."""

import threading
from typing import Any, Dict, FrozenSet, List, Optional, Set, Tuple, cast

from oculus_lite import Client, ManualClock
from oculus_lite.emulator import Emulator
from oculus_lite.evaluator import REASON_AMOUNT_EXCEEDED, REASON_NOT_IN_SCOPE
from oculus_lite.exceptions import PolicyViolationError

from .conftest import MakeClient, configure_agent, emitter_of, published, wait_for

CHARGE = "stripe.charges.create"
READ = "stripe.customers.read"
#: Token A grants the charge with a cap of 1000 cents; token B does not grant it and has no cap.
#: A charge of 5000 is denied under either, for a reason that names the token; only a torn read
#: (A's scope with B's constraints) would allow it.
TOKEN_A = dict(default_scopes=[CHARGE], constraints={"max_amount_cents": 1000}, policy_id="pol-A")
TOKEN_B = dict(default_scopes=[READ], constraints={}, policy_id="pol-B")
EXPECTED = {
    "pol-A": (frozenset([CHARGE]), REASON_AMOUNT_EXCEEDED),
    "pol-B": (frozenset([READ]), REASON_NOT_IN_SCOPE),
}


def await_round(
    emu: Emulator,
    client: Client,
    observed: List[Tuple[Optional[str], FrozenSet[str], str]],
    *,
    issued: int,
    expected: str,
) -> None:
    """Wait for a renewal to be issued, published, and decided on by the hammering threads."""
    wait_for(lambda: emu.stats()["tokens_issued"] == issued, "a renewal")
    wait_for(lambda: published(client).policy_id == expected, "the renewed state")
    wait_for(lambda: any(o[0] == expected for o in observed[-50:]), "calls under the renewed token")


def test_every_decision_matches_exactly_one_token_while_tokens_are_renewed(
    emu: Emulator, make_client: MakeClient, clock: ManualClock
) -> None:
    configure_agent(emu, token_ttl=120, **TOKEN_A)
    client = make_client(sync_interval=3600.0)
    ran: List[int] = []
    charge = client.tool(CHARGE)(lambda amount_cents: ran.append(amount_cents))
    try:
        charge(5000)
    except PolicyViolationError:
        pass
    stop = threading.Event()
    observed: List[Tuple[Optional[str], FrozenSet[str], str]] = []
    states: Set[Tuple[str, Any, Any]] = set()
    problems: List[BaseException] = []

    def hammer() -> None:
        try:
            while not stop.is_set():
                try:
                    charge(5000)
                except PolicyViolationError as exc:
                    observed.append((exc.policy_id, frozenset(exc.granted_capabilities), exc.reason))
                state = client._governance_state()
                states.add(
                    (
                        state.policy_id or "",
                        state.scopes,
                        tuple(sorted(cast(Dict[str, Any], state.constraints).items())),
                    )
                )
        except BaseException as exc:  # pragma: no cover - reported below
            problems.append(exc)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    renewals = 6
    for round_ in range(renewals):
        configure_agent(emu, token_ttl=120, **(TOKEN_B if round_ % 2 == 0 else TOKEN_A))
        clock.advance(81.0)  # stale: the next call schedules a background renewal
        await_round(
            emu, client, observed, issued=2 + round_, expected="pol-B" if round_ % 2 == 0 else "pol-A"
        )
    stop.set()
    for thread in threads:
        thread.join()
    assert problems == []
    assert ran == []  # never allowed: no call saw A's scope with B's (absent) cap
    seen: Dict[str, int] = {}
    for policy_id, scopes, reason in observed:
        assert policy_id is not None
        assert (scopes, reason) == EXPECTED[policy_id], (policy_id, scopes, reason)
        seen[policy_id] = seen.get(policy_id, 0) + 1
    assert set(seen) == {"pol-A", "pol-B"}
    assert states == {
        ("pol-A", frozenset([CHARGE]), (("max_amount_cents", 1000),)),
        ("pol-B", frozenset([READ]), ()),
    }
    assert emu.stats()["tokens_issued"] == 1 + renewals
    client.stop()
    stats = emitter_of(client).stats()
    assert stats.pending == 0 and stats.emitted == stats.sent
    jti_policy = {t["jti"]: ("pol-A" if t["scope"] == CHARGE else "pol-B") for t in emu.issued_tokens()}
    for event in emu.audit_events():  # the record agrees: each event's reason fits its token
        assert event["reason"] == EXPECTED[jti_policy[event["jti"]]][1]
