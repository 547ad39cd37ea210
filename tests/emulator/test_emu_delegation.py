"""``POST /oauth/delegate`` (verified parent, subset, constraint tightening, depth limit, ttl,
child agent checks, RFC 8693 act, revocation cascade) and ``POST /oauth/enroll`` (one-time,
expiring enroll tokens minted by the admin API)."""

import json
from typing import Any, Dict

import pytest

from oculus_lite._engine import ManualClock
from oculus_lite.emulator import Emulator
from oculus_lite.jwt import decode

CAPS = ["stripe.customers.read", "stripe.charges.create", "stripe.refunds.create"]
ALL_CAPS = " ".join(CAPS)
PARENT_CONSTRAINTS: Dict[str, Any] = {
    "max_amount_cents": 5000,
    "max_results": 50,
    "task_context_required": True,
    "time_bounds": {"days": ["mon", "tue", "wed", "thu", "fri"], "hours": "08:00-18:00", "timezone": "UTC"},
}


@pytest.fixture
def family(emulator):
    emulator.add_agent("parent", "pw", scopes=CAPS, constraints=PARENT_CONSTRAINTS, policy_id="pol-p")
    for name in ("child", "grandchild", "g3", "g4"):
        emulator.add_agent(name, "pw", scopes=["x:y"], framework="langchain" if name == "child" else None)
    return emulator


def _parent_token(wire, scope=ALL_CAPS, client_id="parent"):
    status, body = wire.token(client_id, "pw", scope)
    assert status == 200, body
    return body["access_token"]


def _delegate(wire, token, **fields):
    body = {
        "child_agent_id": "child",
        "capabilities": ["stripe.customers.read"],
        "task_id": "t-1",
        "ttl_seconds": 60,
    }
    body.update(fields)
    return wire.json("POST", "/oauth/delegate", body, headers={"Authorization": "Bearer " + token})


def _code(answer):
    status, body = answer
    return status, body["error"]["code"]


def test_delegation_issues_a_narrower_child_token(family, wire, verify_token):
    parent = _parent_token(wire)
    status, body = _delegate(
        wire,
        parent,
        capabilities=["stripe.customers.read", "stripe.charges.create", "stripe.customers.read"],
        task_id="refund-42",
        ttl_seconds=120,
        additional_constraints={"max_amount_cents": 1000, "time_bounds": {"hours": "09:00-12:00"}},
    )
    assert status == 200
    assert (body["token_type"], body["expires_in"]) == ("Bearer", 120)
    assert body["scope"] == "stripe.customers.read stripe.charges.create"
    _, jwks = wire.json("GET", "/.well-known/jwks.json")
    _, child = verify_token(body["access_token"], jwks)  # signed by the emulator's key
    pclaims = decode(parent).claims
    assert child["sub"] == "child" and child["iss"] == family.url
    assert child["scope"] == "stripe.customers.read stripe.charges.create"
    assert child["exp"] - child["iat"] == 120 and child["jti"] != pclaims["jti"]
    assert child["act"] == {"sub": "parent"}
    assert child["agent"] == {
        "delegation_depth": 1,
        "task_id": "refund-42",
        "parent_jti": pclaims["jti"],
        "policy_id": "pol-p",
        "framework": "langchain",
        "constraints": {
            "max_amount_cents": 1000,
            "max_results": 50,
            "task_context_required": True,
            "time_bounds": {
                "days": ["mon", "tue", "wed", "thu", "fri"],
                "hours": "09:00-12:00",
                "timezone": "UTC",
            },
        },
    }
    stats = family.stats()
    assert (stats["delegate_requests"], stats["tokens_issued"]) == (1, 2)
    issued = family.issued_tokens()[-1]
    assert (issued["sub"], issued["delegation_depth"], issued["parent_jti"]) == ("child", 1, pclaims["jti"])


