"""``doctor`` against the emulator: one test per failure cause, the exit codes, and no secret
in its output (the agent's secret is the canary)."""

import io
import time
from typing import Any, Dict, List, Tuple

import pytest

from oculus_lite.cli import main
from oculus_lite.cli._doctor import run_doctor, scope_format_problems
from oculus_lite.emulator import Emulator


@pytest.fixture
def env(emulator: Emulator, agent: Any) -> Dict[str, str]:
    return {
        "AGENT_CLIENT_ID": agent.client_id,
        "AGENT_CLIENT_SECRET": agent.client_secret,
        "ANTI_AI_URL": agent.url,
    }


def doctor(env: Dict[str, str], canary: str, *args: Any, **kwargs: Any) -> Tuple[int, Dict[str, str], str]:
    """(exit code, {check name: status}, full output); asserts the canary never appears."""
    out = io.StringIO()
    code = run_doctor(*args, out=out, environ=env, **kwargs)
    text = out.getvalue()
    assert canary not in text
    statuses: Dict[str, str] = {}
    for line in text.splitlines()[1:-1]:
        if not line.startswith(" "):
            status, rest = line.split(None, 1)
            statuses[rest.split(":", 1)[0]] = status
    return code, statuses, text


def test_healthy_setup_passes_with_only_the_loopback_warning(env, canary):
    code, statuses, text = doctor(env, canary, "db:read")
    assert code == 0
    assert statuses == {
        "credentials": "ok",
        "base URL": "warn",
        "scope format": "ok",
        "server reachable": "ok",
        "clock skew": "ok",
        "credentials accepted": "ok",
        "scope granted": "ok",
        "token lifetime": "ok",
        "revocation list": "ok",
    }
    assert "from AGENT_CLIENT_ID" in text and "secret set (from AGENT_CLIENT_SECRET)" in text
    assert "localhost in production" in text
    assert "tokens live 600 s" in text


def test_strict_makes_warnings_fail(env, canary):
    code, _, text = doctor(env, canary, "db:read", strict=True)
    assert code == 1 and "--strict" in text


def test_oculus_variables_are_named_as_the_source(emulator, agent, canary):
    env = {
        "OCULUS_CLIENT_ID": agent.client_id,
        "OCULUS_CLIENT_SECRET": canary,
        "OCULUS_BASE_URL": emulator.url,
    }
    code, _, text = doctor(env, canary, "db:read")
    assert code == 0
    assert "from OCULUS_CLIENT_ID" in text and "(from OCULUS_CLIENT_SECRET)" in text
    assert "(from OCULUS_BASE_URL)" in text


@pytest.mark.parametrize("missing", ["AGENT_CLIENT_ID", "AGENT_CLIENT_SECRET"])
def test_missing_credentials(env, canary, missing):
    del env[missing]
    code, statuses, text = doctor(env, canary, "db:read")
    assert code == 3
    assert statuses["credentials"] == "fail" and statuses["credentials accepted"] == "skip"
    assert "NOT SET" in text and "export " + missing in text
    assert statuses["revocation list"] == "ok"  # the rest still ran


def test_wrong_secret(env, canary, token_requests):
    env["AGENT_CLIENT_SECRET"] = "wrong-" + canary
    code, statuses, text = doctor(env, canary, "db:read")
    assert code == 3 and statuses["credentials accepted"] == "fail"
    assert "invalid_client" in text and "rotated" in text and "rotate the secret" in text
    assert "wrong-" not in text
    assert token_requests() == 1  # a 401 is not retried


def test_rotated_secret(emulator, env, canary):
    emulator.rotate_secret("agent-1")
    code, statuses, text = doctor(env, canary, "db:read")
    assert code == 3 and "rotation invalidates the old secret" in text


@pytest.mark.parametrize("status, word", [("suspended", "Suspended"), ("revoked", "Revoked")])
def test_inactive_agent(emulator, env, canary, status, word):
    emulator.set_status("agent-1", status)
    code, statuses, text = doctor(env, canary, "db:read")
    assert code == 3 and statuses["credentials accepted"] == "fail"
    assert "agent_" + status in text and "the agent is " + word in text


def test_ungranted_scope(env, canary):
    code, statuses, text = doctor(env, canary, "stripe:customer:read")
    assert code == 3
    assert statuses["credentials accepted"] == "ok" and statuses["scope granted"] == "fail"
    assert "insufficient_scope" in text and "Policy Simulator" in text
    assert statuses["token lifetime"] == "skip"


@pytest.mark.parametrize("mode, code_word", [("shadow", "Shadow Mode"), ("inactive", "not Active")])
def test_policy_not_granting(emulator, canary, mode, code_word):
    emulator.add_agent("p", canary, policies=[{"name": "billing", "scopes": ["billing:*"], "mode": mode}])
    env = {"AGENT_CLIENT_ID": "p", "AGENT_CLIENT_SECRET": canary, "ANTI_AI_URL": emulator.url}
    code, statuses, text = doctor(env, canary, "billing:invoice:read")
    assert code == 3 and statuses["scope granted"] == "fail"
    assert code_word in text


@pytest.mark.parametrize(
    "scope, local",
    [("read", "too vague"), ("Stripe:Read", "did you mean 'stripe:read'"), ("db::read", "empty segment")],
)
def test_malformed_scope(env, canary, scope, local):
    code, statuses, text = doctor(env, canary, scope)
    assert code == 3
    assert statuses["scope format"] == "warn" and local in text
    assert statuses["scope granted"] == "fail" and "invalid_scope" in text


