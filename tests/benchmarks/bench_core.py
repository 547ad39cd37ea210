"""Core figures, side by side in one run: prints a table, judges nothing.

    python tests/benchmarks/bench_core.py [--quick]

Rows: cache-hit get_token against the CPython floors measured in the same run,
aggregate hit throughput with 8 threads against 1, import cost, client
construction, and bytes retained per cached token (tracemalloc, 10,000 keys).
"""

import argparse
import gc
import json
import statistics
import subprocess
import sys
import threading
import time
import timeit
import tracemalloc

from oculus_lite import Client
from oculus_lite.emulator import Emulator
from oculus_lite.transport import Request, Response


class _Floor:
    """A plain method doing dict.get plus a monotonic comparison: the least a cache hit can cost."""

    def __init__(self):
        self._d = {"db:read": time.monotonic() + 1e9}

    def get(self, key):
        deadline = self._d.get(key)
        if deadline is not None and time.monotonic() < deadline:
            return key
        return None


class _LockedFloor(_Floor):
    def __init__(self):
        super().__init__()
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            return super().get(key)


def per_call_ns(fn, number, repeat):
    times = timeit.repeat(fn, number=number, repeat=repeat)
    per = sorted(t / number * 1e9 for t in times)
    return statistics.median(per), per[0], per[-1]


def threaded_throughput(fn, threads, seconds):
    stop = threading.Event()
    counts = [0] * threads
    barrier = threading.Barrier(threads + 1)

    def work(i):
        n = 0
        barrier.wait()
        while not stop.is_set():
            for _ in range(1000):
                fn()
            n += 1000
        counts[i] = n

    pool = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    barrier.wait()
    time.sleep(seconds)
    stop.set()
    for t in pool:
        t.join()
    return sum(counts) / seconds


def import_ms(statement, runs):
    """Median import cost of ``statement`` beyond a bare ``pass``, from ``-X importtime``."""

    def top_level_us(code):
        out = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, check=True
        )
        total = {}
        for line in out.stderr.splitlines():
            parts = line.split("|")
            if len(parts) == 3 and parts[1].strip().isdigit() and not parts[2].startswith("  "):
                total[parts[2].strip()] = int(parts[1])
        return total

    costs = []
    for _ in range(runs):
        base = top_level_us("pass")
        loaded = top_level_us(statement)
        costs.append(sum(us for name, us in loaded.items() if name not in base) / 1000.0)
    return statistics.median(costs)


class _SyntheticTokens:
    """An in-process transport minting ~320-char tokens: measures the cache, not HTTP."""

    def __init__(self):
        self.n = 0

    def request(self, request: Request) -> Response:
        self.n += 1
        body = "x" * 200 + "{:0>120}".format(self.n)
        token = "eyJhbGciOiJSUzI1NiJ9." + body[: 320 - 43] + ".sig-sig-sig-sig-sig"
        payload = {"access_token": token[:320], "expires_in": 600, "token_type": "Bearer"}
        return Response(200, {"content-type": "application/json"}, json.dumps(payload).encode())

    def close(self):
        pass


def bytes_per_token(keys):
    client = Client(
        "bench",
        "bench-secret",
        "https://bench.invalid",
        transport=_SyntheticTokens(),
        cache_size=keys,
        revocation_interval=None,
    )
    scopes = ["svc{}:read".format(i) for i in range(keys)]
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
    del scopes  # the caller's strings are not the cache's
    client.stop()
    return grown / keys


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sample sizes: proves the harness runs")
    args = parser.parse_args(argv)
    number, repeat = (2000, 3) if args.quick else (200000, 7)
    seconds = 0.2 if args.quick else 2.0
    runs = 2 if args.quick else 15
    keys = 500 if args.quick else 10000

    rows = []
    with Emulator() as emu:
        client = Client(emu.demo_client_id, emu.demo_client_secret, emu.url, revocation_interval=None)
        client.get_token("db:read")
        floor, locked = _Floor(), _LockedFloor()

        def hit():
            return client.get_token("db:read")

        f = per_call_ns(lambda: floor.get("db:read"), number, repeat)
        lf = per_call_ns(lambda: locked.get("db:read"), number, repeat)
        h = per_call_ns(hit, number, repeat)
        rows.append(
            (
                "floor: dict.get + monotonic compare",
                "{:.0f} ns".format(f[0]),
                "{:.0f}-{:.0f}".format(f[1], f[2]),
                "1.00x",
            )
        )
        rows.append(
            (
                "floor: same under threading.Lock",
                "{:.0f} ns".format(lf[0]),
                "{:.0f}-{:.0f}".format(lf[1], lf[2]),
                "{:.2f}x".format(lf[0] / f[0]),
            )
        )
        rows.append(
            (
                "cache-hit get_token, 1 thread",
                "{:.0f} ns".format(h[0]),
                "{:.0f}-{:.0f}".format(h[1], h[2]),
                "{:.2f}x floor".format(h[0] / f[0]),
            )
        )
        one = threaded_throughput(hit, 1, seconds)
        eight = threaded_throughput(hit, 8, seconds)
        rows.append(
            (
                "hit throughput, 8 threads vs 1",
                "{:.2f}x".format(eight / one),
                "{:.0f} vs {:.0f} calls/s".format(eight, one),
                "goal >= 0.9x",
            )
        )
        client.stop()

    started = time.perf_counter()
    n = 200 if args.quick else 5000
    for _ in range(n):
        Client("id", "secret", "https://api.example.com", revocation_interval=None)
    construct_us = (time.perf_counter() - started) / n * 1e6
    rows.append(("constructing a Client", "{:.1f} us".format(construct_us), "", "goal < 100 us"))
    rows.append(
        (
            "import oculus_lite (over bare interpreter)",
            "{:.1f} ms".format(import_ms("import oculus_lite", runs)),
            "",
            "goal < 5 ms",
        )
    )
    rows.append(
        (
            "from oculus_lite import Client",
            "{:.1f} ms".format(import_ms("from oculus_lite import Client", runs)),
            "",
            "",
        )
    )
    rows.append(
        (
            "bytes retained per cached token",
            "{:.0f} B".format(bytes_per_token(keys)),
            "{} keys, 320-char tokens".format(keys),
            "goal <= 800 B",
        )
    )

    print(
        "oculus_lite core benchmark  python {}  {}".format(
            sys.version.split()[0], "(quick)" if args.quick else ""
        )
    )
    width = max(len(r[0]) for r in rows)
    print("{:<{w}}  {:>12}  {:<28}  {}".format("row", "median", "min-max / detail", "ratio", w=width))
    for row in rows:
        print("{:<{w}}  {:>12}  {:<28}  {}".format(*row, w=width))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
