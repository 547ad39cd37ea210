"""Crash reporters (Sentry, rich, ``TracebackException(capture_locals=True)``) record every
frame's local variables. No failing call may leave the client secret, the api key or a refresh
token in any of them, in any encoding the client produced."""

import asyncio
import traceback
from typing import Any, Callable, List

import pytest

from oculus_lite import AsyncPermissionClient, Client, OculusError, PermissionClient
from oculus_lite._secret import Secret

CANARY = "canary-S3CRET+/=&ü-7f3a9c"  # characters that change under form, JSON and URL encoding


def _captured(exc: BaseException) -> str:
    """Everything a crash reporter capturing locals would store, exceptions chained included,
    except the frames of this test file (whose own variables hold the canary, of course)."""
    te: Any = traceback.TracebackException(type(exc), exc, exc.__traceback__, capture_locals=True)
    parts: List[str] = []
    seen = set()
    while te is not None and id(te) not in seen:
        seen.add(id(te))
        parts.append("".join(te.format_exception_only()))
        for frame in te.stack:
            if frame.filename != __file__:
                parts.append("{}:{} {}".format(frame.filename, frame.lineno, frame.locals))
        te = te.__cause__ or (None if te.__suppress_context__ else te.__context__)
    return "\n".join(parts)


def _assert_clean(text: str) -> None:
    for form in Secret(CANARY).forms:
        assert form not in text, "a form of the secret was captured: {!r}".format(form)


def _failure(call: Callable[[], Any]) -> BaseException:
    with pytest.raises(OculusError) as info:
        call()
    return info.value


@pytest.mark.parametrize(
    "fault",
    [
        None,  # wrong secret: 401
        {"path": "/oauth/token", "kind": "status", "status": 500},
        {"path": "/oauth/token", "kind": "close"},
        {"path": "/oauth/token", "kind": "badjson"},
    ],
)
def test_failed_token_requests_leave_no_secret_in_frame_locals(emulator, fault):
    emulator.add_agent("crash-agent", "the-real-secret", scopes=["db:*"])
    if fault is not None:
        emulator.set_faults([fault])
    client = Client("crash-agent", CANARY, emulator.url, retries=1, revocation_interval=None)
    try:
        _assert_clean(_captured(_failure(lambda: client.get_token("db:read"))))
        _assert_clean(_captured(_failure(lambda: asyncio.run(client.aget_token("db:write")))))
    finally:
        client.stop()


def test_connection_refused_leaves_no_secret_in_frame_locals():
    client = Client("id", CANARY, "http://127.0.0.1:9", retries=0, revocation_interval=None)
    _assert_clean(_captured(_failure(lambda: client.get_token("db:read"))))
    client.stop()


def test_a_server_echoing_the_secret_in_any_encoding_is_scrubbed(emulator):
    """The server's error text may quote the form body it received: URL-encoded, JSON-escaped."""
    from urllib.parse import quote_plus

    body = {"error": {"code": "bad", "message": "you sent client_secret=" + quote_plus(CANARY)}}
    emulator.set_faults([{"path": "/oauth/token", "kind": "status", "status": 400, "body": body}])
    client = Client("id", CANARY, emulator.url, revocation_interval=None)
    error = _failure(lambda: client.get_token("db:read"))
    assert isinstance(error, OculusError)
    _assert_clean(str(error) + repr(error) + repr(error.details))
    client.stop()


def test_failed_permission_calls_leave_no_api_key_in_frame_locals(emulator):
    key = "ak_" + CANARY
    emulator.otp.add_agent(key, "crash")
    errors: List[BaseException] = []
    with PermissionClient(api_key=key, base_url=emulator.url, retries=0) as client:
        errors.append(_failure(lambda: client.get_permission("perm_missing")))
        errors.append(_failure(lambda: client.use_token("perm_missing", "otp_the_callers_own_token")))

    async def main() -> None:
        async with AsyncPermissionClient(api_key=key, base_url=emulator.url, retries=0) as client:
            for call in (client.get_permission("perm_missing"), client.verify_token("perm_x", "otp_y")):
                try:
                    await call
                except OculusError as exc:
                    errors.append(exc)

    asyncio.run(main())
    assert len(errors) == 4
    for error in errors:
        _assert_clean(_captured(error))
