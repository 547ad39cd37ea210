"""Wiring of the approval service (``_otp.py``, owned by the permissions side) into the server."""

import io
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
