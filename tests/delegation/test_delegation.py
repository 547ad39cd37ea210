"""Delegation end to end against the emulator: local checks with the server's codes, the typed
token, the child client that can never escalate, enrollment, and the CLI."""

import asyncio
import json
import os
from typing import Any, Dict, List

import pytest

from oculus_lite import (
    Client,
    ClientClosedError,
    DelegationError,
    EnrollmentError,
    ManualClock,
    NetworkError,
    OculusError,
    PolicyViolationError,
    TokenExpiredError,
)
from oculus_lite.emulator import Emulator
from oculus_lite.governance._delegation import DelegatedToken

PARENT_SCOPES = ["stripe.charges.create", "stripe.customers.read", "crm.contacts.read"]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def emu(clock: ManualClock) -> Any:
    with Emulator(clock=clock) as emu:
        emu.add_agent("parent", "parent-secret", scopes=PARENT_SCOPES, constraints={"max_amount_cents": 5000})
        emu.add_agent("child", "child-secret", scopes=["crm.contacts.read"])
        emu.add_agent("grandchild", "gc-secret", scopes=["crm.contacts.read"])
        yield emu


@pytest.fixture
def parent(emu: Any, clock: ManualClock) -> Any:
    with Client("parent", "parent-secret", emu.url, clock=clock, revocation_interval=None) as client:
        yield client


def _delegations(emu: Any) -> int:
    return int(emu.stats()["delegate_requests"])


def test_delegate_returns_a_typed_token_usable_as_the_string(emu: Any, parent: Any) -> None:
    token = parent.delegate("child", ["stripe.customers.read"], "task-7", 120, {"max_amount_cents": 100})
    assert (
        isinstance(token, DelegatedToken)
        and token == str(token)
        and f"Bearer {token}" == "Bearer " + str(token)
    )
    assert token.capabilities == ("stripe.customers.read",) and token.depth == 1 and token.jti
    assert str(token) not in repr(token) and "jti=" in repr(token)
    issued = {t["jti"]: t for t in emu.issued_tokens()}[token.jti]
    assert issued["sub"] == "child" and issued["delegation_depth"] == 1


@pytest.mark.parametrize(
    "arguments, code",
    [
        ((["admin.delete_everything"], "t", 60, None), "CAPABILITY_ESCALATION"),
        ((["stripe.charges.create"], "t", 60, {"max_amount_cents": 999999}), "CONSTRAINT_ESCALATION"),
        ((["stripe.charges.create"], "t", 10**7, None), "TTL_EXCEEDS_PARENT"),
        ((["stripe.charges.create"], "t", 0, None), "INVALID_TTL"),
        ((["stripe.charges.create"], "t", 60, {"max_amount_cents": "lots"}), "INVALID_CONSTRAINTS"),
    ],
)
def test_local_checks_refuse_before_sending_with_the_servers_codes(
    emu: Any, parent: Any, arguments: Any, code: str
) -> None:
    with pytest.raises(DelegationError) as info:
        parent.delegate("child", *arguments)
    assert info.value.reason == code and info.value.code == code
    assert _delegations(emu) == 0


def test_the_server_refuses_what_only_it_knows(emu: Any, parent: Any) -> None:
    with pytest.raises(DelegationError) as info:
        parent.delegate("no-such-agent", ["stripe.customers.read"], "t", 60)
    assert info.value.reason == "CHILD_AGENT_NOT_FOUND" and _delegations(emu) == 1


def test_delegation_depth_is_limited(emu: Any, clock: ManualClock) -> None:
    emu.add_agent("a0", "s0", scopes=["crm.contacts.read"], max_delegation_depth=2, sdk_token_ttl=3600)
    for name in ("a1", "a2", "a3"):
        emu.add_agent(name, "s-" + name, scopes=["crm.contacts.read"])
    holder = Client("a0", "s0", emu.url, clock=clock, revocation_interval=None)
    tokens: List[str] = []
    for child in ("a1", "a2", "a3"):
        try:
            tokens.append(holder.delegate(child, ["crm.contacts.read"], "t", 60 - 10 * len(tokens)))
        except DelegationError as exc:
            assert exc.reason == "DELEGATION_DEPTH_EXCEEDED" and len(tokens) == 2
            break
        holder.stop()
        holder = Client.from_delegation_token(tokens[-1], emu.url, clock=clock, revocation_interval=None)
    else:
        pytest.fail("a depth-3 delegation was accepted under a limit of 2")
    holder.stop()


