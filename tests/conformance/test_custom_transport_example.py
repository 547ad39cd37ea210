"""The README's custom transport example, run as written (keep the two in sync).
The README shows the block between the markers, after ``import dataclasses``,
``import threading`` and the ``oculus_lite.transport`` import below."""

import dataclasses
import json
import threading
from typing import Any

from oculus_lite import Client
from oculus_lite.emulator import Emulator
from oculus_lite.transport import Request, Response, UrllibTransport, register_transport

from ._server import ScriptedServer


# --- README example begins
class CountingTransport:
    """Adds a header to every request and counts requests; urllib does the I/O."""

    def __init__(self, header: str = "X-Agent-Team", value: str = "billing") -> None:
        self._inner = UrllibTransport()
        self._extra = ((header, value),)
        self._lock = threading.Lock()
        self.count = 0

    def request(self, request: Request) -> Response:
        with self._lock:
            self.count += 1
        return self._inner.request(dataclasses.replace(request, headers=request.headers + self._extra))

    def close(self) -> None:
        self._inner.close()


register_transport("counting", CountingTransport)  # optional: Client(transport="counting")
# --- README example ends


def test_example_counts_token_requests_through_the_client() -> None:
    with Emulator() as emu:
        transport = CountingTransport()
        with Client(
            emu.demo_client_id,
            emu.demo_client_secret,
            base_url=emu.url,
            transport=transport,
            revocation_interval=None,
        ) as client:
            token = client.get_token("db:read")
            assert client.get_token("db:read") == token  # cache hit: no request
            client.get_token("db:write")
        assert transport.count == 2
        assert emu.stats()["token_requests"] == 2


def test_example_adds_its_header(server: ScriptedServer) -> None:
    transport = CountingTransport("X-Agent-Team", "billing")
    resp = transport.request(Request("GET", server.url("/echo"), headers=(("Accept", "application/json"),)))
    sent: Any = dict(json.loads(resp.body)["headers"])
    assert sent["x-agent-team"] == "billing"
    assert sent["accept"] == "application/json"
    assert transport.count == 1


def test_example_is_reachable_by_name() -> None:
    with Emulator() as emu:
        with Client(
            emu.demo_client_id,
            emu.demo_client_secret,
            base_url=emu.url,
            transport="counting",
            revocation_interval=None,
        ) as client:
            assert client.get_token("db:read").count(".") == 2
