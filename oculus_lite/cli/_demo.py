"""``python -m oculus_lite demo``: the main jobs, end to end, against an embedded emulator.

Every figure it prints is read from the emulator's counters or measured in this run; nothing
is canned. Tokens, secrets and credential values are never printed, only claims and names.
"""

import json
import threading
import time
from typing import Any, Callable, Dict, TextIO

__all__ = ["run_demo"]


def run_demo(out: TextIO) -> int:
    from ..emulator import Emulator

    def say(text: str = "") -> None:
        print(text, file=out, flush=True)

    with Emulator() as emu:
        say("oculus_lite demo: an embedded emulator is listening on {}".format(emu.url))
        steps: Dict[str, Callable[[Any, Callable[[str], None]], None]] = {
            "Tokens": _tokens,
            "Governance: enforced tool calls, credentials, audit": _governance,
            "Delegation: a narrower token for a child agent": _delegation,
            "One-time permission with human approval (Agent OTP)": _approval,
        }
        for n, (title, part) in enumerate(steps.items(), 1):
            say()
            say("{}. {}".format(n, title))
            part(emu, say)
    say()
    say("Done. Run the tests with the command in the README; try `python -m oculus_lite serve`.")
    return 0


def _tokens(emu: Any, say: Callable[[str], None]) -> None:
    from ..exceptions import OculusAuthError
    from ..tokens._client import Client

    emu.add_agent("demo-agent", "demo-secret-not-for-production", scopes=["db:*", "crm:*"], token_ttl=3)

    def count() -> int:
        return int(emu.stats()["token_requests"])

    with Client("demo-agent", "demo-secret-not-for-production", emu.url) as client:
        info = client.get_token_info("db:read")
        claims = info.claims
        say(
            "   a scoped, short-lived token: scope={!r} sub={!r} jti={!r}, expires in {:.0f} s".format(
                claims.get("scope"), claims.get("sub"), claims.get("jti"), info.seconds_left()
            )
        )
        n = 20000
        started = time.perf_counter()
        for _ in range(n):
            client.get_token("db:read")
        per_call = (time.perf_counter() - started) / n * 1e9
        say(
            "   cache hits, the call before every tool call: {} calls, {:.0f} ns each; token requests: {}".format(
                n, per_call, count()
            )
        )
        before = count()
        barrier = threading.Barrier(32)
        results = []

        def worker() -> None:
            barrier.wait()
            results.append(client.get_token("crm:contacts:read db:read"))

        threads = [threading.Thread(target=worker) for _ in range(32)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        say(
            "   32 callers, {} distinct token(s), {} token request(s) sent".format(
                len(set(results)), count() - before
            )
        )
        first = client.get_token_info("db:read").jti
        deadline = time.monotonic() + 10
        renewed = first
        while renewed == first and time.monotonic() < deadline:
            time.sleep(0.2)
            renewed = client.get_token_info("db:read").jti
        say("   tokens live 3 s and are renewed ahead of expiry: jti {!r} -> {!r}".format(first, renewed))
        emu.rotate_secret("demo-agent")
        try:
            client.get_token("db:write")
        except OculusAuthError as exc:
            say("   after a secret rotation the old secret fails at once: {}".format(type(exc).__name__))
    with Client(emu.demo_client_id, emu.demo_client_secret, emu.url) as client:
        try:
            client.get_token("admin:users:delete")
        except OculusAuthError as exc:
            say("   a scope no active policy grants: {}: {}".format(type(exc).__name__, exc.code))


def _governance(emu: Any, say: Callable[[str], None]) -> None:
    from ..exceptions import PolicyViolationError
    from ..tokens._client import Client

    emu.add_agent(
        "billing-agent",
        "billing-secret-not-for-production",
        scopes=["stripe.charges.create", "stripe.customers.read"],
        constraints={"max_amount_cents": 5000},
    )
    emu.set_capability_map(
        {
            "stripe": {
                "capabilities": {"stripe.charges.create": {}, "stripe.customers.read": {}},
                "deny_always": [],
            }
        }
    )
    emu.set_credential("stripe", "api_key", "sk_test_demo_value_never_printed")
    with Client("billing-agent", "billing-secret-not-for-production", emu.url) as client:
        client.startup()
        say("   startup: token verified against the JWKS, capability map, revocation list, credentials")

        @client.tool("stripe.charges.create")
        def charge(customer: str, amount_cents: int) -> str:
            key = client.credentials["stripe"]["api_key"]  # used, never printed
            return "charged {} {} cents (with a {}-character key)".format(customer, amount_cents, len(key))

        say("   allowed: " + charge("cus_123", 1200))
        try:
            charge("cus_123", 99999)
        except PolicyViolationError as exc:
            say("   denied:  charge of 99999 cents -> reason {!r} (cap 5000)".format(exc.reason))
        say("   credentials: {!r}".format(client.credentials))
    events = [e for e in emu.audit_events() if e.get("agent_id") == "billing-agent"]
    for event in events:
        say(
            "   audit event at the emulator: {} {} outcome={} duration_ms={}".format(
                event.get("capability"), event.get("decision"), event.get("outcome"), event.get("duration_ms")
            )
        )


def _delegation(emu: Any, say: Callable[[str], None]) -> None:
    from ..exceptions import DelegationError, PolicyViolationError
    from ..tokens._client import Client

    emu.add_agent("support-agent", "support-secret", scopes=["crm.read", "crm.write", "crm.export"])
    emu.add_agent("summariser", "summariser-secret", scopes=["crm.read"])
    with Client("support-agent", "support-secret", emu.url) as parent:
        token = parent.delegate("summariser", ["crm.read"], "ticket-4711", 60, {"max_results": 20})
        say("   parent delegates crm.read to 'summariser': {!r}".format(token))
        child = Client.from_delegation_token(token, emu.url)

        @child.tool("crm.read")
        def read(ticket: str) -> str:
            return "ticket {} read".format(ticket)

        @child.tool("crm.write")
        def write(ticket: str) -> str:
            return "ticket {} written".format(ticket)

        say("   child allowed: " + read("4711"))
        try:
            write("4711")
        except PolicyViolationError as exc:
            say("   child refused: crm.write -> {!r} (only crm.read was delegated)".format(exc.reason))
        try:
            child.delegate("summariser", ["crm.export"], "ticket-4711", 30)
        except DelegationError as exc:
            say("   escalation refused: {} ({})".format(exc.reason, "the child holds no crm.export"))
        child.stop()


def _approval(emu: Any, say: Callable[[str], None]) -> None:
    from ..emulator._ui import dashboard_url
    from ..permissions import Permission, PermissionClient

    pending = threading.Event()
    seen: Dict[str, str] = {}

    def human() -> None:
        if not pending.wait(30) or "id" not in seen:
            return
        say("   [human]  approves {} (the dashboard's Approve button, or POST .../decide)".format(seen["id"]))
        emu.otp.decide(seen["id"], True, reason="invoice run approved", decided_by="demo human")

    def on_pending(p: Permission) -> None:
        say("   [agent]  asks to send an email; request {} is pending".format(p.id))
        say("   [human]  could approve it in a browser: {}".format(p.approval_url))
        seen["id"] = p.id
        pending.set()

    approver = threading.Thread(target=human, name="demo-human", daemon=True)
    approver.start()
    say("   dashboard: {} (sign in with the approver token `serve` prints)".format(dashboard_url(emu)))
    with PermissionClient(api_key=emu.otp.demo_api_key, base_url=emu.url) as client:
        try:
            permission = client.request_permission(
                "email.send",
                {"max_emails": 1, "allowed_recipients": ["client@example.com"]},
                resource="email:client@example.com",
                context={"reason": "Sending monthly invoice"},
                wait_for_approval=True,
                timeout=30.0,
                poll_interval=0.2,
                on_pending=on_pending,
            )
        finally:
            pending.set()  # release the human thread if the request failed
            approver.join(35)
        say(
            "   [agent]  {} by {} (one-time token received, not shown; scope {})".format(
                permission.status.value, permission.decided_by, json.dumps(permission.scope, sort_keys=True)
            )
        )
        if permission.token is None:
            return
        usage = client.use_token(permission.id, permission.token, {"recipient": "client@example.com"})
        say(
            "   [agent]  sends the email, marks the token used: success={}, uses left {}".format(
                usage.success, usage.uses_remaining
            )
        )
        again = client.use_token(permission.id, permission.token)
        say("   [agent]  a second use is refused: success={} ({})".format(again.success, again.reason))
