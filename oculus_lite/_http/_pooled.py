"""A keep-alive transport on ``http.client``: the same contract as ``UrllibTransport``
(TLS verified, no redirects, capped bodies, errors mapped) but connections are kept
and reused, so a burst of token/JWKS/permission calls skips the TCP (and TLS)
handshake after the first one.

How it works: one small LIFO stack of idle connections per (scheme, host, port,
proxy); a connection is checked out by one thread at a time, so only the stacks are
locked. Before reuse an idle connection is polled; one the server has closed (or
that has unexpected bytes waiting) is dropped. If a *reused* connection still fails
before a response status line was read (closed or reset: the keep-alive race), the
request is sent once more on a fresh connection; a fresh connection is never retried
here (the retry policy in ``_http`` decides). ``http.client`` already sets
TCP_NODELAY and sends small bodies in the same segment as the headers.
After a fork the child never reuses the parent's sockets, and a transport that is
garbage-collected without ``close()`` still closes its idle sockets.

Proxies: exactly urllib's rules, ``HTTP_PROXY``/``HTTPS_PROXY``/``NO_PROXY`` are
honoured when ``trust_env`` is true (or pass ``proxies=``): plain HTTP goes through the
proxy in absolute form, HTTPS through a ``CONNECT`` tunnel (TLS to the origin,
verified, end to end). Proxy credentials in the proxy URL are sent as
``Proxy-Authorization: Basic``. Loopback hosts never use a proxy; ``ALL_PROXY`` is
ignored (as by urllib); a non-HTTP proxy (``socks5://``) raises ``ConfigurationError``.
"""

import base64
import http.client
import os
import select
import threading
import time
import weakref
from typing import TYPE_CHECKING, Dict, List, Mapping, Optional, Tuple
from urllib.parse import unquote, urlsplit

from ..exceptions import ConfigurationError, NetworkError
from ._body import read_body
from ._errors import map_transport_error
from ._hosts import is_loopback_host
from ._models import Request, Response, make_headers
from ._tls import VerifyTypes, ssl_context_for
from ._urllib import DEFAULT_MAX_RESPONSE_BYTES

if TYPE_CHECKING:  # pragma: no cover
    import ssl

__all__ = ["PooledTransport"]

_Proxy = Optional[Tuple[str, int, Optional[str]]]  # host, port, Proxy-Authorization value
_Key = Tuple[str, str, int, _Proxy]
# Failures of a reused connection that mean "the server had already closed it".
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, ConnectionAbortedError, BrokenPipeError)


def _close_all(idle: Dict[_Key, List[http.client.HTTPConnection]]) -> None:
    stacks = list(idle.values())
    idle.clear()
    for stack in stacks:
        for conn in stack:
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
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return bool(poller.poll(0))
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable)
    except (OSError, ValueError):
        return True


