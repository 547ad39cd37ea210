"""The official SDK (goantiai-sdk 1.0.0) runs unchanged against the emulator, over real sockets:
startup, wrapped tools allowed and denied by scope and constraints, task contexts, the audit
emitter, delegation, delegated and enrolled clients, and stop()."""

import os

import pytest

if not os.environ.get("OCULUS_REQUIRE_OFFICIAL"):  # the tox env requires it: an ImportError fails there
    pytest.importorskip("oculus_sdk", reason="the official SDK is installed by `tox run -e official`")

from oculus_sdk import AuditEmitter, OculusClient  # type: ignore[import-not-found,import-untyped,unused-ignore]  # noqa: E402
from oculus_sdk.exceptions import (  # type: ignore[import-not-found,import-untyped,unused-ignore]  # noqa: E402
    CredentialError,
    DelegationError,
    OculusAuthError,
    PolicyViolationError,
    TokenRevokedException,
)

from oculus_lite._engine import ManualClock  # noqa: E402
from oculus_lite.emulator import Emulator  # noqa: E402
from oculus_lite.jwt import JwksVerifier, decode  # noqa: E402

from .conftest import (  # noqa: E402
    AGENT,
    CAPS,
    CONSTRAINTS,
    GITHUB_TOKEN,
    MAP,
    SECRET,
    STRIPE_KEY,
    events_by_tool,
    oculus_threads,
    service_token,
    wait_for,
)


def test_startup_loads_token_map_revocation_list_and_credentials(governed, started):
    assert started._started is True
    claims = started._jwt_claims
    assert claims["sub"] == AGENT and claims["scope"] == " ".join(CAPS)  # the default grant: no scope sent
    assert claims["agent"]["constraints"] == CONSTRAINTS and claims["agent"]["policy_id"] == "pol-official"
    assert claims["agent"]["task_id"] == "task-official"
    assert started._sdk_service_token.startswith("sst_")
    assert started._jwks == governed.jwks()
    assert started._capability_map == MAP
    assert started.credentials == {
        "stripe": {"stripe_secret_key": STRIPE_KEY},
        "github": {"token": GITHUB_TOKEN},
    }
    # the SDK's poller fetches the revocation list once more right after startup
    wait_for(lambda: governed.stats()["revocation_requests"] == 2, "the revocation poller's first fetch")
    stats = governed.stats()
    assert stats["token_requests_by_grant"] == {"client_credentials": 1}
    assert (stats["jwks_requests"], stats["capability_map_requests"], stats["credential_requests"]) == (
        1,
        1,
        2,
    )


def test_wrapped_tools_are_allowed_and_denied_by_scope_and_constraints(governed, started):
    calls = []

    @started.tool("stripe.customers.read")
    def get_customer(customer_id):
        calls.append(("get_customer", customer_id))
        return {"id": customer_id}

    @started.tool("stripe.charges.create")
    def create_charge(currency="usd"):
        calls.append(("create_charge", currency))
        return "ch_1"

    @started.tool("stripe.refunds.create")
    def refund(charge_id):
        calls.append(("refund", charge_id))

    get_customer_w, create_charge_w, refund_w = started.wrap_tools([get_customer, create_charge, refund])
    assert get_customer_w("cus_1") == {"id": "cus_1"}
    assert create_charge_w(amount_cents=4999) == "ch_1"  # under the 5,000 cap of the token's constraints
    with pytest.raises(PolicyViolationError) as over_cap:
        create_charge_w(amount_cents=5001)
    assert (over_cap.value.reason, over_cap.value.policy_id) == ("amount_limit_exceeded", "pol-official")
    with pytest.raises(PolicyViolationError) as out_of_scope:
        refund_w("ch_1")  # the agent's policy allows refunds, but its token was not granted them
    assert out_of_scope.value.reason == "capability_not_in_scope"
    assert out_of_scope.value.granted_capabilities == set(CAPS)
    assert calls == [("get_customer", "cus_1"), ("create_charge", "usd")]


def test_task_context_checks_and_credentials(governed, started):
    with started.task("task-ctx") as ctx:
        assert ctx.can("stripe.customers.read") is True
        assert ctx.can("stripe.refunds.create") is False
        assert ctx.credentials("github") == {"token": GITHUB_TOKEN}
        with pytest.raises(CredentialError):
            ctx.credentials("slack")
        with ctx.capability("stripe.customers.read") as creds:
            assert creds == {"stripe_secret_key": STRIPE_KEY}
        with pytest.raises(PolicyViolationError):
            with ctx.capability("stripe.refunds.create"):
                pass  # pragma: no cover - denied before the block