def test_an_rfc6749_error_body_is_a_delegation_error_too(emu: Any, clock: ManualClock) -> None:
    emu.add_agent("rfc", "rfc-secret", scopes=PARENT_SCOPES, error_style="rfc6749")
    with Client("rfc", "rfc-secret", emu.url, clock=clock, revocation_interval=None) as client:
        with pytest.raises(DelegationError) as info:
            client.delegate("no-such-agent", ["crm.contacts.read"], "t", 60)
    assert info.value.reason == "CHILD_AGENT_NOT_FOUND"


def test_a_network_failure_is_a_network_error(emu: Any, parent: Any) -> None:
    parent.startup()
    emu.set_faults([{"path": "/oauth/delegate", "kind": "close"}])
    with pytest.raises(NetworkError):
        parent.delegate("child", ["crm.contacts.read"], "t", 60)


def test_adelegate(emu: Any, parent: Any) -> None:
    token = asyncio.run(parent.adelegate("child", ["crm.contacts.read"], "t", 60))
    assert token.depth == 1


# ---------------------------------------------------------------- the child client


def test_the_child_never_escalates_even_with_the_parents_variables_set(
    emu: Any, parent: Any, clock: ManualClock, monkeypatch: Any
) -> None:
    """Flaw S1: the official child read OCULUS_CLIENT_* and swapped its token for the parent's."""
    for name, value in (
        ("OCULUS_CLIENT_ID", "parent"),
        ("OCULUS_CLIENT_SECRET", "parent-secret"),
        ("AGENT_CLIENT_ID", "parent"),
        ("AGENT_CLIENT_SECRET", "parent-secret"),
    ):
        monkeypatch.setenv(name, value)
    token = parent.delegate("child", ["crm.contacts.read"], "task-1", 90)
    before = emu.stats()["token_requests"]
    child = Client.from_delegation_token(token, emu.url, clock=clock, revocation_interval=None)

    @child.tool("crm.contacts.read")
    def read() -> str:
        return "contacts"

    @child.tool("stripe.charges.create")
    def charge(amount_cents: int) -> int:
        return amount_cents

    for _ in range(8):  # across the token's whole life: 80 s of 90
        assert read() == "contacts"
        with pytest.raises(PolicyViolationError):
            charge(1)
        state = child._governance_state()
        assert state.agent_id == "child" and state.scopes == {"crm.contacts.read"}
        assert state.delegation_depth == 1
        clock.advance(10)
    clock.advance(11)  # past exp: no leeway for a delegated token
    with pytest.raises(TokenExpiredError) as info:
        read()
    assert "startup" not in str(info.value)
    assert emu.stats()["token_requests"] == before  # never a credential request, empty or not
    child.stop()
    with pytest.raises(ClientClosedError):
        read()


def test_a_forged_or_tampered_delegation_token_is_refused(emu: Any, parent: Any, clock: ManualClock) -> None:
    """Flaw S3: the official from_delegation_token decoded claims without verifying them."""
    genuine = str(parent.delegate("child", ["crm.contacts.read"], "t", 60))
    header, payload, signature = genuine.split(".")
    import base64

    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["scope"] = "stripe.charges.create crm.contacts.read"
    forged_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    for token in (header + "." + forged_payload + "." + signature, "not-a-jwt"):
        child = Client.from_delegation_token(token, emu.url, clock=clock, revocation_interval=None)
        with pytest.raises(OculusError):
            child.startup()
        child.stop()


def test_a_renew_callback_keeps_the_child_going(emu: Any, parent: Any, clock: ManualClock) -> None:
    renewals: List[int] = []

    def renew() -> str:
        renewals.append(1)
        return str(parent.delegate("child", ["crm.contacts.read"], "t", 60))

    first = parent.delegate("child", ["crm.contacts.read"], "t", 60)
    child = Client.from_delegation_token(first, emu.url, clock=clock, revocation_interval=None, renew=renew)

    @child.tool("crm.contacts.read")
    def read() -> str:
        return "ok"

    assert read() == "ok"
    clock.advance(61)
    assert read() == "ok" and renewals == [1]
    assert child._governance_state().jti != first.jti
    child.stop()


def test_the_childs_calls_are_audited_with_its_own_identity(
    emu: Any, parent: Any, clock: ManualClock
) -> None:
    parent.startup()
    service_token = parent._gov.current[1].extra["sdk_service_token"]
    token = parent.delegate("child", ["crm.contacts.read"], "task-77", 60)
    child = Client.from_delegation_token(token, emu.url, service_token, clock=clock, revocation_interval=None)

    @child.tool("crm.contacts.read")
    def read() -> str:
        return "ok"

    read()
    child.stop()  # flushes the audit
    events = [e for e in emu.audit_events() if e.get("capability") == "crm.contacts.read"]
    assert [(e["agent_id"], e["delegation_depth"], e["task_id"], e["outcome"]) for e in events] == [
        ("child", 1, "task-77", "success")
    ]


