"""The command line, in-process through main(argv), plus one `python -m` smoke test."""

import os
import subprocess
import sys

import pytest

from oculus_lite.cli import main


@pytest.fixture
def configured(monkeypatch, emulator, agent):
    monkeypatch.setenv("AGENT_CLIENT_ID", agent.client_id)
    monkeypatch.setenv("AGENT_CLIENT_SECRET", agent.client_secret)
    monkeypatch.setenv("ANTI_AI_URL", emulator.url)
    return emulator


def test_token_prints_only_the_token(configured, capsys, canary):
    assert main(["token", "--scope", "db:read"]) == 0
    out, err = capsys.readouterr()
    assert out.count(".") == 2 and out.strip() == out.strip().split()[0]
    assert canary not in out + err


def test_token_exit_codes(configured, monkeypatch, capsys, canary):
    assert main(["token", "--scope", "stripe:customer:read"]) == 3
    assert "403" in capsys.readouterr().err
    monkeypatch.setenv("AGENT_CLIENT_SECRET", "wrong-" + canary)
    assert main(["token", "--scope", "db:read"]) == 3
    out, err = capsys.readouterr()
    assert "401" in err and canary not in out + err
    assert main(["token", "--scope", "db:read\r\nx"]) == 2
    assert main(["token"]) == 2
    monkeypatch.delenv("AGENT_CLIENT_ID")
    assert main(["token", "--scope", "db:read"]) == 2
    assert "AGENT_CLIENT_ID" in capsys.readouterr().err


def test_token_network_failure_exit_code(monkeypatch, capsys):
    from oculus_lite.emulator import Emulator

    with Emulator() as emu:
        gone = emu.url
    monkeypatch.setenv("AGENT_CLIENT_ID", "a")
    monkeypatch.setenv("AGENT_CLIENT_SECRET", "b")
    monkeypatch.setenv("ANTI_AI_URL", gone)
    assert main(["token", "--scope", "db:read"]) == 4


def test_no_command_is_usage(capsys):
    assert main([]) == 2


def test_demo_runs_end_to_end(capsys):
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "32 callers, 1 distinct token(s), 1 token request(s) sent" in out
    assert "AuthenticationError" in out and "ForbiddenError" in out
    # governance: an allowed and a denied call with its reason, a credential used unseen, audit
    assert "allowed: charged cus_123 1200 cents" in out and "reason 'amount_limit_exceeded'" in out
    assert "audit event at the emulator: stripe.charges.create allow outcome=success" in out
    assert "audit event at the emulator: stripe.charges.create deny outcome=denied" in out
    # delegation: the child's allowed and refused calls, an escalation refused with its code
    assert "child allowed: ticket 4711 read" in out and "child refused: crm.write" in out
    assert "escalation refused: CAPABILITY_ESCALATION" in out
    # approval: a URL a person can open, then the one-time token used once
    assert "could approve it in a browser: http://127.0.0.1:" in out and "/_emulator/ui/permissions/" in out
    assert "success=True, uses left 0" in out and "a second use is refused" in out
    for secret in ("demo-secret-not-for-production", "billing-secret", "sk_test_demo_value", "otp_", "eyJ"):
        assert secret not in out


def test_python_dash_m_smoke():
    env = dict(os.environ)
    result = subprocess.run(
        [sys.executable, "-m", "oculus_lite", "--help"], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 0
    for command in ("serve", "token", "decode", "demo"):
        assert command in result.stdout


def test_every_help_ends_with_an_example_that_parses():
    """Each command's --help ends with a real invocation; the invocation parses."""
    import shlex

    from oculus_lite.cli import _build_parser
    from oculus_lite.cli._examples import PROG, walk

    parser = _build_parser()
    paths = []
    for path, each in walk(parser):
        last = each.format_help().rstrip().splitlines()[-1]
        assert last.startswith("Example: " + PROG + " "), path
        args = shlex.split(last[len("Example: " + PROG + " ") :])
        assert parser.parse_args(args).func is not None, path
        paths.append(path)
    assert {"", "serve", "token", "demo", "decode", "verify", "doctor", "permission request"} <= set(paths)


def test_version_prints_the_version(capsys):
    from oculus_lite import __version__

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == "oculus_lite " + __version__