def test_without_additional_constraints_the_child_inherits_the_parents(family, wire):
    status, body = _delegate(wire, _parent_token(wire))
    assert status == 200
    assert decode(body["access_token"]).claims["agent"]["constraints"] == PARENT_CONSTRAINTS


def test_a_parent_without_constraints_gives_a_child_without_unless_added(emulator, wire):
    emulator.add_agent("p", "pw", scopes=CAPS)
    emulator.add_agent("child", "pw", scopes=["x:y"])
    token = _parent_token(wire, client_id="p")
    status, body = _delegate(wire, token)
    assert status == 200 and "constraints" not in decode(body["access_token"]).claims["agent"]
    status, body = _delegate(wire, token, additional_constraints={"max_results": 5, "allowed_ips": ["10/8"]})
    assert decode(body["access_token"]).claims["agent"]["constraints"] == {
        "max_results": 5,
        "allowed_ips": ["10/8"],
    }


def test_capability_escalation(family, wire):
    parent = _parent_token(wire, "stripe.customers.read")
    answer = _delegate(wire, parent, capabilities=["stripe.customers.read", "stripe.charges.create"])
    assert _code(answer) == (403, "CAPABILITY_ESCALATION")
    assert "stripe.charges.create" in answer[1]["error"]["message"]
    # no substring or wildcard tricks: "stripe.customers" is not "stripe.customers.read"
    assert _code(_delegate(wire, parent, capabilities=["stripe.customers"])) == (403, "CAPABILITY_ESCALATION")


@pytest.mark.parametrize(
    "extra,word",
    [
        ({"max_amount_cents": 5001}, "max_amount_cents"),
        ({"max_results": 51}, "max_results"),
        ({"task_context_required": False}, "task_context_required"),
        ({"time_bounds": {"hours": "07:00-12:00"}}, "hours"),
        ({"time_bounds": {"hours": "17:00-19:00"}}, "hours"),
        ({"time_bounds": {"hours": "22:00-06:00"}}, "hours"),
        ({"time_bounds": {"days": ["mon", "sat"]}}, "days"),
        ({"time_bounds": {"timezone": "Europe/Paris"}}, "timezone"),
    ],
)
def test_constraint_escalation_of_each_kind(family, wire, extra, word):
    status, body = _delegate(wire, _parent_token(wire), additional_constraints=extra)
    assert (status, body["error"]["code"]) == (403, "CONSTRAINT_ESCALATION")
    assert word in body["error"]["message"]


@pytest.mark.parametrize(
    "extra,expected",
    [
        ({"max_amount_cents": 5000}, {"max_amount_cents": 5000}),
        ({"max_results": 0}, {"max_results": 0}),
        ({"task_context_required": True}, {"task_context_required": True}),
        (
            {"time_bounds": {"days": ["Monday", "fri"]}},
            {"time_bounds": dict(PARENT_CONSTRAINTS["time_bounds"], days=["Monday", "fri"])},
        ),
        ({"time_bounds": {"hours": "08:00-18:00", "timezone": "UTC"}}, {}),
    ],
)
def test_equal_or_tighter_constraints_are_accepted(family, wire, extra, expected):
    status, body = _delegate(wire, _parent_token(wire), additional_constraints=extra)
    assert status == 200, body
    assert decode(body["access_token"]).claims["agent"]["constraints"] == dict(PARENT_CONSTRAINTS, **expected)


def test_overnight_parent_windows_compare_correctly(emulator, wire):
    emulator.add_agent("night", "pw", scopes=CAPS, constraints={"time_bounds": {"hours": "22:00-06:00"}})
    emulator.add_agent("child", "pw", scopes=["x:y"])
    token = _parent_token(wire, client_id="night")
    assert _delegate(wire, token, additional_constraints={"time_bounds": {"hours": "23:00-02:00"}})[0] == 200
    assert _delegate(wire, token, additional_constraints={"time_bounds": {"hours": "00:00-05:59"}})[0] == 200
    status, body = _delegate(wire, token, additional_constraints={"time_bounds": {"hours": "21:00-23:00"}})
    assert (status, body["error"]["code"]) == (403, "CONSTRAINT_ESCALATION")