def test_the_audit_emitter_delivers_every_event_to_the_emulator(governed):
    client = OculusClient(AGENT, SECRET, governed.url, task_id="task-audit")
    client.startup()

    @client.tool("stripe.customers.read")
    def get_customer(customer_id, api_key="sk_should_be_redacted"):
        return customer_id

    @client.tool("github.repos.delete")
    def delete_repo(name):
        return name

    tools = client.wrap_tools([get_customer, delete_repo])
    for i in range(3):
        tools[0]("cus_{}".format(i))
    with pytest.raises(PolicyViolationError):
        tools[1]("prod")
    with client.task("t") as ctx, ctx.capability("github.issues.read"):
        pass
    client.stop()  # the emitter's final flush posts the buffered events
    by_tool = events_by_tool(governed)
    assert sorted(by_tool) == ["ctx.capability('github.issues.read')", "delete_repo", "get_customer"]
    assert [e["tool_args_summary"]["customer_id"] for e in by_tool["get_customer"]] == [
        "cus_0",
        "cus_1",
        "cus_2",
    ]
    assert all(e["tool_args_summary"]["api_key"] == "[REDACTED]" for e in by_tool["get_customer"])
    (denied,) = by_tool["delete_repo"]
    assert (denied["decision"], denied["reason"], denied["capability"]) == (
        "deny",
        "capability_not_in_scope",
        "github.repos.delete",
    )
    for event in governed.audit_events():
        assert event["event_type"] == "tool_invocation" and event["agent_id"] == AGENT
        assert event["task_id"] == "task-audit" and event["sdk_version"] == "2.0.0"
    stats = governed.stats()
    assert (stats["audit_events"], stats["audit_duplicates"]) == (5, 0)
    assert stats["audit_requests"] >= 1


def test_a_standalone_audit_emitter_posts_with_the_sdk_service_token(governed):
    sst = service_token(governed, AGENT, SECRET)
    emitter = AuditEmitter(governed.url, sst, AGENT)
    for i in range(150):  # more than one batch of 100
        emitter.emit(emitter.build_tool_event("stripe.customers.read", "allow", "allowed", "t{}".format(i)))
    emitter.start()  # its thread flushes one batch at once, then one every 5 s
    wait_for(lambda: len(governed.audit_events()) >= 100, "the emitter's first batch")
    emitter.stop()  # ... and the final flush the rest
    assert [e["tool_name"] for e in governed.audit_events()] == ["t{}".format(i) for i in range(150)]
    # a wrong service token: the emulator refuses the batch (401), and this emitter drops it
    bad = AuditEmitter(governed.url, "sst_wrong", AGENT)
    bad.emit(bad.build_tool_event("x.y", "allow", "allowed", "lost"))
    bad.stop()
    assert len(governed.audit_events()) == 150


def test_delegate_returns_a_child_token_the_emulator_accepts(governed, started):
    child = started.delegate(
        "child-agent", ["stripe.customers.read"], "task-child", 300, {"max_amount_cents": 100}
    )
    verifier = JwksVerifier(governed.url, issuer=governed.url)
    try:
        claims = verifier.verify(child)
    finally:
        verifier.close()
    assert claims["sub"] == "child-agent" and claims["scope"] == "stripe.customers.read"
    assert claims["agent"]["delegation_depth"] == 1 and claims["agent"]["task_id"] == "task-child"
    assert claims["agent"]["constraints"] == dict(CONSTRAINTS, max_amount_cents=100)
    assert claims["act"] == {"sub": AGENT} and claims["agent"]["parent_jti"] == started._jwt_claims["jti"]
    # the emulator accepts the child token as a parent in its turn (it verifies it first)
    holder = OculusClient.from_delegation_token(child, governed.url, started._sdk_service_token)
    try:
        grandchild = holder.delegate("grandchild-agent", ["stripe.customers.read"], "task-gc", 60)
    finally:
        holder.stop()
    second = decode(grandchild).claims
    assert (second["sub"], second["agent"]["delegation_depth"]) == ("grandchild-agent", 2)
    assert second["act"] == {"sub": "child-agent", "act": {"sub": AGENT}}


@pytest.mark.parametrize(
    "capabilities,ttl,constraints,reason",
    [
        (["stripe.refunds.create"], 60, None, "CAPABILITY_ESCALATION"),
        (["stripe.customers.read"], 60, {"max_amount_cents": 9999}, "CONSTRAINT_ESCALATION"),
        (["stripe.customers.read"], 60, {"task_context_required": False}, "CONSTRAINT_ESCALATION"),
        (["stripe.customers.read"], 10_000, None, "TTL_EXCEEDS_PARENT"),
        (["stripe.customers.read"], 0, None, "INVALID_TTL"),
    ],
)
def test_escalations_reach_the_official_delegation_error(
    governed, started, capabilities, ttl, constraints, reason
):
    with pytest.raises(DelegationError) as info:
        started.delegate("child-agent", capabilities, "task-x", ttl, constraints)
    assert info.value.reason == reason


