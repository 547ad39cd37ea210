"""The revocation list (``GET /oauth/revoked-tokens``), refreshed by a poller.

The token client must never hand out a cached token whose ``jti`` was revoked,
and a verifier must refuse one; both read ``revoked`` (a frozenset swapped
atomically) on their hot path without taking a lock. A refresh sends
``If-None-Match`` so an unchanged list costs a 304; a failed one keeps the last
good list, backs off, and says in the log since when it is stale. The refresh is
one plan (``refresh_plan``) run by ``refresh``/``arefresh``; polling runs on a
background worker: the owner's (the token client's) or, after ``start()``, one of
its own.
"""

import logging
import random
import threading
from typing import Any, Callable, FrozenSet, Optional, Tuple

from .._config import check_count, check_seconds
from .._engine._clock import SYSTEM_CLOCK, Clock
from .._engine._plan import Plan, run
from .._engine._shells import blocking, coroutine
from .._engine._worker import Worker
from .._http._models import Request, Response
from .._http._send import RetryPolicy, parse_json, send_plan
from ..exceptions import InvalidResponseError, OculusError

__all__ = ["RevocationList"]

log = logging.getLogger("oculus_lite.revocation")

#: Longest wait between attempts while the endpoint keeps failing, as a multiple of interval.
MAX_BACKOFF_FACTOR = 4.0


def _when(wall: Optional[float], now: float) -> str:
    if wall is None:
        return "never fetched successfully"
    return "last fetched {} ({:.1f} s ago)".format(time_text(wall), max(0.0, now - wall))


def time_text(wall: float) -> str:
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(wall))


