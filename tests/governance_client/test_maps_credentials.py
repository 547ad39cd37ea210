"""Capability maps (If-None-Match, 304 keeps the map, deny_always in every decision), integration
credentials (fetched per integration, refreshed on change and on the interval, read-only, never
printed, CredentialError from every accessor) and the project file's custom capabilities, through a
real Client (official flaws C4, C11, S6 and the deny_always finding of section 3)."""

import asyncio
import json
import logging
import pickle
import sys
from pathlib import Path
from typing import Any

import pytest

from oculus_lite import Client, ManualClock
from oculus_lite.emulator import Emulator
from oculus_lite.evaluator import REASON_DENY_ALWAYS
from oculus_lite.exceptions import CredentialError, OculusStartupError, PolicyViolationError

from .conftest import (
    CAPS,
    GITHUB_TOKEN,
    MAP,
    STRIPE_KEY,
    MakeClient,
    configure_agent,
    events,
    runtime,
    worker_barrier,
)

PAYOUT = "stripe.payouts.create"  # in the token's scope, and in the map's deny_always
SLACK_TOKEN = "xoxb-SLACKTOKEN-0123456789"


def sync(client: Any, clock: Any, seconds: float = 60.0) -> None:
    clock.advance(seconds)
    worker_barrier(client)


# ---------------------------------------------------------------------- capability maps


def test_if_none_match_is_sent_and_a_304_keeps_the_map(
    emu: Emulator, client: Client, clock: ManualClock
) -> None:
    """Official SDK: If-None-Match was never sent on the capability-map route."""
    client.startup()
    before = client._governance_state()
    for _ in range(3):
        sync(client, clock)
    assert (emu.stats()["capability_map_requests"], emu.stats()["capability_map_not_modified"]) == (4, 3)
    state = client._governance_state()
    assert state.capability_map == before.capability_map and state.deny_always == {PAYOUT}
    assert state.credentials["stripe"]["api_key"] == STRIPE_KEY
    assert state is before  # nothing changed: the published state was not even rebuilt


def test_deny_always_is_honoured_in_every_decision(emu: Emulator, client: Client) -> None:
    """Official flaw (section 3): the map's deny_always lists were never consulted; a capability
    in deny_always was allowed."""
    ran = []

    @client.tool(PAYOUT)
    def payout(amount_cents: int) -> None:
        ran.append(amount_cents)

    @client.tool(PAYOUT)
    async def apayout(amount_cents: int) -> None:
        ran.append(amount_cents)

    def tagged(amount_cents: int) -> None:  # tagged the official way, then wrapped
        ran.append(amount_cents)

    tagged._oculus_capability = PAYOUT  # type: ignore[attr-defined]
    (wrapped,) = client.wrap_tools([tagged])
    for call in (lambda: payout(1), lambda: asyncio.run(apayout(1)), lambda: wrapped(1)):
        with pytest.raises(PolicyViolationError) as raised:
            call()
        assert raised.value.reason == REASON_DENY_ALWAYS
    assert PAYOUT in client._governance_state().scopes  # granted by the token, denied by the map
    with client.task("t-1") as ctx:
        assert ctx.can(PAYOUT) is False
        assert asyncio.run(ctx.acan(PAYOUT)) is False
        with pytest.raises(PolicyViolationError) as raised:
            with ctx.capability(PAYOUT):
                ran.append(-1)
        assert raised.value.reason == REASON_DENY_ALWAYS
        assert ctx.can("stripe.customers.read") is True
    assert ran == []
    client.stop()
    denied = events(emu, capability=PAYOUT)
    assert len(denied) == 4
    assert {(e["decision"], e["reason"], e["outcome"]) for e in denied} == {
        ("deny", REASON_DENY_ALWAYS, "denied")
    }


def test_a_changed_map_is_applied_and_its_credentials_fetched(
    emu: Emulator, client: Client, clock: ManualClock
) -> None:
    charge = client.tool("stripe.charges.create")(lambda amount_cents: "charged")
    assert charge(100) == "charged"
    assert emu.stats()["credential_requests"] == 2
    changed = json.loads(json.dumps(MAP))
    changed["stripe"]["deny_always"].append("stripe.charges.create")
    changed["slack"] = {"capabilities": {"slack.messages.post": {}}, "deny_always": []}
    emu.set_capability_map(changed)
    emu.set_credential("slack", "bot_token", SLACK_TOKEN)
    sync(client, clock)
    with pytest.raises(PolicyViolationError) as raised:
        charge(100)
    assert raised.value.reason == REASON_DENY_ALWAYS
    assert client.credentials["slack"]["bot_token"] == SLACK_TOKEN
    assert emu.stats()["credential_requests"] == 2 + 3  # every integration of the new map


