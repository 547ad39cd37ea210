"""The audit trail of a real Client as the emulator receives it: the schema, deep redaction, nothing
lost at stop(), service-token renewal after a 401 (official flaws C5 "audit loss" and S6 "secret
hygiene")."""

import json
import re
import threading
from datetime import datetime, timezone
from typing import Any, List

import pytest

from oculus_lite import Client, ManualClock
from oculus_lite.emulator import Emulator
from oculus_lite.exceptions import PolicyViolationError
from oculus_lite.governance._current import intent

from .conftest import (
    AGENT,
    NOON_WEDNESDAY,
    SECRET,
    STRIPE_KEY,
    MakeClient,
    configure_agent,
    emitter_of,
    runtime,
    service_token_of,
    worker_barrier,
)

READ = "stripe.customers.read"
OFFICIAL_FIELDS = {
    "event_type",
    "agent_id",
    "timestamp",
    "capability",
    "decision",
    "reason",
    "tool_name",
    "tool_args_summary",
    "task_id",
    "delegation_depth",
    "framework",
    "sdk_version",
    "intent_context",
}
OUR_FIELDS = {"event_id", "outcome", "duration_ms", "error_type", "jti"}


def test_every_event_carries_the_official_fields_and_ours(emu: Emulator, make_client: MakeClient) -> None:
    client = make_client(task_id="client-task")

    @client.tool(READ)
    def read(customer_id: str) -> str:
        return customer_id

    @client.tool(READ)
    def broken() -> None:
        raise LookupError("no such customer")

    @client.tool("stripe.refunds.create")
    def refund() -> None:
        raise AssertionError("never runs")

    read("cus_1")
    with pytest.raises(LookupError):
        broken()
    with pytest.raises(PolicyViolationError):
        refund()
    jti = client._governance_state().jti
    client.stop()
    received = emu.audit_events()
    assert len(received) == 3
    for event in received:
        assert set(event) == OFFICIAL_FIELDS | OUR_FIELDS
        assert set(event["intent_context"]) == {"agent_reasoning", "llm_model", "tool_input_summary"}
        assert event["event_type"] == "tool_invocation"
        assert event["agent_id"] == AGENT  # the token's sub
        assert event["task_id"] == "client-task"  # the token's agent.task_id (sent as the client's)
        assert event["jti"] == jti and event["delegation_depth"] == 0 and event["framework"] == "unknown"
        assert isinstance(event["sdk_version"], str) and event["sdk_version"]
        assert datetime.fromisoformat(event["timestamp"]) == datetime.fromtimestamp(
            NOON_WEDNESDAY, timezone.utc
        )
    assert len({e["event_id"] for e in received}) == 3
    allowed, failed, denied = received
    assert (allowed["decision"], allowed["outcome"], allowed["error_type"]) == ("allow", "success", None)
    assert allowed["tool_args_summary"] == {"customer_id": "cus_1"}
    assert allowed["intent_context"]["tool_input_summary"] == "customer_id='cus_1'"
    assert (failed["decision"], failed["outcome"], failed["error_type"]) == ("allow", "error", "LookupError")
    assert "no such customer" not in json.dumps(failed)
    assert (denied["decision"], denied["outcome"], denied["reason"]) == (
        "deny",
        "denied",
        "capability_not_in_scope",
    )
    assert isinstance(allowed["duration_ms"], float) and isinstance(failed["duration_ms"], float)
    assert denied["duration_ms"] is None  # denied before the call: nothing ran


def test_deep_redaction_nothing_secret_reaches_the_emulator(emu: Emulator, client: Client) -> None:
    """Official flaw S6: redaction was top-level and key-name based (nested keys, Authorization,
    DSNs and secret values under harmless keys went out), and the agent's reasoning was sent raw."""
    access_token = client.get_token(READ)

    @client.tool(READ)
    def call_api(config: Any, note: str, headers: Any, dsn: str, max_tokens: int) -> str:
        return "ok"

    with intent(agent_reasoning="use key sk_live_REASONINGLEAK123456 for the refund", llm_model="gpt-x"):
        call_api(
            {
                "nested": {"api_key": "nested-api-key-value", "region": "eu"},
                "list": [{"password": "pw-in-list"}],
            },
            "the client secret is {} and the stripe key {}".format(SECRET, STRIPE_KEY),
            {"Authorization": "Bearer " + access_token, "Accept": "application/json"},
            "postgres://user:dbpassword123@db.internal/prod",
            256,
        )
    service_token = service_token_of(client)
    client.stop()
    (event,) = emu.audit_events()
    text = json.dumps(event)
    for secret in (
        "sk_live_REASONINGLEAK123456",
        "nested-api-key-value",
        "pw-in-list",
        SECRET,
        STRIPE_KEY,
        access_token,
        "dbpassword123",
        service_token,
    ):
        assert secret not in text, secret
    args = event["tool_args_summary"]
    assert args["config"]["nested"]["region"] == "eu" and args["max_tokens"] == 256  # not over-redacted
    assert args["headers"]["Accept"] == "application/json"
    assert event["intent_context"]["llm_model"] == "gpt-x"
    assert "for the refund" in event["intent_context"]["agent_reasoning"]


