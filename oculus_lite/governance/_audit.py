"""AuditEmitter: queue audit events without blocking tool calls, send them in batches as fast as
the server accepts them, and lose nothing that was accepted.

How it works: ``emit`` freezes the event (a private JSON-typed copy) and offers it to a bounded
``EventBuffer``; a full buffer refuses the *new* event (counted in ``stats().dropped`` and
logged once per burst). One daemon thread ("oculus-audit") drains the buffer: it takes up to
100 events, redacts and encodes them, and POSTs ``{"events": [...]}`` to
``/v1/audit/events/batch``, batch after batch until the buffer is empty. A failed batch stays
in flight and is retried with backoff (5xx, 429 with its Retry-After, network errors, and a
401 after asking ``renew_token`` for a fresh service token); a 400/413/422 is split in halves
until the events the server refuses are isolated and counted as ``rejected``. Each event has an
``event_id``, so a batch resent after a lost reply is idempotent at the server.

``stop()`` and interpreter exit (an ``atexit`` hook holding emitters weakly, started or not)
send what is left within a deadline and log what could not be sent. The worker never keeps the interpreter
alive, catches and logs every error, and ``start()`` is idempotent.
"""

import atexit
import logging
import random
import threading
import weakref
from collections import deque
from dataclasses import dataclass
from typing import Callable, Deque, Dict, Iterable, List, Mapping, Optional, Tuple, Union

from .._engine._clock import SYSTEM_CLOCK, Clock
from .._engine._plan import run
from .._http._models import Request, Transport
from .._http._registry import resolve_transport
from .._http._send import RetryPolicy, send_plan
from .._secret import Secret
from .._version import __version__
from ..exceptions import (
    AuthenticationError,
    ClientClosedError,
    ConfigurationError,
    OculusAPIError,
    OculusError,
    RateLimitError,
)
from ._buffer import FIRST, REFUSED, EventBuffer
from ._events import (
    DECISION_ALLOW,
    EVENT_TYPE,
    OUTCOME_DENIED,
    OUTCOME_SUCCESS,
    RECORD_OVERHEAD,
    EventIds,
    RecordFields,
    encode_event,
    encode_record,
    iso_timestamp,
    summarize_args,
    tool_event,
)
from ._redact import Redactor, freeze

__all__ = ["AuditEmitter", "AuditStats"]

log = logging.getLogger("oculus_lite.audit")

_PATH = "/v1/audit/events/batch"
_MAX_BATCH = 100
_REJECTED_STATUSES = (400, 413, 422)
_MAX_RETRY_AFTER = 300.0
# Short in-call retries; the worker's own backoff handles longer outages and stays interruptible.
_SEND_POLICY = RetryPolicy(retries=1, backoff=0.05, max_backoff=0.2, max_retry_after=1.0)

_Item = Union[RecordFields, Dict[str, object]]
_Encoded = Tuple[bytes, int]

_live: "weakref.WeakSet[AuditEmitter]" = weakref.WeakSet()
_exit_hook_registered = False
_exit_hook_lock = threading.Lock()


def _flush_at_exit() -> None:
    for emitter in list(_live):
        try:
            emitter.stop()
        except Exception:  # pragma: no cover - stop() does not raise; never break other exit hooks
            log.exception("audit: flushing at exit failed")


def _report_unsent(buffer: "EventBuffer[_Item]") -> None:
    pending, _ = buffer.pending()
    if pending:
        log.warning(
            "audit: an AuditEmitter was discarded with %d unsent event(s); call stop() to send them", pending
        )


def _register_exit_hook() -> None:
    global _exit_hook_registered
    with _exit_hook_lock:
        if not _exit_hook_registered:
            atexit.register(_flush_at_exit)
            _exit_hook_registered = True


