"""What the default transport's keep-alive promises, beyond the shared suite: one
resend after the keep-alive race only for resend-safe requests, idle connections
closed by close(), after IDLE_SECONDS and by the garbage collector, the idle bound,
fork safety with a real fork, reuse through a proxy tunnel, and the "pooled" name."""

import gc
import json
import os
import threading
import warnings
from typing import Any, Dict, List

import pytest

from oculus_lite._http._keepalive import IDLE_SECONDS, ConnectionPool
from oculus_lite.exceptions import ConfigurationError, NetworkError
from oculus_lite.transport import Request, UrllibTransport, get_transport

from ._proxy import Proxy
from ._server import ScriptedServer


def _get(t: UrllibTransport, url: str) -> int:
    return t.request(Request("GET", url, timeout=10)).status


def test_pooled_is_a_name_for_the_default() -> None:
    t = get_transport("pooled")
    assert type(t) is UrllibTransport
    t.close()


def test_idle_bound_is_at_least_five_seconds() -> None:
    assert IDLE_SECONDS >= 5


def test_stale_reused_connection_is_resent_once_for_a_get(server: ScriptedServer) -> None:
    with UrllibTransport() as t:
        assert _get(t, server.url("/second-drops")) == 200
        # the server drops the 2nd request on that connection without a byte of response
        assert _get(t, server.url("/second-drops")) == 200
    assert server.hit_count("/second-drops") == 3
    assert server.connections == 2


def test_stale_reused_connection_is_not_resent_for_a_post(server: ScriptedServer) -> None:
    with UrllibTransport() as t:
        post = Request("POST", server.url("/second-drops"), body=b"create", timeout=10)
        assert t.request(post).status == 200
        with pytest.raises(NetworkError) as info:
            t.request(post)
        assert "closed or reset" in str(info.value)
    assert server.hit_count("/second-drops") == 2  # the server saw it once: never resent blindly
    assert server.connections == 1


def test_stale_reused_connection_is_resent_for_a_resend_safe_post(server: ScriptedServer) -> None:
    with UrllibTransport() as t:
        post = Request("POST", server.url("/second-drops"), body=b"grant", timeout=10, resend_safe=True)
        assert t.request(post).status == 200
        assert t.request(post).status == 200
    assert server.hit_count("/second-drops") == 3
    assert server.connections == 2


def test_fresh_connection_is_not_resent(server: ScriptedServer) -> None:
    with UrllibTransport() as t:
        with pytest.raises(NetworkError):
            _get(t, server.url("/drop"))
    assert server.hit_count("/drop") == 1


def test_close_closes_idle_connections_and_transport_stays_usable(server: ScriptedServer) -> None:
    t = UrllibTransport()
    assert _get(t, server.url("/echo")) == 200
    t.close()
    assert server.wait_closed(1) == 1
    assert _get(t, server.url("/echo")) == 200  # a new connection
    assert server.connections == 2
    t.close()
    assert server.wait_closed(2) == 2


def test_connection_out_during_close_is_closed_on_return(server: ScriptedServer) -> None:
    t = UrllibTransport()
    assert _get(t, server.url("/echo")) == 200
    pool = t._pool
    assert pool is not None
    key = next(iter(pool._idle))
    conn, generation = pool.checkout(key)  # as if a request had it out
    assert conn is not None
    t.close()  # nothing idle to close now
    pool.checkin(key, conn, generation)  # back after close(): closed, not pooled
    assert server.wait_closed(1) == 1
    assert pool.idle_count() == 0


def test_idle_bound_zero_means_no_keep_alive(server: ScriptedServer) -> None:
    with UrllibTransport(max_idle_per_origin=0) as t:
        for _ in range(3):
            assert _get(t, server.url("/echo")) == 200
    assert server.connections == 3