def test_arguments_are_recorded_as_they_were_passed(emu: Emulator, client: Client) -> None:
    """Official SDK (section 6): argument dicts were stored by reference, so a later mutation changed
    the queued record; one object JSON cannot encode dropped a whole batch."""

    class Opaque:
        def __repr__(self) -> str:
            return "<Opaque>"

    @client.tool(READ)
    def mutate(payload: Any, thing: Any) -> None:
        payload["added"] = True

    payload = {"k": "v"}
    mutate(payload, Opaque())
    client.tool(READ)(lambda: None)()
    client.stop()
    first, second = emu.audit_events()
    assert first["tool_args_summary"]["payload"] == {"k": "v"}
    assert first["tool_args_summary"]["thing"] == "<Opaque>"
    assert second["tool_name"] == "<lambda>"


def test_1500_events_then_stop_at_once_loses_nothing(emu: Emulator, client: Client) -> None:
    """Official flaw C5: one batch per 5 s and a 1,000-event deque: 1,500 emitted then stop() at
    once lost 800."""
    read = client.tool(READ)(lambda i: i)
    for i in range(1500):
        read(i)
    stats = emitter_of(client).stats()
    client.stop()
    assert emu.stats()["audit_events"] == 1500
    assert emu.stats()["audit_duplicates"] == 0
    final = emitter_of(client).stats()
    assert (final.emitted, final.sent, final.dropped, final.pending) == (1500, 1500, 0, 0)
    assert stats.dropped == 0
    assert sorted(e["tool_args_summary"]["i"] for e in emu.audit_events()) == list(range(1500))
    assert emu.stats()["audit_requests"] >= 15  # batches of at most 100


def test_an_expired_service_token_is_renewed_and_the_batch_resent(
    emu: Emulator, make_client: MakeClient, clock: ManualClock
) -> None:
    """Official flaw C5: a 401 from an expired sdk token dropped the batch, and the emitter's token
    was never renewed."""
    configure_agent(emu, sdk_token_ttl=60)
    client = make_client(sync_interval=3600.0)
    read = client.tool(READ)(lambda: "ok")
    read()
    emitter = emitter_of(client)
    assert emitter.flush(30)
    clock.advance(61.0)  # the service token expired; the 600 s access token did not
    read()
    assert emitter.flush(30)
    client.stop()
    assert emu.stats()["audit_events"] == 2
    assert emitter.stats().token_renewals == 1
    assert emu.stats()["token_requests"] == 2


def test_the_map_sync_renews_an_expired_service_token_once(
    emu: Emulator, make_client: MakeClient, clock: ManualClock
) -> None:
    configure_agent(emu, sdk_token_ttl=60)
    client = make_client(sync_interval=60.0)
    client.startup()
    clock.advance(61.0)
    worker_barrier(client)
    assert runtime(client).failed == {}
    client.stop()
    stats = emu.stats()
    assert stats["token_requests"] == 2  # the 401 renewed the agent token once
    assert stats["capability_map_requests"] == 3  # startup, the 401, the retry (a 304)
    assert stats["capability_map_not_modified"] == 1


def test_the_audit_worker_and_the_sync_share_one_renewal(
    emu: Emulator, make_client: MakeClient, clock: ManualClock
) -> None:
    configure_agent(emu, sdk_token_ttl=60)
    client = make_client(sync_interval=60.0)
    read = client.tool(READ)(lambda: "ok")
    read()
    assert emitter_of(client).flush(30)
    clock.advance(61.0)  # the sync and the next audit batch both meet a 401
    read()
    worker_barrier(client)
    assert emitter_of(client).flush(30)
    client.stop()
    assert emu.stats()["audit_events"] == 2
    assert emu.stats()["token_requests"] == 2


def test_events_survive_an_audit_outage(emu: Emulator, client: Client) -> None:
    emu.set_faults([{"path": "/v1/audit/events/batch", "status": 503, "next": 3}])
    read = client.tool(READ)(lambda i: i)
    for i in range(250):
        read(i)
    client.stop()
    assert emu.stats()["audit_events"] == 250
    assert emitter_of(client).stats().retries >= 1


def test_concurrent_callers_lose_no_event(emu: Emulator, client: Client) -> None:
    read = client.tool(READ)(lambda i: i)
    barrier = threading.Barrier(8)
    seen: List[int] = []

    def worker(base: int) -> None:
        barrier.wait()
        for i in range(100):
            seen.append(read(base + i))

    threads = [threading.Thread(target=worker, args=(n * 100,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    client.stop()
    assert sorted(e["tool_args_summary"]["i"] for e in emu.audit_events()) == sorted(seen) == list(range(800))


def test_no_event_id_repeats(emu: Emulator, client: Client) -> None:
    read = client.tool(READ)(lambda: None)
    for _ in range(300):
        read()
    client.stop()
    ids = [e["event_id"] for e in emu.audit_events()]
    assert len(ids) == len(set(ids)) == 300
    assert all(re.fullmatch(r"[0-9a-f]+-[0-9a-f]+", i) for i in ids)
