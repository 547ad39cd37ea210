"""startup(), astartup(), idempotence, lazy start, stop(), fail_closed both ways, issuer, sync_interval,
through a real Client against the emulator (official flaws C3 startup, C7 threads, C8 async, S3 tokens
never verified)."""

import asyncio
import base64
import json
import logging
import threading
from typing import Any, Dict, List
from urllib.parse import urlencode
from urllib.request import urlopen

import pytest

from oculus_lite import Client, ManualClock
from oculus_lite.emulator import Emulator
from oculus_lite.exceptions import ClientClosedError, OculusStartupError, PolicyViolationError

from .conftest import (
    AGENT,
    CAPS,
    SECRET,
    MakeClient,
    client_threads,
    counts,
    emitter_of,
    events,
    published,
    runtime,
    wait_for,
    worker_barrier,
)

STARTUP_ROUTES = ("token_requests", "jwks_requests", "capability_map_requests", "revocation_requests")


def token_body(emu: Emulator, token: str) -> Dict[str, Any]:
    """A real token response of the agent (so its sdk_service_token works) carrying ``token``
    instead; served through a fault rule on /oauth/token."""
    form = urlencode({"grant_type": "client_credentials", "client_id": AGENT, "client_secret": SECRET})
    with urlopen(emu.url + "/oauth/token", data=form.encode(), timeout=10) as reply:
        body: Dict[str, Any] = json.loads(reply.read())
    body["access_token"] = token
    return body


