"""oculus_lite transport on ``requests``: for code that already configures a
``requests.Session`` (proxies, CA bundle, client certificates, adapters) and wants
oculus_lite to use it. Same contract as the core transports: no redirects followed,
TLS verified, bodies capped while streaming, failures mapped to ``NetworkError``.

    from oculus_lite_requests import RequestsTransport
    Client(..., transport=RequestsTransport(session=my_session))

or, once installed, ``Client(..., transport="requests")``.
"""

import http.client
import http.cookiejar
from typing import Any, Optional, Union
from urllib.parse import urlsplit

try:
    import requests
    import urllib3.exceptions
except ImportError as _exc:  # pragma: no cover - depends on the environment
    raise ModuleNotFoundError(
        "oculus_lite_requests needs the 'requests' package: pip install oculus-lite-requests", name="requests"
    ) from _exc

from oculus_lite.exceptions import ConfigurationError, NetworkError
from oculus_lite.transport import (
    DEFAULT_MAX_RESPONSE_BYTES,
    Request,
    Response,
    is_loopback_host,
    map_backend_error,
    read_chunks,
)

__all__ = ["RequestsTransport"]
__version__ = "0.1.0"

_CHUNK = 65536
_NO_COOKIES = http.cookiejar.DefaultCookiePolicy(allowed_domains=[])
_NO_PROXY = {"http": None, "https": None, "all": None}
_TIMEOUTS = (requests.Timeout, urllib3.exceptions.TimeoutError)


def _map(exc: BaseException, request: Request) -> NetworkError:
    return map_backend_error(exc, request, timeouts=_TIMEOUTS)


class RequestsTransport:
    """Blocking transport on a ``requests.Session`` (keep-alive, env proxies via ``trust_env``).

    Args:
        session: your configured session; it is used as is and not closed by ``close()``.
            Default: a new session owned (and closed) by this transport.
        verify: ``True``/``False`` or a CA bundle path. ``None`` (default): verify with
            requests' CA bundle for our own session, your session's setting for yours.
            An ``ssl.SSLContext`` is not accepted by requests: mount an adapter instead.
        max_response_bytes: larger bodies raise ``ResponseTooLargeError``.
        trust_env: for our own session, read proxies/CA bundle from the environment.

    Loopback URLs are never proxied, whatever the session or environment says.
    """

    def __init__(
        self,
        session: Optional["requests.Session"] = None,
        *,
        verify: Union[bool, str, None] = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        trust_env: bool = True,
    ) -> None:
        if verify is not None and not isinstance(verify, (bool, str)):
            raise ConfigurationError(
                "RequestsTransport verify must be True, False or a CA bundle path; for an "
                "ssl.SSLContext pass a session with your own HTTPAdapter"
            )
        if not isinstance(max_response_bytes, int) or max_response_bytes <= 0:
            raise ConfigurationError("max_response_bytes must be a positive int")
        self._owned = session is None
        if session is None:
            session = requests.Session()
            session.trust_env = trust_env
            session.cookies.set_policy(_NO_COOKIES)  # like urllib: never store or replay cookies
            # passed per request too: requests lets REQUESTS_CA_BUNDLE override session.verify
            verify = True if verify is None else verify
            session.verify = verify
        self._session = session
        self._verify = verify
        self._max = max_response_bytes

    def __repr__(self) -> str:
        return "RequestsTransport(owned_session={!r})".format(self._owned)

    def request(self, request: Request) -> Response:
        kwargs: Any = {}
        if self._verify is not None:
            kwargs["verify"] = self._verify
        url = request.url
        try:
            if is_loopback_host(urlsplit(url).hostname or ""):
                kwargs["proxies"] = dict(_NO_PROXY)
            body = request.body if request.body or request.method in ("POST", "PUT", "PATCH") else None
            resp = self._session.request(
                request.method,
                url,
                data=body,
                headers=dict(request.headers),
                timeout=(request.timeout, request.timeout),
                allow_redirects=False,
                stream=True,
                **kwargs,
            )
        except NetworkError:
            raise
        except (requests.RequestException, OSError, http.client.HTTPException, ValueError) as exc:
            raise _map(exc, request) from exc
        try:
            with resp:
                data = read_chunks(resp.iter_content(_CHUNK), self._max, request)
                return Response(resp.status_code, resp.headers, data)
        except NetworkError:
            raise
        except (requests.RequestException, OSError, http.client.HTTPException) as exc:
            raise _map(exc, request) from exc

    def close(self) -> None:
        if self._owned:
            self._session.close()

    def __enter__(self) -> "RequestsTransport":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
