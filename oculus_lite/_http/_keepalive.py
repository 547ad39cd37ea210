"""Keep-alive for urllib: HTTP and HTTPS handlers that reuse ``http.client`` connections.

urllib's own handlers open a connection per request and send ``Connection: close``.
These replace only the last step (``http_open``/``https_open``): ``ProxyHandler``,
``NO_PROXY``, CONNECT tunnels with proxy credentials, and the request processors work
as in urllib, and the connection comes from a small pool instead of a new socket.

How the pool works: one LIFO stack of idle connections per (scheme, host:port
connected to, tunnel target, proxy credentials). A connection is checked out by one
request at a time, so only the stacks are locked. Before reuse an idle connection is
polled; one the server has closed (or with unexpected bytes waiting) is dropped and a
new one opened, with no error. When a *reused* connection still fails before the first
byte of a response (closed or reset: the keep-alive race), the request is sent once
more on a new connection, but only if it is resend-safe (``Request.may_resend``).

Bounds: at most ``max_idle`` idle connections per key (extra ones are closed when they
come back) and at most ``IDLE_SECONDS`` idle (one daemon thread per process closes them
when they expire, and only runs while some connection is idle). ``close()`` closes the
idle ones; one in use when ``close()`` is called is closed when its request ends. After
``os.fork`` the child drops (closes its copy of) every inherited connection and opens
its own; the parent's connections are untouched. A pool that is garbage-collected
closes its idle connections.
"""

import http.client
import logging
import math
import os
import select
import socket
import threading
import time
import urllib.error
import urllib.request
import weakref
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Tuple

from ._deadline import DeadlineHTTPResponse, time_left

if TYPE_CHECKING:  # pragma: no cover
    import ssl

__all__ = [
    "IDLE_SECONDS",
    "ConnectionPool",
    "KeepAliveHTTPHandler",
    "KeepAliveHTTPSHandler",
    "UrllibRequest",
]

log = logging.getLogger("oculus_lite.http")

#: How long a connection may stay idle before it is closed. Longer than the 15 s
#: revocation poll (so a polling client keeps its connection), shorter than the idle
#: timeouts of common servers and load balancers (nginx 75 s, AWS ALB 60 s); servers
#: that close sooner (5 s: uvicorn, Node) are caught by the poll before reuse.
IDLE_SECONDS = 30.0

_Key = Tuple[str, str, Optional[str], Optional[str]]
_Idle = Dict[_Key, List[Tuple[float, http.client.HTTPConnection]]]
# Failures of a reused connection that mean "the server had already closed it".
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, ConnectionAbortedError, BrokenPipeError)
_HAS_POLL = hasattr(select, "poll")


class UrllibRequest(urllib.request.Request):
    """urllib's request, carrying whether the keep-alive race may be answered by a resend."""

    may_resend = False


class _PooledResponse(DeadlineHTTPResponse):
    """A response that knows the connection it came on, to hand it back when read."""

    lease: Optional[Tuple["ConnectionPool", _Key, http.client.HTTPConnection, int]] = None

    def release(self, complete: bool) -> None:
        """Hand the connection back to its pool when the body was read to the end, close it
        otherwise (the rest of the body is still on the wire)."""
        lease, self.lease = self.lease, None
        if lease is None:
            return
        pool, key, conn, generation = lease
        if complete and self.isclosed() and not self.will_close:
            pool.checkin(key, conn, generation)
        else:
            conn.close()


def _connect(
    address: Tuple[str, int], timeout: Optional[float], source_address: Optional[Tuple[str, int]] = None
) -> socket.socket:
    """``socket.create_connection``, then the TLS handshake (or CONNECT) gets only the time
    left in the call, not a fresh timeout."""
    sock = socket.create_connection(address, timeout, source_address)
    left = time_left()
    if left is not None:
        if left <= 0:
            sock.close()
            raise socket.timeout("timed out")
        sock.settimeout(left)
    return sock


class _HTTPConnection(http.client.HTTPConnection):
    response_class = _PooledResponse


class _HTTPSConnection(http.client.HTTPSConnection):
    response_class = _PooledResponse


def _close_all(idle: _Idle) -> None:
    stacks = list(idle.values())
    idle.clear()
    for stack in stacks:
        for _, conn in stack:
            conn.close()


