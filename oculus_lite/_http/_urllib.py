"""The default transport, on ``urllib.request``, with keep-alive connections."""

import threading
from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional, Tuple
from urllib.parse import urlsplit

from ..exceptions import ConfigurationError
from ._base import DEFAULT_MAX_RESPONSE_BYTES, TransportBase, body_for, wire_headers
from ._body import read_body
from ._deadline import call_deadline
from ._errors import mapped_errors
from ._hosts import is_loopback_host
from ._models import Request, Response, make_headers
from ._tls import VerifyTypes, ssl_context_for

if TYPE_CHECKING:  # pragma: no cover
    import ssl
    import urllib.request

    from ._keepalive import ConnectionPool

__all__ = ["DEFAULT_MAX_RESPONSE_BYTES", "UrllibTransport"]


class UrllibTransport(TransportBase):
    """The default transport, on ``urllib.request``: connections kept alive, proxies from
    the environment, TLS verified, no redirects, capped bodies, one deadline per call.

    Args:
        verify: ``True`` (system CAs), a CA bundle path, an ``ssl.SSLContext``, or
            ``False`` (tests only).
        max_response_bytes: larger bodies (counted decompressed) raise ``ResponseTooLargeError``.
        trust_env: read ``HTTP_PROXY``/``HTTPS_PROXY``/``NO_PROXY`` from the environment.
        proxies: explicit ``{"http": url, "https": url}``; replaces the environment.
        max_idle_per_origin: idle connections kept per origin (``0``: a new connection
            per request, as plain urllib does).

    Keep-alive goes through urllib's own machinery: ``ProxyHandler`` and the request
    processors run as usual and only the HTTP/HTTPS handlers differ, reusing
    ``http.client`` connections (see ``oculus_lite._http._keepalive``). Idle connections
    are closed after 30 s, by ``close()``, and never shared with a forked child; a
    connection the server closed while idle is replaced without an error, and a request
    is resent after the keep-alive race only when ``Request.may_resend``. Loopback hosts
    never go through a proxy. The first construction in a process imports ``urllib.request``
    and ``http.client``; the opener, the pool and the TLS context are built on first use.
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
        super().__init__(max_response_bytes=max_response_bytes)
        # The network modules load now, in the thread building the client, not on the first
        # request: a fork that lands while another thread is importing them would leave the
        # child stuck on that module's import lock.
        from . import _keepalive  # noqa: F401

        if (
            isinstance(max_idle_per_origin, bool)
            or not isinstance(max_idle_per_origin, int)
            or max_idle_per_origin < 0
        ):
            raise ConfigurationError("max_idle_per_origin must be an int >= 0")
        self._verify = verify
        # A CA bundle or a context is checked now, not on the first request; the system
        # context (verify=True) is built on the first HTTPS request (once per process).
        self._trust_env = trust_env
        self._proxies = dict(proxies) if proxies is not None else None
        self._max_idle = max_idle_per_origin
        self._pool: Optional["ConnectionPool"] = None
        self._opener: Optional["urllib.request.OpenerDirector"] = None
        self._direct: Optional["urllib.request.OpenerDirector"] = None
        self._ctx: Optional["ssl.SSLContext"] = None if verify is True else ssl_context_for(verify)
        self._routes: Dict[str, Tuple["urllib.request.OpenerDirector", str]] = {}
        self._urllib_request: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return "UrllibTransport(verify={!r})".format(
            self._verify if isinstance(self._verify, bool) else "<custom>"
        )

    def _context(self) -> "ssl.SSLContext":
        ctx = self._ctx
        if ctx is None:
            ctx = self._ctx = ssl_context_for(self._verify)
        return ctx

    def _build(self, proxies: Optional[Mapping[str, str]]) -> "urllib.request.OpenerDirector":
        # urllib.request and http.client load here, on first use, not with the package
        import urllib.request

        from ._keepalive import ConnectionPool, KeepAliveHTTPHandler, KeepAliveHTTPSHandler, UrllibRequest

        self._urllib_request = UrllibRequest
        if self._pool is None:
            self._pool = ConnectionPool(self._max_idle)
        # No HTTPErrorProcessor: every status comes back as a response, and redirects
        # (handled only through it) are never followed. No cookie processor either.
        opener = urllib.request.OpenerDirector()
        for handler in (
            urllib.request.ProxyHandler(dict(proxies) if proxies is not None else None),
            KeepAliveHTTPHandler(self._pool),
            KeepAliveHTTPSHandler(self._pool, self._context),
            urllib.request.UnknownHandler(),  # file:, ftp:... raise instead of returning None
        ):
            opener.add_handler(handler)
        return opener

    def _route(self, url: str) -> Tuple["urllib.request.OpenerDirector", str]:
        """The opener for ``url`` and its origin host (urllib's ``request_host``), worked
        out once per URL: a client sends to the same few URLs again and again."""
        route = self._routes.get(url)
        if route is not None:
            return route
        loopback = is_loopback_host(urlsplit(url).hostname or "")
        with self._lock:
            if loopback:  # never through a proxy: a proxy could not reach our 127.0.0.1 anyway
                if self._direct is None:
                    self._direct = self._build({})
                opener = self._direct
            else:
                if self._opener is None:
                    # explicit proxies, else the environment's (None), else none at all
                    self._opener = self._build(
                        self._proxies if self._proxies is not None else None if self._trust_env else {}
                    )
                opener = self._opener
        route = (opener, self._urllib_request(url).origin_req_host)
        if len(self._routes) >= 256:
            self._routes.clear()
        self._routes[url] = route
        return route

    def request(self, request: Request) -> Response:
        with call_deadline(request), mapped_errors(request):
            opener, origin = self._route(request.url)
            req = self._urllib_request(
                request.url,
                data=body_for(request),
                headers=wire_headers(request),
                origin_req_host=origin,
                method=request.method,
            )
            req.may_resend = request.may_resend  # read by _keepalive
            resp = opener.open(req, timeout=request.timeout)
            complete = False
            try:
                body = read_body(resp, self.max_response_bytes, request)
                complete = True
            finally:
                resp.release(complete)
            return Response(resp.status, make_headers(resp.getheaders()), body)

    def close(self) -> None:
        """Close idle connections (ones in use close when their request ends); the
        transport stays usable and opens new connections."""
        with self._lock:
            pool = self._pool
        if pool is not None:
            pool.close()
