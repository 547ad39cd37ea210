"""Token service: grants, claims, every 401/403 cause, error styles, rotation, refresh tokens."""

import json
import time

import pytest

from oculus_lite.emulator import Emulator
from oculus_lite.jwt import b64url_strict


def test_client_credentials_issues_verifiable_rs256_jwt(emulator, wire, verify_token):
    status, body = wire.token(
        emulator.demo_client_id,
        emulator.demo_client_secret,
        "db:read stripe:charge:create",
        audience="https://api.example",
        task_id="task-42",
    )
    assert status == 200
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 600
    assert body["scope"] == "db:read stripe:charge:create"
    assert "refresh_token" not in body
    _, jwks = wire.json("GET", "/.well-known/jwks.json")
    header, claims = verify_token(body["access_token"], jwks)
    assert header["alg"] == "RS256" and header["typ"] == "JWT"
    assert claims["iss"] == emulator.url
    assert claims["sub"] == emulator.demo_client_id
    assert claims["scope"] == "db:read stripe:charge:create"
    assert claims["aud"] == "https://api.example"
    assert claims["exp"] - claims["iat"] == 600
    assert claims["tenant_id"]
    assert claims["agent"]["task_id"] == "task-42"
    assert claims["agent"]["delegation_depth"] == 0
    assert claims["agent"]["policy_id"]
    assert len(claims["jti"]) >= 16


def test_each_token_has_a_fresh_jti_and_no_aud_unless_asked(emulator, wire):
    jtis = set()
    for _ in range(3):
        status, body = wire.token(emulator.demo_client_id, emulator.demo_client_secret)
        assert status == 200
        claims = json.loads(b64url_strict(body["access_token"].split(".")[1], "payload"))
        assert "aud" not in claims
        jtis.add(claims["jti"])
    assert len(jtis) == 3


def test_custom_ttl_and_stats_by_grant(emulator, wire):
    emulator.add_agent("short", "pw", scopes=["db:*"], token_ttl=8)
    status, body = wire.token("short", "pw")
    assert (status, body["expires_in"]) == (200, 8)
    wire.token("short", "wrong")
    stats = emulator.stats()
    assert stats["token_requests"] == 2
    assert stats["token_requests_by_grant"] == {"client_credentials": 2}
    assert stats["tokens_issued"] == 1


@pytest.mark.parametrize(
    "client_id,secret", [("nobody", "x"), ("agent-x", "wrong"), ("", ""), ("agent-x", "")]
)
def test_bad_credentials_are_401_invalid_client(emulator, wire, client_id, secret):
    emulator.add_agent("agent-x", "right", scopes=["db:*"])
    status, body = wire.token(client_id, secret)
    assert status == 401
    assert body["error"]["code"] == "invalid_client"
    assert "right" not in json.dumps(body)


@pytest.mark.parametrize("state", ["suspended", "revoked"])
def test_inactive_agent_is_401_with_its_status(emulator, wire, state):
    emulator.add_agent("a", "pw", scopes=["db:*"])
    assert wire.json("POST", "/_emulator/agents/a/status", {"status": state}) == (
        200,
        {"client_id": "a", "status": state},
    )
    status, body = wire.token("a", "pw")
    assert status == 401
    assert body["error"]["code"] == "agent_" + state
    assert state in body["error"]["message"]
    emulator.set_status("a", "active")
    assert wire.token("a", "pw")[0] == 200


def test_rotation_makes_old_secret_fail_at_once(emulator, wire):
    emulator.add_agent("a", "old", scopes=["db:*"])
    status, body = wire.json("POST", "/_emulator/agents/a/rotate")
    assert status == 200 and body["client_secret"] not in ("old", "")
    assert wire.token("a", "old")[0] == 401
    assert wire.token("a", body["client_secret"])[0] == 200
    newer = emulator.rotate_secret("a")
    assert wire.token("a", body["client_secret"])[0] == 401
    assert wire.token("a", newer)[0] == 200


