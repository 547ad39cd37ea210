"""The ``/_emulator/`` admin API: each route mirrors a Python method of ``Emulator``.

Requests carry the admin token when the emulator was given one (``_admin_ok``); bodies
are JSON objects whose unknown fields are refused, so a typo is a 400 naming it.
"""

from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, Tuple

from ._agents import AGENT_FIELDS
from ._server import Request, Response, json_response
from ._tokens import error_body

if TYPE_CHECKING:  # pragma: no cover
    from ._emulator import Emulator

__all__ = ["admin_denied", "admin_route"]

_Admin = Callable[["Emulator", Any], Response]


def admin_denied() -> Response:
    return json_response(
        401,
        error_body("unauthorized", "admin token required: send Authorization: Bearer <admin_token>", None),
        [("WWW-Authenticate", 'Bearer realm="emulator-admin"')],
    )


def _error(status: int, code: str, message: str) -> Response:
    return json_response(status, error_body(code, message, None))


def admin_route(emu: "Emulator", req: Request) -> Response:
    try:
        data = req.json() if req.method in ("POST", "PUT", "PATCH") else {}
    except (ValueError, UnicodeDecodeError):
        return _error(400, "invalid_json", "request body must be a JSON object")
    key: Tuple[str, ...] = tuple(req.path[len("/_emulator/") :].strip("/").split("/"))
    try:
        if key[:1] == ("agents",) and len(key) == 3:
            action = _AGENT_ACTIONS.get((req.method, key[2]))
            if action is None:
                return _error(404, "not_found", "no admin route for {} {}".format(req.method, req.path))
            if emu.tokens.get_agent(key[1]) is None:
                return _error(404, "agent_not_found", "no agent with client_id {!r}".format(key[1]))
            return action(emu, key[1], data)
        name = "/".join(key)
        handler = _ADMIN.get((req.method, name))
        if handler is None:
            allowed = sorted(m for m, p in _ADMIN if p == name)
            if allowed:
                return json_response(
                    405,
                    error_body(
                        "method_not_allowed", "{} is not allowed on {}".format(req.method, req.path), None
                    ),
                    [("Allow", ", ".join(allowed))],
                )
            return _error(404, "not_found", "no admin route for {} {}".format(req.method, req.path))
        return handler(emu, data)
    except (ValueError, TypeError) as exc:
        return _error(400, "invalid_request", str(exc))


def _fields(data: Any, allowed: Iterable[str], required: Iterable[str] = ()) -> Dict[str, Any]:
    """The body as an object with only ``allowed`` fields and every ``required`` one."""
    if not isinstance(data, dict):
        raise ValueError("request body must be a JSON object")
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise ValueError(
            "unknown field(s) {}; known: {}".format(", ".join(unknown), ", ".join(sorted(allowed)))
        )
    missing = [name for name in required if data.get(name) is None]
    if missing:
        raise ValueError("missing field(s) " + ", ".join(missing))
    return data


# ---------------------------------------------------------------------- agents and tokens
def _put_agent(emu: "Emulator", data: Any) -> Response:
    spec = _fields(data, AGENT_FIELDS, ("client_id",))
    generated = spec.get("client_secret") is None
    secret = emu.add_agent(**spec)
    agent = emu.tokens.get_agent(spec["client_id"])
    body: Dict[str, Any] = {"client_id": spec["client_id"], "status": agent.status if agent else "active"}
    if generated:
        body["client_secret"] = secret
    return json_response(201, body)


def _list_agents(emu: "Emulator", data: Any) -> Response:
    return json_response(200, {"agents": emu.list_agents()})


def _rotate(emu: "Emulator", cid: str, data: Any) -> Response:
    return json_response(200, {"client_id": cid, "client_secret": emu.rotate_secret(cid)})


def _status(emu: "Emulator", cid: str, data: Any) -> Response:
    status = _fields(data, ("status",), ("status",))["status"]
    emu.set_status(cid, status)
    return json_response(200, {"client_id": cid, "status": status})


def _revoke(emu: "Emulator", data: Any) -> Response:
    jti = _fields(data, ("jti",)).get("jti")
    emu.revoke(jti)  # type: ignore[arg-type]  # validated by revoke
    return json_response(200, {"jti": jti, "revoked": True})


def _rotate_keys(emu: "Emulator", data: Any) -> Response:
    grace = _fields(data, ("grace",)).get("grace")
    if grace is not None and (isinstance(grace, bool) or not isinstance(grace, (int, float)) or grace < 0):
        raise ValueError("grace must be a number of seconds >= 0")
    return json_response(200, {"kid": emu.rotate_keys(grace)})


