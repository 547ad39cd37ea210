"""The permission flow end to end against the emulator's approval service."""

import asyncio
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Dict, List, Set

import pytest

from oculus_lite import (
    ApprovalTimeoutError,
    AsyncPermissionClient,
    AuthenticationError,
    ForbiddenError,
    NotFoundError,
    Permission,
    PermissionClient,
    PermissionStatus,
    RateLimitError,
)

from .conftest import CANARY_KEY, decide, http_json

FAST: Dict[str, Any] = {"poll_interval": 0.02, "timeout": 10.0}


# ------------------------------------------------------------------ policies


def test_auto_approve_policy_returns_token_and_template_scope(client: Any, otp_agent: Any) -> None:
    otp_agent.otp.add_policy(
        api_key=CANARY_KEY,
        name="small files",
        priority=5,
        conditions={
            "action": {"startsWith": "file."},
            "scope.max_size": {"lessThanOrEqual": 1024},
        },
        action="auto_approve",
        scope_template={"read_only": True},
    )
    permission = client.request_permission("file.read", {"max_size": 100})
    assert permission.status is PermissionStatus.APPROVED
    assert permission.token is not None and permission.token.startswith("otp_")
    assert permission.scope == {"max_size": 100, "read_only": True}
    assert permission.expires_at is not None and permission.expires_at.tzinfo is not None
    # a bigger file does not match: it waits for a human
    assert client.request_permission("file.read", {"max_size": 4096}).status == "pending"


def test_deny_policy_returns_reason(client: Any, otp_agent: Any) -> None:
    otp_agent.otp.add_policy(
        name="no deletes",
        conditions={"action": {"matches": r"\.delete$"}},
        action="deny",
    )
    permission = client.request_permission("db.delete", {})
    assert permission.status == "denied"
    assert permission.token is None
    assert permission.reason == "denied by policy no deletes"


def test_require_approval_policy_outranks_lower_auto_approve(client: Any, otp_agent: Any) -> None:
    otp_agent.otp.add_policy(name="all", priority=1, action="auto_approve")
    otp_agent.otp.add_policy(
        name="payments",
        priority=10,
        action="require_approval",
        conditions={"context.amount": {"greaterThan": 100}},
    )
    assert client.request_permission("pay", {}, context={"amount": 500}).status == "pending"
    assert client.request_permission("pay", {}, context={"amount": 5}).status == "approved"
    assert client.request_permission("pay", {}).status == "approved"


@pytest.mark.parametrize(
    "conditions, matches",
    [
        ({"action": {"equals": "a.b"}}, True),
        ({"action": {"notEquals": "a.b"}}, False),
        ({"scope.n": {"lessThan": 6}}, True),
        ({"scope.n": {"greaterThanOrEqual": 6}}, False),
        ({"resource": {"endsWith": "@x.io"}}, True),
        ({"resource": {"contains": "@"}}, True),
        ({"scope.tags": {"contains": "red"}}, True),
        ({"scope.tags": {"contains": "blue"}}, False),
        ({"context.who": {"in": ["ann", "bob"]}}, True),
        ({"context.who": {"notIn": ["ann", "bob"]}}, False),
        ({"context.missing": {"exists": False}}, True),
        ({"context.who": {"exists": True}}, True),
        ({"scope.n": {"greaterThan": "5"}}, False),  # numbers only
    ],
)
def test_policy_operators(client: Any, otp_agent: Any, conditions: Dict[str, Any], matches: bool) -> None:
    otp_agent.otp.add_policy(conditions=conditions, action="auto_approve")
    permission = client.request_permission(
        "a.b", {"n": 5, "tags": ["red"]}, resource="mail:a@x.io", context={"who": "ann"}
    )
    assert permission.status == ("approved" if matches else "pending")


def test_policy_for_another_agent_does_not_apply(client: Any, otp_agent: Any) -> None:
    otp_agent.otp.add_policy(api_key=otp_agent.otp.demo_api_key, action="auto_approve")
    assert client.request_permission("x", {}).status == "pending"


