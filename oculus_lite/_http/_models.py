"""The buffered request and response every transport exchanges, and the transport protocols.

A transport moves bytes: it never raises for an HTTP status, never follows a
redirect, and turns every failure into a ``NetworkError`` subclass.
"""

from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, Mapping, Optional, Protocol, Tuple, Union, runtime_checkable

__all__ = ["AsyncTransport", "HeaderPairs", "Request", "Response", "Transport", "make_headers"]

#: Headers as a mapping or as ``(name, value)`` pairs (repeated names allowed).
HeaderPairs = Union[Mapping[str, str], Iterable[Tuple[str, str]]]

_RESEND_SAFE_METHODS = frozenset(("GET", "HEAD"))


@dataclass(frozen=True)
class Request:
    """One buffered HTTP request. ``repr`` hides headers and body (they carry credentials).

    ``timeout`` bounds the whole exchange: connect, TLS, sending, and reading the status
    line, the headers and the body together (not each read).

    ``resend_safe`` says that sending this request twice does no harm, so a transport may
    send it again, once, on a new connection when a kept-alive connection turns out to
    have been closed by the server before any byte of the response arrived (the
    keep-alive race). GET and HEAD are resend-safe whatever the flag says; mark
    others only when a repeat is harmless, e.g. a client-credentials token request (a
    second token is just a second token). Never mark a refresh-token grant (the token is
    single-use) or a request that creates something.
    """

    method: str
    url: str
    headers: Tuple[Tuple[str, str], ...] = field(default=(), repr=False)
    body: bytes = field(default=b"", repr=False)
    timeout: float = 30.0
    resend_safe: bool = False

    def header(self, name: str) -> Optional[str]:
        lname = name.lower()
        for key, value in self.headers:
            if key.lower() == lname:
                return value
        return None

    @property
    def may_resend(self) -> bool:
        """True when a transport may resend this request after the keep-alive race."""
        return self.resend_safe or self.method.upper() in _RESEND_SAFE_METHODS


class _Headers(Dict[str, str]):
    """A dict with lower-case keys whose lookups ignore case."""

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())


def make_headers(pairs: HeaderPairs) -> Mapping[str, str]:
    """Response headers as the core keeps them: names lower-cased, lookups that ignore case,
    repeated headers joined with ``", "``. Plugins pass their backend's header pairs."""
    headers = _Headers()
    items: Iterable[Tuple[str, str]] = pairs.items() if isinstance(pairs, Mapping) else pairs
    seen = dict.get  # plain dict methods: this runs on every response
    put = dict.__setitem__
    for key, value in items:
        lkey = (key if type(key) is str else str(key)).lower()
        text = value if type(value) is str else str(value)
        before = seen(headers, lkey)
        put(headers, lkey, text if before is None else before + ", " + text)
    return headers


@dataclass(frozen=True)
class Response:
    """One buffered HTTP response; header lookups ignore case.

    ``body`` is the content: a body the server compressed (``Content-Encoding: gzip`` or
    ``deflate``) has been decompressed by the transport, within its size cap. ``headers``
    are as received.
    """

    status: int
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    body: bytes = field(default=b"", repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.headers, _Headers):
            object.__setattr__(self, "headers", make_headers(self.headers))

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
