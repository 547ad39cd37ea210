"""After ``os.fork()`` the child has the parent's memory but none of its threads: in-flight
fetches led by parent threads never finish there, locks they held stay held, the background
worker is gone. The child must lead its own fetches and restart background work."""

import os
import signal
import threading

import pytest

from oculus_lite import Client, TokenRevokedException
from oculus_lite._http._models import Request, Response
from oculus_lite._http._urllib import UrllibTransport

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX fork"),
    # 3.12+ warns that forking a multi-threaded process may deadlock: that is what we test.
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]


def _in_child(body) -> int:
    """Run ``body`` in a forked child; its exit status (0 = the child's checks passed)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            code = 0 if body() else 3
        except BaseException:
            code = 2
        finally:
            os._exit(code)
    for _ in range(600):  # 60 s at most, then kill it: a hang is a failure, not a stuck suite
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") else status >> 8
        threading.Event().wait(0.1)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return -9


class _ParentBlocks(UrllibTransport):
    """Token requests sent from the parent process block until released; the child's pass."""

    def __init__(self) -> None:
        super().__init__()
        self.parent = os.getpid()
        self.entered = threading.Event()
        self.release = threading.Event()

    def request(self, request: Request) -> Response:
        if os.getpid() == self.parent and request.url.endswith("/oauth/token"):
            self.entered.set()
            self.release.wait(60)
        return super().request(request)


def test_a_fetch_in_flight_in_the_parent_does_not_hold_the_child(emulator, agent):
    transport = _ParentBlocks()
    client = Client(
        agent.client_id,
        agent.client_secret,
        emulator.url,
        transport=transport,
        timeout=20,
        revocation_interval=None,
    )
    leader = threading.Thread(target=client.get_token, args=("db:read",))
    leader.start()
    try:
        assert transport.entered.wait(10)  # the parent's fetch is in flight: its flight is in the table
        # The child must not join the parent's flight (it would wait for its 20 s timeout, then fail).
        assert _in_child(lambda: bool(client.get_token("db:read"))) == 0
    finally:
        transport.release.set()
        leader.join(30)
        client.stop()


def test_revocation_polling_restarts_in_the_child(emulator, agent):
    client = Client(agent.client_id, agent.client_secret, emulator.url, revocation_interval=0.2)
    jti = client.get_token_info("db:read").jti
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()

    def child() -> bool:
        client.get_token("db:read")  # the first call after the fork restarts background work
        os.write(ready_w, b"1")
        os.read(go_r, 1)  # the parent revoked the token
        for _ in range(300):  # 30 s for the child's own poller to notice
            try:
                client.get_token("db:read")
            except TokenRevokedException as exc:
                return exc.jti == jti
            threading.Event().wait(0.1)
        return False

    pid_result = []
    waiter = threading.Thread(target=lambda: pid_result.append(_in_child(child)))
    waiter.start()
    assert os.read(ready_r, 1) == b"1"
    emulator.revoke(jti)
    os.write(go_w, b"1")
    waiter.join(90)
    client.stop()
    assert pid_result == [0]
