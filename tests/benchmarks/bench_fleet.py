"""The fleet benchmark: how many token requests a fleet of processes sends, and what callers
pay, with no store (memory only), the file store and the Redis store. Prints one table,
judges nothing.

    python tests/benchmarks/bench_fleet.py            # the full grid (about 25 minutes)
    python tests/benchmarks/bench_fleet.py --quick    # a small subset for CI (well under a minute)
    tox -e bench-fleet [-- --quick]

Grid: N in {1, 2, 4, 8} processes (``spawn``) x M in {1, 16, 64} threads x K in {1, 4, 16}
keys, for each store. The emulator runs in this process with a 100 ms token endpoint (a delay
fault on every request) and 8 s tokens, so the steady phase spans a few refresh cycles. The
Redis store runs against its own ``redis-server`` on a loopback port, reached as the ACL user
``docs/fleet.md`` describes. Per cell:

- cold: every thread of every process asks once for every key, released together (barrier);
  ``cold req/key`` is token requests per key (goal 1; memory-only gives N); p50/p99 of those
  ``get_token`` calls.
- steady: the same callers loop for ``--steady`` seconds (a pause of ``--pace`` between calls)
  while tokens go stale and are renewed in the background; ``req/key/gen`` is tokens issued
  per key per renewal generation (issue instants grouped: a gap over a quarter of the
  lifetime starts a new generation; goal 1; memory-only gives N); p50/p99 of the calls.
- floor: the same loop doing a dict lookup instead of ``get_token``, in the same processes
  and threads right after: the hit path's yardstick (``x floor`` compares the p50s).
- Redis commands per second over cold + steady (``INFO commandstats``, without the
  benchmark's own INFO/CONFIG), fallbacks (``local_fetches`` + ``store_errors`` +
  ``rejected_reads`` from ``Client.store_stats()``) and caller errors.
"""

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parents[2]
for extra in (ROOT, ROOT / "tests" / "fleet"):
    if str(extra) not in sys.path:
        sys.path.append(str(extra))

from _fleet_harness import (  # type: ignore[import-not-found]  # noqa: E402
    Fleet,
    admin_client,
    fleet_url,
    generations,
    percentile,
    redis_missing,
    start_redis,
)

from oculus_lite.emulator import Emulator  # noqa: E402

BASE = 1.02  # the workers' latency histogram buckets (see _fleet_worker.bucket)
SECRET = "bench-fleet-secret"


def hist_percentile(hist: Dict[int, int], fraction: float) -> float:
    """Seconds at ``fraction`` of a merged bucket histogram (bucket midpoint)."""
    total = sum(hist.values())
    if not total:
        return float("nan")
    seen = 0
    for index in sorted(hist):
        seen += hist[index]
        if seen >= total * fraction:
            return float(BASE ** (index + 0.5) / 1e9)
    return float("nan")


def merge_hists(replies: Dict[int, Dict[str, Any]]) -> Dict[int, int]:
    total: Counter[int] = Counter()
    for reply in replies.values():
        total.update({int(k): v for k, v in reply["hist"].items()})
    return dict(total)


def redis_calls(admin: Any) -> int:
    stats = admin.info("commandstats")
    return sum(
        int(value["calls"])
        for name, value in stats.items()
        if name not in ("cmdstat_info", "cmdstat_config", "cmdstat_flushall")
    )


class Cell:
    def __init__(self, store: str, processes: int, threads: int, keys: int) -> None:
        self.store, self.processes, self.threads, self.keys = store, processes, threads, keys
        self.row: Dict[str, Any] = {}


