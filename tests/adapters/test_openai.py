# mypy: allow-untyped-decorators
"""``oculus_lite.openai`` with the real ``openai`` types (built locally: no network), over real
sockets to the emulator (official flaws C9, S4, S6: unregistered names executed without
enforcement or audit, bad JSON arguments turned into ``{}``, exception text handed to the model
provider, reasoning shared by every thread, amount caps never enforced)."""

import asyncio
import json
import threading
from typing import Any, Dict, List

import pytest

from oculus_lite.exceptions import ConfigurationError, PolicyViolationError, ValidationError

from .conftest import (
    AGENT,
    CAP_CENTS,
    CHARGE,
    DELETE,
    MAX_RESULTS,
    READ,
    SECRET,
    STRIPE_KEY,
    audited,
    framework,
)

openai = framework("openai", "openai", "openai")

from openai.types.chat import (  # type: ignore[import-not-found,unused-ignore]  # noqa: E402
    ChatCompletion,
    ChatCompletionMessageToolCall,
)
from openai.types.chat.chat_completion_message_custom_tool_call import (  # type: ignore[import-not-found,unused-ignore]  # noqa: E402
    ChatCompletionMessageCustomToolCall,
)

from oculus_lite.openai import OculusOpenAI  # noqa: E402

DENIED = "Error: capability 'stripe.charges.create' denied \u2014 amount_limit_exceeded"


def tool_call(name: str, arguments: str, call_id: str = "call_1") -> Any:
    return ChatCompletionMessageToolCall(
        id=call_id, type="function", function={"name": name, "arguments": arguments}
    )


class Tools:
    """The registry's functions; counts what really ran."""

    def __init__(self) -> None:
        self.ran: List[str] = []

    def charge(self, customer: str, amount_cents: int) -> Dict[str, Any]:
        self.ran.append("charge")
        return {"customer": customer, "charged": amount_cents}

    def lookup(self, customer: str) -> str:
        self.ran.append("lookup")
        return "found " + customer

    def leaky(self, customer: str) -> str:
        self.ran.append("leaky")
        raise RuntimeError(
            "db login failed: password=hunter2 secret {} key {} token Bearer abcdef123456".format(
                SECRET, STRIPE_KEY
            )
        )

    def delete_repo(self, repo: str) -> str:
        self.ran.append("delete_repo")
        return "deleted"

    def registry(self) -> Dict[str, Any]:
        return {
            "charge": self.charge,
            "lookup": self.lookup,
            "leaky": self.leaky,
            "delete_repo": self.delete_repo,
            "unregistered": self.lookup,
        }


@pytest.fixture
def client(make):
    client = make(OculusOpenAI)
    client.register_function("charge", CHARGE)
    client.register_function("lookup", READ)
    client.register_function("leaky", READ)
    client.register_function("delete_repo", DELETE)
    return client


@pytest.fixture
def tools():
    return Tools()


def test_an_allowed_call_runs_is_audited_and_returns_json(client, governed, tools):
    client.set_last_assistant_message("Charging alice as she asked.", llm_model="gpt-test-1")
    out = client.execute_tool_call(
        tool_call("charge", '{"customer": "alice", "amount_cents": 100}'), tools.registry()
    )
    assert json.loads(out) == {"customer": "alice", "charged": 100}
    assert (
        client.execute_tool_call(tool_call("lookup", '{"customer": "bob"}'), tools.registry()) == "found bob"
    )
    events = audited(client, governed, 2)
    assert [(e["tool_name"], e["capability"], e["decision"], e["framework"]) for e in events] == [
        ("charge", CHARGE, "allow", "openai"),
        ("lookup", READ, "allow", "openai"),
    ]
    assert events[0]["agent_id"] == AGENT
    assert events[0]["intent_context"]["agent_reasoning"] == "Charging alice as she asked."
    assert events[0]["intent_context"]["llm_model"] == "gpt-test-1"


