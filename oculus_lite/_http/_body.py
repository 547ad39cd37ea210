"""Reading response bodies within a size cap and a deadline; every transport uses these.

The cap (``max_response_bytes``) applies to the content as it is decompressed, so a
small compressed body that inflates to a gigabyte is refused after at most the cap:
``BodyReader`` inflates gzip and deflate itself, never asking zlib for more than the
room left under the cap. Transports therefore read the *raw* bytes from their backend
(its own decoding turned off) and feed them here. Transports ask for
``Accept-Encoding: identity`` (``wire_headers``); this is for servers that compress
anyway. Other codings (``br``, ``zstd``, stacked ones) are not decoded: the bytes come
back as sent, under the same cap, with their ``Content-Encoding`` header.
"""

import time
import zlib
from typing import TYPE_CHECKING, AsyncIterable, Callable, Iterable, List, Optional

from ..exceptions import NetworkError, NetworkTimeoutError, ResponseTooLargeError
from ._errors import origin
from ._models import Request

if TYPE_CHECKING:  # pragma: no cover
    import http.client

__all__ = ["BodyReader", "aread_chunks", "check_complete", "read_body", "read_capped", "read_chunks"]

_CHUNK = 65536
_DECODED = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def _too_large(request: Request, limit: int) -> ResponseTooLargeError:
    return ResponseTooLargeError(
        "{} {}: response body larger than {} bytes; raise max_response_bytes if this is expected".format(
            request.method, origin(request.url), limit
        )
    )


def _coding(content_encoding: Optional[str]) -> Optional[str]:
    """The one coding ``BodyReader`` decodes, or None (identity, absent, unknown or stacked)."""
    if not content_encoding:
        return None
    codings = [c.strip().lower() for c in content_encoding.split(",")]
    codings = [c for c in codings if c and c != "identity"]
    if len(codings) == 1 and codings[0] in _DECODED:
        return codings[0]
    return None


class BodyReader:
    """Collects one response body: ``feed(raw)`` as bytes arrive, then ``finish()``.

    Refuses (``ResponseTooLargeError``) more than ``limit`` bytes of content, decoded
    bytes counted as they are inflated; inflates gzip/deflate named by
    ``content_encoding``; with ``deadline`` (a ``time.monotonic()`` instant) refuses to go
    on after it (``NetworkTimeoutError``). Sans-IO: the sync and async readers and every
    plugin drive the same object.
    """

    def __init__(
        self,
        limit: int,
        request: Request,
        content_encoding: Optional[str] = None,
        *,
        deadline: Optional[float] = None,
    ) -> None:
        self._limit = limit
        self._request = request
        self._deadline = deadline
        self._parts: List[bytes] = []
        self._size = 0
        self._coding = _coding(content_encoding)
        self._inflater: Optional["zlib._Decompress"] = None
        self._raw_limit = limit + limit // 4096 + 1024  # headers, trailers, stored blocks
        #: bytes received (before decoding)
        self.raw_bytes = 0

    def feed(self, data: bytes) -> None:
        if self._deadline is not None and time.monotonic() > self._deadline:
            raise NetworkTimeoutError(
                "{} {}: the response body did not arrive within {:g} s".format(
                    self._request.method, origin(self._request.url), self._request.timeout
                )
            )
        if not data:
            return
        self.raw_bytes += len(data)
        if self._coding is None:
            self._add(data)
            return
        if self.raw_bytes > self._raw_limit:
            raise _too_large(self._request, self._limit)
        try:
            self._inflate(data)
        except zlib.error as exc:
            raise self._corrupt() from exc

    def finish(self) -> bytes:
        """The whole content; raises if compressed data stopped before its end."""
        if self._coding is not None and self.raw_bytes and (self._inflater is None or not self._inflater.eof):
            raise self._corrupt("ended in the middle of its compressed data")
        parts, self._parts = self._parts, []
        return b"".join(parts)

    def _add(self, data: bytes) -> None:
        self._size += len(data)
        if self._size > self._limit:
            raise _too_large(self._request, self._limit)
        if data:
            self._parts.append(data)

    def _inflate(self, data: bytes) -> None:
        assert self._coding is not None
        while data:
            inflater = self._inflater
            if inflater is None or (inflater.eof and self._coding != "deflate"):
                # first member, or the next member of a multi-member gzip body
                inflater = self._inflater = self._new_inflater(data)
            elif inflater.eof:
                raise zlib.error("data after the end of the deflate stream")
            # never more than one byte past the room left: an over-cap result is refused now
            self._add(inflater.decompress(data, self._limit - self._size + 1))
            data = inflater.unconsumed_tail or (inflater.unused_data if inflater.eof else b"")

    def _new_inflater(self, data: bytes) -> "zlib._Decompress":
        wbits = _DECODED[self._coding or "gzip"]
        if self._coding == "deflate":
            zlib_header = (data[0] & 0x0F) == 8 and (len(data) < 2 or (data[0] << 8 | data[1]) % 31 == 0)
            if not zlib_header:
                wbits = -zlib.MAX_WBITS  # raw deflate without the zlib header: some servers send that
        return zlib.decompressobj(wbits)

    def _corrupt(self, what: str = "is not valid compressed data") -> NetworkError:
        return NetworkError(
            "{} {}: the response body ({}) {}".format(
                self._request.method, origin(self._request.url), self._coding, what
            )
        )


