"""oculus_lite against the official SDK and authlib, row by row, in one run (issue 7).

    python tests/benchmarks/bench_compare.py [--quick]

Why one harness: figures taken on different days on a shared, noisy machine
cannot be compared, so every row runs all peers in the same process, taking
turns (the order rotates each repetition, so drift hits every peer), and the
CPython floors the goals are stated against are measured in the same run.

The emulator runs in its own process (``python -m oculus_lite serve --port 0``)
and is configured over its admin API. Its real token endpoint signs every
token with pure-Python RSA (milliseconds per token), which would swamp the
client's own cost, so the latency rows answer ``/oauth/token`` with a canned,
real signed token through the emulator's fault rules (``kind=status, status=200``,
plus ``delay_ms`` where a row wants a slow server). The rows about refresh
tokens and short lifetimes use real issuance.

Peers that are not installed (or do not import on this Python) get a dash with
the reason; nothing here asserts. ``--quick`` uses tiny samples so CI can prove
the harness still runs without judging any figure.
"""

import argparse
import asyncio
import base64
import datetime
import functools
import gc
import http.client
import json
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import timeit
import tracemalloc
from typing import Any, Callable, Dict, List, Optional, Tuple
from urllib.parse import parse_qs, urlencode, urlsplit

HERE = os.path.dirname(os.path.abspath(__file__))
LITE, SDK, AUTHLIB = "oculus_lite", "official SDK", "authlib"
PEERS = (LITE, SDK, AUTHLIB)
BURST = 64
INCIDENTS: List[str] = []  # unexpected errors seen in oculus_lite while measuring (printed at the end)


# ---------------------------------------------------------------------------- the emulator process


