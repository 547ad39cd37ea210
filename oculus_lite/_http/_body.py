"""Reading response bodies within a size cap and a deadline; every transport uses these."""

import time
from typing import TYPE_CHECKING, Callable, Iterable, List, Optional

from ..exceptions import NetworkError, NetworkTimeoutError, ResponseTooLargeError
from ._errors import origin
from ._models import Request

if TYPE_CHECKING:  # pragma: no cover
    import http.client

__all__ = ["check_complete", "read_body", "read_capped", "read_chunks"]


def _too_large(request: Request, limit: int) -> ResponseTooLargeError:
    return ResponseTooLargeError(
        "{} {}: response body larger than {} bytes; raise max_response_bytes if this is expected".format(
            request.method, origin(request.url), limit
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
                    request.method, origin(request.url), request.timeout
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
                request.method, origin(request.url), len(body), expected
            )
        ) from http.client.IncompleteRead(body, expected - len(body))
