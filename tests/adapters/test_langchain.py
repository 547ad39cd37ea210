# mypy: allow-subclassing-any, allow-untyped-decorators
"""``oculus_lite.langchain`` against the real langchain-core, over real sockets to the emulator
(official flaws C9 and S4: a handler that crashed every tool call, denials that killed the agent
run, ``callbacks=`` ignored, one reasoning string shared across threads and runs, no coroutine,
amount caps never enforced)."""

import asyncio
import json
import threading
from typing import Any, Dict, List

import pytest

from oculus_lite.exceptions import ConfigurationError

from .conftest import (
    AGENT,
    CAP_CENTS,
    CHARGE,
    DELETE,
    MAX_RESULTS,
    PAYOUT,
    READ,
    SECRET,
    STRIPE_KEY,
    audited,
    framework,
)

framework("langchain", "langchain_core", "langchain-core")

from langchain_core.agents import AgentAction, AgentFinish  # type: ignore[import-not-found,unused-ignore]  # noqa: E402
from langchain_core.callbacks import (  # type: ignore[import-not-found,unused-ignore]  # noqa: E402
    AsyncCallbackManager,
    BaseCallbackHandler,
    CallbackManager,
)
from langchain_core.language_models.fake_chat_models import (  # type: ignore[import-not-found,unused-ignore]  # noqa: E402
    GenericFakeChatModel,
)
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage  # type: ignore[import-not-found,unused-ignore]  # noqa: E402
from langchain_core.tools import StructuredTool  # type: ignore[import-not-found,unused-ignore]  # noqa: E402
from langchain_core.tools import tool as lc_tool  # type: ignore[import-not-found,unused-ignore]  # noqa: E402

from oculus_lite import langchain as adapter  # noqa: E402
from oculus_lite.langchain import OculusCallbackHandler, OculusLangChain  # noqa: E402

DENIED = "Error: capability 'stripe.charges.create' denied \u2014 amount_limit_exceeded"


@pytest.fixture
def client(make):
    return make(OculusLangChain)


def charge_functions(client):
    """A sync and an async charge function, enforced by the client."""

    @client.tool(CHARGE)
    def charge(customer: str, amount_cents: int) -> str:
        """Charge a customer."""
        return "charged {} {}".format(customer, amount_cents)

    @client.tool(CHARGE)
    async def acharge(customer: str, amount_cents: int) -> str:
        """Charge a customer, asynchronously."""
        await asyncio.sleep(0)
        return "acharged {} {}".format(customer, amount_cents)

    return charge, acharge


def charge_tools(client):
    return client.wrap_tools(charge_functions(client))


def call(name: str, call_id: str, **args: Any) -> Dict[str, Any]:
    return {"name": name, "args": args, "id": call_id, "type": "tool_call"}


class Recorder(BaseCallbackHandler):
    """A user's own callback handler: records the tool events it receives."""

    def __init__(self) -> None:
        self.events: List[str] = []

    def on_tool_start(self, serialized, input_str, **kwargs):
        self.events.append("start:" + serialized["name"])

    def on_tool_end(self, output, **kwargs):
        self.events.append("end")


# ---------------------------------------------------------------------------------- the tools


def test_tools_are_structured_tools_with_func_coroutine_and_schema(client):
    charge, acharge = charge_tools(client)
    for tool in (charge, acharge):
        assert isinstance(tool, StructuredTool)
        assert callable(tool.func) and callable(tool.coroutine)
        assert tool.handle_tool_error is True
        schema = tool.args_schema.model_json_schema()
        assert set(schema["properties"]) == {"customer", "amount_cents"}
        assert schema["properties"]["amount_cents"]["type"] == "integer"
    assert (charge.name, charge.description) == ("charge", "Charge a customer.")
    assert (acharge.name, acharge.description) == ("acharge", "Charge a customer, asynchronously.")


def test_the_handler_is_a_real_callback_handler(client):
    handler = client.callback_handler
    assert issubclass(OculusCallbackHandler, BaseCallbackHandler)
    assert isinstance(handler, OculusCallbackHandler) and handler is client.callback_handler
    assert OculusCallbackHandler.__module__ == "oculus_lite.langchain"


