"""One deadline per call: ``Request.timeout`` bounds connect, headers and body together.

A socket timeout bounds each read, so a server that trickles its status line, headers
or body one byte at a time resets it forever. Here every read is given only the time
left in the call instead, with no thread and no timer:

- ``call_deadline(request)`` marks, for the calling thread or asyncio task, when the
  call must end.
- ``DeadlineHTTPResponse`` is an ``http.client`` response whose socket reads each get
  a timeout of the time left (set it as ``response_class`` on a connection class; the
  core's urllib transport and the urllib3/requests plugins do). The last read times out
  at the deadline with ``socket.timeout``, which maps to ``NetworkTimeoutError``.
- ``time_left()`` is what any other backend hook reads (the httpx plugin bounds its
  stream reads with it).

Connecting and the TLS handshake are bounded by the socket timeout, which transports
set to the time left when they connect (CPython bounds a whole handshake and a whole
``sendall`` by it).
"""

import http.client
import io
import socket
import time
from contextvars import ContextVar, Token
from typing import Any, ContextManager, Optional

from ._models import Request

__all__ = ["DeadlineHTTPResponse", "call_deadline", "time_left"]

# A context variable, not a thread-local: each thread and each asyncio task sees its own.
_current: "ContextVar[Optional[float]]" = ContextVar("oculus_lite_call_deadline", default=None)


class _Scope:
    __slots__ = ("_deadline", "_token")

    def __init__(self, deadline: float) -> None:
        self._deadline = deadline
        self._token: "Optional[Token[Optional[float]]]" = None

    def __enter__(self) -> float:
        outer = _current.get()
        deadline = self._deadline if outer is None else min(outer, self._deadline)
        self._token = _current.set(deadline)
        return deadline

    def __exit__(self, *exc_info: object) -> None:
        if self._token is not None:
            _current.reset(self._token)
            self._token = None


def call_deadline(request: Request) -> ContextManager[float]:
    """``with call_deadline(request):`` — reads in this thread (or asyncio task) end by
    ``request.timeout`` from now (a nested scope never extends an outer one). Returns the
    monotonic deadline."""
    return _Scope(time.monotonic() + request.timeout)


def time_left() -> Optional[float]:
    """Seconds left for the call this thread or task is making (``<= 0``: none), or
    ``None`` outside ``call_deadline``."""
    deadline = _current.get()
    return None if deadline is None else deadline - time.monotonic()


class _DeadlineReader(socket.SocketIO):
    """The socket's own raw reader, with each read given only the time left."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        super().__init__(sock, "rb")
        self._timed = sock
        self._deadline = deadline

    def readinto(self, buffer: Any) -> Optional[int]:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("timed out")
        self._timed.settimeout(left)
        return super().readinto(buffer)


class _DeadlineSocket:
    """What ``HTTPResponse.__init__`` uses of a socket: ``makefile("rb")``."""

    __slots__ = ("_sock", "_deadline")

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self._sock = sock
        self._deadline = deadline

    def makefile(self, mode: str, *args: Any, **kwargs: Any) -> io.BufferedReader:
        # as socket.makefile does: the socket stays open until this reader is closed
        raw = _DeadlineReader(self._sock, self._deadline)
        self._sock._io_refs += 1  # type: ignore[attr-defined]
        return io.BufferedReader(raw)


class DeadlineHTTPResponse(http.client.HTTPResponse):
    """An ``http.client`` response whose every socket read is bounded by the deadline of
    the call in progress on this thread (``call_deadline``); outside one it is a plain
    ``HTTPResponse``. Use it as the ``response_class`` of an ``http.client`` (or urllib3)
    connection class::

        class _Connection(urllib3.connection.HTTPConnection):
            response_class = DeadlineHTTPResponse
    """

    def __init__(
        self,
        sock: socket.socket,
        debuglevel: int = 0,
        method: Optional[str] = None,
        url: Optional[str] = None,
    ) -> None:
        deadline = _current.get()
        if deadline is not None:
            sock = _DeadlineSocket(sock, deadline)  # type: ignore[assignment]
        super().__init__(sock, debuglevel, method, url)
