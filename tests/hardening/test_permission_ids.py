"""Permission ids, OTP tokens and envelopes from both directions (issue 16, "Permissions: ids
and envelopes from the server").

A hostile caller is played against the emulator (nothing may be sent); a hostile server is a
small HTTP server on 127.0.0.1 in this file that answers whatever a test scripts and records
every request line it receives.
"""

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, Iterator, List, Tuple

import pytest

from oculus_lite import AsyncPermissionClient, PermissionClient
from oculus_lite._engine import ManualClock
from oculus_lite.exceptions import ApprovalTimeoutError, InvalidResponseError, NotFoundError, ValidationError

API_KEY = "ak_canary_H0ST1LE_9f2c"
OTP = "otp_Good-token_123"

#: Ids that must never become a path segment: traversal, query, fragment, encoded forms,
#: separators, controls, non-ASCII, empty, huge.
HOSTILE_IDS: List[str] = [
    "..",
    ".",
    "../../admin",
    "..%2f..%2fadmin",
    "%2e%2e",
    "perm_1/../../admin",
    "p?x=1",
    "p#x",
    "a/b",
    "a\\b",
    "p;x",
    "p x",
    " perm_1",
    "perm_1\r\nX-Injected: 1",
    "perm_1\n",
    "perm_1\x00",
    "perm_1\t",
    "pérm_1",
    "perm\u00a0_1",
    "perm_1\u200b",
    "",
    "x" * 129,
    "x" * 65536,
]
#: Ids that are not even strings.
NOT_STRINGS: List[Any] = [123, 1.5, True, ["perm_1"], {"id": "perm_1"}]
#: OTP tokens a server might hand over that would split a header, a form or a log line.
HOSTILE_TOKENS: List[Any] = [
    "otp_a\r\nX-Injected: 1",
    "otp_a\n",
    "otp a",
    "otp_a\t",
    "otp_a\x00",
    "otp_a\x7f",
    "otp_\u00a0a",
    "otp_é",
    "otp_a\u2028",
    " ",
    "",
    "otp_" + "a" * 4096,
    5,
    ["otp_a"],
    {"t": "otp_a"},
    True,
]


# ------------------------------------------------------------------ a hostile caller


def _caller_calls(client: PermissionClient, pid: Any) -> List[Callable[[], Any]]:
    return [
        lambda: client.get_permission(pid),
        lambda: client.wait_for_permission(pid, timeout=1, poll_interval=0.1),
        lambda: client.verify_token(pid, OTP),
        lambda: client.use_token(pid, OTP),
        lambda: client.use_token(pid, OTP, action_details={"a": 1}),
    ]


@pytest.mark.parametrize("pid", HOSTILE_IDS + NOT_STRINGS + [None], ids=lambda p: repr(p)[:30])
def test_a_hostile_id_from_the_caller_sends_nothing(emulator, pid):
    before = emulator.stats()["requests"]
    with PermissionClient(emulator.otp.demo_api_key, emulator.url) as client:
        for call in _caller_calls(client, pid):
            with pytest.raises(ValidationError, match="permission_id"):
                call()
    assert emulator.stats()["requests"] == before


def test_a_hostile_id_from_an_async_caller_sends_nothing(emulator):
    async def main() -> None:
        async with AsyncPermissionClient(emulator.otp.demo_api_key, emulator.url) as client:
            for pid in HOSTILE_IDS:
                for call in (
                    client.get_permission,
                    lambda p: client.wait_for_permission(p, timeout=1),
                    lambda p: client.verify_token(p, OTP),
                    lambda p: client.use_token(p, OTP),
                ):
                    with pytest.raises(ValidationError, match="permission_id"):
                        await call(pid)

    before = emulator.stats()["requests"]
    asyncio.run(main())
    assert emulator.stats()["requests"] == before


@pytest.mark.parametrize(
    "token", [t for t in HOSTILE_TOKENS if isinstance(t, str)], ids=lambda t: repr(t)[:20]
)
def test_a_hostile_token_from_the_caller_sends_nothing(emulator, token):
    before = emulator.stats()["requests"]
    with PermissionClient(emulator.otp.demo_api_key, emulator.url) as client:
        for call in (lambda: client.use_token("perm_1", token), lambda: client.verify_token("perm_1", token)):
            with pytest.raises(ValidationError, match="token"):
                call()
    assert emulator.stats()["requests"] == before


