"""The emulator's governance side: capability maps, integration credentials, the audit sink.

What the official SDK's ``startup()`` loads and its audit emitter posts to, behind an SDK
service token: ``GET /v1/sync/capability-maps`` (strong ETag, 304), ``GET
/v1/credentials/fetch`` and ``POST /v1/audit/events/batch`` (at most 100 events, event ids
accepted once so a resent batch is idempotent). No HTTP here: methods return a ``Reply``.
A map or credential set for one agent (by client_id) overrides the global one for that agent.
"""

import copy
import hashlib
import json
import threading
from typing import Any, Dict, List, Mapping, Optional, Set, Tuple

from ._agents import Agent
from ._tokens import Reply, TokenService

__all__ = ["AUDIT_BATCH_LIMIT", "GovernanceService", "parse_integrations"]

AUDIT_BATCH_LIMIT = 100
_INTEGRATION_KEYS = ("capabilities", "deny_always")
_MAX_EVENT_ID = 256


def parse_integrations(integrations: Any) -> Dict[str, Dict[str, Any]]:
    """Validate a capability map in the wire shape ``{name: {"capabilities": {cap: meta},
    "deny_always": [cap]}}`` and return a normalised deep copy; ValueError names the field."""
    if not isinstance(integrations, Mapping):
        raise ValueError("integrations must be an object of integration name -> {capabilities, deny_always}")
    out: Dict[str, Dict[str, Any]] = {}
    for name, entry in integrations.items():
        where = "integrations[{!r}]".format(name)
        if not isinstance(name, str) or not name:
            raise ValueError("integration names must be non-empty strings")
        if not isinstance(entry, Mapping):
            raise ValueError(where + " must be an object")
        unknown = sorted(set(entry) - set(_INTEGRATION_KEYS))
        if unknown:
            raise ValueError(
                "{}: unknown field(s) {}; known: {}".format(
                    where, ", ".join(unknown), "capabilities, deny_always"
                )
            )
        caps = entry.get("capabilities", {})
        if not isinstance(caps, Mapping) or not all(isinstance(c, str) and c for c in caps):
            raise ValueError(where + ".capabilities must be an object of capability name -> metadata")
        deny = entry.get("deny_always", [])
        if not isinstance(deny, list) or not all(isinstance(c, str) and c for c in deny):
            raise ValueError(where + ".deny_always must be a list of capability names")
        try:
            out[name] = json.loads(json.dumps({"capabilities": dict(caps), "deny_always": list(deny)}))
        except (TypeError, ValueError) as exc:
            raise ValueError("{} must be JSON-serialisable ({})".format(where, exc)) from None
    return out


