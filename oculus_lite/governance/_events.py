"""Audit events: the official ``tool_invocation`` schema plus ours, ids, and encoding.

An event is queued in one of two frozen forms: a ``ToolRecord`` (what the enforcing wrapper
builds on the hot path: scalars and a ``freeze``d argument copy) or a frozen dict (what
``AuditEmitter.emit`` receives). Both become redacted JSON only when a batch is encoded,
on the audit thread.

Fields: the official ``event_type``, ``agent_id``, ``timestamp`` (ISO 8601 UTC),
``capability``, ``decision`` ("allow"/"deny"), ``reason``, ``tool_name``,
``tool_args_summary``, ``task_id``, ``delegation_depth``, ``framework``, ``sdk_version``,
``intent_context{agent_reasoning, llm_model, tool_input_summary}``; ours ``event_id``
(unique, so a resent batch is idempotent), ``outcome`` ("success", "denied", "error"),
``duration_ms``, ``error_type`` (an exception's class name, never its message) and ``jti``.
"""

import itertools
import json
import os
from datetime import datetime, timezone
from typing import Dict, Iterator, List, Mapping, NamedTuple, Optional, Tuple

from ._redact import Redactor

__all__ = [
    "DECISION_ALLOW",
    "DECISION_DENY",
    "EVENT_TYPE",
    "OUTCOME_DENIED",
    "OUTCOME_ERROR",
    "OUTCOME_SUCCESS",
    "RECORD_OVERHEAD",
    "EventIds",
    "RecordFields",
    "ToolRecord",
    "encode_event",
    "encode_record",
    "iso_timestamp",
    "summarize_args",
    "tool_event",
]

EVENT_TYPE = "tool_invocation"
DECISION_ALLOW = "allow"
DECISION_DENY = "deny"
OUTCOME_SUCCESS = "success"
OUTCOME_DENIED = "denied"
OUTCOME_ERROR = "error"

# check_circular off: events are freeze()d copies, acyclic and depth-bounded by construction.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False, check_circular=False)
#: Bytes a tool event takes beyond its variable parts (field names, fixed values).
RECORD_OVERHEAD = 420


class EventIds:
    """Unique event ids without a system call per event: a random prefix and a counter."""

    def __init__(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._counter: Iterator[int] = itertools.count(1)

    def next(self) -> str:
        return "{}-{:x}".format(self._prefix, next(self._counter))


_second: List[object] = [None, ""]  # the last whole second formatted, and its text


def iso_timestamp(epoch: float) -> str:
    """ISO 8601 UTC with microseconds, as ``datetime.isoformat`` writes it (events of one second
    share the formatting of the date and time)."""
    whole = int(epoch // 1)
    micros = int(round((epoch - whole) * 1_000_000))
    if micros >= 1_000_000:
        whole, micros = whole + 1, micros - 1_000_000
    cached = _second
    if cached[0] != whole:
        text = datetime.fromtimestamp(whole, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        cached = [whole, text]
        _second[:] = cached  # one list swap; a racing reader sees an old pair, never a torn one
    return "{}.{:06d}+00:00".format(cached[1], micros) if micros else "{}+00:00".format(cached[1])


class ToolRecord(NamedTuple):
    """One tool invocation, as the enforcing wrapper queues it (all fields immutable). The hot
    path queues a plain tuple in this field order (building a NamedTuple costs more); the event
    id is given when the record is encoded, once, so a resent batch carries the same ids."""

    timestamp: float
    agent_id: Optional[str]
    capability: str
    decision: str
    reason: str
    outcome: str
    tool_name: str
    tool_args: object  # a freeze()d mapping
    task_id: Optional[str]
    delegation_depth: int
    framework: str
    jti: Optional[str]
    duration_ms: Optional[float]
    error_type: Optional[str]
    agent_reasoning: Optional[str]
    llm_model: Optional[str]


def summarize_args(args: object) -> str:
    """The official ``tool_input_summary``: at most 5 arguments, long strings cut to 47 + '...'."""
    if not isinstance(args, Mapping) or not args:
        return ""
    parts = []
    for key, value in list(args.items())[:5]:
        if isinstance(value, str) and len(value) > 50:
            value = value[:47] + "..."
        parts.append("{}={!r}".format(key, value))
    return ", ".join(parts)


def tool_event(
    *,
    event_id: str,
    timestamp: str,
    agent_id: Optional[str],
    capability: str,
    decision: str,
    reason: str,
    outcome: str,
    tool_name: str,
    tool_args: object,
    task_id: Optional[str],
    delegation_depth: int,
    framework: str,
    sdk_version: str,
    jti: Optional[str],
    duration_ms: Optional[float],
    error_type: Optional[str],
    agent_reasoning: Optional[str],
    llm_model: Optional[str],
    summary: str,
) -> Dict[str, object]:
    return {
        "event_type": EVENT_TYPE,
        "event_id": event_id,
        "agent_id": agent_id,
        "timestamp": timestamp,
        "capability": capability,
        "decision": decision,
        "reason": reason,
        "outcome": outcome,
        "tool_name": tool_name,
        "tool_args_summary": tool_args if tool_args is not None else {},
        "task_id": task_id,
        "delegation_depth": delegation_depth,
        "framework": framework,
        "sdk_version": sdk_version,
        "jti": jti,
        "duration_ms": duration_ms,
        "error_type": error_type,
        "intent_context": {
            "agent_reasoning": agent_reasoning,
            "llm_model": llm_model,
            "tool_input_summary": summary,
        },
    }


def _text(redactor: Redactor, value: Optional[str]) -> Optional[str]:
    return redactor.text(value) if isinstance(value, str) else value


#: What the hot path queues: the fields of a ``ToolRecord``, in order.
RecordFields = Tuple[
    float, Optional[str], str, str, str, str, str, object, Optional[str], int, str,
    Optional[str], Optional[float], Optional[str], Optional[str], Optional[str],
]  # fmt: skip


def encode_record(
    fields: RecordFields, event_id: str, redactor: Redactor, sdk_version: str, default_agent: str
) -> bytes:
    """A queued tool record as redacted JSON."""
    record = ToolRecord(*fields)
    args = redactor.redact(record.tool_args)
    event = tool_event(
        event_id=event_id,
        timestamp=iso_timestamp(record.timestamp),
        agent_id=record.agent_id or default_agent,
        capability=record.capability,
        decision=record.decision,
        reason=record.reason,
        outcome=record.outcome,
        tool_name=record.tool_name,
        tool_args=args,
        task_id=_text(redactor, record.task_id),
        delegation_depth=record.delegation_depth,
        framework=record.framework,
        sdk_version=sdk_version,
        jti=record.jti,
        duration_ms=record.duration_ms,
        error_type=record.error_type,
        agent_reasoning=_text(redactor, record.agent_reasoning),
        llm_model=_text(redactor, record.llm_model),
        summary=summarize_args(args),
    )
    return _encode(event, redactor, event_id)


def encode_event(event: object, redactor: Redactor, event_id: str) -> bytes:
    """A frozen event dict (from ``emit``) as redacted JSON; every field at any depth."""
    return _encode(redactor.redact(event), redactor, event_id)


def _encode(event: object, redactor: Redactor, event_id: str) -> bytes:
    try:
        text = _ENCODER.encode(event)
    except (TypeError, ValueError, RecursionError) as exc:  # not expected after freeze(); never lose the id
        text = _ENCODER.encode(
            {"event_type": EVENT_TYPE, "event_id": event_id, "encoding_error": type(exc).__name__}
        )
    return redactor.bytes_scrub(text.encode("utf-8"))
