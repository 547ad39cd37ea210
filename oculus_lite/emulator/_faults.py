"""Fault injection rules: which request misbehaves, how often, and how.

Clients are only as good as their behaviour under failure, so the emulator
can answer any non-admin route with an error status, a delay, a dropped or
truncated connection, broken or oversized JSON, a trickled body or the wrong
content type. Rules are deterministic (``next``/``every``, or ``probability``
with a ``seed``) so test runs repeat.
"""

import random
import threading
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence

__all__ = ["FaultRule", "FaultSet", "KINDS", "parse_rule"]

KINDS = ("status", "delay", "close", "truncate", "badjson", "oversize", "trickle", "content_type")
_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


@dataclass
class FaultRule:
    path: str
    kind: str
    method: Optional[str] = None
    next: Optional[int] = None
    every: Optional[int] = None
    probability: Optional[float] = None
    seed: Optional[int] = None
    status: Optional[int] = None
    retry_after: Optional[str] = None
    location: Optional[str] = None
    body: Optional[Any] = None
    delay_ms: float = 0.0
    size: int = 2 * 1024 * 1024
    interval_ms: float = 50.0
    content_type: str = "text/html; charset=utf-8"
    # state
    seen: int = 0
    fired: int = 0
    rng: Optional[random.Random] = field(default=None, repr=False)

    def applies(self, method: str, path: str) -> bool:
        if self.method is not None and self.method != method:
            return False
        if self.path.endswith("*"):
            return path.startswith(self.path[:-1])
        return path == self.path

    def decide(self) -> bool:
        """Count one matching request; True when the fault fires for it (caller holds the lock)."""
        self.seen += 1
        if self.next is not None:
            fire = self.fired < self.next
        elif self.every is not None:
            fire = self.seen % self.every == 0
        elif self.probability is not None:
            assert self.rng is not None
            fire = self.rng.random() < self.probability
        else:
            fire = True
        if fire:
            self.fired += 1
        return fire

    def describe(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"path": self.path, "kind": self.kind, "seen": self.seen, "fired": self.fired}
        for name in ("method", "next", "every", "probability", "seed"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out


def _num(rule: Mapping[str, Any], name: str, lo: float, integer: bool, default: Any = None) -> Any:
    value = rule.get(name, default)
    if value is None:
        return None
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if not ok or isinstance(value, bool) or value < lo:
        raise ValueError(
            "fault {!r} must be {} >= {}".format(name, "an integer" if integer else "a number", lo)
        )
    return value


def parse_rule(rule: Any, index: int = 0) -> FaultRule:
    """Validate one rule object; ValueError says which field is wrong."""
    where = "faults[{}]".format(index)
    if not isinstance(rule, Mapping):
        raise ValueError(where + " must be an object")
    known = set(FaultRule.__dataclass_fields__) - {"seen", "fired", "rng"}
    unknown = sorted(set(rule) - known)
    if unknown:
        raise ValueError("{}: unknown field(s) {}".format(where, ", ".join(unknown)))
    path = rule.get("path")
    if not isinstance(path, str) or not path.startswith("/") and path != "*":
        raise ValueError(where + ".path must be a path starting with '/' (or ending in '*' for a prefix)")
    kind = rule.get("kind", "status")
    if kind not in KINDS:
        raise ValueError("{}.kind must be one of {}".format(where, ", ".join(KINDS)))
    method = rule.get("method")
    if method is not None:
        if not isinstance(method, str) or method.upper() not in _METHODS:
            raise ValueError(where + ".method must be an HTTP method such as GET or POST")
        method = method.upper()
    freq = [n for n in ("next", "every", "probability") if rule.get(n) is not None]
    if len(freq) > 1:
        raise ValueError(where + ": give at most one of next, every, probability")
    try:
        parsed = FaultRule(
            path=path,
            kind=kind,
            method=method,
            next=_num(rule, "next", 0, True),
            every=_num(rule, "every", 1, True),
            probability=_num(rule, "probability", 0, False),
            seed=_num(rule, "seed", 0, True),
            status=_num(rule, "status", 100, True),
            delay_ms=_num(rule, "delay_ms", 0, False, 0),
            size=_num(rule, "size", 2, True, 2 * 1024 * 1024),
            interval_ms=_num(rule, "interval_ms", 0, False, 50),
        )
    except ValueError as exc:
        raise ValueError("{}: {}".format(where, exc)) from None
    if parsed.probability is not None and parsed.probability > 1:
        raise ValueError(where + ".probability must be between 0 and 1")
    if parsed.status is not None and parsed.status > 599:
        raise ValueError(where + ".status must be an HTTP status (100-599)")
    for name in ("retry_after", "location", "content_type"):
        value = rule.get(name)
        if value is None:
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool) and name == "retry_after":
            value = str(int(value)) if float(value).is_integer() else str(value)
        if not isinstance(value, str) or any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise ValueError("{}.{} must be a string without control characters".format(where, name))
        setattr(parsed, name, value)
    parsed.body = rule.get("body")
    parsed.rng = random.Random(parsed.seed)
    return parsed


class FaultSet:
    """The active rules; ``pick`` is called once per non-admin request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: List[FaultRule] = []
        self.fired = 0

    def set(self, rules: Sequence[Any]) -> List[FaultRule]:
        if isinstance(rules, (str, bytes)) or not isinstance(rules, Sequence):
            raise ValueError("faults must be a list of rule objects")
        parsed = [parse_rule(r, i) for i, r in enumerate(rules)]
        with self._lock:
            self._rules = parsed
        return parsed

    def clear(self) -> None:
        with self._lock:
            self._rules = []

    def reset(self) -> None:
        with self._lock:
            self._rules = []
            self.fired = 0

    def describe(self) -> List[Dict[str, Any]]:
        with self._lock:
            return [r.describe() for r in self._rules]

    def pick(self, method: str, path: str) -> Optional[FaultRule]:
        """The rule that fires for this request, if any (first rule that fires wins)."""
        with self._lock:
            for rule in self._rules:
                if rule.applies(method, path) and rule.decide():
                    self.fired += 1
                    return rule
        return None