def test_the_amount_cap_is_enforced(client, governed, tools):
    """Official flaw: the adapter never passed the amount, so the cap was never enforced."""
    over = tool_call("charge", json.dumps({"customer": "alice", "amount_cents": CAP_CENTS + 1}))
    with pytest.raises(PolicyViolationError) as raised:
        client.execute_tool_call(over, tools.registry())
    assert raised.value.reason == "amount_limit_exceeded" and tools.ran == []
    (result,) = client.execute_tool_calls([over], tools.registry())
    assert result == {"tool_call_id": "call_1", "role": "tool", "content": DENIED}
    events = audited(client, governed, 2)
    assert {(e["decision"], e["reason"], e["framework"]) for e in events} == {
        ("deny", "amount_limit_exceeded", "openai")
    }


def test_a_cap_on_a_declared_argument(client, governed):
    ran = []

    def pay(order: str, total: int) -> str:
        ran.append(order)
        return "paid"

    client.register_function("pay", CHARGE, amount="total")
    registry = {"pay": pay}
    with pytest.raises(PolicyViolationError):
        client.execute_tool_call(tool_call("pay", '{"order": "o-1", "total": 5001}'), registry)
    assert client.execute_tool_call(tool_call("pay", '{"order": "o-2", "total": 5000}'), registry) == "paid"
    assert ran == ["o-2"]
    assert [e["decision"] for e in audited(client, governed, 2)] == ["deny", "allow"]


def test_an_unregistered_name_is_refused_not_run(client, governed, tools):
    """Official flaw S4: an unregistered function name ran without enforcement or audit."""
    with pytest.raises(ConfigurationError, match="register_function"):
        client.execute_tool_call(tool_call("unregistered", '{"customer": "x"}'), tools.registry())
    with pytest.raises(ConfigurationError, match="registry has no function"):
        client.execute_tool_call(tool_call("charge", "{}"), {})
    results = client.execute_tool_calls([tool_call("unregistered", "{}", "call_9")], tools.registry())
    assert results == [
        {"tool_call_id": "call_9", "role": "tool", "content": "Error: unknown function 'unregistered'"}
    ]
    assert tools.ran == []
    assert client._governance_audit.flush(timeout=30) and governed.audit_events() == []


@pytest.mark.parametrize(
    "arguments,why",
    [
        ('{"customer": "alice"', "not valid JSON"),
        ("not json at all", "not valid JSON"),
        ('["alice"]', "must be a JSON object, got list"),
        ('"alice"', "must be a JSON object, got str"),
        ("12", "must be a JSON object, got int"),
        ("null", "must be a JSON object, got NoneType"),
        ('{"customer": "a", "amount_cents": NaN}', "not valid JSON"),
    ],
)
def test_arguments_that_are_not_a_json_object_are_an_error(client, tools, arguments, why):
    """Official flaw: invalid JSON silently became ``{}`` and the function ran."""
    with pytest.raises(ValidationError, match=why):
        client.execute_tool_call(tool_call("charge", arguments), tools.registry())
    (result,) = client.execute_tool_calls([tool_call("charge", arguments)], tools.registry())
    assert result["content"] == "Error: the arguments of 'charge' must be a JSON object"
    assert tools.ran == []


def test_no_arguments_is_an_empty_object(client, tools):
    def ping() -> str:
        return "pong"

    client.register_function("ping", READ)
    assert client.execute_tool_call(tool_call("ping", ""), {"ping": ping}) == "pong"


def test_what_the_model_is_told_says_no_secret_and_no_exception_message(client, governed, tools):
    """Official flaw S6: ``"Error: {e}"`` sent exception text (a password) to the model provider."""
    calls = [
        tool_call("leaky", '{"customer": "alice"}', "call_leak"),
        tool_call(SECRET, "{}", "call_secret_name"),
        tool_call("x " + STRIPE_KEY, "{}", "call_key_name"),
        tool_call("lookup", '{"customer": "bob", "extra": 1}', "call_type_error"),
    ]
    results = client.execute_tool_calls(calls, tools.registry())
    assert [r["content"] for r in results] == [
        "Error: RuntimeError",
        "Error: unknown function '[REDACTED]'",
        "Error: unknown function 'x [REDACTED]'",
        "Error: TypeError",
    ]
    text = json.dumps(results)
    for secret in ("hunter2", SECRET, STRIPE_KEY, "abcdef123456"):
        assert secret not in text
    events = audited(client, governed, 2)  # the calls that passed the check and failed
    assert [(e["tool_name"], e["outcome"], e["error_type"]) for e in events] == [
        ("leaky", "error", "RuntimeError"),
        ("lookup", "error", "TypeError"),
    ]
    assert "hunter2" not in json.dumps(events)