class RevocationList:
    """The set of revoked ``jti`` values from one server, refreshed on demand or by a poller."""

    def __init__(
        self,
        url: str,
        *,
        transport: Any,
        interval: Optional[float] = 15.0,
        timeout: float = 10.0,
        name: str = "oculus-lite-revocation",
        on_change: Optional[Callable[[FrozenSet[str]], Any]] = None,
        retries: int = 1,
        clock: Optional[Clock] = None,
    ) -> None:
        if interval is not None:
            interval = check_seconds(interval, "revocation interval")
        self.url = url
        self.interval = interval
        self.timeout = check_seconds(timeout, "revocation timeout")
        self.name = name
        self.on_change = on_change
        #: The revoked jti values; replaced as a whole, so reading it needs no lock.
        self.revoked: FrozenSet[str] = frozenset()
        #: Wall-clock time of the last successful fetch (200 or 304), None before the first.
        self.last_success: Optional[float] = None
        #: Consecutive failed refreshes (0 when the list is fresh).
        self.failures = 0
        self._transport = transport
        self._clock = clock if clock is not None else SYSTEM_CLOCK
        self._policy = RetryPolicy(retries=check_count(retries, "retries"))
        self._etag: Optional[str] = None
        self._lock = threading.Lock()  # guards the state below and the apply step
        self._issued = 0  # tickets: a late answer never overwrites a newer one
        self._applied = 0
        self._stopping = threading.Event()
        self._worker: Optional[Worker] = None

    def __repr__(self) -> str:
        return "RevocationList(url={!r}, revoked={}, {})".format(
            self.url, len(self.revoked), _when(self.last_success, self._clock.time())
        )

    def __contains__(self, jti: object) -> bool:
        return jti in self.revoked

    # ----------------------------------------------------------------- fetching

    def refresh_plan(self) -> Plan[bool]:
        """Fetch now; True when the set changed. Raises OculusError on failure (the list is kept).
        The one refresh flow: a conditional GET, then apply, or record the failure and raise."""
        ticket, request = self._begin()
        try:
            response = yield from send_plan(
                request,
                policy=self._policy,
                deadline=self._clock.monotonic() + self.timeout,
                clock=self._clock,
                what="fetching the revocation list",
            )
            return self._apply(ticket, response)
        except OculusError as exc:
            self._failed(exc)
            raise

    refresh = blocking(refresh_plan, "refresh")
    arefresh = coroutine(refresh_plan, "arefresh")

    def _sleep(self, seconds: float) -> None:
        if self._clock.sleep(seconds, self._stopping):
            raise OculusError("the revocation poller was stopped")

    def _begin(self) -> Tuple[int, Request]:
        with self._lock:
            self._issued += 1
            ticket = self._issued
            etag = self._etag
        headers: Tuple[Tuple[str, str], ...] = (("Accept", "application/json"),)
        if etag is not None:
            headers += (("If-None-Match", etag),)
        return ticket, Request("GET", self.url, headers=headers, timeout=self.timeout)

    def _apply(self, ticket: int, response: Response) -> bool:
        new: Optional[FrozenSet[str]] = None
        if response.status != 304:
            data = parse_json(response, "revocation list")
            jtis = data.get("revoked_jtis")
            if not isinstance(jtis, list) or not all(isinstance(j, str) for j in jtis):
                raise InvalidResponseError(
                    'revocation list: expected {"revoked_jtis": [strings]}',
                    status_code=response.status,
                )
            new = frozenset(jtis)
        with self._lock:
            if ticket < self._applied:
                return False  # a newer answer is already in place
            self._applied = ticket
            self.last_success = self._clock.time()
            self.failures = 0
            if new is None:
                return False
            self._etag = response.header("etag")
            changed = new != self.revoked
            if changed:
                self.revoked = new
        if changed:
            log.info("revocation list changed: %d revoked jti(s)", len(new))
            callback = self.on_change
            if callback is not None:
                try:
                    callback(new)
                except Exception:  # a broken callback must not break the refresh
                    log.exception("revocation on_change callback failed")
        return changed

    def _failed(self, exc: OculusError) -> None:
        with self._lock:
            self.failures += 1
            failures = self.failures
        log.warning(
            "revocation list refresh failed (%s: %s); keeping the last list of %d jti(s), "
            "which is stale: %s; failure #%d",
            type(exc).__name__,
            exc.message,
            len(self.revoked),
            _when(self.last_success, self._clock.time()),
            failures,
        )

    # ----------------------------------------------------------------- polling

    def poll_once(self, transport: Any = None, sleep: Optional[Callable[[float], None]] = None) -> float:
        """One poll for a background worker (errors are logged, never raised); the delay until
        the next one."""
        try:
            run(self.refresh_plan(), transport or self._transport, sleep or self._sleep)
        except OculusError:
            pass  # logged by the plan, with the staleness
        except Exception:  # a bug or a misbehaving transport: log it, keep polling
            with self._lock:
                self.failures += 1
            log.exception(
                "revocation poller: unexpected error; keeping the last list (%s)",
                _when(self.last_success, self._clock.time()),
            )
        return self._next_delay()

    def _next_delay(self) -> float:
        interval = self.interval or 15.0
        if self.failures == 0:
            return interval
        backoff = min(interval * (2.0**self.failures), interval * MAX_BACKOFF_FACTOR)
        return random.uniform(backoff * 0.8, backoff)

    @property
    def running(self) -> bool:
        worker = self._worker
        return worker is not None and worker.running

    def start(self) -> None:
        """Poll on a worker of this list's own (idempotent; nothing happens when interval is None)."""
        if self.interval is None:
            return
        with self._lock:
            if self._worker is None:
                self._worker = Worker(self, self.name, self._clock)
            worker = self._worker
            self._stopping.clear()
        if not worker.has("poll"):
            last = self.last_success
            delay = 0.0 if last is None else max(0.0, self.interval - (self._clock.time() - last))
            worker.schedule("poll", delay, RevocationList.poll_once)

    def stop(self, timeout: Optional[float] = None) -> None:
        """Stop the poller and wait for it, at most ``timeout`` (default: this list's timeout)."""
        self._stopping.set()
        with self._lock:
            worker, self._worker = self._worker, None
        if worker is not None:
            worker.stop(self.timeout if timeout is None else timeout)

    close = stop

    def __enter__(self) -> "RevocationList":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
