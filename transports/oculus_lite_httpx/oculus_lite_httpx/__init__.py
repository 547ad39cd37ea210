"""oculus_lite transport on ``httpx``: the one transport with native async, so
``aget_token`` and ``AsyncPermissionClient`` await sockets directly instead of
hopping to a worker thread. Same contract as the core transports: no redirects,
TLS verified, bodies capped while streaming, failures mapped to ``NetworkError``.

    from oculus_lite_httpx import HttpxTransport
    Client(..., transport=HttpxTransport(client=my_httpx_client))

or, once installed, ``Client(..., transport="httpx")``.
"""

import asyncio
import http.client
import http.cookiejar
import threading
from typing import Any, Dict, Optional, Union

try:
    import httpx
except ImportError as _exc:  # pragma: no cover - depends on the environment
    raise ModuleNotFoundError(
        "oculus_lite_httpx needs the 'httpx' package: pip install oculus-lite-httpx", name="httpx"
    ) from _exc

from oculus_lite.exceptions import ConfigurationError, NetworkError
from oculus_lite.transport import (
    DEFAULT_MAX_RESPONSE_BYTES,
    Request,
    Response,
    VerifyTypes,
    is_loopback_host,
    map_backend_error,
    read_capped,
    ssl_context_for,
)

__all__ = ["HttpxTransport"]
__version__ = "0.1.0"

_TIMEOUTS = (httpx.TimeoutException,)


def _map(exc: BaseException, request: Request) -> NetworkError:
    return map_backend_error(exc, request, timeouts=_TIMEOUTS, truncated=(httpx.RemoteProtocolError,))


def _capped(buf: bytearray, limit: int, request: Request) -> bytes:
    # read_capped's one check and message, on what we streamed (at most limit + 1 bytes)
    return read_capped(lambda n: bytes(buf[:n]), limit, request)


