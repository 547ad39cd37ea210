"""The enforcing wrapper (official flaws S4 "enforcement can be bypassed", C1 "amount_cents is
popped", C5 "failed tool calls are not audited", C7 "stale claims", C8 "async tools get sync
wrappers", C14 "three drifted wrapper copies": here one core)."""

import asyncio
import inspect
import json
import threading
from typing import Dict, List

import pytest

from oculus_lite.evaluator import REASON_DENY_ALWAYS, REASON_NOT_IN_SCOPE
from oculus_lite.exceptions import (
    ClientClosedError,
    ConfigurationError,
    PolicyViolationError,
    TokenExpiredError,
)
from oculus_lite.governance._current import intent
from oculus_lite.governance._enforce import enforce, is_enforced, result_count_of

from .conftest import STRIPE_MAP, Agent, make_state

CHARGE = "stripe.charges.create"


@pytest.fixture
def agent(make_emitter):
    emitter = make_emitter()
    emitter.start()
    return Agent(make_state(), emitter)


def sent(agent, audit_server, count):
    assert agent._governance_audit.flush(timeout=20)
    assert len(audit_server.events) == count, audit_server.events
    return audit_server.events


def charge(customer_id: str, amount_cents: int, currency: str = "eur") -> Dict[str, object]:
    """Charge a customer."""
    return {"customer_id": customer_id, "amount_cents": amount_cents, "currency": currency}


def test_calling_the_decorated_function_directly_is_checked(agent, audit_server):
    """Official flaw S4: @client.tool only tagged the function; calling it bypassed everything."""
    agent.state = make_state(scopes={"stripe.customers.read"}, policy_id="pol-77")
    tool = enforce(agent, CHARGE, charge)
    with pytest.raises(PolicyViolationError) as raised:
        tool("cus_1", 100)
    error = raised.value
    assert (error.capability, error.reason, error.policy_id) == (CHARGE, REASON_NOT_IN_SCOPE, "pol-77")
    assert error.granted_capabilities == {"stripe.customers.read"}
    assert str(error).startswith(
        "Capability 'stripe.charges.create' denied: capability_not_in_scope (policy: pol-77)"
    )
    (event,) = sent(agent, audit_server, 1)
    assert (event["decision"], event["outcome"], event["reason"]) == ("deny", "denied", REASON_NOT_IN_SCOPE)
    assert event["tool_args_summary"] == {"customer_id": "cus_1", "amount_cents": 100}


def test_allowed_call_is_audited_after_the_body(agent, audit_server):
    tool = enforce(agent, CHARGE, charge)
    assert tool("cus_1", 100) == {"customer_id": "cus_1", "amount_cents": 100, "currency": "eur"}
    (event,) = sent(agent, audit_server, 1)
    assert (event["decision"], event["outcome"], event["reason"]) == ("allow", "success", "allowed")
    assert (event["agent_id"], event["jti"], event["tool_name"], event["capability"]) == (
        "agent-7",
        "jti-1",
        "charge",
        CHARGE,
    )
    assert isinstance(event["duration_ms"], float) and event["error_type"] is None


def test_signature_docstring_kept_and_the_original_untouched():
    before = dict(charge.__dict__)
    tool = enforce(Agent(make_state()), CHARGE, charge)
    assert tool.__name__ == "charge" and tool.__doc__ == "Charge a customer."
    assert inspect.signature(tool) == inspect.signature(charge)
    assert tool.__wrapped__ is charge  # type: ignore[attr-defined]
    assert is_enforced(tool) and not is_enforced(charge)
    assert charge.__dict__ == before and not hasattr(charge, "_oculus_capability")
    assert tool._oculus_capability == CHARGE  # type: ignore[attr-defined]