def _expire_keys(emu: "Emulator", data: Any) -> Response:
    return json_response(200, {"dropped": emu.expire_retired_keys()})


def _issue(emu: "Emulator", data: Any) -> Response:
    spec = _fields(data, ("client_id", "scope", "audience", "ttl", "claims", "header"))
    kw = {k: spec[k] for k in ("audience", "ttl", "claims", "header") if spec.get(k) is not None}
    try:
        token = emu.issue_token(spec.get("client_id"), spec.get("scope", "db:read"), **kw)
    except KeyError:
        return _error(404, "agent_not_found", "no agent with that client_id")
    return json_response(200, {"access_token": token})


def _issued(emu: "Emulator", data: Any) -> Response:
    return json_response(200, {"tokens": emu.issued_tokens()})


# ---------------------------------------------------------------------- governance
def _set_capability_map(emu: "Emulator", data: Any) -> Response:
    spec = _fields(data, ("integrations", "client_id"), ("integrations",))
    emu.set_capability_map(spec["integrations"], spec.get("client_id"))
    return json_response(
        200, {"client_id": spec.get("client_id"), "integrations": sorted(spec["integrations"])}
    )


def _set_credential(emu: "Emulator", data: Any) -> Response:
    spec = _fields(
        data,
        ("integration", "credential_type", "value", "client_id"),
        ("integration", "credential_type", "value"),
    )
    emu.set_credential(spec["integration"], spec["credential_type"], spec["value"], spec.get("client_id"))
    return json_response(
        200,
        {
            "integration": spec["integration"],
            "credential_type": spec["credential_type"],
            "client_id": spec.get("client_id"),
        },
    )


def _audit(emu: "Emulator", data: Any) -> Response:
    return json_response(200, {"events": emu.audit_events()})


def _mint_enroll(emu: "Emulator", data: Any) -> Response:
    spec = _fields(data, ("client_id", "scopes", "policies", "constraints", "ttl"), ("scopes",))
    kw = {k: spec[k] for k in ("client_id", "policies", "constraints", "ttl") if spec.get(k) is not None}
    token, expires_at = emu.delegation.mint_enroll_token(spec["scopes"], **kw)
    return json_response(201, {"enroll_token": token, "expires_at": int(expires_at)})


# ---------------------------------------------------------------------- misc
def _set_faults(emu: "Emulator", data: Any) -> Response:
    rules = data.get("faults") if isinstance(data, dict) else data
    emu.set_faults(rules)  # type: ignore[arg-type]  # validated by set_faults
    return json_response(200, {"faults": emu.faults.describe()})


def _reset(emu: "Emulator", data: Any) -> Response:
    emu.reset()
    return json_response(200, {"ok": True})


def _clear_faults(emu: "Emulator", data: Any) -> Response:
    emu.clear_faults()
    return json_response(200, {"ok": True})


def _jwks(emu: "Emulator", data: Any) -> Response:
    return json_response(200, emu.jwks())


def _stats(emu: "Emulator", data: Any) -> Response:
    return json_response(200, emu.stats())


def _faults(emu: "Emulator", data: Any) -> Response:
    return json_response(200, {"faults": emu.faults.describe()})


_ADMIN: Dict[Tuple[str, str], _Admin] = {
    ("POST", "agents"): _put_agent,
    ("GET", "agents"): _list_agents,
    ("POST", "revoke"): _revoke,
    ("POST", "keys/rotate"): _rotate_keys,
    ("POST", "keys/expire"): _expire_keys,
    ("GET", "jwks"): _jwks,
    ("POST", "tokens"): _issue,
    ("GET", "tokens"): _issued,
    ("GET", "stats"): _stats,
    ("POST", "reset"): _reset,
    ("GET", "faults"): _faults,
    ("POST", "faults"): _set_faults,
    ("DELETE", "faults"): _clear_faults,
    ("POST", "capability-maps"): _set_capability_map,
    ("POST", "credentials"): _set_credential,
    ("GET", "audit"): _audit,
    ("POST", "enroll-tokens"): _mint_enroll,
}

_AGENT_ACTIONS: Dict[Tuple[str, str], Callable[["Emulator", str, Any], Response]] = {
    ("POST", "rotate"): _rotate,
    ("POST", "status"): _status,
}
