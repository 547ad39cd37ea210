"""The ``verify`` and ``decode`` subcommands: output, exit codes, and the token never printed."""

import argparse
import io
import json
from typing import List, Tuple

import pytest

from oculus_lite.cli import _verify as _cli_verify
from oculus_lite.emulator import Emulator
from oculus_lite.jwt import decode


def run(argv: List[str], capsys: pytest.CaptureFixture[str]) -> Tuple[int, str, str]:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    _cli_verify.register(sub)
    _cli_verify.register_decode(sub)
    args = parser.parse_args(argv)
    code = args.func(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_verify_prints_claims(
    emulator: Emulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    token = emulator.issue_token(scope="db:read", audience="svc")
    monkeypatch.setenv("ANTI_AI_URL", emulator.url)
    code, out, err = run(["verify", token, "--audience", "svc", "--issuer", emulator.url], capsys)
    assert code == 0 and err == ""
    assert json.loads(out)["scope"] == "db:read"
    for part in token.split("."):
        assert part not in out


def test_verify_base_url_precedence(
    emulator: Emulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    token = emulator.issue_token()
    monkeypatch.setenv("OCULUS_BASE_URL", emulator.url)
    assert run(["verify", token], capsys)[0] == 0
    monkeypatch.setenv("ANTI_AI_URL", "http://127.0.0.1:1")  # wins over OCULUS_BASE_URL
    assert run(["verify", token], capsys)[0] == 4
    assert run(["verify", token, "--base-url", emulator.url], capsys)[0] == 0  # argument wins


def test_verify_invalid_token_exit_5(emulator: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    token = emulator.issue_token(ttl=-100)
    code, out, err = run(["verify", token, "--base-url", emulator.url], capsys)
    assert code == 5 and out == "" and err.startswith("invalid token: token expired")
    emulator.revoke("jti-r")
    revoked = emulator.issue_token(claims={"jti": "jti-r"})
    code, _, err = run(["verify", revoked, "--base-url", emulator.url], capsys)
    assert code == 5 and "revocation list" in err
    assert run(["verify", revoked, "--base-url", emulator.url, "--no-revocation"], capsys)[0] == 0
    code, _, err = run(["verify", "not-a-token", "--base-url", emulator.url], capsys)
    assert code == 5 and "segment" in err
    for part in token.split("."):
        assert part not in err


def test_verify_network_failure_exit_4(emulator: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    token = emulator.issue_token()
    code, out, err = run(["verify", token, "--base-url", "http://127.0.0.1:1"], capsys)
    assert code == 4 and out == "" and "cannot check the token" in err
    assert token.split(".")[2] not in err


def test_verify_reads_the_token_from_stdin(
    emulator: Emulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    token = emulator.issue_token()
    monkeypatch.setattr("sys.stdin", io.StringIO(token + "\n"))
    code, out, _ = run(["verify", "-", "--base-url", emulator.url], capsys)
    assert code == 0 and json.loads(out)["jti"]


def test_decode_says_nothing_was_verified(emulator: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    token = emulator.issue_token(ttl=-100)  # expired: decode does not care
    code, out, err = run(["decode", token], capsys)
    assert code == 0 and "NOTHING WAS VERIFIED" in err
    shown = json.loads(out)
    assert shown["verified"] is False and shown["header"]["alg"] == "RS256"
    assert shown["claims"]["sub"] == emulator.demo_client_id
    assert token.split(".")[2] not in out
    code, out, err = run(["decode", "a.b"], capsys)
    assert code == 5 and out == "" and "2 segment(s)" in err


def test_through_the_main_cli(emulator: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    from oculus_lite.cli import main

    token = emulator.issue_token()
    assert main(["verify", token, "--base-url", emulator.url]) == 0
    assert json.loads(capsys.readouterr().out)["jti"] == decode(token).claims["jti"]
    assert main(["decode", token]) == 0
    assert main(["decode", "a.b"]) == 5
    assert main(["verify", token, "--base-url", "ftp://example.com"]) == 2  # configuration: usage
    out, err = capsys.readouterr()
    assert token.split(".")[2] not in out + err
