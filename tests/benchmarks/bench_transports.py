"""Cold token fetch latency per transport, on loopback against the emulator.

"Cold" means a cache miss: every call asks for a scope not fetched before, so
each one is a full POST /oauth/token round trip through the transport (token
signing in the emulator included, the same for every row). The emulator runs in
its own process so the client's GIL is not shared with the server. Transports
take turns in rounds, so machine noise spreads over all rows alike.

    python tests/benchmarks/bench_transports.py [--fetches 300] [--rounds 6]

Rows: urllib (default), pooled, and, when importable, the requests/httpx/urllib3
plugins, httpx natively async (aget_token), and the official SDK (goantiai-sdk,
``import oculus_sdk``; install it only in a throwaway benchmark venv).
"""

import argparse
import asyncio
import importlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parents[2]
# the source tree and source plugins go last: installed copies win
for _path in [ROOT] + sorted((ROOT / "transports").glob("oculus_lite_*")):
    if str(_path) not in sys.path:
        sys.path.append(str(_path))

_SERVER = r"""
import json, sys
from oculus_lite.emulator import Emulator
with Emulator() as emu:
    emu.add_agent("bench-agent", "bench-secret-0123456789", scopes=["bench:*"], token_ttl=3600)
    print(json.dumps({"url": emu.url}), flush=True)
    sys.stdin.read()
"""

Fetch = Callable[[str], str]


def _start_emulator() -> Tuple[subprocess.Popen, str]:  # type: ignore[type-arg]
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", _SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True
    )
    assert proc.stdout is not None
    url: str = json.loads(proc.stdout.readline())["url"]
    return proc, url


class _Row:
    def __init__(self, name: str, make: Callable[[], Tuple[Fetch, Callable[[], None]]]) -> None:
        self.name, self.make = name, make
        self.samples: List[float] = []
        self.fetch: Optional[Fetch] = None
        self.close: Optional[Callable[[], None]] = None


def _rows(url: str) -> List[_Row]:
    from oculus_lite import Client

    def client_row(transport_factory: Callable[[], Any]) -> Callable[[], Tuple[Fetch, Callable[[], None]]]:
        def make() -> Tuple[Fetch, Callable[[], None]]:
            client = Client(
                "bench-agent",
                "bench-secret-0123456789",
                base_url=url,
                transport=transport_factory(),
                revocation_interval=None,
                cache_size=100_000,
            )
            return client.get_token, client.stop

        return make

    rows = [
        _Row("urllib (default)", client_row(lambda: "urllib")),
        _Row("pooled", client_row(lambda: "pooled")),
    ]
    requests_plugin = _optional("oculus_lite_requests", "requests plugin (pip install oculus-lite-requests)")
    if requests_plugin is not None:
        rows.append(_Row("requests", client_row(requests_plugin.RequestsTransport)))
    httpx_plugin = _optional("oculus_lite_httpx", "httpx plugin (pip install oculus-lite-httpx)")
    if httpx_plugin is not None:
        HttpxTransport = httpx_plugin.HttpxTransport
        rows.append(_Row("httpx (sync)", client_row(HttpxTransport)))

        def make_async() -> Tuple[Fetch, Callable[[], None]]:
            loop = asyncio.new_event_loop()
            client = Client(
                "bench-agent",
                "bench-secret-0123456789",
                base_url=url,
                transport=HttpxTransport(),
                revocation_interval=None,
                cache_size=100_000,
            )

            def fetch(scope: str) -> str:
                token: str = loop.run_until_complete(client.aget_token(scope))
                return token

            def close() -> None:
                loop.run_until_complete(client.aclose())
                loop.close()

            return fetch, close

        rows.append(_Row("httpx (async, native)", make_async))
    urllib3_plugin = _optional("oculus_lite_urllib3", "urllib3 plugin (pip install oculus-lite-urllib3)")
    if urllib3_plugin is not None:
        rows.append(_Row("urllib3", client_row(urllib3_plugin.Urllib3Transport)))
    oculus_sdk = _optional("oculus_sdk", "official SDK (goantiai-sdk is not installed here)")
    if oculus_sdk is not None:

        def make_sdk() -> Tuple[Fetch, Callable[[], None]]:
            sdk = oculus_sdk.OculusClient("bench-agent", "bench-secret-0123456789", base_url=url)
            return sdk.get_token, sdk.stop

        rows.append(_Row("goantiai-sdk {} (official)".format(_version("goantiai-sdk")), make_sdk))
    return rows


