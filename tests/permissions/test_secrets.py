"""The api key and OTP tokens never show in log records, reprs or exception text."""

import asyncio
import logging
from typing import Any, List

import pytest

from oculus_lite import AsyncPermissionClient, OculusError, PermissionClient

from .conftest import CANARY_KEY


def _texts(obj: Any) -> List[str]:
    return [repr(obj), str(obj)]


def test_no_secret_in_logs_reprs_or_errors(
    otp_agent: Any, human: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    seen: List[str] = []
    errors: List[BaseException] = []
    tokens: List[str] = []
    with PermissionClient(api_key=CANARY_KEY, base_url=otp_agent.url, debug=True) as c:
        seen += _texts(c)
        human.will_decide(approved=True)
        p = c.request_permission("email.send", {"n": 1}, wait_for_approval=True, poll_interval=0.02)
        human.join()
        assert p.token
        tokens.append(p.token)
        seen += _texts(p) + _texts(c.get_permission(p.id))
        seen += _texts(c.verify_token(p.id, p.token)) + _texts(c.use_token(p.id, p.token))
        seen += _texts(c.use_token(p.id, p.token)) + _texts(c.verify_token(p.id, p.token))
        otp_agent.otp.add_policy(action="auto_approve", conditions={"action": {"equals": "auto"}})
        auto = c.request_permission("auto", {})
        tokens.append(auto.token or "")
        seen += _texts(auto)

        def fail(token: str, scope: Any) -> None:
            raise RuntimeError("operation failed")

        for call in (
            lambda: c.execute_with_permission(fail, action="auto", scope={}),
            lambda: c.wait_for_permission(c.request_permission("slow", {}).id, timeout=0.05),
            lambda: c.get_permission("perm_does_not_exist"),
        ):
            with pytest.raises(Exception) as info:
                call()
            errors.append(info.value)
    with PermissionClient(api_key="ak_wrong_" + CANARY_KEY, base_url=otp_agent.url) as bad:
        with pytest.raises(OculusError) as info:
            bad.request_permission("x", {})
        errors.append(info.value)

    async def run_async() -> None:
        async with AsyncPermissionClient(api_key=CANARY_KEY, base_url=otp_agent.url, debug=True) as ac:
            seen.extend(_texts(ac))
            a = await ac.request_permission("auto", {})
            tokens.append(a.token or "")
            seen.extend(_texts(a) + _texts(await ac.use_token(a.id, a.token or "")))

    asyncio.run(run_async())
    for error in errors:
        seen += _texts(error) + [str(error.args)]
    assert len(errors) == 4
    records = [r.getMessage() + repr(r.args) for r in caplog.records]
    assert any("permission" in r for r in records)  # logging did happen
    for secret in [CANARY_KEY] + tokens:
        assert len(secret) > 10
        for text in seen + records:
            assert secret not in text
