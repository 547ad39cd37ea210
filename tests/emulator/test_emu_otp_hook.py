"""Wiring of the approval service (``_otp.py``, owned by the permissions side) into the server."""

import io
import json
import threading

import pytest

from oculus_lite.emulator import Emulator, run_server


def test_internal_error_is_500_and_reported(emulator, wire, monkeypatch):
    log = io.StringIO()
    monkeypatch.setattr(emulator, "_logstream", log)

    def boom(req):
        raise RuntimeError("kaput")

    monkeypatch.setattr(emulator, "route", boom)
    status, body = wire.json("GET", "/oauth/revoked-tokens")
    assert (status, body["error"]["code"]) == (500, "emulator_error")
    assert "RuntimeError: kaput" in log.getvalue()


def test_otp_routes_are_delegated_faulted_and_guarded(connect):
    pytest.importorskip("oculus_lite.emulator._otp")
    with Emulator(admin_token="adm") as emu:
        assert emu.otp is not None
        h = connect(emu.url)
        status, _, _ = h.request("GET", "/api/v1/permissions/nope")
        assert status == 401  # no api key: the approval service answers, not a 404 from us
        status, _, _ = h.request(
            "GET", "/api/v1/permissions/nope", headers={"Authorization": "Bearer " + emu.otp.demo_api_key}
        )
        assert status == 404
        emu.set_faults([{"path": "/api/v1/*", "kind": "status", "status": 429, "retry_after": 1, "next": 1}])
        status, headers, _ = h.request("GET", "/api/v1/permissions/nope")
        assert (status, headers["Retry-After"]) == (429, "1")
        assert h.request("GET", "/_emulator/otp/anything")[0] == 401
        assert emu.stats()["faults_fired"] == 1


def test_serve_prints_otp_lines_when_the_service_exists():
    pytest.importorskip("oculus_lite.emulator._otp")
    out = io.StringIO()
    ready, stop = threading.Event(), threading.Event()
    t = threading.Thread(target=run_server, kwargs=dict(port=0, out=out, ready=ready, stop=stop))
    t.start()
    try:
        assert ready.wait(30)
    finally:
        stop.set()
        t.join(30)
    lines = out.getvalue().splitlines()
    assert lines[3].startswith("AGENT_OTP_URL=http://127.0.0.1:") and lines[4].startswith(
        "AGENT_OTP_API_KEY=ak_"
    )


def test_serve_prints_the_dashboard_and_the_approver_token():
    pytest.importorskip("oculus_lite.emulator._otp")

    def lines_of(**kw):
        out = io.StringIO()
        ready, stop = threading.Event(), threading.Event()
        t = threading.Thread(target=run_server, kwargs=dict(port=0, out=out, ready=ready, stop=stop, **kw))
        t.start()
        try:
            assert ready.wait(30)
        finally:
            stop.set()
            t.join(30)
        return out.getvalue().splitlines()

    lines = lines_of()
    url = lines[0][len("ANTI_AI_URL=") :]
    assert lines[5] == "EMULATOR_DASHBOARD_URL=" + url + "/_emulator/ui"
    assert lines[6].startswith("EMULATOR_APPROVER_TOKEN=apv_") and len(lines[6]) > 40
    chosen = lines_of(admin_token="adm-S3CRET")  # the user chose it: not printed back
    assert chosen[5].startswith("EMULATOR_DASHBOARD_URL=http://127.0.0.1:")
    assert not any("adm-S3CRET" in line or "APPROVER_TOKEN" in line for line in chosen)


def _request(h, key, body, idem=None):
    headers = {"Authorization": "Bearer " + key}
    if idem is not None:
        headers["Idempotency-Key"] = idem
    status, headers, raw = h.request("POST", "/api/v1/permissions/request", body, headers=headers)
    return status, headers, json.loads(raw)


