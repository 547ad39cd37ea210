"""A tiny forward proxy on 127.0.0.1 for the proxy tests: ``CONNECT`` tunnels and
absolute-form plain HTTP, both relayed to one fixed upstream server whatever host
the client named (so a test can use a name like ``oculus.test`` with no DNS).
It records what it was asked for and the ``Proxy-Authorization`` it saw."""

import socket
import socketserver
import threading
from typing import List, Optional, Tuple


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(socketserver.BaseRequestHandler):
    server: "_ProxyServer"

    def handle(self) -> None:
        client: socket.socket = self.request
        client.settimeout(10)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(65536)
            if not chunk:
                return
            head += chunk
        head, rest = head.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ", 2)
        auth = next(
            (
                line.split(":", 1)[1].strip()
                for line in lines[1:]
                if line.lower().startswith("proxy-authorization:")
            ),
            None,
        )
        with self.server.lock:
            self.server.seen.append((method, target, auth))
        upstream = socket.create_connection(self.server.upstream, timeout=10)
        if method == "CONNECT":
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            if rest:
                upstream.sendall(rest)
        else:  # absolute form: http://host:port/path -> /path, drop proxy headers
            path = "/" + target.split("://", 1)[1].split("/", 1)[1] if target.count("/") >= 3 else "/"
            kept = [line for line in lines[1:] if not line.lower().startswith("proxy-")]
            upstream.sendall(
                "{} {} {}\r\n{}\r\n\r\n".format(method, path, version, "\r\n".join(kept)).encode("latin-1")
                + rest
            )
        back = threading.Thread(target=_pipe, args=(upstream, client), daemon=True)
        back.start()
        _pipe(client, upstream)
        back.join(10)
        upstream.close()


class _ProxyServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def __init__(self, upstream: Tuple[str, int]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.upstream = upstream
        self.lock = threading.Lock()
        self.seen: List[Tuple[str, str, Optional[str]]] = []


class Proxy:
    """``with Proxy(upstream_port) as p: p.url; p.seen -> [(method, target, proxy_auth)]``."""

    def __init__(self, upstream_port: int) -> None:
        self._server = _ProxyServer(("127.0.0.1", upstream_port))
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.url = "http://127.0.0.1:{}".format(self._server.server_address[1])

    @property
    def seen(self) -> List[Tuple[str, str, Optional[str]]]:
        with self._server.lock:
            return list(self._server.seen)

    def __enter__(self) -> "Proxy":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