def test_a_malformed_parent_constraint_cannot_be_tightened(emulator, wire):
    emulator.add_agent("odd", "pw", scopes=CAPS, constraints={"max_amount_cents": "5000", "custom": 1})
    emulator.add_agent("child", "pw", scopes=["x:y"])
    token = _parent_token(wire, client_id="odd")
    assert _code(_delegate(wire, token, additional_constraints={"max_amount_cents": 10})) == (
        403,
        "CONSTRAINT_ESCALATION",
    )
    assert _code(_delegate(wire, token, additional_constraints={"custom": 2})) == (
        403,
        "CONSTRAINT_ESCALATION",
    )
    assert _delegate(wire, token, additional_constraints={"custom": 1})[0] == 200


@pytest.mark.parametrize(
    "extra",
    [
        {"max_amount_cents": -1},
        {"max_amount_cents": 1.5},
        {"max_results": True},
        {"task_context_required": "yes"},
        {"time_bounds": {"hours": "9-17"}},
        {"time_bounds": {"hours": "25:00-26:00"}},
        {"time_bounds": {"days": "mon"}},
        {"time_bounds": {"days": ["funday"]}},
        {"time_bounds": {"week": 1}},
        {"time_bounds": []},
    ],
)
def test_malformed_additional_constraints_are_400(family, wire, extra):
    assert _code(_delegate(wire, _parent_token(wire), additional_constraints=extra)) == (
        400,
        "INVALID_CONSTRAINTS",
    )


def test_an_unknown_time_zone_is_refused(family, wire):
    answer = _delegate(
        wire, _parent_token(wire), additional_constraints={"time_bounds": {"timezone": "Mars/Olympus"}}
    )
    try:
        import zoneinfo  # noqa: F401
    except ImportError:  # Python 3.8: only the name's shape is checked; the zone still differs from UTC
        assert _code(answer) == (403, "CONSTRAINT_ESCALATION")
    else:
        assert _code(answer) == (400, "INVALID_CONSTRAINTS")


def test_additional_constraints_must_be_an_object(family, wire):
    assert _code(_delegate(wire, _parent_token(wire), additional_constraints=[1])) == (
        400,
        "INVALID_CONSTRAINTS",
    )


def test_depth_limit_default_is_3(family, wire):
    token = _parent_token(wire)
    chain = ["child", "grandchild", "g3", "g4"]
    depths = []
    for i, child in enumerate(chain):
        status, body = _delegate(wire, token, child_agent_id=child, ttl_seconds=60 - 10 * i)
        if status != 200:
            assert (status, body["error"]["code"]) == (403, "DELEGATION_DEPTH_EXCEEDED")
            assert "depth 4" in body["error"]["message"] and "at most 3" in body["error"]["message"]
            break
        token = body["access_token"]
        claims = decode(token).claims
        depths.append(claims["agent"]["delegation_depth"])
    assert depths == [1, 2, 3]
    assert claims["act"] == {"sub": "grandchild", "act": {"sub": "child", "act": {"sub": "parent"}}}


def test_depth_limit_per_agent_applies_to_its_whole_chain(emulator, wire):
    emulator.add_agent("root", "pw", scopes=CAPS, max_delegation_depth=1)
    emulator.add_agent("child", "pw", scopes=["x:y"], max_delegation_depth=5)
    emulator.add_agent("grandchild", "pw", scopes=["x:y"])
    first = _delegate(wire, _parent_token(wire, client_id="root"))
    assert first[0] == 200
    # the child allows 5 for itself, but the root's limit of 1 still binds the chain
    assert _code(_delegate(wire, first[1]["access_token"], child_agent_id="grandchild", ttl_seconds=30)) == (
        403,
        "DELEGATION_DEPTH_EXCEEDED",
    )
    emulator.add_agent("none", "pw", scopes=CAPS, max_delegation_depth=0)
    assert _code(_delegate(wire, _parent_token(wire, client_id="none"))) == (403, "DELEGATION_DEPTH_EXCEEDED")