def test_allowed_calls_run_and_are_audited_as_langchain(client, governed):
    charge, acharge = charge_tools(client)
    assert charge.invoke({"customer": "cus_1", "amount_cents": 100}) == "charged cus_1 100"
    assert asyncio.run(charge.ainvoke({"customer": "cus_2", "amount_cents": 200})) == "charged cus_2 200"
    assert asyncio.run(acharge.ainvoke({"customer": "cus_3", "amount_cents": 300})) == "acharged cus_3 300"
    assert acharge.invoke({"customer": "cus_4", "amount_cents": 400}) == "acharged cus_4 400"
    events = audited(client, governed, 4)
    assert [e["tool_name"] for e in events] == ["charge", "charge", "acharge", "acharge"]
    assert [e["tool_args_summary"]["customer"] for e in events] == ["cus_1", "cus_2", "cus_3", "cus_4"]
    for event in events:
        assert (event["decision"], event["outcome"], event["framework"]) == ("allow", "success", "langchain")
        assert (event["agent_id"], event["capability"]) == (AGENT, CHARGE)


def test_the_amount_cap_is_enforced_and_the_denial_goes_back_to_the_model(client, governed):
    """Official flaws: the adapters never passed the amount (caps never enforced), and a denial
    raised PolicyViolationError out of tool.invoke, ending the agent run."""
    charge, acharge = charge_tools(client)
    over = {"customer": "cus_1", "amount_cents": CAP_CENTS + 1}
    assert charge.invoke(over) == DENIED
    assert asyncio.run(charge.ainvoke(over)) == DENIED
    assert asyncio.run(acharge.ainvoke(over)) == DENIED
    assert charge.invoke({"customer": "cus_1", "amount_cents": CAP_CENTS}) == "charged cus_1 5000"
    events = audited(client, governed, 4)
    assert [(e["decision"], e["reason"]) for e in events] == [("deny", "amount_limit_exceeded")] * 3 + [
        ("allow", "allowed")
    ]


def test_a_denied_tool_call_becomes_an_error_tool_message(client, governed):
    charge, acharge = charge_tools(client)
    refused = charge.invoke(call("charge", "call_1", customer="cus_1", amount_cents=9000))
    assert isinstance(refused, ToolMessage)
    assert (refused.status, refused.tool_call_id, refused.content) == ("error", "call_1", DENIED)
    arefused = asyncio.run(acharge.ainvoke(call("acharge", "call_2", customer="cus_1", amount_cents=9000)))
    assert (arefused.status, arefused.tool_call_id, arefused.content) == ("error", "call_2", DENIED)
    done = charge.invoke(call("charge", "call_3", customer="cus_1", amount_cents=10))
    assert (done.status, done.tool_call_id, done.content) == ("success", "call_3", "charged cus_1 10")
    assert [e["decision"] for e in audited(client, governed, 3)] == ["deny", "deny", "allow"]


def test_scope_and_deny_always_denials_name_only_capability_and_reason(client, governed):
    @client.tool(DELETE)
    def delete_repo(repo: str) -> str:
        """Delete a repository."""
        raise AssertionError("never runs")

    @client.tool(PAYOUT)
    def payout(amount_cents: int) -> str:
        """Pay out."""
        raise AssertionError("never runs")

    delete_tool, payout_tool = client.wrap_tools([delete_repo, payout])
    assert delete_tool.invoke({"repo": "x"}) == (
        "Error: capability 'github.repos.delete' denied \u2014 capability_not_in_scope"
    )
    assert payout_tool.invoke({"amount_cents": 1}) == (
        "Error: capability 'stripe.payouts.create' denied \u2014 capability_deny_always"
    )
    assert [e["reason"] for e in audited(client, governed, 2)] == [
        "capability_not_in_scope",
        "capability_deny_always",
    ]


def test_a_cap_on_a_declared_argument(client, governed):
    @client.tool(CHARGE, amount="total")
    def pay(order: str, total: int) -> str:
        """Pay an order."""
        return "paid " + order

    (tool,) = client.wrap_tools([pay])
    assert tool.invoke({"order": "o-1", "total": CAP_CENTS + 1}) == DENIED
    assert tool.invoke({"order": "o-2", "total": 1}) == "paid o-2"
    assert [e["decision"] for e in audited(client, governed, 2)] == ["deny", "allow"]


