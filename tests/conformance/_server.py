"""A scripted HTTP/1.1 server on 127.0.0.1 for the transport conformance suite.

Real sockets, keep-alive, optional TLS. Paths pick the behaviour; the server
counts requests per path and accepted connections, so tests assert exact counts.
"""

import json
import socket
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Dict, Optional, Tuple
from urllib.parse import parse_qs, urlsplit


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def setup(self) -> None:
        # headers and body go out in separate writes: without NODELAY, Nagle plus the
        # client's delayed ACK stall every reused keep-alive connection for ~40 ms
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().setup()
        self.requests_on_connection = 0
        with self.server.lock:
            self.server.connections += 1

    def _send(self, status: int, body: bytes = b"", headers: Optional[Dict[str, str]] = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if status not in (204, 304):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.requests_on_connection += 1
        parts = urlsplit(self.path)
        path, query = parts.path, parse_qs(parts.query)
        with self.server.lock:
            self.server.hits[path] = self.server.hits.get(path, 0) + 1
        if path == "/echo":
            payload = {
                "method": self.command,
                "path": self.path,
                "headers": [[k.lower(), v] for k, v in self.headers.items()],
                "body": body.decode("latin-1"),
            }
            self._send(
                200,
                json.dumps(payload).encode(),
                {"Content-Type": "application/json", "X-Test-Header": "Value-1", "Set-Cookie": "a=1"},
            )
        elif path.startswith("/status/"):
            status = int(path.rsplit("/", 1)[1])
            self._send(status, "status {}".format(status).encode(), {"Content-Type": "text/plain"})
        elif path == "/empty":
            self._send(200, b"")
        elif path == "/nocontent":
            self._send(204)
        elif path == "/bytes":
            self._send(200, b"x" * int(query["n"][0]))
        elif path == "/chunked":
            # a chunked body of n bytes in 64 KiB chunks: the client must stop reading early
            remaining = int(query["n"][0])
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                while remaining > 0:
                    n = min(remaining, 65536)
                    self.wfile.write(b"%x\r\n" % n + b"y" * n + b"\r\n")
                    remaining -= n
                self.wfile.write(b"0\r\n\r\n")
            except OSError:  # the client gave up after its cap: expected
                pass
            self.close_connection = True
        elif path == "/trickle-headers":
            # a status line and headers one byte at a time: only a deadline for the whole
            # call (not a timeout per read) stops a client from waiting for all of it
            head = b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-Pad-%02d: x\r\n" % i for i in range(40))
            self._trickle(path, head + b"Content-Length: 2\r\n\r\nok")
        elif path == "/trickle-body":
            body = b"t" * 400
            self.connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body))
            self._trickle(path, body)
        elif path == "/blob":
            # the test's bytes (e.g. a gzip bomb built before tracemalloc starts), sent without a copy
            blob = memoryview(self.server.blob)
            self.send_response(200)
            self.send_header("Content-Length", str(len(blob)))
            self.send_header("Content-Encoding", query.get("coding", ["gzip"])[0])
            self.end_headers()
            try:
                for start in range(0, len(blob), 65536):
                    self.connection.sendall(blob[start : start + 65536])
            except OSError:  # the client stopped reading at its cap: expected
                self.close_connection = True
        elif path == "/redirect":
            self._send(302, b"", {"Location": query["to"][0]})
        elif path == "/slow":
            self.server.release.wait(10)  # never answers within the client's timeout
            self.close_connection = True
        elif path == "/cut":
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"z" * 10)
            self.wfile.flush()
            self._hard_close()
        elif path == "/drop":
            self._hard_close()  # no response at all
        elif path == "/close-after":
            # a normal keep-alive response, then the server silently closes the idle connection
            self._send(200, b"ok")
            self.close_connection = True
        elif path == "/second-drops":
            # the second request on one connection is dropped without a byte of response
            if self.requests_on_connection == 2:
                self._hard_close()
            else:
                self._send(200, b"ok")
        else:
            self._send(404, b"no such path")

    def _trickle(self, path: str, data: bytes) -> None:
        """Send ``data`` one byte every 0.1 s; record how many bytes went out before the
        client hung up (a send fails one or two bytes after it closed)."""
        sent = 0
        try:
            for i in range(len(data)):
                if self.server.release.wait(0.1):
                    break
                self.connection.sendall(data[i : i + 1])
                sent += 1
        except OSError:
            pass
        self.close_connection = True
        with self.server.lock:
            self.server.trickled[path] = (sent, len(data))
            self.server.trickle_done.notify_all()

    def _hard_close(self) -> None:
        self.wfile.flush()
        self.connection.shutdown(socket.SHUT_RDWR)
        self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128

    def __init__(self, tls: Optional[ssl.SSLContext]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.tls = tls
        self.lock = threading.Lock()
        self.hits: Dict[str, int] = {}
        self.connections = 0
        self.closed = 0
        self.closed_cond = threading.Condition(self.lock)
        self.release = threading.Event()
        self.blob = b""
        self.trickled: Dict[str, Tuple[int, int]] = {}
        self.trickle_done = threading.Condition(self.lock)

    def get_request(self) -> Tuple[socket.socket, Any]:
        sock, addr = super().get_request()
        if self.tls is not None:
            sock.settimeout(5)
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # failed handshakes and client aborts are part of the tests

    def shutdown_request(self, request: Any) -> None:
        # Counted only once the socket is really shut down and closed, so a test that waits
        # for it knows the client can see the FIN (finish() runs before the close).
        try:
            super().shutdown_request(request)
        finally:
            with self.closed_cond:
                self.closed += 1
                self.closed_cond.notify_all()


class ScriptedServer:
    """``with ScriptedServer() as srv: srv.url("/echo")``; ``srv.hits["/echo"]``."""

    def __init__(self, tls: Optional[ssl.SSLContext] = None) -> None:
        self._server = _Server(tls)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        scheme = "https" if tls is not None else "http"
        self.port: int = self._server.server_address[1]
        self.base = "{}://127.0.0.1:{}".format(scheme, self.port)

    def url(self, path: str) -> str:
        return self.base + path

    @property
    def hits(self) -> Dict[str, int]:
        with self._server.lock:
            return dict(self._server.hits)

    def hit_count(self, path: str) -> int:
        return self.hits.get(path, 0)

    @property
    def connections(self) -> int:
        with self._server.lock:
            return self._server.connections

    @property
    def blob(self) -> bytes:
        return self._server.blob

    @blob.setter
    def blob(self, data: bytes) -> None:
        self._server.blob = data

    def trickled(self, path: str, timeout: float = 90.0) -> Tuple[int, int]:
        """(bytes sent before the client hung up, bytes in the whole trickle) for ``path``."""
        with self._server.trickle_done:
            self._server.trickle_done.wait_for(lambda: path in self._server.trickled, timeout)
            return self._server.trickled.get(path, (-1, -1))

    def wait_closed(self, count: int, timeout: float = 10.0) -> int:
        """Wait until ``count`` connections have ended on the server side; the number seen."""
        with self._server.closed_cond:
            self._server.closed_cond.wait_for(lambda: self._server.closed >= count, timeout)
            return self._server.closed

    def __enter__(self) -> "ScriptedServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def unused_port() -> int:
    """A loopback port nobody listens on (bound then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def make_certificates(directory: Path) -> Tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1/localhost/oculus.test (openssl CLI).

    Returns (ca_cert, server_cert, server_key).
    """
    ca_key, ca_cert = directory / "ca.key", directory / "ca.pem"
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.pem"
    ext = directory / "ext.cnf"
    ext.write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost,DNS:oculus.test\n"
    )
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    run(
        "req",
        "-x509",
        *ec,
        "-keyout",
        str(ca_key),
        "-out",
        str(ca_cert),
        "-days",
        "2",
        "-subj",
        "/CN=oculus-lite test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    )
    run("req", "-new", *ec, "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1")
    run(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca_cert),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-out",
        str(cert),
        "-days",
        "2",
        "-extfile",
        str(ext),
    )
    return ca_cert, cert, key
