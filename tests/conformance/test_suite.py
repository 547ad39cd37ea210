"""The transport conformance suite: written once, run against every transport
(``backend`` is parametrised over urllib, pooled, requests, httpx, httpx-async,
urllib3; plugins whose backend is missing are reported SKIPPED by name)."""

import json
import threading
from typing import Any, Dict, List

import pytest

from oculus_lite.exceptions import (
    ConfigurationError,
    NetworkError,
    NetworkTimeoutError,
    ResponseTooLargeError,
    TLSError,
)
from oculus_lite.transport import Request, Response

from ._server import ScriptedServer, unused_port
from .conftest import Harness


def _json(response: Response) -> Dict[str, Any]:
    data: Dict[str, Any] = json.loads(response.body)
    return data


# ----------------------------------------------------------------------------- pass-through


def test_post_passes_method_headers_and_body(harness: Harness, server: ScriptedServer) -> None:
    t = harness.make()
    body = b'{"grant_type":"client_credentials"}'
    req = Request(
        "POST",
        server.url("/echo?x=1"),
        headers=(("Content-Type", "application/json"), ("X-Custom", "abc")),
        body=body,
    )
    resp = harness.send(t, req)
    assert resp.status == 200
    echoed = _json(resp)
    assert echoed["method"] == "POST"
    assert echoed["path"] == "/echo?x=1"
    assert echoed["body"] == body.decode()
    sent = dict(echoed["headers"])
    assert sent["x-custom"] == "abc"
    assert sent["content-type"] == "application/json"
    assert sent["content-length"] == str(len(body))


def test_response_headers_are_case_insensitive(harness: Harness, server: ScriptedServer) -> None:
    resp = harness.get(harness.make(), server.url("/echo"))
    assert resp.header("X-TEST-HEADER") == "Value-1"
    assert resp.headers["x-test-header"] == "Value-1"
    assert "Content-Type" in resp.headers
    assert all(key == key.lower() for key in resp.headers)


def test_cookies_are_neither_stored_nor_replayed(harness: Harness, server: ScriptedServer) -> None:
    t = harness.make()
    first = harness.get(t, server.url("/echo"))
    assert first.header("set-cookie") == "a=1"
    second = _json(harness.get(t, server.url("/echo")))
    assert "cookie" not in dict(second["headers"])


@pytest.mark.parametrize("status", [400, 401, 404, 429, 500, 503])
def test_error_statuses_are_returned_not_raised(
    harness: Harness, server: ScriptedServer, status: int
) -> None:
    resp = harness.get(harness.make(), server.url("/status/{}".format(status)))
    assert resp.status == status
    assert resp.body == "status {}".format(status).encode()


def test_empty_body_and_204(harness: Harness, server: ScriptedServer) -> None:
    t = harness.make()
    empty = harness.get(t, server.url("/empty"))
    assert (empty.status, empty.body) == (200, b"")
    nocontent = harness.get(t, server.url("/nocontent"))
    assert (nocontent.status, nocontent.body) == (204, b"")
    # the connection (if kept) is still usable after bodiless responses
    assert harness.get(t, server.url("/status/200")).status == 200


# ----------------------------------------------------------------------------- body cap


def test_body_at_cap_is_accepted(harness: Harness, server: ScriptedServer) -> None:
    resp = harness.get(harness.make(max_response_bytes=4096), server.url("/bytes?n=4096"))
    assert resp.body == b"x" * 4096


def test_body_over_cap_is_rejected(harness: Harness, server: ScriptedServer) -> None:
    t = harness.make(max_response_bytes=4096)
    with pytest.raises(ResponseTooLargeError) as info:
        harness.get(t, server.url("/bytes?n=4097"))
    assert "max_response_bytes" in str(info.value)
    assert info.value.retryable is False
    # the transport stays usable afterwards
    assert harness.get(t, server.url("/status/200")).status == 200


def test_huge_chunked_body_is_cut_off_while_streaming(harness: Harness, server: ScriptedServer) -> None:
    # 64 MiB announced in chunks: the transport must stop after its cap, not buffer it all
    t = harness.make(max_response_bytes=100_000)
    with pytest.raises(ResponseTooLargeError):
        harness.get(t, server.url("/chunked?n={}".format(64 << 20)))


# ----------------------------------------------------------------------------- redirects


def test_redirect_is_returned_not_followed(harness: Harness, server: ScriptedServer) -> None:
    with ScriptedServer() as elsewhere:
        target = elsewhere.url("/echo")
        resp = harness.get(harness.make(), server.url("/redirect?to=" + target))
        assert resp.status == 302
        assert resp.header("location") == target
        assert elsewhere.hit_count("/echo") == 0
        assert elsewhere.connections == 0