def run_cell(
    cell: Cell,
    fleet: Fleet,
    emulator: Emulator,
    spec: Optional[Dict[str, Any]],
    admin: Any,
    args: argparse.Namespace,
    serial: int,
) -> None:
    client_id = "bench-{}".format(serial)
    emulator.add_agent(client_id, SECRET, scopes=["bench:*"], token_ttl=args.ttl)
    keys = [("bench:k{}".format(index), None) for index in range(cell.keys)]
    workers = fleet.workers[: cell.processes]
    fleet.setup(
        workers,
        client_id=client_id,
        secret=SECRET,
        url=emulator.url,
        store=spec,
        timeout=10.0,
        refresh_margin=10.0,
    )
    if admin is not None:
        admin.config_resetstat()
    began = time.monotonic()
    before = int(emulator.stats()["token_requests"])

    cold = fleet.start(keys, cell.threads, workers=workers).finish()
    cold_requests = int(emulator.stats()["token_requests"]) - before
    latencies = cold.latencies()
    steady = fleet.start(
        keys, cell.threads, workers=workers, loop={"seconds": args.steady, "pace": args.pace, "what": "get"}
    ).finish()
    elapsed = time.monotonic() - began
    commands = redis_calls(admin) / elapsed if admin is not None else None
    floor = fleet.start(
        keys, cell.threads, workers=workers, loop={"seconds": args.floor, "pace": args.pace, "what": "floor"}
    ).finish()
    fleet.ask({"op": "close"}, workers)

    issued = [r for r in emulator.issued_tokens() if r["sub"] == client_id]
    per_generation: List[int] = []
    for scope in {r["scope"] for r in issued}:
        for group in generations((float(r["iat"]) for r in issued if r["scope"] == scope), args.ttl / 4.0):
            per_generation.append(len(group))
    stats = steady.stats()
    hist, floor_hist = merge_hists(steady.replies), merge_hists(floor.replies)
    cell.row = {
        "cold": cold_requests / cell.keys,
        "gen": sum(per_generation) / len(per_generation) if per_generation else float("nan"),
        "gens": len(per_generation) / cell.keys,
        "cold50": percentile(latencies, 0.5) * 1e3,
        "cold99": percentile(latencies, 0.99) * 1e3,
        "hit50": hist_percentile(hist, 0.5) * 1e6,
        "hit99": hist_percentile(hist, 0.99) * 1e6,
        "floor50": hist_percentile(floor_hist, 0.5) * 1e6,
        "floor99": hist_percentile(floor_hist, 0.99) * 1e6,
        "redis": commands,
        "fallbacks": sum(stats.get(n, 0) for n in ("local_fetches", "store_errors", "rejected_reads")),
        "errors": len(cold.errors()) + len(steady.errors()) + len(cold.crashes()) + len(steady.crashes()),
        "kinds": Counter(_kind(error) for error in cold.errors() + steady.errors())
        + Counter("crash" for _ in cold.crashes() + steady.crashes()),
    }


def _kind(error: Sequence[Any]) -> str:
    """``Type(code)`` of a caller error: ``[key, type, code, message]`` from a burst,
    ``(key, [type, code, message], when, while_valid)`` from a loop."""
    name, code = (error[1][0], error[1][1]) if isinstance(error[1], (list, tuple)) else (error[1], error[2])
    return "{}({})".format(name, code)


HEADER = (
    "store", "N", "M", "K", "cold req/key", "req/key/gen", "gens", "cold p50 ms", "cold p99 ms",
    "hit p50 us", "hit p99 us", "floor p50 us", "floor p99 us", "x floor", "redis cmd/s", "fallbacks", "errors",
)  # fmt: skip


def format_row(cell: Cell) -> List[str]:
    r = cell.row
    return [
        cell.store,
        str(cell.processes),
        str(cell.threads),
        str(cell.keys),
        "{:.2f}".format(r["cold"]),
        "{:.2f}".format(r["gen"]),
        "{:.1f}".format(r["gens"]),
        "{:.1f}".format(r["cold50"]),
        "{:.1f}".format(r["cold99"]),
        "{:.2f}".format(r["hit50"]),
        "{:.1f}".format(r["hit99"]),
        "{:.2f}".format(r["floor50"]),
        "{:.1f}".format(r["floor99"]),
        "{:.1f}".format(r["hit50"] / r["floor50"]) if r["floor50"] > 0 else "-",
        "-" if r["redis"] is None else "{:.0f}".format(r["redis"]),
        str(r["fallbacks"]),
        str(r["errors"]),
    ]


def print_table(cells: Sequence[Cell]) -> None:
    rows = [list(HEADER)] + [format_row(cell) for cell in cells if cell.row]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    for index, row in enumerate(rows):
        print("  ".join(value.rjust(width) for value, width in zip(row, widths)))
        if index == 0:
            print("  ".join("-" * width for width in widths))