def test_two_clients_wrapping_one_function_do_not_collide():
    """Official flaw (section 3, tool()): the decorator mutated the function, so the last capability won."""
    one, two = Agent(make_state(scopes={"a.x"})), Agent(make_state(scopes={"b.y"}))
    as_a = enforce(one, "a.x", charge)
    as_b = enforce(two, "b.y", charge)
    assert as_a("c", 1)["customer_id"] == "c" and as_b("c", 1)["customer_id"] == "c"
    with pytest.raises(PolicyViolationError):
        enforce(two, "a.x", charge)("c", 1)


def test_positional_and_keyword_amounts_are_checked_alike_and_the_tool_keeps_them(agent, audit_server):
    """Official flaw C1: amount_cents was popped from kwargs (TypeError in the tool, missing from
    the audit), and a positional amount was never checked (99,999 passed a 5,000 cap)."""
    agent.state = make_state(constraints={"max_amount_cents": 5000})
    tool = enforce(agent, CHARGE, charge)
    assert tool("cus_1", 5000)["amount_cents"] == 5000
    assert tool(customer_id="cus_1", amount_cents=4000)["amount_cents"] == 4000
    for call in (
        lambda: tool("cus_1", 99_999),
        lambda: tool("cus_1", amount_cents=99_999),
        lambda: tool("c", "5000"),  # type: ignore[arg-type]
    ):
        with pytest.raises(PolicyViolationError):
            call()
    events = sent(agent, audit_server, 5)
    assert [e["outcome"] for e in events] == ["success", "success", "denied", "denied", "denied"]
    assert [e["reason"] for e in events[2:]] == [
        "amount_limit_exceeded",
        "amount_limit_exceeded",
        "invalid_amount",
    ]
    assert events[2]["tool_args_summary"]["amount_cents"] == 99_999  # recorded, not lost


def test_named_amount_parameter_and_defaults():
    agent = Agent(make_state(constraints={"max_amount_cents": 100}))

    def refund(order: str, price: int = 50, *, note: str = "") -> int:
        return price

    tool = enforce(agent, "payments.refund", refund, amount="price")
    agent.state = make_state(scopes={"payments.refund"}, constraints={"max_amount_cents": 100})
    assert tool("o") == 50  # the default is what the tool gets, so it is what is checked
    assert tool("o", 100) == 100
    with pytest.raises(PolicyViolationError):
        tool("o", price=101)

    def kw_only(*, amount_cents: int) -> int:
        return amount_cents

    def pos_only(amount_cents, /, **extra):
        return amount_cents

    def open_kwargs(**kwargs):
        return kwargs

    assert enforce(agent, "payments.refund", kw_only)(amount_cents=100) == 100
    guarded = enforce(agent, "payments.refund", pos_only)
    with pytest.raises(PolicyViolationError):
        guarded(10**9, amount_cents=1)  # the positional value is what the tool gets
    assert guarded(5, amount_cents=10**9) == 5
    with pytest.raises(PolicyViolationError):
        enforce(agent, "payments.refund", open_kwargs, amount="total")(total=101)
    for bad in ("missing", "not an identifier"):
        with pytest.raises(ConfigurationError):
            enforce(agent, "payments.refund", refund, amount=bad)
    with pytest.raises(ConfigurationError):
        enforce(agent, "payments.refund", lambda *a: a, amount="a")


CALLS = [
    ((1, 2), {}),
    ((1,), {"amount_cents": 2}),
    ((), {"customer_id": 1, "amount_cents": 2}),
    ((1, 2, "usd"), {}),
]


@pytest.mark.parametrize("args, kwargs", CALLS)
def test_arguments_are_read_as_signature_bind_reads_them(args, kwargs):
    bound = inspect.signature(charge).bind(*args, **kwargs)
    bound.apply_defaults()
    amount = bound.arguments["amount_cents"]
    at_cap = Agent(make_state(constraints={"max_amount_cents": amount}))
    assert enforce(at_cap, CHARGE, charge)(*args, **kwargs)["amount_cents"] == amount
    below = Agent(make_state(constraints={"max_amount_cents": amount - 1}))
    with pytest.raises(PolicyViolationError):
        enforce(below, CHARGE, charge)(*args, **kwargs)


