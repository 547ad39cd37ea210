"""The background worker: one daemon thread per owner (a client, a verifier, a revocation
list) running its periodic and one-off jobs: refresh ahead, revocation polling, governance
sync.

How it works: jobs are named; each has a due time on the owner's clock. The thread sleeps
until the earliest one is due (``Clock.wait_until``, woken early by ``schedule``/``stop``),
runs it, and reschedules it when the job returns a delay. It holds its owner only weakly:
between jobs nothing keeps the owner alive, and when the owner is garbage-collected the
thread ends. A job that raises is logged with its traceback and retried later: the thread
never dies silently. It is a daemon, so it never keeps the interpreter alive; ``stop()``
waits at most the timeout it is given. In a forked child the thread does not exist: the
worker forgets it and starts a new one on the next ``schedule``/``ensure_running``.
"""

import logging
import threading
import weakref
from typing import Any, Callable, Dict, Optional, Tuple

from ._clock import Clock
from ._fork import after_fork_in_child

__all__ = ["Job", "Worker"]

log = logging.getLogger("oculus_lite")

#: A job: called with the owner; returns seconds until it should run again, or None.
Job = Callable[[Any], Optional[float]]

#: How long a job that raised waits before its next try.
RETRY_AFTER_CRASH = 5.0
#: The due time of a job that is running now.
_RUNNING = float("inf")


class _OwnerRef(weakref.ref):  # type: ignore[type-arg]
    """The owner, held weakly. When it is collected, its worker's thread (if one was started)
    is told to stop at once instead of at its next job.

    A plain weakref callback, not ``weakref.finalize``: owners are made and dropped on any
    thread, and CPython's exit hook walks finalize's registry without a lock ("dictionary
    changed size during iteration" when a daemon thread adds or removes one meanwhile).
    """

    worker: "Optional[weakref.ref[Worker]]" = None


def _owner_collected(ref: "weakref.ref[Any]") -> None:
    worker_ref = getattr(ref, "worker", None)
    worker = worker_ref() if worker_ref is not None else None
    if worker is not None:
        worker.signal_stop()


class Worker:
    """Runs an owner's named jobs on one daemon thread, started on first use."""

    def __init__(self, owner: object, name: str, clock: Clock) -> None:
        self._owner = _OwnerRef(owner, _owner_collected)
        self.name = name
        self._clock = clock
        self._lock = threading.Lock()
        # The thread's wake-up event (and the owner ref's link back here) are made when the
        # thread first starts: most clients never need one, and a client is built often (per
        # request in some apps), so construction stays small.
        self._wakeup: Optional[threading.Event] = None
        self._jobs: Dict[str, Tuple[float, Job]] = {}
        self._thread: Optional[threading.Thread] = None
        self._stopped = False
        after_fork_in_child(self, Worker._forget_thread)

    def __repr__(self) -> str:
        return "Worker({!r}, jobs={}, running={})".format(self.name, sorted(self._jobs), self.running)

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def has(self, name: str) -> bool:
        return name in self._jobs

    def schedule(self, name: str, delay: float, job: Job) -> None:
        """Run ``job`` in ``delay`` seconds (replacing a job of the same name)."""
        with self._lock:
            if self._stopped:
                return
            self._jobs[name] = (self._clock.monotonic() + max(0.0, delay), job)
            self._start_locked()
        self._wake()

    def cancel(self, name: str) -> None:
        with self._lock:
            self._jobs.pop(name, None)

    def ensure_running(self) -> None:
        """Start the thread again if jobs are waiting and it is gone (after a fork)."""
        if self._jobs and not self.running:
            with self._lock:
                if not self._stopped:
                    self._start_locked()

    def stop(self, timeout: float) -> bool:
        """Stop the thread; wait at most ``timeout`` s. True when it has ended."""
        with self._lock:
            self._stopped = True
            self._jobs.clear()
            thread = self._thread
        self._wake()
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(max(0.0, timeout))
        return not thread.is_alive()

    def signal_stop(self) -> Optional[threading.Thread]:
        """Stop without waiting; returns the thread to join elsewhere (e.g. off the event loop)."""
        with self._lock:
            self._stopped = True
            self._jobs.clear()
            thread = self._thread
        self._wake()
        return thread if thread is not threading.current_thread() else None

    # ------------------------------------------------------------------ internals

    def _wake(self) -> None:
        wakeup = self._wakeup
        if wakeup is not None:
            wakeup.set()

    def _forget_thread(self) -> None:
        self._lock = threading.Lock()
        self._wakeup = None  # made again (unlocked) when the child's thread starts
        self._thread = None
        now = self._clock.monotonic()  # a job the parent's thread was running is due again here
        self._jobs = {name: (now if due == _RUNNING else due, job) for name, (due, job) in self._jobs.items()}

    def _start_locked(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        owner = self._owner()
        if owner is None:
            return
        del owner
        if self._owner.worker is None:
            self._owner.worker = weakref.ref(self)
        if self._wakeup is None:
            self._wakeup = threading.Event()
        wakeup = self._wakeup
        thread = threading.Thread(target=self._run, args=(wakeup,), name=self.name, daemon=True)
        try:
            thread.start()
        except RuntimeError as exc:
            # The interpreter is shutting down (3.12+ refuses new threads then), or the process
            # is out of threads: the jobs stay queued, and callers still get what they asked
            # for, because nothing a caller waits on depends on this thread.
            log.warning("%s: cannot start its background thread (%s); background jobs wait", self.name, exc)
            return
        self._thread = thread

    def _next(self) -> Tuple[Optional[str], float, Optional[Job]]:
        with self._lock:
            if self._stopped:
                raise _Stop
            if not self._jobs:
                return None, 0.0, None
            name = min(self._jobs, key=lambda n: self._jobs[n][0])
            due, job = self._jobs[name]
            return name, due, job

    def _run(self, wakeup: threading.Event) -> None:
        try:
            while True:
                wakeup.clear()
                name, due, job = self._next()
                if job is None or due > self._clock.monotonic():
                    idle = due if job is not None else self._clock.monotonic() + 3600.0
                    self._clock.wait_until(idle, wakeup)
                    continue
                assert name is not None
                with self._lock:
                    if self._jobs.get(name, (None, None))[1] is job:
                        self._jobs[name] = (_RUNNING, job)  # still registered while it runs
                self._run_job(name, job)
        except _Stop:
            pass
        log.debug("worker %s stopped", self.name)

    def _run_job(self, name: str, job: Job) -> None:
        owner = self._owner()
        if owner is None:
            raise _Stop
        try:
            again = job(owner)
        except BaseException:  # never die silently; try again later
            log.exception(
                "background job %r of %s failed; retrying in %g s", name, self.name, RETRY_AFTER_CRASH
            )
            again = RETRY_AFTER_CRASH
        finally:
            del owner  # hold the owner only while its job runs
        with self._lock:
            current = self._jobs.get(name)
            if (
                current is not None and current[0] == _RUNNING and current[1] is job
            ):  # not rescheduled meanwhile
                if again is None or self._stopped:
                    del self._jobs[name]
                else:
                    self._jobs[name] = (self._clock.monotonic() + max(0.0, again), job)


class _Stop(Exception):
    pass