def tampered(token: str) -> str:
    """The same signature over a payload granting one more capability."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["scope"] += " stripe.refunds.create"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return ".".join((header, forged, signature))


# ---------------------------------------------------------------------- the token and its verification


def test_startup_sends_no_scope_and_gets_the_default_grant(emu: Emulator, client: Client) -> None:
    """Like the official startup(): no ``scope`` field unless scopes= was given."""
    client.startup()
    (issued,) = emu.issued_tokens()
    assert issued["sub"] == AGENT
    default_grant = sorted(CAPS + ["stripe.payouts.create"])
    assert sorted(issued["scope"].split()) == default_grant
    assert emu.stats()["token_requests_by_grant"] == {"client_credentials": 1}
    assert client._governance_state().scopes == frozenset(issued["scope"].split())


def test_startup_with_scopes_asks_for_exactly_those(emu: Emulator, make_client: MakeClient) -> None:
    client = make_client(
        AGENT, SECRET, emu.url, None, True, ["stripe.refunds.create", "stripe.customers.read"]
    )
    client.startup()
    (issued,) = emu.issued_tokens()
    assert issued["scope"] == "stripe.customers.read stripe.refunds.create"  # not the default grant
    assert client._governance_state().scopes == {"stripe.customers.read", "stripe.refunds.create"}


def test_task_id_fail_closed_and_scopes_are_positional_in_the_official_order(
    emu: Emulator, make_client: MakeClient
) -> None:
    client = make_client(AGENT, SECRET, emu.url, "task-9", False, ["stripe.customers.read"])
    assert (client.task_id, client.fail_closed, client.scopes) == ("task-9", False, ["stripe.customers.read"])
    client.startup()
    assert client._governance_state().task_id == "task-9"  # sent on the token request, back in agent.task_id


def test_a_tampered_token_is_refused(emu: Emulator, make_client: MakeClient, clock: ManualClock) -> None:
    """Official flaw S3: tokens were never verified (the JWKS was fetched and unused), so a forged
    scope was enforced as granted."""
    forged = tampered(emu.issue_token(AGENT, "stripe.customers.read"))
    emu.set_faults([{"path": "/oauth/token", "status": 200, "body": token_body(emu, forged)}])
    with pytest.raises(OculusStartupError) as raised:
        make_client().startup()
    assert raised.value.step == "verify_token"
    assert type(raised.value.cause).__name__ == "InvalidSignatureError"
    assert emu.stats()["capability_map_requests"] == 0  # nothing loaded on a forged identity


def test_a_token_signed_by_a_key_the_issuer_no_longer_publishes_is_refused(
    emu: Emulator, make_client: MakeClient
) -> None:
    old = emu.issue_token(AGENT, "stripe.customers.read")
    emu.rotate_keys()
    emu.expire_retired_keys()
    emu.set_faults([{"path": "/oauth/token", "status": 200, "body": token_body(emu, old)}])
    with pytest.raises(OculusStartupError) as raised:
        make_client().startup()
    assert raised.value.step == "verify_token"
    assert type(raised.value.cause).__name__ == "KeyNotFoundError"


@pytest.mark.parametrize(
    "how,error",
    [
        ("expired", "ExpiredTokenError"),
        ("no exp", "MalformedTokenError"),
        ("not yet valid", "ImmatureTokenError"),
        ("unknown kid", "KeyNotFoundError"),
        ("alg none", "UnsupportedAlgorithmError"),
    ],
)
def test_every_kind_of_unverifiable_token_is_refused(
    emu: Emulator, make_client: MakeClient, how: str, error: str
) -> None:
    """Official flaw C6: no leeway, and a token without exp never expired; S3: nothing verified."""
    if how == "expired":
        token = emu.issue_token(AGENT, "stripe.customers.read", ttl=-120)
    elif how == "no exp":
        token = emu.issue_token(AGENT, "stripe.customers.read", claims={"exp": None})
    elif how == "not yet valid":
        future = int(emu.clock.time()) + 3600
        token = emu.issue_token(AGENT, "stripe.customers.read", claims={"nbf": future, "iat": future})
    elif how == "unknown kid":
        token = emu.issue_token(AGENT, "stripe.customers.read", header={"kid": "not-a-published-key"})
    else:
        header, payload, _ = emu.issue_token(AGENT, "stripe.customers.read").split(".")
        none = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
        token = none + "." + payload + "."
    emu.set_faults([{"path": "/oauth/token", "status": 200, "body": token_body(emu, token)}])
    with pytest.raises(OculusStartupError) as raised:
        make_client().startup()
    assert (raised.value.step, type(raised.value.cause).__name__) == ("verify_token", error)


def test_an_unverifiable_token_with_fail_closed_false_starts_but_enforces_nothing(
    emu: Emulator, make_client: MakeClient, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    forged = tampered(emu.issue_token(AGENT, "stripe.customers.read"))
    emu.set_faults([{"path": "/oauth/token", "status": 200, "body": token_body(emu, forged)}])
    client = make_client(fail_closed=False)
    with caplog.at_level(logging.WARNING, "oculus_lite.governance"):
        client.startup()
    assert "verify_token" in caplog.text
    tool = client.tool("stripe.customers.read")(lambda: "ran")
    from oculus_lite.exceptions import TokenExpiredError

    with pytest.raises(TokenExpiredError):  # no valid token can be had: never enforced on forged claims
        tool()
    assert runtime(client).current == (None, None)  # nothing was published from the forged token
    emu.clear_faults()
    clock.advance(5.0)  # the background sync drops the refused token and gets a good one
    wait_for(lambda: not runtime(client).failed, "the background retry of verify_token")
    assert tool() == "ran"
    assert emu.stats()["capability_map_requests"] == 1  # nothing was loaded with the forged token


def test_issuer_is_checked_only_when_configured(emu: Emulator, make_client: MakeClient) -> None:
    behind_gateway = emu.issue_token(
        AGENT, "stripe.customers.read", claims={"iss": "https://gateway.example.com"}
    )
    emu.set_faults([{"path": "/oauth/token", "status": 200, "body": token_body(emu, behind_gateway)}])
    client = make_client()
    client.startup()  # another host name in iss: accepted when no issuer= is configured
    assert client._governance_state().scopes == {"stripe.customers.read"}
    with pytest.raises(OculusStartupError) as raised:
        make_client(issuer="https://auth.example.com").startup()
    assert raised.value.step == "verify_token"
    assert type(raised.value.cause).__name__ == "InvalidIssuerError"
    emu.clear_faults()
    right = make_client(issuer=emu.url)
    right.startup()
    assert right._governance_state().agent_id == AGENT


# ---------------------------------------------------------------------- fail_closed=True: every step


@pytest.mark.parametrize(
    "path,step",
    [
        ("/oauth/token", "fetch_token"),
        ("/.well-known/jwks.json", "fetch_jwks"),
        ("/v1/sync/capability-maps", "fetch_capability_map"),
        ("/oauth/revoked-tokens", "fetch_revocation_list"),
        ("/v1/credentials/fetch", "fetch_credentials"),
    ],
)
@pytest.mark.parametrize("status", [403, 500])
def test_fail_closed_raises_naming_the_step(
    emu: Emulator, make_client: MakeClient, path, step, status
) -> None:
    """Official flaw C3: fail_closed=True still started when the revocation list answered 4xx/5xx
    or credentials failed (errors swallowed per integration)."""
    emu.set_faults([{"path": path, "status": status}])
    client = make_client(retries=0)
    with pytest.raises(OculusStartupError) as raised:
        client.startup()
    assert raised.value.step == step
    assert step in str(raised.value)
    assert getattr(raised.value.cause, "status_code", None) == status
    assert client._gov is not None and not runtime(client).started
    assert "oculus-audit" not in client_threads()
    emu.clear_faults()
    client.startup()  # a failed startup is not remembered: the next call starts
    assert runtime(client).started and client._governance_state().agent_id == AGENT


def test_a_304_to_a_first_map_request_fails_the_step(emu: Emulator, make_client: MakeClient) -> None:
    """Official flaw C3: a capability-map 304 at startup left the map empty, so no credentials."""
    emu.set_faults([{"path": "/v1/sync/capability-maps", "status": 304}])
    with pytest.raises(OculusStartupError) as raised:
        make_client().startup()
    assert raised.value.step == "fetch_capability_map"
    assert emu.stats()["credential_requests"] == 0


def test_a_token_response_without_a_service_token_fails_closed(
    emu: Emulator, make_client: MakeClient
) -> None:
    """Official flaw C3: a missing sdk token silently disabled the map, credentials and audit."""
    token = emu.issue_token(AGENT, "stripe.customers.read")
    body = {"access_token": token, "token_type": "Bearer", "expires_in": 600}
    emu.set_faults([{"path": "/oauth/token", "status": 200, "body": body}])
    with pytest.raises(OculusStartupError) as raised:
        make_client().startup()
    assert raised.value.step == "fetch_capability_map"
    assert "sdk_service_token" in str(raised.value)


# ---------------------------------------------------------------------- fail_closed=False: start, log, retry


FAIL_OPEN_STEPS = [
    ("/v1/sync/capability-maps", "fetch_capability_map"),
    ("/oauth/revoked-tokens", "fetch_revocation_list"),
    ("/v1/credentials/fetch", "fetch_credentials"),
    ("/.well-known/jwks.json", "fetch_jwks"),
    ("/oauth/token", "fetch_token"),
]


@pytest.mark.parametrize(
    "path,step,status",
    [
        (path, step, status)
        for path, step in FAIL_OPEN_STEPS
        for status in (400, 401, 403, 404, 429, 500)
        # a 404 from the credentials route means "no credential for it", not a failure
        if (path, status) != ("/v1/credentials/fetch", 404)
    ],
)
def test_fail_open_starts_logs_and_recovers_in_the_background(
    emu: Emulator,
    make_client: MakeClient,
    clock: ManualClock,
    caplog: pytest.LogCaptureFixture,
    path,
    step,
    status,
) -> None:
    """Official flaw C3: fail_closed=False still raised on any HTTP error status."""
    emu.set_faults([{"path": path, "status": status}])
    client = make_client(fail_closed=False, retries=0, sync_interval=60.0)
    with caplog.at_level(logging.WARNING, "oculus_lite.governance"):
        client.startup()
    assert runtime(client).started
    assert step in runtime(client).failed
    assert [r for r in caplog.records if step in r.getMessage()], caplog.text
    failed_before = emu.stats()[_counter(path)]
    emu.clear_faults()
    clock.advance(5.0)  # failed steps are retried well before sync_interval
    wait_for(lambda: not runtime(client).failed, "the background retry of " + step)
    retried = 2 if path == "/v1/credentials/fetch" else 1  # one round: each integration once
    assert emu.stats()[_counter(path)] == failed_before + retried
    state = client._governance_state()
    assert state.agent_id == AGENT
    assert state.credentials["stripe"]["api_key"].startswith("sk_live_")
    assert "stripe.payouts.create" in state.deny_always
    read = client.tool("stripe.customers.read")(lambda: "ran")
    assert read() == "ran"
    client.stop()
    assert events(emu, tool_name="<lambda>", outcome="success") != []  # the audit emitter runs too
    assert emu.stats()["audit_events"] == 1


def _counter(path: str) -> str:
    return {
        "/v1/sync/capability-maps": "capability_map_requests",
        "/oauth/revoked-tokens": "revocation_requests",
        "/v1/credentials/fetch": "credential_requests",
        "/.well-known/jwks.json": "jwks_requests",
        "/oauth/token": "token_requests",
    }[path]


# ---------------------------------------------------------------------- idempotence, lazy start, threads


def test_startup_is_idempotent(emu: Emulator, make_client: MakeClient) -> None:
    """Official flaw C7: a second startup() duplicated the pollers and orphaned an audit thread that
    stop() never ended; the docs told users to call startup() again after TokenExpiredError."""
    client = make_client(revocation_interval=15.0)
    client.startup()
    wait_for(lambda: emu.stats()["revocation_requests"] >= 2, "the revocation poller's first poll")
    first = client_threads()
    assert first == sorted(["oculus-audit", "oculus-lite-worker[{}]".format(AGENT)])
    before = counts(emu, *STARTUP_ROUTES, "credential_requests")
    client.startup()
    threads = [threading.Thread(target=client.startup) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    asyncio.run(client.astartup())
    assert client_threads() == first
    assert counts(emu, *STARTUP_ROUTES, "credential_requests") == before
    emitter = emitter_of(client)
    client.stop()
    assert client_threads() == []
    assert emitter is not None and not emitter.stats().running


def test_sixteen_threads_calling_a_tool_on_a_client_not_started_start_it_once(
    emu: Emulator, make_client: MakeClient
) -> None:
    client = make_client()
    read = client.tool("stripe.customers.read")(lambda i: i)
    barrier = threading.Barrier(16)
    results: List[Any] = []

    def call(i: int) -> None:
        barrier.wait()
        results.append(read(i))

    threads = [threading.Thread(target=call, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == list(range(16))
    client.stop()
    assert counts(emu, *STARTUP_ROUTES, "credential_requests") == {
        "token_requests": 1,
        "jwks_requests": 1,
        "capability_map_requests": 1,
        "revocation_requests": 1,
        "credential_requests": 2,
    }
    assert emu.stats()["audit_events"] == 16


def test_sixteen_asyncio_tasks_calling_an_async_tool_start_the_client_once(
    emu: Emulator, make_client: MakeClient
) -> None:
    """Official flaw C8: no async startup; async tools got sync wrappers."""
    client = make_client()

    @client.tool("stripe.customers.read")
    async def read(i: int) -> int:
        await asyncio.sleep(0)
        return i

    async def main() -> List[int]:
        return list(await asyncio.gather(*(read(i) for i in range(16))))

    assert asyncio.run(main()) == list(range(16))
    client.stop()
    assert counts(emu, "token_requests", "jwks_requests", "capability_map_requests") == {
        "token_requests": 1,
        "jwks_requests": 1,
        "capability_map_requests": 1,
    }


def test_astartup_shares_one_run_with_concurrent_callers(emu: Emulator, make_client: MakeClient) -> None:
    client = make_client()

    async def main() -> None:
        await asyncio.gather(*(client.astartup() for _ in range(16)))

    asyncio.run(main())
    assert runtime(client).started
    client.stop()
    assert counts(emu, "token_requests", "capability_map_requests", "credential_requests") == {
        "token_requests": 1,
        "capability_map_requests": 1,
        "credential_requests": 2,
    }


def test_task_on_a_client_not_started_starts_it(emu: Emulator, make_client: MakeClient) -> None:
    client = make_client()
    with client.task("task-1") as ctx:
        assert client._gov is not None and runtime(client).started
        assert ctx.can("stripe.customers.read")
    assert emu.stats()["token_requests"] == 1


def test_async_task_on_a_client_not_started_starts_it(emu: Emulator, make_client: MakeClient) -> None:
    client = make_client()

    async def main() -> bool:
        async with client.task("task-1") as ctx:
            assert client._gov is not None and runtime(client).started
            return await ctx.acan("stripe.customers.read")

    assert asyncio.run(main())
    assert emu.stats()["token_requests"] == 1


def test_entering_with_starts_nothing(emu: Emulator, make_client: MakeClient) -> None:
    with make_client() as client:
        assert client_threads() == []
        assert emu.stats()["requests"] == 0
        assert client.get_token("stripe.customers.read")
        assert counts(emu, "token_requests", "jwks_requests", "capability_map_requests") == {
            "token_requests": 1,
            "jwks_requests": 0,
            "capability_map_requests": 0,
        }
        assert client._gov is None
    assert client_threads() == []


def test_with_client_then_tool_calls_works_without_startup(emu: Emulator, make_client: MakeClient) -> None:
    with make_client() as client:

        @client.tool("stripe.customers.read")
        def read() -> str:
            return "customer"

        assert read() == "customer"
        assert runtime(client).started
    assert client_threads() == []
    assert emu.stats()["audit_events"] == 1  # flushed by stop() at the end of the with block


def test_after_stop_no_thread_survives_and_tools_refuse(emu: Emulator, make_client: MakeClient) -> None:
    """Official flaw C7: wrapped tools kept enforcing on stale claims after stop()."""
    client = make_client(revocation_interval=15.0)

    @client.tool("stripe.customers.read")
    def read() -> str:
        return "customer"

    @client.tool("stripe.customers.read")
    async def aread() -> str:
        return "customer"

    assert read() == "customer"
    assert asyncio.run(aread()) == "customer"
    assert len(client_threads()) == 2
    client.stop()
    assert client_threads() == []
    with pytest.raises(ClientClosedError):
        read()
    with pytest.raises(ClientClosedError):
        asyncio.run(aread())
    with pytest.raises(ClientClosedError):
        _ = client.credentials
    with pytest.raises(ClientClosedError):
        client.startup()
    with pytest.raises(ClientClosedError):
        with client.task("t"):
            pass
    assert emu.stats()["audit_events"] == 2


def test_a_stopped_client_never_ran_its_tool_on_stale_claims(emu: Emulator, make_client: MakeClient) -> None:
    client = make_client()
    ran: List[str] = []
    tool = client.tool("stripe.customers.read")(lambda: ran.append("x"))
    tool()
    client.stop()
    with pytest.raises(ClientClosedError):
        tool()
    assert ran == ["x"]


# ---------------------------------------------------------------------- sync_interval


def test_sync_interval_is_respected(emu: Emulator, make_client: MakeClient, clock: ManualClock) -> None:
    """Maps and credentials are refreshed once per sync_interval (advanced in 5 s steps, with a
    worker barrier after each, so a job running more often would show in the counts)."""
    client = make_client(sync_interval=30.0)
    client.startup()
    for _ in range(24):  # 120 s
        clock.advance(5.0)
        worker_barrier(client)
    client.stop()
    assert counts(emu, "capability_map_requests", "capability_map_not_modified", "credential_requests") == {
        "capability_map_requests": 5,  # startup + 4 syncs
        "capability_map_not_modified": 4,  # If-None-Match sent every time; nothing changed
        "credential_requests": 10,  # both integrations each time
    }
    assert emu.stats()["token_requests"] == 1  # a 600 s token needs no renewal in 120 s


def test_default_sync_interval_is_the_official_60_seconds(
    emu: Emulator, make_client: MakeClient, clock: ManualClock
) -> None:
    client = make_client()
    client.startup()
    for _ in range(24):  # 120 s
        clock.advance(5.0)
        worker_barrier(client)
    client.stop()
    assert emu.stats()["capability_map_requests"] == 3


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), "60"])
def test_a_bad_sync_interval_is_refused(emu: Emulator, bad) -> None:
    from oculus_lite.exceptions import ConfigurationError, ValidationError

    with pytest.raises((ConfigurationError, ValidationError)):
        Client(AGENT, SECRET, emu.url, sync_interval=bad)


def test_startup_through_policy_denial_still_reports_the_policy(emu: Emulator, client: Client) -> None:
    @client.tool("stripe.refunds.create")
    def refund() -> None:
        raise AssertionError("never runs")

    with pytest.raises(PolicyViolationError) as raised:
        refund()
    assert raised.value.reason == "capability_not_in_scope" and raised.value.policy_id == "pol-gov"


def test_a_token_revoked_before_startup_is_replaced_once(emu: Emulator, make_client: MakeClient) -> None:
    """Verification covers revocation: the list is loaded before the token is verified, and a
    revoked token is re-fetched once (official flaw S3: never verified; C6: no re-fetch)."""
    body = token_body(emu, "")
    revoked = emu.issued_tokens()[-1]["jti"]
    body["access_token"] = emu.issue_token(AGENT, "stripe.customers.read", claims={"jti": revoked})
    emu.revoke(revoked)
    emu.set_faults([{"path": "/oauth/token", "status": 200, "body": body, "next": 1}])
    client = make_client()
    client.startup()
    assert runtime(client).failed == {}
    assert published(client).jti not in (None, revoked)
    assert emu.stats()["token_requests"] == 3  # ours for the body, the revoked one, its replacement


def test_a_token_revoked_again_fails_startup_naming_verification(
    emu: Emulator, make_client: MakeClient
) -> None:
    body = token_body(emu, "")
    revoked = emu.issued_tokens()[-1]["jti"]
    body["access_token"] = emu.issue_token(AGENT, "stripe.customers.read", claims={"jti": revoked})
    emu.revoke(revoked)
    emu.set_faults([{"path": "/oauth/token", "status": 200, "body": body}])  # every time
    with pytest.raises(OculusStartupError) as raised:
        make_client().startup()
    assert raised.value.step == "verify_token"
    assert type(raised.value.cause).__name__ == "TokenRevokedException"
