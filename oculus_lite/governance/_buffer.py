"""The audit buffer: bounded by event count and by (approximate) bytes, first in, first out.

Policy when full: the *new* event is refused and counted; events already accepted are never
evicted, so everything the buffer accepted is either sent, rejected by the server (counted),
or still pending when a stop deadline passes (counted and logged). Events taken for sending
stay counted against the bounds until ``done`` says the server has them.
"""

import threading
from collections import deque
from typing import Deque, Generic, List, Tuple, TypeVar

__all__ = ["ACCEPTED", "FIRST", "REFUSED", "EventBuffer"]

T = TypeVar("T")
REFUSED, ACCEPTED, FIRST = 0, 1, 2


class EventBuffer(Generic[T]):
    """FIFO of ``(item, size)`` with count and byte bounds; thread-safe."""

    def __init__(self, max_events: int, max_bytes: int) -> None:
        self.max_events = max_events
        self.max_bytes = max_bytes
        self._queue: Deque[Tuple[T, int]] = deque()
        self._lock = threading.Lock()
        self._moved = threading.Condition(self._lock)
        self._count = 0  # queued + taken, not yet done
        self._bytes = 0
        self.accepted = 0  # sequence number of the last accepted event
        self.finished = 0  # how many accepted events are done (sent or rejected), in order
        self.refused = 0

    def offer(self, item: T, size: int) -> int:
        """Queue an event: REFUSED, ACCEPTED, or FIRST (accepted into an empty queue)."""
        with self._lock:
            if self._count >= self.max_events or self._bytes + size > self.max_bytes:
                self.refused += 1
                return REFUSED
            queue = self._queue
            queue.append((item, size))
            self._count += 1
            self._bytes += size
            self.accepted += 1
            return FIRST if len(queue) == 1 else ACCEPTED

    def refuse(self) -> None:
        """Count an event refused for another reason (emitted after stop)."""
        with self._lock:
            self.refused += 1

    def take(self, limit: int) -> List[Tuple[T, int]]:
        """Up to ``limit`` of the oldest events; they still count until ``done``."""
        with self._lock:
            queue = self._queue
            taken = [queue.popleft() for _ in range(min(limit, len(queue)))]
        return taken

    def done(self, count: int, size: int) -> None:
        """``count`` taken events (``size`` bytes) have left for good."""
        with self._moved:
            self._count -= count
            self._bytes -= size
            self.finished += count
            self._moved.notify_all()

    def queued(self) -> int:
        return len(self._queue)

    def pending(self) -> Tuple[int, int]:
        """(events, bytes) accepted and not yet done."""
        with self._lock:
            return self._count, self._bytes

    def wait_finished(self, target: int, timeout: float) -> bool:
        """Wait (real time) until the first ``target`` accepted events are done."""
        with self._moved:
            return self._moved.wait_for(lambda: self.finished >= target, timeout)
