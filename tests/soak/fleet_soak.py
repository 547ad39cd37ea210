"""Fleet soak: 4 processes x 16 threads share tokens through the Redis store while the token
endpoint fails 20 % of the time and Redis is stopped (SIGSTOP) for 10 s in the middle.

It prints the figures and exits 1 if a caller ever saw an error while its process held a
valid token for that key (the client must then serve that token), or if a worker crashed.

    python tests/soak/fleet_soak.py                 # 60 s, Redis stopped from 25 s to 35 s
    python tests/soak/fleet_soak.py --short         # 16 s, Redis stopped 3 s: for CI
    tox exec -e bench-fleet -- python tests/soak/fleet_soak.py --short

How it counts:

- errors while a valid token existed: each process notes, for every new token its callers
  get, the expiry the client gives it (``get_token_info``); an error raised before the latest
  such expiry for that key counts (goal 0). Errors with no valid token in the process (a
  cold start whose every retry failed) are shown apart: the service could not issue then.
- requests per key per lifetime outside the outage: tokens are grouped into generations
  (issue instants, a gap over a quarter of the lifetime starts a new one); for generations
  issued before Redis stopped or after every process's store cool-off has surely ended,
  ``used`` is the distinct tokens callers got per key per generation (goal within 10 % of
  one: the fleet shares one token), ``issued`` the tokens the service issued (a truncated
  reply wastes one) and ``requests`` the raw attempts (every injected fault costs a retry).
"""

import argparse
import importlib.util
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parents[2]
for extra in (ROOT, ROOT / "tests" / "fleet"):
    if str(extra) not in sys.path:
        sys.path.append(str(extra))

from _fleet_harness import Fleet, fleet_url, generations, redis_missing, start_redis  # type: ignore[import-not-found]  # noqa: E402,E501

from oculus_lite.emulator import Emulator  # noqa: E402
from oculus_lite.tokens._fleet import STORE_COOL_OFF  # noqa: E402

CLIENT_ID, SECRET = "soak-fleet-agent", "soak-fleet-secret"