def test_idempotency_key_returns_the_first_answer(emulator, wire):
    key = emulator.otp.demo_api_key
    emulator.otp.add_agent("ak_other", "other")
    body = {"action": "email.send", "scope": {"max_emails": 1}, "ttl": 60}
    first = _request(wire, key, body, "retry-1")
    assert first[0] == 202 and first[2]["data"]["status"] == "pending"
    again = _request(wire, key, body, "retry-1")
    assert (again[0], again[2]) == (first[0], first[2]) and again[1]["Idempotent-Replayed"] == "true"
    assert [p["id"] for p in emulator.otp.list_permissions()] == [first[2]["data"]["id"]]
    # another key, another agent with the same key, or no key: new requests
    assert _request(wire, key, body, "retry-2")[2]["data"]["id"] != first[2]["data"]["id"]
    assert _request(wire, "ak_other", body, "retry-1")[2]["data"]["id"] != first[2]["data"]["id"]
    assert _request(wire, key, body)[2]["data"]["id"] != first[2]["data"]["id"]
    assert emulator.otp.stats()["permission_requests"] == 4
    assert emulator.otp.stats()["idempotent_replays"] == 1
    # the same key with a different request is an error, not a silent replay
    status, _, err = _request(wire, key, dict(body, action="email.delete"), "retry-1")
    assert (status, err["error"]["code"]) == (422, "IDEMPOTENCY_KEY_REUSED")
    # once the first request's ttl is over, the key is free again
    emulator.otp.advance_clock(61)
    later = _request(wire, key, body, "retry-1")
    assert later[0] == 202 and later[2]["data"]["id"] != first[2]["data"]["id"]
    assert emulator.otp.stats()["permission_requests"] == 5


def test_idempotent_replay_of_an_auto_approval_and_bad_keys(emulator, wire):
    key = emulator.otp.demo_api_key
    emulator.otp.add_policy(name="reads", action="auto_approve", conditions={"action": {"equals": "db.read"}})
    first = _request(wire, key, {"action": "db.read"}, "k")
    assert first[0] == 201 and first[2]["data"]["token"].startswith("otp_")
    assert _request(wire, key, {"action": "db.read"}, "k")[2] == first[2]
    assert len(emulator.otp.list_permissions()) == 1
    for bad in ("", "has space", "x" * 256):
        status, _, err = _request(wire, key, {"action": "db.read"}, bad)
        assert (status, err["error"]["code"]) == (400, "VALIDATION_ERROR")
    invalid = _request(wire, key, {"action": ""}, "k2")  # a refused request is not remembered
    assert invalid[0] == 400 and _request(wire, key, {"action": "db.read"}, "k2")[0] == 201


def test_concurrent_retries_with_one_key_create_one_request(emulator):
    import urllib.request

    key = emulator.otp.demo_api_key
    emulator.otp.add_agent(key, "demo", rate_limit=1000)
    barrier = threading.Barrier(8)
    ids = []

    def post():
        req = urllib.request.Request(
            emulator.url + "/api/v1/permissions/request",
            data=json.dumps({"action": "x"}).encode(),
            headers={
                "Authorization": "Bearer " + key,
                "Idempotency-Key": "same",
                "Content-Type": "application/json",
            },
        )
        barrier.wait(10)
        with urllib.request.urlopen(req, timeout=10) as resp:
            ids.append(json.loads(resp.read())["data"]["id"])

    threads = [threading.Thread(target=post) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(ids) == 8 and len(set(ids)) == 1
    assert emulator.otp.stats()["permission_requests"] == 1


def test_the_approval_service_reads_time_from_its_clock():
    from oculus_lite._engine import ManualClock
    from oculus_lite.emulator._otp import OtpService

    clock = ManualClock(start=1_700_000_000.0)
    otp = OtpService(clock=clock)
    assert otp.now() == 1_700_000_000.0
    answer = otp.handle(
        "POST",
        "/api/v1/permissions/request",
        {},
        {"authorization": "Bearer " + otp.demo_api_key},
        json.dumps({"action": "x", "ttl": 30}).encode(),
    )
    assert answer is not None and answer[0] == 202
    pid = json.loads(answer[2])["data"]["id"]
    view = otp.view(pid)
    assert view is not None and (view.status, view.remaining) == ("pending", 30)
    clock.advance(30)
    later = otp.view(pid)
    assert later is not None and later.status == "expired"
