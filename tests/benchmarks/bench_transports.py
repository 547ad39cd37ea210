"""Cold token fetch per transport over loopback HTTP and HTTPS, side by side in one run
with the keep-alive ``http.client`` floor and the official SDK: figures, no verdicts.

"Cold" means a cache miss: every call asks for a scope not fetched before, so each one
is a full ``POST /oauth/token`` round trip, answered with a canned signed token (the
emulator's pure-Python signing would otherwise dominate every row). The emulator runs
in its own process, so the client's GIL is not
shared with the server; HTTPS is the emulator's socket wrapped with a throwaway
certificate (made with the openssl CLI). Rows take turns in rounds, so machine noise
spreads over all of them alike.

Rows, per scheme:
- ``http.client keep-alive (floor)``: one kept connection, the form POST written by
  hand, the JSON parsed: the least any client can do.
- ``UrllibTransport only``: the default transport without the client (so the client's
  own cost per miss is the default row minus this one).
- ``oculus_lite default``: ``Client(...).get_token(new scope)`` on the default transport.
- the requests/httpx/urllib3 plugins and httpx natively async, when importable.
- the official SDK (goantiai-sdk, ``import oculus_sdk``) when installed.

    python tests/benchmarks/bench_transports.py [--fetches 1200] [--rounds 12] [--scheme both]
    python -m tox run -e bench-transports     # installs the plugins and goantiai-sdk
"""

import argparse
import asyncio
import contextlib
import http.client
import importlib
import json
import os
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple
from urllib.parse import quote, urlsplit

ROOT = Path(__file__).resolve().parents[2]
# the source tree and source plugins go last: installed copies win
for _path in [ROOT] + sorted((ROOT / "transports").glob("oculus_lite_*")):
    if str(_path) not in sys.path:
        sys.path.append(str(_path))

CLIENT_ID, SECRET = "bench-agent", "bench-secret-0123456789"

# The emulator signs each token with pure-Python RSA (milliseconds), which would swamp
# what is measured here: as in bench_compare.py, /oauth/token answers with one canned,
# really signed token through a fault rule. The emulator has no TLS option: the
# benchmark wraps its listening socket (a private attribute, acceptable in a benchmark),
# so the handler threads do the TLS handshakes.
_SERVER = r"""
import json, ssl, sys
from oculus_lite.emulator import Emulator
plain, secure = Emulator().start(), Emulator().start()
for emu in (plain, secure):
    emu.add_agent(sys.argv[3], sys.argv[4], scopes=["bench:*"], token_ttl=3600)
    body = {"access_token": emu.issue_token(), "expires_in": 3600, "token_type": "Bearer", "scope": "bench:x"}
    emu.set_faults([{"path": "/oauth/token", "method": "POST", "kind": "status", "status": 200, "body": body}])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
server = secure._server
server.socket = ctx.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
print(json.dumps({"http": plain.url, "https": secure.url.replace("http://", "https://")}), flush=True)
sys.stdin.read()
"""

Fetch = Callable[[str], str]
Make = Callable[[str, Optional[str]], Tuple[Fetch, Callable[[], None]]]


def _certificates(directory: Path) -> Tuple[Path, Path, Path]:
    sys.path.insert(0, str(ROOT / "tests"))
    try:
        server = importlib.import_module("conformance._server")  # the conformance suite's throwaway CA
    finally:
        sys.path.pop(0)
    made: Tuple[Path, Path, Path] = server.make_certificates(directory)
    return made


@contextlib.contextmanager
def _emulators(cert: Path, key: Path) -> Iterator[Dict[str, str]]:
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", _SERVER, str(cert), str(key), CLIENT_ID, SECRET],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    assert proc.stdout is not None and proc.stdin is not None
    try:
        yield json.loads(proc.stdout.readline())
    finally:
        proc.stdin.close()
        proc.wait(10)


# ----------------------------------------------------------------------------- rows


