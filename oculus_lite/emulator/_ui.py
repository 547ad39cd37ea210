"""The human's side of Agent OTP: the approval page and the dashboard under ``/_emulator/ui``.

Routes (all answered with the same security headers, see ``_HEADERS``)::

    GET  /_emulator/ui                       dashboard (sign-in form without a session)
    GET  /_emulator/ui/permissions/{id}      approval page (read-only without a session)
    POST /_emulator/ui/permissions/{id}      the decision: form token + session + same origin
    GET  /_emulator/ui/login, POST .../login sign in with the approver token
    POST /_emulator/ui/logout                sign out
    GET  /_emulator/ui/api/state             the dashboard's panels as JSON (session)
    GET  /_emulator/ui/api/permissions/{id}  status and seconds left (for the page's reload)
    GET  /_emulator/ui/static/ui.css|ui.js   the page's own style and script

These routes do not take the admin bearer token (a browser cannot send it): the
approver signs in with the approver token, which is ``--admin-token`` when set.
"""

import json
import re
from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple
from urllib.parse import parse_qs

from ._otp_model import bearer
from ._server import Request, Response
from ._ui_assets import CSS, JS
from ._ui_auth import cross_site_reason, host_reason
from ._ui_pages import UI, approval_page, dashboard_page, message_page, signin_page
from ._ui_panels import dashboard_panels

if TYPE_CHECKING:  # pragma: no cover
    from ._emulator import Emulator
    from ._otp import OtpService

__all__ = ["UI", "dashboard_url", "route"]

_PERMISSION = re.compile(r"^/_emulator/ui/(api/)?permissions/([A-Za-z0-9_-]{1,100})$")
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_HEADERS = [
    ("Content-Security-Policy", _CSP),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
]
_MAX_REASON = 1000
_MAX_SCOPE_TEXT = 64 * 1024


def dashboard_url(emu: "Emulator") -> str:
    """Where a person opens the dashboard (after ``start()``)."""
    return emu.url + UI


def _respond(status: int, body: str, ctype: str = "text/html; charset=utf-8", **extra: str) -> Response:
    headers = [("Content-Type", ctype)] + list(_HEADERS)
    headers += [(k.replace("_", "-"), v) for k, v in extra.items()]
    return Response(status, headers, body.encode("utf-8"))


def _json(status: int, payload: Any) -> Response:
    return _respond(status, json.dumps(payload, separators=(",", ":")), "application/json")


def _redirect(location: str, cookie: Optional[str] = None) -> Response:
    resp = _respond(303, "", Location=location)
    if cookie is not None:
        resp.headers.append(("Set-Cookie", cookie))
    return resp


