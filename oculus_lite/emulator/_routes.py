"""Routing of the emulator's protocol endpoints; the ``/_emulator/`` admin API is in ``_admin``.

Kept apart from the ``Emulator`` class so each stays small: every handler takes the
emulator and a parsed ``Request`` and returns a ``Response``; the services behind them
(tokens, governance, delegation) know nothing of HTTP.
"""

import base64
import binascii
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Tuple
from urllib.parse import unquote

from ._admin import admin_denied, admin_route
from ._agents import Agent
from ._governance import etag_matches
from ._server import Request, Response, json_response
from ._tokens import Reply, error_body

if TYPE_CHECKING:  # pragma: no cover
    from ._emulator import Emulator

__all__ = ["route"]

_Handler = Callable[["Emulator", Request], Response]


def error(status: int, code: str, message: str) -> Response:
    return json_response(status, error_body(code, message, None))


def reply_response(reply: Reply) -> Response:
    if reply.status == 304:
        return Response(304, list(reply.headers))
    return json_response(reply.status, reply.body, list(reply.headers))


def method_not_allowed(req: Request, allowed: str) -> Response:
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
    found = _ROUTES.get(path)
    if found is not None:
        methods, handler = found
        if req.method not in methods:
            return method_not_allowed(req, methods[0])
        return handler(emu, req)
    if path == "/_emulator/ui" or path.startswith("/_emulator/ui/"):  # its own sign-in, see _ui
        from ._ui import route as ui_route

        return ui_route(emu, req)
    if path.startswith("/api/v1/") or path.startswith("/_emulator/otp/"):
        if path.startswith("/_emulator/") and not emu._admin_ok(req):
            return admin_denied()
        if emu.otp is not None:
            answer = emu.otp.handle(req.method, path, req.query, req.headers, req.body)
            if answer is not None:
                status, headers, body = answer
                return Response(
                    int(status), [(str(k), str(v)) for k, v in dict(headers).items()], bytes(body)
                )
        return error(404, "not_found", "no route for {} {}".format(req.method, path))
    if path.startswith("/_emulator/"):
        if not emu._admin_ok(req):
            return admin_denied()
        return admin_route(emu, req)
    return error(404, "not_found", "no route for {} {}".format(req.method, path))


# ---------------------------------------------------------------------- token service
def _token(emu: "Emulator", req: Request) -> Response:
    form = _with_basic_auth(req.form(), req.headers.get("authorization", ""))
    return reply_response(emu.tokens.token(form))


def _with_basic_auth(form: Dict[str, str], authorization: str) -> Dict[str, str]:
    """RFC 6749 2.3.1 ``client_secret_basic``, accepted when the body carries no credentials."""
    if form.get("client_id") or not authorization[:6].lower() == "basic ":
        return form
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


def _revoked(emu: "Emulator", req: Request) -> Response:
    jtis, etag = emu.tokens.revoked()
    headers = [("ETag", etag), ("Cache-Control", "no-cache")]
    if etag_matches(req.headers.get("if-none-match", ""), etag):
        emu._bump("revocation_not_modified")
        return Response(304, headers)
    return json_response(200, {"revoked_jtis": jtis}, headers)


def _jwks(emu: "Emulator", req: Request) -> Response:
    return json_response(
        200, emu.keys.jwks(), [("Cache-Control", "public, max-age={}".format(emu.jwks_max_age))]
    )


def _delegate(emu: "Emulator", req: Request) -> Response:
    try:
        data = req.json()
    except (ValueError, UnicodeDecodeError):
        return reply_response(emu.tokens.err(400, "INVALID_REQUEST", "request body must be a JSON object"))
    return reply_response(emu.delegation.delegate(req.headers.get("authorization", ""), data))


def _enroll(emu: "Emulator", req: Request) -> Response:
    return reply_response(emu.delegation.enroll(req.form()))


# ---------------------------------------------------------------------- SDK service token routes
def _service_agent(emu: "Emulator", req: Request) -> Tuple[Optional[Agent], Optional[Response]]:
    token = req.bearer()
    agent = emu.tokens.service_token_owner(token) if token else None
    if agent is not None:
        return agent, None
    reply = emu.tokens.err(
        401,
        "invalid_token",
        "send the sdk_service_token of a token response as Authorization: Bearer <token>; "
        "it is missing, unknown or expired, or its agent is not active",
    )
    return None, json_response(401, reply.body, [("WWW-Authenticate", 'Bearer error="invalid_token"')])


def _capability_maps(emu: "Emulator", req: Request) -> Response:
    agent, denied = _service_agent(emu, req)
    if agent is None:
        return denied  # type: ignore[return-value]
    reply = emu.governance.capability_map(agent, req.headers.get("if-none-match", ""))
    if reply.status == 304:
        emu._bump("capability_map_not_modified")
    return reply_response(reply)


def _credentials(emu: "Emulator", req: Request) -> Response:
    agent, denied = _service_agent(emu, req)
    if agent is None:
        return denied  # type: ignore[return-value]
    values: List[str] = req.query.get("integration", [])
    return reply_response(emu.governance.credential(agent, values[0] if values else ""))


def _audit(emu: "Emulator", req: Request) -> Response:
    agent, denied = _service_agent(emu, req)
    if agent is None:
        return denied  # type: ignore[return-value]
    try:
        data = req.json()
    except (ValueError, UnicodeDecodeError):
        return reply_response(emu.tokens.err(400, "invalid_audit_batch", "body is not valid JSON", agent))
    return reply_response(emu.governance.receive_audit(agent, data))


# path -> (allowed methods, the first one named in a 405's Allow header; handler)
_ROUTES: Dict[str, Tuple[Tuple[str, ...], _Handler]] = {
    "/oauth/token": (("POST",), _token),
    "/oauth/revoked-tokens": (("GET", "HEAD"), _revoked),
    "/.well-known/jwks.json": (("GET", "HEAD"), _jwks),
    "/oauth/delegate": (("POST",), _delegate),
    "/oauth/enroll": (("POST",), _enroll),
    "/v1/sync/capability-maps": (("GET", "HEAD"), _capability_maps),
    "/v1/credentials/fetch": (("GET",), _credentials),
    "/v1/audit/events/batch": (("POST",), _audit),
}
