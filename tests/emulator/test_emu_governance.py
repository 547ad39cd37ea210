"""Capability maps (ETag/304, per-agent override), integration credentials, the audit sink
(batch limit, idempotent resend), their admin routes, counters, error styles and faults."""

import http.client
import json

import pytest

from oculus_lite.emulator import Emulator

ADMIN = "adm-T0KEN-gov"
STRIPE = {
    "stripe": {
        "capabilities": {"stripe.customers.read": {"risk": "low"}, "stripe.charges.create": {"risk": "high"}},
        "deny_always": ["stripe.payouts.create"],
    }
}
GITHUB = {"github": {"capabilities": {"github.issues.read": {}}, "deny_always": []}}


def _sst(wire, emulator, client_id="gov"):
    if emulator.tokens.get_agent(client_id) is None:
        emulator.add_agent(client_id, "pw", scopes=["stripe.*", "github.*"])
    status, body = wire.token(client_id, "pw", "stripe.customers.read")
    assert status == 200
    return {"Authorization": "Bearer " + body["sdk_service_token"]}


def _events(n, prefix="e"):
    return [
        {"event_type": "tool_invocation", "event_id": "{}-{}".format(prefix, i), "n": i} for i in range(n)
    ]


# ---------------------------------------------------------------------- capability maps
def test_capability_map_with_strong_etag_and_304(emulator, wire):
    emulator.set_capability_map(STRIPE)
    auth = _sst(wire, emulator)
    status, headers, raw = wire.request("GET", "/v1/sync/capability-maps", headers=auth)
    etag = headers["ETag"]
    assert status == 200 and json.loads(raw) == {"integrations": STRIPE}
    assert etag.startswith('"') and etag.endswith('"') and not etag.startswith("W/")
    status, headers, raw = wire.request(
        "GET", "/v1/sync/capability-maps", headers=dict(auth, **{"If-None-Match": etag})
    )
    assert (status, raw, headers["ETag"]) == (304, b"", etag)
    # a weak validator of the same tag and a list containing it also match (RFC 9110 weak comparison)
    for inm in ("W/" + etag, '"other", ' + etag, "*"):
        assert (
            wire.request("GET", "/v1/sync/capability-maps", headers=dict(auth, **{"If-None-Match": inm}))[0]
            == 304
        )
    emulator.set_capability_map(dict(STRIPE, **GITHUB))
    status, headers, raw = wire.request(
        "GET", "/v1/sync/capability-maps", headers=dict(auth, **{"If-None-Match": etag})
    )
    assert (
        status == 200
        and headers["ETag"] != etag
        and set(json.loads(raw)["integrations"]) == {"stripe", "github"}
    )
    stats = emulator.stats()
    assert (stats["capability_map_requests"], stats["capability_map_not_modified"]) == (6, 4)


def test_no_map_configured_is_an_empty_map(emulator, wire):
    auth = _sst(wire, emulator)
    status, _, raw = wire.request("GET", "/v1/sync/capability-maps", headers=auth)
    assert (status, json.loads(raw)) == (200, {"integrations": {}})


def test_a_map_for_one_agent_overrides_the_global_one(emulator, wire):
    emulator.set_capability_map(STRIPE)
    assert wire.json(
        "POST", "/_emulator/capability-maps", {"client_id": "special", "integrations": GITHUB}
    ) == (
        200,
        {"client_id": "special", "integrations": ["github"]},
    )
    other = _sst(wire, emulator, "other")
    special = _sst(wire, emulator, "special")
    assert wire.json("GET", "/v1/sync/capability-maps", headers=other) == (200, {"integrations": STRIPE})
    assert wire.json("GET", "/v1/sync/capability-maps", headers=special) == (200, {"integrations": GITHUB})
    etag_other = wire.request("GET", "/v1/sync/capability-maps", headers=other)[1]["ETag"]
    etag_special = wire.request("GET", "/v1/sync/capability-maps", headers=special)[1]["ETag"]
    assert etag_other != etag_special


