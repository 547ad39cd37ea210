"""Lifecycle rules of the clients: closing from coroutines never blocks the loop, close() is
synchronous everywhere, background threads hold their client weakly."""

import asyncio
import gc
import json
import subprocess
import sys
import threading
import urllib.parse
import urllib.request
import weakref
from typing import Any

import pytest

from oculus_lite import AsyncPermissionClient, Client, ClientClosedError
from oculus_lite._http._models import Request, Response
from oculus_lite._http._urllib import UrllibTransport


class _BlockingRevocation(UrllibTransport):
    """The real transport, except that revocation polls block until released."""

    def __init__(self) -> None:
        super().__init__()
        self.polling = threading.Event()
        self.release = threading.Event()

    def request(self, request: Request) -> Response:
        if request.url.endswith("/oauth/revoked-tokens"):
            self.polling.set()
            self.release.wait(60)
        return super().request(request)


def _workers():
    return [t for t in threading.enumerate() if t.name.startswith("oculus-lite-worker")]


def test_aclose_waits_for_the_worker_off_the_event_loop(emulator, agent):
    """aclose() used to join threads on the loop: a callback scheduled before it could not run
    until the join timed out, with the poller still alive."""
    transport = _BlockingRevocation()
    client = Client(agent.client_id, agent.client_secret, emulator.url, transport=transport, timeout=5)

    async def main() -> None:
        await client.aget_token("db:read")  # the first token starts revocation polling
        assert await asyncio.get_running_loop().run_in_executor(None, transport.polling.wait, 10)
        worker = client._worker._thread
        asyncio.get_running_loop().call_soon(transport.release.set)  # runs only if aclose yields
        await client.aclose()
        assert worker is not None and not worker.is_alive()

    asyncio.run(main())
    assert client.closed


def test_async_permission_client_close_works_without_await(emulator):
    """AsyncPermissionClient.close() was a coroutine: calling it without await closed nothing."""
    emulator.otp.add_agent("ak_close_test", "closer")
    client = AsyncPermissionClient(api_key="ak_close_test", base_url=emulator.url)
    client.close()  # no await
    assert client.closed

    async def later() -> None:
        with pytest.raises(ClientClosedError):
            await client.request_permission("files.read", {"n": 1})
        await client.close()  # awaiting still works, and is idempotent
        await client.aclose()

    asyncio.run(later())


def test_a_dropped_client_ends_its_worker(emulator, agent):
    """Background threads hold the client weakly: dropping it without stop() ends them at once
    (the next poll is ten minutes away; the owner's collection wakes the thread)."""
    client: Any = Client(agent.client_id, agent.client_secret, emulator.url, revocation_interval=600)
    client.get_token("db:read")
    worker = client._worker._thread
    assert worker is not None and worker.is_alive()
    ref = weakref.ref(client)
    del client
    gc.collect()
    assert ref() is None
    worker.join(10)
    assert not worker.is_alive()


def test_stop_returns_within_the_timeout_when_the_poller_is_stuck(emulator, agent):
    """stop() joined the poller for its own 10 s timeout + 1; now the client's timeout bounds it."""
    transport = _BlockingRevocation()
    client = Client(agent.client_id, agent.client_secret, emulator.url, transport=transport, timeout=0.5)
    client.get_token("db:read")
    assert transport.polling.wait(10)
    done = threading.Event()

    def stop() -> None:
        client.stop()
        done.set()

    stopper = threading.Thread(target=stop)
    stopper.start()
    # The poller is blocked for up to 60 s; stop() must come back long before that.
    assert done.wait(30)
    transport.release.set()
    stopper.join(10)


def _run_as_agent(script: str, emulator: Any, agent: Any) -> "subprocess.CompletedProcess[str]":
    """Run ``script`` in a fresh interpreter with argv: url, client id, secret, service token."""
    form = {
        "grant_type": "client_credentials",
        "client_id": agent.client_id,
        "client_secret": agent.client_secret,
        "scope": "db:read",
    }
    with urllib.request.urlopen(
        emulator.url + "/oauth/token", urllib.parse.urlencode(form).encode()
    ) as reply:
        service_token = json.loads(reply.read())["sdk_service_token"]
    argv = [sys.executable, "-c", script, emulator.url, agent.client_id, agent.client_secret, service_token]
    return subprocess.run(argv, capture_output=True, text=True, timeout=90)