def test_ids_of_the_safe_form_still_work(emulator):
    with PermissionClient(emulator.otp.demo_api_key, emulator.url) as client:
        permission = client.request_permission("read", {})
        assert permission.id.startswith("perm_")
        assert client.get_permission(permission.id).id == permission.id
        for pid in ("A", "a-b_C-9", "x" * 128, "0f0e1d2c-3b4a-5968-7766-554433221100"):
            with pytest.raises(NotFoundError):  # unknown to the server, but sent
                client.get_permission(pid)


# ------------------------------------------------------------------ a hostile server

Answer = Tuple[int, Any]


class HostileOtp:
    """A scripted approval service on 127.0.0.1: ``script(method, path)`` says what to answer;
    every request line is recorded in ``seen``."""

    def __init__(self, script: Callable[[str, str], Answer]) -> None:
        self.script = script
        self.seen: List[Tuple[str, str]] = []
        self.bodies: List[Any] = []
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                with owner._lock:
                    owner.seen.append((self.command, self.path))
                    owner.bodies.append(json.loads(raw) if raw else None)
                status, payload = owner.script(self.command, self.path)
                body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer  # noqa: N815

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return "http://127.0.0.1:{}".format(self._server.server_address[1])

    def paths(self) -> List[str]:
        with self._lock:
            return [path for _, path in self.seen]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)


@pytest.fixture
def serve() -> Iterator[Callable[[Callable[[str, str], Answer]], HostileOtp]]:
    servers: List[HostileOtp] = []

    def start(script: Callable[[str, str], Answer]) -> HostileOtp:
        server = HostileOtp(script)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def ok(data: Dict[str, Any], status: int = 200) -> Answer:
    return status, {"success": True, "data": data, "error": None}


def _client(server: HostileOtp, **kwargs: Any) -> PermissionClient:
    return PermissionClient(API_KEY, server.url, retries=0, clock=ManualClock(), **kwargs)


REQUEST = "/api/v1/permissions/request"


@pytest.mark.parametrize("pid", HOSTILE_IDS + NOT_STRINGS, ids=lambda p: repr(p)[:30])
def test_a_hostile_id_from_the_server_is_never_used_in_a_path(serve, pid):
    def script(method: str, path: str) -> Answer:
        if path == REQUEST:
            return ok({"id": pid, "status": "pending", "expiresAt": "2999-01-01T00:00:00Z"}, 202)
        return ok({"id": "perm_1", "status": "approved", "token": OTP})

    server = serve(script)
    with _client(server) as client:
        for call in (
            lambda: client.request_permission("x", {}),
            lambda: client.request_permission("x", {}, wait_for_approval=True, timeout=5, poll_interval=0.1),
            lambda: client.execute_with_permission(lambda token, scope: pytest.fail("ran"), action="x"),
        ):
            with pytest.raises(InvalidResponseError) as info:
                call()
            assert "permission id" in str(info.value)
            assert "\n" not in str(info.value) and "admin" not in str(info.value)
            assert len(str(info.value)) < 300
    assert server.paths() == [REQUEST] * 3  # never a poll, never a use


def test_an_approved_reply_with_a_hostile_id_is_not_used(serve):
    server = serve(lambda m, p: ok({"id": "../../admin", "status": "approved", "token": OTP}, 201))
    with _client(server) as client:
        with pytest.raises(InvalidResponseError):
            client.execute_with_permission(lambda token, scope: pytest.fail("ran"), action="x")
    assert server.paths() == [REQUEST]


def test_a_reply_about_another_permission_is_refused(serve):
    def script(method: str, path: str) -> Answer:
        if path == REQUEST:
            return ok({"id": "perm_a", "status": "pending", "expiresAt": "2999-01-01T00:00:00Z"}, 202)
        return ok({"id": "perm_b", "status": "approved", "token": OTP})

    server = serve(script)
    with _client(server) as client:
        with pytest.raises(InvalidResponseError, match="perm_b, not the perm_a"):
            client.get_permission("perm_a")
        with pytest.raises(ApprovalTimeoutError):  # keeps waiting for perm_a; never takes perm_b
            client.request_permission("x", {}, wait_for_approval=True, timeout=3, poll_interval=1)
    assert all(p in (REQUEST, "/api/v1/permissions/perm_a") for p in server.paths())


