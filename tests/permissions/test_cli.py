"""``python -m oculus_lite permission ...`` in-process, and the demo's permission steps."""

import threading
from typing import Any, List

import pytest

from oculus_lite.cli import main

from .conftest import CANARY_KEY


@pytest.fixture
def env(otp_agent: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("AGENT_OTP_URL", otp_agent.url)
    monkeypatch.setenv("AGENT_OTP_API_KEY", CANARY_KEY)
    return otp_agent


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code = main(["permission"] + list(argv))
    out, err = capsys.readouterr()
    assert CANARY_KEY not in out + err
    return code, out, err


def test_request_status_list_approve_deny(env: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "request",
        "email.send",
        "--resource",
        "email:a@b.c",
        "--scope",
        '{"max_emails": 1}',
        "--context",
        '{"why": "invoice"}',
        "--ttl",
        "60",
    )
    assert code == 0
    assert "status:       pending" in out and "token" not in out
    pid = out.split("id:", 1)[1].split()[0]
    code, out, _ = run(capsys, "list", "--status", "pending")
    assert code == 0 and pid in out and "email.send" in out and "email:a@b.c" in out
    code, out, _ = run(capsys, "approve", pid, "--reason", "fine")
    assert code == 0 and out == "approved {}\n".format(pid)  # the token stays hidden
    code, out, _ = run(capsys, "status", pid)
    assert code == 0 and "status:       approved" in out and "otp_" not in out
    code, out, err = run(capsys, "deny", pid)
    assert code == 1 and "409" in err and "already approved" in err
    code, out, _ = run(capsys, "list", "--status", "pending")
    assert (code, out) == (0, "no permission requests with status pending\n")


def test_request_wait_prints_token_when_approved(env: Any, capsys: pytest.CaptureFixture[str]) -> None:
    results: List[int] = []

    def operator() -> None:
        pid = env.otp.next_pending(timeout=10)
        results.append(main(["permission", "approve", str(pid)]))

    thread = threading.Thread(target=operator)
    thread.start()
    code = main(
        [
            "permission",
            "request",
            "file.read",
            "--wait",
            "--poll-interval",
            "0.02",
            "--timeout",
            "10",
        ]
    )
    thread.join()
    out, err = capsys.readouterr()
    assert code == 0 and results == [0]
    assert "waiting up to 10 s for a human" in err
    token = [line.split()[1] for line in out.splitlines() if line.startswith("token:")]
    assert len(token) == 1 and token[0].startswith("otp_")
    assert CANARY_KEY not in out + err


def test_request_denied_by_human_exits_1(env: Any, capsys: pytest.CaptureFixture[str]) -> None:
    thread = threading.Thread(
        target=lambda: main(["permission", "deny", str(env.otp.next_pending(10)), "--reason", "no way"])
    )
    thread.start()
    code, out, err = run(capsys, "request", "db.drop", "--wait", "--poll-interval", "0.02")
    thread.join()
    assert code == 1 and "status:       denied" in out and "reason:       no way" in out


def test_exit_codes(env: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    assert run(capsys, "request", "x", "--ttl", "5")[0] == 2  # validation before sending
    assert run(capsys, "request", "x", "--scope", "[1]")[0] == 2  # argparse: not an object
    assert run(capsys, "status", "a/b")[0] == 2
    assert run(capsys, "status", "perm_missing")[0] == 1  # 404
    code, _, err = run(capsys, "request", "x", "--wait", "--timeout", "0.05", "--poll-interval", "0.02")
    assert code == 1 and "still pending" in err
    assert run(capsys)[0] == 2
    monkeypatch.setenv("AGENT_OTP_API_KEY", "ak_unknown")
    assert run(capsys, "request", "x")[0] == 3
    monkeypatch.delenv("AGENT_OTP_API_KEY")
    assert run(capsys, "request", "x")[0] == 2  # no api key configured
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("AGENT_OTP_URL", "http://127.0.0.1:{}".format(port))
    assert run(capsys, "list")[0] == 4


def test_operator_commands_use_the_admin_token(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from oculus_lite.emulator import Emulator

    with Emulator(admin_token="adm-S3CRET-tok") as emu:
        monkeypatch.setenv("AGENT_OTP_URL", emu.url)
        monkeypatch.setenv("AGENT_OTP_API_KEY", emu.otp.demo_api_key)
        assert main(["permission", "request", "x"]) == 0
        pid = emu.otp.list_permissions()[0]["id"]
        assert main(["permission", "list"]) == 3
        assert main(["permission", "approve", pid]) == 3
        monkeypatch.setenv("AGENT_OTP_ADMIN_TOKEN", "adm-S3CRET-tok")
        assert main(["permission", "list"]) == 0
        assert main(["permission", "approve", pid]) == 0
        out, err = capsys.readouterr()
        assert "adm-S3CRET-tok" not in out + err and emu.otp.demo_api_key not in out + err
