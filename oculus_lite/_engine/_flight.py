"""Single flight: the first caller to need a piece of work leads it; everyone else waits on the
same ``Flight`` instead of doing the work again. One primitive for the token cache (a flight
per key) and the JWKS verifier (one flight for the key set).

How it works: a ``Flight`` is settled exactly once, with a value or an error. Threads wait on
an Event; coroutines on a future of their own loop, woken with ``call_soon_threadsafe``, so a
flight led by a thread, a task on another loop or a worker thread wakes everyone alike. A
wait is bounded: past its timeout it raises ``NetworkTimeoutError`` (the leader may be stuck
on a transport that ignores its timeout). A leader that was cancelled settles its flight with
``Abandoned``: its waiters then take the lead themselves instead of failing.

``SingleFlight`` is the table of flights under way, keyed. It resets itself in a forked child
(the leader's thread does not exist there).
"""

import threading
from typing import TYPE_CHECKING, Dict, Generic, Hashable, List, Optional, Tuple, TypeVar

from ..exceptions import NetworkTimeoutError
from ._fork import after_fork_in_child

if TYPE_CHECKING:  # pragma: no cover
    import asyncio

__all__ = ["Abandoned", "Flight", "SingleFlight"]

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)


class Abandoned(Exception):
    """The leader of a flight stopped before finishing (cancelled, or its loop shut down)."""


def _wake(future: "asyncio.Future[None]") -> None:
    if not future.done():
        future.set_result(None)


class Flight(Generic[T]):
    """One piece of work under way, settled once with a value or an error."""

    __slots__ = ("_event", "_lock", "_value", "_error", "_waiters")

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._value: Optional[T] = None
        self._error: Optional[BaseException] = None
        self._waiters: List[Tuple["asyncio.AbstractEventLoop", "asyncio.Future[None]"]] = []

    def done(self) -> bool:
        return self._event.is_set()

    def set_result(self, value: T) -> None:
        self._settle(value, None)

    def set_error(self, error: BaseException) -> None:
        self._settle(None, error)

    def _settle(self, value: Optional[T], error: Optional[BaseException]) -> None:
        with self._lock:
            if self._event.is_set():
                return
            self._value, self._error = value, error
            self._event.set()
            waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            try:
                loop.call_soon_threadsafe(_wake, future)
            except RuntimeError:  # that loop is closed: nobody there is waiting any more
                pass

    def _outcome(self) -> T:
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]

    def result(self, timeout: float) -> T:
        """Block until settled (at most ``timeout`` seconds); the value, or raise its error."""
        if not self._event.wait(max(0.0, timeout)):
            raise _timed_out(timeout)
        return self._outcome()

    async def aresult(self, timeout: float) -> T:
        """``result`` for coroutines: never blocks the loop."""
        import asyncio

        loop = asyncio.get_running_loop()
        future: "asyncio.Future[None]" = loop.create_future()
        with self._lock:
            if not self._event.is_set():
                self._waiters.append((loop, future))
        if not future.done() and not self._event.is_set():
            try:
                await asyncio.wait_for(future, max(0.0, timeout))
            except asyncio.TimeoutError:
                raise _timed_out(timeout) from None
            finally:
                with self._lock:
                    if (loop, future) in self._waiters:
                        self._waiters.remove((loop, future))
        return self._outcome()


def _timed_out(timeout: float) -> NetworkTimeoutError:
    return NetworkTimeoutError(
        "waited {:g} s for a request another caller started, and it is still running".format(timeout)
    )


class SingleFlight(Generic[K, T]):
    """The flights under way, by key: ``lead_or_join(key)`` says whether the caller leads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: Dict[K, Flight[T]] = {}
        after_fork_in_child(self, SingleFlight._forget_all)

    def lead_or_join(self, key: K) -> Tuple[Flight[T], bool]:
        """(flight, True) when the caller must do the work; (flight, False) to wait on it."""
        with self._lock:
            flight = self._flights.get(key)
            if flight is not None:
                return flight, False
            flight = self._flights[key] = Flight()
            return flight, True

    def current(self, key: K) -> Optional[Flight[T]]:
        return self._flights.get(key)

    def busy(self, key: K) -> bool:
        return key in self._flights

    def finish(self, key: K, flight: Flight[T]) -> None:
        """Forget ``flight`` (if it is still the current one for ``key``); settle it separately."""
        with self._lock:
            if self._flights.get(key) is flight:
                del self._flights[key]

    def _forget_all(self) -> None:
        self._lock = threading.Lock()
        self._flights = {}
