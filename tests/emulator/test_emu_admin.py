"""Admin API, admin token, reset, keep-alive, logging, lifecycle, `serve`, the pytest plugin."""

import http.client
import io
import json
import os
import subprocess
import sys
import threading

import pytest

from oculus_lite.emulator import Emulator, run_server

ADMIN = "adm-T0KEN-canary"


def test_admin_token_is_enforced_only_when_set(connect):
    with Emulator(admin_token=ADMIN) as emu:
        h = connect(emu.url)
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": ADMIN}):
            status, _, raw = h.request("GET", "/_emulator/stats", headers=headers)
            assert status == 401 and ADMIN not in raw.decode()
        status, _, _ = h.request("POST", "/_emulator/otp/anything", headers={})
        assert status == 401
        status, _, raw = h.request("GET", "/_emulator/stats", headers={"Authorization": "Bearer " + ADMIN})
        assert status == 200 and json.loads(raw)["admin_requests"] == 5
        # the protocol endpoints need no admin token
        assert h.request("GET", "/oauth/revoked-tokens")[0] == 200


def test_reset_returns_to_start_state(emulator, wire):
    secret = emulator.demo_client_secret
    emulator.add_agent("extra", "pw", scopes=["db:*"])
    emulator.revoke("j1")
    emulator.set_faults([{"path": "/oauth/revoked-tokens", "kind": "status", "status": 500, "next": 1}])
    wire.token("extra", "pw")
    assert wire.json("POST", "/_emulator/reset") == (200, {"ok": True})
    stats = emulator.stats()
    assert stats["token_requests"] == 0 and stats["faults_fired"] == 0
    assert stats["token_requests_by_grant"] == {}
    assert wire.token("extra", "pw")[0] == 401
    assert wire.json("GET", "/oauth/revoked-tokens") == (200, {"revoked_jtis": []})  # faults cleared too
    assert wire.token(emulator.demo_client_id, secret)[0] == 200
    assert [a["client_id"] for a in wire.json("GET", "/_emulator/agents")[1]["agents"]] == [
        emulator.demo_client_id
    ]


def test_keep_alive_two_requests_on_one_connection(emulator):
    conn = http.client.HTTPConnection("127.0.0.1", emulator.port, timeout=10)
    try:
        conn.request("GET", "/oauth/revoked-tokens")
        resp = conn.getresponse()
        resp.read()
        sock = conn.sock
        assert resp.version == 11 and resp.getheader("Connection") is None
        conn.request(
            "POST",
            "/oauth/token",
            body=b"grant_type=client_credentials",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 401 and conn.sock is sock
    finally:
        conn.close()
    assert emulator.stats()["requests"] == 2


def test_chunked_request_body_is_read(emulator):
    conn = http.client.HTTPConnection("127.0.0.1", emulator.port, timeout=10)
    form = "grant_type=client_credentials&client_id={}&client_secret={}&scope=db:read".format(
        emulator.demo_client_id, emulator.demo_client_secret
    ).encode()
    try:
        conn.request(
            "POST",
            "/oauth/token",
            body=iter([form[:10], form[10:]]),
            encode_chunked=True,
            headers={"Content-Type": "application/x-www-form-urlencoded", "Transfer-Encoding": "chunked"},
        )
        resp = conn.getresponse()
        assert resp.status == 200 and json.loads(resp.read())["token_type"] == "Bearer"
    finally:
        conn.close()


def test_unknown_routes_and_methods(emulator, wire):
    assert wire.json("GET", "/nope")[1]["error"]["code"] == "not_found"
    status, headers, _ = wire.request("GET", "/oauth/token")
    assert (status, headers["Allow"]) == (405, "POST")
    assert wire.json("PUT", "/_emulator/stats")[0] == 405
    assert wire.json("POST", "/_emulator/agents/ghost/rotate")[0] == 404
    assert (
        wire.json("POST", "/_emulator/agents/%s/status" % emulator.demo_client_id, {"status": "zzz"})[0]
        == 400
    )
    wire.conn.request(
        "POST", "/_emulator/revoke", body=b"{not json", headers={"Content-Type": "application/json"}
    )
    resp = wire.conn.getresponse()
    assert (resp.status, json.loads(resp.read())["error"]["code"]) == (400, "invalid_json")


def test_log_has_one_line_per_request_and_no_secret():
    log = io.StringIO()
    with Emulator(log=log) as emu:
        conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=10)
        conn.request(
            "POST",
            "/oauth/token?client_secret=leak",
            body="grant_type=client_credentials&client_id=x&client_secret=" + emu.demo_client_secret,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        conn.getresponse().read()
        conn.request("GET", "/oauth/revoked-tokens")
        conn.getresponse().read()
        conn.close()
        secret = emu.demo_client_secret
    lines = log.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("POST /oauth/token 401 ") and lines[1].startswith(
        "GET /oauth/revoked-tokens 200 "
    )
    assert secret not in log.getvalue() and "leak" not in log.getvalue()


def test_quiet_by_default(capfd):
    with Emulator() as emu:
        conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=10)
        conn.request("GET", "/nope")
        conn.getresponse().read()
        conn.close()
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")


