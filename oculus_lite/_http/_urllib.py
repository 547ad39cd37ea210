"""The default transport, on ``urllib.request``."""

import threading
import time
from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional, Tuple
from urllib.parse import urlsplit

from ..exceptions import ConfigurationError, NetworkError
from ._body import check_complete, read_body
from ._errors import map_transport_error
from ._hosts import is_loopback_host
from ._models import Request, Response, make_headers
from ._tls import VerifyTypes, ssl_context_for

if TYPE_CHECKING:  # pragma: no cover
    import urllib.request

__all__ = ["DEFAULT_MAX_RESPONSE_BYTES", "UrllibTransport"]

DEFAULT_MAX_RESPONSE_BYTES = 1 << 20


class UrllibTransport:
    """The default transport, on ``urllib.request``: proxies from the environment,
    TLS verified, no redirects, capped bodies. One connection per request.

    Construction is cheap; the opener and TLS context are built on first use.
    """

    def __init__(
        self,
        *,
        verify: VerifyTypes = True,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        trust_env: bool = True,
        proxies: Optional[Mapping[str, str]] = None,
    ) -> None:
        if not isinstance(max_response_bytes, int) or max_response_bytes <= 0:
            raise ConfigurationError("max_response_bytes must be a positive int")
        if not isinstance(verify, (bool, str)):
            ssl_context_for(verify)  # type check now, not on the first request
        self._verify = verify
        self._max = max_response_bytes
        self._trust_env = trust_env
        self._proxies = dict(proxies) if proxies is not None else None
        self._opener: Optional["urllib.request.OpenerDirector"] = None
        self._direct: Optional["urllib.request.OpenerDirector"] = None
        self._loopback: Dict[str, bool] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return "UrllibTransport(verify={!r})".format(
            self._verify if isinstance(self._verify, bool) else "<custom>"
        )

    def _build(self, proxies: Optional[Mapping[str, str]]) -> "urllib.request.OpenerDirector":
        import urllib.request

        class _NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args: Any, **kwargs: Any) -> None:
                return None  # hand the 3xx back as a response

        opener = urllib.request.OpenerDirector()
        handlers: Tuple[Any, ...] = (
            urllib.request.ProxyHandler(dict(proxies) if proxies is not None else None),
            urllib.request.HTTPHandler(),
            urllib.request.HTTPSHandler(context=ssl_context_for(self._verify)),
            _NoRedirect(),
            urllib.request.UnknownHandler(),  # file:, ftp:... raise instead of returning None
        )
        for handler in handlers:
            opener.add_handler(handler)
        return opener

    def _opener_for(self, url: str) -> "urllib.request.OpenerDirector":
        # Loopback never goes through a proxy: a proxy could not reach our 127.0.0.1 anyway.
        host = urlsplit(url).hostname or ""
        loopback = self._loopback.get(host)
        if loopback is None:
            loopback = self._loopback[host] = is_loopback_host(host)
        direct = not self._trust_env or loopback
        with self._lock:
            if direct:
                if self._direct is None:
                    self._direct = self._build(self._proxies or {})
                return self._direct
            if self._opener is None:
                self._opener = self._build(self._proxies)
            return self._opener

    def request(self, request: Request) -> Response:
        import http.client
        import urllib.error
        import urllib.request

        deadline = time.monotonic() + request.timeout
        opener = self._opener_for(request.url)
        req = urllib.request.Request(
            request.url,
            data=request.body if request.body or request.method in ("POST", "PUT", "PATCH") else None,
            headers=dict(request.headers),
            method=request.method,
        )
        try:
            resp = opener.open(req, timeout=request.timeout)
        except urllib.error.HTTPError as exc:  # only raised by handlers we did not install
            resp = exc
        except NetworkError:
            raise
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise map_transport_error(exc, request) from exc
        try:
            with resp:
                body = read_body(resp, self._max, request, deadline)
                check_complete(body, resp.status, resp.getheader("content-length"), request)
                return Response(resp.status, make_headers(resp.getheaders()), body)
        except NetworkError:
            raise
        except (OSError, http.client.HTTPException) as exc:
            raise map_transport_error(exc, request) from exc

    def close(self) -> None:
        with self._lock:
            self._opener = None
            self._direct = None

    def __enter__(self) -> "UrllibTransport":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