def test_bounded_pool_after_a_burst(server: ScriptedServer) -> None:
    threads = 16
    barrier = threading.Barrier(threads)
    errors: List[BaseException] = []

    def work() -> None:
        try:
            barrier.wait(10)
            for _ in range(3):
                assert _get(t, server.url("/echo")) == 200
        except BaseException as exc:  # asserted below
            errors.append(exc)

    with UrllibTransport(max_idle_per_origin=2) as t:
        workers = [threading.Thread(target=work) for _ in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(30)
        assert errors == []
        assert t._pool is not None and t._pool.idle_count() <= 2
        opened = server.connections
    assert server.wait_closed(opened) == opened  # every one closed: surplus at once, the rest by close()
    assert server.hit_count("/echo") == threads * 3


def test_idle_connection_expires_by_the_pool_clock(server: ScriptedServer) -> None:
    now = [1000.0]
    t = UrllibTransport()
    t._pool = ConnectionPool(10, clock=lambda: now[0])
    assert _get(t, server.url("/echo")) == 200
    assert t._pool.idle_count() == 1
    now[0] += IDLE_SECONDS - 0.5
    assert _get(t, server.url("/echo")) == 200  # still fresh: reused
    assert server.connections == 1
    now[0] += IDLE_SECONDS  # idle too long: closed, not reused
    assert _get(t, server.url("/echo")) == 200
    assert server.connections == 2
    assert server.wait_closed(1) == 1
    now[0] += IDLE_SECONDS
    assert t._pool.reap() == float("inf")  # the reaper's pass closes the rest
    assert server.wait_closed(2) == 2
    assert t._pool.idle_count() == 0


def test_the_reaper_thread_closes_idle_connections(server: ScriptedServer) -> None:
    t = UrllibTransport()
    t._pool = ConnectionPool(10, idle_seconds=0.05)  # a short bound, for the test only
    assert _get(t, server.url("/echo")) == 200
    assert server.wait_closed(1) == 1  # closed with no request and no close()
    assert t._pool.idle_count() == 0
    assert _get(t, server.url("/echo")) == 200
    assert server.connections == 2
    t.close()


_REAPER_SCRIPT = """
import sys, threading
from oculus_lite.transport import Request, UrllibTransport

def reapers():
    return [t for t in threading.enumerate() if t.name == "oculus-lite-keepalive"]

t = UrllibTransport()
assert t.request(Request("GET", sys.argv[1], timeout=10)).status == 200
print(len(reapers()))  # an idle connection: the reaper waits to close it
t.close()
for thread in reapers():
    thread.join(10)
print(len(reapers()))
"""


def test_the_reaper_thread_ends_when_nothing_is_idle(server: ScriptedServer) -> None:
    """It exists only while a connection is idle: closing the last transport ends it. In a
    process of its own, since the reaper serves every pool of a process (other tests' pools
    would keep it busy)."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", _REAPER_SCRIPT, server.url("/echo")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "0"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"verify": 3},
        {"max_response_bytes": 0},
        {"max_response_bytes": True},
        {"max_idle_per_origin": -1},
        {"verify": "/nonexistent/ca.pem"},
    ],
)
def test_bad_arguments_are_configuration_errors(kwargs: Dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        t = UrllibTransport(**kwargs)
        t.request(Request("GET", "https://127.0.0.1:1/", timeout=1))


def test_repr_hides_configuration(ca_file: str) -> None:
    assert repr(UrllibTransport(verify=ca_file)) == "UrllibTransport(verify='<custom>')"
    assert repr(UrllibTransport()) == "UrllibTransport(verify=True)"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_opens_its_own_connection_and_the_parent_keeps_its_own(
    server: ScriptedServer,
) -> None:
    with UrllibTransport() as t:
        assert _get(t, server.url("/echo")) == 200
        assert server.connections == 1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork with threads running
            pid = os.fork()
        if pid == 0:  # the child: never return into pytest
            code = 1
            try:
                with UrllibTransport() as fresh:  # the child's own traffic, for contrast
                    code = 0 if _get(fresh, server.url("/echo")) == 200 else 2
                code = code or (0 if _get(t, server.url("/echo")) == 200 else 3)
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.WEXITSTATUS(status) == 0
        # the child opened two connections of its own and never touched the parent's
        assert server.connections == 3
        assert _get(t, server.url("/echo")) == 200  # the parent's connection, intact
        assert server.connections == 3
        assert server.hit_count("/echo") == 4


def test_https_through_a_proxy_reuses_the_tunnel(
    tls_server: ScriptedServer, ca_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    with Proxy(tls_server.port) as proxy:
        url = "https://oculus.test:{}/echo".format(tls_server.port)
        with UrllibTransport(verify=ca_file, proxies={"https": proxy.url}) as t:
            for _ in range(3):
                resp = t.request(Request("GET", url, timeout=10))
                assert json.loads(resp.body)["method"] == "GET"
        assert [s[0] for s in proxy.seen] == ["CONNECT"]
        assert tls_server.connections == 1


def test_loopback_is_never_sent_to_explicit_proxies(server: ScriptedServer) -> None:
    with Proxy(server.port) as proxy:
        with UrllibTransport(proxies={"http": proxy.url, "https": proxy.url}) as t:
            assert _get(t, server.url("/echo")) == 200
            assert _get(t, "http://localhost:{}/echo".format(server.port)) == 200
        assert proxy.seen == []
        assert server.hit_count("/echo") == 2


def test_garbage_collected_transport_closes_its_idle_sockets(server: ScriptedServer) -> None:
    t = UrllibTransport()
    assert _get(t, server.url("/echo")) == 200
    del t
    gc.collect()
    assert server.wait_closed(1) == 1  # closed when the pool is collected (warnings are errors)