# ---------------------------------------------------------------------- credentials


def test_credentials_are_fetched_for_each_integration(emu: Emulator, client: Client) -> None:
    client.startup()
    assert emu.stats()["credential_requests"] == 2
    creds = client.credentials
    assert sorted(creds) == ["github", "stripe"]
    assert creds["stripe"]["api_key"] == STRIPE_KEY and creds["github"]["token"] == GITHUB_TOKEN


def test_a_rotated_credential_arrives_on_the_interval(
    emu: Emulator, client: Client, clock: ManualClock
) -> None:
    """Official flaw C4: credentials were fetched once and never refreshed, so a rotated Stripe
    key never reached the process."""
    client.startup()
    emu.set_credential("stripe", "api_key", "sk_live_ROTATED9876543210")
    sync(client, clock, 59.0)
    assert client.credentials["stripe"]["api_key"] == STRIPE_KEY  # not yet: the interval is 60 s
    sync(client, clock, 1.0)
    assert client.credentials["stripe"]["api_key"] == "sk_live_ROTATED9876543210"
    with client.task("t") as ctx:
        with ctx.capability("stripe.customers.read") as stripe:
            assert stripe["api_key"] == "sk_live_ROTATED9876543210"
        assert ctx.credentials("stripe")["api_key"] == "sk_live_ROTATED9876543210"
    assert emu.stats()["capability_map_not_modified"] == 1  # refreshed although the map did not change


