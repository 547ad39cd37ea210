"""The audit emitter over real sockets (official flaw C5 "audit loss", S6 redaction, and the
inventory's section 6). Until the emulator serves ``POST /v1/audit/events/batch``, these run
against ``AuditServer``, a loopback server that answers like it."""

import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
import threading
from typing import Any, Dict

import pytest

from oculus_lite._engine import ManualClock
from oculus_lite.audit import AuditEmitter
from oculus_lite.exceptions import ClientClosedError, ConfigurationError
from oculus_lite.transport import UrllibTransport

from ._audit_server import AuditServer
from .conftest import wait_until

PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def event(emitter, n, **extra):
    built = emitter.build_tool_event("stripe.charges.create", "allow", "allowed", "charge", {"n": n})
    built.update(extra)
    return built


def test_event_schema_official_fields_and_ours(make_emitter, audit_server):
    emitter = make_emitter()
    built = emitter.build_tool_event(
        "stripe.charges.create",
        "deny",
        "amount_limit_exceeded",
        "create_charge",
        {"customer_id": "cus_1", "amount_cents": 9000},
        agent_reasoning="refund the customer",
        llm_model="gpt-4o",
        task_id="task-9",
        delegation_depth=1,
        framework="langchain",
        jti="jti-3",
    )
    assert emitter.emit(built)
    assert emitter.flush(timeout=20)
    (sent,) = audit_server.events
    assert sent["event_type"] == "tool_invocation" and sent["agent_id"] == "agent-7"
    assert (sent["capability"], sent["decision"], sent["reason"]) == (
        "stripe.charges.create",
        "deny",
        "amount_limit_exceeded",
    )
    assert (sent["tool_name"], sent["task_id"], sent["delegation_depth"], sent["framework"]) == (
        "create_charge",
        "task-9",
        1,
        "langchain",
    )
    assert sent["tool_args_summary"] == {"customer_id": "cus_1", "amount_cents": 9000}
    assert sent["intent_context"] == {
        "agent_reasoning": "refund the customer",
        "llm_model": "gpt-4o",
        "tool_input_summary": "customer_id='cus_1', amount_cents=9000",
    }
    assert sent["outcome"] == "denied" and sent["jti"] == "jti-3" and sent["event_id"]
    assert sent["timestamp"].endswith("+00:00") and sent["sdk_version"]
    assert {"duration_ms", "error_type"} <= set(sent)


def test_batches_of_at_most_100_drained_without_a_timer(make_emitter, audit_server):
    """Official flaw C5: one batch per 5 s (20 events/s). With a clock that never moves, every
    event still goes out: the worker drains until empty instead of waiting for a tick."""
    emitter = make_emitter(clock=ManualClock())
    for n in range(1050):
        assert emitter.emit(event(emitter, n))
    emitter.start()
    assert emitter.flush(timeout=30)
    assert len(audit_server.events) == 1050
    assert max(len(batch) for batch in audit_server.batches) == 100
    assert [e["tool_args_summary"]["n"] for e in audit_server.events] == list(range(1050))
    stats = emitter.stats()
    assert (stats.sent, stats.pending, stats.dropped, stats.rejected) == (1050, 0, 0, 0)
    assert len({e["event_id"] for e in audit_server.events}) == 1050


def test_1500_emitted_then_stop_loses_nothing(make_emitter, audit_server):
    """Official flaw C5: start then stop with 1,500 events emitted: 800 lost, stop flushed 100."""
    emitter = make_emitter()
    emitter.start()
    for n in range(1500):
        emitter.emit(event(emitter, n))
    stats = emitter.stop()
    assert (stats.sent, stats.pending, stats.dropped) == (1500, 0, 0)
    assert len(audit_server.events) == 1500
    assert not stats.running


def test_stop_without_start_sends_in_the_calling_thread(make_emitter, audit_server):
    emitter = make_emitter()
    for n in range(250):
        emitter.emit(event(emitter, n))
    assert emitter.stop().sent == 250 and len(audit_server.events) == 250