def test_scope_with_control_characters_is_not_sent(env, canary, token_requests):
    code, statuses, text = doctor(env, canary, "db:read\r\nX-Evil: 1")
    assert code == 1
    assert statuses["scope format"] == "warn" and "control characters" in text
    assert statuses["scope granted"] == "fail" and token_requests() == 0


def test_without_scope_credentials_are_still_checked(env, canary):
    code, statuses, text = doctor(env, canary)
    assert code == 0
    assert statuses["credentials accepted"] == "ok" and statuses["scope granted"] == "skip"
    assert "pass --scope" in text


def test_short_token_lifetime_warns(emulator, canary):
    emulator.add_agent("short", canary, scopes=["db:*"], token_ttl=5)
    env = {"AGENT_CLIENT_ID": "short", "AGENT_CLIENT_SECRET": canary, "ANTI_AI_URL": emulator.url}
    code, statuses, text = doctor(env, canary, "db:read")
    assert code == 0 and statuses["token lifetime"] == "warn"
    assert "tokens live 5 s" in text and "Token Lifetime" in text
    code, _, _ = doctor(env, canary, "db:read", strict=True)
    assert code == 1


@pytest.mark.parametrize("shift, word", [(120.0, "ahead of"), (-120.0, "behind")])
def test_clock_skew_warns(env, canary, shift, word):
    code, statuses, text = doctor(env, canary, "db:read", clock=lambda: time.time() + shift)
    assert code == 0 and statuses["clock skew"] == "warn"
    assert word in text and "NTP" in text


def test_unreachable_server(canary):
    with Emulator() as gone:
        url = gone.url
    env = {"AGENT_CLIENT_ID": "agent-1", "AGENT_CLIENT_SECRET": canary, "ANTI_AI_URL": url}
    code, statuses, text = doctor(env, canary, "db:read", timeout=3)
    assert code == 4
    assert statuses["server reachable"] == "fail" and "refused" in text
    assert statuses["credentials accepted"] == "skip" and statuses["revocation list"] == "skip"


@pytest.mark.parametrize(
    "fault, expected_code, word",
    [
        ({"kind": "status", "status": 500}, 1, "HTTP 500"),
        ({"kind": "close"}, 4, "connection closed"),
        ({"kind": "badjson"}, 1, "not JSON"),
    ],
)
def test_revocation_list_failing(emulator, env, canary, fault, expected_code, word):
    emulator.set_faults([dict(fault, path="/oauth/revoked-tokens", every=1)])
    code, statuses, text = doctor(env, canary, "db:read")
    assert code == expected_code
    assert statuses["revocation list"] == "fail" and word in text
    assert statuses["scope granted"] == "ok"
    assert emulator.stats()["faults_fired"] >= 1


@pytest.mark.parametrize(
    "url, status, word",
    [
        ("https://user:pw@api.example.com", "fail", "credentials"),
        ("ftp://api.example.com", "fail", "https://"),
    ],
)
def test_bad_base_url(canary, url, status, word):
    env = {"AGENT_CLIENT_ID": "a", "AGENT_CLIENT_SECRET": canary, "ANTI_AI_URL": url}
    code, statuses, text = doctor(env, canary)
    assert code == 1 and statuses["base URL"] == status and word in text
    assert "pw" not in text  # the URL's password is never echoed
    assert "server reachable" not in statuses  # nothing was sent


def test_plain_http_to_a_remote_host_is_flagged(monkeypatch, canary):
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    # 192.0.2.0/24 is TEST-NET-1: never routed, so the reachability check fails fast or times out.
    env = {"AGENT_CLIENT_ID": "a", "AGENT_CLIENT_SECRET": canary, "ANTI_AI_URL": "http://192.0.2.1:9"}
    code, statuses, text = doctor(env, canary, timeout=0.5)
    assert statuses["base URL"] == "warn" and "unencrypted" in text and "allow_insecure_http" in text
    assert code == 4


def test_scope_format_rules():
    assert scope_format_problems("stripe:customer:read db:*") == []
    assert len(scope_format_problems("read Stripe:Read db:ok")) == 2


def test_cli_entry_point_uses_the_environment(monkeypatch, emulator, agent, canary, capsys):
    monkeypatch.setenv("AGENT_CLIENT_ID", agent.client_id)
    monkeypatch.setenv("AGENT_CLIENT_SECRET", canary)
    monkeypatch.setenv("ANTI_AI_URL", emulator.url)
    assert main(["doctor", "--scope", "db:read"]) == 0
    assert main(["doctor", "--scope", "db:read", "--strict"]) == 1
    assert main(["doctor", "--scope", "billing:x:read"]) == 3
    monkeypatch.setenv("AGENT_CLIENT_SECRET", "nope-" + canary)
    assert main(["doctor", "--scope", "db:read", "--audience", "https://api.example.com"]) == 3
    out, err = capsys.readouterr()
    lines: List[str] = out.splitlines()
    assert lines[0] == "oculus_lite doctor" and "-> exit 3" in lines[-1]
    assert canary not in out + err


def test_base_url_of_the_wrong_server(emulator, env, canary):
    env["ANTI_AI_URL"] = emulator.url + "/not-the-service"
    code, statuses, text = doctor(env, canary, "db:read")
    assert code == 1
    assert statuses["server reachable"] == "warn" and "HTTP 404" in text
    assert statuses["credentials accepted"] == "fail" and "no token endpoint" in text


@pytest.mark.parametrize("value", ["0", "-1", "nan", "soon", "1e9"])
def test_bad_timeout_is_a_usage_error(capsys, value):
    assert main(["doctor", "--timeout", value]) == 2
    assert "between 0 and 300" in capsys.readouterr().err