def test_admin_api_adds_agents_and_policies_and_lists(emulator: Any) -> None:
    status, _, body = http_json(
        "POST",
        emulator.url + "/_emulator/otp/agents",
        {"api_key": "ak_http_1", "name": "http agent"},
    )
    assert (status, body) == (201, {"name": "http agent", "created": True})
    status, _, body = http_json(
        "POST",
        emulator.url + "/_emulator/otp/policies",
        {
            "api_key": "ak_http_1",
            "name": "reads",
            "priority": 3,
            "conditions": {"action": {"equals": "db.read"}},
            "action": "auto_approve",
        },
    )
    assert status == 201 and body["name"] == "reads"
    status, _, body = http_json(
        "POST",
        emulator.url + "/_emulator/otp/policies",
        {"conditions": {"action": {"like": "x"}}},
    )
    assert status == 400 and "unknown operator 'like'" in body["error"]["message"]
    with PermissionClient(api_key="ak_http_1", base_url=emulator.url) as c:
        assert c.request_permission("db.read", {}).status == "approved"
        pending = c.request_permission("db.write", {"rows": 1}, resource="t1")
    status, _, body = http_json("GET", emulator.url + "/_emulator/otp/permissions?status=pending")
    assert status == 200
    assert [(p["id"], p["action"], p["resource"], p["scope"]) for p in body["permissions"]] == [
        (pending.id, "db.write", "t1", {"rows": 1})
    ]
    assert "token" not in body["permissions"][0] and body["permissions"][0]["expires_at"]


# ------------------------------------------------------------------ a human decides


def test_human_approves_while_agent_waits(client: Any, human: Any) -> None:
    seen: List[Permission] = []
    human.will_decide(approved=True, reason="ok", scope_modifications={"max_emails": 1})
    permission = client.request_permission(
        "email.send",
        {"max_emails": 5},
        on_pending=seen.append,
        wait_for_approval=True,
        **FAST,
    )
    ((pid, status, payload),) = human.join()
    assert status == 200 and pid == permission.id
    assert len(seen) == 1 and seen[0].status == "pending" and seen[0].approval_url
    assert permission.status == "approved"
    assert permission.token == payload["data"]["token"]
    assert permission.scope == {"max_emails": 1}  # the human's final scope
    assert permission.decided_by == "operator" and permission.reason == "ok"


def test_human_denies_while_agent_waits(client: Any, human: Any) -> None:
    human.will_decide(approved=False, reason="too risky")
    permission = client.request_permission("db.drop", {}, wait_for_approval=True, **FAST)
    human.join()
    assert permission.status == "denied"
    assert permission.reason == "too risky"
    assert permission.token is None


def test_async_human_approves_and_loop_stays_responsive(otp_agent: Any, human: Any) -> None:
    async def main() -> Any:
        ticks = 0
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0)

        async with AsyncPermissionClient(api_key=otp_agent.api_key, base_url=otp_agent.url) as c:
            task = asyncio.ensure_future(ticker())
            human.will_decide(approved=True)
            permission = await c.request_permission("file.read", {}, wait_for_approval=True, **FAST)
            done.set()
            await task
            assert permission.token is not None
            usage = await c.use_token(permission.id, permission.token)
            second = await c.use_token(permission.id, permission.token)
        return permission, usage, second, ticks

    permission, usage, second, ticks = asyncio.run(main())
    human.join()
    assert permission.status == "approved" and permission.token
    assert usage.success and usage.uses_remaining == 0
    assert not second.success and second.reason == "token already used"
    assert ticks > 0  # the loop ran other tasks while we waited


def test_async_human_denies(otp_agent: Any, human: Any) -> None:
    async def main() -> Any:
        async with AsyncPermissionClient(api_key=otp_agent.api_key, base_url=otp_agent.url) as c:
            human.will_decide(approved=False, reason="no")
            pending: List[Any] = []

            async def on_pending(p: Any) -> None:  # a coroutine callback is awaited
                pending.append(p.id)

            result = await c.request_permission(
                "x", {}, wait_for_approval=True, on_pending=on_pending, **FAST
            )
            return result, pending

    permission, pending = asyncio.run(main())
    human.join()
    assert permission.status == "denied" and permission.reason == "no"
    assert pending == [permission.id]


def test_async_wait_honours_cancellation(otp_agent: Any) -> None:
    async def main() -> int:
        async with AsyncPermissionClient(api_key=otp_agent.api_key, base_url=otp_agent.url) as c:
            started = asyncio.Event()
            task = asyncio.ensure_future(
                c.request_permission(
                    "x",
                    {},
                    wait_for_approval=True,
                    on_pending=lambda p: started.set(),
                    poll_interval=5.0,
                    timeout=60.0,
                )
            )
            await started.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return 1

    assert asyncio.run(main()) == 1
    assert otp_agent.otp.list_permissions()[0]["status"] == "pending"


