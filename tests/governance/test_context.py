"""TaskContext (official flaws C5 "TaskContext audits failures as allow and never records the
context's task_id", C15 "capability() yields {} instead of raising", "can() swallows all
exceptions", and section 5 "no contextvars scoping at all")."""

import asyncio
import contextvars
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, Optional

import pytest

from oculus_lite import TaskContext
from oculus_lite.context import current_task_id
from oculus_lite.exceptions import (
    ClientClosedError,
    ConfigurationError,
    CredentialError,
    PolicyViolationError,
    TokenExpiredError,
    TokenRevokedException,
)
from oculus_lite.governance._enforce import enforce
from oculus_lite.governance._state import AgentState

from .conftest import STRIPE_CREDENTIALS, STRIPE_MAP, Agent, make_state


@pytest.fixture
def agent(make_emitter):
    emitter = make_emitter()
    emitter.start()
    return Agent(make_state(capability_map=STRIPE_MAP, credentials=STRIPE_CREDENTIALS), emitter)


def sent(agent, audit_server, count):
    assert agent._governance_audit.flush(timeout=20)
    assert len(audit_server.events) == count, audit_server.events
    return audit_server.events


def test_with_and_async_with_scope_the_task():
    agent = Agent(make_state())
    assert current_task_id() is None
    with TaskContext(agent, "outer") as outer:
        assert outer.task_id == "outer" and current_task_id() == "outer"
        with TaskContext(agent, "inner"):
            assert current_task_id() == "inner"
        assert current_task_id() == "outer"
        with outer:  # re-entered (nested) by the same thread
            assert current_task_id() == "outer"
    assert current_task_id() is None

    async def main():
        async with TaskContext(agent, "async-task"):
            child = asyncio.ensure_future(asyncio.sleep(0, result=None))
            await child
            seen = await asyncio.gather(asyncio.create_task(_read()), asyncio.create_task(_read()))
            return seen, current_task_id()

    async def _read():
        await asyncio.sleep(0)
        return current_task_id()

    assert asyncio.run(main()) == (["async-task", "async-task"], "async-task")
    assert current_task_id() is None
    with pytest.raises(ConfigurationError):
        TaskContext(agent, "")


def test_concurrent_tasks_do_not_see_each_other():
    agent = Agent(make_state())

    async def worker(name):
        async with TaskContext(agent, name):
            await asyncio.sleep(0)
            return current_task_id()

    async def main():
        return await asyncio.gather(*(worker("t{}".format(i)) for i in range(20)))

    assert asyncio.run(main()) == ["t{}".format(i) for i in range(20)]


def test_threads_see_the_task_through_bind_or_copy_context():
    agent = Agent(make_state())
    seen: Dict[str, Optional[str]] = {}
    with TaskContext(agent, "threaded") as ctx:
        plain = threading.Thread(target=lambda: seen.__setitem__("plain", current_task_id()))
        bound = threading.Thread(target=ctx.bind(lambda: seen.__setitem__("bound", current_task_id())))
        context = contextvars.copy_context()
        copied = threading.Thread(
            target=context.run, args=(lambda: seen.__setitem__("copied", current_task_id()),)
        )
        for thread in (plain, bound, copied):
            thread.start()
            thread.join()
        with ThreadPoolExecutor(1) as pool:
            seen["pool"] = pool.submit(ctx.bind(current_task_id)).result()
    assert seen == {"plain": None, "bound": "threaded", "copied": "threaded", "pool": "threaded"}


def test_tools_called_inside_record_the_context_task(agent, audit_server):
    """Official: the audit's task_id was the token's or the client's, never the context's."""
    tool = enforce(agent, "stripe.charges.create", lambda amount_cents: amount_cents)
    with agent_task(agent, "ctx-1"):
        tool(5)

        async def run():
            return await asyncio.create_task(_call(tool))

        asyncio.run(run())
    assert [e["task_id"] for e in sent(agent, audit_server, 2)] == ["ctx-1", "ctx-1"]


async def _call(tool):
    return tool(1)


def agent_task(agent, task_id):
    return TaskContext(agent, task_id)


def test_can_is_false_for_denials_and_missing_tokens_and_raises_on_bugs():
    """Official flaw C15: can() returned False on any exception, hiding bugs."""
    agent = Agent(make_state(constraints={"max_amount_cents": 10}, capability_map=STRIPE_MAP))
    ctx = TaskContext(agent, "t")
    assert ctx.can("stripe.charges.create") is True
    assert ctx.can("stripe.charges.create", amount_cents=11) is False
    assert ctx.can("stripe.refunds.create") is False
    assert ctx.can(None) is False  # type: ignore[arg-type]
    assert asyncio.run(ctx.acan("stripe.charges.create")) is True
    agent.state = AgentState(
        agent_id="a", scopes=frozenset({"stripe.charges.create"}), constraints=None
    )  # null
    assert ctx.can("stripe.charges.create") is False
    for failure in (TokenExpiredError(), TokenRevokedException("jti-1")):
        agent.failure = failure
        assert ctx.can("stripe.charges.create") is False
        assert asyncio.run(ctx.acan("stripe.charges.create")) is False
    agent.failure = None
    agent.closed = True
    with pytest.raises(ClientClosedError):
        ctx.can("stripe.charges.create")
    agent.closed = False
    agent.failure = TypeError("a bug")
    with pytest.raises(TypeError):
        ctx.can("stripe.charges.create")