def test_the_result_cap(client, governed):
    @client.tool(READ)
    def search(query: str, result_count: int) -> List[str]:
        """Search customers."""
        return ["r"] * result_count

    (tool,) = client.wrap_tools([search])
    refused = "Error: capability 'stripe.customers.read' denied \u2014 max_results_exceeded"
    assert tool.invoke({"query": "q", "result_count": MAX_RESULTS + 1}) == refused
    assert tool.invoke({"query": "q", "result_count": MAX_RESULTS}) == ["r"] * MAX_RESULTS
    assert [e["decision"] for e in audited(client, governed, 2)] == ["deny", "allow"]


def test_other_exceptions_propagate_and_are_audited_without_their_message(client, governed):
    @client.tool(READ)
    def lookup(customer: str) -> str:
        """Look a customer up."""
        raise RuntimeError("backend said password=hunter2")

    (tool,) = client.wrap_tools([lookup])
    with pytest.raises(RuntimeError, match="hunter2"):
        tool.invoke({"customer": "cus_1"})
    (event,) = audited(client, governed, 1)
    assert (event["outcome"], event["error_type"]) == ("error", "RuntimeError")
    assert "hunter2" not in json.dumps(event)


def test_sync_invoke_of_an_async_tool_inside_a_running_loop_says_what_to_do(client):
    _, acharge = charge_tools(client)

    async def main():
        with pytest.raises(RuntimeError, match="ainvoke"):
            acharge.invoke({"customer": "cus_1", "amount_cents": 1})

    asyncio.run(main())


def test_functions_without_capability_are_refused_unless_unprotected(client, governed):
    def helper(text: str) -> str:
        """Echo."""
        return text

    with pytest.raises(ConfigurationError, match="unprotected"):
        client.wrap_tools([helper])
    (plain,) = client.wrap_tools([helper], unprotected=[helper])
    assert isinstance(plain, StructuredTool) and plain.invoke({"text": "hi"}) == "hi"
    assert client._governance_audit.flush(timeout=30) and governed.audit_events() == []


def test_official_style_tag_and_langchain_tool_decorator(client, governed):
    """``_oculus_capability`` set by hand (official decorator style) and LangChain's own ``@tool``
    over ``@client.tool`` are both enforced."""

    def refund(customer: str, amount_cents: int) -> str:
        """Refund a customer."""
        return "refunded"

    refund._oculus_capability = CHARGE  # type: ignore[attr-defined]

    @lc_tool
    @client.tool(READ)
    def find(customer: str) -> str:
        """Find a customer."""
        return "found " + customer

    tagged, found = client.wrap_tools([refund, find])
    assert isinstance(found, StructuredTool) and found.name == "find" and found is not find
    assert tagged.invoke({"customer": "c", "amount_cents": 9000}) == DENIED
    assert found.invoke({"customer": "c"}) == "found c"
    assert find.invoke({"customer": "c"}) == "found c"  # the @client.tool function is enforced too
    events = audited(client, governed, 3)
    assert [(e["tool_name"], e["decision"]) for e in events] == [
        ("refund", "deny"),
        ("find", "allow"),
        ("find", "allow"),
    ]
    assert [e["framework"] for e in events] == ["langchain", "langchain", "unknown"]


def test_wrapping_twice_checks_and_audits_each_call_once(client, governed):
    @client.tool(READ)
    def find(customer: str) -> str:
        """Find a customer."""
        return customer

    first = client.wrap_tools([find])[0]
    again = client.wrap_tools([find])[0]
    assert client.wrap_tools([first]) == [first]  # a tool it made comes back as it is
    assert first.invoke({"customer": "a"}) == "a" and again.invoke({"customer": "b"}) == "b"
    assert [e["tool_args_summary"] for e in audited(client, governed, 2)] == [
        {"customer": "a"},
        {"customer": "b"},
    ]