class EmulatorProcess:
    """``python -m oculus_lite serve --port 0`` in a child process, driven over the admin API."""

    def __init__(self) -> None:
        self.admin_token = secrets.token_urlsafe(16)
        self._log = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "oculus_lite",
                "serve",
                "--port",
                "0",
                "--admin-token=" + self.admin_token,
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        env: Dict[str, str] = {}
        deadline = time.monotonic() + 120
        while "AGENT_CLIENT_SECRET" not in env:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self._log.seek(0)
                raise RuntimeError("emulator did not start: " + self._log.read()[-2000:])
            time.sleep(0.05)
            self._log.seek(0)
            for line in self._log.read().splitlines():
                name, sep, value = line.partition("=")
                if sep and name.isupper():
                    env[name] = value
        self.url = env["ANTI_AI_URL"]
        self.client_id = env["AGENT_CLIENT_ID"]
        self.secret = env["AGENT_CLIENT_SECRET"]
        parts = urlsplit(self.url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80

    def call(self, method: str, path: str, payload: Any = None) -> Any:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            body = None if payload is None else json.dumps(payload).encode()
            headers = {"Authorization": "Bearer " + self.admin_token, "Content-Type": "application/json"}
            conn.request(method, path, body, headers)
            resp = conn.getresponse()
            data = resp.read()
            if resp.status >= 400:
                raise RuntimeError("admin {} {} -> {}: {!r}".format(method, path, resp.status, data[:300]))
            return json.loads(data) if data else None
        finally:
            conn.close()

    def add_agent(self, **spec: Any) -> None:
        self.call("POST", "/_emulator/agents", spec)

    def set_faults(self, rules: List[Dict[str, Any]]) -> None:
        self.call("POST", "/_emulator/faults", {"faults": rules})

    def clear_faults(self) -> None:
        self.call("DELETE", "/_emulator/faults")

    def token_requests(self) -> int:
        return int(self.call("GET", "/_emulator/stats")["token_requests"])

    def real_token(self, client_id: str, secret: str, scope: str = "db:read") -> Dict[str, Any]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            form = urlencode(
                {
                    "grant_type": "client_credentials",
                    "scope": scope,
                    "client_id": client_id,
                    "client_secret": secret,
                }
            )
            conn.request("POST", "/oauth/token", form, {"Content-Type": "application/x-www-form-urlencoded"})
            resp = conn.getresponse()
            data: Dict[str, Any] = json.loads(resp.read())
            if resp.status != 200:
                raise RuntimeError("token request failed: {}".format(resp.status))
            return data
        finally:
            conn.close()

    def canned(self, body: Dict[str, Any], delay_ms: float = 0.0) -> None:
        """Answer every POST /oauth/token with ``body`` (after ``delay_ms``): measures clients, not RSA."""
        rule: Dict[str, Any] = {
            "path": "/oauth/token",
            "method": "POST",
            "kind": "status",
            "status": 200,
            "body": body,
        }
        if delay_ms:
            rule["delay_ms"] = delay_ms
        self.set_faults([rule])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


# ---------------------------------------------------------------------------- peers


def peer_status() -> Dict[str, Optional[str]]:
    """None when the peer imports, else why not (shown in its column)."""
    out: Dict[str, Optional[str]] = {}
    for name, stmt in (
        (LITE, "import oculus_lite"),
        (SDK, "import oculus_sdk"),
        (AUTHLIB, "from authlib.integrations.requests_client import OAuth2Session"),
    ):
        try:
            exec(stmt, {})
        except ModuleNotFoundError as exc:
            out[name] = "not installed ({})".format(exc.name)
        except Exception as exc:  # e.g. the SDK on 3.9/3.10: cannot import name 'UTC'
            out[name] = "import fails on Python {}: {}: {}".format(
                platform.python_version(), type(exc).__name__, str(exc).split(" (")[0][:70]
            )
        else:
            out[name] = None
    return out


class Lite:
    def __init__(self, url: str, cid: str, secret: str, **kw: Any) -> None:
        from oculus_lite import Client

        self.client = Client(cid, secret, url, **kw)
        self.get_token = self.client.get_token
        self.aget_token = self.client.aget_token

    def close(self) -> None:
        try:
            self.client.stop()
        except RuntimeError as exc:  # seen: stop() right after the first fetch (poller not started yet)
            INCIDENTS.append("oculus_lite Client.stop() raised RuntimeError: {}".format(exc))

    async def aclose(self) -> None:
        try:
            await self.client.aclose()
        except RuntimeError as exc:
            INCIDENTS.append("oculus_lite Client.aclose() raised RuntimeError: {}".format(exc))


class Sdk:
    def __init__(self, url: str, cid: str, secret: str, **kw: Any) -> None:
        from oculus_sdk import OculusClient  # type: ignore[import-not-found,import-untyped,unused-ignore]

        self.client = OculusClient(client_id=cid, client_secret=secret, base_url=url)
        self.get_token = self.client.get_token
        self.aget_token = self.client.aget_token

    def close(self) -> None:
        self.client.stop()

    async def aclose(self) -> None:
        self.client.stop()


class Authlib:
    """What a generic user writes around authlib's client-credentials session: a token per
    scope, reused until authlib's ``is_expired`` (with the session's leeway) says otherwise."""

    def __init__(self, url: str, cid: str, secret: str, **kw: Any) -> None:
        from authlib.integrations.requests_client import OAuth2Session  # type: ignore[import-not-found,import-untyped,unused-ignore]

        self.url = url + "/oauth/token"
        self.cid, self.secret = cid, secret
        self.session = OAuth2Session(
            cid, secret, token_endpoint=self.url, token_endpoint_auth_method="client_secret_post"
        )
        self.leeway = self.session.leeway
        self.tokens: Dict[str, Any] = {}
        self._async: Any = None

    def get_token(self, scope: str) -> str:
        token = self.tokens.get(scope)
        if token is None or token.is_expired(leeway=self.leeway):
            token = self.session.fetch_token(self.url, grant_type="client_credentials", scope=scope)
            self.tokens[scope] = token
        return token["access_token"]  # type: ignore[no-any-return]

    def aprepare(self) -> None:
        """Build the async client up front: its construction (a TLS context) is not the fetch."""
        if self._async is None:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # authlib 1.9 deprecates its httpx module
                from authlib.integrations.httpx_client import AsyncOAuth2Client  # type: ignore[import-not-found,import-untyped,unused-ignore]

            self._async = AsyncOAuth2Client(
                self.cid,
                self.secret,
                token_endpoint=self.url,
                token_endpoint_auth_method="client_secret_post",
            )

    async def aget_token(self, scope: str) -> str:
        token = self.tokens.get(scope)
        if token is None or token.is_expired(leeway=self.leeway):
            self.aprepare()
            token = await self._async.fetch_token(self.url, grant_type="client_credentials", scope=scope)
            self.tokens[scope] = token
        return token["access_token"]  # type: ignore[no-any-return]

    def close(self) -> None:
        self.session.close()

    async def aclose(self) -> None:
        self.session.close()
        if self._async is not None:
            await self._async.aclose()


MAKERS: Dict[str, Callable[..., Any]] = {LITE: Lite, SDK: Sdk, AUTHLIB: Authlib}


# ---------------------------------------------------------------------------- measuring helpers


class Cell:
    """One peer's figures in one row: samples (median, min-max) or a dash with the reason."""

    def __init__(self, samples: Optional[List[float]] = None, note: str = "", extra: str = "") -> None:
        self.samples = list(samples or [])
        self.note = note
        self.extra = extra

    @property
    def ok(self) -> bool:
        return bool(self.samples)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


class Row:
    def __init__(
        self,
        name: str,
        unit: str,
        better: str,
        goal: str,
        judge: Optional[Callable[["Row"], Tuple[Optional[bool], str]]] = None,
        digits: int = 0,
    ) -> None:
        self.name, self.unit, self.better, self.goal, self.judge, self.digits = (
            name,
            unit,
            better,
            goal,
            judge,
            digits,
        )
        self.cells: Dict[str, Cell] = {}

    def fmt(self, value: float) -> str:
        return "{:.{d}f}".format(value, d=self.digits)

    def text(self, peer: str, best: Optional[float]) -> str:
        cell = self.cells.get(peer)
        if cell is None:
            return "—"
        if not cell.ok:
            return "— " + cell.note if cell.note else "—"
        lo, hi, med = min(cell.samples), max(cell.samples), cell.median
        out = "{} {}".format(self.fmt(med), self.unit).strip()
        if len(cell.samples) > 1 and lo != hi:
            out += " ({}–{})".format(self.fmt(lo), self.fmt(hi))
        if best is not None and best > 0 and med > 0 and self.better in ("low", "high"):
            ratio = med / best if self.better == "low" else best / med
            out += " [×{:.2f}]".format(ratio)
        if cell.extra:
            out += " " + cell.extra
        return out

    def best(self) -> Optional[float]:
        meds = [c.median for c in self.cells.values() if c.ok]
        if not meds:
            return None
        return min(meds) if self.better == "low" else max(meds)


def interleave(reps: int, peers: List[str], sample: Callable[[str], float], cells: Dict[str, Cell]) -> None:
    """``reps`` samples per peer, the peers taking turns in a rotating order."""
    live = [p for p in peers if cells.setdefault(p, Cell()).note == ""]
    for rep in range(reps):
        k = rep % len(live) if live else 0
        for peer in live[k:] + live[:k]:
            cell = cells[peer]
            if cell.note:
                continue
            try:
                cell.samples.append(sample(peer))
            except Exception as exc:  # a peer that cannot do the row gets a dash and the reason
                cell.samples = []
                cell.note = "error: {}: {}".format(type(exc).__name__, str(exc)[:80])


def paired_ratio(a: Cell, b: Cell) -> float:
    """Median of a/b over repetitions: each pair was measured back to back, so load drift cancels."""
    pairs = [x / y for x, y in zip(a.samples, b.samples) if y > 0]
    return statistics.median(pairs) if pairs else a.median / b.median


def per_call_ns(fn: Callable[[str], Any], arg: str, number: int) -> float:
    timer = timeit.Timer("fn(arg)", globals={"fn": fn, "arg": arg})
    return timer.timeit(number) / number * 1e9


def throughput(fn: Callable[[str], Any], threads: int, seconds: float) -> float:
    stop = threading.Event()
    counts = [0] * threads
    barrier = threading.Barrier(threads + 1)

    def work(i: int) -> None:
        n = 0
        barrier.wait()
        while not stop.is_set():
            for _ in range(500):
                fn("db:read")
            n += 500
        counts[i] = n

    pool = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for t in pool:
        t.join()
    return sum(counts) / (time.perf_counter() - started)


def burst(fn: Callable[[], Any], n: int = BURST) -> int:
    """``n`` threads call ``fn`` at once (Barrier); returns how many raised."""
    barrier = threading.Barrier(n)
    errors = [0]
    lock = threading.Lock()

    def work() -> None:
        barrier.wait()
        try:
            fn()
        except Exception:
            with lock:
                errors[0] += 1

    pool = [threading.Thread(target=work) for _ in range(n)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(60)
    return errors[0]


def import_cost_ms(statement: str) -> float:
    """Import cost of ``statement`` beyond a bare interpreter, from ``-X importtime`` (one run each)."""

    def top_level(code: str) -> Dict[str, int]:
        out = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", code],
            cwd=tempfile.gettempdir(),
            capture_output=True,
            text=True,
            check=True,
        )
        total: Dict[str, int] = {}
        for line in out.stderr.splitlines():
            parts = line.split("|")
            if len(parts) == 3 and parts[1].strip().isdigit() and not parts[2].startswith("  "):
                total[parts[2].strip()] = int(parts[1])
        return total

    base = top_level("pass")
    loaded = top_level(statement)
    return sum(us for name, us in loaded.items() if name not in base) / 1000.0


def _import_sample(stmts: Dict[str, str], peer: str) -> float:
    return import_cost_ms(stmts[peer])


class _Floor:
    """A plain method doing dict.get plus a monotonic comparison: the least a cache hit can cost."""

    def __init__(self) -> None:
        self._d = {"db:read": time.monotonic() + 1e9}

    def get(self, key: str) -> Optional[str]:
        deadline = self._d.get(key)
        if deadline is not None and time.monotonic() < deadline:
            return key
        return None


class _LockedFloor(_Floor):
    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()

    def get(self, key: str) -> Optional[str]:
        with self._lock:
            deadline = self._d.get(key)
            if deadline is not None and time.monotonic() < deadline:
                return key
            return None


def synthetic_token(i: int, length: int = 320) -> str:
    """A JWT-shaped token of ``length`` chars with a unique jti (the SDK decodes the payload)."""
    head = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9"
    payload: Dict[str, Any] = {"jti": "{:032x}".format(i), "sub": "bench-agent", "exp": 4102444800, "p": ""}
    raw = json.dumps(payload, separators=(",", ":")).encode()
    body = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    pad = max(0, (length - len(head) - len(body) - 45) * 3 // 4)
    payload["p"] = "x" * pad
    body = base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).rstrip(b"=").decode()
    token = head + "." + body + "." + "s" * 43
    return token + "s" * max(0, length - len(token))


def token_body(token: str, scope: str) -> Dict[str, Any]:
    """The response shape of the token service (and the emulator): scope included."""
    return {"access_token": token, "expires_in": 600, "token_type": "Bearer", "scope": scope}


# ---------------------------------------------------------------------------- rows


class Bench:
    def __init__(self, quick: bool) -> None:
        self.quick = quick
        self.status = peer_status()
        self.peers = [p for p in PEERS if self.status[p] is None]
        self.rows: List[Row] = []
        self.floors: List[Tuple[str, str]] = []
        self.info: List[str] = []
        self.emu: Optional[EmulatorProcess] = None

    # helpers ------------------------------------------------------------
    def row(self, row: Row, only: Optional[Dict[str, str]] = None) -> Row:
        """Register ``row``; peers not installed, or excused by ``only`` (peer -> reason), get a dash."""
        for peer in PEERS:
            why = self.status[peer]
            if why is None and only is not None and peer in only:
                why = only[peer]
            if why is not None:
                row.cells[peer] = Cell(note=why)
        self.rows.append(row)
        return row

    def make(self, peer: str, cid: Optional[str] = None, secret: Optional[str] = None, **kw: Any) -> Any:
        assert self.emu is not None
        return MAKERS[peer](self.emu.url, cid or self.emu.client_id, secret or self.emu.secret, **kw)

    # rows ---------------------------------------------------------------
    def cache_hit(self) -> None:
        number, reps = (3000, 2) if self.quick else (200000, 9)
        seconds = 0.05 if self.quick else 0.4
        treps = 1 if self.quick else 5
        emu = self.emu
        assert emu is not None
        emu.canned(token_body(self.canned_token, "db:read"))
        clients = {p: self.make(p) for p in self.peers}
        for c in clients.values():
            c.get_token("db:read")
        floor, locked = _Floor(), _LockedFloor()
        fns: Dict[str, Callable[[str], Any]] = {p: c.get_token for p, c in clients.items()}
        fns["floor"], fns["locked"] = floor.get, locked.get
        hit = self.row(
            Row(
                "cache-hit `get_token`, 1 thread", "ns", "low", "≤ 2× the method floor", judge=self._judge_hit
            )
        )
        cells = dict(hit.cells)
        interleave(reps, list(fns), lambda p: per_call_ns(fns[p], "db:read", number), cells)
        self._floor_cells = (cells.pop("floor"), cells.pop("locked"))
        hit.cells.update(cells)
        f, lf = self._floor_cells
        self.floors.append(
            (
                "method: `dict.get` + `time.monotonic()` compare",
                "{:.0f} ns ({:.0f}–{:.0f})".format(f.median, min(f.samples), max(f.samples)),
            )
        )
        self.floors.append(
            (
                "same under `threading.Lock`",
                "{:.0f} ns ({:.0f}–{:.0f})".format(lf.median, min(lf.samples), max(lf.samples)),
            )
        )

        scale = self.row(
            Row(
                "aggregate hit throughput, 8 threads vs 1 (ratio)",
                "",
                "high",
                "≥ 0.9×: no lock on the hit path",
                judge=self._judge_scale,
                digits=2,
            )
        )
        cells = dict(scale.cells)
        fns8 = {p: fns[p] for p in self.peers}
        fns8["locked"] = locked.get

        def ratio(p: str) -> float:
            # 1 and 8 threads alternate in short chunks, so a burst of load elsewhere hits both
            one = eight = 0.0
            for _ in range(4):
                one += throughput(fns8[p], 1, seconds / 4)
                eight += throughput(fns8[p], 8, seconds / 4)
            return eight / one

        interleave(treps, list(fns8), ratio, cells)
        lk = cells.pop("locked")
        scale.cells.update(cells)
        if lk.ok:
            self.floors.append(("locked floor, 8 threads vs 1 (aggregate)", "{:.2f}×".format(lk.median)))
        for c in clients.values():
            c.close()
        emu.clear_faults()

    def _judge_hit(self, row: Row) -> Tuple[Optional[bool], str]:
        cell, floor = row.cells.get(LITE), self._floor_cells[0]
        if cell is None or not cell.ok or not floor.ok:
            return None, ""
        x = paired_ratio(cell, floor)
        return x <= 2.0, "{:.2f}× floor".format(x)

    def _judge_scale(self, row: Row) -> Tuple[Optional[bool], str]:
        cell = row.cells.get(LITE)
        if cell is None or not cell.ok:
            return None, ""
        return cell.median >= 0.9, "{:.2f}×".format(cell.median)

    def imports(self) -> None:
        reps = 1 if self.quick else 9
        pkg = {
            LITE: "import oculus_lite",
            SDK: "import oculus_sdk",
            AUTHLIB: "from authlib.integrations.requests_client import OAuth2Session",
        }
        cls = {
            LITE: "from oculus_lite import Client",
            SDK: "from oculus_sdk import OculusClient",
            AUTHLIB: "from authlib.integrations.requests_client import OAuth2Session",
        }
        for title, stmts, goal, judge in (
            (
                "`import oculus_lite` over bare interpreter (peers: `import oculus_sdk`; authlib: its session)",
                pkg,
                "< 5 ms",
                _below(LITE, 5.0, "ms"),
            ),
            (
                "`from oculus_lite import Client` over bare interpreter (peers: their client class)",
                cls,
                "reported (the 5 ms goal is for `import oculus_lite`)",
                None,
            ),
        ):
            row = self.row(Row(title, "ms", "low", goal, judge=judge, digits=1))
            env = dict(os.environ)
            env.pop("PYTHONDONTWRITEBYTECODE", None)  # cached bytecode, as after pip install
            for p in self.peers:  # compile bytecode outside the timing
                subprocess.run(
                    [sys.executable, "-c", stmts[p]],
                    check=False,
                    capture_output=True,
                    env=env,
                    cwd=tempfile.gettempdir(),
                )
            interleave(reps, self.peers, functools.partial(_import_sample, stmts), row.cells)

    def construct(self) -> None:
        reps = 2 if self.quick else 7
        budget = 0.02 if self.quick else 0.25
        row = self.row(
            Row(
                "constructing a client",
                "µs",
                "low",
                "< 100 µs (TLS context lazy)",
                judge=_below(LITE, 100.0, "µs"),
                digits=1,
            )
        )
        assert self.emu is not None
        url, cid, sec = "https://api.example.com", "bench-id", "bench-secret"

        def sample(p: str) -> float:
            maker = MAKERS[p]
            maker(url, cid, sec).close()  # warm: first-use imports are not construction
            made = []
            n = 0
            started = time.perf_counter()
            while True:
                made.append(maker(url, cid, sec))
                n += 1
                elapsed = time.perf_counter() - started
                if elapsed >= budget or n >= 2000:
                    break
            for c in made:
                c.close()
            return elapsed / n * 1e6

        interleave(reps, self.peers, sample, row.cells)

    def cold_fetch(self) -> None:
        reps = 2 if self.quick else 7
        per = 3 if self.quick else 25
        emu = self.emu
        assert emu is not None
        emu.canned(token_body(self.canned_token, "db:read"))
        counter = [0]

        def fetches(client: Any) -> float:
            times = []
            for _ in range(per):
                counter[0] += 1
                scope = "db:cold{}".format(counter[0])
                t = time.perf_counter()
                client.get_token(scope)
                times.append(time.perf_counter() - t)
            return statistics.median(times) * 1e6

        def sample_for(kw: Dict[str, Any]) -> Callable[[str], float]:
            def sample(p: str) -> float:
                client = self.make(p, **(kw if p == LITE else {}))
                try:
                    client.get_token("db:warmup")  # connection pools, lazy imports
                    return fetches(client)
                finally:
                    client.close()

            return sample

        row = self.row(
            Row(
                "cold fetch on loopback, default transport",
                "µs",
                "low",
                "no slower than the official SDK",
                judge=self._judge_cold,
                digits=0,
            )
        )
        form = urlencode(
            {
                "grant_type": "client_credentials",
                "scope": "db:read",
                "client_id": emu.client_id,
                "client_secret": emu.secret,
            }
        )
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}

        def new_connection_floor() -> float:
            times = []
            for _ in range(per):
                t = time.perf_counter()
                fresh = http.client.HTTPConnection(emu.host, emu.port, timeout=10)
                fresh.request("POST", "/oauth/token", form, headers)
                json.loads(fresh.getresponse().read())
                fresh.close()
                times.append(time.perf_counter() - t)
            return statistics.median(times) * 1e6

        cells = dict(row.cells)
        default = sample_for({})
        interleave(
            reps,
            self.peers + ["new-conn"],
            lambda p: new_connection_floor() if p == "new-conn" else default(p),
            cells,
        )
        nc = self._new_conn = cells.pop("new-conn")
        row.cells.update(cells)
        if row.cells.get(LITE, Cell()).ok:
            row.cells[LITE].extra = "({})".format(_default_transport_name())
        self.floors.append(
            (
                "new-connection `http.client` POST /oauth/token + `json.loads` (reference)",
                "{:.0f} µs ({:.0f}–{:.0f})".format(nc.median, min(nc.samples), max(nc.samples)),
            )
        )

        keep = self.row(
            Row(
                "cold fetch, default transport, beside the keep-alive `http.client` floor",
                "µs",
                "low",
                "≤ 1.3× the keep-alive `http.client` floor",
                judge=self._judge_pooled,
            ),
            only={
                SDK: "(its default, httpx, already keeps connections alive)",
                AUTHLIB: "(its default, requests, already keeps connections alive)",
            },
        )
        conn = http.client.HTTPConnection(emu.host, emu.port, timeout=10)

        def floor_once() -> float:
            times = []
            for _ in range(per):
                t = time.perf_counter()
                conn.request(
                    "POST",
                    "/oauth/token",
                    form,
                    {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
                )
                json.loads(conn.getresponse().read())
                times.append(time.perf_counter() - t)
            return statistics.median(times) * 1e6

        floor_once()
        cells = dict(keep.cells)
        pooled = sample_for({})  # the default keeps connections alive ("pooled" is its alias)
        interleave(
            reps,
            [LITE, "floor"] if LITE not in keep.cells else ["floor"],
            lambda p: floor_once() if p == "floor" else pooled(p),
            cells,
        )
        conn.close()
        self._http_floor = cells.pop("floor")
        keep.cells.update(cells)
        hf = self._http_floor
        self.floors.append(
            (
                "keep-alive `http.client` POST /oauth/token + `json.loads` (canned token)",
                "{:.0f} µs ({:.0f}–{:.0f})".format(hf.median, min(hf.samples), max(hf.samples)),
            )
        )
        emu.clear_faults()

    def _judge_cold(self, row: Row) -> Tuple[Optional[bool], str]:
        lite, sdk = row.cells.get(LITE), row.cells.get(SDK)
        if lite is None or not lite.ok:
            return None, ""
        if sdk is None or not sdk.ok:
            return None, "SDK not measured"
        x = lite.median / sdk.median
        return x <= 1.0, "{:.2f}× the SDK".format(x)

    def _judge_pooled(self, row: Row) -> Tuple[Optional[bool], str]:
        lite = row.cells.get(LITE)
        if lite is None or not lite.ok or not self._http_floor.ok:
            return None, ""
        x = paired_ratio(lite, self._http_floor)
        return x <= 1.3, "{:.2f}× floor".format(x)

    def concurrent_cold(self) -> None:
        reps = 1 if self.quick else 5
        emu = self.emu
        assert emu is not None
        emu.canned(token_body(self.canned_token, "db:read"), delay_ms=50)
        row = self.row(
            Row(
                "token requests for 64 concurrent cold callers (server: 50 ms)",
                "",
                "low",
                "exactly 1",
                judge=_exact(LITE, 1),
            )
        )
        errors: Dict[str, int] = {}

        def sample(p: str) -> float:
            client = self.make(p)
            try:
                before = emu.token_requests()
                errors[p] = errors.get(p, 0) + burst(lambda: client.get_token("db:read"))
                return float(emu.token_requests() - before)
            finally:
                client.close()

        interleave(reps, self.peers, sample, row.cells)
        for p, n in errors.items():
            if n and row.cells[p].ok:
                row.cells[p].extra = "({} errors)".format(n)
        emu.clear_faults()

    def short_tokens(self) -> None:
        reps = 1 if self.quick else 3
        emu = self.emu
        assert emu is not None
        emu.add_agent(client_id="bench-ttl8", client_secret="bench-ttl8-secret", scopes=["db:*"], token_ttl=8)
        row = self.row(
            Row(
                "token requests for 50 calls when the server grants 8 s tokens",
                "",
                "low",
                "1",
                judge=_exact(LITE, 1),
            )
        )

        def sample(p: str) -> float:
            client = self.make(p, "bench-ttl8", "bench-ttl8-secret")
            try:
                before = emu.token_requests()
                for _ in range(50):
                    client.get_token("db:read")
                return float(emu.token_requests() - before)
            finally:
                client.close()

        interleave(reps, self.peers, sample, row.cells)
        if row.cells.get(AUTHLIB, Cell()).ok:
            row.cells[AUTHLIB].extra = "(leeway 60 s)"

    def rotating_refresh(self) -> None:
        reps = 1 if self.quick else 3
        ttl = 1
        emu = self.emu
        assert emu is not None
        emu.add_agent(
            client_id="bench-rt",
            client_secret="bench-rt-secret",
            scopes=["db:*"],
            token_ttl=ttl,
            refresh_tokens=True,
            rotate_refresh_tokens=True,
        )
        row = self.row(
            Row(
                "64 callers refreshing at once with rotating refresh tokens",
                "req",
                "low",
                "1 request, 0 errors",
                judge=self._judge_refresh,
            ),
            only={
                AUTHLIB: "(client-credentials session: re-fetches with the secret, "
                "no refresh-token path to compare)"
            },
        )
        self._refresh_errors: Dict[str, List[int]] = {}

        def sample(p: str) -> float:
            client = self.make(p, "bench-rt", "bench-rt-secret")
            try:
                client.get_token("db:read")  # holds a token and its refresh token
                time.sleep(ttl + 0.2)  # now every caller needs a refresh
                before = emu.token_requests()
                errs = burst(lambda: client.get_token("db:read"))
                self._refresh_errors.setdefault(p, []).append(errs)
                return float(emu.token_requests() - before)
            finally:
                client.close()

        interleave(reps, [p for p in self.peers if p != AUTHLIB], sample, row.cells)
        for p, errs in self._refresh_errors.items():
            if row.cells[p].ok:
                spread = "" if min(errs) == max(errs) else " ({}–{})".format(min(errs), max(errs))
                row.cells[p].extra = "+ {:g}{} errors".format(statistics.median(errs), spread)

    def _judge_refresh(self, row: Row) -> Tuple[Optional[bool], str]:
        cell = row.cells.get(LITE)
        if cell is None or not cell.ok:
            return None, ""
        errs = self._refresh_errors.get(LITE, [])
        ok = all(s == 1 for s in cell.samples) and not any(errs)
        return ok, "{:g} req, {} errors".format(max(cell.samples), sum(errs))

    def loop_stall(self) -> None:
        reps = 1 if self.quick else 9
        emu = self.emu
        assert emu is not None
        emu.canned(token_body(self.canned_token, "db:read"), delay_ms=200)
        row = self.row(
            Row(
                "longest event-loop stall during a cold `aget_token` (server: 200 ms)",
                "ms",
                "low",
                "< 5 ms",
                judge=self._judge_stall,
                digits=1,
            )
        )

        async def measure(p: str) -> float:
            client = self.make(p) if p != "ticker" else None
            if client is not None and hasattr(client, "aprepare"):
                client.aprepare()
            gaps = [0.0]
            done = asyncio.Event()

            async def ticker() -> None:
                while not done.is_set():
                    t = time.perf_counter()
                    await asyncio.sleep(0.001)
                    gaps[0] = max(gaps[0], time.perf_counter() - t)

            task = asyncio.ensure_future(ticker())
            await asyncio.sleep(0.02)
            gaps[0] = 0.0
            try:
                if client is None:
                    await asyncio.sleep(0.2)  # the floor: the same 200 ms with no client at all
                else:
                    await client.aget_token("db:read")
            finally:
                done.set()
                await task
            if client is not None:
                await client.aclose()
            return gaps[0] * 1000.0

        cells = dict(row.cells)
        interleave(reps, self.peers + ["ticker"], lambda p: asyncio.run(measure(p)), cells)
        self._ticker = cells.pop("ticker")
        row.cells.update(cells)
        tk = self._ticker
        self.floors.append(
            (
                "event loop alone for 200 ms: longest gap of a 1 ms `asyncio.sleep` ticker",
                "{:.1f} ms ({:.1f}–{:.1f})".format(tk.median, min(tk.samples), max(tk.samples)),
            )
        )
        self.info.append(
            "event-loop stall = the longest gap seen by a coroutine looping on "
            "`asyncio.sleep(0.001)` while the call runs (~1.1 ms = no stall); on a loaded "
            "machine the ticker alone sees several ms (floor table)"
        )
        emu.clear_faults()

    def _judge_stall(self, row: Row) -> Tuple[Optional[bool], str]:
        cell, tk = row.cells.get(LITE), self._ticker
        if cell is None or not cell.ok:
            return None, ""
        if cell.median < 5.0:
            return True, ""
        if tk.ok and cell.median <= tk.median + 1.0:
            return True, "machine noise: the ticker alone sees {:.1f} ms".format(tk.median)
        return False, "{:.2f}× the goal; ticker alone {:.1f} ms".format(
            cell.median / 5.0, tk.median if tk.ok else float("nan")
        )

    def memory(self) -> None:
        keys = 400 if self.quick else 10000
        row = self.row(
            Row(
                "bytes retained per cached token ({:,} keys, 320-char tokens)".format(keys),
                "B",
                "low",
                "≤ 800 B including the LRU",
                judge=_below(LITE, 800.0, "B", inclusive=True),
            ),
            only={AUTHLIB: "(no token cache of its own: one token per session)"},
        )
        scopes = ["svc{}:read".format(i) for i in range(keys)]

        def sample(p: str) -> float:
            counter = [0]

            def reply(scope: str) -> bytes:
                counter[0] += 1
                return json.dumps(token_body(synthetic_token(counter[0]), scope)).encode()

            if p == LITE:
                from oculus_lite.transport import Response

                class Synthetic:
                    def request(self, request: Any) -> Any:
                        scope = parse_qs(request.body.decode())["scope"][0]
                        return Response(200, {"content-type": "application/json"}, reply(scope))

                    def close(self) -> None:
                        pass

                client: Any = Lite(
                    "https://bench.invalid",
                    "bench",
                    "bench-secret",
                    transport=Synthetic(),
                    cache_size=keys,
                    revocation_interval=None,
                )
            else:
                import httpx  # type: ignore[import-not-found,import-untyped,unused-ignore]

                def handler(request: Any) -> Any:
                    scope = parse_qs(request.content.decode())["scope"][0]
                    return httpx.Response(
                        200, headers={"content-type": "application/json"}, content=reply(scope)
                    )

                client = Sdk("https://bench.invalid", "bench", "bench-secret")
                client.client._http.close()
                client.client._http = httpx.Client(transport=httpx.MockTransport(handler))
            client.get_token("warm:up")
            gc.collect()
            tracemalloc.start()
            before = tracemalloc.take_snapshot()
            for scope in scopes:
                client.get_token(scope)
            gc.collect()
            after = tracemalloc.take_snapshot()
            tracemalloc.stop()
            grown = sum(s.size_diff for s in after.compare_to(before, "filename"))
            client.close()
            return grown / keys

        interleave(1, [p for p in self.peers if p != AUTHLIB], sample, row.cells)
        self.info.append(
            "bytes per token: in-process synthetic transport answering like the token "
            "service (access_token, expires_in, token_type, scope); tracemalloc growth / keys"
        )

    def verification(self) -> None:
        rounds = 1 if self.quick else 7
        seconds = 0.05 if self.quick else 0.3
        emu = self.emu
        assert emu is not None
        row = self.row(
            Row(
                "RS256 verifications per second (2048-bit, no memo)",
                "/s",
                "high",
                "reported beside PyJWT + cryptography",
            ),
            only={AUTHLIB: "(not measured)"},
        )
        try:
            sys.path.insert(0, HERE)
            from bench_verify import batch_rate  # type: ignore[import-not-found,import-untyped,unused-ignore]

            source = "batch_rate from tests/benchmarks/bench_verify.py"
        except Exception as exc:  # missing or broken: a local copy of the same idea
            source = "bench_verify.py not importable ({}); local batch timer".format(type(exc).__name__)

            def batch_rate(fn: Callable[[], object], seconds: float) -> float:
                n, start = 0, time.perf_counter()
                while time.perf_counter() - start < seconds:
                    fn()
                    n += 1
                return n / (time.perf_counter() - start)

        token = emu.real_token(emu.client_id, emu.secret)["access_token"]
        fns: Dict[str, Callable[[], object]] = {}
        closers: List[Callable[[], Any]] = []
        from oculus_lite.jwt import JwksVerifier

        plain = JwksVerifier(emu.url, memo=False, check_revocation=False)
        memo = JwksVerifier(emu.url, memo=True, check_revocation=False)
        fns[LITE] = lambda: plain.verify(token)
        fns["lite-memo"] = lambda: memo.verify(token)
        closers += [plain.close, memo.close]
        if SDK in self.peers:
            try:
                from oculus_sdk import JwksVerifier as SdkVerifier

                sdk_v = SdkVerifier(emu.url)
                fns[SDK] = lambda: sdk_v.verify(token)
            except Exception as exc:
                row.cells[SDK] = Cell(note="error: {}".format(type(exc).__name__))
        try:
            import jwt as pyjwt  # type: ignore[import-not-found,import-untyped,unused-ignore]
            from jwt.algorithms import RSAAlgorithm  # type: ignore[import-not-found,import-untyped,unused-ignore]

            public: Any = RSAAlgorithm.from_jwk(json.dumps(plain_jwks(emu)["keys"][0]))
            fns["pyjwt"] = lambda: pyjwt.decode(
                token, public, algorithms=["RS256"], options={"verify_aud": False}
            )
            pyjwt_name = "PyJWT {} + cryptography {}".format(
                pyjwt.__version__, __import__("cryptography").__version__
            )
        except ImportError:
            pyjwt_name = ""
        for fn in fns.values():
            fn()
        cells: Dict[str, Cell] = dict(row.cells)
        interleave(rounds, list(fns), lambda p: batch_rate(fns[p], seconds), cells)
        for close in closers:
            close()
        memo_cell, py_cell = cells.pop("lite-memo", Cell()), cells.pop("pyjwt", Cell())
        row.cells.update(cells)
        if row.cells.get(SDK, Cell()).ok:
            row.cells[SDK].extra = "(PyJWT + cryptography inside)"
        if py_cell.ok:
            self.floors.append(
                ("{} `jwt.decode` (native RSA)".format(pyjwt_name), "{:,.0f} /s".format(py_cell.median))
            )
        if memo_cell.ok:
            self.floors.append(
                ("oculus_lite verify, memo on (same token again)", "{:,.0f} /s".format(memo_cell.median))
            )
        self.info.append(
            "verification rows: " + source + "; a real emulator token ({} chars)".format(len(token))
        )

    # the run ------------------------------------------------------------
    def run(self) -> None:
        self.emu = EmulatorProcess()
        try:
            emu = self.emu
            t = time.perf_counter()
            real = emu.real_token(emu.client_id, emu.secret)
            self.info.append(
                "the emulator's real token issuance costs {:.1f} ms per token (pure-Python RS256 "
                "signing); latency rows use a canned signed token ({} chars) so they measure clients".format(
                    (time.perf_counter() - t) * 1000, len(real["access_token"])
                )
            )
            self.canned_token = real["access_token"]
            steps = [
                self.cache_hit,
                self.imports,
                self.construct,
                self.cold_fetch,
                self.concurrent_cold,
                self.short_tokens,
                self.rotating_refresh,
                self.loop_stall,
                self.memory,
                self.verification,
            ]
            for step in steps:
                t = time.perf_counter()
                step()
                print(
                    "  [{} done in {:.1f} s]".format(step.__name__, time.perf_counter() - t), file=sys.stderr
                )
        finally:
            self.emu.stop()

    def report(self, argv: List[str]) -> str:
        lines = []
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        lines.append("oculus_lite vs official SDK vs authlib — {}".format(now))
        lines.append(
            "machine: {} cores (nproc {}), {}, {}; CPython {}".format(
                os.cpu_count(),
                _nproc(),
                platform.machine(),
                platform.platform(terse=True),
                platform.python_version(),
            )
        )
        versions = []
        for mod in ("goantiai-sdk", "authlib", "requests", "httpx"):
            versions.append("{} {}".format(mod, _version(mod)))
        lines.append("peers: " + ", ".join(versions))
        lines.append("command: python tests/benchmarks/bench_compare.py" + ("".join(" " + a for a in argv)))
        lines.append("cells: median (min–max over repetitions) [×ratio to the best peer: 1.00 = best]")
        lines.append(
            "ratios to a floor in the last column: median of per-repetition ratios (pairs run back to back)"
        )
        lines.append("")
        lines.append(
            "| row | oculus_lite | official SDK (goantiai-sdk 1.0.0) | authlib | goal for oculus_lite | met? |"
        )
        lines.append("|---|---|---|---|---|---|")
        for row in self.rows:
            best = row.best()
            verdict = ""
            if row.judge is not None and self.quick:
                verdict = "not judged (--quick)"
            elif row.judge is not None:
                ok, detail = row.judge(row)
                verdict = "—" if ok is None else ("yes" if ok else "**NO**")
                if detail:
                    verdict += " ({})".format(detail)
            lines.append(
                "| {} | {} | {} | {} | {} | {} |".format(
                    row.name,
                    row.text(LITE, best),
                    row.text(SDK, best),
                    row.text(AUTHLIB, best),
                    row.goal,
                    verdict,
                )
            )
        lines.append("")
        lines.append("CPython floors and references, same run:")
        lines.append("")
        lines.append("| floor | figure |")
        lines.append("|---|---|")
        for name, value in self.floors:
            lines.append("| {} | {} |".format(name, value))
        lines.append("")
        for note in self.info:
            lines.append("- " + note)
        for incident in sorted(set(INCIDENTS)):
            lines.append("- INCIDENT ({}x): {}".format(INCIDENTS.count(incident), incident))
        if self.quick:
            lines.append("- --quick: tiny samples; figures prove the harness runs, nothing more")
        return "\n".join(lines)


def _below(
    peer: str, limit: float, unit: str, inclusive: bool = False
) -> Callable[[Row], Tuple[Optional[bool], str]]:
    def judge(row: Row) -> Tuple[Optional[bool], str]:
        cell = row.cells.get(peer)
        if cell is None or not cell.ok:
            return None, ""
        med = cell.median
        ok = med <= limit if inclusive else med < limit
        return ok, "" if ok else "{:.2f}× the goal".format(med / limit)

    return judge


def _exact(peer: str, want: int) -> Callable[[Row], Tuple[Optional[bool], str]]:
    def judge(row: Row) -> Tuple[Optional[bool], str]:
        cell = row.cells.get(peer)
        if cell is None or not cell.ok:
            return None, ""
        ok = all(s == want for s in cell.samples)
        return ok, "" if ok else "max {:g}".format(max(cell.samples))

    return judge


def plain_jwks(emu: EmulatorProcess) -> Dict[str, Any]:
    conn = http.client.HTTPConnection(emu.host, emu.port, timeout=10)
    try:
        conn.request("GET", "/.well-known/jwks.json")
        return json.loads(conn.getresponse().read())  # type: ignore[no-any-return]
    finally:
        conn.close()


def _default_transport_name() -> str:
    from oculus_lite.transport import resolve_transport

    transport = resolve_transport(None)
    name = type(transport).__name__
    close = getattr(transport, "close", None)
    if callable(close):
        close()
    return name + (": keeps connections alive" if name == "UrllibTransport" else "")


def _nproc() -> str:
    try:
        return str(len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return str(os.cpu_count())


def _version(dist: str) -> str:
    try:
        from importlib.metadata import version

        return version(dist)
    except Exception:
        return "not installed"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny samples: proves the harness runs")
    args = parser.parse_args(argv)
    bench = Bench(args.quick)
    started = time.perf_counter()
    bench.run()
    print(bench.report(["--quick"] if args.quick else []))
    print("\n(total {:.0f} s)".format(time.perf_counter() - started))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
