"""HTTP transports: the public surface for users and for plugin authors.

A transport moves bytes. It never raises for an HTTP status, never follows a
redirect, and turns every failure into a ``NetworkError`` subclass chained with
``from``. Status handling, retries and error mapping live in the client.

Users pass ``transport=`` a name (``"urllib"``, ``"pooled"``, a plugin's name), or
any object meeting ``Transport`` / ``AsyncTransport``. Plugin authors build on the
helpers below (and nothing private): ``ssl_context_for``, ``make_headers``,
``map_backend_error``, ``read_chunks``, ``read_body``, ``check_complete``.
"""

from ._http._body import check_complete, read_body, read_capped, read_chunks
from ._http._errors import exception_chain, map_backend_error, map_transport_error
from ._http._hosts import is_loopback_host
from ._http._models import AsyncTransport, Request, Response, Transport, make_headers
from ._http._registry import TransportFactory, get_transport, register_transport, resolve_transport
from ._http._tls import VerifyTypes, default_ssl_context, ssl_context_for
from ._http._urllib import DEFAULT_MAX_RESPONSE_BYTES, UrllibTransport

__all__ = [
    "DEFAULT_MAX_RESPONSE_BYTES",
    "AsyncTransport",
    "Request",
    "Response",
    "Transport",
    "TransportFactory",
    "UrllibTransport",
    "VerifyTypes",
    "check_complete",
    "default_ssl_context",
    "exception_chain",
    "get_transport",
    "is_loopback_host",
    "make_headers",
    "map_backend_error",
    "map_transport_error",
    "read_body",
    "read_capped",
    "read_chunks",
    "register_transport",
    "resolve_transport",
    "ssl_context_for",
]