def test_depth_limit_from_the_config_file(connect):
    cfg = {
        "delegation_depth_limit": 1,
        "agents": [
            {"client_id": "p", "client_secret": "pw", "scopes": CAPS},
            {"client_id": "child", "client_secret": "pw", "scopes": ["x:y"]},
            {"client_id": "grandchild", "client_secret": "pw", "scopes": ["x:y"]},
            {"client_id": "deep", "client_secret": "pw", "scopes": CAPS, "max_delegation_depth": 2},
        ],
    }
    with Emulator(config=cfg) as emu:
        h = connect(emu.url)
        first = _delegate(h, _parent_token(h, client_id="p"))
        assert first[0] == 200
        assert _code(_delegate(h, first[1]["access_token"], child_agent_id="grandchild", ttl_seconds=30)) == (
            403,
            "DELEGATION_DEPTH_EXCEEDED",
        )
        deep = _delegate(h, _parent_token(h, client_id="deep"))
        assert _delegate(h, deep[1]["access_token"], child_agent_id="grandchild", ttl_seconds=30)[0] == 200


def test_child_agent_must_exist_and_be_active(family, wire):
    token = _parent_token(wire)
    assert _code(_delegate(wire, token, child_agent_id="ghost")) == (404, "CHILD_AGENT_NOT_FOUND")
    family.set_status("child", "suspended")
    status, body = _delegate(wire, token)
    assert (status, body["error"]["code"]) == (403, "CHILD_AGENT_INACTIVE")
    assert "suspended" in body["error"]["message"]


def test_a_suspended_parent_agent_cannot_delegate_with_a_still_valid_token(family, wire):
    token = _parent_token(wire)
    family.set_status("parent", "suspended")
    status, body = _delegate(wire, token)
    assert (status, body["error"]["code"]) == (403, "PARENT_AGENT_INACTIVE")
    assert "suspended" in body["error"]["message"]
    family.set_status("parent", "active")
    assert _delegate(wire, token)[0] == 200


@pytest.mark.parametrize("ttl", [0, -5, 1.5, "60", True, None])
def test_ttl_must_be_a_positive_integer(family, wire, ttl):
    assert _code(_delegate(wire, _parent_token(wire), ttl_seconds=ttl)) == (400, "INVALID_TTL")


def test_ttl_within_the_parents_remaining_life(connect):
    clock = ManualClock()
    with Emulator(clock=clock) as emu:
        emu.add_agent("p", "pw", scopes=CAPS, token_ttl=300)
        emu.add_agent("child", "pw", scopes=["x:y"])
        h = connect(emu.url)
        token = _parent_token(h, client_id="p")
        clock.advance(100)
        status, body = _delegate(h, token, ttl_seconds=201)
        assert (status, body["error"]["code"]) == (400, "TTL_EXCEEDS_PARENT")
        assert _delegate(h, token, ttl_seconds=199)[0] == 200
        clock.advance(200)  # the parent has now expired
        assert _code(_delegate(h, token, ttl_seconds=1)) == (401, "TOKEN_EXPIRED")


@pytest.mark.parametrize(
    "body,word",
    [
        ([], "JSON object"),
        ({"capabilities": ["a.b"], "task_id": "t", "ttl_seconds": 5}, "child_agent_id"),
        ({"child_agent_id": "child", "capabilities": [], "task_id": "t", "ttl_seconds": 5}, "capabilities"),
        (
            {"child_agent_id": "child", "capabilities": "a.b", "task_id": "t", "ttl_seconds": 5},
            "capabilities",
        ),
        ({"child_agent_id": "child", "capabilities": ["a.b"], "ttl_seconds": 5}, "task_id"),
    ],
)
def test_malformed_delegation_requests_are_400(family, wire, body, word):
    status, answer = wire.json(
        "POST", "/oauth/delegate", body, headers={"Authorization": "Bearer " + _parent_token(wire)}
    )
    assert (status, answer["error"]["code"]) == (400, "INVALID_REQUEST")
    assert word in answer["error"]["message"]


