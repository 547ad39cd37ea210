"""Chaos soak for the token client: many callers, constant refreshes, a faulty token endpoint.

16 threads and 16 asyncio tasks call ``get_token``/``aget_token`` over 200 scopes
while an in-process emulator issues 20 s tokens and injects ~20% faults of mixed
kinds on ``/oauth/token`` (seeded probability rules, so runs repeat). It prints the
figures and exits 1 if a caller ever saw an error while a valid token existed.

How "an error while a valid token existed" is counted: whenever a caller sees a
new token for a scope it asks ``get_token_info`` for that token's expiry and keeps
the latest per scope; an error raised before that instant counts against the
client. Not collected by pytest (no ``test_`` prefix); run it directly:

    python tests/soak/soak.py --seconds 30
"""

import argparse
import asyncio
import gc
import math
import os
import random
import resource
import sys
import threading
import time
from collections import Counter
from typing import Any, Dict, List, Optional

from oculus_lite import Client, OculusError
from oculus_lite.emulator import Emulator

KINDS: List[Dict[str, Any]] = [
    {"kind": "status", "status": 503},
    {"kind": "status", "status": 500},
    {"kind": "status", "status": 429, "retry_after": "0"},
    {"kind": "delay", "delay_ms": 300},
    {"kind": "close"},
    {"kind": "truncate"},
    {"kind": "badjson"},
    {"kind": "content_type"},
    {"kind": "trickle", "interval_ms": 0},
]


def fault_rules(rate: float, seed: int) -> List[Dict[str, Any]]:
    """One probability rule per kind; the first that fires wins, so each gets p with
    1 - (1 - p) ** len(KINDS) == rate overall."""
    each = 1.0 - (1.0 - rate) ** (1.0 / len(KINDS))
    return [
        dict(kind, path="/oauth/token", probability=round(each, 6), seed=seed + i)
        for i, kind in enumerate(KINDS)
    ]


def rss_mib() -> float:
    """Current resident set size (Linux /proc), else the peak from getrusage."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


class Tally:
    """Shared counters; one lock, taken once per call (cheap next to the call itself)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls = 0
        self.errors_while_valid: Counter = Counter()  # type: ignore[type-arg]
        self.errors_without_token: Counter = Counter()  # type: ignore[type-arg]
        self.valid_until: Dict[str, float] = {}
        self.last_token: Dict[str, str] = {}
        self.tokens: set = set()  # type: ignore[type-arg]

    def needs_info(self, scope: str, token: str) -> bool:
        with self.lock:
            self.calls += 1
            return self.last_token.get(scope) != token

    def record_info(self, scope: str, token: str, expires: float) -> None:
        with self.lock:
            self.last_token[scope] = token
            self.tokens.add(token)
            if expires > self.valid_until.get(scope, 0.0):
                self.valid_until[scope] = expires

    def record_error(self, scope: str, exc: BaseException, at: float) -> None:
        with self.lock:
            self.calls += 1
            if self.valid_until.get(scope, 0.0) > at:
                self.errors_while_valid[type(exc).__name__] += 1
            else:
                self.errors_without_token[type(exc).__name__] += 1


def thread_worker(
    client: Client, scopes: List[str], tally: Tally, stop: float, seed: int, pause: float
) -> None:
    rng = random.Random(seed)
    while time.monotonic() < stop:
        scope = rng.choice(scopes)
        try:
            token = client.get_token(scope)
            if tally.needs_info(scope, token):
                info = client.get_token_info(scope)
                tally.record_info(scope, info.access_token, info.expires_at.timestamp())
        except OculusError as exc:
            tally.record_error(scope, exc, time.time())
        if pause:
            time.sleep(pause)


async def task_worker(
    client: Client, scopes: List[str], tally: Tally, stop: float, seed: int, pause: float
) -> None:
    rng = random.Random(seed)
    while time.monotonic() < stop:
        scope = rng.choice(scopes)
        try:
            token = await client.aget_token(scope)
            if tally.needs_info(scope, token):
                info = await client.aget_token_info(scope)
                tally.record_info(scope, info.access_token, info.expires_at.timestamp())
        except OculusError as exc:
            tally.record_error(scope, exc, time.time())
        await asyncio.sleep(pause)