def test_revoking_the_parent_revokes_the_child(emu: Any, parent: Any, clock: ManualClock) -> None:
    token = parent.delegate("child", ["crm.contacts.read"], "t", 60)
    child = Client.from_delegation_token(token, emu.url, clock=clock, revocation_interval=None)
    child.startup()
    emu.revoke(parent._gov.current[0].jti)
    child.check_revocation()
    from oculus_lite import TokenRevokedException

    @child.tool("crm.contacts.read")
    def read() -> str:
        return "ok"

    with pytest.raises((TokenRevokedException, TokenExpiredError)):
        read()
    child.stop()


# ---------------------------------------------------------------- enrollment


def test_enrollment_hands_the_credentials_to_store_before_returning(emu: Any, clock: ManualClock) -> None:
    seen: Dict[str, str] = {}
    enroll_token = emu.mint_enroll_token(["crm.contacts.read"])
    client = Client.from_enroll_token(enroll_token, emu.url, store=lambda **kw: seen.update(kw), clock=clock)
    assert set(seen) == {"client_id", "client_secret"} and seen["client_id"] == client.client_id
    assert client.get_token("crm.contacts.read")
    client.stop()
    with pytest.raises(EnrollmentError) as used:
        Client.from_enroll_token(enroll_token, emu.url)
    assert used.value.code == "ENROLL_TOKEN_USED" and seen["client_secret"] not in str(used.value)


def test_enrollment_errors_carry_the_servers_code(emu: Any, clock: ManualClock) -> None:
    with pytest.raises(EnrollmentError) as invalid:
        Client.from_enroll_token("enr_not-a-real-one", emu.url)
    assert invalid.value.code == "ENROLL_TOKEN_INVALID"
    expiring = emu.mint_enroll_token(["crm.contacts.read"], ttl=30)
    clock.advance(31)
    with pytest.raises(EnrollmentError) as expired:
        Client.from_enroll_token(expiring, emu.url)
    assert expired.value.code == "ENROLL_TOKEN_EXPIRED"


@pytest.mark.parametrize(
    "body, content_type",
    [
        ("<html><body>Bad gateway</body></html>", "text/html"),
        ({"error": "invalid_grant"}, "application/json"),
    ],
)
def test_an_html_or_rfc6749_error_body_is_an_enrollment_error(emu: Any, body: Any, content_type: str) -> None:
    """Flaw C10: the official enroll crashed with JSONDecodeError / AttributeError."""
    emu.set_faults([{"path": "/oauth/enroll", "kind": "status", "status": 401, "body": body}])
    with pytest.raises(EnrollmentError):
        Client.from_enroll_token(emu.mint_enroll_token(["crm.contacts.read"]), emu.url)


def test_enrollment_can_write_a_private_file_and_refuses_symlinks(emu: Any, tmp_path: Any) -> None:
    path = tmp_path / "agent.json"
    client = Client.from_enroll_token(emu.mint_enroll_token(["crm.contacts.read"]), emu.url, store=str(path))
    saved = json.loads(path.read_text())
    assert saved["client_id"] == client.client_id and os.stat(path).st_mode & 0o777 == 0o600
    client.stop()
    target = tmp_path / "elsewhere.json"
    target.write_text("keep me")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    with pytest.raises(OculusError):
        Client.from_enroll_token(emu.mint_enroll_token(["crm.contacts.read"]), emu.url, store=str(link))
    assert target.read_text() == "keep me"


# ---------------------------------------------------------------- the command line


def test_cli_delegate_and_enroll_print_no_secret_unless_asked(
    emu: Any, capsys: Any, monkeypatch: Any, tmp_path: Any
) -> None:
    from oculus_lite.cli import main

    monkeypatch.setenv("AGENT_CLIENT_ID", "parent")
    monkeypatch.setenv("AGENT_CLIENT_SECRET", "parent-secret")
    monkeypatch.setenv("ANTI_AI_URL", emu.url)
    code = main(["delegate", "child", "--capability", "crm.contacts.read", "--task", "t", "--ttl", "60"])
    out = capsys.readouterr().out
    assert code == 0 and json.loads(out)["delegation_depth"] == 1 and "access_token" not in out
    assert main(["delegate", "child", "--capability", "admin.all", "--task", "t"]) == 3
    assert "CAPABILITY_ESCALATION" in capsys.readouterr().err
    path = tmp_path / "creds.json"
    assert (
        main(
            [
                "enroll",
                emu.mint_enroll_token(["crm.contacts.read"]),
                "--base-url",
                emu.url,
                "--save",
                str(path),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    secret = json.loads(path.read_text())["client_secret"]
    assert secret not in out and json.loads(out)["client_id"]