def test_expiry_while_waiting(client: Any, otp_agent: Any) -> None:
    def on_pending(p: Permission) -> None:
        otp_agent.otp.advance_clock(31)  # past the 30 s ttl, on the service's clock

    permission = client.request_permission(
        "x", {}, ttl=30, wait_for_approval=True, on_pending=on_pending, **FAST
    )
    assert permission.status == "expired"
    assert permission.token is None
    assert permission.reason == "no decision before the request expired"
    status, body = decide(otp_agent.url, permission.id, True)
    assert status == 409 and body["error"]["code"] == "CONFLICT"


def test_approval_timeout(client: Any, otp_agent: Any, clock: Any) -> None:
    started = clock.monotonic()
    with pytest.raises(ApprovalTimeoutError) as info:
        client.request_permission("x", {}, wait_for_approval=True, timeout=0.2, poll_interval=0.05)
    assert clock.monotonic() - started == pytest.approx(0.2)  # it waited its timeout, no more
    assert isinstance(info.value, TimeoutError)
    pid = info.value.permission_id
    assert pid and pid in str(info.value)
    # a later decision can still be picked up
    assert decide(otp_agent.url, pid, True)[0] == 200
    assert client.wait_for_permission(pid, timeout=5, poll_interval=0.05).status == "approved"


def test_close_from_another_thread_interrupts_sync_wait(otp_agent: Any) -> None:
    from oculus_lite import ClientClosedError

    c = PermissionClient(api_key=otp_agent.api_key, base_url=otp_agent.url)
    pending = threading.Event()

    def closer() -> None:
        pending.wait(10)
        c.close()

    thread = threading.Thread(target=closer)
    thread.start()
    with pytest.raises(ClientClosedError):
        c.request_permission(
            "x",
            {},
            wait_for_approval=True,
            on_pending=lambda p: pending.set(),
            poll_interval=30.0,
            timeout=60.0,
        )
    thread.join()


# ------------------------------------------------------------------ decide rules


def test_agent_key_cannot_decide(client: Any, otp_agent: Any) -> None:
    p = client.request_permission("x", {})
    status, body = decide(otp_agent.url, p.id, True, token=CANARY_KEY)
    assert status == 403 and body["success"] is False and body["error"]["code"] == "FORBIDDEN"
    assert client.get_permission(p.id).status == "pending"
    assert decide(otp_agent.url, p.id, False)[0] == 200
    status, body = decide(otp_agent.url, p.id, True)
    assert status == 409 and "already denied" in body["error"]["message"]


def test_admin_token_required_on_decide_when_configured() -> None:
    from oculus_lite.emulator import Emulator

    with Emulator(admin_token="adm-T0KEN") as emu:
        with PermissionClient(api_key=emu.otp.demo_api_key, base_url=emu.url) as c:
            p = c.request_permission("x", {})
            assert decide(emu.url, p.id, True)[0] == 401
            assert decide(emu.url, p.id, True, token="wrong")[0] == 401
            assert decide(emu.url, p.id, True, token=emu.otp.demo_api_key)[0] == 403
            assert decide(emu.url, p.id, True, token="adm-T0KEN")[0] == 200
            assert http_json("GET", emu.url + "/_emulator/otp/permissions")[0] == 401
            assert http_json("GET", emu.url + "/_emulator/otp/permissions", token="adm-T0KEN")[0] == 200


def test_get_is_private_to_the_owner(client: Any, emulator: Any) -> None:
    p = client.request_permission("x", {})
    with PermissionClient(api_key=emulator.otp.demo_api_key, base_url=emulator.url) as other:
        with pytest.raises(NotFoundError):
            other.get_permission(p.id)


# ------------------------------------------------------------------ tokens


def test_one_time_use_and_verify_does_not_consume(client: Any, otp_agent: Any) -> None:
    otp_agent.otp.add_policy(action="auto_approve")
    p = client.request_permission("x", {"k": 1})
    for _ in range(3):
        check = client.verify_token(p.id, p.token)
        assert check.valid and check.uses_remaining == 1 and check.scope == {"k": 1}
    assert not client.verify_token(p.id, "otp_wrong").valid
    assert client.get_permission(p.id).token == p.token  # unused: the owner can read it
    usage = client.use_token(p.id, p.token, action_details={"sent": 1})
    assert usage.success and usage.uses_remaining == 0
    again = client.use_token(p.id, p.token)
    assert not again and again.reason == "token already used"
    after = client.verify_token(p.id, p.token)
    assert not after.valid and after.reason == "token already used"
    state = client.get_permission(p.id)
    assert state.status == "used" and state.token is None


