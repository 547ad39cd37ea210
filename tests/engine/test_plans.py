"""The engine: plans fed responses directly (no sockets) for the sequencing rules, and the
drivers' guarantees that used to differ between the sync and async copies of each flow."""

import asyncio
import threading
from typing import Any, List

import pytest

from oculus_lite import Client, InvalidResponseError, NetworkError, NetworkTimeoutError, ServerError
from oculus_lite._engine import ManualClock
from oculus_lite._engine._flight import Abandoned, Flight, SingleFlight
from oculus_lite._engine._plan import Call, Join, Shield, Sleep, Spawn, arun, run
from oculus_lite._http._models import Request, Response
from oculus_lite._http._send import RetryPolicy, send_plan
from oculus_lite._secret import Secret
from oculus_lite.tokens._cache import Entry, EntryState, timing
from oculus_lite.tokens._oauth import TokenEndpoint, token_plan

REQUEST = Request("GET", "http://127.0.0.1:9/x", timeout=5.0)


def drive(plan: Any, answers: List[Any]) -> Any:
    """Feed a plan its effects' results by hand: the h11-style test of a flow with no I/O."""
    effects: List[Any] = []
    value: Any = None
    error: Any = None
    while True:
        try:
            effect = plan.send(value) if error is None else plan.throw(error)
        except StopIteration as done:
            return effects, done.value
        effects.append(effect)
        value, error = None, None
        answer = answers.pop(0) if isinstance(effect, Request) else None
        if isinstance(answer, BaseException):
            error = answer
        else:
            value = answer


def test_send_plan_retries_5xx_then_returns_the_success():
    clock = ManualClock()
    plan = send_plan(REQUEST, policy=RetryPolicy(retries=3), deadline=clock.monotonic() + 30, clock=clock)
    effects, response = drive(plan, [Response(503), Response(502), Response(200, {}, b"ok")])
    kinds = [type(e).__name__ for e in effects]
    assert kinds == ["Request", "Sleep", "Request", "Sleep", "Request"]
    assert response.body == b"ok"


def test_send_plan_honours_retry_after_on_503_not_only_on_429():
    clock = ManualClock()
    plan = send_plan(REQUEST, policy=RetryPolicy(retries=3), deadline=clock.monotonic() + 30, clock=clock)
    effects, _ = drive(plan, [Response(503, {"Retry-After": "2"}), Response(200)])
    assert effects[1] == Sleep(2.0)


def test_send_plan_refuses_a_transport_answer_that_is_not_a_response():
    """Drift 1: the async copy gave AttributeError where the sync one gave InvalidResponseError."""
    clock = ManualClock()
    plan = send_plan(REQUEST, policy=RetryPolicy(), deadline=clock.monotonic() + 30, clock=clock)
    with pytest.raises(InvalidResponseError, match="returned str instead of a Response"):
        drive(plan, ["not a response"])


def test_send_plan_gives_up_when_retries_run_out():
    clock = ManualClock()
    plan = send_plan(REQUEST, policy=RetryPolicy(retries=1), deadline=clock.monotonic() + 30, clock=clock)
    with pytest.raises(NetworkError):
        drive(plan, [NetworkError("reset"), NetworkError("reset again")])


def test_token_plan_falls_back_to_client_credentials_when_the_refresh_token_is_refused():
    clock = ManualClock()
    endpoint = TokenEndpoint("http://127.0.0.1:9", "id", "s3cret-value", timeout=5.0, margin=10.0)
    plan = token_plan(
        endpoint,
        "db:read",
        Secret("rt-1"),
        deadline=clock.monotonic() + 30,
        policy=RetryPolicy(retries=0),
        clock=clock,
    )
    refused = Response(400, {}, b'{"error": "invalid_grant"}')
    granted = Response(200, {}, b'{"access_token": "tok-2", "expires_in": 60}')
    effects, entry = drive(plan, [refused, granted])
    bodies = [e.body for e in effects if isinstance(e, Request)]
    assert b"grant_type=refresh_token" in bodies[0] and b"grant_type=client_credentials" in bodies[1]
    assert entry.token == "tok-2"


def test_entry_states_follow_the_timing_diagram():
    refresh_at, margin_at, expires = timing(0.0, 100.0, 10.0)
    entry = Entry("t", "db:read", refresh_at, margin_at, expires, 0.0)
    assert [entry.state(t) for t in (0.0, refresh_at, margin_at, expires)] == [
        EntryState.FRESH,
        EntryState.STALE,
        EntryState.MARGIN,
        EntryState.EXPIRED,
    ]


def test_one_single_flight_primitive_serves_the_cache_and_the_verifier(emulator):
    from oculus_lite import JwksVerifier

    client = Client("id", "secret", emulator.url, revocation_interval=None)
    verifier = JwksVerifier(emulator.url, check_revocation=False)
    assert type(client._flights) is SingleFlight and type(verifier._flights) is SingleFlight
    client.stop()
    verifier.close()