def test_can_does_not_audit(agent, audit_server):
    TaskContext(agent, "t").can("stripe.charges.create")
    assert agent._governance_audit.stats().emitted == 0


def test_credentials_raise_instead_of_an_empty_dict():
    agent = Agent(make_state(capability_map=STRIPE_MAP, credentials=STRIPE_CREDENTIALS))
    ctx = TaskContext(agent, "t")
    assert ctx.credentials("stripe")["api_key"] == "sk_live_CREDENTIALVALUE123"
    assert "CREDENTIALVALUE" not in repr(ctx.credentials("stripe"))
    with pytest.raises(CredentialError) as raised:
        ctx.credentials("github")
    assert raised.value.integration == "github"


def test_capability_block_yields_credentials_and_audits_success(agent, audit_server):
    with TaskContext(agent, "refund-1") as ctx:
        with ctx.capability("stripe.customers.read") as creds:
            assert creds["api_key"] == "sk_live_CREDENTIALVALUE123"
    (event,) = sent(agent, audit_server, 1)
    assert (event["decision"], event["outcome"], event["task_id"]) == ("allow", "success", "refund-1")
    assert event["tool_name"] == "ctx.capability('stripe.customers.read')"
    assert "CREDENTIALVALUE" not in str(event)


def test_capability_block_audits_the_real_outcome_when_it_raises(agent, audit_server):
    """Official flaw C5: the block was audited as "allow" even when it raised."""
    ctx = TaskContext(agent, "refund-2")
    with pytest.raises(ZeroDivisionError):
        with ctx.capability("stripe.charges.create"):
            assert current_task_id() == "refund-2"  # the block runs inside the task
            1 / 0  # noqa: B018
    assert current_task_id() is None
    (event,) = sent(agent, audit_server, 1)
    assert (event["outcome"], event["error_type"], event["task_id"]) == (
        "error",
        "ZeroDivisionError",
        "refund-2",
    )
    assert isinstance(event["duration_ms"], float)


def test_capability_block_denial_and_missing_credentials(agent, audit_server):
    ctx = TaskContext(agent, "t")
    agent.state = make_state(scopes={"stripe.customers.read", "github:repo:read"}, capability_map=STRIPE_MAP,
                             credentials=STRIPE_CREDENTIALS, policy_id="pol-3")  # fmt: skip
    with pytest.raises(PolicyViolationError) as raised:
        with ctx.capability("stripe.charges.create"):
            pytest.fail("the block must not run")
    assert raised.value.policy_id == "pol-3"
    with pytest.raises(CredentialError):  # official: yielded {}
        with ctx.capability("github:repo:read"):
            pytest.fail("the block must not run")
    agent.state = make_state(scopes={"nointegration"})
    with pytest.raises(CredentialError, match="names no integration"):
        with ctx.capability("nointegration"):
            pass
    events = sent(agent, audit_server, 3)
    assert [(e["outcome"], e["error_type"]) for e in events] == [
        ("denied", None),
        ("error", "CredentialError"),
        ("error", "CredentialError"),
    ]


def test_capability_block_async_with_and_colon_names(agent, audit_server):
    agent.state = make_state(scopes={"stripe:customer:read"}, credentials=STRIPE_CREDENTIALS)

    async def main():
        async with TaskContext(agent, "a-1") as ctx:
            async with ctx.capability("stripe:customer:read") as creds:
                return creds["api_key"]

    assert asyncio.run(main()) == "sk_live_CREDENTIALVALUE123"
    (event,) = sent(agent, audit_server, 1)
    assert event["outcome"] == "success" and event["task_id"] == "a-1"


def test_one_core_for_tools_and_context_blocks(agent, audit_server):
    """Official flaw C14: three copy-pasted wrappers drifted (audit framework tag, policy_id, the
    context keys they pass). Here a tool and a context block decide and report the same way."""
    agent.state = make_state(
        scopes={"stripe.customers.read"},
        constraints={"task_context_required": True, "max_amount_cents": 5},
        policy_id="pol-14",
        framework="crewai",
        capability_map=STRIPE_MAP,
        credentials=STRIPE_CREDENTIALS,
    )
    tool = enforce(agent, "stripe.charges.create", lambda amount_cents: amount_cents)
    ctx = TaskContext(agent, "t-14")
    errors = []
    for attempt in (lambda: tool(1), lambda: ctx.capability("stripe.charges.create").__enter__()):
        with pytest.raises(PolicyViolationError) as raised:
            attempt()
        errors.append(raised.value)
    assert [(e.reason, e.policy_id, e.granted_capabilities) for e in errors] == [
        ("capability_not_in_scope", "pol-14", {"stripe.customers.read"})
    ] * 2
    events = sent(agent, audit_server, 2)
    assert {e["framework"] for e in events} == {"crewai"} and {e["decision"] for e in events} == {"deny"}
    with ctx:  # the same task requirement, satisfied the same way
        assert ctx.can("stripe.customers.read", amount_cents=5) is True
        assert ctx.can("stripe.customers.read", amount_cents=6) is False