class HttpxTransport:
    """Sync (``request``/``close``) and native async (``arequest``/``aclose``) transport.

    Args:
        client: your ``httpx.Client``, used as is and not closed by ``close()``.
        async_client: your ``httpx.AsyncClient``, likewise. Without one, an
            ``AsyncClient`` is created on the first ``arequest`` (one per event loop).
        verify: ``True`` (httpx's CA bundle), a CA bundle path, an ``ssl.SSLContext``,
            or ``False``; applies to the clients this transport creates.
        max_response_bytes: larger bodies raise ``ResponseTooLargeError``.
        trust_env: our clients read proxies from the environment (``NO_PROXY``
            honoured); loopback URLs always go direct. Your clients keep their settings.
    """

    def __init__(
        self,
        client: Optional["httpx.Client"] = None,
        async_client: Optional["httpx.AsyncClient"] = None,
        *,
        verify: VerifyTypes = True,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        trust_env: bool = True,
    ) -> None:
        if not isinstance(max_response_bytes, int) or max_response_bytes <= 0:
            raise ConfigurationError("max_response_bytes must be a positive int")
        # httpx deprecates verify=<path>: hand it a context built the core's way
        self._verify: Union[bool, Any] = verify if isinstance(verify, bool) else ssl_context_for(verify)
        self._max = max_response_bytes
        self._trust_env = trust_env
        self._client = client
        self._direct: Optional[httpx.Client] = None
        self._own_client = client is None
        self._async_client = async_client
        self._own_async = async_client is None
        self._async: Optional[httpx.AsyncClient] = None
        self._async_direct: Optional[httpx.AsyncClient] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return "HttpxTransport(own_client={!r})".format(self._own_client)

    def _options(self, direct: bool) -> Any:
        # like urllib: never store or replay cookies a server sets
        no_cookies = http.cookiejar.CookieJar(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
        return dict(
            verify=self._verify,
            trust_env=self._trust_env and not direct,
            follow_redirects=False,
            cookies=no_cookies,
        )

    # ------------------------------------------------------------------ sync

    def _sync_client(self, url: str) -> "httpx.Client":
        if not self._own_client:
            assert self._client is not None
            return self._client
        direct = self._trust_env and is_loopback_host(httpx.URL(url).host)
        with self._lock:
            if direct:
                if self._direct is None:
                    self._direct = httpx.Client(**self._options(True))
                return self._direct
            if self._client is None:
                self._client = httpx.Client(**self._options(False))
            return self._client

    def _build(self, client: Any, request: Request) -> "httpx.Request":
        body = request.body if request.body or request.method in ("POST", "PUT", "PATCH") else None
        req: httpx.Request = client.build_request(
            request.method,
            request.url,
            content=body,
            headers=list(request.headers),
            timeout=httpx.Timeout(request.timeout),
        )
        return req

    def request(self, request: Request) -> Response:
        try:
            client = self._sync_client(request.url)
            resp = client.send(self._build(client, request), stream=True, follow_redirects=False)
        except NetworkError:
            raise
        except (httpx.HTTPError, httpx.InvalidURL, OSError, ValueError) as exc:
            raise _map(exc, request) from exc
        try:
            buf = bytearray()
            chunks = resp.iter_bytes()
            try:
                for chunk in chunks:
                    buf += chunk
                    if len(buf) > self._max:
                        break
            finally:
                getattr(chunks, "close", _noop)()  # a generator left open would close at GC
                resp.close()
            return Response(resp.status_code, _items(resp), _capped(buf, self._max, request))
        except NetworkError:
            raise
        except (httpx.HTTPError, httpx.StreamError, OSError) as exc:
            raise _map(exc, request) from exc

    def close(self) -> None:
        """Close the sync clients this transport created (the async one: ``aclose``)."""
        with self._lock:
            clients = [self._direct] + ([self._client] if self._own_client else [])
            self._direct = None
            if self._own_client:
                self._client = None
        for client in clients:
            if client is not None:
                client.close()

    # ------------------------------------------------------------------ async

    def _async_for(self, url: str) -> "httpx.AsyncClient":
        if not self._own_async:
            assert self._async_client is not None
            return self._async_client
        loop = asyncio.get_running_loop()
        direct = self._trust_env and is_loopback_host(httpx.URL(url).host)
        with self._lock:
            if self._loop is not loop:
                # connections belong to the loop that opened them: start over on a new loop
                self._async = self._async_direct = None
                self._loop = loop
            if direct:
                if self._async_direct is None:
                    self._async_direct = httpx.AsyncClient(**self._options(True))
                return self._async_direct
            if self._async is None:
                self._async = httpx.AsyncClient(**self._options(False))
            return self._async

    async def arequest(self, request: Request) -> Response:
        try:
            client = self._async_for(request.url)
            resp = await client.send(self._build(client, request), stream=True, follow_redirects=False)
        except NetworkError:
            raise
        except (httpx.HTTPError, httpx.InvalidURL, OSError, ValueError) as exc:
            raise _map(exc, request) from exc
        try:
            buf = bytearray()
            chunks = resp.aiter_bytes()
            try:
                async for chunk in chunks:
                    buf += chunk
                    if len(buf) > self._max:
                        break
            finally:
                # close the async generator now, on this loop: left to GC it needs a loop
                aclose = getattr(chunks, "aclose", None)
                if aclose is not None:
                    await aclose()
                await resp.aclose()
            return Response(resp.status_code, _items(resp), _capped(buf, self._max, request))
        except NetworkError:
            raise
        except (httpx.HTTPError, httpx.StreamError, OSError) as exc:
            raise _map(exc, request) from exc

    async def aclose(self) -> None:
        """Close every client this transport created (the async ones on this loop)."""
        self.close()
        if not self._own_async:
            return
        with self._lock:
            clients = [self._async, self._async_direct] if self._loop is _running_loop() else []
            self._async = self._async_direct = None
            self._loop = None
        for client in clients:
            if client is not None:
                await client.aclose()

    def __enter__(self) -> "HttpxTransport":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> "HttpxTransport":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def _items(resp: "httpx.Response") -> Dict[str, str]:
    # repeated headers joined the way the core does it (", "), names lower-cased
    joined: Dict[str, str] = {}
    for key, value in resp.headers.multi_items():
        lkey = key.lower()
        joined[lkey] = joined[lkey] + ", " + value if lkey in joined else value
    return joined


def _noop() -> None:
    pass


def _running_loop() -> Optional[asyncio.AbstractEventLoop]:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
