"""HTTP plumbing of the emulator: a threaded ``http.server`` that writes each response once.

``BaseHTTPRequestHandler`` writes the status line, headers and body in
separate sends; on a keep-alive connection Nagle's algorithm and delayed ACKs
then stall every request by about 40 ms. Here each response is assembled into
one bytes object and written once (and TCP_NODELAY is set), keep-alive is on
(HTTP/1.1, Content-Length always), and request logging is off unless asked.
Fault kinds that must misbehave on the wire (close, truncate, trickle,
oversize) are carried out here too. Every wait (a ``delay`` fault, a trickle's
pauses) waits on the server's ``stopped`` Event, so ``stop()`` returns at once.
"""

import json
import selectors
import socket
import threading
import time
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Set, Tuple
from urllib.parse import parse_qs, urlsplit

from ._faults import FaultRule

if TYPE_CHECKING:  # pragma: no cover
    from ._emulator import Emulator

__all__ = ["EmulatorHTTPServer", "Request", "Response"]

Headers = List[Tuple[str, str]]
MAX_BODY = 1024 * 1024
_REASONS = {s: r for s, (r, _) in BaseHTTPRequestHandler.responses.items()}


class Request:
    __slots__ = ("method", "path", "query", "headers", "body")

    def __init__(
        self, method: str, path: str, query: Dict[str, List[str]], headers: Dict[str, str], body: bytes
    ):
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        """The body as JSON ({} when empty); ValueError when it is not JSON (or nested absurdly deep)."""
        if not self.body.strip():
            return {}
        try:
            return json.loads(self.body.decode("utf-8"))
        except RecursionError:
            raise ValueError("request body is nested too deeply") from None

    def form(self) -> Dict[str, str]:
        """Form fields: form-encoded (the protocol) or, leniently, a JSON object; {} when unreadable."""
        if "json" in self.headers.get("content-type", ""):
            try:
                data = self.json()
            except (ValueError, UnicodeDecodeError):
                return {}
            return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}
        try:
            parsed = parse_qs(self.body.decode("utf-8"), keep_blank_values=True)
        except (UnicodeDecodeError, ValueError):
            return {}
        return {k: v[0] for k, v in parsed.items()}

    def bearer(self) -> str:
        """The token of an ``Authorization: Bearer`` header, or ''."""
        auth = self.headers.get("authorization", "")
        return auth[7:].strip() if auth[:7].lower() == "bearer " else ""


class Response:
    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: Optional[Headers] = None, body: bytes = b""):
        self.status = status
        self.headers = headers if headers is not None else []
        self.body = body


def json_response(status: int, payload: Any, headers: Optional[Headers] = None) -> Response:
    hdrs = [("Content-Type", "application/json")]
    hdrs.extend(headers or ())
    return Response(status, hdrs, json.dumps(payload, separators=(",", ":")).encode("utf-8"))


class EmulatorHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: Tuple[str, int], app: "Emulator"):
        self.app = app
        self._conns: Set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        self._stopping = False
        self.stopped = threading.Event()  # set by wake(): waits inside handlers end at once
        self._busy = 0
        self._idle = threading.Condition(self._conns_lock)
        super().__init__(address, _Handler)
        self._waker_r, self._waker_w = socket.socketpair()

    def serve_until_stopped(self) -> None:
        """Like ``serve_forever`` but woken at once by ``wake()`` instead of polling every 0.5 s."""
        with selectors.DefaultSelector() as selector:
            selector.register(self, selectors.EVENT_READ)
            selector.register(self._waker_r, selectors.EVENT_READ)
            while not self._stopping:
                for key, _ in selector.select():
                    if key.fileobj is self and not self._stopping:
                        self._handle_request_noblock()  # type: ignore[attr-defined]
        self._waker_r.close()
        self._waker_w.close()

    def wake(self) -> None:
        self._stopping = True
        self.stopped.set()
        try:
            self._waker_w.send(b"x")
        except OSError:
            pass

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conns_lock:
            self._conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._conns_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def enter(self) -> None:
        with self._idle:
            self._busy += 1

    def leave(self) -> None:
        with self._idle:
            self._busy -= 1
            if self._busy == 0:
                self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait for requests in progress to finish (their log lines written); False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._busy == 0, timeout)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Connection-level errors (client went away) are not worth a traceback."""

    def drop_connections(self) -> None:
        """Cut every open (keep-alive) connection so stop() really stops serving."""
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "oculus-lite-emulator"
    sys_version = ""
    timeout = 120  # idle keep-alive connections end after this
    server: EmulatorHTTPServer

    def setup(self) -> None:
        super().setup()
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # pragma: no cover
            pass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet by default
        pass

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    # ------------------------------------------------------------------ request
    def _read_body(self) -> Optional[bytes]:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: List[bytes] = []
            total = 0
            while True:
                line = self.rfile.readline(1024)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY:
                    return None
                chunks.append(self.rfile.read(size))
                self.rfile.readline(16)
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0:
            raise ValueError("negative Content-Length")
        if length > MAX_BODY:
            return None
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        started = time.perf_counter()
        app = self.server.app
        split = urlsplit(self.path)
        path = split.path or "/"
        status: Optional[int] = None
        fault: Optional[FaultRule] = None
        self.server.enter()
        try:
            try:
                body = self._read_body()
            except ValueError:
                self.close_connection = True
                status = self._send(json_response(400, _err("invalid_request", "bad request body framing")))
                return
            if body is None:
                self.close_connection = True
                status = self._send(json_response(413, _err("payload_too_large", "request body over 1 MiB")))
                return
            headers = {k.lower(): v for k, v in self.headers.items()}
            req = Request(self.command, path, parse_qs(split.query), headers, body)
            app._count_request(req)
            if not path.startswith("/_emulator/"):
                fault = app.faults.pick(self.command, path)
            if fault is not None and fault.delay_ms and fault.kind != "trickle":
                if self.server.stopped.wait(fault.delay_ms / 1000.0):
                    self._cut()  # stopping: no answer
                    return
            if fault is None or fault.kind == "delay":
                status = self._send(app.route(req))
            else:
                status = self._fault(fault, req)
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            self.close_connection = True
        except Exception as exc:  # a bug in the emulator: answer 500 and say so
            self.close_connection = True
            app._report_bug(self.command, path, exc)
            if status is None:
                try:
                    status = self._send(json_response(500, _err("emulator_error", type(exc).__name__)))
                except OSError:
                    pass
        finally:
            try:
                app._log(
                    self.command,
                    path,
                    status,
                    (time.perf_counter() - started) * 1000.0,
                    fault.kind if fault is not None else None,
                )
            finally:
                self.server.leave()

    # ------------------------------------------------------------------ response
    def _head(self, resp: Response, length: int) -> bytes:
        lines = ["HTTP/1.1 {} {}".format(resp.status, _REASONS.get(resp.status, "Status"))]
        names = set()
        for name, value in resp.headers:
            if name.lower() in ("content-length", "connection", "date", "server"):
                continue
            names.add(name.lower())
            lines.append("{}: {}".format(name, value))
        if resp.status not in (204, 304) and not 100 <= resp.status < 200:
            lines.append("Content-Length: {}".format(length))
        lines.append("Date: " + formatdate(usegmt=True))
        lines.append("Server: " + self.server_version)
        if self.close_connection:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _send(self, resp: Response) -> int:
        body = b"" if self.command == "HEAD" or resp.status in (204, 304) else resp.body
        length = 0 if resp.status in (204, 304) else len(resp.body)
        self.wfile.write(self._head(resp, length) + body)
        return resp.status

    def _cut(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _fault(self, rule: FaultRule, req: Request) -> Optional[int]:
        kind = rule.kind
        if kind == "close":
            self._cut()
            return None
        if kind == "status":
            status = rule.status or 503
            hdrs: Headers = []
            if rule.retry_after is not None:
                hdrs.append(("Retry-After", rule.retry_after))
            if rule.location is not None:
                hdrs.append(("Location", rule.location))
            if isinstance(rule.body, str):
                resp = Response(
                    status, [("Content-Type", "text/plain; charset=utf-8")] + hdrs, rule.body.encode("utf-8")
                )
            elif rule.body is not None:
                resp = json_response(status, rule.body, hdrs)
            else:
                resp = json_response(
                    status, _err("injected_fault", "injected fault: status {}".format(status)), hdrs
                )
            return self._send(resp)
        if kind == "badjson":
            raw = (
                rule.body
                if isinstance(rule.body, str)
                else '{"access_token": "emulator-bad-json", "expires_in": '
            )
            return self._send(
                Response(rule.status or 200, [("Content-Type", "application/json")], raw.encode())
            )
        if kind == "content_type":
            raw = (
                rule.body if isinstance(rule.body, str) else "<html><body><h1>Maintenance</h1></body></html>"
            )
            return self._send(
                Response(rule.status or 200, [("Content-Type", rule.content_type)], raw.encode())
            )
        if kind == "oversize":
            size = max(rule.size, 16)
            payload = b'{"padding":"' + b"x" * (size - 14) + b'"}'
            return self._send(Response(rule.status or 200, [("Content-Type", "application/json")], payload))
        # truncate and trickle mangle the real answer
        resp = self.server.app.route(req)
        head = self._head(resp, len(resp.body))
        if kind == "truncate":
            self.close_connection = True
            self.wfile.write(self._head(resp, len(resp.body)) + resp.body[: len(resp.body) // 2])
            self._cut()
            return resp.status
        # trickle
        self.wfile.write(head)
        for i in range(len(resp.body)):
            if rule.interval_ms and self.server.stopped.wait(rule.interval_ms / 1000.0):
                self._cut()
                return None
            self.wfile.write(resp.body[i : i + 1])
        return resp.status


def _err(code: str, message: str) -> Dict[str, Any]:
    return {"error": {"code": code, "message": message}}
