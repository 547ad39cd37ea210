"""The buffered request and response every transport exchanges, and the transport protocols.

A transport moves bytes: it never raises for an HTTP status, never follows a
redirect, and turns every failure into a ``NetworkError`` subclass.
"""

from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Protocol, Tuple, runtime_checkable

__all__ = ["AsyncTransport", "Request", "Response", "Transport", "make_headers"]


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


class _Headers(Dict[str, str]):
    """A dict with lower-case keys whose lookups ignore case."""

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())


def make_headers(pairs: Any) -> "_Headers":
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