@pytest.mark.parametrize("scope", ["read", "Stripe:Read", "db:", ":db", "db:read\x01"])
def test_malformed_scope_is_403_invalid_scope(emulator, wire, scope):
    status, body = wire.token(emulator.demo_client_id, emulator.demo_client_secret, scope)
    assert status == 403
    assert body["error"]["code"] == "invalid_scope"
    assert "stripe:customer:read" in body["error"]["message"]


def test_policy_modes_decide_the_403(emulator, wire):
    emulator.add_agent(
        "p",
        "pw",
        policies=[
            {"name": "live", "scopes": ["db:*"], "mode": "active"},
            {"name": "shadow", "scopes": ["admin:*"], "mode": "shadow"},
            {"name": "off", "scopes": ["files:*"], "mode": "inactive"},
        ],
    )
    assert wire.token("p", "pw", "db:users:read")[0] == 200
    assert wire.token("p", "pw", "admin:users:delete")[1]["error"]["code"] == "policy_shadow_mode"
    assert wire.token("p", "pw", "files:read")[1]["error"]["code"] == "policy_inactive"
    status, body = wire.token("p", "pw", "db:read email:send")
    assert status == 403 and body["error"]["code"] == "insufficient_scope"
    assert "email:send" in body["error"]["message"]


def test_demo_agent_has_a_shadow_policy(emulator, wire):
    status, body = wire.token(emulator.demo_client_id, emulator.demo_client_secret, "admin:users:delete")
    assert (status, body["error"]["code"]) == (403, "policy_shadow_mode")


def test_missing_scope_without_default_grant_and_bad_grant_are_400(emulator, wire):
    # the demo agent's scopes are all wildcards and it has no default_scopes: nothing to default to
    status, body = wire.token(emulator.demo_client_id, emulator.demo_client_secret, None)
    assert (status, body["error"]["code"]) == (400, "invalid_scope")
    assert "default_scopes" in body["error"]["message"]
    status, _, raw = wire.request("POST", "/oauth/token", form={"grant_type": "password"})
    assert (status, json.loads(raw)["error"]["code"]) == (400, "unsupported_grant_type")


def test_rfc6749_error_style_per_agent_and_per_server(emulator, wire, connect):
    emulator.add_agent("r", "pw", scopes=["db:*"], error_style="rfc6749")
    status, body = wire.token("r", "pw", "crm:read")
    assert status == 403
    assert body["error"] == "insufficient_scope" and "crm:read" in body["error_description"]
    with Emulator(error_style="rfc6749") as emu2:
        status, body = connect(emu2.url).token("nobody", "x")
    assert status == 401 and body == {
        "error": "invalid_client",
        "error_description": body["error_description"],
    }


