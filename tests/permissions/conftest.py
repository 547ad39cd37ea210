"""Fixtures for the permission flow: an agent whose api key is a canary, and a
"human" that decides over HTTP from another thread when a request goes pending."""

import json
import threading
import urllib.error
import urllib.request
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest

from oculus_lite.emulator import Emulator

#: Api key that must never appear in logs, reprs, exception text or CLI output.
CANARY_KEY = "ak_canary_K3Y_5d1e9b"


def http_json(
    method: str, url: str, payload: Any = None, token: Optional[str] = None
) -> Tuple[int, Dict[str, str], Any]:
    """One plain HTTP call (the operator's dashboard, not the client under test)."""
    headers = {"Accept": "application/json"}
    data = None
    if payload is not None:
        data = json.dumps(payload).encode()
        headers["Content-Type"] = "application/json"
    if token is not None:
        headers["Authorization"] = "Bearer " + token
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, dict(exc.headers), json.loads(exc.read() or b"null")


def decide(
    url: str,
    pid: str,
    approved: bool,
    reason: Optional[str] = None,
    token: Optional[str] = None,
    scope_modifications: Optional[Dict[str, Any]] = None,
) -> Tuple[int, Any]:
    body: Dict[str, Any] = {"approved": approved}
    if reason is not None:
        body["reason"] = reason
    if scope_modifications is not None:
        body["scopeModifications"] = scope_modifications
    status, _, payload = http_json("POST", "{}/api/v1/permissions/{}/decide".format(url, pid), body, token)
    return status, payload


class Human:
    """Decides the next pending request(s) from another thread, over HTTP."""

    def __init__(self, emu: Emulator) -> None:
        self.emu = emu
        self.threads: List[threading.Thread] = []
        self.results: List[Tuple[str, int, Any]] = []
        self.errors: List[BaseException] = []

    def will_decide(
        self,
        approved: bool = True,
        reason: Optional[str] = None,
        count: int = 1,
        **kw: Any,
    ) -> None:
        def run() -> None:
            try:
                for _ in range(count):
                    pid = self.emu.otp.next_pending(timeout=10)
                    assert pid is not None, "no request went pending"
                    status, payload = decide(self.emu.url, pid, approved, reason, **kw)
                    self.results.append((pid, status, payload))
            except BaseException as exc:  # reported by join()
                self.errors.append(exc)

        thread = threading.Thread(target=run, name="human-approver", daemon=True)
        thread.start()
        self.threads.append(thread)

    def join(self) -> List[Tuple[str, int, Any]]:
        for thread in self.threads:
            thread.join(15)
            assert not thread.is_alive()
        self.threads = []
        if self.errors:
            raise self.errors[0]
        return self.results


@pytest.fixture
def otp_agent(emulator: Emulator) -> Any:
    """An OTP agent with the canary api key (and no policies: everything waits for a human)."""
    emulator.otp.add_agent(CANARY_KEY, "canary-agent")

    class Agent:
        api_key = CANARY_KEY
        url = emulator.url
        otp = emulator.otp
        emu = emulator

    return Agent


@pytest.fixture
def human(emulator: Emulator) -> Iterator[Human]:
    person = Human(emulator)
    yield person
    for thread in person.threads:
        thread.join(15)


@pytest.fixture
def client(request: pytest.FixtureRequest, otp_agent: Any) -> Iterator[Any]:
    """A permission client; on the test's ``clock`` (shared with the emulator) when it asks for one."""
    from oculus_lite import PermissionClient

    clock = request.getfixturevalue("clock") if "clock" in request.fixturenames else None
    with PermissionClient(api_key=otp_agent.api_key, base_url=otp_agent.url, clock=clock) as c:
        yield c
