"""Routing of the emulator: the public protocol endpoints and the ``/_emulator/`` admin API.

Kept apart from the ``Emulator`` class so each stays small; every function
takes the emulator and a parsed ``Request`` and returns a ``Response``.
"""

from typing import TYPE_CHECKING, Any, Callable, Dict, Tuple

from ._server import Request, Response, json_response
from ._tokens import error_body

if TYPE_CHECKING:  # pragma: no cover
    from ._emulator import Emulator

__all__ = ["route"]


def _error(status: int, code: str, message: str) -> Response:
    return json_response(status, error_body(code, message, None))


def _method_not_allowed(req: Request, allowed: str) -> Response:
    return json_response(
        405,
        error_body(
            "method_not_allowed",
            "{} is not allowed on {}; use {}".format(req.method, req.path, allowed),
            None,
        ),
        [("Allow", allowed)],
    )


def route(emu: "Emulator", req: Request) -> Response:
    path = req.path
    if path == "/oauth/token":
        if req.method != "POST":
            return _method_not_allowed(req, "POST")
        from ._emulator import _form

        reply = emu.tokens.token(_with_basic_auth(_form(req), req.headers.get("authorization", "")))
        return json_response(reply.status, reply.body, list(reply.headers))
    if path == "/oauth/revoked-tokens":
        if req.method not in ("GET", "HEAD"):
            return _method_not_allowed(req, "GET")
        jtis, etag = emu.tokens.revoked()
        headers = [("ETag", etag), ("Cache-Control", "no-cache")]
        inm = req.headers.get("if-none-match", "")
        if inm and (inm.strip() == "*" or etag in [t.strip() for t in inm.split(",")]):
            emu._bump("revocation_not_modified")
            return Response(304, headers)
        return json_response(200, {"revoked_jtis": jtis}, headers)
    if path == "/.well-known/jwks.json":
        if req.method not in ("GET", "HEAD"):
            return _method_not_allowed(req, "GET")
        return json_response(
            200, emu.keys.jwks(), [("Cache-Control", "public, max-age={}".format(emu.jwks_max_age))]
        )
    if path == "/_emulator/ui" or path.startswith("/_emulator/ui/"):  # its own sign-in, see _ui
        from ._ui import route as ui_route

        return ui_route(emu, req)
    if path.startswith("/api/v1/") or path.startswith("/_emulator/otp/"):
        if path.startswith("/_emulator/") and not emu._admin_ok(req):
            from ._emulator import admin_denied

            return admin_denied()
        if emu.otp is not None:
            answer = emu.otp.handle(req.method, path, req.query, req.headers, req.body)
            if answer is not None:
                status, headers, body = answer
                return Response(
                    int(status), [(str(k), str(v)) for k, v in dict(headers).items()], bytes(body)
                )
        return _error(404, "not_found", "no route for {} {}".format(req.method, path))
    if path.startswith("/_emulator/"):
        if not emu._admin_ok(req):
            from ._emulator import admin_denied

            return admin_denied()
        return _admin(emu, req)
    return _error(404, "not_found", "no route for {} {}".format(req.method, path))


def _with_basic_auth(form: Dict[str, str], authorization: str) -> Dict[str, str]:
    """RFC 6749 2.3.1 ``client_secret_basic``, accepted when the body carries no credentials."""
    if form.get("client_id") or not authorization[:6].lower() == "basic ":
        return form
    import base64
    import binascii
    from urllib.parse import unquote

    try:
        decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return form
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        return form
    merged = dict(form)
    merged["client_id"], merged["client_secret"] = unquote(client_id), unquote(secret)
    return merged


# ---------------------------------------------------------------------- admin API
def _admin(emu: "Emulator", req: Request) -> Response:
    try:
        data = req.json() if req.method in ("POST", "PUT", "PATCH") else {}
    except (ValueError, UnicodeDecodeError):
        return _error(400, "invalid_json", "request body must be a JSON object")
    parts = req.path[len("/_emulator/") :].strip("/").split("/")
    key: Tuple[str, ...] = tuple(parts)
    try:
        if key[:1] == ("agents",) and len(key) == 3:
            handler = _AGENT_ACTIONS.get((req.method, key[2]))
            if handler is None:
                return _error(404, "not_found", "no admin route for {} {}".format(req.method, req.path))
            if emu.tokens.get_agent(key[1]) is None:
                return _error(404, "agent_not_found", "no agent with client_id {!r}".format(key[1]))
            return handler(emu, key[1], data)
        handler2 = _ADMIN.get((req.method, "/".join(key)))
        if handler2 is None:
            if any(path == "/".join(key) for _, path in _ADMIN):
                allowed = ", ".join(sorted(m for m, p in _ADMIN if p == "/".join(key)))
                return _method_not_allowed(req, allowed)
            return _error(404, "not_found", "no admin route for {} {}".format(req.method, req.path))
        return handler2(emu, data)
    except (ValueError, TypeError) as exc:
        return _error(400, "invalid_request", str(exc))


