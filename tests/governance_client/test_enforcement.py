"""Enforcement that cannot be bypassed, through a real Client (official flaws S4, C1, C5 "failed
tool calls are not audited", C8 "async tools get sync wrappers", C14 "wrapping twice")."""

import asyncio
import inspect
from typing import Any, Dict, List

import pytest

from oculus_lite import Client
from oculus_lite.emulator import Emulator
from oculus_lite.evaluator import REASON_AMOUNT_EXCEEDED, REASON_MAX_RESULTS_EXCEEDED, REASON_NOT_IN_SCOPE
from oculus_lite.exceptions import ConfigurationError, PolicyViolationError

from .conftest import MakeClient, configure_agent, events

READ = "stripe.customers.read"
CHARGE = "stripe.charges.create"
REFUND = "stripe.refunds.create"  # grantable, but not in the default grant


def refund(charge_id: str, amount_cents: int = 0) -> str:
    """Refund a charge."""
    return "re_" + charge_id


def test_the_decorator_enforces_direct_calls(emu: Emulator, client: Client) -> None:
    """Official flaw S4: @client.tool only tagged the function; calling it directly bypassed all
    enforcement."""
    ran: List[str] = []

    @client.tool(REFUND)
    def refund_charge(charge_id: str) -> None:
        ran.append(charge_id)

    with pytest.raises(PolicyViolationError) as raised:
        refund_charge("ch_1")
    error = raised.value
    assert (error.capability, error.reason, error.policy_id) == (REFUND, REASON_NOT_IN_SCOPE, "pol-gov")
    assert REFUND not in error.granted_capabilities and READ in error.granted_capabilities
    assert ran == []
    client.stop()
    (event,) = events(emu, tool_name="refund_charge")
    assert (event["decision"], event["outcome"], event["reason"]) == ("deny", "denied", REASON_NOT_IN_SCOPE)


def test_signature_docstring_kept_and_the_original_untouched(client: Client) -> None:
    before = dict(refund.__dict__)
    tool = client.tool(REFUND)(refund)
    assert tool is not refund
    assert (tool.__name__, tool.__doc__, getattr(tool, "__wrapped__", None)) == (
        "refund",
        "Refund a charge.",
        refund,
    )
    assert inspect.signature(tool) == inspect.signature(refund)
    assert refund.__dict__ == before and not hasattr(refund, "_oculus_capability")
    assert refund("ch_1") == "re_ch_1"  # the original still runs unchecked, as the caller's own code


def test_two_clients_wrapping_one_function_do_not_collide(emu: Emulator, make_client: MakeClient) -> None:
    """Official flaw (section 3, tool()): the decorator mutated the function; two clients
    decorating one function collided and the last capability won."""
    one, two = make_client(), make_client(scopes=[REFUND])
    as_read = one.tool(READ)(refund)
    as_refund = two.tool(REFUND)(refund)
    assert as_read("a") == "re_a" and as_refund("b") == "re_b"
    with pytest.raises(PolicyViolationError):
        one.tool(REFUND)(refund)("c")


def test_sync_and_async_tools_and_methods(emu: Emulator, client: Client) -> None:
    """Official flaw C8: an async tool got a sync wrapper returning an un-awaited coroutine,
    checked at creation and audited "allow" before its body ran."""

    class Stripe:
        def __init__(self) -> None:
            self.calls: List[str] = []

        @client.tool(READ)
        def customer(self, customer_id: str) -> Dict[str, str]:
            self.calls.append(customer_id)
            return {"id": customer_id}

        @client.tool(READ)
        async def acustomer(self, customer_id: str) -> Dict[str, str]:
            await asyncio.sleep(0)
            self.calls.append(customer_id)
            return {"id": customer_id}

        @client.tool(REFUND)
        async def arefund(self, charge_id: str) -> None:
            self.calls.append("refund " + charge_id)

    api = Stripe()
    assert inspect.iscoroutinefunction(Stripe.acustomer)
    assert api.customer("cus_1") == {"id": "cus_1"}
    pending = api.acustomer("cus_2")  # nothing is checked, audited or run until it is awaited
    assert emu.stats()["token_requests"] == 1 and api.calls == ["cus_1"]
    assert asyncio.run(pending) == {"id": "cus_2"}
    with pytest.raises(PolicyViolationError):
        asyncio.run(api.arefund("ch_1"))
    assert api.calls == ["cus_1", "cus_2"]
    client.stop()
    got = [(e["tool_name"], e["outcome"], e["tool_args_summary"]) for e in events(emu)]
    assert got == [
        ("customer", "success", {"customer_id": "cus_1"}),  # self is left out of the record
        ("acustomer", "success", {"customer_id": "cus_2"}),
        ("arefund", "denied", {"charge_id": "ch_1"}),
    ]