def test_result_count_argument_and_returned_results(agent, audit_server):
    agent.state = make_state(scopes={"crm.search"}, constraints={"max_results": 3})

    def search(query: str, result_count: int = 2) -> List[str]:
        return ["r"] * result_count

    tool = enforce(agent, "crm.search", search)
    assert tool("q") == ["r", "r"] and tool("q", 3) == ["r"] * 3
    with pytest.raises(PolicyViolationError) as raised:
        tool("q", result_count=4)  # the declared count is checked before the call
    assert raised.value.reason == "max_results_exceeded"

    ran: List[str] = []

    def greedy(query: str) -> List[int]:
        ran.append(query)
        return list(range(10))

    over = enforce(agent, "crm.search", greedy)
    with pytest.raises(PolicyViolationError) as raised:
        over("q")
    assert raised.value.reason == "max_results_exceeded" and ran == ["q"]  # ran, result withheld
    events = sent(agent, audit_server, 4)
    assert [(e["decision"], e["outcome"]) for e in events] == [
        ("allow", "success"),
        ("allow", "success"),
        ("deny", "denied"),
        ("deny", "denied"),
    ]
    assert isinstance(events[3]["duration_ms"], float)


def test_what_counts_as_results():
    assert result_count_of([1, 2]) == 2 and result_count_of((1,)) == 1 and result_count_of({1, 2, 3}) == 3
    for uncounted in ("text", b"bytes", {"a": 1, "b": 2}, None, 5, iter([1])):
        assert result_count_of(uncounted) is None


def test_deny_always_is_honoured(agent, audit_server):
    """Official flaw S4: a capability in deny_always was allowed."""
    agent.state = make_state(scopes={"stripe.payouts.create"}, capability_map=STRIPE_MAP)
    with pytest.raises(PolicyViolationError) as raised:
        enforce(agent, "stripe.payouts.create", lambda: "paid")()
    assert raised.value.reason == REASON_DENY_ALWAYS
    (event,) = sent(agent, audit_server, 1)
    assert event["reason"] == REASON_DENY_ALWAYS


def test_failed_calls_are_audited_with_outcome_type_and_duration_never_the_message(agent, audit_server):
    """Official flaw C5: a tool that raised produced no audit event at all."""

    def broken(password: str) -> None:
        raise ValueError("db password hunter2 rejected")

    with pytest.raises(ValueError, match="hunter2"):
        enforce(agent, CHARGE, broken)("hunter2")
    (event,) = sent(agent, audit_server, 1)
    assert (event["decision"], event["outcome"], event["error_type"]) == ("allow", "error", "ValueError")
    assert isinstance(event["duration_ms"], float)
    assert "hunter2" not in json.dumps(event)


def test_arguments_are_recorded_as_they_were_before_the_call(agent, audit_server):
    """Official flaw C5 (section 3, wrap_tools step 6): tool_args were rebuilt after execution,
    so mutated arguments were recorded."""

    def mutate(items: List[str]) -> int:
        items.append("added by the tool")
        return len(items)

    assert enforce(agent, CHARGE, mutate)(["original"]) == 2
    (event,) = sent(agent, audit_server, 1)
    assert event["tool_args_summary"] == {"items": ["original"]}


def test_wrapping_twice_neither_double_checks_nor_double_audits(agent, audit_server):
    """Official flaw C14 (section 3, wrap_tools): wrapping twice wrapped twice and emitted double audit events."""
    once = enforce(agent, CHARGE, charge)
    assert enforce(agent, CHARGE, once) is once
    once("c", 1)
    sent(agent, audit_server, 1)
    assert agent.state_reads == 1
    with pytest.raises(ConfigurationError, match="already enforced"):
        enforce(agent, "stripe.customers.read", once)
    with pytest.raises(ConfigurationError, match="another client"):
        enforce(Agent(make_state()), CHARGE, once)