def read_chunks(
    chunks: Iterable[bytes],
    limit: int,
    request: Request,
    *,
    content_encoding: Optional[str] = None,
    deadline: Optional[float] = None,
) -> bytes:
    """For plugins: a body streamed as raw chunks, through one ``BodyReader`` (it stops at
    the first chunk past the cap, so an endless body costs at most one chunk more)."""
    reader = BodyReader(limit, request, content_encoding, deadline=deadline)
    for chunk in chunks:
        reader.feed(chunk)
    return reader.finish()


async def aread_chunks(
    chunks: AsyncIterable[bytes],
    limit: int,
    request: Request,
    *,
    content_encoding: Optional[str] = None,
    deadline: Optional[float] = None,
) -> bytes:
    """``read_chunks`` for a body streamed by an async backend."""
    reader = BodyReader(limit, request, content_encoding, deadline=deadline)
    async for chunk in chunks:
        reader.feed(chunk)
    return reader.finish()


def read_body(
    resp: "http.client.HTTPResponse", limit: int, request: Request, deadline: Optional[float] = None
) -> bytes:
    """An ``http.client`` body, read chunk by chunk through a ``BodyReader``. A body cut
    short of its ``Content-Length`` raises ``NetworkError``; the response is complete (its
    connection reusable) when this returns. Bound each read by the call's deadline with
    ``DeadlineHTTPResponse``; ``deadline`` here is only checked between chunks."""
    import http.client

    encoding = resp.getheader("content-encoding")
    length = resp.length
    if length is not None and _coding(encoding) is None:
        # Content-Length known, nothing to inflate: refuse an oversized body before
        # reading it, else read it in one call (short data raises IncompleteRead)
        if length > limit:
            raise _too_large(request, limit)
        if deadline is not None and time.monotonic() > deadline:
            raise NetworkTimeoutError(
                "{} {}: the response body did not arrive within {:g} s".format(
                    request.method, origin(request.url), request.timeout
                )
            )
        return resp.read()
    reader = BodyReader(limit, request, encoding, deadline=deadline)
    while True:
        if resp.length == 0:  # Content-Length reached: read() marks the response complete
            resp.read()
            break
        chunk = resp.read1(_CHUNK)
        if not chunk:
            if resp.length:  # the server closed early: read1 returns short data, not an error
                raise NetworkError(
                    "{} {}: connection closed in the middle of the response ({} bytes missing)".format(
                        request.method, origin(request.url), resp.length
                    )
                ) from http.client.IncompleteRead(b"", resp.length)
            break
        reader.feed(chunk)
    return reader.finish()


def read_capped(read: Callable[[int], bytes], limit: int, request: Request) -> bytes:
    """Read a buffered body, refusing more than ``limit`` bytes."""
    body = read(limit + 1)
    if len(body) > limit:
        raise _too_large(request, limit)
    return body


def check_complete(body: bytes, status: int, content_length: Optional[str], request: Request) -> None:
    """A sized read returns short data, not an error, when the server closes early: catch that.
    ``body`` is the raw (still compressed) body, as ``Content-Length`` counts it."""
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
