"""oculus_lite transport for Pyodide (Python on WebAssembly, in a browser or Node.js):
there are no sockets there, so requests go through the JavaScript ``fetch``.
Async only: use ``aget_token`` / ``AsyncPermissionClient``. Same contract as the
core transports: redirects not followed, bodies capped while streaming, failures
and timeouts mapped to ``NetworkError``; TLS is the JavaScript runtime's (always
verified against its trust store: ``verify`` cannot be changed here).

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
    Request,
    Response,
    map_transport_error,
    read_capped,
)

__all__ = ["PyodideTransport"]
__version__ = "0.1.0"


class PyodideTransport:
    """Natively async transport on the JavaScript ``fetch`` (Pyodide only).

    Args:
        max_response_bytes: larger bodies raise ``ResponseTooLargeError``.
    """

    def __init__(self, *, max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES) -> None:
        if not isinstance(max_response_bytes, int) or max_response_bytes <= 0:
            raise ConfigurationError("max_response_bytes must be a positive int")
        self._max = max_response_bytes

    def __repr__(self) -> str:
        return "PyodideTransport()"

    def request(self, request: Request) -> Response:
        raise ConfigurationError(
            "PyodideTransport is async only (Pyodide cannot block on fetch): use aget_token / "
            "AsyncPermissionClient"
        )

    def close(self) -> None:
        pass

    async def arequest(self, request: Request) -> Response:
        controller = js.AbortController.new()
        timer = js.setTimeout(create_once_callable(lambda: controller.abort()), int(request.timeout * 1000))
        init: Any = {
            "method": request.method,
            "headers": [list(pair) for pair in request.headers],
            "redirect": "manual",  # never follow: a 3xx comes back to the client
            "signal": controller.signal,
        }
        if request.body or request.method in ("POST", "PUT", "PATCH"):
            init["body"] = to_js(request.body)
        where = "{} {}".format(request.method, request.url.split("?", 1)[0])
        try:
            try:
                resp = await js.fetch(request.url, to_js(init, dict_converter=js.Object.fromEntries))
                if resp.type == "opaqueredirect":  # browsers hide a redirect's status and headers
                    return Response(300, {}, b"")
                headers: Dict[str, str] = {}
                for key, value in resp.headers.entries():  # fetch already joins repeats with ", "
                    headers[str(key).lower()] = str(value)
                buf = bytearray()
                if resp.body is not None:
                    reader = resp.body.getReader()
                    while len(buf) <= self._max:
                        chunk = await reader.read()
                        if chunk.done:
                            break
                        buf += chunk.value.to_bytes()
                    else:
                        await reader.cancel()
            finally:
                js.clearTimeout(timer)
        except JsException as exc:
            if controller.signal.aborted:
                raise NetworkTimeoutError("{} timed out after {:g} s".format(where, request.timeout)) from exc
            raise NetworkError("{} failed: {}".format(where, getattr(exc, "name", "fetch error"))) from exc
        except (OSError, ValueError) as exc:
            raise map_transport_error(exc, request) from exc
        return Response(int(resp.status), headers, read_capped(lambda n: bytes(buf[:n]), self._max, request))

    async def aclose(self) -> None:
        pass