def test_missing_deny_always_and_capabilities_default_to_empty(emulator, wire):
    emulator.set_capability_map({"slack": {}, "s3": {"capabilities": {"s3.get": {}}}})
    auth = _sst(wire, emulator)
    assert wire.json("GET", "/v1/sync/capability-maps", headers=auth)[1] == {
        "integrations": {
            "slack": {"capabilities": {}, "deny_always": []},
            "s3": {"capabilities": {"s3.get": {}}, "deny_always": []},
        }
    }


@pytest.mark.parametrize(
    "integrations,word",
    [
        ([], "integrations must be an object"),
        ({"s": []}, r"integrations\['s'\] must be an object"),
        ({"s": {"capabilities": ["a.b"]}}, "capabilities must be an object"),
        ({"s": {"deny_always": "a.b"}}, "deny_always must be a list"),
        ({"s": {"deny_always": [1]}}, "deny_always must be a list"),
        ({"s": {"caps": {}}}, "unknown field"),
        ({"": {}}, "non-empty"),
    ],
)
def test_malformed_maps_are_refused(emulator, wire, integrations, word):
    status, body = wire.json("POST", "/_emulator/capability-maps", {"integrations": integrations})
    assert status == 400 and body["error"]["code"] == "invalid_request"
    with pytest.raises(ValueError, match=word):
        emulator.set_capability_map(integrations)


def test_capability_map_admin_route_refuses_unknown_and_missing_fields(emulator, wire):
    status, body = wire.json("POST", "/_emulator/capability-maps", {"integrations": {}, "client": "x"})
    assert status == 400 and "client" in body["error"]["message"]
    status, body = wire.json("POST", "/_emulator/capability-maps", {"client_id": "x"})
    assert status == 400 and "integrations" in body["error"]["message"]


# ---------------------------------------------------------------------- credentials
def test_credentials_fetch_404_and_403(emulator, wire):
    emulator.set_capability_map(dict(STRIPE, **GITHUB))
    emulator.set_credential("stripe", "stripe_secret_key", "sk_live_stripe")
    auth = _sst(wire, emulator)
    assert wire.json("GET", "/v1/credentials/fetch?integration=stripe", headers=auth) == (
        200,
        {"credential_type": "stripe_secret_key", "value": "sk_live_stripe"},
    )
    status, body = wire.json("GET", "/v1/credentials/fetch?integration=github", headers=auth)
    assert (status, body["error"]["code"]) == (404, "credential_not_found")
    status, body = wire.json("GET", "/v1/credentials/fetch?integration=slack", headers=auth)
    assert (status, body["error"]["code"]) == (403, "integration_not_allowed")
    status, body = wire.json("GET", "/v1/credentials/fetch", headers=auth)
    assert (status, body["error"]["code"]) == (400, "invalid_request")
    assert emulator.stats()["credential_requests"] == 4


def test_credentials_rotate_and_per_agent_override(emulator, wire):
    emulator.set_capability_map(STRIPE)
    assert wire.json(
        "POST",
        "/_emulator/credentials",
        {"integration": "stripe", "credential_type": "api_key", "value": "sk_one"},
    ) == (200, {"integration": "stripe", "credential_type": "api_key", "client_id": None})
    auth = _sst(wire, emulator)
    special = _sst(wire, emulator, "special")
    emulator.set_credential("stripe", "restricted_key", "rk_special", client_id="special")
    assert wire.json("GET", "/v1/credentials/fetch?integration=stripe", headers=auth)[1]["value"] == "sk_one"
    assert wire.json("GET", "/v1/credentials/fetch?integration=stripe", headers=special)[1] == {
        "credential_type": "restricted_key",
        "value": "rk_special",
    }
    status, raw_body = wire.json(
        "POST",
        "/_emulator/credentials",
        {"integration": "stripe", "credential_type": "api_key", "value": "sk_two"},
    )
    assert status == 200 and "sk_two" not in json.dumps(raw_body)  # the value is never echoed
    assert wire.json("GET", "/v1/credentials/fetch?integration=stripe", headers=auth)[1]["value"] == "sk_two"