def test_the_parent_token_is_verified(family, wire):
    good = _parent_token(wire)
    head, payload, sig = good.split(".")
    tampered = decode(good).claims.copy()
    tampered["scope"] = "admin:all"
    from oculus_lite.emulator._signing import b64url_encode

    forged = head + "." + b64url_encode(json.dumps(tampered).encode()) + "." + sig
    for token in ("", "not-a-jwt", forged, good[:-4] + "AAAA"):
        status, body = _delegate(wire, token) if token else wire.json("POST", "/oauth/delegate", {})
        assert (status, body["error"]["code"]) == (401, "INVALID_TOKEN"), token[:20]
    foreign = family.issue_token("parent", " ".join(CAPS), claims={"iss": "https://elsewhere.example"})
    assert _code(_delegate(wire, foreign)) == (401, "INVALID_TOKEN")
    expired = family.issue_token("parent", " ".join(CAPS), ttl=-1)
    assert _code(_delegate(wire, expired)) == (401, "TOKEN_EXPIRED")
    family.revoke(decode(good).claims["jti"])
    assert _code(_delegate(wire, good)) == (401, "TOKEN_REVOKED")


def test_revoking_a_parent_revokes_every_descendant(family, wire):
    root = _parent_token(wire)
    child = _delegate(wire, root)[1]["access_token"]
    grandchild = _delegate(wire, child, child_agent_id="grandchild", ttl_seconds=30)[1]["access_token"]
    sibling = _delegate(wire, root, child_agent_id="g3")[1]["access_token"]
    unrelated = _parent_token(wire)
    jti = {
        name: decode(tok).claims["jti"]
        for name, tok in locals().items()
        if name in ("root", "child", "grandchild", "sibling", "unrelated")
    }
    family.revoke(jti["child"])
    revoked = wire.json("GET", "/oauth/revoked-tokens")[1]["revoked_jtis"]
    assert revoked == [jti["child"], jti["grandchild"]]
    assert wire.json("POST", "/_emulator/revoke", {"jti": jti["root"]})[0] == 200
    revoked = wire.json("GET", "/oauth/revoked-tokens")[1]["revoked_jtis"]
    assert sorted(revoked) == sorted([jti["child"], jti["grandchild"], jti["root"], jti["sibling"]])
    assert jti["unrelated"] not in revoked
    assert _code(_delegate(wire, grandchild, child_agent_id="g4", ttl_seconds=10)) == (401, "TOKEN_REVOKED")
    by_jti = {t["jti"]: t["revoked"] for t in family.issued_tokens()}
    assert by_jti == {jti[n]: n != "unrelated" for n in jti}


def test_delegation_errors_follow_the_parents_error_style(emulator, wire):
    emulator.add_agent("rfc", "pw", scopes=CAPS, error_style="rfc6749")
    status, body = _delegate(wire, _parent_token(wire, client_id="rfc"), child_agent_id="ghost")
    assert status == 404 and body["error"] == "CHILD_AGENT_NOT_FOUND" and "ghost" in body["error_description"]


# ---------------------------------------------------------------------- enrollment
def _enroll(wire, token):
    status, _, raw = wire.request("POST", "/oauth/enroll", form={"enroll_token": token})
    return status, json.loads(raw)


