"""A real loopback HTTP server that plays the control plane's audit route.

``POST /v1/audit/events/batch`` with ``Authorization: Bearer <token>``: records every batch,
keeps the events in order with duplicate event ids accepted once (as the emulator's route
does), and can be scripted to answer 5xx, 429 (Retry-After), 401, 400, or to hang. It binds
127.0.0.1 on a free port and stops with the fixture.

Until the emulator's ``/v1/audit/events/batch`` and ``GET /_emulator/audit`` land on main,
the emitter is tested against this server; the same tests can run against the emulator.
"""

import json
import socket
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Deque, Dict, List, Optional, Set, Tuple

Reply = Tuple[int, Dict[str, str]]  # status, extra headers


class AuditServer:
    def __init__(self, port: int = 0, tokens: Optional[Set[str]] = None) -> None:
        self.tokens = set(tokens or {"svc-token"})
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.batches: List[List[Dict[str, Any]]] = []  # every batch accepted (2xx)
        self.attempts: List[Tuple[int, Optional[str], int]] = []  # (status answered, auth, events)
        self.events: List[Dict[str, Any]] = []  # unique by event_id, in arrival order
        self.seen_ids: Set[str] = set()
        self.duplicates = 0
        self.script: Deque[Reply] = deque()
        self.record_then_fail: Deque[int] = deque()  # accept the events, then answer this status
        self.reject: Callable[[Dict[str, Any]], bool] = lambda event: False
        self.hang = threading.Event()
        self.release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # Headers and body are separate writes: without NODELAY, Nagle plus delayed ACKs
                # add ~40 ms to every reply on a keep-alive connection.
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                status, headers, payload = server._handle(self.path, self.headers.get("Authorization"), body)
                if server.hang.is_set():
                    server.release.wait(30)
                    return
                data = json.dumps(payload).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = "http://127.0.0.1:{}".format(self.port)
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="audit-server", daemon=True)

    def __enter__(self) -> "AuditServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def _handle(self, path: str, auth: Optional[str], body: bytes) -> Tuple[int, Dict[str, str], Any]:
        with self.changed:
            try:
                events = json.loads(body.decode("utf-8"))["events"]
            except (ValueError, KeyError, TypeError):
                events = None
            count = len(events) if isinstance(events, list) else -1
            status, headers, payload = self._decide(path, auth, events)
            self.attempts.append((status, auth, count))
            self.changed.notify_all()
            return status, headers, payload

    def _decide(self, path: str, auth: Optional[str], events: Any) -> Tuple[int, Dict[str, str], Any]:
        if path != "/v1/audit/events/batch":
            return 404, {}, {"error": {"code": "not_found", "message": "no route"}}
        if self.script:
            status, headers = self.script.popleft()
            return status, headers, {"error": {"code": "scripted", "message": "scripted failure"}}
        if auth is None or not auth.startswith("Bearer ") or auth[7:] not in self.tokens:
            return 401, {}, {"error": {"code": "invalid_token", "message": "service token expired"}}
        if not isinstance(events, list) or len(events) > 100:
            return 400, {}, {"error": {"code": "invalid_batch", "message": "1 to 100 events"}}
        if any(not isinstance(e, dict) or not e.get("event_id") or self.reject(e) for e in events):
            return 400, {}, {"error": {"code": "invalid_event", "message": "malformed event"}}
        self.batches.append(events)
        for event in events:
            if event["event_id"] in self.seen_ids:
                self.duplicates += 1
            else:
                self.seen_ids.add(event["event_id"])
                self.events.append(event)
        if self.record_then_fail:
            return self.record_then_fail.popleft(), {}, {"error": {"code": "lost", "message": "reply lost"}}
        return 202, {}, {"accepted": len(events)}

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 20.0) -> bool:
        with self.changed:
            return self.changed.wait_for(predicate, timeout)

    def statuses(self) -> List[int]:
        with self.lock:
            return [status for status, _, _ in self.attempts]