def _obj(data: Any) -> Dict[str, Any]:
    if not isinstance(data, dict):
        raise ValueError("request body must be a JSON object")
    return data


def _put_agent(emu: "Emulator", data: Any) -> Response:
    spec = _obj(data)
    generated = spec.get("client_secret") is None
    agent = emu._agent_from_json(spec, "agent")
    emu.tokens.put_agent(agent)
    body: Dict[str, Any] = {"client_id": agent.client_id, "status": agent.status}
    if generated:
        body["client_secret"] = agent.client_secret
    return json_response(201, body)


def _list_agents(emu: "Emulator", data: Any) -> Response:
    out = []
    for cid in emu.tokens.agent_ids():
        a = emu.tokens.get_agent(cid)
        if a is not None:
            out.append(
                {
                    "client_id": a.client_id,
                    "status": a.status,
                    "token_ttl": a.token_ttl,
                    "refresh_tokens": a.refresh_tokens,
                    "policies": [
                        {"name": p.name, "scopes": list(p.scopes), "mode": p.mode} for p in a.policies
                    ],
                }
            )
    return json_response(200, {"agents": out})


def _rotate(emu: "Emulator", cid: str, data: Any) -> Response:
    return json_response(200, {"client_id": cid, "client_secret": emu.rotate_secret(cid)})


def _status(emu: "Emulator", cid: str, data: Any) -> Response:
    status = _obj(data).get("status")
    emu.set_status(cid, status)  # type: ignore[arg-type]
    return json_response(200, {"client_id": cid, "status": status})


def _revoke(emu: "Emulator", data: Any) -> Response:
    jti = _obj(data).get("jti")
    emu.revoke(jti)  # type: ignore[arg-type]
    return json_response(200, {"jti": jti, "revoked": True})


def _rotate_keys(emu: "Emulator", data: Any) -> Response:
    grace = _obj(data).get("grace")
    if grace is not None and (isinstance(grace, bool) or not isinstance(grace, (int, float)) or grace < 0):
        raise ValueError("grace must be a number of seconds >= 0")
    return json_response(200, {"kid": emu.rotate_keys(grace)})


def _expire_keys(emu: "Emulator", data: Any) -> Response:
    return json_response(200, {"dropped": emu.expire_retired_keys()})


def _issue(emu: "Emulator", data: Any) -> Response:
    spec = _obj(data)
    allowed = {"client_id", "scope", "audience", "ttl", "claims", "header"}
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise ValueError("unknown field(s) " + ", ".join(unknown))
    kw = {k: spec[k] for k in ("audience", "ttl", "claims", "header") if spec.get(k) is not None}
    try:
        token = emu.issue_token(spec.get("client_id"), spec.get("scope", "db:read"), **kw)
    except KeyError:
        return _error(404, "agent_not_found", "no agent with that client_id")
    return json_response(200, {"access_token": token})


def _set_faults(emu: "Emulator", data: Any) -> Response:
    rules = data.get("faults") if isinstance(data, dict) else data
    emu.set_faults(rules)  # type: ignore[arg-type]  # validated by set_faults
    return json_response(200, {"faults": emu.faults.describe()})


def _simple(fn: Callable[["Emulator"], Any], status: int = 200) -> Callable[["Emulator", Any], Response]:
    def handler(emu: "Emulator", data: Any) -> Response:
        result = fn(emu)
        return json_response(status, result if isinstance(result, dict) else {"ok": True})

    return handler


def _reset(emu: "Emulator") -> None:
    emu.reset()


def _clear(emu: "Emulator") -> None:
    emu.clear_faults()


def _jwks(emu: "Emulator") -> Dict[str, Any]:
    return emu.jwks()


def _stats(emu: "Emulator") -> Dict[str, Any]:
    return emu.stats()


def _faults(emu: "Emulator") -> Dict[str, Any]:
    return {"faults": emu.faults.describe()}


_ADMIN: Dict[Tuple[str, str], Callable[["Emulator", Any], Response]] = {
    ("POST", "agents"): _put_agent,
    ("GET", "agents"): _list_agents,
    ("POST", "revoke"): _revoke,
    ("POST", "keys/rotate"): _rotate_keys,
    ("POST", "keys/expire"): _expire_keys,
    ("GET", "jwks"): _simple(_jwks),
    ("POST", "tokens"): _issue,
    ("GET", "stats"): _simple(_stats),
    ("POST", "reset"): _simple(_reset),
    ("GET", "faults"): _simple(_faults),
    ("POST", "faults"): _set_faults,
    ("DELETE", "faults"): _simple(_clear),
}

_AGENT_ACTIONS: Dict[Tuple[str, str], Callable[["Emulator", str, Any], Response]] = {
    ("POST", "rotate"): _rotate,
    ("POST", "status"): _status,
}