def run_tasks(
    client: Client, scopes: List[str], tally: Tally, stop: float, count: int, seed: int, pause: float
) -> None:
    async def main() -> None:
        await asyncio.gather(
            *(task_worker(client, scopes, tally, stop, seed + i, pause) for i in range(count))
        )

    asyncio.run(main())


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--tasks", type=int, default=16)
    parser.add_argument("--scopes", type=int, default=200)
    parser.add_argument("--ttl", type=int, default=20, help="token lifetime the emulator grants (s)")
    parser.add_argument("--fault-rate", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--pause", type=float, default=0.001, help="seconds each caller waits between calls")
    args = parser.parse_args(argv)

    scopes = ["db:table{}:read".format(i) for i in range(args.scopes)]
    tally = Tally()
    peak = {"threads": threading.active_count(), "client_threads": 0}
    with Emulator() as emu:
        emu.add_agent("soak", "soak-secret", scopes=["db:*"], token_ttl=args.ttl)
        client = Client("soak", "soak-secret", emu.url, timeout=5.0)
        # Warm up without faults, so the start figures include the cache and the pollers.
        fetched_at = []
        for scope in scopes:
            client.get_token(scope)
            fetched_at.append(time.monotonic())
        gc.collect()
        rss_start, threads_start = rss_mib(), threading.active_count()
        objects_start = len(gc.get_objects())
        before = emu.stats()
        emu.set_faults(fault_rules(args.fault_rate, args.seed))
        started = time.monotonic()
        stop = started + args.seconds
        done = threading.Event()

        def monitor() -> None:
            while not done.wait(0.05):
                names = [t.name for t in threading.enumerate()]
                peak["threads"] = max(peak["threads"], len(names))
                client_side = sum(1 for n in names if n.startswith(("oculus-lite", "asyncio")))
                peak["client_threads"] = max(peak["client_threads"], client_side)

        workers = [threading.Thread(target=monitor, name="soak-monitor")]
        workers += [
            threading.Thread(
                target=thread_worker, args=(client, scopes, tally, stop, args.seed * 1000 + i, args.pause)
            )
            for i in range(args.threads)
        ]
        if args.tasks:
            workers.append(
                threading.Thread(
                    target=run_tasks,
                    args=(client, scopes, tally, stop, args.tasks, args.seed * 2000, args.pause),
                    name="soak-asyncio",
                )
            )
        for w in workers:
            w.start()
        for w in workers[1:]:
            w.join()
        done.set()
        workers[0].join()
        ended = time.monotonic()
        elapsed = ended - started
        after = emu.stats()
        emu.clear_faults()
        client.stop()
        gc.collect()
        rss_end = rss_mib()
        objects_end = len(gc.get_objects())

    requests = after["token_requests"] - before["token_requests"]
    fired = after["faults_fired"] - before["faults_fired"]
    refresh_every = args.ttl - min(10.0, args.ttl / 4.0) - min(60.0, args.ttl / 4.0)  # cache.timing
    at_least = sum(math.floor((ended - t) / args.ttl) for t in fetched_at)
    ahead = sum(math.floor((ended - t) / refresh_every) for t in fetched_at)
    grants = len(tally.tokens) - args.scopes
    surfaced = sum(tally.errors_while_valid.values()) + sum(tally.errors_without_token.values())
    print("oculus_lite chaos soak")
    print(
        "  setup: {:.0f} s, {} threads + {} asyncio tasks, {} scopes, token lifetime {} s, "
        "~{:.0%} faults on /oauth/token ({} kinds, seed {})".format(
            elapsed, args.threads, args.tasks, args.scopes, args.ttl, args.fault_rate, len(KINDS), args.seed
        )
    )
    print(
        "  calls made:                           {:,} ({:,.0f}/s)".format(tally.calls, tally.calls / elapsed)
    )
    print("  errors surfaced to callers:           {}".format(surfaced))
    print(
        "  ... while a valid token existed:      {} {}  (goal 0)".format(
            sum(tally.errors_while_valid.values()), dict(tally.errors_while_valid) or ""
        )
    )
    print(
        "  ... with no valid token for the scope: {} {}".format(
            sum(tally.errors_without_token.values()), dict(tally.errors_without_token) or ""
        )
    )
    print("  token requests sent:                  {:,} (faults injected: {:,})".format(requests, fired))
    print("  refreshes done (new tokens used):     {:,}".format(grants))
    print(
        "  refreshes needed:                     at least {:,} (one per lifetime per scope); {:,} if every "
        "scope renews at its refresh-ahead point ({:g} s)".format(at_least, ahead, refresh_every)
    )
    print("  token requests per refresh done:      {:.2f}".format(requests / max(1, grants)))
    print(
        "  peak threads:                         {} (client-side {}; {} at start; emulator in-process)".format(
            peak["threads"], peak["client_threads"], threads_start
        )
    )
    print(
        "  memory (RSS):                         start {:.1f} MiB, end {:.1f} MiB".format(rss_start, rss_end)
    )
    print("  live Python objects (after gc):       start {:,}, end {:,}".format(objects_start, objects_end))
    return 1 if tally.errors_while_valid else 0


if __name__ == "__main__":
    sys.exit(main())
