"""HTTP transports: the Request/Response value types, the protocols a plugin meets,
the registry that resolves ``transport="name"``, and the default ``UrllibTransport``.

A transport moves bytes. It never raises for an HTTP status, never follows a
redirect, and turns every failure into a ``NetworkError`` subclass chained with
``from``. Status handling, retries and error mapping live in ``_http``.
"""

import ipaddress
import threading
import time
from dataclasses import dataclass, field
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    Iterable,
    List,
    Mapping,
    Optional,
    Protocol,
    Tuple,
    Union,
    runtime_checkable,
)
from urllib.parse import urlsplit

from .exceptions import (
    ConfigurationError,
    NetworkError,
    NetworkTimeoutError,
    ResponseTooLargeError,
    TLSError,
)

if TYPE_CHECKING:  # pragma: no cover
    import http.client
    import ssl
    import urllib.request


__all__ = [
    "DEFAULT_MAX_RESPONSE_BYTES",
    "AsyncTransport",
    "Request",
    "Response",
    "Transport",
    "UrllibTransport",
    "VerifyTypes",
    "default_ssl_context",
    "get_transport",
    "is_loopback_host",
    "check_complete",
    "exception_chain",
    "map_backend_error",
    "map_transport_error",
    "read_body",
    "read_chunks",
    "read_capped",
    "register_transport",
]

DEFAULT_MAX_RESPONSE_BYTES = 1 << 20

#: ``True`` (system CAs), ``False`` (no verification: tests only), a CA bundle path, or a context.
VerifyTypes = Union[bool, str, "ssl.SSLContext"]

_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "x-api-key"})


@dataclass(frozen=True)
class Request:
    """One buffered HTTP request. ``repr`` hides headers and body (they carry credentials)."""

    method: str
    url: str
    headers: Tuple[Tuple[str, str], ...] = field(default=(), repr=False)
    body: bytes = field(default=b"", repr=False)
    timeout: float = 30.0

    def header(self, name: str) -> Optional[str]:
        lname = name.lower()
        for key, value in self.headers:
            if key.lower() == lname:
                return value
        return None

    def redacted_headers(self) -> Tuple[Tuple[str, str], ...]:
        """Headers safe to log: credential-bearing values replaced."""
        return tuple((k, "<redacted>" if k.lower() in _SECRET_HEADERS else v) for k, v in self.headers)


class _Headers(Dict[str, str]):
    """A dict with lower-case keys whose lookups ignore case."""

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())


def _make_headers(pairs: Any) -> "_Headers":
    headers = _Headers()
    items = pairs.items() if isinstance(pairs, Mapping) else pairs
    for key, value in items:
        lkey = str(key).lower()
        if lkey in headers:
            dict.__setitem__(headers, lkey, headers[lkey] + ", " + str(value))
        else:
            dict.__setitem__(headers, lkey, str(value))
    return headers


@dataclass(frozen=True)
class Response:
    """One buffered HTTP response; header lookups ignore case."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    body: bytes = field(default=b"", repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.headers, _Headers):
            object.__setattr__(self, "headers", _make_headers(self.headers))

    @property
    def status_code(self) -> int:
        return self.status

    def header(self, name: str) -> Optional[str]:
        value: Optional[str] = self.headers.get(name)
        return value


@runtime_checkable
class Transport(Protocol):
    """What the clients need from a blocking transport."""

    def request(self, request: Request) -> Response: ...

    def close(self) -> None: ...


@runtime_checkable
class AsyncTransport(Protocol):
    """A natively asynchronous transport; clients await it without a thread hop."""

    async def arequest(self, request: Request) -> Response: ...

    async def aclose(self) -> None: ...


# --------------------------------------------------------------------------- TLS

_ssl_lock = threading.Lock()
_default_context: Optional["ssl.SSLContext"] = None


def default_ssl_context() -> "ssl.SSLContext":
    """The verifying TLS context, built once per process on first HTTPS use (it costs ~15 ms)."""
    global _default_context
    ctx = _default_context
    if ctx is None:
        with _ssl_lock:
            if _default_context is None:
                import ssl

                new = ssl.create_default_context()
                new.minimum_version = ssl.TLSVersion.TLSv1_2
                _default_context = new
            ctx = _default_context
    return ctx


def _context_for(verify: VerifyTypes) -> "ssl.SSLContext":
    import ssl

    if verify is True:
        return default_ssl_context()
    if verify is False:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    if isinstance(verify, str):
        try:
            ctx = ssl.create_default_context(cafile=verify)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigurationError(
                "verify={!r}: cannot load that CA bundle ({}); pass a PEM file path, "
                "an ssl.SSLContext or True".format(verify, exc.__class__.__name__)
            ) from exc
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        return ctx
    if isinstance(verify, ssl.SSLContext):
        return verify
    raise ConfigurationError(
        "verify must be True, False, a CA bundle path or an ssl.SSLContext, not {}".format(
            type(verify).__name__
        )
    )


def is_loopback_host(host: str) -> bool:
    """True for localhost names and loopback addresses (127.0.0.0/8, ::1)."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --------------------------------------------------------------------------- errors


