"""Official-SDK flaws of the governance area not covered elsewhere, each made impossible here and
tested through a real Client against the emulator (the others are named in the docstrings of the
tests beside this file: C3 and S3 in test_startup, C4, C11 and S6 in test_maps_credentials, C6 in
test_token_lifetime, C7 in test_startup and test_state_swap, C8 and S4 in test_enforcement, C5 in
test_audit_client and test_task_context)."""

import socket
from pathlib import Path

import pytest

from oculus_lite import ManualClock
from oculus_lite.emulator import Emulator
from oculus_lite.exceptions import (
    AuthenticationError,
    InvalidResponseError,
    NetworkError,
    OculusStartupError,
)

from .conftest import AGENT, CAPS, SECRET, STRIPE_KEY, MakeClient, configure_agent, events, jti_of

READ = "stripe.customers.read"


def test_c10_an_rfc6749_error_body_at_startup_keeps_the_servers_reason(
    clock: ManualClock, make_client: MakeClient
) -> None:
    """Official flaw C10: an RFC 6749 error body (``{"error": "invalid_client"}``) crashed startup
    with AttributeError, wrapped as "'str' object has no attribute 'get'": the reason was lost."""
    with Emulator(clock=clock, error_style="rfc6749") as emu:
        configure_agent(emu)
        client = make_client(AGENT, "wrong-secret", emu.url)
        with pytest.raises(OculusStartupError) as raised:
            client.startup()
    assert raised.value.step == "fetch_token"
    assert isinstance(raised.value.cause, AuthenticationError)
    assert raised.value.cause.code == "invalid_client"
    assert "wrong-secret" not in str(raised.value) and SECRET not in str(raised.value)


def test_c10_a_network_error_at_startup_is_typed(make_client: MakeClient) -> None:
    """Official flaw C10: transport errors escaped unwrapped (httpx ConnectError)."""
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = make_client(AGENT, SECRET, "http://127.0.0.1:{}".format(port), retries=0)
    with pytest.raises(OculusStartupError) as raised:
        client.startup()
    assert raised.value.step == "fetch_token" and isinstance(raised.value.cause, NetworkError)


def test_c10_an_html_capability_map_is_a_typed_startup_error(emu: Emulator, make_client: MakeClient) -> None:
    emu.set_faults([{"path": "/v1/sync/capability-maps", "kind": "content_type", "status": 200}])
    with pytest.raises(OculusStartupError) as raised:
        make_client().startup()
    assert raised.value.step == "fetch_capability_map"
    assert isinstance(raised.value.cause, InvalidResponseError)


def test_c12_a_warm_start_from_the_shared_cache_has_credentials_and_audit(
    emu: Emulator, make_client: MakeClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Official flaw C12: the Lambda cache stored neither the credentials nor the sdk service token,
    so a warm start had no credentials and no audit; it was saved once, never after a refresh."""
    monkeypatch.setenv("OCULUS_TOKEN_STORE", "file:" + str(tmp_path / "store"))
    cold = make_client(sync_interval=3600.0)
    cold.tool(READ)(lambda: "cold")()
    assert emu.stats()["token_requests"] == 1
    warm = make_client(sync_interval=3600.0)
    assert warm.tool(READ)(lambda: "warm")() == "warm"
    assert emu.stats()["token_requests"] == 1  # the warm start took the shared token...
    assert warm.credentials["stripe"]["api_key"] == STRIPE_KEY  # ...and still has credentials
    assert jti_of(warm) == jti_of(cold)
    emu.revoke(jti_of(cold))  # the cold client replaces its token...
    assert cold.check_revocation()
    cold.tool(READ)(lambda: "cold")()
    assert emu.stats()["tokens_issued"] == 2  # ...and writes the new one to the store
    later = make_client(sync_interval=3600.0)
    later.tool(READ)(lambda: "later")()
    assert emu.stats()["token_requests"] == 2  # the renewed token was saved for the next start
    assert jti_of(later) == jti_of(cold)
    for client in (cold, warm, later):
        client.stop()
    assert {e["tool_name"] for e in events(emu)} == {"<lambda>"}
    assert len(events(emu)) == 4  # the warm clients audit too


def test_c3_a_startup_without_a_capability_map_loads_no_credentials_only_when_there_are_none(
    emu: Emulator, make_client: MakeClient
) -> None:
    """Official flaw C3: a 304 at startup left the map empty and silently loaded no credentials;
    here an empty map is the only way to have none, and the client says so when asked."""
    emu.set_capability_map({})
    client = make_client()
    client.startup()
    assert emu.stats()["credential_requests"] == 0
    assert len(client.credentials) == 0
    assert sorted(client._governance_state().scopes) == sorted(CAPS + ["stripe.payouts.create"])