def grid(args: argparse.Namespace) -> List[Tuple[str, int, int, int]]:
    return [
        (store, n, m, k)
        for store in args.stores
        for n in args.processes
        for m in args.threads
        for k in args.keys
    ]


def numbers(text: str) -> List[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="N=2 x M=16 x K=4 per store, short phases")
    parser.add_argument("--stores", default="memory,file,redis", help="comma-separated: memory, file, redis")
    parser.add_argument("--processes", type=numbers, default=None, help="N values (1,2,4,8; quick 2)")
    parser.add_argument("--threads", type=numbers, default=None, help="M values (1,16,64; quick 16)")
    parser.add_argument("--keys", type=numbers, default=None, help="K values (1,4,16; quick 4)")
    parser.add_argument("--steady", type=float, default=None, help="steady phase seconds (10; quick 5)")
    parser.add_argument("--floor", type=float, default=None, help="floor phase seconds (1.5; quick 1)")
    parser.add_argument("--pace", type=float, default=0.002, help="pause between a caller's calls (s)")
    parser.add_argument("--ttl", type=int, default=8, help="token lifetime the emulator grants (s)")
    parser.add_argument("--delay-ms", type=float, default=100.0, help="token endpoint latency (ms)")
    args = parser.parse_args(argv)
    args.stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    for name, full, quick in (
        ("processes", [1, 2, 4, 8], [2]),
        ("threads", [1, 16, 64], [16]),
        ("keys", [1, 4, 16], [4]),
    ):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    args.steady = args.steady if args.steady is not None else (5.0 if args.quick else 10.0)
    args.floor = args.floor if args.floor is not None else (1.0 if args.quick else 1.5)
    unknown = set(args.stores) - {"memory", "file", "redis"}
    if unknown:
        parser.error("unknown store(s): {}".format(", ".join(sorted(unknown))))

    cells = [Cell(*shape) for shape in grid(args)]
    server = admin = None
    if "redis" in args.stores:
        missing = redis_missing()
        if missing is not None:
            print("redis store skipped: {}".format(missing), file=sys.stderr)
            cells = [c for c in cells if c.store != "redis"]
        else:
            server = start_redis()
            admin = admin_client(server)
    directory = tempfile.mkdtemp(prefix="oculus-bench-fleet-")
    specs: Dict[str, Optional[Dict[str, Any]]] = {
        "memory": None,
        "file": {"url": "file:" + os.path.join(directory, "tokens")},
        "redis": {"url": fleet_url(server)} if server is not None else None,
    }
    started = time.monotonic()
    try:
        with Emulator() as emulator, Fleet(max(c.processes for c in cells)) as fleet:
            emulator.set_faults([{"path": "/oauth/token", "kind": "delay", "delay_ms": args.delay_ms}])
            for serial, cell in enumerate(cells):
                run_cell(
                    cell,
                    fleet,
                    emulator,
                    specs[cell.store],
                    admin if cell.store == "redis" else None,
                    args,
                    serial,
                )
                print(
                    "[{:>4.0f} s] {} N={} M={} K={}: cold {:.2f} req/key, {:.2f} req/key/gen".format(
                        time.monotonic() - started,
                        cell.store,
                        cell.processes,
                        cell.threads,
                        cell.keys,
                        cell.row["cold"],
                        cell.row["gen"],
                    ),
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        if admin is not None:
            admin.close()
        if server is not None:
            server.stop()
        shutil.rmtree(directory, ignore_errors=True)
    print()
    print(
        "Fleet benchmark: {} s tokens, {:.0f} ms token endpoint, steady {:.0f} s, pace {:.0f} ms; "
        "Python {} on {} CPU(s)".format(
            args.ttl, args.delay_ms, args.steady, args.pace * 1e3, sys.version.split()[0], os.cpu_count()
        )
    )
    print_table(cells)
    for cell in cells:
        if cell.row.get("kinds"):
            print(
                "errors in {} N={} M={} K={}: {}".format(
                    cell.store, cell.processes, cell.threads, cell.keys, dict(cell.row["kinds"])
                )
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
