"""What a hostile or careless server must not get through any transport, present or
future: a status line, headers or body trickled a byte at a time (one deadline bounds
the whole call), a decompression bomb (the cap counts decompressed bytes, and memory
stays within a small multiple of it), a blind resend of a request that creates
something, and ``verify`` lost on the way to a transport built by name."""

import gzip
import json
import socket
import tracemalloc
import zlib

import pytest

from oculus_lite._http import _registry
from oculus_lite.exceptions import NetworkError, NetworkTimeoutError, ResponseTooLargeError, TLSError
from oculus_lite.transport import Request, resolve_transport

from ._server import ScriptedServer
from .conftest import Harness

TIMEOUT = 0.5
CAP = 256 * 1024


# ----------------------------------------------------------------------------- one deadline per call


@pytest.mark.parametrize("path", ["/trickle-headers", "/trickle-body"])
def test_a_trickled_reply_ends_at_the_deadline(harness: Harness, server: ScriptedServer, path: str) -> None:
    # The whole reply would take a minute at one byte every 0.1 s; each read alone is quick.
    with pytest.raises(NetworkTimeoutError) as info:
        harness.get(harness.make(), server.url(path), timeout=TIMEOUT)
    assert isinstance(info.value, TimeoutError)
    sent, total = server.trickled(path)
    # Cut off near the deadline: ~10 bytes sent of 500+. A transport that waited per read
    # (or kept the socket open after giving up) lets the server send it all.
    assert 0 <= sent < total // 4, (sent, total)


def test_a_server_silent_in_the_tls_handshake_ends_at_the_deadline(harness: Harness) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)  # accepted by the kernel, never answered
        url = "https://127.0.0.1:{}/echo".format(listener.getsockname()[1])
        with pytest.raises(NetworkTimeoutError):
            harness.get(harness.make(), url, timeout=TIMEOUT)


# ----------------------------------------------------------------------------- compression


@pytest.fixture(scope="module")
def gzip_bomb() -> bytes:
    return gzip.compress(bytes(64 << 20), 9)  # 64 MiB of zeros in about 64 KiB


@pytest.fixture(scope="module")
def deflate_bomb() -> bytes:
    return zlib.compress(bytes(64 << 20), 9)


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
def test_a_decompression_bomb_is_refused_within_a_small_multiple_of_the_cap(
    harness: Harness, server: ScriptedServer, gzip_bomb: bytes, deflate_bomb: bytes, coding: str
) -> None:
    server.blob = gzip_bomb if coding == "gzip" else deflate_bomb
    assert len(server.blob) < CAP  # small on the wire: only the decompressed size is over the cap
    t = harness.make(max_response_bytes=CAP)
    # imports, the backend's client, the connection: not measured
    assert harness.get(t, server.url("/status/200")).status == 200
    tracemalloc.start()
    try:
        with pytest.raises(ResponseTooLargeError):
            harness.get(t, server.url("/blob?coding=" + coding))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * CAP, "peak {} KiB for a {} KiB cap".format(peak >> 10, CAP >> 10)


@pytest.mark.parametrize("coding", ["gzip", "x-gzip", "deflate", "deflate-raw", "gzip-2-members"])
def test_a_compressed_reply_is_decompressed(harness: Harness, server: ScriptedServer, coding: str) -> None:
    payload = json.dumps({"access_token": "a" * 50_000, "n": list(range(2000))}).encode()
    if coding == "deflate-raw":
        packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
        server.blob, coding = packer.compress(payload) + packer.flush(), "deflate"
    elif coding == "deflate":
        server.blob = zlib.compress(payload)
    elif coding == "gzip-2-members":
        server.blob, coding = gzip.compress(payload[:1000]) + gzip.compress(payload[1000:]), "gzip"
    else:
        server.blob = gzip.compress(payload)
    resp = harness.get(harness.make(), server.url("/blob?coding=" + coding))
    assert resp.body == payload
    assert resp.header("content-encoding") == coding  # headers as received


def test_a_reply_decompressed_to_exactly_the_cap_is_accepted(
    harness: Harness, server: ScriptedServer
) -> None:
    server.blob = gzip.compress(b"z" * CAP)
    assert harness.get(harness.make(max_response_bytes=CAP), server.url("/blob")).body == b"z" * CAP
    server.blob = gzip.compress(b"z" * (CAP + 1))
    with pytest.raises(ResponseTooLargeError):
        harness.get(harness.make(max_response_bytes=CAP), server.url("/blob"))


def test_corrupt_compressed_data_is_a_network_error(harness: Harness, server: ScriptedServer) -> None:
    server.blob = gzip.compress(b"x" * 1000)[:-12] + b"garbage!!!!!"
    t = harness.make()
    with pytest.raises(NetworkError) as info:
        harness.get(t, server.url("/blob"))
    assert not isinstance(info.value, (ResponseTooLargeError, NetworkTimeoutError))
    assert harness.get(t, server.url("/status/200")).status == 200  # still usable


def test_a_coding_not_decoded_here_comes_back_as_sent(harness: Harness, server: ScriptedServer) -> None:
    server.blob = b"\x8b\x00\x80not-really-brotli\x03"
    resp = harness.get(harness.make(), server.url("/blob?coding=br"))
    assert resp.body == server.blob
    assert resp.header("content-encoding") == "br"


def test_identity_is_asked_for(harness: Harness, server: ScriptedServer) -> None:
    sent = dict(json.loads(harness.get(harness.make(), server.url("/echo")).body)["headers"])
    assert sent["accept-encoding"] == "identity"


# ----------------------------------------------------------------------------- resending


@pytest.fixture
def keep_alive(harness: Harness) -> None:
    if not harness.backend.keep_alive:
        pytest.skip("{} opens a connection per request: no keep-alive race".format(harness.backend.name))


@pytest.mark.usefixtures("keep_alive")
def test_a_request_that_is_not_resend_safe_is_never_resent(harness: Harness, server: ScriptedServer) -> None:
    t = harness.make()
    post = Request("POST", server.url("/second-drops"), body=b"create-something", timeout=10)
    assert harness.send(t, post).status == 200
    # the server reads the second request on that connection, then drops it unanswered
    with pytest.raises(NetworkError):
        harness.send(t, post)
    assert server.hit_count("/second-drops") == 2


@pytest.mark.usefixtures("keep_alive")
def test_a_get_is_resent_once_only_by_transports_that_resend(
    harness: Harness, server: ScriptedServer
) -> None:
    t = harness.make()
    assert harness.get(t, server.url("/second-drops")).status == 200
    if harness.backend.resends_when_safe:
        assert harness.get(t, server.url("/second-drops")).status == 200
        assert server.hit_count("/second-drops") == 3
    else:
        with pytest.raises(NetworkError):
            harness.get(t, server.url("/second-drops"))
        assert server.hit_count("/second-drops") == 2


# ----------------------------------------------------------------------------- verify by name


def test_verify_reaches_a_transport_built_by_name(
    harness: Harness, tls_server: ScriptedServer, ca_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness.make()  # the backend's event loop, for the async one
    monkeypatch.setitem(_registry._registry, "under-test", harness.backend.factory())
    trusting = resolve_transport("under-test", verify=ca_file)
    harness.made.append(trusting)
    assert harness.get(trusting, tls_server.url("/echo")).status == 200
    default = resolve_transport("under-test")
    harness.made.append(default)
    with pytest.raises(TLSError):
        harness.get(default, tls_server.url("/echo"))
    assert tls_server.hit_count("/echo") == 1