def test_async_tools_get_async_wrappers_checked_when_awaited(agent, audit_server):
    """Official flaw C8: async tools got a sync wrapper: checked at creation, "allow" audited
    before the body ran, iscoroutinefunction False."""
    seen_during_body = []

    async def fetch(customer_id: str, amount_cents: int = 0) -> str:
        await asyncio.sleep(0)
        seen_during_body.append(agent._governance_audit.stats().emitted)
        return customer_id

    tool = enforce(agent, CHARGE, fetch)
    assert inspect.iscoroutinefunction(tool)
    pending = tool("cus_1")  # created while allowed...
    agent.state = make_state(scopes=set())  # ...denied by the time it runs
    with pytest.raises(PolicyViolationError):
        asyncio.run(pending)
    agent.state = make_state()
    assert asyncio.run(tool("cus_2")) == "cus_2"
    assert seen_during_body == [1]  # only the denial was recorded while the body ran
    events = sent(agent, audit_server, 2)
    assert [e["outcome"] for e in events] == ["denied", "success"]

    async def failing() -> None:
        raise KeyError("x")

    with pytest.raises(KeyError):
        asyncio.run(enforce(agent, CHARGE, failing)())
    assert sent(agent, audit_server, 3)[2]["error_type"] == "KeyError"


def test_methods_bound_methods_static_and_class_methods(agent, audit_server):
    class Payments:
        fee = 5

        @staticmethod
        def parse(text: str) -> int:
            return int(text)

        @classmethod
        def default_fee(cls) -> int:
            return cls.fee

        def charge(self, customer_id: str, amount_cents: int) -> int:
            return amount_cents + self.fee

    Payments.charge = enforce(agent, CHARGE, Payments.charge)  # type: ignore[method-assign]
    Payments.parse = enforce(agent, CHARGE, Payments.__dict__["parse"])  # type: ignore[method-assign]
    Payments.default_fee = enforce(agent, CHARGE, Payments.__dict__["default_fee"])  # type: ignore[method-assign]
    payments = Payments()
    assert payments.charge("c", 10) == 15 and Payments.parse("7") == 7 and payments.default_fee() == 5
    bound = enforce(agent, CHARGE, Payments().charge)
    assert bound("c", amount_cents=1) == 6
    agent.state = make_state(constraints={"max_amount_cents": 10})
    with pytest.raises(PolicyViolationError):
        payments.charge("c", 11)  # self is skipped when finding amount_cents
    events = sent(agent, audit_server, 5)
    assert events[0]["tool_args_summary"] == {"customer_id": "c", "amount_cents": 10}  # no self


def test_callable_objects():
    class Tool:
        def __init__(self):
            self.api_key = "sk_live_INSTANCESTATE1"

        def __call__(self, amount_cents: int) -> int:
            return amount_cents

    class AsyncTool:
        async def __call__(self, x: int) -> int:
            return x

    agent = Agent(make_state(constraints={"max_amount_cents": 3}))
    wrapped = enforce(agent, CHARGE, Tool())
    assert wrapped(3) == 3 and "api_key" not in vars(wrapped)
    with pytest.raises(PolicyViolationError):
        wrapped(4)
    awaited = enforce(agent, CHARGE, AsyncTool())
    assert inspect.iscoroutinefunction(awaited) and asyncio.run(awaited(2)) == 2


def test_generators_and_bad_capabilities_are_refused():
    agent = Agent(make_state())

    def gen():
        yield 1

    async def agen():
        yield 1

    for fn in (gen, agen):
        with pytest.raises(ConfigurationError, match="generator"):
            enforce(agent, CHARGE, fn)
    for capability in ("", "a b", None, 5):
        with pytest.raises(ConfigurationError):
            enforce(agent, capability, charge)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        enforce(agent, CHARGE, "not callable")  # type: ignore[type-var]