def _dropped(conn: http.client.HTTPConnection) -> bool:
    """True when an idle connection cannot be reused: closed by the peer, or bytes waiting."""
    sock = conn.sock
    if sock is None:
        return True
    pending = getattr(sock, "pending", None)
    if pending is not None and pending():
        return True
    try:
        if _HAS_POLL:
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return bool(poller.poll(0))
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable)
    except (OSError, ValueError):
        return True


class ConnectionPool:
    """The idle connections of one transport (see the module docstring)."""

    def __init__(
        self,
        max_idle: int,
        *,
        idle_seconds: float = IDLE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_idle = max_idle
        self._idle_seconds = idle_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._idle: _Idle = {}
        self._generation = 0
        _pools.add(self)

    def __del__(self) -> None:
        # A pool dropped without close() still closes its idle sockets (no ResourceWarning).
        # Not weakref.finalize: pools are made lazily, often on a background thread, and
        # CPython's exit hook walks finalize's registry without a lock.
        idle = getattr(self, "_idle", None)
        if idle:
            _close_all(idle)

    def idle_count(self) -> int:
        with self._lock:
            return sum(len(stack) for stack in self._idle.values())

    def checkout(self, key: _Key) -> Tuple[Optional[http.client.HTTPConnection], int]:
        """An idle connection for ``key`` that still looks usable, or None; and the generation."""
        stale: List[http.client.HTTPConnection] = []
        found: Optional[http.client.HTTPConnection] = None
        now = self._clock()
        with self._lock:
            generation = self._generation
            stack = self._idle.get(key)
            while stack:
                since, conn = stack.pop()
                if now - since < self._idle_seconds and not _dropped(conn):
                    found = conn
                    break
                stale.append(conn)
        for conn in stale:
            conn.close()
        return found, generation

    def checkin(self, key: _Key, conn: http.client.HTTPConnection, generation: int) -> None:
        """Keep a connection whose response was read to the end, or close it."""
        if conn.sock is None:  # the server said Connection: close
            return
        now = self._clock()
        with self._lock:
            stack = self._idle.setdefault(key, [])
            keep = generation == self._generation and len(stack) < self._max_idle
            if keep:
                stack.append((now, conn))
        if keep and not _reaper.wake_in(self._idle_seconds):
            # No thread to close it later (the interpreter is shutting down): take it back,
            # unless another request has taken it already.
            with self._lock:
                stack = self._idle.get(key, [])
                keep = (now, conn) not in stack
                if not keep:
                    stack.remove((now, conn))
        if not keep:
            conn.close()

    def reap(self) -> float:
        """Close connections idle too long; seconds until the next one expires (``inf``: none)."""
        now = self._clock()
        expired: List[http.client.HTTPConnection] = []
        next_at = math.inf
        with self._lock:
            for key in list(self._idle):
                stack = self._idle[key]
                keep = [(since, conn) for since, conn in stack if now - since < self._idle_seconds]
                expired.extend(conn for since, conn in stack if now - since >= self._idle_seconds)
                if keep:
                    self._idle[key] = keep
                    next_at = min(next_at, keep[0][0] + self._idle_seconds)
                else:
                    del self._idle[key]
        for conn in expired:
            conn.close()
        return max(0.0, next_at - now)

    def close(self) -> None:
        """Close idle connections; one in use is closed when it comes back."""
        with self._lock:
            self._generation += 1
            idle = dict(self._idle)
            self._idle.clear()
        _close_all(idle)
        _reaper.wake_in(0.0)  # it finds nothing left and ends, unless other pools keep it busy

    def _forget_after_fork(self) -> None:
        # In the child: no other thread exists, a lock may have been copied held, and the
        # sockets are shared with the parent. Close only our copies (no shutdown(): that
        # would cut the parent's connection too).
        self._lock = threading.Lock()
        self._generation += 1
        _close_all(self._idle)


class _Reaper:
    """One daemon thread per process closing idle connections when they expire. It exists only
    while some connection is idle: with nothing left to close it ends, and the next idle
    connection starts a new one."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._wake_at = math.inf
        self._thread: Optional[threading.Thread] = None

    def wake_in(self, seconds: float) -> bool:
        """Close idle connections in ``seconds``; False when no thread can be started to do it
        (3.12+ refuses new threads while the interpreter shuts down)."""
        when = time.monotonic() + seconds
        if when >= self._wake_at and self._thread is not None:
            return True  # already due to wake up earlier (read without the lock: at worst we take it)
        with self._cond:
            if when >= self._wake_at and self._thread is not None:
                return True  # already due to wake up earlier (the common case: no notify)
            if self._thread is None:
                thread = threading.Thread(target=self._run, name="oculus-lite-keepalive", daemon=True)
                try:
                    thread.start()
                except RuntimeError:
                    return False
                self._thread = thread
            self._wake_at = min(self._wake_at, when)
            self._cond.notify()
            return True

    def _run(self) -> None:
        while True:
            try:
                with self._cond:
                    while True:
                        if math.isinf(self._wake_at):
                            self._thread = None  # nothing idle anywhere: end; wake_in starts anew
                            return
                        delay = self._wake_at - time.monotonic()
                        if delay <= 0:
                            break
                        self._cond.wait(delay)
                    self._wake_at = math.inf
                delay = min([pool.reap() for pool in list(_pools)] or [math.inf])
                with self._cond:
                    if not math.isinf(delay):
                        self._wake_at = min(self._wake_at, time.monotonic() + max(delay, 0.01))
            except Exception:  # never die silently: log, back off, go on
                log.exception("closing idle keep-alive connections failed")
                time.sleep(1.0)

    def _after_fork_in_child(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._wake_at = math.inf
        self._thread = None


_pools: "weakref.WeakSet[ConnectionPool]" = weakref.WeakSet()
_reaper = _Reaper()


def _after_fork_in_child() -> None:
    _reaper._after_fork_in_child()
    for pool in list(_pools):
        pool._forget_after_fork()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _open(
    pool: ConnectionPool, req: urllib.request.Request, context: "Optional[ssl.SSLContext]"
) -> _PooledResponse:
    """urllib's ``do_open`` on a pooled connection: the response comes back unread,
    holding its lease; ``release`` returns the connection once the body is read."""
    host = req.host
    if not host:
        raise urllib.error.URLError("no host given")
    # as urllib's do_open: unredirected headers (Host, Content-Length...) win, names title-cased
    headers = {name.title(): value for name, value in {**req.headers, **req.unredirected_hdrs}.items()}
    tunnel: Optional[str] = req._tunnel_host  # type: ignore[attr-defined]  # set by ProxyHandler for https
    proxy_auth = headers.pop("Proxy-Authorization", None) if tunnel else None
    key: _Key = ("https" if context is not None else "http", host, tunnel, proxy_auth)
    left = time_left()
    if left is not None and left <= 0:
        raise socket.timeout("no time left to send the request")
    timeout = req.timeout if left is None else left
    resend = isinstance(req, UrllibRequest) and req.may_resend

    conn, generation = pool.checkout(key)
    reused = conn is not None
    while True:
        if conn is None:
            if context is not None:
                conn = _HTTPSConnection(host, timeout=timeout, context=context)
            else:
                conn = _HTTPConnection(host, timeout=timeout)
            conn._create_connection = _connect  # type: ignore[union-attr]  # http.client's hook
            if tunnel:
                conn.set_tunnel(tunnel, headers={"Proxy-Authorization": proxy_auth} if proxy_auth else None)
        else:
            conn.timeout = timeout
            if conn.sock is not None:
                conn.sock.settimeout(timeout)
        try:
            conn.request(
                req.get_method(),
                req.selector,
                req.data,
                headers,
                encode_chunked=req.has_header("Transfer-encoding"),
            )
            resp = conn.getresponse()
        except _STALE:
            conn.close()
            if reused and resend:  # the keep-alive race: nothing of a response was read
                conn, reused = None, False
                continue
            raise
        except BaseException:
            conn.close()
            raise
        break
    assert isinstance(resp, _PooledResponse)
    resp.lease = (pool, key, conn, generation)
    return resp


class KeepAliveHTTPHandler(urllib.request.HTTPHandler):
    """urllib's ``HTTPHandler`` on pooled connections."""

    def __init__(self, pool: ConnectionPool) -> None:
        super().__init__()
        self._pool = pool

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return _open(self._pool, req, None)


class KeepAliveHTTPSHandler(urllib.request.HTTPSHandler):
    """urllib's ``HTTPSHandler`` on pooled connections; the TLS context is built on the
    first HTTPS request (a verifying context costs ~15 ms, once per process)."""

    def __init__(self, pool: ConnectionPool, context: Callable[[], "ssl.SSLContext"]) -> None:
        super().__init__()
        self._pool = pool
        self._make_context = context
        self._ctx: "Optional[ssl.SSLContext]" = None

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        if self._ctx is None:
            self._ctx = self._make_context()
        return _open(self._pool, req, self._ctx)