# ---------------------------------------------------------------------------------- callbacks


def test_callbacks_are_attached_to_the_tools_beside_the_handler(client):
    recorder = Recorder()
    charge, _ = charge_functions(client)
    (tool,) = client.wrap_tools([charge], callbacks=[recorder])
    assert recorder in tool.callbacks and client.callback_handler in tool.callbacks
    tool.invoke({"customer": "cus_1", "amount_cents": 1})
    assert recorder.events == ["start:charge", "end"]
    manager = CallbackManager(handlers=[recorder])
    (managed,) = client.wrap_tools([charge], callbacks=manager)
    managed.invoke({"customer": "cus_1", "amount_cents": 1})
    assert recorder.events == ["start:charge", "end"] * 2
    assert client.callback_handler in managed.callbacks.handlers and manager.handlers == [recorder]


def test_the_handler_in_the_run_config_does_not_break_tool_calls(client, governed):
    """Official flaw C9: its handler was no BaseCallbackHandler, so every tool call with
    ``callbacks=[client.callback_handler]`` raised AttributeError under langchain-core 1.x."""
    charge, acharge = charge_tools(client)
    config = {"callbacks": [client.callback_handler, Recorder()]}
    assert charge.invoke({"customer": "c", "amount_cents": 1}, config=config) == "charged c 1"
    assert asyncio.run(acharge.ainvoke({"customer": "c", "amount_cents": 2}, config=config)) == "acharged c 2"
    assert len(audited(client, governed, 2)) == 2


# ---------------------------------------------------------------------------------- reasoning


def agent_step(handler, tool, thought: str, customer: str, barrier=None):
    """One AgentExecutor step through langchain-core's callback managers: the agent's chain run
    reports its action, then runs the tool with the run's child callbacks."""
    run = CallbackManager.configure(inheritable_callbacks=[handler]).on_chain_start(
        {"name": "AgentExecutor"}, {"input": customer}
    )
    args = {"customer": customer, "amount_cents": 1}
    run.on_agent_action(AgentAction("charge", args, "Thought: {}\nAction: charge".format(thought)))
    if barrier is not None:
        barrier.wait(timeout=30)
    result = tool.invoke(args, config={"callbacks": run.get_child()})
    run.on_agent_finish(AgentFinish({"output": result}, result))
    run.on_chain_end({"output": result})
    return result