def test_snapshot_at_emit_and_unserialisable_values_never_poison_a_batch(make_emitter, audit_server):
    """Official flaw C5 (and section 6): argument dicts stored by reference; one object that JSON cannot encode
    made a whole batch of 100 disappear."""
    emitter = make_emitter()
    args: Dict[str, Any] = {"items": [1, 2], "when": object(), "nan": float("nan"), "raw": b"\x00\x01"}
    emitter.emit(emitter.build_tool_event("a.b", "allow", "allowed", "t", args))
    mutable: Dict[str, Any] = {"event_type": "custom", "payload": {"items": [1]}, "thing": {1, 2}}
    emitter.emit(mutable)
    args["items"].append(3)
    mutable["payload"]["items"].append(2)
    for n in range(98):
        emitter.emit(event(emitter, n))
    assert emitter.flush(timeout=20)
    first, second = audit_server.events[:2]
    assert first["tool_args_summary"]["items"] == [1, 2]
    assert first["tool_args_summary"]["when"].startswith("<object object")
    assert first["tool_args_summary"]["nan"] == "nan" and first["tool_args_summary"]["raw"] == "<2 bytes>"
    assert second["payload"] == {"items": [1]} and sorted(second["thing"]) == [1, 2]
    assert second["event_id"] and second["agent_id"] == "agent-7"
    assert len(audit_server.events) == 100


def test_deep_redaction_of_keys_values_known_secrets_and_reasoning(make_emitter, audit_server):
    """Official flaw S6: top-level key-name redaction only, reasoning sent raw."""
    emitter = make_emitter(secrets=["canary-S3CRET-7f3a9c"])
    args = {
        "config": {"api_key": "k-1", "region": "eu", "nested": [{"password": "p"}]},
        "headers": {"Authorization": "Bearer abcdefgh12345678", "cookie": "sid=1"},
        "note": "my key is sk_live_LEAKLEAKLEAK and the canary-S3CRET-7f3a9c",
        "dsn": "postgres://u:pw@h/db",
        "url": "https://user:hunter22@example.com/x",
        "max_tokens": 256,
        "keyword": "refund",
        "tokenizer": "cl100k",
    }
    emitter.emit(
        emitter.build_tool_event(
            "a.b",
            "allow",
            "allowed",
            "t",
            args,
            agent_reasoning="use sk_live_REASONLEAK99 then canary-S3CRET-7f3a9c",
        )
    )
    emitter.emit({"event_type": "custom", "deep": {"x": {"client_secret": "cs"}}, "text": "token=abc123def"})
    emitter.set_service_token("svc-token")
    assert emitter.flush(timeout=20)
    body = json.dumps(audit_server.events)
    for leaked in ("k-1", '"p"', "abcdefgh12345678", "sid=1", "LEAKLEAK", "canary-S3CRET", "hunter22", ":pw@", "REASONLEAK", '"cs"', "abc123def", "svc-token"):  # fmt: skip
        assert leaked not in body, leaked
    summary = audit_server.events[0]["tool_args_summary"]
    assert summary["config"]["region"] == "eu" and summary["max_tokens"] == 256
    assert summary["keyword"] == "refund" and summary["tokenizer"] == "cl100k"


def test_5xx_and_network_errors_are_retried_never_dropped(make_emitter, audit_server):
    audit_server.script.extend([(503, {}), (500, {}), (502, {}), (503, {})])
    emitter = make_emitter()
    emitter.start()
    for n in range(10):
        emitter.emit(event(emitter, n))
    assert emitter.flush(timeout=30)
    assert len(audit_server.events) == 10 and emitter.stats().retries >= 1
    assert audit_server.statuses()[:4] == [503, 500, 502, 503]


def test_server_down_then_up(make_emitter):
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    emitter = make_emitter(base_url="http://127.0.0.1:{}".format(port), max_backoff=0.2)
    emitter.start()
    for n in range(5):
        emitter.emit(event(emitter, n))
    assert wait_until(lambda: emitter.stats().retries >= 2)
    assert emitter.stats().pending == 5 and emitter.stats().last_error.startswith("Network")
    with AuditServer(port=port) as late:
        assert emitter.flush(timeout=30)
        assert len(late.events) == 5


def test_429_honours_retry_after(make_emitter, audit_server):
    clock = ManualClock()
    audit_server.script.append((429, {"Retry-After": "30"}))
    emitter = make_emitter(clock=clock)
    emitter.start()
    emitter.emit(event(emitter, 1))
    assert wait_until(lambda: emitter.stats().retries == 1)
    assert emitter._retry_at - clock.monotonic() == 30.0  # waits exactly what the server asked
    assert audit_server.events == []
    clock.advance(30)
    assert audit_server.wait_for(lambda: len(audit_server.events) == 1)
    assert audit_server.statuses() == [429, 202]


def test_expired_service_token_is_renewed_then_resent(make_emitter, audit_server):
    """Official flaw C5: a 401 from an expired sdk token dropped the batch; the token was never renewed."""
    audit_server.tokens = {"fresh-token"}
    renewals = []

    def renew():
        renewals.append(1)
        return "fresh-token"

    emitter = make_emitter(sdk_service_token="stale-token", renew_token=renew)
    for n in range(3):  # queued before the sender starts, so they go as one batch
        emitter.emit(event(emitter, n))
    emitter.start()
    assert emitter.flush(timeout=20)
    assert len(audit_server.events) == 3 and len(renewals) == 1
    assert [auth for _, auth, _ in audit_server.attempts] == ["Bearer stale-token", "Bearer fresh-token"]
    assert emitter.stats().token_renewals == 1


