"""Token endpoint for the official SDK's v2 surface: SDK service tokens, the scope-less default
grant, dotted capability scopes, per-agent constraints/policy_id, the injected clock, and the
Python/admin views of agents and issued tokens."""

import inspect
import json

import pytest

from oculus_lite._engine import ManualClock
from oculus_lite.emulator import Emulator

CAPS = ["stripe.customers.read", "stripe.charges.create"]


def _claims(token):
    from oculus_lite.jwt import decode

    return decode(token).claims


def test_token_response_carries_a_fresh_sdk_service_token_each_grant(emulator, wire):
    emulator.add_agent("gov", "pw", scopes=CAPS, sdk_token_ttl=120)
    tokens = set()
    for _ in range(2):
        status, body = wire.token("gov", "pw", "stripe.customers.read")
        assert status == 200
        assert body["sdk_service_token"].startswith("sst_") and len(body["sdk_service_token"]) > 30
        assert body["sdk_service_token_expires_in"] == 120
        tokens.add(body["sdk_service_token"])
    assert len(tokens) == 2
    for sst in tokens:  # both still valid until they expire
        status, _, _ = wire.request(
            "GET", "/v1/sync/capability-maps", headers={"Authorization": "Bearer " + sst}
        )
        assert status == 200


def test_refresh_grant_also_rotates_the_sdk_service_token(emulator, wire):
    emulator.add_agent("r", "pw", scopes=["db:*"], refresh_tokens=True)
    first = wire.token("r", "pw", "db:read")[1]
    status, _, raw = wire.request(
        "POST", "/oauth/token", form={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    )
    second = json.loads(raw)
    assert status == 200 and second["sdk_service_token"].startswith("sst_")
    assert second["sdk_service_token"] != first["sdk_service_token"]
    assert second["sdk_service_token_expires_in"] == 3600


@pytest.mark.parametrize(
    "header",
    [
        {},
        {"Authorization": "Bearer sst_wrong"},
        {"Authorization": "Basic eDp5"},
        {"Authorization": "Bearer "},
    ],
)
def test_missing_or_wrong_sdk_service_token_is_401(emulator, wire, header):
    for method, path in (
        ("GET", "/v1/sync/capability-maps"),
        ("GET", "/v1/credentials/fetch?integration=stripe"),
        ("POST", "/v1/audit/events/batch"),
    ):
        status, headers, raw = wire.request(method, path, body={"events": []}, headers=header)
        assert status == 401, path
        assert headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
        assert json.loads(raw)["error"]["code"] == "invalid_token"


def test_an_access_token_is_not_an_sdk_service_token(emulator, wire):
    access = wire.token(emulator.demo_client_id, emulator.demo_client_secret)[1]["access_token"]
    status, _, _ = wire.request(
        "GET", "/v1/sync/capability-maps", headers={"Authorization": "Bearer " + access}
    )
    assert status == 401


def test_sdk_service_token_expires_on_the_emulator_clock(connect):
    clock = ManualClock()
    with Emulator(clock=clock) as emu:
        assert emu.clock is clock
        emu.add_agent("a", "pw", scopes=CAPS, sdk_token_ttl=60)
        h = connect(emu.url)
        sst = h.token("a", "pw", "stripe.customers.read")[1]["sdk_service_token"]
        auth = {"Authorization": "Bearer " + sst}
        clock.advance(59.5)
        assert h.request("GET", "/v1/sync/capability-maps", headers=auth)[0] == 200
        clock.advance(0.5)
        status, _, raw = h.request("GET", "/v1/sync/capability-maps", headers=auth)
        assert (status, json.loads(raw)["error"]["code"]) == (401, "invalid_token")


def test_sdk_service_token_stops_working_when_the_agent_is_suspended(emulator, wire):
    emulator.add_agent("a", "pw", scopes=CAPS)
    sst = wire.token("a", "pw", "stripe.customers.read")[1]["sdk_service_token"]
    auth = {"Authorization": "Bearer " + sst}
    emulator.set_status("a", "suspended")
    assert wire.request("GET", "/v1/sync/capability-maps", headers=auth)[0] == 401
    emulator.set_status("a", "active")
    assert wire.request("GET", "/v1/sync/capability-maps", headers=auth)[0] == 200


def test_token_times_come_from_the_clock(connect):
    clock = ManualClock(start=2_000_000_000)
    with Emulator(clock=clock) as emu:
        emu.add_agent("a", "pw", scopes=["db:*"], token_ttl=90)
        body = connect(emu.url).token("a", "pw", "db:read")[1]
        claims = _claims(body["access_token"])
        assert (claims["iat"], claims["nbf"], claims["exp"]) == (2_000_000_000, 2_000_000_000, 2_000_000_090)
        clock.advance(30)
        assert _claims(emu.issue_token("a"))["iat"] == 2_000_000_030


def test_scope_less_request_gets_the_default_grant(emulator, wire):
    emulator.add_agent("concrete", "pw", scopes=["stripe.customers.read", "db:*", "stripe.charges.create"])
    status, body = wire.token("concrete", "pw", None)
    assert status == 200
    assert body["scope"] == "stripe.customers.read stripe.charges.create"  # wildcard patterns left out
    assert _claims(body["access_token"])["scope"] == body["scope"]
    emulator.add_agent("explicit", "pw", scopes=["db:*"], default_scopes=["db:users:read"])
    status, body = wire.token("explicit", "pw", None)
    assert (status, body["scope"]) == (200, "db:users:read")
    # an explicit scope still wins
    assert wire.token("explicit", "pw", "db:orders:read")[1]["scope"] == "db:orders:read"


def test_default_grant_still_passes_the_policy_checks(emulator, wire):
    emulator.add_agent("shadowed", "pw", scopes=["db:*"], default_scopes=["admin:users:read"])
    status, body = wire.token("shadowed", "pw", None)
    assert (status, body["error"]["code"]) == (403, "insufficient_scope")


def test_no_default_grant_is_400_invalid_scope_naming_the_fix(emulator, wire):
    emulator.add_agent("wild", "pw", scopes=["db:*"], policies=[{"scopes": ["crm:read"], "mode": "shadow"}])
    status, body = wire.token("wild", "pw", None)
    assert (status, body["error"]["code"]) == (400, "invalid_scope")
    assert "wild" in body["error"]["message"] and "default_scopes" in body["error"]["message"]


@pytest.mark.parametrize("scope", ["stripe.customers.read", "a.b", "github.repos.issues.write", "x_1.y-2"])
def test_dotted_capability_names_are_valid_scopes(emulator, wire, scope):
    emulator.add_agent("dots", "pw", scopes=[scope.split(".")[0] + ".*"])
    status, body = wire.token("dots", "pw", scope)
    assert (status, body["scope"]) == (200, scope)


@pytest.mark.parametrize(
    "scope", ["stripe", "Stripe.Read", "stripe.", ".stripe", "a..b", "a.b:", "stripe.customers.Read"]
)
def test_malformed_dotted_scopes_are_403_invalid_scope(emulator, wire, scope):
    emulator.add_agent("dots", "pw", scopes=["*"])
    status, body = wire.token("dots", "pw", scope)
    assert (status, body["error"]["code"]) == (403, "invalid_scope")
    assert "stripe.customers.read" in body["error"]["message"]


def test_constraints_policy_id_and_task_id_reach_the_agent_claim(emulator, wire):
    constraints = {
        "max_amount_cents": 5000,
        "max_results": 10,
        "task_context_required": True,
        "time_bounds": {"days": ["mon", "tue"], "hours": "09:00-17:00", "timezone": "Europe/Paris"},
        "allowed_ips": ["10.0.0.0/8"],  # unknown keys pass through verbatim
    }
    emulator.add_agent(
        "c", "pw", scopes=CAPS, constraints=constraints, policy_id="pol-refunds", framework="crewai"
    )
    status, body = wire.token("c", "pw", "stripe.charges.create", task_id="refund-7")
    assert status == 200
    agent = _claims(body["access_token"])["agent"]
    assert agent == {
        "delegation_depth": 0,
        "task_id": "refund-7",
        "framework": "crewai",
        "policy_id": "pol-refunds",
        "constraints": constraints,
    }


def test_malformed_constraint_values_are_passed_through_for_client_tests(emulator, wire):
    odd = {"max_amount_cents": "1e9", "time_bounds": {"timezone": "Mars/Olympus", "hours": "9-17"}}
    emulator.add_agent("odd", "pw", scopes=CAPS, constraints=odd)
    agent = _claims(wire.token("odd", "pw", "stripe.charges.create")[1]["access_token"])["agent"]
    assert agent["constraints"] == odd
    assert agent["policy_id"] == "default"  # the granting policy when none is configured


def test_agents_admin_route_accepts_the_new_fields(emulator, wire):
    spec = {
        "client_id": "adm",
        "client_secret": "pw",
        "scopes": CAPS,
        "constraints": {"max_results": 3},
        "policy_id": "p-1",
        "default_scopes": ["stripe.customers.read"],
        "max_delegation_depth": 1,
        "sdk_token_ttl": 30,
    }
    assert wire.json("POST", "/_emulator/agents", spec) == (201, {"client_id": "adm", "status": "active"})
    status, body = wire.token("adm", "pw", None)
    assert (status, body["scope"], body["sdk_service_token_expires_in"]) == (200, "stripe.customers.read", 30)
    agent = _claims(body["access_token"])["agent"]
    assert (agent["constraints"], agent["policy_id"]) == ({"max_results": 3}, "p-1")
    listed = {a["client_id"]: a for a in wire.json("GET", "/_emulator/agents")[1]["agents"]}
    assert listed["adm"] == {
        "client_id": "adm",
        "status": "active",
        "token_ttl": 600,
        "refresh_tokens": False,
        "policies": [{"name": "default", "scopes": CAPS, "mode": "active"}],
        "default_scopes": ["stripe.customers.read"],
        "constraints": {"max_results": 3},
        "policy_id": "p-1",
        "max_delegation_depth": 1,
        "framework": None,
        "tenant_id": None,
    }
    assert emulator.list_agents() == list(listed.values())
    assert "pw" not in json.dumps(emulator.list_agents()) and emulator.demo_client_secret not in json.dumps(
        emulator.list_agents()
    )


@pytest.mark.parametrize(
    "field,value,word",
    [
        ("constraints", ["max_results"], "constraints"),
        ("constraints", {"x": object()}, "JSON"),
        ("default_scopes", ["db:*"], "default_scopes"),
        ("default_scopes", ["read"], "default_scopes"),
        ("default_scopes", "db:read", "default_scopes"),
        ("max_delegation_depth", -1, "max_delegation_depth"),
        ("max_delegation_depth", True, "max_delegation_depth"),
        ("policy_id", "", "policy_id"),
        ("sdk_token_ttl", 0, "sdk_token_ttl"),
    ],
)
def test_bad_new_agent_fields_are_refused_naming_the_field(emulator, field, value, word):
    with pytest.raises(ValueError, match=word):
        emulator.add_agent("bad", "pw", scopes=["db:*"], **{field: value})
    assert emulator.tokens.get_agent("bad") is None


def test_add_agent_keeps_every_keyword_and_shows_make_agents_signature(emulator):
    params = inspect.signature(emulator.add_agent).parameters
    for name in (
        "client_id",
        "client_secret",
        "scopes",
        "status",
        "token_ttl",
        "refresh_tokens",
        "rotate_refresh_tokens",
        "policies",
        "error_style",
        "tenant_id",
        "framework",
        "constraints",
        "policy_id",
        "default_scopes",
        "max_delegation_depth",
    ):
        assert name in params
    secret = emulator.add_agent("pos", None, scopes=["db:*"], tenant_id="t9", error_style="rfc6749")
    assert secret.startswith("sk_emu_") and emulator.tokens.get_agent("pos").tenant_id == "t9"
    assert emulator.add_agent(client_id="kw", client_secret="given") == "given"
    assert "returns its secret" in (Emulator.add_agent.__doc__ or "")


def test_issued_tokens_lists_grants_without_token_strings(emulator, wire):
    emulator.add_agent("a", "pw", scopes=["db:*"], token_ttl=50)
    first = wire.token("a", "pw", "db:read")[1]
    second = wire.token("a", "pw", "db:write db:read")[1]
    jti1, jti2 = _claims(first["access_token"])["jti"], _claims(second["access_token"])["jti"]
    emulator.revoke(jti1)
    issued = emulator.issued_tokens()
    assert [(t["jti"], t["sub"], t["scope"], t["revoked"]) for t in issued] == [
        (jti1, "a", "db:read", True),
        (jti2, "a", "db:write db:read", False),
    ]
    assert all(t["exp"] - t["iat"] == 50 and t["delegation_depth"] == 0 for t in issued)
    dumped = json.dumps(issued)
    assert first["access_token"] not in dumped and first["sdk_service_token"] not in dumped
    assert wire.json("GET", "/_emulator/tokens") == (200, {"tokens": issued})
    emulator.reset()
    assert emulator.issued_tokens() == []


def test_config_file_accepts_v2_agent_fields_maps_credentials_and_depth_limit(tmp_path, connect):
    cfg = {
        "delegation_depth_limit": 1,
        "agents": [
            {
                "client_id": "cfg",
                "client_secret": "pw",
                "scopes": CAPS,
                "constraints": {"max_amount_cents": 100},
                "policy_id": "pol-cfg",
                "default_scopes": ["stripe.customers.read"],
                "max_delegation_depth": 2,
            }
        ],
        "capability_maps": [
            {"integrations": {"stripe": {"capabilities": {"stripe.customers.read": {}}, "deny_always": []}}},
            {
                "client_id": "cfg",
                "integrations": {"github": {"capabilities": {}, "deny_always": ["github.delete"]}},
            },
        ],
        "credentials": [{"integration": "github", "credential_type": "token", "value": "ghp_cfg"}],
    }
    path = tmp_path / "emu.json"
    path.write_text(json.dumps(cfg))
    with Emulator(config=str(path)) as emu:
        assert emu.tokens.delegation_depth_limit == 1
        h = connect(emu.url)
        body = h.token("cfg", "pw", None)[1]
        agent = _claims(body["access_token"])["agent"]
        assert (body["scope"], agent["policy_id"], agent["constraints"]) == (
            "stripe.customers.read",
            "pol-cfg",
            {"max_amount_cents": 100},
        )
        auth = {"Authorization": "Bearer " + body["sdk_service_token"]}
        status, _, raw = h.request("GET", "/v1/sync/capability-maps", headers=auth)
        assert json.loads(raw) == {
            "integrations": {"github": {"capabilities": {}, "deny_always": ["github.delete"]}}
        }
        status, _, raw = h.request("GET", "/v1/credentials/fetch?integration=github", headers=auth)
        assert (status, json.loads(raw)) == (200, {"credential_type": "token", "value": "ghp_cfg"})
        emu.set_credential("github", "token", "ghp_rotated")
        emu.reset()  # back to the config's state
        body = h.token("cfg", "pw", None)[1]
        auth = {"Authorization": "Bearer " + body["sdk_service_token"]}
        raw = h.request("GET", "/v1/credentials/fetch?integration=github", headers=auth)[2]
        assert json.loads(raw)["value"] == "ghp_cfg"


@pytest.mark.parametrize(
    "cfg,word",
    [
        ({"capability_maps": {"integrations": {}}}, "capability_maps must be a list"),
        ({"capability_maps": [{"integrations": {}, "colour": 1}]}, "colour"),
        ({"capability_maps": [{"integrations": {"s": {"capabilities": []}}}]}, r"capability_maps\[0\]"),
        ({"credentials": [{"integration": "s", "credential_type": "t"}]}, r"credentials\[0\]: value"),
        ({"credentials": [{"integration": "s", "credential_type": "t", "value": "v", "x": 1}]}, "x"),
        ({"delegation_depth_limit": -1}, "delegation_depth_limit"),
        ({"delegation_depth_limit": "3"}, "delegation_depth_limit"),
        ({"agents": [{"client_id": "a", "max_delegation_depth": "2"}]}, r"agents\[0\]: max_delegation_depth"),
        ({"capability_map": []}, "capability_map"),
    ],
)
def test_bad_v2_config_is_refused_naming_the_key(cfg, word):
    with pytest.raises(ValueError, match=word):
        Emulator(config=cfg)
