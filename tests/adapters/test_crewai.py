# mypy: allow-subclassing-any, allow-untyped-decorators
"""``oculus_lite.crewai`` against the real crewai, over real sockets to the emulator (official
flaws C9 and S4: BaseTools swapped for plain functions, ``_arun`` unwrapped, task tools unwrapped,
no audit and no "crewai" tag, wrappers stacking, amount caps never enforced).

The crew test runs a real ``Crew.kickoff()`` whose agent is driven by a scripted LLM: a
``crewai.llms.base_llm.BaseLLM`` subclass (crewai's public extension point for custom models)
that answers with fixed ReAct steps, so no network is used.
"""

import asyncio
import os
from typing import Any, List

import pytest

from oculus_lite.exceptions import ConfigurationError, PolicyViolationError

from .conftest import AGENT, CAP_CENTS, CHARGE, DELETE, MAX_RESULTS, READ, audited, framework

for _name in ("CREWAI_DISABLE_TELEMETRY", "OTEL_SDK_DISABLED"):
    os.environ.setdefault(_name, "true")
os.environ.setdefault("CREWAI_TRACING_ENABLED", "false")

crewai = framework("crewai", "crewai", "crewai")

# crewai warns about its own deprecated fields while it builds agents and crews, and about its
# lazily imported submodules.
pytestmark = [
    pytest.mark.filterwarnings("ignore:.*deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::ImportWarning"),
]

from crewai import Agent, Crew, Task  # type: ignore[import-not-found,unused-ignore]  # noqa: E402
from crewai.llms.base_llm import BaseLLM  # type: ignore[import-not-found,unused-ignore]  # noqa: E402
from crewai.tools import BaseTool  # type: ignore[import-not-found,unused-ignore]  # noqa: E402
from crewai.tools import tool as crew_tool  # type: ignore[import-not-found,unused-ignore]  # noqa: E402

from oculus_lite.crewai import OculusCrew  # noqa: E402


class ChargeTool(BaseTool):
    """A class-based tool tagged the official way, with its own async implementation."""

    name: str = "charge"
    description: str = "Charge a customer."
    _oculus_capability = CHARGE

    def _run(self, customer: str, amount_cents: int) -> str:
        return "charged {} {}".format(customer, amount_cents)

    async def _arun(self, customer: str, amount_cents: int) -> str:
        await asyncio.sleep(0)
        return "acharged {} {}".format(customer, amount_cents)


class PlainTool(BaseTool):
    name: str = "weather"
    description: str = "The weather."

    def _run(self, city: str) -> str:
        return "sunny in " + city


class ScriptedLLM(BaseLLM):
    """Answers each call with the next scripted ReAct step; records what it was sent."""

    replies: List[str] = []
    prompts: List[Any] = []

    def call(self, messages, tools=None, callbacks=None, available_functions=None, from_task=None,
             from_agent=None, response_model=None):  # fmt: skip
        self.prompts.append(messages)
        return self.replies.pop(0)

    def supports_function_calling(self) -> bool:
        return False


@pytest.fixture
def client(make):
    return make(OculusCrew)


def function_tools(client):
    @crew_tool("refund")
    @client.tool(CHARGE)
    def refund(customer: str, amount_cents: int) -> str:
        """Refund a customer."""
        return "refunded {} {}".format(customer, amount_cents)

    @crew_tool("lookup")
    async def lookup(customer: str) -> str:
        """Look a customer up."""
        return "found " + customer

    lookup._oculus_capability = READ  # type: ignore[attr-defined,unused-ignore]  # official style, on the tool
    return refund, lookup


def crew_of(agent_tools, task_tools, llm=None):
    agent = Agent(role="clerk", goal="charge", backstory="billing", tools=agent_tools, llm=llm, max_iter=4)
    task = Task(description="charge alice", expected_output="a summary", agent=agent, tools=task_tools)
    return Crew(agents=[agent], tasks=[task]), agent, task


def test_wrap_crew_keeps_base_tools_and_wraps_agent_and_task_tools(client, governed):
    charge = ChargeTool()
    refund, lookup = function_tools(client)
    crew, agent, task = crew_of([charge], [refund, lookup])
    assert client.wrap_crew(crew) is crew
    assert agent.tools == [charge] and task.tools == [refund, lookup]
    assert all(isinstance(t, BaseTool) for t in agent.tools + task.tools)
    assert charge.run(customer="c1", amount_cents=1) == "charged c1 1"
    assert asyncio.run(charge.arun(customer="c2", amount_cents=2)) == "acharged c2 2"
    assert refund.run(customer="c3", amount_cents=3) == "refunded c3 3"
    assert asyncio.run(lookup.arun(customer="c4")) == "found c4"
    events = audited(client, governed, 4)
    assert [(e["tool_name"], e["capability"]) for e in events] == [
        ("charge", CHARGE),
        ("charge", CHARGE),
        ("refund", CHARGE),
        ("lookup", READ),
    ]
    for event in events:
        assert (event["decision"], event["framework"], event["agent_id"]) == ("allow", "crewai", AGENT)


def test_the_amount_cap_is_enforced_on_run_and_arun(client, governed):
    """Official flaws: ``_arun`` ran unenforced, and no adapter passed the amount."""
    charge = ChargeTool()
    refund, _ = function_tools(client)
    client.wrap_crew(crew_of([charge], [refund])[0])
    over = {"customer": "c", "amount_cents": CAP_CENTS + 1}
    for attempt in (
        lambda: charge.run(**over),
        lambda: asyncio.run(charge.arun(**over)),
        lambda: refund.run(**over),
        lambda: asyncio.run(refund.arun(**over)),
    ):
        with pytest.raises(PolicyViolationError) as raised:
            attempt()
        assert (raised.value.reason, raised.value.policy_id) == ("amount_limit_exceeded", "pol-adapters")
    events = audited(client, governed, 4)
    assert {(e["decision"], e["reason"], e["framework"]) for e in events} == {
        ("deny", "amount_limit_exceeded", "crewai")
    }


