"""Turning what a socket, ``http.client``, urllib or a plugin's backend raised into ``NetworkError``s."""

from types import TracebackType
from typing import List, Optional, Tuple, Type
from urllib.parse import urlsplit

from ..exceptions import NetworkError, NetworkTimeoutError, OculusError, TLSError
from ._models import Request

__all__ = ["exception_chain", "map_backend_error", "map_transport_error", "mapped_errors", "origin"]

_Types = Tuple[Type[BaseException], ...]


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
    HTTP error under the backend's wrappers decides (urllib3 raises a refused connection as
    a subclass of its timeout type); failing that, the backend's own ``timeouts`` types mean
    a timeout and its ``truncated`` types mean a reply cut short."""
    import http.client
    import socket
    import ssl

    chain = exception_chain(exc)
    waits = (ssl.SSLWantReadError, ssl.SSLWantWriteError)  # "not yet": left behind by a timeout
    roots = [
        e for e in chain if isinstance(e, (OSError, http.client.HTTPException)) and not isinstance(e, waits)
    ]
    root = roots[-1] if roots else None
    if root is not None and not isinstance(root, (socket.timeout, TimeoutError)):
        return map_transport_error(root, request)
    if any(isinstance(e, timeouts + (socket.timeout, TimeoutError)) for e in chain):
        return map_transport_error(socket.timeout(), request)
    if any(isinstance(e, truncated) for e in chain):
        return map_transport_error(http.client.IncompleteRead(b""), request)
    return map_transport_error(root or exc, request)


class _MappedErrors:
    __slots__ = ("_request", "_catch", "_timeouts", "_truncated")

    def __init__(self, request: Request, catch: _Types, timeouts: _Types, truncated: _Types) -> None:
        self._request = request
        self._catch = catch
        self._timeouts = timeouts
        self._truncated = truncated

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        if exc is None or isinstance(exc, OculusError) or not isinstance(exc, self._catch):
            return  # ours (already mapped, or a ConfigurationError) or not an I/O failure: as is
        raise map_backend_error(
            exc, self._request, timeouts=self._timeouts, truncated=self._truncated
        ) from exc


def mapped_errors(
    request: Request, *catch: Type[BaseException], timeouts: _Types = (), truncated: _Types = ()
) -> _MappedErrors:
    """``with mapped_errors(request, httpx.HTTPError):`` — inside, an ``OSError``, an
    ``http.client.HTTPException``, a ``ValueError`` (a bad URL) or one of ``catch`` becomes
    the ``NetworkError`` that ``map_backend_error`` picks, chained with ``from``; the
    core's own errors pass through untouched."""
    import http.client

    return _MappedErrors(
        request, catch + (OSError, http.client.HTTPException, ValueError), timeouts, truncated
    )


def map_transport_error(exc: BaseException, request: Request) -> NetworkError:
    """Turn a low-level exception into the matching NetworkError (the caller raises it ``from exc``).

    The low-level exceptions keep their type and message but lose their tracebacks: the frames
    of ``http.client`` and the backends hold the request body and headers (the client secret,
    the api key) in their locals, which crash reporters capturing locals would record."""
    import http.client
    import socket
    import ssl

    for low in exception_chain(exc):
        low.__traceback__ = None
    reason: BaseException = exc
    # urllib wraps the real cause in URLError.reason
    inner = getattr(exc, "reason", None)
    if isinstance(inner, BaseException):
        reason = inner
    where = "{} {}".format(request.method, origin(request.url))
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


def origin(url: str) -> str:
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