def test_configurable_token_uses(client: Any, otp_agent: Any) -> None:
    otp_agent.otp.add_policy(action="auto_approve", token_uses=2)
    p = client.request_permission("x", {})
    assert [client.use_token(p.id, p.token).success for _ in range(3)] == [
        True,
        True,
        False,
    ]


def test_execute_with_permission_marks_used_on_success_and_failure(client: Any, otp_agent: Any) -> None:
    otp_agent.otp.add_policy(action="auto_approve")
    calls: List[Any] = []

    def operation(token: str, scope: Dict[str, Any]) -> str:
        calls.append((token, scope))
        return "done"

    assert client.execute_with_permission(operation, action="x", scope={"a": 1}) == "done"
    assert calls[0][1] == {"a": 1}

    def boom(token: str, scope: Dict[str, Any]) -> None:
        calls.append(token)
        raise KeyError("operation failed")

    with pytest.raises(KeyError):
        client.execute_with_permission(boom, action="y", scope={})
    rows = {r["action"]: r["status"] for r in otp_agent.otp.list_permissions()}
    assert rows == {"x": "used", "y": "used"}
    assert otp_agent.otp.stats()["permission_uses"] == 2


def test_execute_with_permission_denied_raises_forbidden(client: Any, otp_agent: Any) -> None:
    otp_agent.otp.add_policy(action="deny", name="never")
    with pytest.raises(ForbiddenError, match="denied: denied by policy never"):
        client.execute_with_permission(lambda t, s: None, action="x", scope={})


def test_async_execute_with_permission_marks_used_when_operation_raises(
    otp_agent: Any,
) -> None:
    otp_agent.otp.add_policy(action="auto_approve")

    async def op(token: str, scope: Dict[str, Any]) -> None:
        raise RuntimeError("nope")

    async def main() -> None:
        async with AsyncPermissionClient(api_key=otp_agent.api_key, base_url=otp_agent.url) as c:
            with pytest.raises(RuntimeError, match="nope"):
                await c.execute_with_permission(op, action="x", scope={})
            assert await c.execute_with_permission(lambda t, s: 7, action="z", scope={}) == 7

    asyncio.run(main())
    assert [r["status"] for r in otp_agent.otp.list_permissions()] == ["used", "used"]


# ------------------------------------------------------------------ rate limit


def test_rate_limit_429_with_retry_after(client: Any, otp_agent: Any) -> None:
    otp_agent.otp.add_agent(CANARY_KEY, "canary", rate_limit=2)
    client.request_permission("x", {})
    client.request_permission("x", {})
    status, headers, body = http_json(
        "POST",
        otp_agent.url + "/api/v1/permissions/request",
        {"action": "x", "scope": {}},
        token=CANARY_KEY,
    )
    assert status == 429 and headers["Retry-After"] == "60" and body["error"]["code"] == "RATE_LIMITED"
    with pytest.raises(RateLimitError) as info:  # 60 s is beyond what the client waits in-call
        client.request_permission("x", {})
    assert info.value.retry_after == 60.0
    assert otp_agent.otp.stats()["otp_rate_limited"] == 2


def test_polling_waits_retry_after_then_succeeds(clock: Any) -> None:
    from oculus_lite.emulator import Emulator

    with Emulator(
        config={"otp": {"rate_window": 2, "agents": [{"api_key": "ak_rl", "rate_limit": 2}]}}, clock=clock
    ) as emu:
        with PermissionClient(api_key="ak_rl", base_url=emu.url, clock=clock) as c:
            first = c.request_permission("x", {})
            c.get_permission(first.id)  # window full now
            decide(emu.url, first.id, True)
            started = clock.monotonic()
            result = c.wait_for_permission(first.id, timeout=10, poll_interval=0.01)
            waited = clock.monotonic() - started
        assert result.status == "approved" and result.token
        assert emu.otp.stats()["otp_rate_limited"] == 1
        assert waited == pytest.approx(2.0)  # the Retry-After the service sent: until its window ends