def test_execute_tool_calls_answers_every_call_in_order(client, governed, tools):
    completion = ChatCompletion.model_validate(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1700000000,
            "model": "gpt-test-1",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "tool_calls",
                    "message": {
                        "role": "assistant",
                        "content": "Looking bob up, charging alice, deleting the repo.",
                        "tool_calls": [
                            {"id": "call_a", "type": "function",
                             "function": {"name": "lookup", "arguments": '{"customer": "bob"}'}},
                            {"id": "call_b", "type": "function",
                             "function": {"name": "charge", "arguments": '{"customer": "alice", "amount_cents": 9000}'}},
                            {"id": "call_c", "type": "function",
                             "function": {"name": "delete_repo", "arguments": '{"repo": "prod"}'}},
                            {"id": "call_d", "type": "function",
                             "function": {"name": "charge", "arguments": '{"customer": "alice", "amount_cents": 10}'}},
                        ],
                    },
                }
            ],
        }
    )  # fmt: skip
    message = completion.choices[0].message
    client.set_last_assistant_message(message, llm_model=completion.model)
    results = client.execute_tool_calls(message.tool_calls, tools.registry())
    assert results == [
        {"tool_call_id": "call_a", "role": "tool", "content": "found bob"},
        {"tool_call_id": "call_b", "role": "tool", "content": DENIED},
        {
            "tool_call_id": "call_c",
            "role": "tool",
            "content": "Error: capability 'github.repos.delete' denied \u2014 capability_not_in_scope",
        },
        {
            "tool_call_id": "call_d",
            "role": "tool",
            "content": json.dumps({"customer": "alice", "charged": 10}),
        },
    ]
    assert tools.ran == ["lookup", "charge"]
    events = audited(client, governed, 4)
    assert [(e["tool_name"], e["decision"]) for e in events] == [
        ("lookup", "allow"),
        ("charge", "deny"),
        ("delete_repo", "deny"),
        ("charge", "allow"),
    ]
    assert {e["intent_context"]["agent_reasoning"] for e in events} == {message.content}
    # the same calls as plain dicts (message.model_dump()) give the same answers
    again = client.execute_tool_calls(message.model_dump()["tool_calls"], tools.registry())
    assert again == results


def test_custom_tool_calls_are_not_executed(client, tools):
    custom = ChatCompletionMessageCustomToolCall(
        id="call_x", type="custom", custom={"name": "charge", "input": "alice 100"}
    )
    with pytest.raises(ValidationError, match="custom"):
        client.execute_tool_call(custom, tools.registry())
    assert client.execute_tool_calls([custom], tools.registry()) == [
        {
            "tool_call_id": "call_x",
            "role": "tool",
            "content": "Error: only function tool calls can be executed",
        }
    ]
    assert tools.ran == []


