"""The client's token and permission flows end to end through every transport,
against the real emulator on loopback (its fault injection included)."""

from typing import Any

import pytest

from oculus_lite import AsyncPermissionClient, Client, PermissionClient
from oculus_lite.emulator import Emulator
from oculus_lite.exceptions import InvalidResponseError, ResponseTooLargeError

from ._server import ScriptedServer
from .conftest import Harness

TOKEN_PATH = "/oauth/token"


@pytest.fixture
def emu() -> Any:
    with Emulator() as emulator:
        yield emulator


def _client(emu: Emulator, transport: Any, **kwargs: Any) -> Client:
    kwargs.setdefault("revocation_interval", None)
    return Client(emu.demo_client_id, emu.demo_client_secret, base_url=emu.url, transport=transport, **kwargs)


def _get_token(harness: Harness, client: Client, scope: str) -> str:
    if harness.backend.is_async:
        token: str = harness.backend.run(client.aget_token(scope))  # type: ignore[attr-defined]
        return token
    return client.get_token(scope)


def test_token_flow(harness: Harness, emu: Emulator) -> None:
    client = _client(emu, harness.make())
    token = _get_token(harness, client, "db:read")
    assert token.count(".") == 2
    assert _get_token(harness, client, "db:read") == token  # cached
    other = _get_token(harness, client, "db:write")
    assert other != token
    assert emu.stats()["token_requests"] == 2


def test_truncated_token_reply_is_retried(harness: Harness, emu: Emulator) -> None:
    emu.set_faults([{"path": TOKEN_PATH, "kind": "truncate", "next": 1}])
    client = _client(emu, harness.make())
    assert _get_token(harness, client, "db:read").count(".") == 2
    assert emu.stats()["token_requests"] == 2


def test_oversized_token_reply_is_refused(harness: Harness, emu: Emulator) -> None:
    emu.set_faults([{"path": TOKEN_PATH, "kind": "oversize", "next": 1}])
    client = _client(emu, harness.make(max_response_bytes=64 * 1024))
    with pytest.raises(ResponseTooLargeError):
        _get_token(harness, client, "db:read")
    assert emu.stats()["token_requests"] == 1  # not retried


def test_redirect_from_token_endpoint_is_an_error_and_not_followed(harness: Harness, emu: Emulator) -> None:
    with ScriptedServer() as elsewhere:
        emu.set_faults(
            [
                {
                    "path": TOKEN_PATH,
                    "kind": "status",
                    "status": 307,
                    "location": elsewhere.url("/echo"),
                    "next": 1,
                }
            ]
        )
        client = _client(emu, harness.make(), retries=0)
        with pytest.raises(InvalidResponseError):
            _get_token(harness, client, "db:read")
        assert elsewhere.connections == 0  # the credentials went nowhere else


def test_permission_flow(harness: Harness, emu: Emulator) -> None:
    transport = harness.make()
    key = emu.otp.demo_api_key
    if harness.backend.is_async:

        async def flow() -> Any:
            client = AsyncPermissionClient(api_key=key, base_url=emu.url, transport=transport)
            p = await client.request_permission("send_email", {"to": "a@example.com"})
            assert p.status.value == "pending"
            emu.otp.decide(p.id, True)
            approved = await client.get_permission(p.id)
            assert approved.token
            assert (await client.verify_token(p.id, approved.token)).valid
            return await client.use_token(p.id, approved.token)

        used = harness.backend.run(flow())  # type: ignore[attr-defined]
    else:
        client = PermissionClient(api_key=key, base_url=emu.url, transport=transport)
        p = client.request_permission("send_email", {"to": "a@example.com"})
        assert p.status.value == "pending"
        emu.otp.decide(p.id, True)
        approved = client.get_permission(p.id)
        assert approved.token
        assert client.verify_token(p.id, approved.token).valid
        used = client.use_token(p.id, approved.token)
    assert used.success
    assert [r["status"] for r in emu.otp.list_permissions()] == ["used"]