def test_each_call_reads_the_current_snapshot_and_stopped_clients_refuse():
    """Official flaws C7: claims swapped as separate writes while calls read them; tools kept
    working on stale claims after stop()."""
    agent = Agent(make_state())
    tool = enforce(agent, CHARGE, charge)
    tool("c", 1)
    agent.state = make_state(scopes=set())
    with pytest.raises(PolicyViolationError):
        tool("c", 1)
    agent.closed = True
    with pytest.raises(ClientClosedError):
        tool("c", 1)
    agent.closed = False
    agent.failure = TokenExpiredError()
    with pytest.raises(TokenExpiredError):
        tool("c", 1)


def test_task_id_from_the_context_then_the_token_then_the_client(agent, audit_server):
    from oculus_lite.context import TaskContext

    agent.task_id = "client-task"
    tool = enforce(agent, CHARGE, charge)
    tool("c", 1)
    agent.state = make_state(task_id="token-task")
    tool("c", 1)
    with TaskContext(agent, "context-task"):
        tool("c", 1)
    assert [e["task_id"] for e in sent(agent, audit_server, 3)] == [
        "client-task",
        "token-task",
        "context-task",
    ]


def test_task_context_required_is_satisfied_by_a_task(agent):
    from oculus_lite.context import TaskContext

    agent.state = make_state(constraints={"task_context_required": True})
    tool = enforce(agent, CHARGE, charge)
    with pytest.raises(PolicyViolationError) as raised:
        tool("c", 1)
    assert raised.value.reason == "task_context_required"
    with TaskContext(agent, "t-1"):
        assert tool("c", 1)["customer_id"] == "c"


def test_reasoning_and_model_from_an_adapter_are_recorded_redacted(agent, audit_server):
    """Official flaws S6 (reasoning sent raw) and C15 (llm_model never populated)."""
    with intent("I will charge with sk_live_REASONSECRET1 now", "gpt-4o"):
        enforce(agent, CHARGE, charge, framework="langchain")("c", 1)
    (event,) = sent(agent, audit_server, 1)
    assert event["intent_context"]["llm_model"] == "gpt-4o" and event["framework"] == "langchain"
    assert "REASONSECRET" not in event["intent_context"]["agent_reasoning"]


def test_without_an_emitter_checks_still_run():
    agent = Agent(make_state(scopes={"crm.search"}, constraints={"max_results": 1}))
    assert enforce(agent, "crm.search", lambda: ["a"])() == ["a"]
    with pytest.raises(PolicyViolationError):
        enforce(agent, "crm.search", lambda: ["a", "b"])()
    with pytest.raises(PolicyViolationError):
        enforce(agent, "crm.write", lambda: None)()


def test_concurrent_calls_during_state_swaps_see_whole_snapshots():
    """Each call decides on one AgentState: scopes and constraints never mix across a swap."""
    open_state = make_state(scopes={CHARGE}, constraints={})
    capped = make_state(scopes={CHARGE}, constraints={"max_amount_cents": 10})
    agent = Agent(open_state)
    tool = enforce(agent, CHARGE, charge)
    outcomes = {"ok": 0, "denied": 0}
    lock = threading.Lock()
    stop = threading.Event()

    def swap():
        while not stop.is_set():
            agent.state = capped
            agent.state = open_state

    def call():
        for _ in range(2000):
            try:
                tool("c", 11)
                key = "ok"
            except PolicyViolationError as error:
                assert error.reason == "amount_limit_exceeded"
                key = "denied"
            with lock:
                outcomes[key] += 1

    swapper = threading.Thread(target=swap)
    swapper.start()
    callers = [threading.Thread(target=call) for _ in range(4)]
    for t in callers:
        t.start()
    for t in callers:
        t.join()
    stop.set()
    swapper.join()
    assert outcomes["ok"] + outcomes["denied"] == 8000