def test_reasoning_is_kept_per_thread_and_redacted(client, governed, tools):
    """Official flaw: one ``_last_assistant_message`` per client, shared by every thread."""
    barrier = threading.Barrier(2)

    def agent(customer: str) -> None:
        client.set_last_assistant_message("look {} up with {}".format(customer, STRIPE_KEY))
        barrier.wait(timeout=30)
        client.execute_tool_call(tool_call("lookup", json.dumps({"customer": customer})), tools.registry())

    threads = [threading.Thread(target=agent, args=(name,)) for name in ("alice", "bob")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    events = audited(client, governed, 2)
    for event in events:
        customer = event["tool_args_summary"]["customer"]
        assert event["intent_context"]["agent_reasoning"] == "look {} up with [REDACTED]".format(customer)
    client.set_last_assistant_message(None)
    client.execute_tool_call(tool_call("lookup", '{"customer": "carol"}'), tools.registry())
    assert audited(client, governed, 3)[2]["intent_context"]["agent_reasoning"] is None


def test_async_functions_and_async_execution(client, governed, tools):
    async def alookup(customer: str) -> str:
        await asyncio.sleep(0)
        return "afound " + customer

    client.register_function("alookup", READ)
    registry = dict(tools.registry(), alookup=alookup)
    with pytest.raises(ConfigurationError, match="aexecute_tool_call"):
        client.execute_tool_call(tool_call("alookup", '{"customer": "a"}'), registry)

    async def main():
        return await client.aexecute_tool_calls(
            [
                tool_call("alookup", '{"customer": "a"}', "c1"),
                tool_call("lookup", '{"customer": "b"}', "c2"),
                tool_call("charge", '{"customer": "c", "amount_cents": 9000}', "c3"),
            ],
            registry,
        )

    assert [r["content"] for r in asyncio.run(main())] == ["afound a", "found b", DENIED]
    assert [e["decision"] for e in audited(client, governed, 3)] == ["allow", "allow", "deny"]


def test_a_function_enforced_with_client_tool(client, governed):
    @client.tool(READ)
    def find(customer: str) -> str:
        return "found " + customer

    client.register_function("find", READ)
    client.register_function("find_as_charge", CHARGE)
    assert client.execute_tool_call(tool_call("find", '{"customer": "a"}'), {"find": find}) == "found a"
    with pytest.raises(ConfigurationError, match="enforced as"):
        client.execute_tool_call(tool_call("find_as_charge", "{}"), {"find_as_charge": find})
    (event,) = audited(client, governed, 1)
    assert (event["tool_name"], event["framework"]) == ("find", "openai")


def test_the_openai_client_is_made_once(client, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-000000")
    barrier = threading.Barrier(4)
    made: List[Any] = []

    def get() -> None:
        barrier.wait(timeout=30)
        made.append(client.openai)

    threads = [threading.Thread(target=get) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(made) == 4 and all(m is made[0] for m in made)
    assert isinstance(made[0], openai.OpenAI) and client.openai is made[0]


def test_a_call_without_id_is_refused_before_any_call_runs(client, tools):
    calls = [tool_call("lookup", '{"customer": "a"}'), {"type": "function", "function": {"name": "lookup"}}]
    with pytest.raises(ValidationError, match="no id"):
        client.execute_tool_calls(calls, tools.registry())
    assert tools.ran == []


def test_registering_again_changes_the_capability_checked(client, governed, tools):
    registry = tools.registry()
    assert client.execute_tool_call(tool_call("lookup", '{"customer": "a"}'), registry) == "found a"
    client.register_function("lookup", DELETE)
    with pytest.raises(PolicyViolationError, match="github.repos.delete"):
        client.execute_tool_call(tool_call("lookup", '{"customer": "b"}'), registry)
    assert [(e["capability"], e["decision"]) for e in audited(client, governed, 2)] == [
        (READ, "allow"),
        (DELETE, "deny"),
    ]


def test_the_result_cap_on_a_declared_argument_and_on_what_comes_back(client, governed):
    ran = []

    def search(query: str, limit: int) -> List[str]:
        ran.append(limit)
        return ["r"] * 5  # more than the cap, whatever was asked

    client.register_function("search", READ, result_count="limit")
    registry = {"search": search}
    results = client.execute_tool_calls(
        [
            tool_call("search", json.dumps({"query": "q", "limit": MAX_RESULTS + 1}), "c1"),
            tool_call("search", json.dumps({"query": "q", "limit": 1}), "c2"),
        ],
        registry,
    )
    denied = "Error: capability 'stripe.customers.read' denied \u2014 max_results_exceeded"
    assert [r["content"] for r in results] == [denied, denied]
    assert ran == [1]  # the first was refused before running, the second after (5 came back)
    assert [e["reason"] for e in audited(client, governed, 2)] == ["max_results_exceeded"] * 2