def test_depth_limit_and_missing_child_reach_the_official_delegation_error(governed, started):
    governed.add_agent(AGENT, SECRET, scopes=CAPS, default_scopes=CAPS, max_delegation_depth=0)
    client = OculusClient(AGENT, SECRET, governed.url)
    client.startup()
    try:
        with pytest.raises(DelegationError) as info:
            client.delegate("child-agent", ["stripe.customers.read"], "t", 60)
        assert info.value.reason == "DELEGATION_DEPTH_EXCEEDED"
    finally:
        client.stop()
    with pytest.raises(DelegationError) as info:
        started.delegate("nobody", ["stripe.customers.read"], "t", 60)
    assert info.value.reason == "CHILD_AGENT_NOT_FOUND"


def test_from_delegation_token_enforces_the_delegated_scope(governed, started, stop_later):
    token = started.delegate("child-agent", ["stripe.customers.read"], "task-deleg", 300)
    child = stop_later(OculusClient.from_delegation_token(token, governed.url, started._sdk_service_token))
    assert child._started is True and child.task_id == "task-deleg"
    assert child._jwt_claims["sub"] == "child-agent" and child._jwt_claims["agent"]["delegation_depth"] == 1
    assert child.credentials["stripe"] == {"stripe_secret_key": STRIPE_KEY}

    @child.tool("stripe.customers.read")
    def read(customer_id):
        return customer_id

    @child.tool("stripe.charges.create")
    def charge():
        return "ch"  # pragma: no cover - denied

    read_w, charge_w = child.wrap_tools([read, charge])
    assert read_w("cus_9") == "cus_9"
    with pytest.raises(PolicyViolationError) as info:
        charge_w()
    assert info.value.reason == "capability_not_in_scope"
    # revoking the parent token revokes the child: the child's next poll of the list sees it
    governed.revoke(started._jwt_claims["jti"])
    child._startup_fetch_revocation_list()  # the poll the SDK runs every 15 s, run now
    with pytest.raises(TokenRevokedException):
        read_w("cus_9")
    child.stop()  # flushes its audit events (posted with the parent's service token)
    events = [e for e in governed.audit_events() if e["agent_id"] == "child-agent"]
    assert [(e["tool_name"], e["decision"], e["delegation_depth"], e["task_id"]) for e in events] == [
        ("read", "allow", 1, "task-deleg"),
        ("charge", "deny", 1, "task-deleg"),
    ]


def test_from_enroll_token_gives_a_working_client_once(governed, stop_later):
    token = governed.mint_enroll_token(["stripe.customers.read"], client_id="enrolled-agent")
    client = stop_later(OculusClient.from_enroll_token(token, governed.url))
    assert client.client_id == "enrolled-agent" and client.client_secret.startswith("sk_emu_")
    client.startup()
    assert (
        client._jwt_claims["sub"] == "enrolled-agent"
        and client._jwt_claims["scope"] == "stripe.customers.read"
    )
    assert client.credentials["stripe"] == {"stripe_secret_key": STRIPE_KEY}
    with pytest.raises(OculusAuthError, match="ENROLL_TOKEN_USED"):
        OculusClient.from_enroll_token(token, governed.url)
    with pytest.raises(OculusAuthError, match="ENROLL_TOKEN_INVALID"):
        OculusClient.from_enroll_token("enr_forged", governed.url)
    assert governed.stats()["enroll_requests"] == 3


def test_an_expired_enroll_token_is_refused_with_its_code():
    clock = ManualClock()
    with Emulator(clock=clock) as emu:
        token = emu.mint_enroll_token(["db:read"], ttl=60)
        clock.advance(61)
        with pytest.raises(OculusAuthError, match="ENROLL_TOKEN_EXPIRED"):
            OculusClient.from_enroll_token(token, emu.url)


def test_stop_ends_every_official_thread(governed):
    before = oculus_threads()
    client = OculusClient(AGENT, SECRET, governed.url)
    client.startup()
    assert sorted(set(oculus_threads()) - set(before)) == [
        "oculus-audit-flusher",
        "oculus-refresh",
        "oculus-trl-poller",
    ]
    client.stop()
    assert oculus_threads() == before