def _etag(body: Mapping[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return '"{}"'.format(hashlib.sha256(canonical).hexdigest()[:32])


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("{} must be a non-empty string".format(name))
    return value


def etag_matches(if_none_match: str, etag: str) -> bool:
    """``If-None-Match`` semantics (weak comparison, RFC 9110 13.1.2): ``*`` or any listed tag."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    strip = etag[2:] if etag.startswith("W/") else etag
    return any(
        (t.strip()[2:] if t.strip().startswith("W/") else t.strip()) == strip
        for t in if_none_match.split(",")
    )


class GovernanceService:
    """Thread-safe maps, credentials and received audit events."""

    def __init__(self, tokens: TokenService) -> None:
        self.tokens = tokens
        self._lock = threading.Lock()
        self._maps: Dict[Optional[str], Dict[str, Dict[str, Any]]] = {}
        self._credentials: Dict[Tuple[Optional[str], str], Tuple[str, str]] = {}
        self._events: List[Dict[str, Any]] = []
        self._event_ids: Set[str] = set()
        self.events_accepted = 0
        self.events_duplicated = 0

    def reset(self) -> None:
        with self._lock:
            self._maps.clear()
            self._credentials.clear()
            self._events = []
            self._event_ids = set()
            self.events_accepted = 0
            self.events_duplicated = 0

    # ------------------------------------------------------------------ admin
    def set_capability_map(self, integrations: Any, client_id: Optional[str] = None) -> None:
        parsed = parse_integrations(integrations)
        if client_id is not None:
            _text(client_id, "client_id")
        with self._lock:
            self._maps[client_id] = parsed

    def set_credential(
        self, integration: str, credential_type: str, value: str, client_id: Optional[str] = None
    ) -> None:
        _text(integration, "integration")
        _text(credential_type, "credential_type")
        _text(value, "value")
        if client_id is not None:
            _text(client_id, "client_id")
        with self._lock:
            self._credentials[(client_id, integration)] = (credential_type, value)

    def audit_events(self) -> List[Dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self._events)

    # ------------------------------------------------------------------ protocol
    def integrations_for(self, client_id: str) -> Dict[str, Dict[str, Any]]:
        with self._lock:
            found = self._maps.get(client_id)
            if found is None:
                found = self._maps.get(None, {})
            return copy.deepcopy(found)

    def capability_map(self, agent: Agent, if_none_match: str) -> Reply:
        body = {"integrations": self.integrations_for(agent.client_id)}
        etag = _etag(body)
        headers = (("ETag", etag), ("Cache-Control", "no-cache"))
        if etag_matches(if_none_match, etag):
            return Reply(304, {}, headers)
        return Reply(200, body, headers)

    def credential(self, agent: Agent, integration: str) -> Reply:
        if not integration:
            return self.tokens.err(
                400,
                "invalid_request",
                "query parameter integration is required, e.g. ?integration=stripe",
                agent,
            )
        if integration not in self.integrations_for(agent.client_id):
            return self.tokens.err(
                403,
                "integration_not_allowed",
                "agent {!r} has no integration {!r} in its capability map".format(
                    agent.client_id, integration[:100]
                ),
                agent,
            )
        with self._lock:
            found = self._credentials.get((agent.client_id, integration)) or self._credentials.get(
                (None, integration)
            )
        if found is None:
            return self.tokens.err(
                404,
                "credential_not_found",
                "no credential registered for integration {!r}".format(integration[:100]),
                agent,
            )
        return Reply(200, {"credential_type": found[0], "value": found[1]}, (("Cache-Control", "no-store"),))

    def receive_audit(self, agent: Agent, data: Any) -> Reply:
        problem = _batch_problem(data)
        if problem is not None:
            return self.tokens.err(400, "invalid_audit_batch", problem, agent)
        events: List[Dict[str, Any]] = data["events"]
        accepted = duplicates = 0
        with self._lock:
            for event in events:
                event_id = event.get("event_id")
                if event_id is not None:
                    if event_id in self._event_ids:
                        duplicates += 1
                        continue
                    self._event_ids.add(event_id)
                self._events.append(copy.deepcopy(event))
                accepted += 1
            self.events_accepted += accepted
            self.events_duplicated += duplicates
        return Reply(202, {"accepted": accepted, "duplicates": duplicates})


def _batch_problem(data: Any) -> Optional[str]:
    """Why a batch body is refused (the whole batch: nothing is stored), or None."""
    if not isinstance(data, dict) or not isinstance(data.get("events"), list):
        return 'body must be a JSON object {"events": [...]}'
    events = data["events"]
    if len(events) > AUDIT_BATCH_LIMIT:
        return "batch holds {} events; the limit is {} per request".format(len(events), AUDIT_BATCH_LIMIT)
    for i, event in enumerate(events):
        if not isinstance(event, dict):
            return "events[{}] must be a JSON object".format(i)
        event_id = event.get("event_id")
        if event_id is not None and (not isinstance(event_id, str) or not 0 < len(event_id) <= _MAX_EVENT_ID):
            return "events[{}].event_id must be a non-empty string of at most {} characters".format(
                i, _MAX_EVENT_ID
            )
        event_type = event.get("event_type")
        if event_type is not None and not isinstance(event_type, str):
            return "events[{}].event_type must be a string".format(i)
    return None
