"""The revocation list (``GET /oauth/revoked-tokens``) kept fresh by one background thread.

The token client must never hand out a cached token whose ``jti`` was revoked,
and a verifier must refuse one; both read ``revoked`` (a frozenset swapped
atomically) on their hot path without taking a lock. The poller sends
``If-None-Match`` so an unchanged list costs a 304, backs off when the endpoint
fails, keeps the last good list meanwhile and says in the log since when it is
stale. It is a daemon, named, stopped promptly through an Event, and catches
everything inside its loop so it never dies silently.
"""

import logging
import random
import threading
import time
from typing import Any, Callable, FrozenSet, Optional, Tuple

from ..exceptions import ConfigurationError, InvalidResponseError, OculusError

__all__ = ["RevocationList"]

log = logging.getLogger("oculus_lite.revocation")

#: Longest wait between attempts while the endpoint keeps failing, as a multiple of interval.
MAX_BACKOFF_FACTOR = 4.0


def _when(wall: Optional[float]) -> str:
    if wall is None:
        return "never fetched successfully"
    return "last fetched {} ({:.1f} s ago)".format(
        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(wall)), max(0.0, time.time() - wall)
    )


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
    ) -> None:
        if interval is not None and (
            not isinstance(interval, (int, float)) or isinstance(interval, bool) or not interval > 0
        ):
            raise ConfigurationError(
                "revocation interval must be a number of seconds > 0, or None to turn polling off"
            )
        if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not timeout > 0:
            raise ConfigurationError("revocation timeout must be a number of seconds > 0")
        from .._http._send import RetryPolicy

        self.url = url
        self.interval = None if interval is None else float(interval)
        self.timeout = float(timeout)
        self.name = name
        self.on_change = on_change
        #: The revoked jti values; replaced as a whole, so reading it needs no lock.
        self.revoked: FrozenSet[str] = frozenset()
        #: Wall-clock time of the last successful fetch (200 or 304), None before the first.
        self.last_success: Optional[float] = None
        #: Consecutive failed refreshes (0 when the list is fresh).
        self.failures = 0
        self._transport = transport
        self._policy = RetryPolicy(retries=max(0, int(retries)))
        self._etag: Optional[str] = None
        self._lock = threading.Lock()  # guards the state below and the apply step
        self._issued = 0  # tickets: a late answer never overwrites a newer one
        self._applied = 0
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def __repr__(self) -> str:
        return "RevocationList(url={!r}, revoked={}, {})".format(
            self.url, len(self.revoked), _when(self.last_success)
        )

    def __contains__(self, jti: object) -> bool:
        return jti in self.revoked

    # ----------------------------------------------------------------- fetching

    def _begin(self) -> Tuple[int, Any]:
        from .._http._models import Request

        with self._lock:
            self._issued += 1
            ticket = self._issued
            etag = self._etag
        headers: Tuple[Tuple[str, str], ...] = (("Accept", "application/json"),)
        if etag is not None:
            headers += (("If-None-Match", etag),)
        return ticket, Request("GET", self.url, headers=headers, timeout=self.timeout)

    def _apply(self, ticket: int, response: Any) -> bool:
        from .._http._send import parse_json

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
            self.last_success = time.time()
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
            _when(self.last_success),
            failures,
        )

    def refresh(self) -> bool:
        """Fetch now; True when the set changed. Raises OculusError on failure (the list is kept)."""
        from .._http._send import send

        ticket, request = self._begin()
        try:
            response = send(
                self._transport,
                request,
                policy=self._policy,
                deadline=time.monotonic() + self.timeout,
                what="fetching the revocation list",
            )
            return self._apply(ticket, response)
        except OculusError as exc:
            self._failed(exc)
            raise

    async def arefresh(self) -> bool:
        """``refresh`` for coroutines (native async transports are awaited, others run in a thread)."""
        from .._http._send import asend

        ticket, request = self._begin()
        try:
            response = await asend(
                self._transport,
                request,
                policy=self._policy,
                deadline=time.monotonic() + self.timeout,
                what="fetching the revocation list",
            )
            return self._apply(ticket, response)
        except OculusError as exc:
            self._failed(exc)
            raise

    # ----------------------------------------------------------------- poller

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def start(self) -> None:
        """Start the poller thread (idempotent; nothing happens when interval is None)."""
        if self.interval is None:
            return
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop.clear()
            thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            thread.start()  # under the lock: stop() never sees a thread that has not started
            self._thread = thread

    def stop(self, timeout: Optional[float] = None) -> None:
        """Stop the poller and wait for it (idempotent; safe from atexit and from on_change)."""
        with self._lock:
            self._stop.set()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(self.timeout + 1.0 if timeout is None else timeout)

    close = stop

    def __enter__(self) -> "RevocationList":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _next_delay(self) -> float:
        interval = self.interval or 15.0
        if self.failures == 0:
            return interval
        backoff = min(interval * (2.0**self.failures), interval * MAX_BACKOFF_FACTOR)
        return random.uniform(backoff * 0.8, backoff)

    def _run(self) -> None:
        interval = self.interval or 15.0
        last = self.last_success
        delay = 0.0 if last is None else max(0.0, interval - (time.time() - last))
        if delay and self._stop.wait(delay):
            return
        while not self._stop.is_set():
            try:
                self.refresh()
            except OculusError:
                pass  # logged by refresh, with the staleness
            except Exception:  # a bug or a misbehaving transport: log it, keep polling
                with self._lock:
                    self.failures += 1
                log.exception(
                    "revocation poller: unexpected error; keeping the last list (%s)",
                    _when(self.last_success),
                )
            if self._stop.wait(self._next_delay()):
                break
        log.debug("revocation poller %s stopped", self.name)