def test_401_without_a_renewal_keeps_the_events(make_emitter, audit_server):
    audit_server.tokens = {"other"}
    emitter = make_emitter(renew_token=lambda: None, max_backoff=0.2)
    emitter.start()
    emitter.emit(event(emitter, 1))
    assert wait_until(lambda: emitter.stats().retries >= 2)
    assert emitter.stats().pending == 1
    emitter.set_service_token("other")
    assert emitter.flush(timeout=20) and len(audit_server.events) == 1


def test_resent_batch_is_idempotent_by_event_id(make_emitter, audit_server):
    audit_server.record_then_fail.append(503)  # the server stored the batch but the reply was lost
    emitter = make_emitter()
    for n in range(20):  # queued before the sender starts: one batch, stored, its reply lost
        emitter.emit(event(emitter, n))
    emitter.start()
    assert emitter.flush(timeout=20)
    assert audit_server.duplicates == 20 and len(audit_server.events) == 20


def test_refused_events_are_isolated_and_counted(make_emitter, audit_server, caplog):
    audit_server.reject = lambda e: e.get("poison") is True
    emitter = make_emitter()
    for n in range(40):
        emitter.emit(event(emitter, n, poison=n == 17))
    emitter.start()
    assert emitter.flush(timeout=20)
    stats = emitter.stats()
    assert (stats.sent, stats.rejected, stats.pending) == (39, 1, 0)
    assert sorted(e["tool_args_summary"]["n"] for e in audit_server.events) == [
        n for n in range(40) if n != 17
    ]
    assert any("refused an event" in r.getMessage() for r in caplog.records)


def test_full_buffer_refuses_new_events_counts_and_logs_once_per_burst(make_emitter, audit_server, caplog):
    caplog.set_level(logging.WARNING, logger="oculus_lite.audit")
    emitter = make_emitter(max_events=5)
    accepted = [emitter.emit(event(emitter, n)) for n in range(8)]
    assert accepted == [True] * 5 + [False] * 3
    assert emitter.stats().dropped == 3 and emitter.stats().pending == 5
    drops = [r for r in caplog.records if "dropping new events" in r.getMessage()]
    assert len(drops) == 1
    assert emitter.flush(timeout=20)
    assert [e["tool_args_summary"]["n"] for e in audit_server.events] == [0, 1, 2, 3, 4]  # accepted ones kept
    assert any("3 event(s) were dropped" in r.getMessage() for r in caplog.records)
    assert emitter.emit(event(emitter, 9))


def test_byte_bound(make_emitter):
    emitter = make_emitter(max_bytes=4096)
    results = [emitter.emit({"event_type": "big", "text": "x" * 1000}) for _ in range(6)]
    assert results.count(True) == 3 and emitter.stats().dropped == 3
    assert emitter.stats().pending_bytes <= 4096


def test_start_is_idempotent_and_stop_leaves_no_thread(make_emitter):
    before = sum(1 for t in threading.enumerate() if t.name == "oculus-audit")
    emitter = make_emitter()
    emitter.start()
    emitter.start()
    threads = [t for t in threading.enumerate() if t.name == "oculus-audit"]
    assert len(threads) == before + 1 and all(t.daemon for t in threads)
    emitter.stop()
    emitter.stop()
    assert sum(1 for t in threading.enumerate() if t.name == "oculus-audit") == before
    assert emitter.emit(event(emitter, 1)) is False and emitter.stats().dropped == 1
    with pytest.raises(ClientClosedError):
        emitter.start()


def test_stop_is_bounded_and_reports_what_was_not_sent(make_emitter, audit_server, caplog):
    caplog.set_level(logging.WARNING, logger="oculus_lite.audit")
    audit_server.hang.set()
    emitter = make_emitter(request_timeout=0.5, max_backoff=0.1)
    emitter.start()
    for n in range(7):
        emitter.emit(event(emitter, n))
    assert wait_until(lambda: len(audit_server.attempts) >= 1)
    stats = emitter.stop(timeout=1.0)
    assert stats.pending == 7 and stats.sent == 0
    assert any("7 event(s) could not be sent" in r.getMessage() for r in caplog.records)


