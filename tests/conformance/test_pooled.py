"""What only the keep-alive ``pooled`` transport promises, beyond the shared suite:
one silent reconnect when a reused connection turns out stale, idle connections
closed by close(), the idle bound, and registration under its name."""

import os
import threading
from typing import Any, Dict, List

import pytest

from oculus_lite._http._pooled import PooledTransport
from oculus_lite.exceptions import ConfigurationError, NetworkError
from oculus_lite.transport import Request, get_transport

from ._server import ScriptedServer


def _get(t: PooledTransport, url: str) -> int:
    return t.request(Request("GET", url, timeout=10)).status


def test_registered_as_pooled() -> None:
    t = get_transport("pooled")
    assert isinstance(t, PooledTransport)
    t.close()


def test_stale_reused_connection_is_retried_once_on_a_fresh_one(server: ScriptedServer) -> None:
    with PooledTransport() as t:
        assert _get(t, server.url("/second-drops")) == 200
        # the server drops the 2nd request on that connection without a byte of response
        assert _get(t, server.url("/second-drops")) == 200
    assert server.hit_count("/second-drops") == 3
    assert server.connections == 2


def test_fresh_connection_is_not_retried(server: ScriptedServer) -> None:
    with PooledTransport() as t:
        with pytest.raises(NetworkError):
            _get(t, server.url("/drop"))
    assert server.hit_count("/drop") == 1


def test_close_closes_idle_connections_and_transport_stays_usable(server: ScriptedServer) -> None:
    t = PooledTransport()
    assert _get(t, server.url("/echo")) == 200
    t.close()
    assert server.wait_closed(1) == 1
    assert _get(t, server.url("/echo")) == 200  # a new connection
    assert server.connections == 2
    t.close()
    assert server.wait_closed(2) == 2


def test_connection_out_during_close_is_closed_on_return(server: ScriptedServer) -> None:
    t = PooledTransport()
    assert _get(t, server.url("/echo")) == 200
    key = next(iter(t._idle))
    conn, generation = t._checkout(key)  # as if a request had it out
    assert conn is not None
    t.close()  # nothing idle to close now
    t._checkin(key, conn, generation)  # back after close(): closed, not pooled
    assert server.wait_closed(1) == 1
    assert t._idle == {}


def test_idle_bound_zero_means_no_keep_alive(server: ScriptedServer) -> None:
    with PooledTransport(max_idle_per_origin=0) as t:
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

    with PooledTransport(max_idle_per_origin=2) as t:
        workers = [threading.Thread(target=work) for _ in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(30)
        assert errors == []
        idle = sum(len(stack) for stack in t._idle.values())
        assert idle <= 2
        opened = server.connections
    assert server.wait_closed(opened) == opened  # every one closed: surplus at once, the rest by close()
    assert server.hit_count("/echo") == threads * 3


@pytest.mark.parametrize(
    "kwargs",
    [
        {"verify": 3},
        {"max_response_bytes": 0},
        {"max_idle_per_origin": -1},
        {"verify": "/nonexistent/ca.pem"},
    ],
)
def test_bad_arguments_are_configuration_errors(kwargs: Dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        t = PooledTransport(**kwargs)
        t.request(Request("GET", "https://127.0.0.1:1/", timeout=1))


def test_unsupported_proxy_scheme_is_a_configuration_error() -> None:
    t = PooledTransport(proxies={"https": "socks5://127.0.0.1:1080"})
    with pytest.raises(ConfigurationError, match="socks5"):
        t.request(Request("GET", "https://oculus.test/", timeout=1))


def test_repr_hides_configuration() -> None:
    assert repr(PooledTransport(verify="/some/ca.pem")) == "PooledTransport(verify='<custom>')"
    assert repr(PooledTransport()) == "PooledTransport(verify=True)"


def test_after_fork_the_parents_connections_are_not_reused(
    server: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with PooledTransport() as t:
        assert _get(t, server.url("/echo")) == 200
        real = os.getpid()
        monkeypatch.setattr(os, "getpid", lambda: real + 1)  # as seen from a forked child
        assert _get(t, server.url("/echo")) == 200
        assert server.connections == 2
        assert _get(t, server.url("/echo")) == 200  # the child's own connection is reused
        assert server.connections == 2


def test_garbage_collected_transport_closes_its_idle_sockets(server: ScriptedServer) -> None:
    import gc

    t = PooledTransport()
    assert _get(t, server.url("/echo")) == 200
    del t
    gc.collect()
    assert server.wait_closed(1) == 1  # closed by the finalizer, no ResourceWarning (warnings are errors)
