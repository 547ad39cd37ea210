"""oculus_lite inside Pyodide (CPython on WebAssembly) under Node.js, talking to the
emulator on loopback through the ``pyodide`` transport (JavaScript ``fetch``).

Needs ``node`` and the npm ``pyodide`` package; ``OCULUS_PYODIDE_DIR`` names the
folder holding ``pyodide.mjs`` (the ``pyodide`` tox env installs it). Otherwise the
test is reported SKIPPED saying so. One Node process runs every check (Pyodide
takes seconds to boot), and prints one JSON line the test asserts on.
"""

import contextlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Dict, List

import pytest

from oculus_lite.emulator import Emulator

from ._server import ScriptedServer, unused_port

ROOT = Path(__file__).resolve().parents[2]
RUNNER = Path(__file__).with_name("pyodide_runner.mjs")

_CODE = """
import json
from oculus_lite import AsyncPermissionClient, Client
from oculus_lite.exceptions import (
    ConfigurationError, InvalidResponseError, NetworkError, NetworkTimeoutError, ResponseTooLargeError)
from oculus_lite_pyodide import PyodideTransport

cfg = json.loads({cfg!r})
out = {{}}

def client(url, **kw):
    kw.setdefault("revocation_interval", None)
    return Client(cfg["id"], cfg["secret"], base_url=url, transport=PyodideTransport(), **kw)

async def outcome(coro):
    try:
        value = await coro
        return "ok"
    except Exception as exc:
        return type(exc).__name__

c = client(cfg["urls"]["ok"])
first = await c.aget_token("db:read")
out["token_segments"] = first.count(".")
out["cached"] = first == await c.aget_token("db:read")
await c.aclose()
try:
    client(cfg["urls"]["ok"]).get_token("db:read")
except ConfigurationError as exc:
    out["sync"] = "ConfigurationError" if "aget_token" in str(exc) else str(exc)
for case in ("redirect", "oversize", "refused"):
    out[case] = await outcome(client(cfg["urls"][case], retries=0).aget_token("db:read"))
out["slow"] = await outcome(client(cfg["urls"]["slow"], retries=0, timeout=0.5).aget_token("db:read"))
p = AsyncPermissionClient(api_key=cfg["api_key"], base_url=cfg["urls"]["ok"], transport=PyodideTransport())
perm = await p.request_permission("send_email", {{"to": "a@example.com"}})
out["permission"] = perm.status.value
out["verified"] = (await p.verify_token(perm.id, perm.token)).valid
out["used"] = (await p.use_token(perm.id, perm.token)).success
await p.aclose()
print("RESULT " + json.dumps(out))
"""


def _pyodide_dir() -> Path:
    if shutil.which("node") is None:
        pytest.skip("Pyodide: node is not installed")
    found = os.environ.get("OCULUS_PYODIDE_DIR")
    if not found or not (Path(found) / "pyodide.mjs").is_file():
        pytest.skip(
            "Pyodide: set OCULUS_PYODIDE_DIR to a folder holding pyodide.mjs "
            "(npm install --prefix DIR pyodide; DIR/node_modules/pyodide), or run tox -e pyodide"
        )
    return Path(found)


def test_token_and_permission_flows_inside_pyodide() -> None:
    pyodide_dir = _pyodide_dir()
    token = "/oauth/token"
    with contextlib.ExitStack() as stack:
        elsewhere = stack.enter_context(ScriptedServer())
        faults: Dict[str, List[Dict[str, Any]]] = {
            "ok": [],
            "redirect": [
                {"path": token, "kind": "status", "status": 307, "location": elsewhere.url("/echo")}
            ],
            "oversize": [{"path": token, "kind": "oversize"}],
            "slow": [{"path": token, "kind": "delay", "delay_ms": 3000}],
        }
        urls = {"refused": "http://127.0.0.1:{}".format(unused_port())}
        emulators = {}
        for case, rules in faults.items():
            emu = stack.enter_context(Emulator())
            emu.add_agent("pyodide-agent", "pyodide-S3CRET-0123", scopes=["db:*"])
            emu.set_faults(rules)
            urls[case], emulators[case] = emu.url, emu
        emulators["ok"].otp.add_policy(action="auto_approve")
        cfg = {
            "urls": urls,
            "id": "pyodide-agent",
            "secret": "pyodide-S3CRET-0123",
            "api_key": emulators["ok"].otp.demo_api_key,
        }
        out = subprocess.run(
            ["node", str(RUNNER), str(pyodide_dir), str(ROOT), _CODE.format(cfg=json.dumps(cfg))],
            capture_output=True,
            text=True,
            timeout=180,
        )
        lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
        assert out.returncode == 0 and lines, out.stdout[-2000:] + out.stderr[-4000:]
        result = json.loads(lines[-1][len("RESULT ") :])
        assert emulators["ok"].stats()["token_requests"] == 1
        assert elsewhere.connections == 0  # the redirect was not followed
    assert result["token_segments"] == 2
    assert result["cached"] is True
    assert result["sync"] == "ConfigurationError"
    assert result["redirect"] == "InvalidResponseError"
    assert result["oversize"] == "ResponseTooLargeError"
    assert result["slow"] == "NetworkTimeoutError"
    assert result["refused"] == "NetworkError"
    assert (result["permission"], result["verified"], result["used"]) == ("approved", True, True)