def test_client_paces_itself_under_its_limit(otp_agent: Any, clock: Any) -> None:
    with PermissionClient(
        api_key=otp_agent.api_key, base_url=otp_agent.url, max_requests_per_minute=3, clock=clock
    ) as c:
        started = clock.monotonic()
        p = c.request_permission("x", {})
        c.get_permission(p.id)
        c.get_permission(p.id)
        with pytest.raises(ApprovalTimeoutError):  # the 4th request would exceed 3/min
            c.wait_for_permission(p.id, timeout=30, poll_interval=0.01)
        assert otp_agent.otp.stats()["permission_polls"] == 2
        # a plain call waits for the slot: a minute after the first request, not a moment sooner
        assert c.get_permission(p.id).status == "pending"
        assert clock.monotonic() - started == pytest.approx(60.0)
    assert otp_agent.otp.stats()["permission_polls"] == 3


def test_unknown_api_key_is_authentication_error(emulator: Any) -> None:
    with PermissionClient(api_key="ak_nobody", base_url=emulator.url) as c:
        with pytest.raises(AuthenticationError) as info:
            c.request_permission("x", {})
    assert info.value.status_code == 401 and "AGENT_OTP_API_KEY" in str(info.value)


def test_expiry_by_the_local_clock_when_the_server_still_says_pending(client: Any, otp_agent: Any) -> None:
    otp_agent.otp.advance_clock(-400)  # the service lags: its expiresAt is already past here
    p = client.request_permission("x", {}, ttl=300)
    assert p.status == "pending"
    result = client.wait_for_permission(p.id, timeout=10, poll_interval=0.02)
    assert result.status == "expired" and result.token is None
    assert result.reason == "no decision before the request expired"
    assert otp_agent.otp.stats()["permission_polls"] == 1


def test_sync_wait_leaves_no_thread_behind(client: Any, clock: Any) -> None:
    def ours() -> Set[threading.Thread]:
        # Not counted: the emulator's per-connection threads, which come and go, and the
        # keep-alive pool's reaper, which lives while an idle connection does
        # (tests/conformance/test_keepalive.py checks that it ends).
        def elsewhere(t: threading.Thread) -> bool:
            target = getattr(t, "_target", None)
            server_side = getattr(target, "__name__", "") == "process_request_thread"
            return server_side or t.name == "oculus-lite-keepalive"

        return {t for t in threading.enumerate() if not elsewhere(t)}

    before = ours()
    with pytest.raises(ApprovalTimeoutError):
        client.request_permission("x", {}, wait_for_approval=True, timeout=0.1, poll_interval=0.02)
    assert ours() == before


class CountingTransport:
    """Delegates to the default transport; counts close() calls."""

    def __init__(self) -> None:
        from oculus_lite.transport import UrllibTransport

        self.inner = UrllibTransport()
        self.closed = 0

    def request(self, request: Any) -> Any:
        return self.inner.request(request)

    def close(self) -> None:
        self.closed += 1


def test_close_closes_the_transport_once_and_refuses_later_calls(otp_agent: Any) -> None:
    from oculus_lite import ClientClosedError

    transport = CountingTransport()
    with PermissionClient(api_key=otp_agent.api_key, base_url=otp_agent.url, transport=transport) as c:
        assert c.request_permission("x", {}).status == "pending"
    c.close()
    assert transport.closed == 1 and c.closed
    with pytest.raises(ClientClosedError):
        c.request_permission("x", {})
    with pytest.raises(ClientClosedError):
        c.__enter__()

    async def main() -> None:
        t2 = CountingTransport()
        ac = AsyncPermissionClient(api_key=otp_agent.api_key, base_url=otp_agent.url, transport=t2)
        async with ac:
            assert (await ac.request_permission("y", {})).status == "pending"
        await ac.close()
        assert t2.closed == 1
        with pytest.raises(ClientClosedError):
            await ac.get_permission("perm_1")

    asyncio.run(main())


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT delivery differs on Windows")
def test_ctrl_c_interrupts_a_sync_wait(otp_agent: Any) -> None:
    script = (
        "import signal, sys\n"
        # A runner started in the background (`cmd &` in a script) hands its children SIGINT
        # ignored, and Python then installs no KeyboardInterrupt handler: restore Ctrl-C's.
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "from oculus_lite import PermissionClient\n"
        "c = PermissionClient(api_key=sys.argv[1], base_url=sys.argv[2])\n"
        "try:\n"
        "    c.request_permission('x', {}, wait_for_approval=True, timeout=120, poll_interval=60,\n"
        "                         on_pending=lambda p: print('pending', flush=True))\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted', flush=True)\n"
    )
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        [sys.executable, "-c", script, otp_agent.api_key, otp_agent.url],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "pending\n"
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
    assert (out, proc.returncode) == ("interrupted\n", 0)