def test_credentials_are_read_only_and_never_printed(
    emu: Emulator, client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    """Official flaw S6: ``credentials`` returned the live secret dict (mutable, printed in clear)."""
    with caplog.at_level(logging.DEBUG):
        creds = client.credentials
    stripe = creds["stripe"]
    texts = [
        repr(creds),
        str(creds),
        repr(stripe),
        str(stripe),
        repr(dict(creds)),
        str(list(creds.values())),
        repr(client),
        repr(vars(client)),
        repr(vars(client._gov)),
        repr(client._governance_state()),
        caplog.text,
    ]
    for text in texts:
        assert STRIPE_KEY not in text and GITHUB_TOKEN not in text, text
    assert "stripe" in repr(creds) and "api_key" in repr(stripe)  # names are shown, values never
    with pytest.raises(TypeError):
        creds["stripe"] = {"api_key": "x"}  # type: ignore[index]
    with pytest.raises(TypeError):
        stripe["api_key"] = "x"  # type: ignore[index]
    with pytest.raises(TypeError):
        del stripe["api_key"]  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        pickle.dumps(creds)
    with pytest.raises(TypeError):
        pickle.dumps(stripe)
    assert client.credentials["stripe"]["api_key"] == STRIPE_KEY


def test_a_missing_credential_raises_credential_error_from_every_accessor(
    emu: Emulator, make_client: MakeClient
) -> None:
    """Official flaws C4 (errors swallowed, users hit KeyError later) and C15 (capability() yielded
    {} instead of raising)."""
    configure_agent(emu, scopes=CAPS + ["slack.messages.post"], default_scopes=CAPS + ["slack.messages.post"])
    with_slack = json.loads(json.dumps(MAP))
    with_slack["slack"] = {"capabilities": {"slack.messages.post": {}}, "deny_always": []}
    emu.set_capability_map(with_slack)  # no slack credential registered: the route answers 404
    client = make_client()
    creds = client.credentials
    assert emu.stats()["credential_requests"] == 3
    assert "slack" not in creds
    accessors = [
        lambda: creds["slack"],
        lambda: creds.get("slack"),
        lambda: creds["stripe"]["secret_key"],
        lambda: creds["stripe"].get("secret_key"),
    ]
    with client.task("t-1") as ctx:
        accessors.append(lambda: ctx.credentials("slack"))
        for accessor in accessors:
            with pytest.raises(CredentialError) as raised:
                accessor()
            assert raised.value.integration in ("slack", "stripe")
            assert STRIPE_KEY not in str(raised.value)
        with pytest.raises(CredentialError):
            with ctx.capability("slack.messages.post"):
                raise AssertionError("the block must not run without its credentials")
    assert creds.get("slack", None) is None  # an explicit default is honoured
    client.stop()
    (event,) = events(emu, capability="slack.messages.post")
    assert (event["decision"], event["outcome"], event["error_type"], event["task_id"]) == (
        "allow",
        "error",
        "CredentialError",
        "t-1",
    )


# ---------------------------------------------------------------------- the project file


def custom_of(client: Any) -> Any:
    return dict(client._governance_state().capability_map.custom)


def write_json(path: Any) -> None:
    path.write_text(json.dumps({"custom_capabilities": {"reports.generate": {"description": "monthly"}}}))


def test_custom_capabilities_from_an_explicit_oculus_json(
    emu: Emulator, make_client: MakeClient, tmp_path: Path, clock: ManualClock
) -> None:
    write_json(tmp_path / "oculus.json")
    for where in (tmp_path / "oculus.json", tmp_path):  # the file, or the directory holding it
        client = make_client(project_file=str(where))
        client.startup()
        assert custom_of(client) == {"reports.generate": {"description": "monthly"}}


def test_custom_capabilities_from_oculus_config(
    emu: Emulator, make_client: MakeClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_json(tmp_path / "oculus.json")
    monkeypatch.setenv("OCULUS_CONFIG", str(tmp_path))
    client = make_client()
    client.startup()
    assert custom_of(client) == {"reports.generate": {"description": "monthly"}}


def test_never_read_relative_to_the_working_directory(
    emu: Emulator, make_client: MakeClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Official flaw C11: oculus.yaml was read from the current working directory (what an agent
    declared changed with ``cd``), and skipped silently without PyYAML."""
    write_json(tmp_path / "oculus.json")
    (tmp_path / "oculus.yaml").write_text("custom_capabilities:\n  shell.exec: {}\n")
    monkeypatch.chdir(tmp_path)
    client = make_client()
    client.startup()
    assert custom_of(client) == {}


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib is 3.11+")
def test_custom_capabilities_from_oculus_toml(emu: Emulator, make_client: MakeClient, tmp_path: Path) -> None:
    (tmp_path / "oculus.toml").write_text(
        '[custom_capabilities."reports.generate"]\ndescription = "monthly"\n'
    )
    client = make_client(project_file=str(tmp_path))
    client.startup()
    assert custom_of(client) == {"reports.generate": {"description": "monthly"}}


def test_custom_capabilities_from_oculus_yaml_when_pyyaml_is_importable(
    emu: Emulator, make_client: MakeClient, tmp_path: Path
) -> None:
    pytest.importorskip("yaml", reason="YAML is read only when PyYAML happens to be importable")
    (tmp_path / "oculus.yaml").write_text(
        "custom_capabilities:\n  reports.generate:\n    description: monthly\n"
    )
    client = make_client(project_file=str(tmp_path))
    client.startup()
    assert custom_of(client) == {"reports.generate": {"description": "monthly"}}


def test_a_map_refresh_never_erases_custom_capabilities(
    emu: Emulator, make_client: MakeClient, tmp_path: Path, clock: ManualClock
) -> None:
    """Official flaw C11: the background map refresh replaced the whole dict and erased the
    oculus.yaml custom capabilities."""
    write_json(tmp_path / "oculus.json")
    client = make_client(project_file=str(tmp_path / "oculus.json"))
    client.startup()
    sync(client, clock)  # a 304
    changed = json.loads(json.dumps(MAP))
    changed["github"]["deny_always"] = ["github.issues.read"]
    emu.set_capability_map(changed)
    sync(client, clock)  # a new map
    state = client._governance_state()
    assert state.deny_always == {PAYOUT, "github.issues.read"}  # the new map is in force...
    assert custom_of(client) == {"reports.generate": {"description": "monthly"}}  # ...beside the project's


def test_a_broken_project_file_fails_startup_naming_the_step(
    emu: Emulator, make_client: MakeClient, tmp_path: Path
) -> None:
    (tmp_path / "oculus.json").write_text("{not json")
    with pytest.raises(OculusStartupError) as raised:
        make_client(project_file=str(tmp_path / "oculus.json")).startup()
    assert raised.value.step == "load_project_file"
    assert str(tmp_path / "oculus.json") in str(raised.value)
    with pytest.raises(OculusStartupError) as raised:
        make_client(project_file=str(tmp_path / "missing.json")).startup()
    assert raised.value.step == "load_project_file"


def test_a_broken_project_file_with_fail_closed_false_is_logged_and_read_again(
    emu: Emulator,
    make_client: MakeClient,
    tmp_path: Path,
    clock: ManualClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = tmp_path / "oculus.json"
    path.write_text("{not json")
    client = make_client(project_file=str(path), fail_closed=False)
    with caplog.at_level(logging.WARNING, "oculus_lite.governance"):
        client.startup()
    assert "load_project_file" in caplog.text
    assert custom_of(client) == {}
    write_json(path)  # fixed: the background sync reads it again
    sync(client, clock, 5.0)
    assert runtime(client).failed == {}
    assert custom_of(client) == {"reports.generate": {"description": "monthly"}}