def _optional(module: str, what: str) -> Any:
    """The module, or None (and a note) when it or its backend is not installed."""
    try:
        return importlib.import_module(module)
    except ImportError:
        print("skipped: " + what)
        return None


def _raw_rows(url: str) -> List[Tuple[str, Any, bool]]:
    """(name, transport, async) for the transport-only round trip."""
    from oculus_lite._http._pooled import PooledTransport
    from oculus_lite.transport import UrllibTransport

    rows: List[Tuple[str, Any, bool]] = [
        ("urllib (default)", UrllibTransport(), False),
        ("pooled", PooledTransport(), False),
    ]
    for module, cls, name in (
        ("oculus_lite_requests", "RequestsTransport", "requests"),
        ("oculus_lite_httpx", "HttpxTransport", "httpx (sync)"),
        ("oculus_lite_httpx", "HttpxTransport", "httpx (async, native)"),
        ("oculus_lite_urllib3", "Urllib3Transport", "urllib3"),
    ):
        try:
            factory = getattr(importlib.import_module(module), cls)
        except ImportError:
            continue
        rows.append((name, factory(), "async" in name))
    return rows


def _raw(url: str, count: int) -> None:
    from oculus_lite.transport import Request

    request = Request("GET", url + "/.well-known/jwks.json", timeout=10)
    loop = asyncio.new_event_loop()
    rows = _raw_rows(url)
    samples: Dict[str, List[float]] = {name: [] for name, _, _ in rows}
    for _ in range(5):
        for name, transport, is_async in rows:
            for _ in range(max(1, count // 5) + (1 if not samples[name] else 0)):
                start = time.perf_counter()
                if is_async:
                    response = loop.run_until_complete(transport.arequest(request))
                else:
                    response = transport.request(request)
                samples[name].append(time.perf_counter() - start)
                assert response.status == 200
    for name, transport, is_async in rows:
        samples[name].pop(0)  # the first request opened the connection
        if is_async:
            loop.run_until_complete(transport.aclose())
        else:
            transport.close()
    loop.close()
    base = statistics.median(samples[rows[0][0]])
    print()
    print(
        "Transport round trip only (GET /.well-known/jwks.json, no signing), {} requests per row".format(
            len(samples[rows[0][0]])
        )
    )
    print("| transport | median ms | p90 ms | vs urllib |")
    print("|---|---:|---:|---:|")
    for name, _, _ in rows:
        xs = sorted(samples[name])
        med = statistics.median(xs)
        print(
            "| {} | {:.3f} | {:.3f} | {:.2f}x |".format(
                name, med * 1e3, xs[int(len(xs) * 0.9) - 1] * 1e3, med / base
            )
        )


def _version(dist: str) -> str:
    try:
        from importlib import metadata

        return metadata.version(dist)
    except Exception:
        return "?"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fetches", type=int, default=300, help="distinct scopes per transport")
    parser.add_argument("--rounds", type=int, default=6, help="turns per transport")
    parser.add_argument("--raw", type=int, default=1000, help="round trips per transport (0: skip)")
    args = parser.parse_args(argv)
    proc, url = _start_emulator()
    try:
        rows = _rows(url)
        for row in rows:
            row.fetch, row.close = row.make()
            row.fetch("bench:warmup")  # imports, TLS context, first connection: not measured
        per_round = max(1, args.fetches // args.rounds)
        counter = 0
        for _ in range(args.rounds):
            for row in rows:
                assert row.fetch is not None
                for _ in range(per_round):
                    counter += 1
                    scope = "bench:s{}".format(counter)
                    start = time.perf_counter()
                    token = row.fetch(scope)
                    row.samples.append(time.perf_counter() - start)
                    assert token.count(".") == 2
        for row in rows:
            if row.close is not None:
                row.close()
        _table(rows)
        if args.raw:
            _raw(url, args.raw)
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(10)
    return 0


def _table(rows: List[_Row]) -> None:
    base = statistics.median(rows[0].samples)
    print()
    print(
        "Cold token fetch (cache miss, POST /oauth/token on loopback), {} fetches per row, Python {}".format(
            len(rows[0].samples), sys.version.split()[0]
        )
    )
    print("| transport | median ms | p90 ms | vs urllib |")
    print("|---|---:|---:|---:|")
    for row in rows:
        med = statistics.median(row.samples)
        p90 = sorted(row.samples)[int(len(row.samples) * 0.9) - 1]
        print("| {} | {:.2f} | {:.2f} | {:.2f}x |".format(row.name, med * 1e3, p90 * 1e3, med / base))


if __name__ == "__main__":
    raise SystemExit(main())