@pytest.mark.parametrize(
    "body,word",
    [
        ({"integration": "s", "credential_type": "t"}, "value"),
        ({"integration": "s", "credential_type": "t", "value": ""}, "value"),
        ({"integration": "s", "credential_type": 3, "value": "v"}, "credential_type"),
        ({"integration": "s", "credential_type": "t", "value": "v", "secret": 1}, "secret"),
    ],
)
def test_bad_credentials_are_refused(emulator, wire, body, word):
    status, answer = wire.json("POST", "/_emulator/credentials", body)
    assert status == 400 and word in answer["error"]["message"]


def test_credential_values_never_reach_the_log():
    import io

    log = io.StringIO()
    with Emulator(log=log) as emu:
        from tests.emulator.conftest import Http

        h = Http(emu.url)
        emu.set_capability_map(STRIPE)
        emu.set_credential("stripe", "api_key", "sk_live_SECRET_VALUE")
        emu.add_agent("a", "pw", scopes=["stripe.*"])
        sst = h.token("a", "pw", "stripe.customers.read")[1]["sdk_service_token"]
        assert (
            h.request(
                "GET", "/v1/credentials/fetch?integration=stripe", headers={"Authorization": "Bearer " + sst}
            )[0]
            == 200
        )
        h.close()
    text = log.getvalue()
    assert "GET /v1/credentials/fetch 200 " in text
    assert "sk_live_SECRET_VALUE" not in text and sst not in text


# ---------------------------------------------------------------------- audit
def test_audit_batch_is_accepted_and_read_back_in_order(emulator, wire):
    auth = _sst(wire, emulator)
    first, second = _events(3, "a"), _events(2, "b") + [{"event_type": "custom", "nested": {"x": [1, 2]}}]
    assert wire.json("POST", "/v1/audit/events/batch", {"events": first}, headers=auth) == (
        202,
        {"accepted": 3, "duplicates": 0},
    )
    assert wire.json("POST", "/v1/audit/events/batch", {"events": second}, headers=auth) == (
        202,
        {"accepted": 3, "duplicates": 0},
    )
    assert wire.json("GET", "/_emulator/audit") == (200, {"events": first + second})
    assert emulator.audit_events() == first + second
    stats = emulator.stats()
    assert (stats["audit_requests"], stats["audit_events"], stats["audit_duplicates"]) == (2, 6, 0)


def test_a_resent_batch_is_accepted_once(emulator, wire):
    auth = _sst(wire, emulator)
    batch = _events(5)
    assert wire.json("POST", "/v1/audit/events/batch", {"events": batch}, headers=auth)[1] == {
        "accepted": 5,
        "duplicates": 0,
    }
    overlap = batch[3:] + _events(7)[5:]  # e-3, e-4 again, then e-5, e-6 new
    assert wire.json("POST", "/v1/audit/events/batch", {"events": overlap}, headers=auth)[1] == {
        "accepted": 2,
        "duplicates": 2,
    }
    # the same id twice inside one batch counts once too; events without an id are always kept
    same = [{"event_id": "z"}, {"event_id": "z"}, {"event_type": "x"}, {"event_type": "x"}]
    assert wire.json("POST", "/v1/audit/events/batch", {"events": same}, headers=auth)[1] == {
        "accepted": 3,
        "duplicates": 1,
    }
    ids = [e.get("event_id") for e in emulator.audit_events()]
    assert ids == ["e-0", "e-1", "e-2", "e-3", "e-4", "e-5", "e-6", "z", None, None]
    stats = emulator.stats()
    assert (stats["audit_events"], stats["audit_duplicates"]) == (10, 3)