def test_drivers_run_the_same_plan_alike():
    """Every effect kind, through both drivers: same results, same order of calls."""
    flight: Flight[int] = Flight()
    calls: List[str] = []

    def inner() -> Any:
        calls.append("inner")
        if calls:  # a generator that returns at once
            return "shielded"
        yield  # pragma: no cover

    def plan() -> Any:
        calls.append("start")
        yield Sleep(0.0)
        yield Spawn(iter_settle(flight))
        joined = yield Join(flight, 5.0)
        called = yield Call(lambda x: x * 2, 21)
        shielded = yield Shield(inner())
        return joined, called, shielded

    def iter_settle(f: Flight[int]) -> Any:
        f.set_result(7)
        if f.done():  # a generator that returns at once
            return None
        yield  # pragma: no cover

    clock = ManualClock()
    assert run(plan(), None, clock.sleep) == (7, 42, "shielded")
    flight = Flight()
    assert asyncio.run(arun(plan(), None, clock.asleep)) == (7, 42, "shielded")
    assert calls == ["start", "inner", "start", "inner"]


def test_an_async_transport_answering_junk_raises_invalid_response(emulator):
    """Drift 1 end to end: today's async path raised AttributeError."""

    class Junk:
        async def arequest(self, request: Request) -> Any:
            return "junk"

        async def aclose(self) -> None:
            pass

    client = Client("agent", "secret", emulator.url, transport=Junk(), revocation_interval=None)
    with pytest.raises(InvalidResponseError):
        asyncio.run(client.aget_token("db:read"))


class _Stuck:
    """A transport that ignores its timeout: it blocks until released."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def request(self, request: Request) -> Response:
        self.entered.set()
        self.release.wait(60)
        return Response(503)

    def close(self) -> None:
        pass


def test_coroutines_waiting_on_a_stuck_fetch_give_up_like_threads():
    """Drift 2: a coroutine joining another caller's fetch waited forever (threads gave up)."""
    stuck = _Stuck()
    client = Client("agent", "secret", "http://127.0.0.1:9", transport=stuck, timeout=0.2, retries=0)
    leader = threading.Thread(target=lambda: pytest.raises(ServerError, client.get_token, "db:read"))
    leader.start()
    assert stuck.entered.wait(10)

    async def waiter() -> None:
        with pytest.raises(NetworkTimeoutError, match="still running"):
            await asyncio.wait_for(client.aget_token("db:read"), 30)  # 30 s: today's hang, bounded

    try:
        asyncio.run(waiter())
        with pytest.raises(NetworkTimeoutError, match="still running"):
            client.get_token("db:read")  # a thread gives up at the same bound
    finally:
        stuck.release.set()
        leader.join(10)
        client.stop()


def test_a_waiter_takes_the_lead_when_the_leader_was_cancelled(emulator):
    """A leader cancelled mid-fetch (its task, or its whole loop shutting down) abandons its
    flight; a caller waiting on it leads a new fetch instead of failing."""
    emulator.add_agent("agent-1", "secret", scopes=["db:*"])
    client = Client("agent-1", "secret", emulator.url, revocation_interval=None)
    leader = client._entry_plan("db:read", None)
    spawn = leader.send(None)
    assert isinstance(spawn, Spawn)
    fetch = spawn.plan
    assert isinstance(fetch.send(None), Request)  # the leader's token request is on the wire
    waiter = client._entry_plan("db:read", None)
    join = waiter.send(None)
    assert isinstance(join, Join) and join.flight is not None
    with pytest.raises(asyncio.CancelledError):
        fetch.throw(asyncio.CancelledError())  # the leader's task is cancelled mid-request
    with pytest.raises(Abandoned):
        join.flight.result(0)
    lead_again = waiter.throw(Abandoned())
    assert isinstance(lead_again, Spawn)  # the waiter leads now
    run(lead_again.plan, client._transport, client._sleep)
    second_join = waiter.send(None)
    assert isinstance(second_join, Join)
    with pytest.raises(StopIteration) as done:
        waiter.send(second_join.flight.result(5))
    assert done.value.value.token == client.get_token("db:read")
    client.stop()


def test_server_errors_are_typed_through_both_drivers(emulator):
    emulator.add_agent("a", "s", scopes=["db:*"])
    emulator.set_faults([{"path": "/oauth/token", "kind": "status", "status": 500}])
    client = Client("a", "s", emulator.url, retries=0, revocation_interval=None)
    with pytest.raises(ServerError):
        client.get_token("db:read")
    with pytest.raises(ServerError):
        asyncio.run(client.aget_token("db:write"))
    client.stop()