def fault_rules(rate: float, seed: int) -> List[Dict[str, Any]]:
    """The single-process soak's mix of faults (tests/soak/soak.py), at ``rate`` overall."""
    spec = importlib.util.spec_from_file_location("_oculus_soak", ROOT / "tests" / "soak" / "soak.py")
    assert spec is not None and spec.loader is not None
    soak = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(soak)
    rules: List[Dict[str, Any]] = soak.fault_rules(rate, seed)
    return rules


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--outage", type=float, default=10.0, help="seconds Redis stays stopped, mid-run")
    parser.add_argument("--short", action="store_true", help="16 s with a 3 s outage (CI)")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--keys", type=int, default=8)
    parser.add_argument("--ttl", type=int, default=8, help="token lifetime the emulator grants (s)")
    parser.add_argument("--fault-rate", type=float, default=0.2)
    parser.add_argument("--pace", type=float, default=0.005, help="pause between a caller's calls (s)")
    parser.add_argument("--seed", type=int, default=14)
    args = parser.parse_args(argv)
    if args.short:
        args.seconds, args.outage = 16.0, 3.0
    missing = redis_missing()
    if missing is not None:
        print("fleet soak needs Redis: {}".format(missing), file=sys.stderr)
        return 2

    keys = [("soak:k{}".format(index), None) for index in range(args.keys)]
    server = start_redis()
    try:
        with Emulator() as emulator, Fleet(args.processes) as fleet:
            emulator.add_agent(CLIENT_ID, SECRET, scopes=["soak:*"], token_ttl=args.ttl)
            fleet.setup(
                client_id=CLIENT_ID, secret=SECRET, url=emulator.url, store={"url": fleet_url(server)}
            )
            emulator.set_faults(fault_rules(args.fault_rate, args.seed))
            began = time.time()
            run = fleet.start(
                keys, args.threads, loop={"seconds": args.seconds, "pace": args.pace, "what": "soak"}
            )
            stop_at = began + (args.seconds - args.outage) / 2.0
            time.sleep(max(0.0, stop_at - time.time()))
            server.pause()
            paused_at = time.time()
            time.sleep(args.outage)
            server.resume()
            resumed_at = time.time()
            outcome = run.finish()
            ended = time.time()
            stats = emulator.stats()
            issued = [r for r in emulator.issued_tokens() if r["sub"] == CLIENT_ID]
            fleet.ask({"op": "close"})
    finally:
        server.stop()

    errors = outcome.errors()
    while_valid = [e for e in errors if e[3]]
    without = [e for e in errors if not e[3]]
    crashes = outcome.crashes()
    quiet_after = resumed_at + 2 * STORE_COOL_OFF  # every process's store cool-off is over

    def outside(instant: float) -> bool:
        return instant < paused_at or instant > quiet_after

    used_rows: List[Tuple[int, int]] = []  # (generations, distinct tokens) per key, outside
    issued_rows: List[Tuple[int, int]] = []
    for index, (scope, _) in enumerate(keys):
        first_seen = [t for t in outcome.first_seen(index).values() if outside(t)]
        groups = generations(first_seen, args.ttl / 4.0)
        used_rows.append((len(groups), len(first_seen)))
        instants = [float(r["iat"]) for r in issued if r["scope"] == scope and outside(float(r["iat"]))]
        issued_groups = generations(instants, args.ttl / 4.0)
        issued_rows.append((len(issued_groups), len(instants)))
    used_gens, used_tokens = sum(g for g, _ in used_rows), sum(t for _, t in used_rows)
    issued_gens, issued_tokens = sum(g for g, _ in issued_rows), sum(t for _, t in issued_rows)
    calls = sum(sum(reply["hist"].values()) for reply in outcome.replies.values())
    store = outcome.stats()

    print(
        "Fleet soak: {} processes x {} threads, {} keys, {:.0f} s, {} s tokens, {:.0f} % token-endpoint faults, "
        "Redis stopped {:.0f} s (from {:.1f} s to {:.1f} s); Python {}".format(
            args.processes,
            args.threads,
            args.keys,
            ended - began,
            args.ttl,
            args.fault_rate * 100,
            resumed_at - paused_at,
            paused_at - began,
            resumed_at - began,
            sys.version.split()[0],
        )
    )
    print("  get_token calls:                       {:,}".format(calls))
    print("  caller errors while a valid token existed: {}  (goal 0)".format(len(while_valid)))
    print("  caller errors with no valid token:     {} {}".format(len(without), _kinds(without)))
    print("  worker crashes:                        {}".format(len(crashes)))
    print(
        "  outside the outage (before {:.1f} s, after {:.1f} s):".format(
            paused_at - began, quiet_after - began
        )
    )
    print(
        "    used tokens per key per lifetime:    {:.2f}  ({} tokens over {} generations; goal within 10 % of 1)".format(
            used_tokens / max(1, used_gens), used_tokens, used_gens
        )
    )
    print(
        "    issued tokens per key per lifetime:  {:.2f}  ({} over {} generations)".format(
            issued_tokens / max(1, issued_gens), issued_tokens, issued_gens
        )
    )
    print(
        "  token requests (all, with faulted attempts): {:,}; faults injected: {:,}".format(
            stats["token_requests"], stats["faults_fired"]
        )
    )
    print("  store stats (all processes):          {}".format(dict(sorted(store.items()))))
    for crash in crashes[:3]:
        print(crash, file=sys.stderr)
    ratio = used_tokens / max(1, used_gens)
    if ratio > 1.1:
        print(
            "  note: sharing outside the outage is {:.2f} tokens per key per lifetime (goal 1.1 or less)".format(
                ratio
            )
        )
    return 1 if while_valid or crashes else 0


def _kinds(errors: List[Any]) -> str:
    counts: Dict[str, int] = {}
    for error in errors:
        name = "{}({})".format(error[1][0], error[1][1])
        counts[name] = counts.get(name, 0) + 1
    return str(counts) if counts else ""


if __name__ == "__main__":
    sys.exit(main())
