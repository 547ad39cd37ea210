"""Constraint tightening for delegation (the client checks before sending, the emulator enforces):
a child's constraints may narrow the parent's, never widen.

``tighten(parent, additional)`` returns the child's constraints (the tighter of each) or
raises ``ConstraintEscalation`` when an additional constraint is looser than the parent's
(a larger cap, a wider time window, a dropped ``task_context_required``) or cannot be
proven tighter (a parent value that is malformed, a different time zone, an unknown key
with another value). A malformed additional constraint is a ``ValueError`` (the caller's
mistake, a 400), never silently dropped.
"""

import copy
import re
from typing import Any, Dict, FrozenSet, Mapping, Optional

__all__ = ["ConstraintEscalation", "tighten"]

_CAPS = ("max_amount_cents", "max_results")
_TIME_KEYS = ("days", "hours", "timezone")
_DAYS = {
    "mon": 0, "monday": 0, "tue": 1, "tuesday": 1, "wed": 2, "wednesday": 2, "thu": 3,
    "thursday": 3, "fri": 4, "friday": 4, "sat": 5, "saturday": 5, "sun": 6, "sunday": 6,
}  # fmt: skip
_HOURS = re.compile(r"\A([01]\d|2[0-4]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)\Z")
_TZ_NAME = re.compile(r"\A[A-Za-z0-9_+-]+(?:/[A-Za-z0-9_+-]+)*\Z")


class ConstraintEscalation(Exception):
    """The child's constraints would be looser than (or not provably within) the parent's."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _days(value: Any) -> Optional[FrozenSet[int]]:
    if not isinstance(value, list) or not all(isinstance(d, str) and d.lower() in _DAYS for d in value):
        return None
    return frozenset(_DAYS[d.lower()] for d in value)


def _minutes(value: Any) -> Optional[FrozenSet[int]]:
    """The minutes of the day inside an ``HH:MM-HH:MM`` window (overnight windows wrap)."""
    match = _HOURS.match(value) if isinstance(value, str) else None
    if match is None:
        return None
    start = int(match.group(1)) * 60 + int(match.group(2))
    end = int(match.group(3)) * 60 + int(match.group(4))
    if start > 1440 or end > 1440 or start == 1440:
        return None
    if start <= end:
        return frozenset(range(start, end))
    return frozenset(range(start, 1440)) | frozenset(range(0, end))


def _valid_timezone(name: Any) -> bool:
    if not isinstance(name, str) or not _TZ_NAME.match(name):
        return False
    try:
        import zoneinfo  # type: ignore[import-not-found,unused-ignore]
    except ImportError:  # pragma: no cover - Python 3.8: the name's shape is all we can check
        return True
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _check_time_bounds(value: Any) -> Dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError("time_bounds must be an object {days?, hours?, timezone?}")
    unknown = sorted(set(value) - set(_TIME_KEYS))
    if unknown:
        raise ValueError("time_bounds: unknown field(s) {}".format(", ".join(map(str, unknown))))
    if "days" in value and _days(value["days"]) is None:
        raise ValueError("time_bounds.days must be a list of day names such as ['mon', 'tue']")
    if "hours" in value and _minutes(value["hours"]) is None:
        raise ValueError("time_bounds.hours must be 'HH:MM-HH:MM', e.g. '09:00-17:00'")
    if "timezone" in value and not _valid_timezone(value["timezone"]):
        raise ValueError("time_bounds.timezone must be an IANA time zone name such as 'Europe/Paris'")
    return value


def _tighter_time_bounds(parent: Any, child: Dict[str, Any]) -> Dict[str, Any]:
    if not isinstance(parent, dict) or not all(k in _TIME_KEYS for k in parent):
        raise ConstraintEscalation(
            "the parent's time_bounds are malformed: a narrower window cannot be proven"
        )
    merged: Dict[str, Any] = copy.deepcopy(parent)
    windowed = "days" in parent or "hours" in parent
    if "timezone" in child and windowed and child["timezone"] != parent.get("timezone", "UTC"):
        raise ConstraintEscalation(
            "time_bounds.timezone {!r} differs from the parent's {!r}: a window in another zone cannot "
            "be proven narrower".format(child["timezone"], parent.get("timezone", "UTC"))
        )
    for name, parse in (("days", _days), ("hours", _minutes)):
        if name not in child:
            continue
        if name in parent:
            allowed = parse(parent[name])
            if allowed is None:
                raise ConstraintEscalation("the parent's time_bounds.{} is malformed".format(name))
            if not parse(child[name]) <= allowed:  # type: ignore[operator]
                raise ConstraintEscalation(
                    "time_bounds.{} {!r} is wider than the parent's {!r}".format(
                        name, child[name], parent[name]
                    )
                )
        merged[name] = copy.deepcopy(child[name])
    if "timezone" in child:
        merged["timezone"] = child["timezone"]
    return merged


def tighten(parent: Any, additional: Optional[Mapping[str, Any]]) -> Optional[Dict[str, Any]]:
    """The child's constraints: the parent's, narrowed by ``additional`` (see the module doc)."""
    if not additional:
        return copy.deepcopy(parent) if parent is not None else None
    if parent is not None and not isinstance(parent, dict):
        raise ConstraintEscalation(
            "the parent's constraints are not an object: tighter ones cannot be proven"
        )
    merged: Dict[str, Any] = copy.deepcopy(parent) if parent else {}
    for name, value in additional.items():
        present = name in merged
        old = merged.get(name)
        if name in _CAPS:
            if not _is_int(value) or value < 0:
                raise ValueError("{} must be an integer >= 0".format(name))
            if present and not _is_int(old):
                raise ConstraintEscalation(
                    "the parent's {} is malformed: a lower cap cannot be proven".format(name)
                )
            if present and value > old:
                raise ConstraintEscalation("{} {} is larger than the parent's {}".format(name, value, old))
            merged[name] = value
        elif name == "task_context_required":
            if not isinstance(value, bool):
                raise ValueError("task_context_required must be true or false")
            if not value and present and old is not False:
                raise ConstraintEscalation("task_context_required cannot be dropped: the parent requires it")
            merged[name] = True if value else (old if present else False)
        elif name == "time_bounds":
            child = _check_time_bounds(value)
            merged[name] = _tighter_time_bounds(old, child) if present else copy.deepcopy(child)
        else:
            if present and old != value:
                raise ConstraintEscalation(
                    "{} differs from the parent's value and this server cannot compare it".format(name)
                )
            merged[name] = copy.deepcopy(value)
    return merged