def test_an_async_tool_is_checked_when_awaited_not_when_created(
    emu: Emulator, make_client: MakeClient
) -> None:
    client = make_client()

    @client.tool(READ)
    async def read() -> str:
        return "ok"

    pending = read()
    assert emu.stats()["requests"] == 0  # creating the coroutine started nothing
    assert asyncio.run(pending) == "ok"
    assert emu.stats()["token_requests"] == 1


def test_amounts_are_bound_positionally_and_by_keyword_and_the_tool_keeps_them(
    emu: Emulator, client: Client
) -> None:
    """Official flaw C1: amount_cents was popped from the keyword arguments (a tool declaring it
    failed with TypeError, the audit lost it) and a positional amount was never checked (99,999
    passed a 5,000 cap)."""
    received: List[Any] = []

    @client.tool(CHARGE)
    def charge(customer_id: str, amount_cents: int, currency: str = "eur") -> str:
        received.append((customer_id, amount_cents, currency))
        return "ch"

    @client.tool(CHARGE, amount="total")
    def charge_total(customer_id: str, total: int) -> str:
        received.append((customer_id, total))
        return "ch"

    assert charge("cus_1", 5000) == "ch"
    assert charge(customer_id="cus_1", amount_cents=4000, currency="usd") == "ch"
    assert charge_total("cus_2", 100) == "ch" and charge_total("cus_2", total=200) == "ch"
    for call in (
        lambda: charge("cus_1", 99_999),
        lambda: charge("cus_1", amount_cents=99_999),
        lambda: charge_total("cus_2", 5001),
        lambda: charge_total(customer_id="cus_2", total=5001),
    ):
        with pytest.raises(PolicyViolationError) as raised:
            call()
        assert raised.value.reason == REASON_AMOUNT_EXCEEDED
    assert received == [("cus_1", 5000, "eur"), ("cus_1", 4000, "usd"), ("cus_2", 100), ("cus_2", 200)]
    client.stop()
    denied = events(emu, outcome="denied")
    assert [
        e["tool_args_summary"].get("amount_cents", e["tool_args_summary"].get("total")) for e in denied
    ] == [
        99_999,
        99_999,
        5001,
        5001,
    ]


def test_an_amount_parameter_that_does_not_exist_is_refused_when_wrapping(client: Client) -> None:
    with pytest.raises(ConfigurationError):
        client.tool(CHARGE, amount="amount")(refund)


def test_result_counts_requested_and_returned_against_max_results(
    emu: Emulator, make_client: MakeClient
) -> None:
    configure_agent(emu, constraints={"max_results": 3})
    client = make_client()
    ran: List[int] = []

    @client.tool(READ, result_count="limit")
    def search(query: str, limit: int = 10) -> List[int]:
        ran.append(limit)
        return list(range(limit))

    @client.tool(READ)
    def listing(result_count: int) -> List[int]:
        return list(range(result_count))

    @client.tool(READ)
    def everything() -> List[int]:
        ran.append(-1)
        return list(range(5))

    assert search("q", 3) == [0, 1, 2] and search("q", limit=2) == [0, 1] and listing(3) == [0, 1, 2]
    for call in (lambda: search("q", 4), lambda: search("q", limit=4), lambda: listing(result_count=9)):
        with pytest.raises(PolicyViolationError) as raised:
            call()
        assert raised.value.reason == REASON_MAX_RESULTS_EXCEEDED
    assert ran == [3, 2]  # requests over the cap never ran
    with pytest.raises(PolicyViolationError) as raised:
        everything()  # the returned value is counted: 5 results over a cap of 3
    assert raised.value.reason == REASON_MAX_RESULTS_EXCEEDED
    assert ran == [3, 2, -1]  # it ran, but its result was not returned
    client.stop()
    (after,) = events(emu, tool_name="everything")
    assert (after["decision"], after["outcome"], after["reason"]) == (
        "deny",
        "denied",
        REASON_MAX_RESULTS_EXCEEDED,
    )
    assert isinstance(after["duration_ms"], float)


