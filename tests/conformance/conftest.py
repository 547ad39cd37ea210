"""Fixtures of the transport conformance suite: the transport under test (one
parameter per backend), the scripted servers, and a throwaway TLS CA."""

import shutil
import ssl
from pathlib import Path
from typing import Any, Iterator, List, Tuple

import pytest

from oculus_lite.transport import Request, Response

from ._server import ScriptedServer, make_certificates
from .backends import BACKENDS, NAMES, Backend


@pytest.fixture(params=BACKENDS, ids=NAMES)
def backend(request: Any) -> Iterator[Backend]:
    made = request.param()
    yield made
    made.shutdown()


class Harness:
    """``h.make(**kw)`` builds a transport (closed after the test); ``h.send(t, req)``."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.made: List[Any] = []

    def make(self, **kwargs: Any) -> Any:
        transport = self.backend.make(**kwargs)
        self.made.append(transport)
        return transport

    def send(self, transport: Any, request: Request) -> Response:
        return self.backend.send(transport, request)

    def get(self, transport: Any, url: str, timeout: float = 10.0) -> Response:
        return self.send(transport, Request("GET", url, timeout=timeout))


@pytest.fixture
def harness(backend: Backend) -> Iterator[Harness]:
    h = Harness(backend)
    yield h
    for transport in h.made:
        backend.close(transport)


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as srv:
        yield srv


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> Tuple[Path, Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl CLI is needed to make a throwaway CA")
    return make_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def tls_server(tls_files: Tuple[Path, Path, Path]) -> Iterator[ScriptedServer]:
    _, cert, key = tls_files
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    with ScriptedServer(tls=ctx) as srv:
        yield srv


@pytest.fixture
def ca_file(tls_files: Tuple[Path, Path, Path]) -> str:
    return str(tls_files[0])
