"""The two permission clients are shells over one core: same methods, same types, same logs."""

import asyncio
import logging
import typing
from typing import Any, List

from oculus_lite import AsyncPermissionClient, PermissionClient

PUBLIC = {
    "request_permission",
    "get_permission",
    "wait_for_permission",
    "verify_token",
    "use_token",
    "execute_with_permission",
    "close",
}


def test_the_twins_hold_no_logic_of_their_own():
    """All logic lives in the shared core: each twin only defines its public shells."""
    for cls in (PermissionClient, AsyncPermissionClient):
        own = {name for name in vars(cls) if not name.startswith("__")}
        assert PUBLIC <= own
        assert not {name for name in own if name.startswith("_")}, cls.__name__
        assert own - PUBLIC <= {"aclose"}


def test_on_pending_has_one_type():
    sync = typing.get_type_hints(PermissionClient.request_permission)["on_pending"]
    asyn = typing.get_type_hints(AsyncPermissionClient.request_permission)["on_pending"]
    assert sync == asyn


def _debug_messages(caplog: Any) -> List[str]:
    return [r.getMessage() for r in caplog.records if r.name == "oculus_lite.permissions"]


def test_the_async_client_logs_what_the_sync_one_logs(otp_agent: Any, caplog: Any) -> None:
    """Drift 3: the async copy logged neither "token received" nor accepted/refused uses."""
    otp_agent.otp.add_policy(
        api_key=otp_agent.api_key, action="auto_approve", conditions={"action": {"equals": "files.read"}}
    )
    caplog.set_level(logging.DEBUG, logger="oculus_lite.permissions")

    def scrub_ids(messages: List[str]) -> List[str]:
        return [" ".join(w for w in m.split() if not w.startswith("perm")) for m in messages]

    with PermissionClient(api_key=otp_agent.api_key, base_url=otp_agent.url) as client:
        permission = client.request_permission("files.read", {"max": 1})
        client.get_permission(permission.id)
        assert permission.token is not None
        client.use_token(permission.id, permission.token)
    sync_messages = scrub_ids(_debug_messages(caplog))
    caplog.clear()

    async def main() -> None:
        async with AsyncPermissionClient(api_key=otp_agent.api_key, base_url=otp_agent.url) as client:
            permission = await client.request_permission("files.read", {"max": 1})
            await client.get_permission(permission.id)
            assert permission.token is not None
            await client.use_token(permission.id, permission.token)

    asyncio.run(main())
    assert sync_messages and scrub_ids(_debug_messages(caplog)) == sync_messages