def exception_chain(exc: BaseException) -> List[BaseException]:
    """``exc`` and what caused it, outermost first: ``__cause__``, urllib's and urllib3's
    ``reason``, ``__context__``, an exception passed as an argument. Plugins use it to find the
    low-level error under their backend's wrappers before calling ``map_transport_error``."""
    seen: List[BaseException] = []
    cur: Optional[BaseException] = exc
    while cur is not None and all(cur is not s for s in seen) and len(seen) < 16:
        seen.append(cur)
        reason = getattr(cur, "reason", None)
        nxt = cur.__cause__ or (reason if isinstance(reason, BaseException) else None)
        if nxt is None:
            nxt = cur.__context__ or next((a for a in cur.args if isinstance(a, BaseException)), None)
        cur = nxt
    return seen


def map_backend_error(
    exc: BaseException,
    request: Request,
    *,
    timeouts: Tuple[type, ...] = (),
    truncated: Tuple[type, ...] = (),
) -> NetworkError:
    """For plugins: the NetworkError for what a third-party backend raised. The real socket or
    HTTP error under the backend's wrappers decides; failing that, the backend's own timeout
    types mean a timeout and its protocol-error types mean a reply cut short."""
    import http.client
    import socket

    chain = exception_chain(exc)
    roots = [e for e in chain if isinstance(e, (OSError, http.client.HTTPException))]
    root = roots[-1] if roots else None
    if root is not None and not isinstance(root, (socket.timeout, TimeoutError)):
        return map_transport_error(root, request)
    if any(isinstance(e, timeouts + (socket.timeout, TimeoutError)) for e in chain):
        return map_transport_error(socket.timeout(), request)
    if any(isinstance(e, truncated) for e in chain):
        return map_transport_error(http.client.IncompleteRead(b""), request)
    return map_transport_error(root or exc, request)


def map_transport_error(exc: BaseException, request: Request) -> NetworkError:
    """Turn a low-level exception into the matching NetworkError (the caller raises it ``from exc``)."""
    import http.client
    import socket
    import ssl

    reason: BaseException = exc
    # urllib wraps the real cause in URLError.reason
    inner = getattr(exc, "reason", None)
    if isinstance(inner, BaseException):
        reason = inner
    where = "{} {}".format(request.method, _origin(request.url))
    if isinstance(reason, ssl.SSLCertVerificationError) or isinstance(reason, ssl.CertificateError):
        return TLSError(
            "TLS certificate verification failed for {}: {}. Pass verify=<CA bundle path> "
            "for a private CA.".format(where, getattr(reason, "verify_message", None) or "untrusted")
        )
    if isinstance(reason, ssl.SSLError):
        return TLSError("TLS handshake with {} failed ({})".format(where, reason.__class__.__name__))
    if isinstance(reason, (socket.timeout, TimeoutError)):
        return NetworkTimeoutError("{} timed out after {:g} s".format(where, request.timeout))
    if isinstance(reason, ConnectionRefusedError):
        return NetworkError("{}: connection refused (is the server running?)".format(where))
    if isinstance(reason, socket.gaierror):
        return NetworkError("{}: host name did not resolve".format(where))
    if isinstance(reason, http.client.IncompleteRead):
        return NetworkError("{}: connection closed in the middle of the response".format(where))
    if isinstance(reason, (http.client.HTTPException, ConnectionError)):
        return NetworkError(
            "{}: connection closed or reset by the server ({})".format(where, reason.__class__.__name__)
        )
    detail = getattr(exc, "reason", None)
    if isinstance(detail, str):  # e.g. urllib's "unknown url type: ftp"
        return NetworkError("{} failed: {}".format(where, detail[:200]))
    return NetworkError("{} failed: {}".format(where, reason.__class__.__name__))