def test_wrap_tools_refuses_unprotected_functions_unless_allow_listed(emu: Emulator, client: Client) -> None:
    """Official flaw S4: functions without a capability passed through wrap_tools unchanged and
    unenforced (fail-open)."""

    def helper() -> str:
        return "helper"

    @client.tool(READ)
    def read() -> str:
        return "read"

    with pytest.raises(ConfigurationError) as raised:
        client.wrap_tools([read, helper])
    assert "helper" in str(raised.value) and "unprotected" in str(raised.value)
    wrapped = client.wrap_tools([read, helper], unprotected=[helper])
    assert wrapped[0] is read and wrapped[1] is helper
    assert [fn() for fn in wrapped] == ["read", "helper"]


def test_wrapping_twice_does_not_check_or_audit_twice(emu: Emulator, client: Client) -> None:
    """Official flaw C14 (section 3, wrap_tools): wrapping again wrapped twice and emitted double
    audit events."""

    @client.tool(READ)
    def read() -> str:
        return "read"

    again = client.tool(READ)(read)
    (wrapped,) = client.wrap_tools([again])
    (twice,) = client.wrap_tools(client.wrap_tools([wrapped]))
    assert again is read and wrapped is read and twice is read
    assert twice() == "read"
    client.stop()
    assert emu.stats()["audit_events"] == 1


def test_a_tool_retagged_for_a_framework_can_be_wrapped_again(emu: Emulator, client: Client) -> None:
    """What the adapters do to a tool enforced in its own code (@client.tool): a twin tagged with
    the framework and its tool name, which a second wrapping (or another adapter) returns as is."""
    from oculus_lite.governance._adapters import enforce_for

    @client.tool(READ)
    def read(customer: str) -> str:
        return "read " + customer

    tagged = enforce_for(client, None, read, "myframework", name="lookup")
    assert tagged is not read
    assert enforce_for(client, READ, tagged, "myframework") is tagged
    with pytest.raises(ConfigurationError):
        enforce_for(client, CHARGE, tagged, "myframework")
    assert tagged("c") == "read c"
    client.stop()
    ((tool, framework),) = [(e["tool_name"], e["framework"]) for e in emu.audit_events()]
    assert (tool, framework) == ("lookup", "myframework")


def test_official_style_tagged_functions_are_wrapped(emu: Emulator, client: Client) -> None:
    def lookup(customer_id: str) -> str:
        return customer_id

    lookup._oculus_capability = REFUND  # type: ignore[attr-defined]
    (wrapped,) = client.wrap_tools([lookup])
    with pytest.raises(PolicyViolationError):
        wrapped("cus_1")


def test_a_failed_tool_call_is_audited_with_its_outcome_and_duration(emu: Emulator, client: Client) -> None:
    """Official flaw C5: a tool that raised produced no audit event at all."""

    @client.tool(READ)
    def broken(customer_id: str) -> None:
        raise ValueError("card 4242 4242 4242 4242 declined for " + customer_id)

    @client.tool(READ)
    async def abroken() -> None:
        raise KeyError("secret detail")

    with pytest.raises(ValueError):
        broken("cus_1")
    with pytest.raises(KeyError):
        asyncio.run(abroken())
    client.stop()
    got = [(e["tool_name"], e["decision"], e["outcome"], e["error_type"]) for e in events(emu)]
    assert got == [("broken", "allow", "error", "ValueError"), ("abroken", "allow", "error", "KeyError")]
    for event in events(emu):
        assert isinstance(event["duration_ms"], float) and event["duration_ms"] >= 0
        assert "4242" not in str(event) and "secret detail" not in str(event)  # the class, never the message