def test_audit_batch_limit_is_100(emulator, wire):
    auth = _sst(wire, emulator)
    assert wire.json("POST", "/v1/audit/events/batch", {"events": _events(100)}, headers=auth)[0] == 202
    status, body = wire.json("POST", "/v1/audit/events/batch", {"events": _events(101, "x")}, headers=auth)
    assert (status, body["error"]["code"]) == (400, "invalid_audit_batch")
    assert "101" in body["error"]["message"] and "100" in body["error"]["message"]
    assert len(emulator.audit_events()) == 100  # nothing of the refused batch was kept


@pytest.mark.parametrize(
    "body,word",
    [
        ([], "events"),
        ({}, "events"),
        ({"events": {"a": 1}}, "events"),
        ({"events": [{"event_type": "x"}, "not an object"]}, r"events[1]"),
        ({"events": [{"event_id": 7}]}, "event_id"),
        ({"events": [{"event_id": ""}]}, "event_id"),
        ({"events": [{"event_id": "x" * 257}]}, "event_id"),
        ({"events": [{"event_type": ["x"]}]}, "event_type"),
    ],
)
def test_malformed_batches_are_400_and_store_nothing(emulator, wire, body, word):
    auth = _sst(wire, emulator)
    status, answer = wire.json("POST", "/v1/audit/events/batch", body, headers=auth)
    assert (status, answer["error"]["code"]) == (400, "invalid_audit_batch")
    assert word in answer["error"]["message"]
    assert emulator.audit_events() == []


def test_invalid_json_audit_body_is_400(emulator, wire):
    auth = _sst(wire, emulator)
    wire.conn.request(
        "POST",
        "/v1/audit/events/batch",
        body=b"{nope",
        headers=dict(auth, **{"Content-Type": "application/json"}),
    )
    resp = wire.conn.getresponse()
    assert (resp.status, json.loads(resp.read())["error"]["code"]) == (400, "invalid_audit_batch")


def test_absurdly_nested_json_is_400_not_an_emulator_error(emulator, wire):
    auth = _sst(wire, emulator)
    deep = b"[" * 100_000 + b"]" * 100_000
    for path, code in (
        ("/v1/audit/events/batch", "invalid_audit_batch"),
        ("/oauth/delegate", "INVALID_REQUEST"),
    ):
        wire.conn.request("POST", path, body=deep, headers=dict(auth, **{"Content-Type": "application/json"}))
        resp = wire.conn.getresponse()
        assert (resp.status, json.loads(resp.read())["error"]["code"]) == (400, code), path


def test_errors_follow_the_agents_error_style(emulator, wire):
    emulator.add_agent("rfc", "pw", scopes=["stripe.*"], error_style="rfc6749")
    auth = _sst(wire, emulator, "rfc")
    status, body = wire.json("GET", "/v1/credentials/fetch?integration=stripe", headers=auth)
    assert (
        status == 403 and body["error"] == "integration_not_allowed" and "stripe" in body["error_description"]
    )
    status, body = wire.json("POST", "/v1/audit/events/batch", {"events": "x"}, headers=auth)
    assert status == 400 and body["error"] == "invalid_audit_batch"


def test_new_routes_refuse_other_methods(emulator, wire):
    for method, path, allowed in (
        ("POST", "/v1/sync/capability-maps", "GET"),
        ("POST", "/v1/credentials/fetch", "GET"),
        ("GET", "/v1/audit/events/batch", "POST"),
        ("GET", "/oauth/delegate", "POST"),
        ("GET", "/oauth/enroll", "POST"),
        ("POST", "/_emulator/audit", "GET"),
        ("GET", "/_emulator/capability-maps", "POST"),
    ):
        status, headers, _ = wire.request(method, path)
        assert (status, headers["Allow"]) == (405, allowed), path


