"""Every transport the conformance suite runs against, and how to drive it.

Core transports always run. A plugin runs when its package and backend import;
otherwise ``pytest.importorskip`` reports the test as SKIPPED naming the package.
The natively async httpx transport is driven on one event loop in a background
thread, so 16 caller threads really share one loop and one async client.
"""

import asyncio
import re
import sys
import threading
import types
from pathlib import Path
from typing import Any, Callable, List, Optional

import pytest

from oculus_lite.transport import Request, Response

_ROOT = Path(__file__).resolve().parents[2]
_TRANSPORTS = _ROOT / "transports"
DOCS = _ROOT / "docs" / "transports.md"
# Plugin source dirs go *last* on sys.path: an installed plugin (tox envs) always wins.
for _plugin in sorted(_TRANSPORTS.glob("oculus_lite_*")):
    if str(_plugin) not in sys.path:
        sys.path.append(str(_plugin))


class _LoopThread:
    """One event loop running in a daemon thread; ``run(coro)`` from any thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Any, timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        # as asyncio.run does: finish async generators a caller broke out of (httpx's
        # nested body iterators close in a chain of tasks) before the loop goes away
        self.run(self.loop.shutdown_asyncgens())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


class Backend:
    """One transport under test: ``make(**kw)``, ``send(t, request)``, ``close(t)``."""

    name = ""
    keep_alive = True
    is_async = False
    resends_when_safe = False  # resends a resend-safe request once after the keep-alive race
    env_proxies = True  # reads HTTP(S)_PROXY / NO_PROXY from the environment

    def factory(self) -> Callable[..., Any]:
        raise NotImplementedError

    def make(self, **kwargs: Any) -> Any:
        return self.factory()(**kwargs)

    def send(self, transport: Any, request: Request) -> Response:
        response: Response = transport.request(request)
        return response

    def close(self, transport: Any) -> None:
        transport.close()

    def shutdown(self) -> None:
        """After every transport of a test is closed."""

    def __repr__(self) -> str:
        return self.name


class UrllibBackend(Backend):
    name = "urllib"
    resends_when_safe = True

    def factory(self) -> Callable[..., Any]:
        from oculus_lite.transport import UrllibTransport

        return UrllibTransport


class RequestsBackend(Backend):
    name = "requests"

    def factory(self) -> Callable[..., Any]:
        pytest.importorskip("requests", reason="requests is not installed (pip install oculus-lite-requests)")
        module = pytest.importorskip("oculus_lite_requests")
        return module.RequestsTransport  # type: ignore[no-any-return]


class HttpxBackend(Backend):
    name = "httpx"

    def factory(self) -> Callable[..., Any]:
        pytest.importorskip("httpx", reason="httpx is not installed (pip install oculus-lite-httpx)")
        module = pytest.importorskip("oculus_lite_httpx")
        return module.HttpxTransport  # type: ignore[no-any-return]


class HttpxAsyncBackend(HttpxBackend):
    name = "httpx-async"
    is_async = True

    def __init__(self) -> None:
        self._loop: Optional[_LoopThread] = None

    def make(self, **kwargs: Any) -> Any:
        transport = super().make(**kwargs)
        if self._loop is None:
            self._loop = _LoopThread()
        return transport

    def send(self, transport: Any, request: Request) -> Response:
        response: Response = self.run(transport.arequest(request))
        return response

    def run(self, coro: Any) -> Any:
        """Run a coroutine on this backend's loop (the one its transports live on)."""
        assert self._loop is not None
        return self._loop.run(coro)

    def close(self, transport: Any) -> None:
        assert self._loop is not None
        self._loop.run(transport.aclose())

    def shutdown(self) -> None:
        if self._loop is not None:
            self._loop.stop()
            self._loop = None


class Urllib3Backend(Backend):
    name = "urllib3"
    env_proxies = False

    def factory(self) -> Callable[..., Any]:
        pytest.importorskip("urllib3", reason="urllib3 is not installed (pip install oculus-lite-urllib3)")
        module = pytest.importorskip("oculus_lite_urllib3")
        return module.Urllib3Transport  # type: ignore[no-any-return]


def docs_blocks() -> List[str]:
    """The Python blocks of docs/transports.md, in order."""
    return re.findall(r"^```python\n(.*?)^```$", DOCS.read_text(encoding="utf-8"), re.S | re.M)


_docs_module: Optional[types.ModuleType] = None


def docs_example() -> types.ModuleType:
    """The guide's example transport, run as written (once per process)."""
    global _docs_module
    if _docs_module is None:
        source = next(b for b in docs_blocks() if "class OneShotTransport" in b)
        module = types.ModuleType("oculus_lite_docs_example")
        exec(compile(source, str(DOCS), "exec"), module.__dict__)
        _docs_module = module
    return _docs_module


class DocsExampleBackend(Backend):
    """The example in docs/transports.md: held to the same suite as the real ones."""

    name = "docs-example"
    keep_alive = False
    env_proxies = False

    def factory(self) -> Callable[..., Any]:
        factory: Callable[..., Any] = docs_example().OneShotTransport
        return factory


BACKENDS = [
    UrllibBackend,
    RequestsBackend,
    HttpxBackend,
    HttpxAsyncBackend,
    Urllib3Backend,
    DocsExampleBackend,
]
NAMES = [b.name for b in BACKENDS]