def test_reasoning_is_kept_per_run_across_threads(client, governed):
    """Official flaw: one ``_last_reasoning`` per client, shared by threads and runs."""
    charge, _ = charge_tools(client)
    barrier = threading.Barrier(2)
    results: Dict[str, str] = {}

    def worker(customer: str) -> None:
        results[customer] = agent_step(
            client.callback_handler, charge, "charge {} now".format(customer), customer, barrier
        )

    threads = [threading.Thread(target=worker, args=(name,)) for name in ("alice", "bob")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == {"alice": "charged alice 1", "bob": "charged bob 1"}
    events = audited(client, governed, 2)
    for event in events:
        customer = event["tool_args_summary"]["customer"]
        assert event["intent_context"]["agent_reasoning"] == "charge {} now".format(customer)


def test_reasoning_is_kept_per_run_across_asyncio_tasks(client, governed):
    _, acharge = charge_tools(client)

    async def step(customer, both_acted):
        run = await AsyncCallbackManager.configure(
            inheritable_callbacks=[client.callback_handler]
        ).on_chain_start({"name": "AgentExecutor"}, {"input": customer})
        args = {"customer": customer, "amount_cents": 1}
        await run.on_agent_action(
            AgentAction("acharge", args, "Thought: pay {}\nAction: acharge".format(customer))
        )
        await both_acted.wait()
        result = await acharge.ainvoke(args, config={"callbacks": run.get_child()})
        await run.on_chain_end({"output": result})
        return result

    async def main():
        both_acted = _Barrier(2)
        return await asyncio.gather(step("alice", both_acted), step("bob", both_acted))

    assert asyncio.run(main()) == ["acharged alice 1", "acharged bob 1"]
    for event in audited(client, governed, 2):
        assert event["intent_context"]["agent_reasoning"] == "pay " + event["tool_args_summary"]["customer"]


class _Barrier:
    """asyncio.Barrier for Python < 3.11: the n-th waiter releases everyone."""

    def __init__(self, parties: int) -> None:
        self.parties = parties
        self.arrived = 0
        self.released = asyncio.Event()

    async def wait(self) -> None:
        self.arrived += 1
        if self.arrived == self.parties:
            self.released.set()
        await self.released.wait()


def test_reasoning_does_not_outlive_its_run(client, governed):
    charge, _ = charge_tools(client)
    agent_step(client.callback_handler, charge, "first run", "alice")
    charge.invoke({"customer": "later", "amount_cents": 1}, config={"callbacks": [client.callback_handler]})
    charge.invoke({"customer": "plain", "amount_cents": 1})
    events = audited(client, governed, 3)
    assert [e["intent_context"]["agent_reasoning"] for e in events] == ["first run", None, None]


def test_reasoning_is_redacted(client, governed):
    charge, _ = charge_tools(client)
    agent_step(client.callback_handler, charge, "use key {} and {}".format(STRIPE_KEY, SECRET), "alice")
    (event,) = audited(client, governed, 1)
    reasoning = event["intent_context"]["agent_reasoning"]
    assert reasoning.startswith("use key ") and STRIPE_KEY not in reasoning and SECRET not in reasoning


def test_a_tool_calling_model_loop_reasoning_model_and_error_messages(client, governed):
    """A tool-calling loop with langchain-core's fake chat model: the text beside the tool calls
    and the model's name reach each call's audit event; a denial comes back as an error
    ToolMessage the model reads on its next turn."""
    charge, _ = charge_tools(client)
    first = AIMessage(
        content="Charging both customers as asked.",
        tool_calls=[
            call("charge", "call_a", customer="alice", amount_cents=100),
            call("charge", "call_b", customer="bob", amount_cents=CAP_CENTS * 2),
        ],
        response_metadata={"model_name": "gpt-test-1"},
    )
    model = GenericFakeChatModel(messages=iter([first, AIMessage(content="Alice charged; Bob refused.")]))
    config = {"callbacks": [client.callback_handler]}
    messages: List[Any] = [HumanMessage(content="charge alice 1 EUR and bob 100 EUR")]
    while True:
        reply = model.invoke(messages, config=config)
        messages.append(reply)
        if not reply.tool_calls:
            break
        messages.extend(charge.invoke(tool_call, config=config) for tool_call in reply.tool_calls)
    results = [m for m in messages if isinstance(m, ToolMessage)]
    assert [(m.tool_call_id, m.status, m.content) for m in results] == [
        ("call_a", "success", "charged alice 100"),
        ("call_b", "error", DENIED),
    ]
    assert messages[-1].content == "Alice charged; Bob refused."
    events = audited(client, governed, 2)
    assert [e["decision"] for e in events] == ["allow", "deny"]
    for event in events:
        assert event["intent_context"]["agent_reasoning"] == "Charging both customers as asked."
        assert event["intent_context"]["llm_model"] == "gpt-test-1"


def test_the_handler_forgets_runs_it_never_saw_end_and_counts_them(client, monkeypatch):
    monkeypatch.setattr(adapter, "_LIMIT", 2)
    handler = client.callback_handler
    runs = [
        CallbackManager.configure(inheritable_callbacks=[handler]).on_chain_start({}, {}) for _ in range(3)
    ]
    for run in runs:
        run.on_agent_action(AgentAction("charge", {}, "Thought: t\nAction: charge"))
    assert handler.dropped == 1 and len(handler._runs) == 2


def test_the_task_context_reaches_sync_async_and_executor_calls(client, governed):
    charge, acharge = charge_tools(client)
    args = {"customer": "c", "amount_cents": 1}

    async def both():
        await charge.ainvoke(args)  # a sync tool in the loop's executor
        await acharge.ainvoke(args)

    with client.task("refund-42"):
        charge.invoke(args)
        asyncio.run(both())
    charge.invoke(args)
    assert [e["task_id"] for e in audited(client, governed, 4)] == ["refund-42"] * 3 + [None]