_AT_EXIT = """
import atexit, sys
from oculus_lite import Client
from oculus_lite.audit import AuditEmitter

def at_exit():
    # CPython 3.12+ refuses to start threads by now: every call below used to meet that.
    url, client_id, client_secret, service_token = sys.argv[1:5]
    with Client(client_id, client_secret, url, timeout=5) as client:
        first = client.get_token("db:read")  # starts revocation polling, returns a kept-alive socket
        assert client.get_token("db:read") == first
        assert client.get_token("db:write") != first
    emitter = AuditEmitter(url, service_token, "agent-exit")
    emitter.start()
    emitter.emit({"event_type": "t"})
    print("done", emitter.stop().pending)

atexit.register(at_exit)
"""


def test_clients_work_inside_an_exit_hook(emulator, agent):
    """atexit handlers run when the interpreter no longer starts threads (3.12+): the worker,
    the keep-alive reaper and the audit thread each carry on without theirs."""
    out = _run_as_agent(_AT_EXIT, emulator, agent)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    assert out.stdout.split() == ["done", "0"]
    assert emulator.stats()["token_requests"] == 3  # ours for the service token, then the two
    assert [e["agent_id"] for e in emulator.audit_events()] == ["agent-exit"]


def test_fork_hooks_leave_with_their_objects():
    """Each client registers a few after-fork hooks; they go when it is collected, so a process
    that makes many clients neither leaks hooks nor pays for the dead ones on the next one."""
    from oculus_lite._engine import _fork

    gc.collect()
    before = len(_fork._hooks)
    clients = [Client("id", "secret", "https://api.example.com") for _ in range(50)]
    assert len(_fork._hooks) > before
    for client in clients:
        client.close()
    del clients, client
    gc.collect()
    assert len(_fork._hooks) == before


_WATCH_FINALIZE = """
import gc, logging, sys, threading, weakref
logging.basicConfig()

class Watched(dict):
    # weakref.finalize's registry, noting every change made off the main thread
    off_main = []

    def _note(self, what):
        if threading.current_thread() is not threading.main_thread():
            Watched.off_main.append((what, threading.current_thread().name))

    def __setitem__(self, key, value):
        self._note("add")
        dict.__setitem__(self, key, value)

    def __delitem__(self, key):
        self._note("remove")
        dict.__delitem__(self, key)

    def pop(self, *args):
        self._note("remove")
        return dict.pop(self, *args)

weakref.finalize._registry = Watched(weakref.finalize._registry)

from oculus_lite import Client
from oculus_lite.audit import AuditEmitter

url, client_id, client_secret, service_token = sys.argv[1:5]

# The audit thread's first batch builds the keep-alive pool, on that thread.
emitter = AuditEmitter(url, service_token, "agent-w")
emitter.start()
emitter.emit({"event_type": "t"})
assert emitter.flush(timeout=20)

def use_and_drop():
    client = Client(client_id, client_secret, url, timeout=5, revocation_interval=600)
    client.get_token("db:read")  # starts the worker (revocation polling)
    worker = client._worker._thread
    del client
    gc.collect()
    worker.join(10)
    assert not worker.is_alive()
    dropped = AuditEmitter(url, service_token, "agent-d")  # made and dropped here, unstopped
    dropped.emit({"event_type": "t"})
    del dropped
    gc.collect()

thread = threading.Thread(target=use_and_drop)
thread.start()
thread.join(60)
emitter.stop()
print(Watched.off_main)
"""


def test_background_threads_never_touch_the_finalize_registry(emulator, agent):
    """CPython's exit hook walks weakref.finalize's registry without a lock; a daemon thread
    adding or removing a finaliser meanwhile breaks it ("dictionary changed size during
    iteration": seen in CI when the audit thread built its connection pool as the process
    exited). Pools, workers and emitters made, used and dropped off the main thread now leave
    that registry alone."""
    out = _run_as_agent(_WATCH_FINALIZE, emulator, agent)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    assert out.stdout.strip() == "[]", out.stdout
    assert "discarded with 1 unsent event" in out.stderr  # the dropped emitter still says so
    assert len(emulator.audit_events()) == 1
