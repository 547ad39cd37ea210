"""One process of a test fleet: it builds a ``Client`` (with a token store, or none) and runs
callers on threads when the coordinator says so.

Loaded by its top-level name (``_fleet_worker``) in processes started with the ``spawn``
method, so it imports nothing from the test packages. The coordinator (``_fleet_harness``)
talks to it over a ``multiprocessing`` pipe: one request, one reply, except ``prepare``
(reply: ready) followed by ``go`` (reply: what the callers got). Replies carry tokens so the
coordinator can verify them; nothing here decides whether a test passed.
"""

import json
import math
import os
import signal
import threading
import time
import traceback
import warnings
from collections import Counter
from typing import Any, Callable, Dict, List, Optional, Tuple

Key = Tuple[str, Optional[str]]

#: Latency histogram: bucket i holds samples in [BASE**i, BASE**(i+1)) nanoseconds (2 % wide).
BASE = 1.02


def bucket(seconds: float) -> int:
    return int(math.log(max(seconds * 1e9, 1.0), BASE))


class _Spy:
    """Wraps a real store: writes a marker file when a lease is won, and can leave leases
    unextended (a leader whose extensions never land). Everything else goes straight through."""

    def __init__(self, inner: Any, spy_dir: Optional[str], extend: bool) -> None:
        self._inner = inner
        self._spy_dir = spy_dir
        self._extend = extend
        self._won = 0
        self._lock = threading.Lock()
        self.verify_reads = getattr(inner, "verify_reads", False)

    def acquire(self, key: Any, owner: str, seconds: float) -> bool:
        won = bool(self._inner.acquire(key, owner, seconds))
        if won and self._spy_dir is not None:
            with self._lock:
                self._won += 1
                count = self._won
            scope = key.canonical.split("\n")[3]  # normalised, as the emulator records it
            path = os.path.join(self._spy_dir, "won-{}-{}".format(os.getpid(), count))
            with open(path + ".tmp", "w") as fh:
                fh.write(json.dumps({"pid": os.getpid(), "scope": scope}))
            os.replace(path + ".tmp", path)
        return won

    def extend(self, key: Any, owner: str, seconds: float) -> bool:
        if not self._extend:
            return True  # says yes, does nothing: the lease lapses under its holder
        return bool(self._inner.extend(key, owner, seconds))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _Floor:
    """The least a cache hit can cost: a method doing a dict lookup and a monotonic compare
    (the shape of ``bench_core``'s floor), called like ``get_token``."""

    def __init__(self, keys: List[Key]) -> None:
        forever = time.monotonic() + 1e9
        self._entries = {(key[0] if key[1] is None else key): forever for key in keys}

    def get_token(self, scope: str, audience: Optional[str] = None) -> str:
        deadline = self._entries.get(scope if audience is None else (scope, audience))
        if deadline is not None and time.monotonic() < deadline:
            return scope
        raise KeyError(scope)


def _build_store(spec: Optional[Dict[str, Any]]) -> Any:
    if spec is None:
        return None
    from oculus_lite.tokens._store_spec import open_store

    store = open_store(spec["url"])
    if spec.get("spy_dir") or not spec.get("extend", True):
        store = _Spy(store, spec.get("spy_dir"), spec.get("extend", True))
    return store


