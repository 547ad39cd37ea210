"""The polling schedule and the emulator's configuration, without waiting in real time."""

import datetime as dt
import logging
from typing import Any, List

import pytest

from oculus_lite import ApprovalTimeoutError, Permission, PermissionClient, PermissionStatus
from oculus_lite._engine import SYSTEM_CLOCK
from oculus_lite.emulator import Emulator
from oculus_lite.permissions._plans import _Waiter

from .conftest import http_json


def _pending(expires_in: float = 3600.0) -> Permission:
    now = dt.datetime.now(dt.timezone.utc)
    return Permission(
        id="perm_1",
        status=PermissionStatus.PENDING,
        expires_at=now + dt.timedelta(seconds=expires_in),
    )


def test_backoff_starts_at_poll_interval_and_caps_at_10_s() -> None:
    waiter = _Waiter("perm_1", 3600.0, 2.0, SYSTEM_CLOCK, logging.getLogger("test"))
    delays: List[float] = []
    for _ in range(7):
        step = waiter.next_step(_pending(), None)
        assert isinstance(step, float)
        delays.append(round(step, 3))
    assert delays == [2.0, 3.0, 4.5, 6.75, 10.0, 10.0, 10.0]


def test_retry_after_is_honoured_and_expiry_wakes_up_early() -> None:
    waiter = _Waiter("perm_1", 3600.0, 2.0, SYSTEM_CLOCK, logging.getLogger("test"))
    assert waiter.next_step(None, 7.0) == 7.0  # a 429 said: come back in 7 s
    step = waiter.next_step(_pending(expires_in=0.5), None)
    assert isinstance(step, float) and 0.05 <= step <= 0.56


def test_final_statuses_and_timeout() -> None:
    waiter = _Waiter("perm_1", 3600.0, 2.0, SYSTEM_CLOCK, logging.getLogger("test"))
    denied = Permission(id="perm_1", status=PermissionStatus.DENIED, reason="no")
    assert waiter.next_step(denied, None) is denied
    expired = waiter.next_step(_pending(expires_in=-1), None)
    assert isinstance(expired, Permission) and expired.status is PermissionStatus.EXPIRED
    done = _Waiter("perm_9", 0.0, 2.0, SYSTEM_CLOCK, logging.getLogger("test"))
    with pytest.raises(ApprovalTimeoutError) as info:
        done.next_step(_pending(), None)
    assert info.value.permission_id == "perm_9"


def test_poll_interval_above_the_cap_is_kept() -> None:
    waiter = _Waiter("perm_1", 3600.0, 30.0, SYSTEM_CLOCK, logging.getLogger("test"))
    assert [waiter.next_step(_pending(), None) for _ in range(2)] == [30.0, 30.0]


def test_emulator_config_section() -> None:
    config = {
        "otp": {
            "demo_api_key": "ak_demo_fixed",
            "token_uses": 2,
            "agents": [{"api_key": "ak_cfg", "name": "configured", "rate_limit": 20}],
            "policies": [
                {
                    "api_key": "ak_cfg",
                    "name": "reads",
                    "priority": 1,
                    "conditions": {"action": {"endsWith": ".read"}},
                    "action": "auto_approve",
                },
                {"name": "deletes", "conditions": {"action": {"contains": "delete"}}, "action": "deny"},
            ],
        }
    }
    with Emulator(config=config) as emu:
        assert emu.otp.demo_api_key == "ak_demo_fixed"
        with PermissionClient(api_key="ak_cfg", base_url=emu.url) as c:
            p = c.request_permission("db.read", {})
            assert p.status == "approved"
            assert [c.use_token(p.id, p.token or "").success for _ in range(3)] == [
                True,
                True,
                False,
            ]
            assert c.request_permission("db.delete", {}).status == "denied"
            pending = c.request_permission("db.write", {})
        assert pending.approval_url == emu.url + "/_emulator/ui/permissions/" + pending.id
        status, _, body = http_json("GET", emu.url + "/_emulator/otp/permissions/" + pending.id)
        assert status == 200 and body["id"] == pending.id and "token" not in body
        emu.reset()  # back to the configured agents and policies
        assert emu.otp.stats()["permission_requests"] == 0
        with PermissionClient(api_key="ak_cfg", base_url=emu.url) as c:
            assert c.request_permission("db.read", {}).status == "approved"


@pytest.mark.parametrize(
    "otp, message",
    [
        ({"rate_limit": 0}, "otp.rate_limit must be an int >= 1"),
        ({"agents": [{"key": "x"}]}, "otp.agents entries"),
        ({"policies": [{"action": "maybe"}]}, "policy action must be one of"),
        ({"policies": [{"conditions": {"user": {"equals": 1}}}]}, "use action, resource"),
        ({"policies": [{"conditions": {"action": {"matches": "("}}}]}, "bad regular expression"),
        ({"policies": [{"conditions": {"action": {"in": "abc"}}}]}, "in needs a list"),
    ],
)
def test_bad_emulator_config_is_refused(otp: Any, message: str) -> None:
    from oculus_lite.emulator._otp import OtpService

    with pytest.raises(ValueError, match=message):
        OtpService(config=otp)


def test_api_routes_answer_with_the_envelope(emulator: Any) -> None:
    key = emulator.otp.demo_api_key
    status, _, body = http_json("GET", emulator.url + "/api/v1/nothing", token=key)
    assert status == 404 and body == {
        "success": False,
        "data": None,
        "error": {"code": "NOT_FOUND", "message": "no such API route", "details": {}},
    }
    status, headers, body = http_json("GET", emulator.url + "/api/v1/permissions/request", token=key)
    assert status == 405 and headers["Allow"] == "POST"
    status, headers, body = http_json("POST", emulator.url + "/api/v1/permissions/request", {"action": "x"})
    assert status == 401 and body["error"]["code"] == "UNAUTHORIZED"
    assert emulator.otp.stats()["otp_auth_failures"] == 1
