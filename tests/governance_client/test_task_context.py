"""client.task(): the task id scoped through contextvars (asyncio tasks see it, threads through
ctx.bind), and capability() audited with the block's real outcome and the context's task id
(official flaw C5 "TaskContext audits failures as allow and never records the context's task_id",
section 5 "no contextvars scoping")."""

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import List, Optional

import pytest

from oculus_lite import Client
from oculus_lite.emulator import Emulator
from oculus_lite.evaluator import REASON_TASK_CONTEXT_REQUIRED
from oculus_lite.exceptions import PolicyViolationError

from .conftest import STRIPE_KEY, MakeClient, configure_agent, events

READ = "stripe.customers.read"


def test_tools_called_inside_a_task_record_and_check_its_id(emu: Emulator, make_client: MakeClient) -> None:
    """Official SDK: wrapped tools called inside ``with client.task(...)`` did not see that task."""
    configure_agent(emu, constraints={"task_context_required": True})
    client = make_client()
    read = client.tool(READ)(lambda: "ok")
    with pytest.raises(PolicyViolationError) as raised:
        read()  # no task anywhere: neither a block, nor the token, nor the client
    assert raised.value.reason == REASON_TASK_CONTEXT_REQUIRED
    with client.task("task-outer") as outer:
        assert read() == "ok"
        with client.task("task-inner"):
            assert read() == "ok"
        assert read() == "ok"
        assert outer.task_id == "task-outer"
    with pytest.raises(PolicyViolationError):
        read()
    client.stop()
    assert [e["task_id"] for e in events(emu)] == [None, "task-outer", "task-inner", "task-outer", None]


def test_asyncio_tasks_started_inside_see_the_task(emu: Emulator, client: Client) -> None:
    @client.tool(READ)
    async def read(tag: str) -> str:
        await asyncio.sleep(0)
        return tag

    async def main() -> None:
        async with client.task("task-async"):
            inside = asyncio.ensure_future(read("inside"))
        outside = asyncio.ensure_future(read("outside"))
        await asyncio.gather(inside, outside)

    asyncio.run(main())
    client.stop()
    assert {e["tool_args_summary"]["tag"]: e["task_id"] for e in events(emu)} == {
        "inside": "task-async",
        "outside": None,
    }


def test_threads_see_the_task_through_bind(emu: Emulator, client: Client) -> None:
    read = client.tool(READ)(lambda tag: tag)
    with client.task("task-threads") as ctx:
        bound = threading.Thread(target=ctx.bind(read), args=("bound",))
        plain = threading.Thread(target=read, args=("plain",))  # a Thread does not copy the context
        bound.start()
        plain.start()
        bound.join()
        plain.join()
        with ThreadPoolExecutor(2) as pool:
            assert pool.submit(ctx.bind(read), "pool").result() == "pool"
    client.stop()
    assert {e["tool_args_summary"]["tag"]: e["task_id"] for e in events(emu)} == {
        "bound": "task-threads",
        "plain": None,
        "pool": "task-threads",
    }


def test_tasks_in_concurrent_threads_do_not_leak_into_each_other(emu: Emulator, client: Client) -> None:
    read = client.tool(READ)(lambda tag: tag)
    barrier = threading.Barrier(8)

    def worker(i: int) -> None:
        with client.task("task-{}".format(i)):
            barrier.wait()
            read(str(i))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    client.stop()
    assert sorted((e["tool_args_summary"]["tag"], e["task_id"]) for e in events(emu)) == [
        (str(i), "task-{}".format(i)) for i in range(8)
    ]


def test_capability_audits_the_real_outcome_and_the_context_task_id(
    emu: Emulator, make_client: MakeClient
) -> None:
    """Official flaw C5: capability() audited "allow" even when the block raised, and the event's
    task_id was the token's or the client's, never the context's."""
    client = make_client(task_id="client-task")
    with client.task("ctx-task") as ctx:
        with ctx.capability(READ) as stripe:
            assert stripe["api_key"] == STRIPE_KEY
        with pytest.raises(RuntimeError):
            with ctx.capability(READ):
                raise RuntimeError("the block failed")
        with pytest.raises(PolicyViolationError):
            with ctx.capability("stripe.refunds.create"):
                raise AssertionError("a denied block never runs")

    async def main() -> None:
        async with client.task("async-ctx") as actx:
            async with actx.capability(READ):
                pass

    asyncio.run(main())
    client.stop()
    got = [(e["capability"], e["decision"], e["outcome"], e["error_type"], e["task_id"]) for e in events(emu)]
    assert got == [
        (READ, "allow", "success", None, "ctx-task"),
        (READ, "allow", "error", "RuntimeError", "ctx-task"),
        ("stripe.refunds.create", "deny", "denied", None, "ctx-task"),
        (READ, "allow", "success", None, "async-ctx"),
    ]
    assert all(isinstance(e["duration_ms"], float) for e in events(emu, decision="allow"))
    assert STRIPE_KEY not in str(emu.audit_events())


def test_tools_called_inside_a_capability_block_carry_its_task(emu: Emulator, client: Client) -> None:
    read = client.tool(READ)(lambda: "ok")
    seen: List[Optional[str]] = []
    with client.task("block-task") as ctx:
        with ctx.capability(READ):
            read()
            seen.append("x")
    client.stop()
    assert [e["task_id"] for e in events(emu)] == ["block-task", "block-task"]
    assert seen == ["x"]


def test_can_never_audits_and_uses_the_context_task(emu: Emulator, make_client: MakeClient) -> None:
    configure_agent(emu, constraints={"task_context_required": True})
    client = make_client()
    with client.task("t") as ctx:
        assert ctx.can(READ) is True
        assert ctx.can("stripe.refunds.create") is False
    client.stop()
    assert emu.stats()["audit_events"] == 0
