"""oculus_lite transport on ``httpx``: the one transport with native async, so
``aget_token`` and ``AsyncPermissionClient`` await sockets directly instead of
hopping to a worker thread. Same contract as the core transports: no redirects,
TLS verified, one deadline per call, bodies capped as they are decompressed,
failures mapped to ``NetworkError``.

    from oculus_lite_httpx import HttpxTransport
    Client(..., transport=HttpxTransport(client=my_httpx_client))

or, once installed, ``Client(..., transport="httpx")``.

The deadline: httpcore's ``trace`` extension hands over each new network stream, whose
``read`` is then given at most the time left in the call
(``oculus_lite.transport.time_left``), in ``request`` and ``arequest`` alike; httpx's own
timeouts (``Request.timeout`` each) bound connecting and the TLS handshake. No task is
cancelled (cancelling httpx mid-handshake leaks its socket). Streams a client of yours
opened before this transport first used it keep per-read timeouts.
"""

import asyncio
import http.cookiejar
import threading
from typing import Any, AsyncIterator, Dict, Iterator, Optional, Union

try:
    import httpcore
    import httpx
except ImportError as _exc:  # pragma: no cover - depends on the environment
    raise ModuleNotFoundError(
        "oculus_lite_httpx needs the 'httpx' package: pip install oculus-lite-httpx", name="httpx"
    ) from _exc

from oculus_lite.transport import (
    DEFAULT_MAX_RESPONSE_BYTES,
    Request,
    Response,
    TransportBase,
    VerifyTypes,
    aread_chunks,
    body_for,
    call_deadline,
    is_loopback_host,
    mapped_errors,
    read_chunks,
    ssl_context_for,
    time_left,
    wire_headers,
)

__all__ = ["HttpxTransport"]
__version__ = "0.2.0"

_ERRORS = (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError)
_TIMEOUTS = (httpx.TimeoutException,)
_TRUNCATED = (httpx.RemoteProtocolError,)
_NEW_STREAM = (".connect_tcp.complete", ".start_tls.complete")


def _read_timeout(timeout: Optional[float]) -> Optional[float]:
    """The read timeout httpcore asked for, cut to the time left in the call."""
    left = time_left()
    if left is None:
        return timeout
    if left <= 0:
        raise httpcore.ReadTimeout("the call's deadline has passed")
    return left if timeout is None else min(timeout, left)


def _new_stream(event: str, info: Dict[str, Any]) -> Any:
    """The network stream a trace event hands over, once (None: nothing to bound)."""
    if not event.endswith(_NEW_STREAM):
        return None
    stream = info.get("return_value")
    if stream is None or getattr(stream, "_oculus_bounded", False):
        return None
    try:
        stream._oculus_bounded = True
    except AttributeError:  # a stream type that takes no new attributes: per-read timeouts only
        return None
    return stream


def _bound_reads(event: str, info: Dict[str, Any]) -> None:
    """httpcore ``trace`` hook (blocking side): each new network stream's reads get at most
    the time left in the call being made (``call_deadline``)."""
    stream = _new_stream(event, info)
    if stream is not None:
        read = stream.read

        def bounded_read(max_bytes: int, timeout: Optional[float] = None) -> bytes:
            data: bytes = read(max_bytes, _read_timeout(timeout))
            return data

        stream.read = bounded_read


async def _abound_reads(event: str, info: Dict[str, Any]) -> None:
    """The same hook for the async client (httpcore awaits async trace callbacks)."""
    stream = _new_stream(event, info)
    if stream is not None:
        read = stream.read

        async def bounded_read(max_bytes: int, timeout: Optional[float] = None) -> bytes:
            data: bytes = await read(max_bytes, _read_timeout(timeout))
            return data

        stream.read = bounded_read


class HttpxTransport(TransportBase):
    """Sync (``request``/``close``) and native async (``arequest``/``aclose``) transport.

    Args:
        client: your ``httpx.Client``, used as is and not closed by ``close()``.
        async_client: your ``httpx.AsyncClient``, likewise. Without one, an
            ``AsyncClient`` is created on the first ``arequest`` (one per event loop).
        verify: ``True`` (httpx's CA bundle), a CA bundle path, an ``ssl.SSLContext``,
            or ``False``; applies to the clients this transport creates.
        max_response_bytes: larger bodies (counted decompressed) raise ``ResponseTooLargeError``.
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
        super().__init__(max_response_bytes=max_response_bytes)
        # httpx deprecates verify=<path>: hand it a context built the core's way
        self._verify: Union[bool, Any] = verify if isinstance(verify, bool) else ssl_context_for(verify)
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

    def _build(self, client: Any, request: Request, trace: Any) -> "httpx.Request":
        req: httpx.Request = client.build_request(
            request.method,
            request.url,
            content=body_for(request),
            headers=list(wire_headers(request).items()),
            timeout=httpx.Timeout(request.timeout),
            extensions={"trace": trace},
        )
        return req

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

    def request(self, request: Request) -> Response:
        with call_deadline(request), mapped_errors(
            request, *_ERRORS, timeouts=_TIMEOUTS, truncated=_TRUNCATED
        ):
            client = self._sync_client(request.url)
            resp = client.send(
                self._build(client, request, _bound_reads), stream=True, follow_redirects=False
            )
            try:
                chunks = resp.iter_raw()  # raw: inflated under the cap by read_chunks
                try:
                    data = read_chunks(
                        chunks,
                        self.max_response_bytes,
                        request,
                        content_encoding=resp.headers.get("content-encoding"),
                    )
                finally:
                    _close(chunks)  # a generator left open would close at GC
            finally:
                resp.close()
            return Response(resp.status_code, _items(resp), data)

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
        with call_deadline(request), mapped_errors(
            request, *_ERRORS, timeouts=_TIMEOUTS, truncated=_TRUNCATED
        ):
            client = self._async_for(request.url)
            resp = await client.send(
                self._build(client, request, _abound_reads), stream=True, follow_redirects=False
            )
            try:
                chunks = resp.aiter_raw()  # raw: inflated under the cap by aread_chunks
                try:
                    data = await aread_chunks(
                        chunks,
                        self.max_response_bytes,
                        request,
                        content_encoding=resp.headers.get("content-encoding"),
                    )
                finally:
                    await _aclose(chunks)  # now, on this loop: left to GC it needs a loop
            finally:
                await resp.aclose()
            return Response(resp.status_code, _items(resp), data)

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


def _items(resp: "httpx.Response") -> Dict[str, str]:
    # repeated headers joined the way the core does it (", "), names lower-cased
    joined: Dict[str, str] = {}
    for key, value in resp.headers.multi_items():
        lkey = key.lower()
        joined[lkey] = joined[lkey] + ", " + value if lkey in joined else value
    return joined


def _close(chunks: Iterator[bytes]) -> None:
    close = getattr(chunks, "close", None)
    if close is not None:
        close()


async def _aclose(chunks: AsyncIterator[bytes]) -> None:
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        await aclose()


def _running_loop() -> Optional[asyncio.AbstractEventLoop]:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
