"""oculus_lite transport for Pyodide (Python on WebAssembly, in a browser or Node.js):
there are no sockets there, so requests go through the JavaScript ``fetch``.
Async only: use ``aget_token`` / ``AsyncPermissionClient``. Same contract as the
core transports: redirects not followed, one deadline per call (an ``AbortController``
armed for ``Request.timeout`` covers the headers and the body), bodies capped while
streaming, failures mapped to ``NetworkError``; TLS and decompression are the
JavaScript runtime's (TLS always verified against its trust store: ``verify`` cannot
be changed here; the cap counts the decompressed chunks ``fetch`` hands over).

    from oculus_lite_pyodide import PyodideTransport
    token = await Client(..., transport=PyodideTransport()).aget_token("db:read")
"""

from typing import Any, Dict

try:
    import js
    from pyodide.ffi import JsException, create_once_callable, to_js
except ImportError as _exc:  # pragma: no cover - only importable inside Pyodide
    raise ModuleNotFoundError(
        "oculus_lite_pyodide runs only inside Pyodide (it needs the 'js' and 'pyodide' modules)",
        name="js",
    ) from _exc

from oculus_lite.exceptions import ConfigurationError, NetworkError, NetworkTimeoutError
from oculus_lite.transport import (
    DEFAULT_MAX_RESPONSE_BYTES,
    BodyReader,
    Request,
    Response,
    TransportBase,
    VerifyTypes,
    body_for,
    mapped_errors,
)

__all__ = ["PyodideTransport"]
__version__ = "0.2.0"


class PyodideTransport(TransportBase):
    """Natively async transport on the JavaScript ``fetch`` (Pyodide only).

    Args:
        verify: only ``True``: TLS is the JavaScript runtime's.
        max_response_bytes: larger bodies raise ``ResponseTooLargeError``.
    """

    def __init__(
        self, *, verify: VerifyTypes = True, max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    ) -> None:
        super().__init__(max_response_bytes=max_response_bytes)
        if verify is not True:
            raise ConfigurationError(
                "PyodideTransport cannot change TLS verification (the JavaScript runtime verifies "
                "against its own trust store): leave verify=True"
            )

    def __repr__(self) -> str:
        return "PyodideTransport()"

    def request(self, request: Request) -> Response:
        raise ConfigurationError(
            "PyodideTransport is async only (Pyodide cannot block on fetch): use aget_token / "
            "AsyncPermissionClient"
        )

    async def arequest(self, request: Request) -> Response:
        controller = js.AbortController.new()
        timer = js.setTimeout(create_once_callable(lambda: controller.abort()), int(request.timeout * 1000))
        init: Any = {
            "method": request.method,
            "headers": [list(pair) for pair in request.headers],
            "redirect": "manual",  # never follow: a 3xx comes back to the client
            "signal": controller.signal,
        }
        body = body_for(request)
        if body is not None:
            init["body"] = to_js(body)
        where = "{} {}".format(request.method, request.url.split("?", 1)[0])
        try:
            with mapped_errors(request):
                try:
                    resp = await js.fetch(request.url, to_js(init, dict_converter=js.Object.fromEntries))
                    if resp.type == "opaqueredirect":  # browsers hide a redirect's status and headers
                        return Response(300, {}, b"")
                    headers: Dict[str, str] = {}
                    for key, value in resp.headers.entries():  # fetch already joins repeats with ", "
                        headers[str(key).lower()] = str(value)
                    reader = BodyReader(self.max_response_bytes, request)  # fetch has decompressed
                    if resp.body is not None:
                        stream = resp.body.getReader()
                        try:
                            while True:
                                chunk = await stream.read()
                                if chunk.done:
                                    break
                                reader.feed(chunk.value.to_bytes())
                        except BaseException:
                            await stream.cancel()
                            raise
                    return Response(int(resp.status), headers, reader.finish())
                finally:
                    js.clearTimeout(timer)
        except JsException as exc:
            if controller.signal.aborted:
                raise NetworkTimeoutError("{} timed out after {:g} s".format(where, request.timeout)) from exc
            raise NetworkError("{} failed: {}".format(where, getattr(exc, "name", "fetch error"))) from exc

    async def aclose(self) -> None:
        """Nothing to release: ``fetch`` keeps no connection of ours."""
