"""The audit emitter against the emulator's ``POST /v1/audit/events/batch`` (read back through
``Emulator.audit_events()``), for the tests of ``test_audit.py`` the emulator can play: schema and
redaction as received, batches of 100, the 1,500-then-stop figure, retries through fault rules,
and a 401 answered by renewing the service token. Skipped where the emulator has no audit route."""

import json
import urllib.parse
import urllib.request
from typing import List

import pytest

from oculus_lite.audit import AuditEmitter
from oculus_lite.emulator import Emulator

pytestmark = pytest.mark.skipif(
    not hasattr(Emulator, "audit_events"),
    reason="this emulator has no audit route yet (the emu-gov branch adds it)",
)


def service_token(emulator, client_id="gov-audit"):
    emulator.add_agent(client_id, "pw-audit-1", scopes=["stripe.customers.read"])
    form = urllib.parse.urlencode(
        {"grant_type": "client_credentials", "client_id": client_id, "client_secret": "pw-audit-1"}
    ).encode()
    with urllib.request.urlopen(emulator.url + "/oauth/token", data=form, timeout=10) as reply:
        return json.loads(reply.read())["sdk_service_token"]


@pytest.fixture
def emitters():
    made: List[AuditEmitter] = []
    yield made
    for emitter in made:
        emitter.stop(timeout=5)


def test_events_arrive_whole_redacted_and_in_batches(emulator, emitters):
    token = service_token(emulator)
    emitter = AuditEmitter(emulator.url, token, "gov-audit", secrets=["pw-audit-1"])
    emitters.append(emitter)
    emitter.start()
    for n in range(250):
        emitter.emit(
            emitter.build_tool_event(
                "stripe.customers.read",
                "allow",
                "allowed",
                "get_customer",
                {"n": n, "headers": {"Authorization": "Bearer " + token}, "note": "pw-audit-1"},
                agent_reasoning="use sk_live_REASONING123",
            )
        )
    assert emitter.flush(timeout=30)
    events = emulator.audit_events()
    assert [e["tool_args_summary"]["n"] for e in events] == list(range(250))
    assert len({e["event_id"] for e in events}) == 250
    text = json.dumps(events)
    assert token not in text and "pw-audit-1" not in text and "REASONING123" not in text
    # Batches hold at most 100 events, so 250 need three requests or more
    # (more when the flush interval fires between emits on a slow machine).
    requests = emulator.stats()["audit_requests"]
    assert 3 <= requests <= 250


def test_1500_then_stop_loses_nothing(emulator):
    emitter = AuditEmitter(emulator.url, service_token(emulator), "gov-audit")
    emitter.start()
    for n in range(1500):
        emitter.emit({"event_type": "tool_invocation", "n": n})
    assert emitter.stop().sent == 1500
    assert len(emulator.audit_events()) == 1500


def test_faults_are_retried_and_a_401_renews_the_token(emulator, emitters):
    token = service_token(emulator)
    emulator.set_faults([{"path": "/v1/audit/events/batch", "status": 503, "next": 3}])
    renewed = []

    def renew():
        renewed.append(1)
        return token

    emitter = AuditEmitter(
        emulator.url, "expired-service-token", "gov-audit", renew_token=renew, max_backoff=0.2
    )
    emitters.append(emitter)
    emitter.start()
    for n in range(120):
        emitter.emit({"event_type": "tool_invocation", "n": n})
    assert emitter.flush(timeout=30)
    assert sorted(e["n"] for e in emulator.audit_events()) == list(range(120))
    assert renewed == [1] and emitter.stats().retries >= 1