@dataclass(frozen=True)
class AuditStats:
    """Counters of one emitter. Every event ``emit`` was given ends in exactly one of
    ``sent``, ``rejected``, ``dropped`` or ``pending``."""

    emitted: int
    """Events accepted into the buffer."""
    sent: int
    """Events the server acknowledged."""
    dropped: int
    """Events refused: buffer full (count or bytes), or emitted after ``stop()``."""
    rejected: int
    """Events the server refused as malformed (isolated by splitting the batch)."""
    pending: int
    """Accepted events not yet sent (queued or in flight)."""
    pending_bytes: int
    batches: int
    """Batch requests the server acknowledged."""
    retries: int
    """Failed batch attempts that were (or will be) retried."""
    token_renewals: int
    running: bool
    """The worker thread is alive."""
    last_error: Optional[str]
    """What the last failed attempt met (an error class and HTTP status; never a secret)."""


def _describe(error: BaseException) -> str:
    status = getattr(error, "status_code", None)
    return type(error).__name__ + (" HTTP {}".format(status) if status else "")


class AuditEmitter:
    """Queues audit events and sends them to ``POST {base_url}/v1/audit/events/batch``.

    Args:
        base_url: the control plane, e.g. ``https://api.example.com``.
        sdk_service_token: the ``sdk_service_token`` of the token response (Bearer auth).
        agent_id: the agent's id (the token's ``sub``), used when an event has none.
        sdk_version: sent in every event.
        transport: a transport name, object or None (the keep-alive ``pooled`` transport).
        clock: for timestamps and backoff (tests pass a ``ManualClock``).
        max_events, max_bytes: the buffer's bounds; when either is reached, new events are
            refused and counted (accepted events are never evicted).
        batch_size: events per request, at most 100.
        renew_token: called after a 401 to get a fresh service token (None if it cannot).
        secrets: values to redact wherever they appear (the client adds its tokens).
        request_timeout: seconds for one batch request.
        stop_timeout: seconds ``stop()`` (and interpreter exit) may spend sending what is left.
        max_backoff: longest wait between retries of a failing batch.

    Example::

        emitter = AuditEmitter("https://api.example.com", sdk_token, "agt_123")
        emitter.start()
        emitter.emit(emitter.build_tool_event("stripe.customers.read", "allow", "allowed", "get_customer"))
        emitter.stop()
    """

    def __init__(
        self,
        base_url: str,
        sdk_service_token: str,
        agent_id: str,
        sdk_version: str = __version__,
        *,
        transport: Union[None, str, Transport] = None,
        clock: Clock = SYSTEM_CLOCK,
        max_events: int = 10_000,
        max_bytes: int = 8 * 1024 * 1024,
        batch_size: int = _MAX_BATCH,
        renew_token: Optional[Callable[[], Optional[str]]] = None,
        secrets: Iterable[str] = (),
        request_timeout: float = 10.0,
        stop_timeout: float = 10.0,
        max_backoff: float = 30.0,
    ) -> None:
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ConfigurationError("base_url must be an http(s) URL, e.g. https://api.example.com")
        if sdk_service_token is not None and not isinstance(sdk_service_token, str):
            raise ConfigurationError("sdk_service_token must be a string")
        for name, value, low in (("max_events", max_events, 1), ("max_bytes", max_bytes, 1024)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigurationError("{} must be an integer >= {}".format(name, low))
        if not isinstance(batch_size, int) or not 1 <= batch_size <= _MAX_BATCH:
            raise ConfigurationError("batch_size must be an integer from 1 to {}".format(_MAX_BATCH))
        for name, seconds in (
            ("request_timeout", request_timeout),
            ("stop_timeout", stop_timeout),
            ("max_backoff", max_backoff),
        ):
            if not isinstance(seconds, (int, float)) or not seconds > 0:
                raise ConfigurationError("{} must be a positive number of seconds".format(name))
        self._url = base_url.rstrip("/") + _PATH
        self._agent_id = agent_id
        self._sdk_version = sdk_version
        self._clock = clock
        self._token = sdk_service_token or ""
        self._renew = renew_token
        self._redactor = Redactor(secrets)
        self._redactor.add_secrets(self._token)
        self._owns_transport = transport is None or isinstance(transport, str)
        self._transport = resolve_transport(transport)
        self._batch_size = batch_size
        self._request_timeout = float(request_timeout)
        self._stop_timeout = float(stop_timeout)
        self._max_backoff = float(max_backoff)
        self._buffer: EventBuffer[_Item] = EventBuffer(max_events, max_bytes)
        self._ids = EventIds()
        self._wake = threading.Event()
        self._lifecycle = threading.Lock()
        self._drain_lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None
        self._closed = False
        self._stopping = False
        self._stop_deadline = 0.0
        # Drainer state (under _drain_lock): encoded chunks in flight, oldest first.
        self._chunks: Deque[List[_Encoded]] = deque()
        self._retry_at = 0.0
        self._failures = 0
        self._sent = 0
        self._rejected = 0
        self._batches = 0
        self._retries = 0
        self._renewals = 0
        self._last_error: Optional[str] = None
        self._dropping = False
        self._dropped_at_burst = 0
        _live.add(self)
        _register_exit_hook()  # started or not, what is queued at exit is sent

    def __del__(self) -> None:
        # Dropped without stop() while events wait (never started, so no thread keeps it): say
        # so. Not weakref.finalize, whose registry CPython's exit hook walks without a lock:
        # emitters are made and dropped on any thread.
        if not getattr(self, "_closed", True):
            _report_unsent(self._buffer)

    def __repr__(self) -> str:
        pending, _ = self._buffer.pending()
        return "AuditEmitter(url={!r}, agent_id={!r}, pending={})".format(self._url, self._agent_id, pending)

    # -- public API -------------------------------------------------------------------------

    @property
    def agent_id(self) -> str:
        return self._agent_id

    @property
    def sdk_version(self) -> str:
        return self._sdk_version

    @property
    def clock(self) -> Clock:
        return self._clock

    def start(self) -> None:
        """Start the worker thread; idempotent. Raises ``ClientClosedError`` after ``stop()``."""
        with self._lifecycle:
            if self._closed:
                raise ClientClosedError("this AuditEmitter was stopped; create a new one")
            if self._thread is not None and self._thread.is_alive():
                return
            thread = threading.Thread(target=self._run, name="oculus-audit", daemon=True)
            try:
                thread.start()
            except RuntimeError as exc:
                # Interpreter shutdown (3.12+ refuses new threads) or no threads left: events
                # stay queued, and stop(), flush() or the exit hook send them from their caller.
                log.warning("audit: cannot start the sending thread (%s); events wait for stop()", exc)
                return
            self._thread = thread

    def emit(self, event: Mapping[str, object]) -> bool:
        """Queue an event; never blocks on I/O and never raises.

        The event is copied now (later changes to ``event`` are not seen; an object JSON cannot
        encode becomes its ``repr``), and redacted when its batch is encoded. Missing
        ``event_id``, ``event_type``, ``agent_id`` and ``sdk_version`` are filled in.
        Returns False when the event was refused (buffer full, or after ``stop()``).
        """
        try:
            frozen, size = freeze(event)
            if not isinstance(frozen, dict):
                frozen = {"event_type": "invalid", "payload": frozen}
            frozen.setdefault("event_type", EVENT_TYPE)
            frozen.setdefault("event_id", self._ids.next())
            frozen.setdefault("agent_id", self._agent_id)
            frozen.setdefault("sdk_version", self._sdk_version)
            return self._offer(frozen, size + 120)
        except Exception:  # pragma: no cover - freeze() does not raise; emit must not either
            self._buffer.refuse()
            log.exception("audit: an event could not be queued and was dropped")
            return False

    def build_tool_event(
        self,
        capability: str,
        decision: str,
        reason: str,
        tool_name: str,
        tool_args: Optional[Mapping[str, object]] = None,
        agent_reasoning: Optional[str] = None,
        llm_model: Optional[str] = None,
        task_id: Optional[str] = None,
        delegation_depth: int = 0,
        framework: str = "unknown",
        *,
        outcome: Optional[str] = None,
        duration_ms: Optional[float] = None,
        error_type: Optional[str] = None,
        jti: Optional[str] = None,
    ) -> Dict[str, object]:
        """A ``tool_invocation`` event (the official fields plus ours), arguments redacted.

        ``outcome`` defaults to "success" for "allow" and "denied" otherwise.
        """
        args = self._redactor.redact(freeze(tool_args or {})[0])
        return tool_event(
            event_id=self._ids.next(),
            timestamp=iso_timestamp(self._clock.time()),
            agent_id=self._agent_id,
            capability=capability,
            decision=decision,
            reason=reason,
            outcome=outcome or (OUTCOME_SUCCESS if decision == DECISION_ALLOW else OUTCOME_DENIED),
            tool_name=tool_name,
            tool_args=args,
            task_id=task_id,
            delegation_depth=delegation_depth,
            framework=framework,
            sdk_version=self._sdk_version,
            jti=jti,
            duration_ms=duration_ms,
            error_type=error_type,
            agent_reasoning=self._redactor.text(agent_reasoning) if agent_reasoning else agent_reasoning,
            llm_model=llm_model,
            summary=summarize_args(args),
        )

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Wait until every event emitted before this call is sent (or rejected by the server).

        Returns False when ``timeout`` (default ``stop_timeout``) passes first. Without a worker
        thread, sends in the calling thread.
        """
        limit = self._stop_timeout if timeout is None else max(0.0, timeout)
        target = self._buffer.accepted
        if self._buffer.finished >= target:
            return True
        thread = self._thread
        if thread is not None and thread.is_alive():
            if thread is threading.current_thread():  # called back from the worker: cannot wait on itself
                return False
            self._retry_at = 0.0  # an explicit flush retries now
            self._wake.set()
            return self._buffer.wait_finished(target, limit)
        self._drain(self._clock.monotonic() + limit, until=target)
        return self._buffer.finished >= target

    def stop(self, timeout: Optional[float] = None) -> AuditStats:
        """Refuse new events, send what is queued within ``timeout`` (default ``stop_timeout``)
        and stop the worker. What could not be sent is logged and left in ``pending``.
        Idempotent; bounded by the timeout."""
        limit = self._stop_timeout if timeout is None else max(0.0, timeout)
        with self._lifecycle:
            if self._closed:
                return self.stats()
            self._closed = True
            self._stop_deadline = self._clock.monotonic() + limit
            self._stopping = True
            thread = self._thread
        self._retry_at = 0.0
        self._wake.set()
        if thread is not None and thread.is_alive():
            if thread is threading.current_thread():
                # Called back from the worker (a renew_token hook stopping its client): the worker
                # sends what is left when it returns to its loop.
                return self.stats()
            thread.join(limit + 1.0)
        else:
            self._drain(self._stop_deadline)
        stats = self.stats()
        if stats.pending:
            log.warning(
                "audit: %d event(s) could not be sent before the stop deadline (last error: %s)",
                stats.pending,
                stats.last_error or "none",
            )
        if self._owns_transport and not stats.running:
            close = getattr(self._transport, "close", None)
            if callable(close):
                try:
                    close()
                except Exception:  # pragma: no cover - closing idle sockets
                    log.debug("audit: closing the transport failed", exc_info=True)
        _live.discard(self)
        return stats

    def stats(self) -> AuditStats:
        pending, pending_bytes = self._buffer.pending()
        thread = self._thread
        return AuditStats(
            emitted=self._buffer.accepted,
            sent=self._sent,
            dropped=self._buffer.refused,
            rejected=self._rejected,
            pending=pending,
            pending_bytes=pending_bytes,
            batches=self._batches,
            retries=self._retries,
            token_renewals=self._renewals,
            running=thread is not None and thread.is_alive(),
            last_error=self._last_error,
        )

    def set_service_token(self, token: str) -> None:
        """Use ``token`` from the next batch on (the client calls this after each renewal)."""
        if isinstance(token, str) and token:
            self._redactor.add_secrets(token)
            self._token = token

    def add_secrets(self, *values: Optional[str]) -> None:
        """Redact these values wherever they appear in events sent from now on."""
        self._redactor.add_secrets(*values)

    def __enter__(self) -> "AuditEmitter":
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- the hot path (the enforcing wrapper) -------------------------------------------------

    def _record(self, fields: RecordFields, args_size: int) -> bool:
        """Queue a tool record (the fields of a ``ToolRecord``, as a plain tuple)."""
        if self._closed:
            return self._refuse_stopped()
        offered = self._buffer.offer(fields, RECORD_OVERHEAD + args_size)
        if offered == FIRST:
            if not self._wake.is_set():  # the worker clears it before it looks at the queue
                self._wake.set()
        elif offered == REFUSED:
            self._note_drop("the buffer is full")
            return False
        return True

    def _offer(self, item: _Item, size: int) -> bool:
        if self._closed:
            return self._refuse_stopped()
        offered = self._buffer.offer(item, size)
        if offered == FIRST:
            if not self._wake.is_set():
                self._wake.set()
        elif offered == REFUSED:
            self._note_drop("the buffer is full")
            return False
        return True

    def _refuse_stopped(self) -> bool:
        self._buffer.refuse()
        self._note_drop("the emitter is stopped")
        return False

    def _note_drop(self, why: str) -> None:
        if not self._dropping:
            self._dropping = True
            self._dropped_at_burst = self._buffer.refused - 1
            pending, pending_bytes = self._buffer.pending()
            log.warning(
                "audit: dropping new events: %s (%d events, %d bytes pending); counted in stats().dropped",
                why,
                pending,
                pending_bytes,
            )

    def _end_drop_burst(self) -> None:
        if self._dropping and not self._closed:
            self._dropping = False
            log.warning(
                "audit: the buffer has room again; %d event(s) were dropped while it was full",
                self._buffer.refused - self._dropped_at_burst,
            )

    # -- the worker ---------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                self._wake.clear()
                if self._stopping:
                    self._drain(self._stop_deadline)
                    return
                if not self._chunks and self._buffer.queued() == 0:
                    self._wake.wait()
                    continue
                if self._clock.monotonic() < self._retry_at:
                    self._clock.wait_until(self._retry_at, self._wake)
                    continue
                self._drain(None)
            except Exception as exc:  # a bug: log it, back off, keep the worker alive
                self._last_error = _describe(exc)
                log.exception("audit: the worker met an unexpected error; retrying")
                self._schedule_retry(None)
            except BaseException:
                log.critical("audit: the worker is stopping on an interpreter-level exception", exc_info=True)
                raise

    def _drain(self, deadline: Optional[float], until: Optional[int] = None) -> None:
        """Send until the buffer is empty (or ``until`` events are finished). Without a
        deadline, return at the first failure (the caller backs off); with one, keep retrying
        with backoff until it passes."""
        with self._drain_lock:
            while until is None or self._buffer.finished < until:
                if deadline is not None and self._clock.monotonic() >= deadline:
                    return
                if not self._chunks:
                    taken = self._buffer.take(self._batch_size)
                    if not taken:
                        return
                    self._chunks.append([(self._encode(item), size) for item, size in taken])
                if self._deliver_first_chunk():
                    continue
                if deadline is None:
                    return
                self._wake.clear()
                self._clock.wait_until(min(self._retry_at, deadline), self._wake)

    def _encode(self, item: _Item) -> bytes:
        if isinstance(item, dict):
            return encode_event(item, self._redactor, str(item.get("event_id")))
        return encode_record(item, self._ids.next(), self._redactor, self._sdk_version, self._agent_id)

    def _deliver_first_chunk(self) -> bool:
        """Send the oldest chunk. True when it left for good (sent, or isolated and rejected)."""
        chunk = self._chunks[0]
        body = b'{"events":[' + b",".join(data for data, _ in chunk) + b"]}"
        outcome = self._post(body)
        size = sum(item_size for _, item_size in chunk)
        if outcome == "sent":
            self._chunks.popleft()
            self._sent += len(chunk)
            self._batches += 1
            self._buffer.done(len(chunk), size)
            if self._dropping:
                self._end_drop_burst()
            if self._failures:
                log.info("audit: sending resumed after %d failed attempt(s)", self._failures)
            self._failures = 0
            return True
        if outcome == "rejected":
            self._chunks.popleft()
            if len(chunk) == 1:
                self._rejected += 1
                self._buffer.done(1, size)
                log.warning(
                    "audit: the server refused an event as malformed (%s); it is dropped", self._last_error
                )
            else:  # isolate the refused events: send each half on its own
                middle = len(chunk) // 2
                self._chunks.appendleft(chunk[middle:])
                self._chunks.appendleft(chunk[:middle])
            return True
        return False

    def _post(self, body: bytes) -> str:
        """'sent', 'rejected' or 'retry' (after scheduling the retry)."""
        renewed = False
        while True:
            token = self._token
            headers: Tuple[Tuple[str, str], ...] = (
                ("Content-Type", "application/json"),
                ("Accept", "application/json"),
            )
            if token:
                headers += (("Authorization", "Bearer " + token),)
            request = Request("POST", self._url, headers, body, self._request_timeout)
            try:
                plan = send_plan(
                    request,
                    policy=_SEND_POLICY,
                    deadline=self._clock.monotonic() + self._request_timeout,
                    clock=self._clock,
                    what="audit batch",
                    secrets=(Secret(token),) if token else (),
                )
                run(plan, self._transport, self._clock.sleep)
                return "sent"
            except AuthenticationError as exc:
                self._last_error = _describe(exc)
                if not renewed and self._renew_token():
                    renewed = True
                    continue
                self._schedule_retry(exc)
                return "retry"
            except RateLimitError as exc:
                self._last_error = _describe(exc)
                self._schedule_retry(exc, exc.retry_after)
                return "retry"
            except OculusAPIError as exc:
                self._last_error = _describe(exc)
                if exc.status_code in _REJECTED_STATUSES:
                    return "rejected"
                self._schedule_retry(exc)  # 403, 404, 5xx, redirects: keep the events, try later
                return "retry"
            except OculusError as exc:  # network errors and timeouts
                self._last_error = _describe(exc)
                self._schedule_retry(exc)
                return "retry"

    def _renew_token(self) -> bool:
        if self._renew is None:
            return False
        try:
            fresh = self._renew()
        except Exception as exc:
            log.warning("audit: renewing the service token failed (%s)", _describe(exc))
            return False
        if not isinstance(fresh, str) or not fresh or fresh == self._token:
            return False
        self._renewals += 1
        self.set_service_token(fresh)
        return True

    def _schedule_retry(self, error: Optional[BaseException], retry_after: Optional[float] = None) -> None:
        self._failures += 1
        if retry_after is not None:
            delay = min(retry_after, _MAX_RETRY_AFTER)
        else:
            ceiling = min(self._max_backoff, 0.1 * (2 ** min(self._failures - 1, 30)))
            delay = random.uniform(ceiling / 2, ceiling)
        self._retry_at = self._clock.monotonic() + delay
        self._retries += 1  # counted once the retry is scheduled: stats() never runs ahead of it
        if error is not None:
            pending, _ = self._buffer.pending()
            level = logging.WARNING if self._failures == 1 else logging.DEBUG
            log.log(
                level,
                "audit: sending a batch failed (%s); retrying in %.2f s with %d event(s) pending",
                _describe(error),
                delay,
                pending,
            )