class _Callers:
    """M threads that wait for ``go`` and then each run ``work(index)``."""

    def __init__(self, threads: int, work: Callable[[int], Any]) -> None:
        self._go = threading.Event()
        self._results: List[Any] = [None] * threads
        self._threads = [
            threading.Thread(target=self._run, args=(index, work), daemon=True) for index in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    def _run(self, index: int, work: Callable[[int], Any]) -> None:
        self._go.wait()
        try:
            self._results[index] = work(index)
        except BaseException:
            self._results[index] = {"crash": traceback.format_exc()}

    def go(self) -> List[Any]:
        self._go.set()
        for thread in self._threads:
            thread.join()
        return self._results


class _State:
    def __init__(self) -> None:
        self.client: Any = None
        self.store: Any = None
        self.callers: Optional[_Callers] = None
        self.merge: Callable[[List[Any]], Dict[str, Any]] = _merge_calls

    # ------------------------------------------------------------------ ops

    def setup(self, msg: Dict[str, Any]) -> Dict[str, Any]:
        from oculus_lite import Client
        from oculus_lite.tokens import _fleet

        self.close({})
        for name, value in (msg.get("patches") or {}).items():
            setattr(_fleet, name, value)
        self.store = _build_store(msg.get("store"))
        self.client = Client(
            msg["client_id"],
            msg["secret"],
            msg["url"],
            store=self.store,
            timeout=msg.get("timeout", 30.0),
            retries=msg.get("retries", 3),
            refresh_margin=msg.get("refresh_margin", 10.0),
            revocation_interval=msg.get("revocation_interval"),
        )
        return {"pid": os.getpid()}

    def prepare(self, msg: Dict[str, Any]) -> Dict[str, Any]:
        """Callers that each ask once for every key (starting at a different key), on ``go``."""
        keys = [tuple(k) for k in msg["keys"]]
        client = self.client

        def work(index: int) -> List[Tuple[int, str, Any, float]]:
            out: List[Tuple[int, str, Any, float]] = []
            for step in range(len(keys)):
                at = (index + step) % len(keys)
                scope, audience = keys[at]
                start = time.perf_counter()
                try:
                    token = client.get_token(scope, audience)
                    out.append((at, "ok", token, time.perf_counter() - start))
                except Exception as exc:
                    out.append((at, "error", _describe(exc), time.perf_counter() - start))
            return out

        self.callers = _Callers(msg["threads"], work)
        self.merge = _merge_calls
        return {"ready": os.getpid()}

    def prepare_loop(self, msg: Dict[str, Any]) -> Dict[str, Any]:
        """Callers that loop over the keys for ``seconds`` (``what``: ``get`` for get_token,
        ``floor`` for ``_Floor``, ``soak`` for get_token noting each new token's expiry),
        pausing ``pace`` seconds between calls."""
        keys = [tuple(k) for k in msg["keys"]]
        seconds, pace, what = msg["seconds"], msg.get("pace", 0.0), msg.get("what", "get")
        client = self.client if what != "floor" else _Floor(keys)
        # soak: the latest expiry (wall clock, the client's own view) of a token this process
        # handed out, per key; an error before it is an error while a valid token existed
        valid_until: Dict[int, float] = {}
        valid_lock = threading.Lock()

        def work(index: int) -> Dict[str, Any]:
            hist: Counter[int] = Counter()
            errors: List[Any] = []
            tokens: Dict[int, Dict[str, float]] = {}
            end = time.monotonic() + seconds
            step = index
            perf = time.perf_counter
            while time.monotonic() < end:
                at = step % len(keys)
                step += 1
                key = keys[at]
                start = perf()
                try:
                    token = client.get_token(key[0], key[1])
                    took = perf() - start
                except Exception as exc:
                    now = time.time()
                    with valid_lock:
                        while_valid = now < valid_until.get(at, 0.0)
                    errors.append((at, _describe(exc), now, while_valid))
                    continue
                hist[bucket(took)] += 1
                if what != "floor":
                    seen = tokens.setdefault(at, {})
                    if token not in seen:
                        seen[token] = time.time()
                        if what == "soak":
                            _note_expiry(client, key, token, at, valid_until, valid_lock)
                if pace:
                    time.sleep(pace)
            return {"hist": dict(hist), "errors": errors, "tokens": tokens}

        self.callers = _Callers(msg["threads"], work)
        self.merge = _merge_loops
        return {"ready": os.getpid()}

    def go(self, msg: Dict[str, Any]) -> Dict[str, Any]:
        assert self.callers is not None
        results = self.callers.go()
        self.callers = None
        out = self.merge(results)
        out["pid"] = os.getpid()
        out["stats"] = self.client.store_stats()
        return out

    def check_revocation(self, msg: Dict[str, Any]) -> Dict[str, Any]:
        return {"changed": self.client.check_revocation()}

    def invalidate(self, msg: Dict[str, Any]) -> Dict[str, Any]:
        return {"held": [self.client.invalidate_token(token) for token in msg["tokens"]]}

    def wait_new(self, msg: Dict[str, Any]) -> Dict[str, Any]:
        """Ask for each key until the token differs from ``old`` (a background refresh landed)."""
        out: Dict[int, str] = {}
        deadline = time.monotonic() + msg.get("within", 30.0)
        for index, (scope, audience) in enumerate(tuple(k) for k in msg["keys"]):
            while True:
                token = self.client.get_token(scope, audience)
                if token != msg["old"][index] or time.monotonic() > deadline:
                    out[index] = token
                    break
                time.sleep(0.02)
        return {"tokens": out, "stats": self.client.store_stats()}

    def fork(self, msg: Dict[str, Any]) -> Dict[str, Any]:
        """The gunicorn ``--preload`` shape: this process's client (built before the fork,
        maybe used) serves forked children; each runs callers and reports through a pipe."""
        children = []
        for _ in range(msg["children"]):
            read_fd, write_fd = os.pipe()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads alive
                pid = os.fork()
            if pid == 0:  # pragma: no cover - the child
                code = 1
                try:
                    os.close(read_fd)
                    self.prepare(msg)
                    reply = self.go(msg)
                    data = json.dumps(reply).encode("utf-8")
                    while data:
                        data = data[os.write(write_fd, data) :]
                    code = 0
                finally:
                    os._exit(code)
            os.close(write_fd)
            children.append((pid, read_fd))
        replies = []
        for pid, read_fd in children:
            chunks = []
            while True:
                chunk = os.read(read_fd, 65536)
                if not chunk:
                    break
                chunks.append(chunk)
            os.close(read_fd)
            _, status = os.waitpid(pid, 0)
            replies.append({"status": status, "reply": json.loads(b"".join(chunks) or b"null")})
        return {"children": replies}

    def fork_mid_fetch(self, msg: Dict[str, Any]) -> Dict[str, Any]:
        """Fork while this process leads a fetch (it holds the store's lease): the child
        reports whether it thinks it holds a lease, then asks for the same key."""
        scope, audience = msg["key"]
        got: Dict[str, str] = {}
        thread = threading.Thread(target=lambda: got.update(token=self.client.get_token(scope, audience)))
        thread.start()
        deadline = time.monotonic() + 30.0
        while not self.client._fleet.has_leases and time.monotonic() < deadline:
            time.sleep(0.005)
        read_fd, write_fd = os.pipe()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 1
            try:
                os.close(read_fd)
                held = self.client._fleet.has_leases
                token = self.client.get_token(scope, audience)
                data = json.dumps({"held": held, "token": token}).encode("utf-8")
                while data:
                    data = data[os.write(write_fd, data) :]
                code = 0
            finally:
                os._exit(code)
        os.close(write_fd)
        chunks = []
        while True:
            chunk = os.read(read_fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
        os.close(read_fd)
        _, status = os.waitpid(pid, 0)
        thread.join()
        return {
            "parent": got.get("token"),
            "child": json.loads(b"".join(chunks) or b"null"),
            "status": status,
        }

    def stats(self, msg: Dict[str, Any]) -> Dict[str, Any]:
        return {"stats": self.client.store_stats() if self.client is not None else {}}

    def close(self, msg: Dict[str, Any]) -> Dict[str, Any]:
        client, store = self.client, self.store
        self.client = self.store = None
        if client is not None:
            client.stop()
        if store is not None:
            store.close()
        return {}


def _note_expiry(
    client: Any, key: Key, token: str, at: int, valid_until: Dict[int, float], lock: threading.Lock
) -> None:
    try:
        info = client.get_token_info(key[0], key[1])
    except Exception:
        return  # counted when get_token itself fails
    if info.access_token == token:
        with lock:
            valid_until[at] = max(valid_until.get(at, 0.0), info.expires_at.timestamp())


def _describe(exc: BaseException) -> List[Any]:
    return [type(exc).__name__, getattr(exc, "code", None), str(exc)[:300]]


def _merge_calls(results: List[Any]) -> Dict[str, Any]:
    tokens: Dict[int, Dict[str, int]] = {}
    errors: List[Any] = []
    latencies: List[float] = []
    crashes = []
    for result in results:
        if isinstance(result, dict):
            crashes.append(result["crash"])
            continue
        for at, outcome, value, took in result:
            latencies.append(took)
            if outcome == "ok":
                per = tokens.setdefault(at, {})
                per[value] = per.get(value, 0) + 1
            else:
                errors.append([at] + value)
    return {"tokens": tokens, "errors": errors, "latencies": latencies, "crashes": crashes}


def _merge_loops(results: List[Any]) -> Dict[str, Any]:
    hist: Counter[int] = Counter()
    errors: List[Any] = []
    tokens: Dict[int, Dict[str, float]] = {}
    crashes = []
    for result in results:
        if "crash" in result:
            crashes.append(result["crash"])
            continue
        hist.update({int(k): v for k, v in result["hist"].items()})
        errors.extend(result["errors"])
        for at, seen in result["tokens"].items():
            mine = tokens.setdefault(at, {})
            for token, first in seen.items():
                mine[token] = min(first, mine.get(token, first))
    return {"hist": dict(hist), "errors": errors, "tokens": tokens, "crashes": crashes}


_OPS = {
    "setup": _State.setup,
    "prepare": _State.prepare,
    "prepare_loop": _State.prepare_loop,
    "go": _State.go,
    "check_revocation": _State.check_revocation,
    "invalidate": _State.invalidate,
    "wait_new": _State.wait_new,
    "fork": _State.fork,
    "fork_mid_fetch": _State.fork_mid_fetch,
    "stats": _State.stats,
    "close": _State.close,
}


def main(conn: Any) -> None:
    """Serve the coordinator's requests until it closes the pipe."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the coordinator, which stops us
    for name in ("OCULUS_TOKEN_STORE", "OCULUS_LAMBDA_CACHE"):  # the store is the coordinator's choice
        os.environ.pop(name, None)
    state = _State()
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            break
        try:
            reply = _OPS[msg["op"]](state, msg)
        except Exception:
            reply = {"failed": traceback.format_exc()}
        try:
            conn.send(reply)
        except OSError:
            break
    try:
        state.close({})
    except Exception:
        pass
