"""oculus_lite transport on ``urllib3``: for code that already runs a configured
``PoolManager`` or ``ProxyManager`` (its pool sizes, CA bundle, client certificates,
proxy). Same contract as the core transports: no redirects, no urllib3-level
retries (oculus_lite's retry policy decides), TLS verified, one deadline per call,
bodies capped as they are decompressed, failures mapped to ``NetworkError``.

urllib3 never reads proxy settings from the environment, and neither does this
transport: to go through a proxy, pass ``pool=urllib3.ProxyManager(...)``.

    from oculus_lite_urllib3 import Urllib3Transport
    Client(..., transport=Urllib3Transport(pool=my_pool_manager))
"""

from typing import Any, Optional

try:
    import urllib3
    import urllib3.connection
    import urllib3.exceptions
except ImportError as _exc:  # pragma: no cover - depends on the environment
    raise ModuleNotFoundError(
        "oculus_lite_urllib3 needs the 'urllib3' package: pip install oculus-lite-urllib3", name="urllib3"
    ) from _exc

from oculus_lite.transport import (
    DEFAULT_MAX_RESPONSE_BYTES,
    DeadlineHTTPResponse,
    Request,
    Response,
    TransportBase,
    VerifyTypes,
    body_for,
    call_deadline,
    mapped_errors,
    read_chunks,
    ssl_context_for,
    wire_headers,
)

__all__ = ["Urllib3Transport"]
__version__ = "0.2.0"

_CHUNK = 65536
_TIMEOUTS = (urllib3.exceptions.TimeoutError,)
_TRUNCATED = (urllib3.exceptions.ProtocolError,)


# Connections whose every read is bounded by the call's deadline (call_deadline).
class _HTTPConnection(urllib3.connection.HTTPConnection):
    response_class = DeadlineHTTPResponse


class _HTTPSConnection(urllib3.connection.HTTPSConnection):
    response_class = DeadlineHTTPResponse


class _HTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


class Urllib3Transport(TransportBase):
    """Blocking transport on a urllib3 ``PoolManager`` (keep-alive; no env proxies).

    Args:
        pool: your ``PoolManager``/``ProxyManager``, used as is and not closed by
            ``close()``. Default: a ``PoolManager`` owned by this transport.
        verify: ``True`` (system CAs, urllib3's default), a CA bundle path, an
            ``ssl.SSLContext``, or ``False``; applies to the pool this transport creates.
        max_response_bytes: larger bodies (counted decompressed) raise ``ResponseTooLargeError``.
        maxsize: connections kept per host by the pool this transport creates.

    The deadline of a call bounds every read on the connections of our own pool; on
    your pool's connections each read is bounded by the timeout, not the call as a whole.
    """

    def __init__(
        self,
        pool: Optional["urllib3.PoolManager"] = None,
        *,
        verify: VerifyTypes = True,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        maxsize: int = 10,
    ) -> None:
        super().__init__(max_response_bytes=max_response_bytes)
        self._owned = pool is None
        if pool is None:
            tls: Any = {}
            if verify is False:
                tls = {"cert_reqs": "CERT_NONE", "ssl_context": ssl_context_for(False)}
            elif isinstance(verify, str):
                ssl_context_for(verify)  # a clear ConfigurationError for a bad path, now
                tls = {"cert_reqs": "CERT_REQUIRED", "ca_certs": verify}
            elif verify is not True:
                tls = {"cert_reqs": "CERT_REQUIRED", "ssl_context": ssl_context_for(verify)}
            pool = urllib3.PoolManager(maxsize=maxsize, retries=False, **tls)
            pool.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}
        self._pool = pool

    def __repr__(self) -> str:
        return "Urllib3Transport(owned_pool={!r})".format(self._owned)

    def request(self, request: Request) -> Response:
        errors = (urllib3.exceptions.HTTPError,)
        with call_deadline(request) as deadline, mapped_errors(
            request, *errors, timeouts=_TIMEOUTS, truncated=_TRUNCATED
        ):
            resp = self._pool.request(
                request.method,
                request.url,
                body=body_for(request),
                headers=wire_headers(request),
                redirect=False,
                retries=False,
                timeout=urllib3.Timeout(connect=request.timeout, read=request.timeout),
                preload_content=False,
            )
            complete = False
            try:
                data = read_chunks(
                    resp.stream(_CHUNK, decode_content=False),  # raw: inflated under the cap here
                    self.max_response_bytes,
                    request,
                    content_encoding=resp.headers.get("content-encoding"),
                    deadline=deadline,
                )
                complete = True
                return Response(resp.status, resp.headers, data)
            finally:
                if not complete:
                    resp.close()  # partly read: the connection cannot be reused
                resp.release_conn()  # fully read: back to the pool for reuse

    def close(self) -> None:
        if self._owned:
            self._pool.clear()