def _origin(url: str) -> str:
    """scheme://host[:port]/path of a URL: what an error message may show (no query, no userinfo)."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    host = parts.hostname or ""
    if ":" in host:
        host = "[{}]".format(host)
    return "{}://{}{}{}".format(parts.scheme, host, ":{}".format(port) if port else "", parts.path)


def _too_large(request: Request, limit: int) -> ResponseTooLargeError:
    return ResponseTooLargeError(
        "{} {}: response body larger than {} bytes; raise max_response_bytes if this is expected".format(
            request.method, _origin(request.url), limit
        )
    )


def read_capped(read: Callable[[int], bytes], limit: int, request: Request) -> bytes:
    """Read a buffered body, refusing more than ``limit`` bytes."""
    body = read(limit + 1)
    if len(body) > limit:
        raise _too_large(request, limit)
    return body


def read_chunks(chunks: Iterable[bytes], limit: int, request: Request) -> bytes:
    """For plugins: a body streamed in chunks, refusing more than ``limit`` bytes (it stops
    reading as soon as the cap is passed, so an endless body costs at most one chunk more)."""
    buf = bytearray()
    for chunk in chunks:
        buf += chunk
        if len(buf) > limit:
            raise _too_large(request, limit)
    return bytes(buf)


def read_body(resp: "http.client.HTTPResponse", limit: int, request: Request, deadline: float) -> bytes:
    """Read an ``http.client`` body chunk by chunk, refusing more than ``limit`` bytes or reading
    past ``deadline`` (monotonic): a socket timeout bounds each read, not a body trickled byte by
    byte. A short body (the server closed early) comes back short: callers check the length."""
    chunks: List[bytes] = []
    total = 0
    while True:
        if resp.length == 0:  # Content-Length reached: read() marks the response complete
            resp.read()
            return b"".join(chunks)
        if time.monotonic() > deadline:
            raise NetworkTimeoutError(
                "{} {}: the response body did not arrive within {:g} s".format(
                    request.method, _origin(request.url), request.timeout
                )
            )
        chunk = resp.read1(65536)
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > limit:
            raise _too_large(request, limit)
        chunks.append(chunk)


def check_complete(body: bytes, status: int, content_length: Optional[str], request: Request) -> None:
    """A sized read returns short data, not an error, when the server closes early: catch that."""
    if content_length is None or request.method == "HEAD" or status in (204, 304) or status < 200:
        return  # these responses carry no body whatever Content-Length says
    try:
        expected = int(content_length)
    except ValueError:
        return
    if len(body) < expected:
        import http.client

        raise NetworkError(
            "{} {}: connection closed in the middle of the response ({} of {} bytes)".format(
                request.method, _origin(request.url), len(body), expected
            )
        ) from http.client.IncompleteRead(body, expected - len(body))


# --------------------------------------------------------------------------- urllib


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
            _context_for(verify)  # type check now, not on the first request
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
            urllib.request.HTTPSHandler(context=_context_for(self._verify)),
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
                return Response(resp.status, _make_headers(resp.getheaders()), body)
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


# --------------------------------------------------------------------------- registry

TransportFactory = Callable[[], Any]

_registry: Dict[str, TransportFactory] = {}
_ENTRY_POINT_GROUP = "oculus_lite.transports"
_KNOWN_PLUGINS = {
    "requests": "oculus-lite-requests",
    "httpx": "oculus-lite-httpx",
    "urllib3": "oculus-lite-urllib3",
    "pyodide": "oculus-lite-pyodide",
}


def register_transport(name: str, factory: TransportFactory) -> None:
    """Make ``transport=name`` resolve to ``factory()`` in this process (no packaging needed)."""
    _registry[name] = factory


def _builtin(name: str) -> Optional[TransportFactory]:
    if name == "urllib":
        return UrllibTransport
    if name == "pooled":
        from ._http._pooled import PooledTransport

        return PooledTransport
    return None


def _entry_point(name: str) -> Optional[Any]:
    try:
        from importlib import metadata
    except ImportError:  # pragma: no cover
        return None
    try:
        eps: Any = metadata.entry_points()
    except Exception:  # broken metadata of some unrelated distribution
        return None
    if hasattr(eps, "select"):
        candidates = eps.select(group=_ENTRY_POINT_GROUP, name=name)
    else:  # Python 3.8/3.9: a dict of group -> entry points
        candidates = [ep for ep in eps.get(_ENTRY_POINT_GROUP, ()) if ep.name == name]
    for ep in candidates:
        return ep
    return None


def get_transport(name: str) -> Any:
    """Build the transport registered as ``name`` (core, ``register_transport`` or entry point)."""
    factory = _registry.get(name) or _builtin(name)
    if factory is None:
        ep = _entry_point(name)
        if ep is None:
            hint = (
                "install it with: pip install {}".format(_KNOWN_PLUGINS[name])
                if name in _KNOWN_PLUGINS
                else "no plugin registers it in the '{}' entry-point group".format(_ENTRY_POINT_GROUP)
            )
            raise ConfigurationError("unknown transport {!r}: {}".format(name, hint))
        try:
            factory = ep.load()
        except ImportError as exc:
            raise ConfigurationError(
                "transport {!r} is registered but its backend failed to import ({}); reinstall {}".format(
                    name, exc, _KNOWN_PLUGINS.get(name, "the plugin")
                )
            ) from exc
    assert factory is not None
    return factory()


def resolve_transport(transport: Any) -> Any:
    """``None`` -> the default; a name -> the registered one; an object meeting a protocol -> itself."""
    if transport is None:
        return UrllibTransport()
    if isinstance(transport, str):
        return get_transport(transport)
    if callable(getattr(transport, "request", None)) or callable(getattr(transport, "arequest", None)):
        return transport
    raise ConfigurationError(
        "transport must be a name (e.g. 'urllib') or an object with request(Request) -> Response "
        "and close(), or arequest()/aclose(); got {}".format(type(transport).__name__)
    )