def test_refresh_tokens_rotate_and_reuse_is_invalid_grant(emulator, wire):
    emulator.add_agent("r", "pw", scopes=["db:*"], refresh_tokens=True)
    status, first = wire.token("r", "pw", "db:read")
    assert status == 200 and first["refresh_token"]
    status, _, raw = wire.request(
        "POST", "/oauth/token", form={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    )
    second = json.loads(raw)
    assert status == 200 and second["refresh_token"] != first["refresh_token"]
    assert second["scope"] == "db:read"
    status, _, raw = wire.request(
        "POST", "/oauth/token", form={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    )
    assert (status, json.loads(raw)["error"]["code"]) == (400, "invalid_grant")
    # a confidential client may authenticate on refresh; a wrong secret is 401
    form = {
        "grant_type": "refresh_token",
        "refresh_token": second["refresh_token"],
        "client_id": "r",
        "client_secret": "nope",
    }
    assert wire.request("POST", "/oauth/token", form=form)[0] == 401
    form["client_secret"] = "pw"
    assert wire.request("POST", "/oauth/token", form=form)[0] == 200
    assert emulator.stats()["token_requests_by_grant"] == {"client_credentials": 1, "refresh_token": 4}


def test_non_rotating_refresh_token_works_repeatedly_but_not_for_inactive_agent(emulator, wire):
    emulator.add_agent("r", "pw", scopes=["db:*"], refresh_tokens=True, rotate_refresh_tokens=False)
    rt = wire.token("r", "pw")[1]["refresh_token"]
    form = {"grant_type": "refresh_token", "refresh_token": rt}
    for _ in range(2):
        status, _, raw = wire.request("POST", "/oauth/token", form=form)
        assert status == 200 and json.loads(raw)["refresh_token"] == rt
    emulator.set_status("r", "suspended")
    status, _, raw = wire.request("POST", "/oauth/token", form=form)
    assert (status, json.loads(raw)["error"]["code"]) == (401, "agent_suspended")


def test_agents_from_config_file(tmp_path, connect):
    cfg = tmp_path / "emu.json"
    cfg.write_text(
        json.dumps(
            {
                "agents": [
                    {
                        "client_id": "cfg",
                        "client_secret": "pw",
                        "token_ttl": 30,
                        "policies": [{"name": "x", "scopes": ["crm:*"], "mode": "active"}],
                    }
                ]
            }
        )
    )
    with Emulator(config=str(cfg)) as emu:
        h = connect(emu.url)
        status, body = h.token("cfg", "pw", "crm:contacts:read")
        emu.reset()
        again = h.token("cfg", "pw", "crm:contacts:read")[0]
    assert (status, body["expires_in"], again) == (200, 30, 200)


def test_bad_agent_definitions_are_rejected(emulator, wire):
    with pytest.raises(ValueError, match="status"):
        emulator.add_agent("a", "b", status="sleepy")
    with pytest.raises(ValueError, match="token_ttl"):
        emulator.add_agent("a", "b", token_ttl=0)
    with pytest.raises(ValueError, match="mode"):
        emulator.add_agent("a", "b", policies=[{"scopes": ["db:*"], "mode": "maybe"}])
    status, body = wire.json("POST", "/_emulator/agents", {"client_id": "a", "colour": "red"})
    assert status == 400 and "colour" in body["error"]["message"]
    status, body = wire.json("POST", "/_emulator/agents", {"client_id": "gen", "scopes": ["db:*"]})
    assert status == 201
    assert wire.token("gen", body["client_secret"])[0] == 200


def test_issue_token_helper_signs_arbitrary_claims(emulator, wire, verify_token):
    token = emulator.issue_token(scope="db:read", claims={"exp": int(time.time()) - 100})
    _, jwks = wire.json("GET", "/.well-known/jwks.json")
    _, claims = verify_token(token, jwks)
    assert claims["exp"] < time.time()
    header, claims = verify_token(
        emulator.issue_token(claims={"iss": None}, header={"typ": None, "x": 1}), jwks
    )
    assert "iss" not in claims and "typ" not in header and header["x"] == 1
    _, claims = verify_token(emulator.issue_token(ttl=-60), jwks)
    assert claims["exp"] == claims["iat"] - 60
    status, body = wire.json("POST", "/_emulator/tokens", {"scope": "crm:read", "audience": "svc"})
    assert status == 200 and verify_token(body["access_token"], jwks)[1]["aud"] == "svc"


def test_bad_config_is_rejected_with_the_key_named():
    with pytest.raises(ValueError, match="agnets"):
        Emulator(config={"agnets": []})
    with pytest.raises(ValueError, match=r"agents\[0\]: client_id"):
        Emulator(config={"agents": [{"scopes": ["db:*"]}]})


def test_http_basic_client_authentication_is_accepted(emulator, wire):
    import base64

    emulator.add_agent("b:x", "p@ss", scopes=["db:*"])
    creds = base64.b64encode(b"b%3Ax:p%40ss").decode()
    form = {"grant_type": "client_credentials", "scope": "db:read"}
    status, _, raw = wire.request(
        "POST", "/oauth/token", form=form, headers={"Authorization": "Basic " + creds}
    )
    assert status == 200 and json.loads(raw)["token_type"] == "Bearer"
    bad = base64.b64encode(b"b%3Ax:nope").decode()
    assert (
        wire.request("POST", "/oauth/token", form=form, headers={"Authorization": "Basic " + bad})[0] == 401
    )