class FlakyTransport:
    """A real transport that raises a bug (not a NetworkError) on its first request."""

    def __init__(self):
        self.inner = UrllibTransport()
        self.calls = 0

    def request(self, request):
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("a bug in a transport plugin")
        return self.inner.request(request)

    def close(self):
        self.inner.close()


def test_worker_survives_a_bug_and_logs_it(make_emitter, audit_server, caplog):
    transport = FlakyTransport()
    emitter = make_emitter(transport=transport, max_backoff=0.1)
    emitter.start()
    emitter.emit(event(emitter, 1))
    assert emitter.flush(timeout=20)
    assert len(audit_server.events) == 1 and emitter.stats().running
    assert any(r.levelno == logging.ERROR and "unexpected error" in r.getMessage() for r in caplog.records)
    transport.close()


def run_script(code, *args):
    env = dict(os.environ, PYTHONPATH=PACKAGE_ROOT)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_interpreter_exit_flushes_everything(audit_server):
    """Official flaw C5: no flush at exit; the buffer was lost without stop()."""
    code = """
        import sys
        from oculus_lite.audit import AuditEmitter
        started = AuditEmitter(sys.argv[1], "svc-token", "agent-x")
        started.start()
        idle = AuditEmitter(sys.argv[1], "svc-token", "agent-y")
        for n in range(300):
            started.emit({"event_type": "t", "n": n})
            idle.emit({"event_type": "t", "n": n})
        print("exiting")
    """
    out = run_script(code, audit_server.url)
    assert out.returncode == 0, out.stderr
    assert len(audit_server.events) == 600
    assert {e["agent_id"] for e in audit_server.events} == {"agent-x", "agent-y"}
    assert "Traceback" not in out.stderr, out.stderr


def test_interpreter_exit_sends_for_an_emitter_never_started(audit_server):
    """The exit hook is registered when an emitter is made, not when one is started."""
    code = """
        import sys
        from oculus_lite.audit import AuditEmitter
        idle = AuditEmitter(sys.argv[1], "svc-token", "agent-z")
        for n in range(5):
            idle.emit({"event_type": "t", "n": n})
    """
    out = run_script(code, audit_server.url)
    assert out.returncode == 0, out.stderr
    assert [(e["agent_id"], e["n"]) for e in audit_server.events] == [("agent-z", n) for n in range(5)]


def test_worker_never_keeps_the_interpreter_alive_and_exit_reports_losses(audit_server):
    audit_server.hang.set()
    code = """
        import logging, sys
        logging.basicConfig(level=logging.WARNING)
        from oculus_lite.audit import AuditEmitter
        emitter = AuditEmitter(sys.argv[1], "svc-token", "agent-x", stop_timeout=0.5, request_timeout=0.3)
        emitter.start()
        for n in range(4):
            emitter.emit({"event_type": "t", "n": n})
    """
    out = run_script(code, audit_server.url)
    assert out.returncode == 0, out.stderr
    assert "4 event(s) could not be sent" in out.stderr


def test_constructor_validation():
    for kwargs in (
        {"batch_size": 101},
        {"batch_size": 0},
        {"max_events": 0},
        {"max_bytes": 10},
        {"stop_timeout": 0},
    ):
        with pytest.raises(ConfigurationError):
            AuditEmitter("http://127.0.0.1:1", "t", "a", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        AuditEmitter("ftp://x", "t", "a")
    emitter = AuditEmitter("http://127.0.0.1:1", "svc-SECRET-TOKEN", "a")
    assert "svc-SECRET-TOKEN" not in repr(emitter) and "svc-SECRET-TOKEN" not in repr(emitter.stats())
    emitter.stop(timeout=0)


def test_stop_and_flush_called_back_from_the_worker_do_not_deadlock(make_emitter, audit_server):
    """A renew_token hook that stops its client (and so the emitter) runs on the worker thread."""
    audit_server.tokens = {"never"}
    calls = []

    def renew():
        calls.append((emitter.flush(timeout=1), emitter.stop(timeout=1).running))
        return None

    emitter = make_emitter(renew_token=renew)
    emitter.start()
    emitter.emit(event(emitter, 1))
    assert wait_until(lambda: not emitter.stats().running)
    # It could not wait on itself; the worker then kept retrying (renewing) until the stop deadline.
    assert calls and set(calls) == {(False, True)}
    assert emitter.stats().pending == 1


def test_discarding_an_emitter_with_unsent_events_is_reported(audit_server, caplog):
    import gc

    emitter = AuditEmitter(audit_server.url, "svc-token", "agent-7")
    emitter.emit({"event_type": "t"})
    del emitter
    gc.collect()
    assert any("discarded with 1 unsent event" in r.getMessage() for r in caplog.records)