def test_wrap_tool_with_a_capability_and_a_declared_amount(client, governed):
    class Pay(BaseTool):
        name: str = "pay"
        description: str = "Pay an order."

        def _run(self, order: str, total: int) -> str:
            return "paid " + order

    pay = Pay()
    assert client.wrap_tool(pay, CHARGE, amount="total") is pay
    with pytest.raises(PolicyViolationError):
        pay.run(order="o-1", total=CAP_CENTS + 1)
    assert pay.run(order="o-2", total=CAP_CENTS) == "paid o-2"

    def ship(order: str) -> str:
        """Ship an order."""
        return "shipped " + order

    shipped = client.wrap_tool(ship, READ)
    assert shipped("o-3") == "shipped o-3" and shipped.__name__ == "ship" and shipped is not ship
    events = audited(client, governed, 3)
    assert [(e["tool_name"], e["decision"], e["framework"]) for e in events] == [
        ("pay", "deny", "crewai"),
        ("pay", "allow", "crewai"),
        ("ship", "allow", "crewai"),
    ]


def test_the_result_cap_on_a_declared_argument(client, governed):
    class Search(BaseTool):
        name: str = "search"
        description: str = "Search customers."

        def _run(self, query: str, limit: int) -> List[str]:
            return ["r"] * limit

    search = client.wrap_tool(Search(), READ, result_count="limit")
    with pytest.raises(PolicyViolationError, match="max_results_exceeded"):
        search.run(query="q", limit=MAX_RESULTS + 1)
    assert search.run(query="q", limit=MAX_RESULTS) == ["r"] * MAX_RESULTS
    assert [e["decision"] for e in audited(client, governed, 2)] == ["deny", "allow"]


def test_a_run_method_enforced_in_the_class_body(client, governed):
    class Lookup(BaseTool):
        name: str = "lookup"
        description: str = "Look up."

        @client.tool(READ)
        def _run(self, customer: str) -> str:
            return "found " + customer

    lookup = Lookup()
    client.wrap_crew(crew_of([lookup], [])[0])
    assert lookup.run(customer="c") == "found c"
    (event,) = audited(client, governed, 1)
    assert (event["tool_name"], event["framework"], event["tool_args_summary"]) == (
        "lookup",
        "crewai",
        {"customer": "c"},
    )


def test_wrapping_twice_does_not_stack(client, governed):
    charge = ChargeTool()
    refund, _ = function_tools(client)
    crew = crew_of([charge], [refund, charge])[0]
    client.wrap_crew(crew)
    run, arun, func = charge.__dict__["_run"], charge.__dict__["_arun"], refund.func
    client.wrap_crew(crew)
    client.wrap_tool(charge)
    assert (charge.__dict__["_run"], charge.__dict__["_arun"], refund.func) == (run, arun, func)
    charge.run(customer="c", amount_cents=1)
    refund.run(customer="c", amount_cents=1)
    assert len(audited(client, governed, 2)) == 2


def test_tools_without_capability_are_refused_unless_unprotected(client, governed):
    weather = PlainTool()
    crew = crew_of([weather], [])[0]
    with pytest.raises(ConfigurationError, match="unprotected"):
        client.wrap_crew(crew)
    client.wrap_crew(crew, unprotected=[weather])
    assert weather.run(city="Oslo") == "sunny in Oslo" and "_run" not in weather.__dict__
    with pytest.raises(ConfigurationError, match="capability"):
        client.wrap_tool(lambda city: city)


def test_a_scope_denial(client, governed):
    class Delete(BaseTool):
        name: str = "delete_repo"
        description: str = "Delete a repository."
        _oculus_capability = DELETE

        def _run(self, repo: str) -> str:
            raise AssertionError("never runs")

    delete = client.wrap_tool(Delete())
    with pytest.raises(PolicyViolationError) as raised:
        delete.run(repo="x")
    assert raised.value.reason == "capability_not_in_scope"
    (event,) = audited(client, governed, 1)
    assert (event["decision"], event["framework"]) == ("deny", "crewai")


def test_a_crew_kickoff_runs_enforced_tools_and_the_agent_sees_the_denial(client, governed):
    charge = ChargeTool()
    refund, _ = function_tools(client)
    llm = ScriptedLLM(
        model="scripted-1",
        replies=[
            'Thought: charge alice first\nAction: charge\nAction Input: {"customer": "alice", "amount_cents": 100}',
            'Thought: now refund bob\nAction: refund\nAction Input: {"customer": "bob", "amount_cents": 9000}',
            "Thought: done\nFinal Answer: alice charged, bob's refund refused",
        ],
    )
    crew = client.wrap_crew(crew_of([charge, refund], [charge, refund], llm)[0])
    with client.task("billing-7"):
        result = crew.kickoff()
    assert "bob's refund refused" in str(result)
    assert client._governance_audit.flush(timeout=30)
    events = governed.audit_events()
    assert (events[0]["tool_name"], events[0]["decision"], events[0]["tool_args_summary"]) == (
        "charge",
        "allow",
        {"customer": "alice", "amount_cents": 100},
    )
    refused = events[1:]
    assert refused, "the refund was never attempted"
    assert {(e["tool_name"], e["decision"], e["reason"], e["framework"]) for e in refused} == {
        ("refund", "deny", "amount_limit_exceeded", "crewai")
    }
    assert {e["task_id"] for e in events} == {"billing-7"}
    seen = str(llm.prompts[2:])
    assert "denied: amount_limit_exceeded" in seen