def test_enroll_token_creates_the_agent_once(emulator, wire):
    status, minted = wire.json(
        "POST",
        "/_emulator/enroll-tokens",
        {
            "client_id": "new-agent",
            "scopes": ["stripe.customers.read"],
            "policies": [{"name": "extra", "scopes": ["crm:*"], "mode": "active"}],
            "constraints": {"max_results": 7},
            "ttl": 120,
        },
    )
    assert status == 201 and minted["enroll_token"].startswith("enr_")
    assert minted["expires_at"] == pytest.approx(emulator.clock.time() + 120, abs=5)
    status, creds = _enroll(wire, minted["enroll_token"])
    assert status == 200 and set(creds) == {"client_id", "client_secret"}
    assert creds["client_id"] == "new-agent"
    status, body = wire.token("new-agent", creds["client_secret"], None)
    assert (status, body["scope"]) == (200, "stripe.customers.read")
    agent = decode(body["access_token"]).claims["agent"]
    assert agent["constraints"] == {"max_results": 7}
    assert wire.token("new-agent", creds["client_secret"], "crm:contacts:read")[0] == 200
    status, body = _enroll(wire, minted["enroll_token"])
    assert (status, body["error"]["code"]) == (401, "ENROLL_TOKEN_USED")
    assert emulator.stats()["enroll_requests"] == 2


def test_enroll_token_without_client_id_generates_one(emulator, wire):
    token = emulator.mint_enroll_token(["db:read"])
    status, creds = _enroll(wire, token)
    assert status == 200 and creds["client_id"].startswith("agt_")
    assert wire.token(creds["client_id"], creds["client_secret"], "db:read")[0] == 200


@pytest.mark.parametrize("token", ["", "enr_unknown", "x" * 500])
def test_unknown_enroll_token_is_401_invalid(emulator, wire, token):
    assert _code(_enroll(wire, token)) == (401, "ENROLL_TOKEN_INVALID")


def test_enroll_token_expires_on_the_clock(connect):
    clock = ManualClock()
    with Emulator(clock=clock) as emu:
        h = connect(emu.url)
        token = emu.mint_enroll_token(["db:read"], client_id="late", ttl=30)
        clock.advance(30)
        status, body = _enroll(h, token)
        assert (status, body["error"]["code"]) == (401, "ENROLL_TOKEN_EXPIRED")
        assert emu.tokens.get_agent("late") is None
        fresh = emu.mint_enroll_token(["db:read"], client_id="late", ttl=30)
        clock.advance(29.9)
        assert _enroll(h, fresh)[0] == 200


def test_enroll_never_replaces_an_existing_agent(emulator, wire):
    token = emulator.mint_enroll_token(["db:read"], client_id="taken")
    emulator.add_agent("taken", "original", scopes=["db:*"])
    assert _code(_enroll(wire, token)) == (409, "AGENT_EXISTS")
    assert wire.token("taken", "original", "db:read")[0] == 200
    with pytest.raises(ValueError, match="already exists"):
        emulator.mint_enroll_token(["db:read"], client_id="taken")


@pytest.mark.parametrize(
    "body,word",
    [
        ({}, "scopes"),
        ({"scopes": "db:read"}, "scopes"),
        ({"scopes": ["db:read"], "ttl": 0}, "ttl"),
        ({"scopes": ["db:read"], "constraints": [1]}, "constraints"),
        ({"scopes": ["db:read"], "policies": [{"scopes": ["a:b"], "mode": "maybe"}]}, "mode"),
        ({"scopes": ["db:read"], "colour": "red"}, "colour"),
    ],
)
def test_bad_enroll_token_requests_are_400(emulator, wire, body, word):
    status, answer = wire.json("POST", "/_emulator/enroll-tokens", body)
    assert status == 400 and word in answer["error"]["message"]


def test_reset_forgets_enroll_tokens(emulator, wire):
    token = emulator.mint_enroll_token(["db:read"])
    emulator.reset()
    assert _code(_enroll(wire, token)) == (401, "ENROLL_TOKEN_INVALID")
