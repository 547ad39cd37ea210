"""HTTP transports: the public surface for users and for plugin authors.

A transport moves bytes. It never raises for an HTTP status, never follows a
redirect, bounds the whole call by ``Request.timeout``, caps the body (counted
decompressed) at its ``max_response_bytes``, and turns every failure into a
``NetworkError`` subclass chained with ``from``. Status handling, retries and error
mapping to API errors live in the client.

Users pass ``transport=`` a name (``"urllib"``, the default; ``"pooled"``, kept as a
name for it; a plugin's name) or any object meeting ``Transport`` / ``AsyncTransport``.

Plugin authors build on this module and nothing private (``docs/transports.md``):

- types: ``Request``, ``Response``, ``Transport``, ``AsyncTransport``, ``VerifyTypes``;
  ``TransportBase`` (the size cap, ``close``, ``with``/``async with``);
- request side: ``body_for``, ``wire_headers``, ``ssl_context_for``, ``is_loopback_host``;
- one deadline per call: ``call_deadline``, ``time_left``, ``DeadlineHTTPResponse``;
- response side: ``BodyReader``, ``read_chunks``, ``aread_chunks``, ``read_body``,
  ``make_headers``;
- errors: ``mapped_errors``, ``map_backend_error``, ``map_transport_error``,
  ``exception_chain``;
- naming: ``register_transport``, ``get_transport``, ``resolve_transport``, and the
  ``oculus_lite.transports`` entry-point group.
"""

from ._http._base import DEFAULT_MAX_RESPONSE_BYTES, TransportBase, body_for, wire_headers
from ._http._body import BodyReader, aread_chunks, check_complete, read_body, read_capped, read_chunks
from ._http._deadline import DeadlineHTTPResponse, call_deadline, time_left
from ._http._errors import exception_chain, map_backend_error, map_transport_error, mapped_errors
from ._http._hosts import is_loopback_host
from ._http._models import AsyncTransport, HeaderPairs, Request, Response, Transport, make_headers
from ._http._registry import (
    AnyTransport,
    TransportFactory,
    get_transport,
    register_transport,
    resolve_transport,
)
from ._http._tls import VerifyTypes, default_ssl_context, ssl_context_for
from ._http._urllib import UrllibTransport

__all__ = [
    "DEFAULT_MAX_RESPONSE_BYTES",
    "AnyTransport",
    "AsyncTransport",
    "BodyReader",
    "DeadlineHTTPResponse",
    "HeaderPairs",
    "Request",
    "Response",
    "Transport",
    "TransportBase",
    "TransportFactory",
    "UrllibTransport",
    "VerifyTypes",
    "aread_chunks",
    "body_for",
    "call_deadline",
    "check_complete",
    "default_ssl_context",
    "exception_chain",
    "get_transport",
    "is_loopback_host",
    "make_headers",
    "map_backend_error",
    "map_transport_error",
    "mapped_errors",
    "read_body",
    "read_capped",
    "read_chunks",
    "register_transport",
    "resolve_transport",
    "ssl_context_for",
    "time_left",
    "wire_headers",
]