@pytest.mark.parametrize("token", HOSTILE_TOKENS, ids=lambda t: repr(t)[:20])
def test_a_hostile_otp_token_from_the_server_is_refused(serve, token):
    def script(method: str, path: str) -> Answer:
        if path == REQUEST:
            return ok({"id": "perm_a", "status": "approved", "token": token}, 201)
        return ok({"id": "perm_a", "status": "approved", "token": token})

    server = serve(script)
    with _client(server) as client:
        for call in (
            lambda: client.request_permission("x", {}),
            lambda: client.get_permission("perm_a"),
            lambda: client.execute_with_permission(lambda t, s: pytest.fail("ran"), action="x"),
        ):
            with pytest.raises(InvalidResponseError) as info:
                call()
            assert "token" in str(info.value)
            if isinstance(token, str) and len(token) > 2:
                assert token not in str(info.value)
    assert "/use" not in " ".join(server.paths())


# ------------------------------------------------------------------ envelopes

_MISSING = object()
NOT_TRUE: List[Any] = [False, "false", None, _MISSING, 0, 1, "true", "True", [], {}, [True], {"ok": True}]


def _envelope(success: Any, data: Dict[str, Any], error: Any) -> Dict[str, Any]:
    body: Dict[str, Any] = {"data": data, "error": error}
    if success is not _MISSING:
        body["success"] = success
    return body


@pytest.mark.parametrize("success", NOT_TRUE, ids=lambda s: "missing" if s is _MISSING else repr(s))
@pytest.mark.parametrize("status", [200, 201, 202])
def test_an_envelope_without_success_true_is_an_error_carrying_its_error(serve, success, status):
    error = {"code": "POLICY_DENIED", "message": "denied for " + API_KEY, "details": {"key": API_KEY}}
    approved = {"id": "perm_a", "status": "approved", "token": OTP, "scope": {}}
    server = serve(lambda m, p: (status, _envelope(success, approved, error)))
    with _client(server) as client:
        with pytest.raises(InvalidResponseError) as info:
            client.request_permission("x", {})
        exc = info.value
        assert exc.code == "POLICY_DENIED" and exc.status_code == status
        assert "denied for" in str(exc) and "success" in str(exc)
        assert API_KEY not in str(exc) and API_KEY not in repr(exc) and API_KEY not in repr(exc.details)
        with pytest.raises(InvalidResponseError):
            client.execute_with_permission(lambda t, s: pytest.fail("ran"), action="x")


@pytest.mark.parametrize("success", NOT_TRUE, ids=lambda s: "missing" if s is _MISSING else repr(s))
def test_use_and_verify_replies_without_success_true_are_errors(serve, success):
    def script(method: str, path: str) -> Answer:
        if path.endswith("/use"):
            return 200, _envelope(success, {"success": True, "usesRemaining": 0}, {"message": "x " + OTP})
        return 200, _envelope(success, {"valid": True, "usesRemaining": 1}, None)

    server = serve(script)
    with _client(server) as client:
        with pytest.raises(InvalidResponseError) as info:
            client.use_token("perm_a", OTP)
        assert OTP not in str(info.value)
        with pytest.raises(InvalidResponseError):
            client.verify_token("perm_a", OTP)


def test_a_true_envelope_and_a_bare_object_are_still_accepted(serve):
    answers = iter(
        [
            ok({"id": "perm_a", "status": "approved", "token": OTP}, 201),
            (200, {"id": "perm_a", "status": "approved", "token": OTP}),  # no envelope at all
        ]
    )
    server = serve(lambda m, p: next(answers))
    with _client(server) as client:
        assert client.request_permission("x", {}).token == OTP
        assert client.get_permission("perm_a").token == OTP
    assert server.paths() == [REQUEST, "/api/v1/permissions/perm_a"]


def test_paths_are_percent_encoded_where_they_are_built():
    from oculus_lite.permissions._plans import PermissionCore

    assert PermissionCore._path("perm_1", "/use") == "/permissions/perm_1/use"
    for pid in HOSTILE_IDS:
        with pytest.raises(ValidationError):
            PermissionCore._path(pid)
