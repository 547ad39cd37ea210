"""Clocks: every component that waits or expires things reads time through one of these, so
tests move time by hand instead of sleeping.

``SystemClock`` is the real one. ``ManualClock`` is for tests: time moves only when
``advance()`` is called or when a caller sleeps (a sleep on a manual clock returns at once,
having moved time forward by its length). Background workers never move time: they wait
with ``wait_until``, which returns when someone else has moved the clock far enough.
"""

import threading
import time
from typing import Optional, Protocol, runtime_checkable

__all__ = ["SYSTEM_CLOCK", "Clock", "ManualClock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """What oculus_lite needs from a clock."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (deadlines, expiry)."""
        ...

    def time(self) -> float:
        """Seconds since the epoch (token claims, wall-clock display)."""
        ...

    def sleep(self, seconds: float, interrupt: Optional[threading.Event] = None) -> bool:
        """Wait ``seconds``; return True early when ``interrupt`` is set."""
        ...

    async def asleep(self, seconds: float) -> None:
        """Wait ``seconds`` without blocking the event loop."""
        ...

    def wait_until(self, deadline: float, wakeup: threading.Event) -> None:
        """For background threads: return when ``monotonic()`` reaches ``deadline`` or ``wakeup``
        is set. Never moves time."""
        ...


class SystemClock:
    """The real clock: ``time.monotonic``, ``time.time``, real sleeps."""

    # Plain functions as attributes: ``clock.monotonic`` is then the builtin itself, so a hot
    # path that keeps ``clock.monotonic`` pays nothing over calling ``time.monotonic``.
    monotonic = staticmethod(time.monotonic)
    time = staticmethod(time.time)

    def sleep(self, seconds: float, interrupt: Optional[threading.Event] = None) -> bool:
        if interrupt is not None:
            return interrupt.wait(max(0.0, seconds))
        if seconds > 0:
            time.sleep(seconds)
        return False

    async def asleep(self, seconds: float) -> None:
        import asyncio

        await asyncio.sleep(max(0.0, seconds))

    def wait_until(self, deadline: float, wakeup: threading.Event) -> None:
        wakeup.wait(max(0.0, deadline - time.monotonic()))

    def __repr__(self) -> str:
        return "SystemClock()"


SYSTEM_CLOCK = SystemClock()


class ManualClock:
    """A clock for tests. ``advance(s)`` moves it; ``sleep(s)`` moves it by ``s`` and returns at
    once; threads in ``wait_until`` wake when it has moved far enough. Both readings move
    together, starting at ``start`` (wall) and ``monotonic_start``."""

    def __init__(self, start: Optional[float] = None, *, monotonic_start: float = 1000.0) -> None:
        self._wall0 = time.time() if start is None else float(start)
        self._mono0 = float(monotonic_start)
        self._elapsed = 0.0
        self._moved = threading.Condition()

    def monotonic(self) -> float:
        return self._mono0 + self._elapsed

    def time(self) -> float:
        return self._wall0 + self._elapsed

    def advance(self, seconds: float) -> None:
        """Move time forward (never back) and wake background waiters."""
        if not seconds >= 0:
            raise ValueError("a ManualClock only moves forward")
        with self._moved:
            self._elapsed += seconds
            self._moved.notify_all()

    def sleep(self, seconds: float, interrupt: Optional[threading.Event] = None) -> bool:
        if interrupt is not None and interrupt.is_set():
            return True
        self.advance(max(0.0, seconds))
        return interrupt is not None and interrupt.is_set()

    async def asleep(self, seconds: float) -> None:
        import asyncio

        self.advance(max(0.0, seconds))
        await asyncio.sleep(0)

    def wait_until(self, deadline: float, wakeup: threading.Event) -> None:
        with self._moved:
            while self.monotonic() < deadline and not wakeup.is_set():
                # Short real waits: ``wakeup`` is an Event this clock cannot be notified through.
                self._moved.wait(0.02)

    def __repr__(self) -> str:
        return "ManualClock(elapsed={:.3f})".format(self._elapsed)