def _floor(url: str, ca: Optional[str]) -> Tuple[Fetch, Callable[[], None]]:
    parts = urlsplit(url)
    conn: http.client.HTTPConnection
    if ca is not None:
        conn = http.client.HTTPSConnection(
            parts.hostname or "", parts.port, context=ssl.create_default_context(cafile=ca)
        )
    else:
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port)
    head = "grant_type=client_credentials&client_id={}&client_secret={}&scope=".format(
        quote(CLIENT_ID), quote(SECRET)
    )
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}

    def fetch(scope: str) -> str:
        conn.request("POST", "/oauth/token", (head + quote(scope)).encode(), headers)
        token: str = json.loads(conn.getresponse().read())["access_token"]
        return token

    return fetch, conn.close


def _transport_only(url: str, ca: Optional[str]) -> Tuple[Fetch, Callable[[], None]]:
    from oculus_lite.transport import Request, UrllibTransport

    transport = UrllibTransport(verify=ca or True)
    head = "grant_type=client_credentials&client_id={}&client_secret={}&scope=".format(
        quote(CLIENT_ID), quote(SECRET)
    )
    headers = (("Content-Type", "application/x-www-form-urlencoded"), ("Accept", "application/json"))

    def fetch(scope: str) -> str:
        request = Request("POST", url + "/oauth/token", headers, (head + quote(scope)).encode(), 10.0)
        token: str = json.loads(transport.request(request).body)["access_token"]
        return token

    return fetch, transport.close


def _client(transport: Callable[[Optional[str]], Any]) -> Make:
    def make(url: str, ca: Optional[str]) -> Tuple[Fetch, Callable[[], None]]:
        from oculus_lite import Client

        built = transport(ca)
        kwargs: Dict[str, Any] = {"transport": built}
        if built is None and ca is not None:
            kwargs["verify"] = ca
        client = Client(
            CLIENT_ID, SECRET, base_url=url, revocation_interval=None, cache_size=100_000, **kwargs
        )
        return client.get_token, client.stop

    return make


