"""What the dashboard shows: panels of rows of text cells, the same data for the first
HTML render and for the script's refreshes (``/_emulator/ui/api/state``).

Permission requests always have panels. Agents, tokens issued and audit events get one
each when the emulator offers ``list_agents()``, ``issued_tokens()`` or
``audit_events()``; their rows are shown generically, with anything that looks like a
secret (by field name or by value prefix) replaced before it leaves the server.
"""

import dataclasses
import enum
import json
import re
from typing import Any, Dict, List, Optional, Sequence

from ._otp_model import PermissionView, iso

__all__ = ["Panel", "dashboard_panels", "duration", "scrub", "when"]

Cell = Dict[str, str]

_MAX_ROWS = 200
_MAX_COLUMNS = 8
_MAX_CELL = 200
_REDACTED = "\u2022\u2022\u2022 (hidden)"
_SECRET_NAME = re.compile(r"(^|[_-])(secret|token|password|passphrase|api_?key|key|otp)$", re.IGNORECASE)
_SECRET_VALUE = re.compile(r"^(otp_|sk_|ak_|apv_|eyJ[A-Za-z0-9_-]+\.)")
#: (method on the emulator, panel id, title, text when empty)
_OPTIONAL = (
    ("list_agents", "agents", "Agents", "No agents."),
    ("issued_tokens", "tokens", "Tokens issued", "No tokens issued yet."),
    ("audit_events", "audit", "Audit events", "No audit events yet."),
)


@dataclasses.dataclass(frozen=True)
class Panel:
    id: str
    title: str
    columns: List[str]
    rows: List[List[Cell]]
    empty: str

    def to_json(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


def duration(seconds: float) -> str:
    whole = max(0, int(seconds + 0.999))
    minutes, rest = divmod(whole, 60)
    return "{}m {:02d}s".format(minutes, rest) if minutes else "{}s".format(rest)


def when(ts: float) -> str:
    """A moment as a person reads it (UTC, to the second)."""
    return iso(ts)[:19].replace("T", " ") + " UTC"


def _text(value: Optional[str], fallback: str = "\u2014") -> Cell:
    return {"text": value if value else fallback}


def _permission_row(view: PermissionView, link: str, pending: bool) -> List[Cell]:
    row = [
        {"text": view.action, "href": link},
        _text(view.resource),
        _text(view.agent_name),
        {"text": view.status, "cls": "st st-" + view.status},
    ]
    if pending:
        return row + [_text(duration(view.remaining)), _text(view.reason)]
    moment = view.decided_at if view.decided_at is not None else view.expires_at
    return row + [_text(view.decided_by), _text(view.decision_reason), _text(when(moment))]


def permission_panels(views: Sequence[PermissionView], link_prefix: str) -> List[Panel]:
    pending = [v for v in views if v.status == "pending"]
    decided = [v for v in views if v.status != "pending"]
    base = ["Action", "Resource", "Agent", "Status"]
    return [
        Panel(
            "pending",
            "Pending requests",
            base + ["Expires in", "Agent's reason"],
            [_permission_row(v, link_prefix + v.id, True) for v in pending[:_MAX_ROWS]],
            "No request is waiting for a decision.",
        ),
        Panel(
            "decided",
            "Decided requests",
            base + ["Decided by", "Reason", "When"],
            [_permission_row(v, link_prefix + v.id, False) for v in decided[:_MAX_ROWS]],
            "Nothing decided yet.",
        ),
    ]


def scrub(value: Any, name: str = "") -> Any:
    """``value`` as plain JSON data with secrets replaced (by field name or by value prefix)."""
    if name and _SECRET_NAME.search(name):
        return _REDACTED
    if isinstance(value, enum.Enum):
        value = value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    elif hasattr(value, "_asdict"):
        value = value._asdict()
    if isinstance(value, dict):
        return {str(k): scrub(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [scrub(v) for v in value]
    if isinstance(value, str):
        return _REDACTED if _SECRET_VALUE.match(value) else value
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return str(value)


def _cell_text(value: Any) -> str:
    if isinstance(value, str):
        text = value
    elif value is None:
        text = "\u2014"
    else:
        text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= _MAX_CELL else text[: _MAX_CELL - 1] + "\u2026"


def generic_panel(panel_id: str, title: str, empty: str, items: Any) -> Panel:
    """A panel of whatever records ``items`` holds (dicts, dataclasses, named tuples...)."""
    rows = [scrub(item) for item in list(items or ())[-_MAX_ROWS:]]
    records = [r if isinstance(r, dict) else {"value": r} for r in rows]
    columns: List[str] = []
    for record in records:
        for key in record:
            if key not in columns and len(columns) < _MAX_COLUMNS:
                columns.append(key)
    return Panel(
        panel_id,
        title,
        columns or ["value"],
        [[{"text": _cell_text(r.get(c))} for c in (columns or ["value"])] for r in records],
        empty,
    )


def dashboard_panels(emu: Any, views: Sequence[PermissionView], link_prefix: str) -> List[Panel]:
    panels = permission_panels(views, link_prefix)
    for method, panel_id, title, empty in _OPTIONAL:
        source = getattr(emu, method, None)
        if callable(source):
            panels.append(generic_panel(panel_id, title, empty, source()))
    return panels
