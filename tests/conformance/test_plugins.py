"""Plugin packaging and ownership rules: entry points, the missing-backend message,
native async for httpx, and that a session/client/pool you pass in stays yours."""

import ast
import asyncio
import os
import re
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any, List, Tuple

import pytest

from oculus_lite import Client
from oculus_lite.emulator import Emulator
from oculus_lite.exceptions import ConfigurationError
from oculus_lite.transport import Transport, get_transport

from . import backends  # noqa: F401  (puts the plugin source dirs on sys.path)

PLUGINS = {
    "requests": ("oculus_lite_requests", "RequestsTransport"),
    "httpx": ("oculus_lite_httpx", "HttpxTransport"),
    "urllib3": ("oculus_lite_urllib3", "Urllib3Transport"),
}
ROOT = Path(__file__).resolve().parents[2]


def _installed(dist: str) -> bool:
    from importlib import metadata

    try:
        metadata.distribution(dist)
    except metadata.PackageNotFoundError:
        return False
    return True


@pytest.mark.parametrize("name", sorted(PLUGINS))
def test_entry_point_resolves_the_plugin(name: str) -> None:
    pytest.importorskip(name)
    if not _installed("oculus-lite-" + name):
        pytest.skip("oculus-lite-{} is not installed, so its entry point is not registered".format(name))
    module, cls = PLUGINS[name]
    transport = get_transport(name)
    assert type(transport).__name__ == cls and type(transport).__module__ == module
    assert isinstance(transport, Transport)
    transport.close()


@pytest.mark.parametrize("name", sorted(PLUGINS))
def test_missing_backend_names_the_package_to_install(name: str) -> None:
    module = PLUGINS[name][0]
    code = (
        "import sys; sys.modules[{!r}] = None\ntry:\n import {}\nexcept ImportError as e:\n print(e)".format(
            name, module
        )
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "transports" / module), str(ROOT)])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert "pip install oculus-lite-{}".format(name) in out.stdout, out.stdout + out.stderr


def test_httpx_aget_token_is_natively_async() -> None:
    pytest.importorskip("httpx")
    module = pytest.importorskip("oculus_lite_httpx")

    class NoSync(module.HttpxTransport):  # type: ignore[name-defined,misc]
        def request(self, request: Any) -> Any:
            raise AssertionError("the blocking path was used from async code")

    async def run(url: str, cid: str, secret: str) -> str:
        async with Client(cid, secret, base_url=url, transport=NoSync(), revocation_interval=None) as c:
            token: str = await c.aget_token("db:read")
            return token

    with Emulator() as emu:
        token = asyncio.run(run(emu.url, emu.demo_client_id, emu.demo_client_secret))
        assert token.count(".") == 2
        assert emu.stats()["token_requests"] == 1


def test_httpx_leaves_your_clients_open() -> None:
    httpx = pytest.importorskip("httpx")
    module = pytest.importorskip("oculus_lite_httpx")
    mine, mine_async = httpx.Client(), httpx.AsyncClient()
    transport = module.HttpxTransport(client=mine, async_client=mine_async)
    asyncio.run(transport.aclose())
    assert not mine.is_closed and not mine_async.is_closed
    mine.close()
    asyncio.run(mine_async.aclose())


def test_requests_leaves_your_session_open_and_refuses_an_ssl_context() -> None:
    requests = pytest.importorskip("requests")
    module = pytest.importorskip("oculus_lite_requests")
    closed = []

    class Session(requests.Session):  # type: ignore[misc,name-defined]
        def close(self) -> None:
            closed.append(True)
            super().close()

    mine = Session()
    module.RequestsTransport(session=mine).close()
    assert closed == []
    module.RequestsTransport().close()
    mine.close()
    with pytest.raises(ConfigurationError, match="SSLContext"):
        module.RequestsTransport(verify=ssl.create_default_context())


def test_urllib3_leaves_your_pool_alone(server: Any) -> None:
    urllib3 = pytest.importorskip("urllib3")
    module = pytest.importorskip("oculus_lite_urllib3")
    from oculus_lite.transport import Request

    mine = urllib3.PoolManager()
    transport = module.Urllib3Transport(pool=mine)
    assert transport.request(Request("GET", server.url("/echo"))).status == 200
    transport.close()
    assert len(mine.pools) == 1  # not cleared: it is yours
    mine.clear()


# ----------------------------------------------------------------------------- packaging


PLUGIN_DIRS = sorted((ROOT / "transports").glob("oculus_lite_*"))


def _core_version() -> Tuple[int, ...]:
    text = (ROOT / "oculus_lite" / "_version.py").read_text()
    found = re.search(r'__version__ = "([0-9.]+)"', text)
    assert found is not None
    return tuple(int(part) for part in found.group(1).split("."))


def _version(text: str) -> Tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


@pytest.mark.parametrize("plugin", PLUGIN_DIRS, ids=[p.name for p in PLUGIN_DIRS])
def test_a_plugin_imports_only_the_public_core(plugin: Path) -> None:
    for source in plugin.rglob("*.py"):
        tree = ast.parse(source.read_text(), str(source))
        for node in ast.walk(tree):
            names: List[str] = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [node.module + "." + a.name for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            private = [
                n for n in names if n.startswith("oculus_lite") and "._" in n.split("oculus_lite", 1)[1]
            ]
            assert private == [], "{}:{} imports {}".format(source, getattr(node, "lineno", "?"), private)


@pytest.mark.parametrize("plugin", PLUGIN_DIRS, ids=[p.name for p in PLUGIN_DIRS])
def test_a_plugin_writes_its_version_once_and_bounds_the_core_it_works_with(plugin: Path) -> None:
    pyproject = (plugin / "pyproject.toml").read_text()
    package = plugin.name
    assert re.search(r'^dynamic = \["version"\]$', pyproject, re.M)
    assert 'version = { attr = "' + package + '.__version__" }' in pyproject
    assert not re.search(r"^version = \"", pyproject, re.M)  # no literal version in [project]
    source = (plugin / package / "__init__.py").read_text()
    assert re.search(r'^__version__ = "[0-9]+\.[0-9]+\.[0-9]+"$', source, re.M)
    core = re.search(r'"oculus-lite>=([0-9.]+),<([0-9.]+)"', pyproject)
    assert core is not None, "{} must declare oculus-lite>=X,<Y".format(plugin.name)
    low, high = _version(core.group(1)), _version(core.group(2))
    assert low <= _core_version() < high, "the core in this tree is outside the range {} declares".format(
        plugin.name
    )
