"""oculus_lite transport on ``urllib3``: for code that already runs a configured
``PoolManager`` or ``ProxyManager`` (its pool sizes, CA bundle, client certificates,
proxy). Same contract as the core transports: no redirects, no urllib3-level
retries (oculus_lite's retry policy decides), TLS verified, bodies capped while
streaming, failures mapped to ``NetworkError``.

urllib3 never reads proxy settings from the environment, and neither does this
transport: to go through a proxy, pass ``pool=urllib3.ProxyManager(...)``.

    from oculus_lite_urllib3 import Urllib3Transport
    Client(..., transport=Urllib3Transport(pool=my_pool_manager))
"""

import http.client
from typing import Any, Optional

try:
    import urllib3
    import urllib3.exceptions
except ImportError as _exc:  # pragma: no cover - depends on the environment
    raise ModuleNotFoundError(
        "oculus_lite_urllib3 needs the 'urllib3' package: pip install oculus-lite-urllib3", name="urllib3"
    ) from _exc

from oculus_lite.exceptions import ConfigurationError, NetworkError
from oculus_lite.transport import (
    DEFAULT_MAX_RESPONSE_BYTES,
    Request,
    Response,
    VerifyTypes,
    map_backend_error,
    read_chunks,
    ssl_context_for,
)

__all__ = ["Urllib3Transport"]
__version__ = "0.1.0"

_CHUNK = 65536
_TIMEOUTS = (urllib3.exceptions.TimeoutError,)


def _map(exc: BaseException, request: Request) -> NetworkError:
    return map_backend_error(exc, request, timeouts=_TIMEOUTS, truncated=(urllib3.exceptions.ProtocolError,))


class Urllib3Transport:
    """Blocking transport on a urllib3 ``PoolManager`` (keep-alive; no env proxies).

    Args:
        pool: your ``PoolManager``/``ProxyManager``, used as is and not closed by
            ``close()``. Default: a ``PoolManager`` owned by this transport.
        verify: ``True`` (system CAs, urllib3's default), a CA bundle path, an
            ``ssl.SSLContext``, or ``False``; applies to the pool this transport creates.
        max_response_bytes: larger bodies raise ``ResponseTooLargeError``.
        maxsize: connections kept per host by the pool this transport creates.
    """

    def __init__(
        self,
        pool: Optional["urllib3.PoolManager"] = None,
        *,
        verify: VerifyTypes = True,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        maxsize: int = 10,
    ) -> None:
        if not isinstance(max_response_bytes, int) or max_response_bytes <= 0:
            raise ConfigurationError("max_response_bytes must be a positive int")
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
        self._pool = pool
        self._max = max_response_bytes

    def __repr__(self) -> str:
        return "Urllib3Transport(owned_pool={!r})".format(self._owned)

    def request(self, request: Request) -> Response:
        body = request.body if request.body or request.method in ("POST", "PUT", "PATCH") else None
        try:
            resp = self._pool.request(
                request.method,
                request.url,
                body=body,
                headers=dict(request.headers),
                redirect=False,
                retries=False,
                timeout=urllib3.Timeout(connect=request.timeout, read=request.timeout),
                preload_content=False,
            )
        except NetworkError:
            raise
        except (urllib3.exceptions.HTTPError, OSError, http.client.HTTPException, ValueError) as exc:
            raise _map(exc, request) from exc
        complete = False
        try:
            data = read_chunks(resp.stream(_CHUNK, decode_content=True), self._max, request)
            complete = True
            return Response(resp.status, resp.headers, data)
        except NetworkError:
            raise
        except (urllib3.exceptions.HTTPError, OSError, http.client.HTTPException) as exc:
            raise _map(exc, request) from exc
        finally:
            if complete:
                resp.release_conn()  # fully read: back to the pool for reuse
            else:
                resp.close()  # partly read: the connection cannot be reused
                resp.release_conn()

    def close(self) -> None:
        if self._owned:
            self._pool.clear()

    def __enter__(self) -> "Urllib3Transport":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
