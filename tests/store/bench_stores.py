"""Per-call latency of the token stores' primitives: prints a table, judges nothing.

    python tests/store/bench_stores.py [--calls 2000]

The file store always runs (in a fresh private directory under the temp directory); the Redis
store runs when redis-py, cryptography, the plugin and ``redis-server`` are all present (it
starts its own server on a free loopback port, as the tests do). These calls happen only on an
L1 miss, in the single-flight leader: the client's hit path never touches a store.
"""

import argparse
import importlib
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

ROOT = Path(__file__).resolve().parents[2]
for extra in (ROOT, ROOT / "transports" / "oculus_lite_redis"):
    if str(extra) not in sys.path:
        sys.path.append(str(extra))

from oculus_lite.tokens._file_store import FileTokenStore  # noqa: E402
from oculus_lite.tokens._store import SharedToken, StoreKey, key_material_for  # noqa: E402


def _key(scope: str) -> StoreKey:
    return StoreKey.build("https://issuer.example/oauth/token", "agent-1", scope, None, key_material_for("s"))


def _measure(call: Callable[[int], object], calls: int) -> Dict[str, float]:
    samples: List[float] = []
    for index in range(calls):
        start = time.perf_counter()
        call(index)
        samples.append(time.perf_counter() - start)
    samples.sort()
    return {"p50": samples[len(samples) // 2] * 1e6, "p99": samples[int(len(samples) * 0.99)] * 1e6}


def _bench(name: str, store: Any, calls: int) -> None:
    token = SharedToken("x" * 900, 600.0, scope="db:read", service_token="y" * 300)
    hit = _key("db:read")
    store.put(hit, token)

    def lease(index: int) -> None:
        store.acquire(hit, "o", 5)
        store.release(hit, "o")

    cases: Dict[str, Callable[[int], object]] = {
        "get (hit)": lambda index: store.get(hit),
        "get (miss)": lambda index: store.get(_key("miss")),
        "put (longer-lived)": lambda index: store.put(hit, SharedToken("x" * 900, 600.0 + index)),
        "acquire + release": lease,
        "cooling": lambda index: store.cooling(hit),
    }
    for case, call in cases.items():
        figures = _measure(call, calls)
        print(
            "{:<8} {:<20} p50 {:>8.1f} us   p99 {:>8.1f} us".format(
                name, case, figures["p50"], figures["p99"]
            )
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        store = FileTokenStore(Path(scratch) / "tokens")
        _bench("file", store, args.calls)
        store.close()
    try:
        plugin: Any = importlib.import_module("oculus_lite_redis")
        from tests.store._redis_server import REDIS_SERVER, RedisServer
    except ImportError as exc:
        print("redis   skipped: {}".format(exc))
        return
    if REDIS_SERVER is None:
        print("redis   skipped: redis-server is not installed")
        return
    server = RedisServer().start()
    try:
        redis_store = plugin.RedisTokenStore(url=server.url)
        _bench("redis", redis_store, args.calls)
        redis_store.close()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
