"""Shared fixtures: a real emulator on loopback per test, a clean environment, and
clients that are always stopped."""

import os
from typing import Any, Callable, Iterator, List

import pytest

from oculus_lite.emulator import Emulator

_SCRUBBED = (
    "AGENT_CLIENT_ID",
    "AGENT_CLIENT_SECRET",
    "ANTI_AI_URL",
    "OCULUS_CLIENT_ID",
    "OCULUS_CLIENT_SECRET",
    "OCULUS_BASE_URL",
    "OCULUS_TASK_ID",
    "AGENT_OTP_API_KEY",
    "AGENT_OTP_URL",
    "AGENT_OTP_ADMIN_TOKEN",
)

#: A secret that must never show up in any log record, repr, exception or CLI output.
CANARY_SECRET = "canary-S3CRET-7f3a9c"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _SCRUBBED:
        monkeypatch.delenv(name, raising=False)
    # Plugin backends (requests, httpx) would send loopback traffic to a configured proxy.
    no_proxy = ",".join(filter(None, [os.environ.get("NO_PROXY"), "127.0.0.1", "localhost"]))
    monkeypatch.setenv("NO_PROXY", no_proxy)
    monkeypatch.setenv("no_proxy", no_proxy)


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator() as emu:
        yield emu


@pytest.fixture
def agent(emulator: Emulator) -> Any:
    """An active agent whose secret is the canary, granted db:* and crm:* scopes."""
    emulator.add_agent("agent-1", CANARY_SECRET, scopes=["db:*", "crm:*"])

    class Agent:
        client_id = "agent-1"
        client_secret = CANARY_SECRET
        url = emulator.url

    return Agent


@pytest.fixture
def make_client(emulator: Emulator, agent: Any) -> Iterator[Callable[..., Any]]:
    from oculus_lite import Client

    made: List[Any] = []

    def make(**kwargs: Any) -> Any:
        kwargs.setdefault("revocation_interval", None)
        client = Client(
            kwargs.pop("client_id", agent.client_id),
            kwargs.pop("client_secret", agent.client_secret),
            kwargs.pop("base_url", emulator.url),
            **kwargs,
        )
        made.append(client)
        return client

    yield make
    for client in made:
        client.stop()


@pytest.fixture
def canary() -> str:
    return CANARY_SECRET


@pytest.fixture
def token_requests(emulator: Emulator) -> Callable[[], int]:
    """How many token requests the emulator has received so far."""
    return lambda: int(emulator.stats()["token_requests"])
