"""The coordinator's side of a test fleet: worker processes (``spawn``), a barrier, results.

A ``Fleet`` starts N processes running ``_fleet_worker.main`` and talks to each over a pipe.
``burst`` is the cold-start shape every fleet test uses: every process builds its callers (M
threads blocked on an event) and says so; only when all N are ready does the coordinator
send ``go`` to each, so no process starts before the others are ready (the barrier; a
process killed mid-burst cannot break it). The tests, ``bench_fleet.py`` and ``fleet_soak.py``
share this module; it judges nothing.
"""

import multiprocessing
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PLUGIN_DIR = ROOT / "transports" / "oculus_lite_redis"

Key = Tuple[str, Optional[str]]


def importable() -> None:
    """Make the worker module and the Redis plugin importable here and in spawned children
    (a spawned child starts with this process's ``sys.path``). Appended: an installed
    package (tox) wins over the source tree."""
    for extra in (HERE, PLUGIN_DIR):
        if str(extra) not in sys.path:
            sys.path.append(str(extra))


@dataclass
class Outcome:
    """What one burst gave the callers of every process that answered."""

    replies: Dict[int, Dict[str, Any]]  # pid -> the worker's reply
    keys: List[Key]

    def tokens(self, index: int) -> Dict[str, int]:
        """Every token callers got for key ``index``, with how many calls got it."""
        out: Dict[str, int] = {}
        for reply in self.replies.values():
            for token, count in _by_key(reply["tokens"]).get(index, {}).items():
                out[token] = out.get(token, 0) + count
        return out

    def first_seen(self, index: int) -> Dict[str, float]:
        """For looping callers: every token callers got for key ``index``, with the wall-clock
        instant a caller first got it."""
        out: Dict[str, float] = {}
        for reply in self.replies.values():
            for token, instant in _by_key(reply["tokens"]).get(index, {}).items():
                out[token] = min(instant, out.get(token, instant))
        return out

    def errors(self) -> List[Any]:
        return [error for reply in self.replies.values() for error in reply["errors"]]

    def crashes(self) -> List[str]:
        return [crash for reply in self.replies.values() for crash in reply.get("crashes", [])]

    def calls(self) -> int:
        return sum(count for index in range(len(self.keys)) for count in self.tokens(index).values()) + len(
            self.errors()
        )

    def stats(self) -> Dict[str, int]:
        total: Dict[str, int] = {}
        for reply in self.replies.values():
            for name, value in reply["stats"].items():
                total[name] = total.get(name, 0) + value
        return total

    def latencies(self) -> List[float]:
        return sorted(t for reply in self.replies.values() for t in reply.get("latencies", []))


def _by_key(tokens: Dict[Any, Any]) -> Dict[int, Any]:
    return {int(k): v for k, v in tokens.items()}  # JSON (a forked child's reply) makes keys text


@dataclass
class _Worker:
    process: Any
    conn: Any
    pid: int = 0
    alive: bool = True


@dataclass
class Fleet:
    """N worker processes; ``setup`` gives each a fresh client, ``burst`` runs callers."""

    size: int
    workers: List[_Worker] = field(default_factory=list)

    def __post_init__(self) -> None:
        importable()
        self._ctx = multiprocessing.get_context("spawn")
        for _ in range(self.size):
            self.workers.append(self._spawn())

    def _spawn(self) -> _Worker:
        import importlib

        target = importlib.import_module("_fleet_worker").main
        parent, child = self._ctx.Pipe()
        process = self._ctx.Process(target=target, args=(child,), daemon=True, name="oculus-fleet-worker")
        process.start()
        child.close()
        return _Worker(process, parent, process.pid or 0)

    # ------------------------------------------------------------------ lifecycle

    def replace_dead(self) -> None:
        """Start a new process for each one killed (tests kill leaders on purpose)."""
        for index, worker in enumerate(self.workers):
            if not worker.alive or not worker.process.is_alive():
                worker.conn.close()
                worker.process.join(5)
                self.workers[index] = self._spawn()

    def close(self) -> None:
        for worker in self.workers:
            try:
                worker.conn.close()
            except OSError:
                pass
        for worker in self.workers:
            worker.process.join(5)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(5)

    def __enter__(self) -> "Fleet":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def pids(self) -> List[int]:
        return [w.pid for w in self.workers if w.alive]

    def kill(self, pid: int) -> None:
        """SIGKILL one worker, as the OOM killer or a crash would."""
        for worker in self.workers:
            if worker.pid == pid:
                os.kill(pid, signal.SIGKILL)
                worker.process.join(10)
                worker.alive = False
                return
        raise KeyError(pid)

    # ------------------------------------------------------------------ requests

    def ask(self, msg: Dict[str, Any], workers: Optional[Sequence[_Worker]] = None) -> Dict[int, Any]:
        """Send ``msg`` to every live worker (or ``workers``); their replies by pid."""
        chosen = [w for w in (workers if workers is not None else self.workers) if w.alive]
        for worker in chosen:
            worker.conn.send(msg)
        return {worker.pid: self._reply(worker) for worker in chosen}

    def _reply(self, worker: _Worker, timeout: float = 300.0) -> Any:
        if not worker.conn.poll(timeout):
            raise TimeoutError("fleet worker {} did not answer".format(worker.pid))
        reply = worker.conn.recv()
        if isinstance(reply, dict) and "failed" in reply:
            raise RuntimeError("fleet worker {} failed:\n{}".format(worker.pid, reply["failed"]))
        return reply

    def setup(self, workers: Optional[Sequence[_Worker]] = None, **options: Any) -> None:
        """A fresh ``Client`` in every process (or ``workers``): ``client_id``, ``secret``,
        ``url``, ``store`` (``{"url": ...}`` or None), ``timeout``, ``refresh_margin``,
        ``revocation_interval``, ``patches``."""
        self.ask(dict(options, op="setup"), workers)

    def start(
        self,
        keys: Sequence[Key],
        threads: int,
        *,
        loop: Optional[Dict[str, Any]] = None,
        workers: Optional[Sequence[_Worker]] = None,
    ) -> "Burst":
        """Every process (or ``workers``) readies its callers; then all are released together.
        ``loop``: callers loop (``seconds``, ``pace``, ``what``) instead of asking once per key."""
        live = [w for w in (workers if workers is not None else self.workers) if w.alive]
        msg: Dict[str, Any] = {"op": "prepare", "keys": list(keys), "threads": threads}
        if loop is not None:
            msg.update(loop, op="prepare_loop")
        for worker in live:
            worker.conn.send(msg)
        for worker in live:
            self._reply(worker)
        for worker in live:  # the barrier opens: everyone is ready
            worker.conn.send({"op": "go"})
        return Burst(self, live, list(keys))

    def burst(self, keys: Sequence[Key], threads: int) -> Outcome:
        return self.start(keys, threads).finish()