def test_refuses_non_loopback_host():
    with pytest.raises(ValueError, match="allow_remote"):
        Emulator(host="0.0.0.0")


def test_stop_is_idempotent_and_cuts_keep_alive_connections():
    emu = Emulator().start()
    assert emu.start() is emu
    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=10)
    conn.request("GET", "/oauth/revoked-tokens")
    conn.getresponse().read()
    threads_before = threading.active_count()
    emu.stop()
    emu.stop()
    with pytest.raises((http.client.HTTPException, ConnectionError, OSError)):
        conn.request("GET", "/oauth/revoked-tokens")
        conn.getresponse().read()
    conn.close()
    assert threading.active_count() < threads_before
    assert repr(emu).startswith("Emulator(")


def test_run_server_prints_env_lines_then_logs():
    out = io.StringIO()
    ready, stop = threading.Event(), threading.Event()
    result = []
    t = threading.Thread(target=lambda: result.append(run_server(port=0, out=out, ready=ready, stop=stop)))
    t.start()
    try:
        assert ready.wait(30)
        first = out.getvalue().splitlines()
        assert first[0].startswith("ANTI_AI_URL=http://127.0.0.1:")
        assert first[1].startswith("AGENT_CLIENT_ID=") and first[2].startswith("AGENT_CLIENT_SECRET=")
        url = first[0].split("=", 1)[1]
        conn = http.client.HTTPConnection(url[len("http://") :], timeout=10)
        conn.request("GET", "/.well-known/jwks.json")
        conn.getresponse().read()
        conn.close()
    finally:
        stop.set()
        t.join(30)
    assert result == [0]
    assert out.getvalue().splitlines()[-1].startswith("GET /.well-known/jwks.json 200 ")


def test_pytest_plugin_fixture_and_light_import(tmp_path):
    probe = (
        "import sys, oculus_lite.pytest_plugin, oculus_lite.emulator; "
        "print('http.server' in sys.modules, 'oculus_lite.emulator._emulator' in sys.modules, "
        "'pytest' in sys.modules)"
    )
    env = dict(os.environ, PYTHONPATH=os.getcwd(), PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.split() == ["False", "False", "False"]
    (tmp_path / "test_user.py").write_text(
        "def test_it(oculus_emulator):\n"
        "    import urllib.request\n"
        "    with urllib.request.urlopen(oculus_emulator.url + '/oauth/revoked-tokens') as r:\n"
        "        assert r.status == 200\n"
    )
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "oculus_lite.pytest_plugin",
            "-p",
            "no:cacheprovider",
            str(tmp_path / "test_user.py"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(tmp_path),
    )
    assert res.returncode == 0, res.stdout + res.stderr