def test_admin_token_guards_every_new_admin_route(connect):
    with Emulator(admin_token=ADMIN) as emu:
        h = connect(emu.url)
        calls = [
            ("POST", "/_emulator/capability-maps", {"integrations": STRIPE}),
            (
                "POST",
                "/_emulator/credentials",
                {"integration": "stripe", "credential_type": "k", "value": "v"},
            ),
            ("GET", "/_emulator/audit", None),
            ("POST", "/_emulator/enroll-tokens", {"scopes": ["db:read"]}),
            ("GET", "/_emulator/tokens", None),
        ]
        for method, path, body in calls:
            for headers in ({}, {"Authorization": "Bearer wrong"}):
                status, _, raw = h.request(method, path, body, headers=headers)
                assert status == 401 and json.loads(raw)["error"]["code"] == "unauthorized", path
        assert emu.governance.integrations_for("anyone") == {} and emu.audit_events() == []
        good = {"Authorization": "Bearer " + ADMIN}
        expected = [200, 200, 200, 201, 200]
        assert [h.request(m, p, b, headers=good)[0] for m, p, b in calls] == expected


def test_faults_apply_to_the_new_routes(emulator, wire):
    emulator.set_capability_map(STRIPE)
    emulator.set_credential("stripe", "api_key", "sk")
    auth = _sst(wire, emulator)
    emulator.set_faults(
        [
            {"path": "/v1/audit/events/batch", "kind": "status", "status": 503, "next": 1},
            {"path": "/v1/sync/*", "kind": "status", "status": 500, "next": 1},
            {"path": "/v1/credentials/fetch", "kind": "close", "next": 1},
            {"path": "/oauth/delegate", "kind": "status", "status": 429, "retry_after": 3, "next": 1},
            {"path": "/oauth/enroll", "kind": "badjson", "next": 1},
        ]
    )
    status, body = wire.json("POST", "/v1/audit/events/batch", {"events": _events(2)}, headers=auth)
    assert (status, body["error"]["code"]) == (503, "injected_fault")
    assert emulator.audit_events() == []  # the faulted batch never reached the sink
    assert wire.json("POST", "/v1/audit/events/batch", {"events": _events(2)}, headers=auth)[1] == {
        "accepted": 2,
        "duplicates": 0,
    }
    assert wire.request("GET", "/v1/sync/capability-maps", headers=auth)[0] == 500
    assert wire.request("GET", "/v1/sync/capability-maps", headers=auth)[0] == 200
    from tests.emulator.conftest import Http

    fresh = Http(emulator.url)
    with pytest.raises((http.client.HTTPException, ConnectionError)):
        fresh.request("GET", "/v1/credentials/fetch?integration=stripe", headers=auth)
    fresh.close()
    assert wire.request("GET", "/v1/credentials/fetch?integration=stripe", headers=auth)[0] == 200
    status, headers, _ = wire.request("POST", "/oauth/delegate", body={})
    assert (status, headers["Retry-After"]) == (429, "3")
    status, _, raw = wire.request("POST", "/oauth/enroll", form={"enroll_token": "x"})
    assert status == 200
    with pytest.raises(ValueError):
        json.loads(raw)
    assert emulator.stats()["faults_fired"] == 5


def test_reset_clears_maps_credentials_and_audit(emulator, wire):
    emulator.set_capability_map(STRIPE)
    emulator.set_credential("stripe", "api_key", "sk")
    auth = _sst(wire, emulator)
    wire.json("POST", "/v1/audit/events/batch", {"events": _events(3)}, headers=auth)
    emulator.reset()
    assert emulator.audit_events() == [] and emulator.stats()["audit_events"] == 0
    auth = _sst(wire, emulator)
    assert wire.json("GET", "/v1/sync/capability-maps", headers=auth)[1] == {"integrations": {}}
    # ids seen before the reset are new again
    assert (
        wire.json("POST", "/v1/audit/events/batch", {"events": _events(3)}, headers=auth)[1]["accepted"] == 3
    )