@dataclass
class Burst:
    """A burst under way: ``finish`` collects the replies of the processes still alive."""

    fleet: Fleet
    workers: List[_Worker]
    keys: List[Key]

    def finish(self, timeout: float = 300.0) -> Outcome:
        replies: Dict[int, Dict[str, Any]] = {}
        for worker in self.workers:
            if not worker.alive:
                continue
            replies[worker.pid] = self.fleet._reply(worker, timeout)
        return Outcome(replies, self.keys)


def wait_for(predicate: Any, within: float = 60.0, every: float = 0.01) -> None:
    """Poll until ``predicate()`` holds (a sync point, not a timing check); TimeoutError after
    ``within`` seconds, which only a hung run reaches."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached within {} s".format(within))
        time.sleep(every)


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * fraction))]


def scopes(prefix: str, count: int) -> List[Key]:
    return [("{}:{}".format(prefix, index), None) for index in range(count)]


def generations(first_seen: Iterable[float], gap: float) -> List[List[float]]:
    """Group instants into generations: a gap longer than ``gap`` starts a new one."""
    groups: List[List[float]] = []
    for instant in sorted(first_seen):
        if groups and instant - groups[-1][-1] <= gap:
            groups[-1].append(instant)
        else:
            groups.append([instant])
    return groups


# ---------------------------------------------------------------------- Redis


def redis_missing() -> Optional[str]:
    """Why the Redis store cannot run here, or None."""
    importable()
    import importlib

    for module, why in (
        ("redis", "redis-py is not installed (tox -e store-redis runs these)"),
        ("cryptography", "cryptography is not installed (tox -e store-redis runs these)"),
        ("oculus_lite_redis", "the oculus-lite-redis plugin does not import"),
    ):
        try:
            importlib.import_module(module)
        except ImportError:
            return why
    if redis_server_module().REDIS_SERVER is None:
        return "redis-server is not installed (apt-get install -y redis-server)"
    return None


def redis_server_module() -> Any:
    """``tests/store/_redis_server.py`` (a real redis-server on a free loopback port), loaded by
    path: the two test packages do not import each other."""
    import importlib.util

    name = "_oculus_fleet_redis_server"
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, ROOT / "tests" / "store" / "_redis_server.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return module


#: The ACL user the fleet runs as: only the ``oculus:*`` keys and the commands the store
#: sends (docs/fleet.md gives this recipe).
FLEET_USER, FLEET_PASSWORD = "fleet", "fleet-acl-pa55word"
ADMIN_USER, ADMIN_PASSWORD = "admin", "admin-acl-pa55word"
ACL_RULES = [
    "--user", "default", "off",
    "--user", FLEET_USER, "on", ">" + FLEET_PASSWORD, "~oculus:*", "resetchannels", "-@all",
    "+get", "+set", "+del", "+pttl", "+pexpire", "+eval", "+evalsha", "+script|load", "+multi", "+exec",
    "--user", ADMIN_USER, "on", ">" + ADMIN_PASSWORD, "~*", "&*", "+@all",
]  # fmt: skip


def start_redis(acl: bool = True) -> Any:
    """A started ``RedisServer`` (with the fleet's ACL user and an admin unless ``acl=False``)."""
    return redis_server_module().RedisServer(ACL_RULES if acl else None).start()


def fleet_url(server: Any) -> str:
    return "redis://{}:{}@127.0.0.1:{}/0".format(FLEET_USER, FLEET_PASSWORD, server.port)


def admin_client(server: Any, acl: bool = True) -> Any:
    import importlib

    redis = importlib.import_module("redis")  # a test-only dependency (tox -e store-redis)

    if acl:
        return redis.Redis(port=server.port, username=ADMIN_USER, password=ADMIN_PASSWORD, socket_timeout=10)
    return redis.Redis(port=server.port, socket_timeout=10)