def _async_client(factory: Callable[[Optional[str]], Any]) -> Make:
    def make(url: str, ca: Optional[str]) -> Tuple[Fetch, Callable[[], None]]:
        from oculus_lite import Client

        loop = asyncio.new_event_loop()
        client = Client(
            CLIENT_ID,
            SECRET,
            base_url=url,
            transport=factory(ca),
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

    return make


def _sdk(module: Any) -> Make:
    def make(url: str, ca: Optional[str]) -> Tuple[Fetch, Callable[[], None]]:
        saved = os.environ.get("SSL_CERT_FILE")
        if ca is not None:
            os.environ["SSL_CERT_FILE"] = ca  # httpx (trust_env) reads it when the client is built
        try:
            sdk = module.OculusClient(client_id=CLIENT_ID, client_secret=SECRET, base_url=url)
        finally:
            if saved is None:
                os.environ.pop("SSL_CERT_FILE", None)
            else:
                os.environ["SSL_CERT_FILE"] = saved
        return sdk.get_token, sdk.stop

    return make


def _optional(module: str, what: str) -> Any:
    """The module, or None (and a note) when it or its backend is not installed."""
    try:
        return importlib.import_module(module)
    except ImportError:
        print("skipped: " + what)
        return None


def _verifying(cls: Any) -> Callable[[Optional[str]], Any]:
    def build(ca: Optional[str]) -> Any:
        return cls(verify=ca or True)

    return build


def _default(ca: Optional[str]) -> None:
    return None  # the client builds its default transport (with verify=ca)


def _rows() -> List[Tuple[str, Make]]:
    rows: List[Tuple[str, Make]] = [
        ("http.client keep-alive (floor)", _floor),
        ("UrllibTransport only (no client)", _transport_only),
        ("oculus_lite default (urllib)", _client(_default)),
    ]
    plugin = _optional("oculus_lite_requests", "requests plugin (pip install oculus-lite-requests)")
    if plugin is not None:
        rows.append(("requests", _client(_verifying(plugin.RequestsTransport))))
    plugin = _optional("oculus_lite_httpx", "httpx plugin (pip install oculus-lite-httpx)")
    if plugin is not None:
        rows.append(("httpx (sync)", _client(_verifying(plugin.HttpxTransport))))
        rows.append(("httpx (async, native)", _async_client(_verifying(plugin.HttpxTransport))))
    plugin = _optional("oculus_lite_urllib3", "urllib3 plugin (pip install oculus-lite-urllib3)")
    if plugin is not None:
        rows.append(("urllib3", _client(_verifying(plugin.Urllib3Transport))))
    sdk = _optional("oculus_sdk", "official SDK (goantiai-sdk is not installed here)")
    if sdk is not None:
        rows.append(("goantiai-sdk {} (official)".format(_version("goantiai-sdk")), _sdk(sdk)))
    return rows


def _version(dist: str) -> str:
    try:
        from importlib import metadata

        return metadata.version(dist)
    except Exception:
        return "?"


# ----------------------------------------------------------------------------- run


Samples = Dict[str, List[List[float]]]  # row -> rounds -> seconds per fetch


def _measure(url: str, ca: Optional[str], fetches: int, rounds: int) -> Samples:
    made = [(name, *make(url, ca)) for name, make in _rows()]
    samples: Samples = {name: [] for name, _, _ in made}
    prefix = "s" if ca else "p"
    for name, fetch, _ in made:
        for i in range(20):  # imports, TLS context, first connection: not measured
            fetch("bench:warm-{}-{}-{}".format(prefix, len(name), i))
    per_round = max(1, fetches // rounds)
    counter = 0
    for _ in range(rounds):
        for name, fetch, _ in made:
            times: List[float] = []
            for _ in range(per_round):
                counter += 1
                scope = "bench:{}{}".format(prefix, counter)
                start = time.perf_counter()
                token = fetch(scope)
                times.append(time.perf_counter() - start)
                assert token.count(".") == 2
            samples[name].append(times)
    for _, _, close in made:
        close()
    return samples


def _ratio(samples: Samples, row: str, base: str) -> float:
    """Median over rounds of (row's median / base's median in that round): rows take turns
    in each round, so a slow spell of a shared machine hits both sides of each ratio."""
    return statistics.median(
        statistics.median(a) / statistics.median(b) for a, b in zip(samples[row], samples[base])
    )


def _table(title: str, samples: Samples) -> None:
    names = list(samples)
    floor = names[0]
    sdk = next((n for n in names if "official" in n), None)
    flat = {name: sorted(x for times in rounds for x in times) for name, rounds in samples.items()}
    print()
    print(
        "{}, {} fetches per row in {} rounds, Python {}, load average {:.1f}".format(
            title, len(flat[floor]), len(samples[floor]), sys.version.split()[0], os.getloadavg()[0]
        )
    )
    print("| row | median µs | p90 µs | vs floor | vs official SDK |")
    print("|---|---:|---:|---:|---:|")
    for name in names:
        xs = flat[name]
        print(
            "| {} | {:.0f} | {:.0f} | {:.2f}x | {} |".format(
                name,
                statistics.median(xs) * 1e6,
                xs[int(len(xs) * 0.9) - 1] * 1e6,
                _ratio(samples, name, floor),
                "{:.2f}x".format(_ratio(samples, name, sdk)) if sdk else "n/a",
            )
        )
    default, bare = "oculus_lite default (urllib)", "UrllibTransport only (no client)"
    client_cost = statistics.median(
        statistics.median(a) - statistics.median(b) for a, b in zip(samples[default], samples[bare])
    )
    print(
        "default: {:.2f}x the floor (goal <= 1.3x){}; the client layer's own cost per miss: {:.0f} µs".format(
            _ratio(samples, default, floor),
            ", {:.2f}x the official SDK (goal <= 0.5x)".format(_ratio(samples, default, sdk)) if sdk else "",
            client_cost * 1e6,
        )
    )


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--fetches", type=int, default=1200, help="distinct scopes per row and scheme")
    parser.add_argument("--rounds", type=int, default=12, help="turns per row")
    parser.add_argument("--scheme", choices=["http", "https", "both"], default="both")
    args = parser.parse_args(argv)
    if shutil.which("openssl") is None:
        print("the openssl CLI is needed to make a throwaway certificate")
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        ca, cert, key = _certificates(Path(tmp))
        with _emulators(cert, key) as urls:
            if args.scheme in ("http", "both"):
                _table(
                    "Cold token fetch over loopback HTTP",
                    _measure(urls["http"], None, args.fetches, args.rounds),
                )
            if args.scheme in ("https", "both"):
                _table(
                    "Cold token fetch over loopback HTTPS",
                    _measure(urls["https"], str(ca), args.fetches, args.rounds),
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
