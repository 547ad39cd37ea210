"""A real ``redis-server`` for the tests: loopback, a free port, no persistence, stopped by
the fixture and killed with the test process (PR_SET_PDEATHSIG on Linux)."""

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import List, Optional

REDIS_SERVER = shutil.which("redis-server") or (
    "/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None
)

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        except Exception:
            pass


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One ``redis-server`` process; ``extra`` are more command-line options (e.g. ACL users)."""

    def __init__(self, extra: Optional[List[str]] = None) -> None:
        if REDIS_SERVER is None:
            raise RuntimeError("redis-server is not installed (apt-get install -y redis-server)")
        self.extra = list(extra or [])
        self.port = 0
        self.process: Optional["subprocess.Popen[bytes]"] = None
        self._dir = tempfile.mkdtemp(prefix="oculus-redis-")
        self._paused = False

    @property
    def url(self) -> str:
        return "redis://127.0.0.1:{}/0".format(self.port)

    def start(self) -> "RedisServer":
        """Start on a free port (or on the same port again after ``kill``)."""
        for _ in range(5):
            port = self.port or _free_port()
            self.process = subprocess.Popen(
                [
                    str(REDIS_SERVER),
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    self._dir,
                    "--daemonize",
                    "no",
                    "--logfile",
                    "",
                    "--loglevel",
                    "warning",
                ]
                + self.extra,  # fmt: skip
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,
            )
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and self.process.poll() is None:
                if _ping(port) or b"NOAUTH" in self._probe(port):
                    self.port = port
                    return self
                time.sleep(0.02)
            self._reap()
            if self.port:  # a restart on the same port must not move
                break
        raise RuntimeError("redis-server did not start")

    @staticmethod
    def _probe(port: int) -> bytes:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64)
        except OSError:
            return b""

    def pause(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)
        self._paused = False

    def kill(self) -> None:
        """SIGKILL, as a crash would; ``start()`` brings it back on the same port."""
        self._reap()

    def stop(self) -> None:
        self._reap(graceful=True)
        shutil.rmtree(self._dir, ignore_errors=True)

    def _reap(self, graceful: bool = False) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        if self._paused:
            process.send_signal(signal.SIGCONT)
            self._paused = False
        if graceful:
            process.terminate()
            try:
                process.wait(10)
                return
            except subprocess.TimeoutExpired:
                pass
        process.kill()
        process.wait(10)
