"""oculus_lite transport on ``requests``: for code that already configures a
``requests.Session`` (proxies, CA bundle, client certificates, adapters) and wants
oculus_lite to use it. Same contract as the core transports: no redirects followed,
TLS verified, one deadline per call, bodies capped as they are decompressed, failures
mapped to ``NetworkError``.

    from oculus_lite_requests import RequestsTransport
    Client(..., transport=RequestsTransport(session=my_session))

or, once installed, ``Client(..., transport="requests")``.
"""

import http.cookiejar
from typing import Any, Optional, Union
from urllib.parse import urlsplit

try:
    import requests
    import requests.adapters
    import urllib3
    import urllib3.connection
    import urllib3.exceptions
    import urllib3.poolmanager
except ImportError as _exc:  # pragma: no cover - depends on the environment
    raise ModuleNotFoundError(
        "oculus_lite_requests needs the 'requests' package: pip install oculus-lite-requests", name="requests"
    ) from _exc

from oculus_lite.exceptions import ConfigurationError
from oculus_lite.transport import (
    DEFAULT_MAX_RESPONSE_BYTES,
    DeadlineHTTPResponse,
    Request,
    Response,
    TransportBase,
    body_for,
    call_deadline,
    is_loopback_host,
    mapped_errors,
    read_chunks,
    wire_headers,
)

__all__ = ["RequestsTransport"]
__version__ = "0.2.0"

_CHUNK = 65536
_NO_COOKIES = http.cookiejar.DefaultCookiePolicy(allowed_domains=[])
_NO_PROXY = {"http": None, "https": None, "all": None}
_ERRORS = (requests.RequestException, urllib3.exceptions.HTTPError)
_TIMEOUTS = (requests.Timeout, urllib3.exceptions.TimeoutError)


# Connections whose every read is bounded by the call's deadline (call_deadline).
class _HTTPConnection(urllib3.connection.HTTPConnection):
    response_class = DeadlineHTTPResponse


class _HTTPSConnection(urllib3.connection.HTTPSConnection):
    response_class = DeadlineHTTPResponse


class _HTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


_POOLS = {"http": _HTTPPool, "https": _HTTPSPool}


def _bound(manager: Any) -> Any:
    # only urllib3's stock pools are swapped: a SOCKS manager keeps its own
    if manager.pool_classes_by_scheme is urllib3.poolmanager.pool_classes_by_scheme:
        manager.pool_classes_by_scheme = _POOLS
    return manager


class _DeadlineAdapter(requests.adapters.HTTPAdapter):
    """requests' adapter, on connections that honour the call's deadline."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        _bound(self.poolmanager)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        return _bound(super().proxy_manager_for(proxy, **proxy_kwargs))


class RequestsTransport(TransportBase):
    """Blocking transport on a ``requests.Session`` (keep-alive, env proxies via ``trust_env``).

    Args:
        session: your configured session; it is used as is and not closed by ``close()``.
            Default: a new session owned (and closed) by this transport.
        verify: ``True``/``False`` or a CA bundle path. ``None`` (default): verify with
            requests' CA bundle for our own session, your session's setting for yours.
            An ``ssl.SSLContext`` is not accepted by requests: mount an adapter instead.
        max_response_bytes: larger bodies (counted decompressed) raise ``ResponseTooLargeError``.
        trust_env: for our own session, read proxies/CA bundle from the environment.

    Loopback URLs are never proxied, whatever the session or environment says. The
    deadline of a call bounds every read on the connections of our own session; on
    your session's connections (their adapters are yours) each read is bounded by the
    timeout, not the call as a whole.
    """

    def __init__(
        self,
        session: Optional["requests.Session"] = None,
        *,
        verify: Union[bool, str, None] = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        trust_env: bool = True,
    ) -> None:
        super().__init__(max_response_bytes=max_response_bytes)
        if verify is not None and not isinstance(verify, (bool, str)):
            raise ConfigurationError(
                "RequestsTransport verify must be True, False or a CA bundle path; for an "
                "ssl.SSLContext pass a session with your own HTTPAdapter"
            )
        self._owned = session is None
        if session is None:
            session = requests.Session()
            session.trust_env = trust_env
            session.cookies.set_policy(_NO_COOKIES)  # like urllib: never store or replay cookies
            session.mount("http://", _DeadlineAdapter())
            session.mount("https://", _DeadlineAdapter())
            # passed per request too: requests lets REQUESTS_CA_BUNDLE override session.verify
            verify = True if verify is None else verify
            session.verify = verify
        self._session = session
        self._verify = verify

    def __repr__(self) -> str:
        return "RequestsTransport(owned_session={!r})".format(self._owned)

    def request(self, request: Request) -> Response:
        kwargs: Any = {}
        if self._verify is not None:
            kwargs["verify"] = self._verify
        with call_deadline(request) as deadline, mapped_errors(request, *_ERRORS, timeouts=_TIMEOUTS):
            if is_loopback_host(urlsplit(request.url).hostname or ""):
                kwargs["proxies"] = dict(_NO_PROXY)
            resp = self._session.request(
                request.method,
                request.url,
                data=body_for(request),
                headers=wire_headers(request),
                timeout=(request.timeout, request.timeout),
                allow_redirects=False,
                stream=True,
                **kwargs,
            )
            with resp:
                data = read_chunks(
                    resp.raw.stream(_CHUNK, decode_content=False),  # raw: inflated under the cap here
                    self.max_response_bytes,
                    request,
                    content_encoding=resp.headers.get("content-encoding"),
                    deadline=deadline,
                )
                return Response(resp.status_code, resp.headers, data)

    def close(self) -> None:
        if self._owned:
            self._session.close()