def _form(req: Request) -> Optional[Dict[str, str]]:
    """The urlencoded form of a POST (first value of each field), or None when it is not one."""
    if (
        req.headers.get("content-type", "").split(";")[0].strip().lower()
        != "application/x-www-form-urlencoded"
    ):
        return None
    try:
        fields = parse_qs(req.body.decode("utf-8"), keep_blank_values=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        return None
    return {k: v[0] for k, v in fields.items()}


def route(emu: "Emulator", req: Request) -> Response:
    otp: Optional["OtpService"] = emu.otp
    path = req.path.rstrip("/") or "/"
    bad_host = host_reason(req.headers, emu.host)
    if bad_host is not None:
        return _respond(421, message_page("Wrong host", bad_host))
    if path == UI + "/static/ui.css" and req.method in ("GET", "HEAD"):
        return _respond(200, CSS, "text/css; charset=utf-8")
    if path == UI + "/static/ui.js" and req.method in ("GET", "HEAD"):
        return _respond(200, JS, "text/javascript; charset=utf-8")
    if otp is None:
        return _respond(404, message_page("Not available", "this emulator has no approval service"))
    sid = otp.approvers.session(req.headers)
    if req.method == "POST":
        refused = _refuse_post(otp, req)
        if refused is not None:
            return refused
    if path == UI and req.method in ("GET", "HEAD"):
        if sid is None:
            return _respond(200, signin_page(UI))
        panels = dashboard_panels(emu, otp.views(), UI + "/permissions/")
        return _respond(200, dashboard_page(panels, otp.approvers.form_token(sid, "logout")))
    if path == UI + "/api/state" and req.method in ("GET", "HEAD"):
        if sid is None:
            return _json(401, {"error": "sign in first"})
        panels = dashboard_panels(emu, otp.views(), UI + "/permissions/")
        return _json(200, {"panels": [p.to_json() for p in panels]})
    if path == UI + "/login":
        if req.method in ("GET", "HEAD"):
            return _respond(200, signin_page(_next(req.query.get("next", [UI])[0])))
        if req.method == "POST":
            return _sign_in(otp, req)
    if path == UI + "/logout" and req.method == "POST":
        form = _form(req) or {}
        if sid is None or not otp.approvers.form_token_ok(sid, "logout", form.get("csrf", "")):
            return _respond(403, message_page("Forbidden", "missing or wrong form token"))
        otp.approvers.sign_out(sid)
        return _redirect(UI, otp.approvers.clear_cookie())
    match = _PERMISSION.match(path)
    if match is not None:
        pid = match.group(2)
        if match.group(1):  # the page's status poll: what the page already shows, nothing more
            view = otp.view(pid)
            if view is None or req.method not in ("GET", "HEAD"):
                return _json(404, {"error": "no such permission"})
            return _json(200, {"id": view.id, "status": view.status, "remaining": view.remaining})
        if req.method in ("GET", "HEAD"):
            return _page(otp, pid, sid)
        if req.method == "POST":
            return _decide(otp, pid, sid, req)
    return _respond(404, message_page("Not found", "no page at " + req.path[:200]))


def _refuse_post(otp: "OtpService", req: Request) -> Optional[Response]:
    """Checks every POST passes before its form is read: no agent key, not cross-site."""
    if otp.is_agent_key(bearer(req.headers)):
        return _respond(403, message_page("Forbidden", "an agent's API key can never decide"))
    reason = cross_site_reason(req.headers)
    if reason is not None:
        return _respond(403, message_page("Forbidden", reason))
    return None


def _next(candidate: str) -> str:
    """Where to go after signing in: a page of this UI only (no open redirect)."""
    if candidate == UI or (candidate.startswith(UI + "/") and re.match(r"^[A-Za-z0-9_/-]+$", candidate)):
        return candidate
    return UI


def _sign_in(otp: "OtpService", req: Request) -> Response:
    form = _form(req) or {}
    target = _next(form.get("next", UI))
    token = form.get("token", "")
    sid = otp.approvers.sign_in(token) if token and not otp.is_agent_key(token) else None
    if sid is None:
        return _respond(403, signin_page(target, "That is not the approver token."))
    return _redirect(target, otp.approvers.set_cookie(sid))


def _page(
    otp: "OtpService",
    pid: str,
    sid: Optional[str],
    status: int = 200,
    error: Optional[str] = None,
    scope_text: Optional[str] = None,
) -> Response:
    view = otp.view(pid)
    if view is None:
        return _respond(404, message_page("Not found", "no permission request with that id"))
    form_token = otp.approvers.form_token(sid, "permission:" + pid) if sid is not None else None
    signout = otp.approvers.form_token(sid, "logout") if sid is not None else None
    page = approval_page(
        view, form_token=form_token, signout_token=signout, error=error, scope_text=scope_text
    )
    return _respond(status, page)


def _decide(otp: "OtpService", pid: str, sid: Optional[str], req: Request) -> Response:
    form = _form(req)
    if sid is None:
        return _respond(403, message_page("Forbidden", "sign in as the approver first"))
    if form is None or not otp.approvers.form_token_ok(sid, "permission:" + pid, form.get("csrf", "")):
        return _respond(403, message_page("Forbidden", "missing or wrong form token: reload the page"))
    choice = form.get("decision")
    if choice not in ("approve", "deny"):
        return _page(otp, pid, sid, 400, "Choose Approve or Deny.")
    reason = form.get("reason", "").strip() or None
    scope_text = form.get("scope", "")
    if reason is not None and len(reason) > _MAX_REASON:
        return _page(otp, pid, sid, 400, "The reason is longer than 1000 characters.", scope_text)
    mods, problem = _scope_modifications(scope_text) if choice == "approve" else (None, None)
    if problem is not None:
        return _page(otp, pid, sid, 400, problem, scope_text)
    try:
        otp.decide(pid, choice == "approve", reason, mods, decided_by="approver")
    except KeyError:
        return _respond(404, message_page("Not found", "no permission request with that id"))
    except ValueError as exc:
        return _page(otp, pid, sid, 409, str(exc))
    return _redirect(UI + "/permissions/" + pid)


def _scope_modifications(text: str) -> Tuple[Optional[Dict[str, Any]], Optional[str]]:
    if not text.strip():
        return None, None
    if len(text) > _MAX_SCOPE_TEXT:
        return None, "Scope modifications are limited to 64 KiB."
    try:
        value = json.loads(text)
    except ValueError as exc:
        return None, "Scope modifications are not valid JSON: {}.".format(exc)
    if not isinstance(value, dict):
        return None, 'Scope modifications must be a JSON object, like {"max_emails": 1}.'
    return value, None