class PooledTransport:
    """Keep-alive transport on ``http.client`` (registered as ``pooled``).

    Args:
        verify: ``True`` (system CAs), a CA bundle path, an ``ssl.SSLContext``, or
            ``False`` (tests only), exactly as for ``UrllibTransport``.
        max_response_bytes: larger bodies raise ``ResponseTooLargeError``.
        trust_env: read proxies from the environment (``NO_PROXY`` honoured).
        proxies: explicit ``{"http": url, "https": url}``; replaces the environment.
        max_idle_per_origin: idle connections kept per origin; extra ones are closed.

    Example::

        with Client(transport=PooledTransport()) as c:
            c.get_token("db:read")
    """

    def __init__(
        self,
        *,
        verify: VerifyTypes = True,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        trust_env: bool = True,
        proxies: Optional[Mapping[str, str]] = None,
        max_idle_per_origin: int = 10,
    ) -> None:
        if not isinstance(max_response_bytes, int) or max_response_bytes <= 0:
            raise ConfigurationError("max_response_bytes must be a positive int")
        if not isinstance(max_idle_per_origin, int) or max_idle_per_origin < 0:
            raise ConfigurationError("max_idle_per_origin must be an int >= 0")
        if not isinstance(verify, (bool, str)):
            ssl_context_for(verify)  # type check now, not on the first request
        self._verify = verify
        self._max = max_response_bytes
        self._trust_env = trust_env
        self._explicit_proxies = dict(proxies) if proxies is not None else None
        self._env_proxies: Optional[Dict[str, str]] = None
        self._max_idle = max_idle_per_origin
        self._ctx: Optional["ssl.SSLContext"] = None
        self._idle: Dict[_Key, List[http.client.HTTPConnection]] = {}
        self._proxy_cache: Dict[Tuple[str, str], _Proxy] = {}
        self._generation = 0
        self._pid = os.getpid()
        self._lock = threading.Lock()
        # a transport dropped without close() still closes its idle sockets (no ResourceWarning)
        weakref.finalize(self, _close_all, self._idle)

    def __repr__(self) -> str:
        return "PooledTransport(verify={!r})".format(
            self._verify if isinstance(self._verify, bool) else "<custom>"
        )

    # ------------------------------------------------------------------ proxies

    def _proxy_for(self, scheme: str, host: str) -> _Proxy:
        if is_loopback_host(host):
            return None
        if self._explicit_proxies is None and not self._trust_env:
            return None
        with self._lock:
            if (scheme, host) in self._proxy_cache:
                return self._proxy_cache[(scheme, host)]
        proxy = self._lookup_proxy(scheme, host)
        with self._lock:
            self._proxy_cache[(scheme, host)] = proxy
        return proxy

    def _lookup_proxy(self, scheme: str, host: str) -> _Proxy:
        import urllib.request

        if self._explicit_proxies is not None:
            table = self._explicit_proxies
        else:
            if self._env_proxies is None:
                self._env_proxies = urllib.request.getproxies()
            table = self._env_proxies
            if table and urllib.request.proxy_bypass(host):
                return None
        url = table.get(scheme)  # like urllib: no ALL_PROXY fallback
        if not url:
            return None
        if "://" not in url:
            url = "http://" + url
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigurationError(
                "proxy {}://{} is not supported by the pooled transport; use an http:// "
                "proxy or transport='urllib'".format(parts.scheme, parts.hostname or "")
            )
        auth = None
        if parts.username is not None:
            raw = "{}:{}".format(unquote(parts.username), unquote(parts.password or ""))
            auth = "Basic " + base64.b64encode(raw.encode("utf-8")).decode("ascii")
        return (parts.hostname, parts.port or 80, auth)

    # ------------------------------------------------------------------ pool

    def _context(self) -> "ssl.SSLContext":
        ctx = self._ctx
        if ctx is None:
            ctx = self._ctx = ssl_context_for(self._verify)
        return ctx

    def _new_connection(self, key: _Key, timeout: float) -> http.client.HTTPConnection:
        scheme, host, port, proxy = key
        conn: http.client.HTTPConnection
        if scheme == "https":
            if proxy is None:
                conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=self._context())
            else:
                conn = http.client.HTTPSConnection(
                    proxy[0], proxy[1], timeout=timeout, context=self._context()
                )
                tunnel_headers = {"Proxy-Authorization": proxy[2]} if proxy[2] else None
                conn.set_tunnel(host, port, headers=tunnel_headers)
        elif proxy is None:
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
        else:
            conn = http.client.HTTPConnection(proxy[0], proxy[1], timeout=timeout)
        return conn

    def _checkout(self, key: _Key) -> Tuple[Optional[http.client.HTTPConnection], int]:
        with self._lock:
            if self._pid != os.getpid():
                # forked: the parent still uses those sockets; never share one across processes
                self._pid = os.getpid()
                self._generation += 1
                _close_all(self._idle)
            generation = self._generation
            stack = self._idle.get(key)
            while stack:
                conn = stack.pop()
                if not _dropped(conn):
                    return conn, generation
                conn.close()
        return None, generation

    def _checkin(self, key: _Key, conn: http.client.HTTPConnection, generation: int) -> None:
        if conn.sock is None:  # the server said Connection: close
            return
        with self._lock:
            if generation == self._generation:
                stack = self._idle.setdefault(key, [])
                if len(stack) < self._max_idle:
                    stack.append(conn)
                    return
        conn.close()

    # ------------------------------------------------------------------ request

    def request(self, request: Request) -> Response:
        parts = urlsplit(request.url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise ConfigurationError(
                "cannot send to {!r}: the URL must be http:// or https:// with a host".format(
                    scheme + "://" + (parts.hostname or "")
                )
            )
        try:
            port = parts.port or (443 if scheme == "https" else 80)
        except ValueError as exc:
            raise ConfigurationError("the URL has an invalid port") from exc
        host = parts.hostname
        proxy = self._proxy_for(scheme, host)
        key: _Key = (scheme, host, port, proxy)
        headers = dict(request.headers)
        if scheme == "http" and proxy is not None:
            target = request.url.split("#", 1)[0]  # absolute form for the proxy
            if proxy[2]:
                headers["Proxy-Authorization"] = proxy[2]
        else:
            target = (parts.path or "/") + ("?" + parts.query if parts.query else "")
        body = request.body if request.body or request.method in ("POST", "PUT", "PATCH") else None

        deadline = time.monotonic() + request.timeout
        conn, generation = self._checkout(key)
        reused = conn is not None
        while True:
            if conn is None:
                conn = self._new_connection(key, request.timeout)
            else:
                conn.timeout = request.timeout
                if conn.sock is not None:
                    conn.sock.settimeout(request.timeout)
            try:
                conn.request(request.method, target, body=body, headers=headers)
                resp = conn.getresponse()
            except _STALE as exc:
                conn.close()
                if reused:  # the keep-alive race: nothing of a response was read
                    reused, conn = False, None
                    continue
                raise map_transport_error(exc, request) from exc
            except (OSError, http.client.HTTPException, ValueError) as exc:
                conn.close()
                raise map_transport_error(exc, request) from exc
            break
        try:
            data = read_body(resp, self._max, request, deadline)
            if resp.length:  # read(amt) returns a short body silently when the peer closes
                raise http.client.IncompleteRead(data, resp.length)
            result = Response(resp.status, make_headers(resp.getheaders()), data)
        except NetworkError:
            conn.close()
            raise
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise map_transport_error(exc, request) from exc
        if resp.isclosed():
            self._checkin(key, conn, generation)
        else:  # body not fully consumed (should not happen after read_body): do not reuse
            conn.close()
        return result

    def close(self) -> None:
        """Close idle connections; ones in use are closed when their request ends."""
        with self._lock:
            self._generation += 1
            idle = dict(self._idle)
            self._idle.clear()
            self._proxy_cache.clear()
            self._env_proxies = None
        _close_all(idle)

    def __enter__(self) -> "PooledTransport":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
