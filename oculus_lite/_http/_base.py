"""What every transport shares, written once: the size cap, the body and header rules,
``close()`` and the context-manager methods."""

from typing import Dict, Optional, TypeVar

from ..exceptions import ConfigurationError
from ._models import Request

__all__ = ["DEFAULT_MAX_RESPONSE_BYTES", "TransportBase", "body_for", "wire_headers"]

#: The default cap on a response body (content bytes, after decompression): 1 MiB.
DEFAULT_MAX_RESPONSE_BYTES = 1 << 20

_T = TypeVar("_T", bound="TransportBase")
_SENDS_BODY = frozenset(("POST", "PUT", "PATCH"))


def body_for(request: Request) -> Optional[bytes]:
    """The body to hand a backend: ``None`` for a bodiless GET/HEAD/DELETE (no
    ``Content-Length: 0``), the bytes otherwise (an empty POST still says ``0``)."""
    if request.body or request.method.upper() in _SENDS_BODY:
        return request.body
    return None


def wire_headers(request: Request) -> Dict[str, str]:
    """The request's headers as a dict, asking for ``Accept-Encoding: identity`` unless the
    request names an encoding itself: bodies here are small, and a compressed one is
    inflated under the size cap anyway (``BodyReader``)."""
    headers = dict(request.headers)
    if request.header("accept-encoding") is None:
        headers["Accept-Encoding"] = "identity"
    return headers


class TransportBase:
    """A base class for transports: checks ``max_response_bytes`` (kept as
    ``self.max_response_bytes``), a ``close()`` with nothing to release, and ``with`` /
    ``async with`` support. A subclass writes ``request`` and/or ``arequest``, overrides
    ``close``/``aclose`` when it holds connections, and calls ``super().__init__``.
    """

    def __init__(self, *, max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES) -> None:
        if isinstance(max_response_bytes, bool) or not isinstance(max_response_bytes, int):
            raise ConfigurationError("max_response_bytes must be a positive int")
        if max_response_bytes <= 0:
            raise ConfigurationError("max_response_bytes must be a positive int")
        self.max_response_bytes = max_response_bytes

    def close(self) -> None:
        """Release connections; this base holds none."""

    def __enter__(self: _T) -> _T:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self: _T) -> _T:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        aclose = getattr(self, "aclose", None)
        if aclose is not None:
            await aclose()
        else:
            self.close()