# ----------------------------------------------------------------------------- failures


def test_connection_refused_is_network_error(harness: Harness) -> None:
    url = "http://127.0.0.1:{}/echo".format(unused_port())
    with pytest.raises(NetworkError) as info:
        harness.get(harness.make(), url)
    assert not isinstance(info.value, NetworkTimeoutError)
    assert info.value.__cause__ is not None
    assert info.value.retryable is True


def test_read_timeout_is_network_timeout_error(harness: Harness, server: ScriptedServer) -> None:
    with pytest.raises(NetworkTimeoutError) as info:
        harness.get(harness.make(), server.url("/slow"), timeout=0.3)
    assert isinstance(info.value, TimeoutError)
    assert info.value.__cause__ is not None


def test_close_mid_response_is_network_error(harness: Harness, server: ScriptedServer) -> None:
    with pytest.raises(NetworkError) as info:
        harness.get(harness.make(), server.url("/cut"))
    assert info.value.__cause__ is not None
    assert not isinstance(info.value, (ResponseTooLargeError, NetworkTimeoutError))


def test_close_without_response_is_network_error(harness: Harness, server: ScriptedServer) -> None:
    with pytest.raises(NetworkError) as info:
        harness.get(harness.make(), server.url("/drop"))
    assert info.value.__cause__ is not None
    assert server.hit_count("/drop") == 1  # a fresh connection is not silently resent


def test_idle_connection_closed_by_server_is_replaced(harness: Harness, server: ScriptedServer) -> None:
    t = harness.make()
    assert harness.get(t, server.url("/close-after")).status == 200
    # The server has really closed the idle connection (not racing the second request).
    assert server.wait_closed(1) >= 1
    assert harness.get(t, server.url("/close-after")).status == 200
    assert server.hit_count("/close-after") == 2
    assert server.connections == 2


def test_connection_reuse(harness: Harness, server: ScriptedServer) -> None:
    t = harness.make()
    for _ in range(5):
        assert harness.get(t, server.url("/echo")).status == 200
    assert server.hit_count("/echo") == 5
    assert server.connections == (1 if harness.backend.keep_alive else 5)


def test_unsupported_scheme_is_refused(harness: Harness) -> None:
    with pytest.raises((ConfigurationError, NetworkError)):
        harness.get(harness.make(), "ftp://127.0.0.1/file")


# ----------------------------------------------------------------------------- TLS


def test_tls_untrusted_certificate_fails(harness: Harness, tls_server: ScriptedServer) -> None:
    with pytest.raises(TLSError) as info:
        harness.get(harness.make(), tls_server.url("/echo"))
    assert info.value.retryable is False
    assert info.value.__cause__ is not None
    assert tls_server.hit_count("/echo") == 0


def test_tls_with_ca_bundle_succeeds(harness: Harness, tls_server: ScriptedServer, ca_file: str) -> None:
    t = harness.make(verify=ca_file)
    resp = harness.get(t, tls_server.url("/echo"))
    assert resp.status == 200
    assert _json(resp)["method"] == "GET"
    assert harness.get(t, tls_server.url("/status/201")).status == 201
    assert tls_server.connections == (1 if harness.backend.keep_alive else 2)  # TLS kept alive too


def test_tls_hostname_is_checked(harness: Harness, tls_server: ScriptedServer, ca_file: str) -> None:
    # the certificate names 127.0.0.1 and localhost, not 127.0.0.2
    url = tls_server.url("/echo").replace("127.0.0.1", "127.0.0.2")
    with pytest.raises(NetworkError):
        harness.get(harness.make(verify=ca_file), url)
    assert tls_server.hit_count("/echo") == 0


# ----------------------------------------------------------------------------- concurrency


def test_sixteen_threads_share_one_transport(harness: Harness, server: ScriptedServer) -> None:
    t = harness.make()
    threads, per_thread = 16, 5
    barrier = threading.Barrier(threads)
    results: List[int] = []
    errors: List[BaseException] = []
    lock = threading.Lock()

    def work(n: int) -> None:
        try:
            barrier.wait(10)
            for i in range(per_thread):
                req = Request("POST", server.url("/echo"), body="{}-{}".format(n, i).encode())
                resp = harness.send(t, req)
                assert _json(resp)["body"] == "{}-{}".format(n, i)
                with lock:
                    results.append(resp.status)
        except BaseException as exc:  # collected and asserted below
            with lock:
                errors.append(exc)

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(30)
    assert errors == []
    assert results == [200] * (threads * per_thread)
    assert server.hit_count("/echo") == threads * per_thread
