"""The HTML of the approval page, the sign-in page and the dashboard.

Every value that comes from a request, an agent or a form goes through ``esc``
(``html.escape`` with quotes) before it is placed in the page; nothing is placed
inside a ``<script>``. The one-time token is not among the values a page receives
(``PermissionView`` has none).
"""

import html
import json
from typing import Any, List, Optional, Sequence

from ._otp_model import PermissionView
from ._ui_panels import Panel, duration, when

__all__ = ["approval_page", "dashboard_page", "message_page", "signin_page"]

UI = "/_emulator/ui"
_STATUS_TITLE = {
    "pending": "Waiting for your decision",
    "approved": "Approved",
    "denied": "Denied",
    "expired": "Expired",
    "used": "Used",
}


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


def _layout(title: str, body: str, signed_in_form: Optional[str] = None, main_attrs: str = "") -> str:
    who = '<span class="who"><a class="signin" href="{}/login">Sign in</a></span>'.format(UI)
    if signed_in_form is not None:
        who = (
            '<span class="who">Signed in as approver'
            '<form method="post" action="{ui}/logout"><input type="hidden" name="csrf" value="{tok}">'
            '<button type="submit" id="signout">Sign out</button></form></span>'
        ).format(ui=UI, tok=esc(signed_in_form))
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>{title} \u2014 oculus_lite emulator</title>"
        '<link rel="icon" href="data:,">'
        '<link rel="stylesheet" href="{ui}/static/ui.css">'
        '<script src="{ui}/static/ui.js" defer></script>'
        "</head><body>"
        '<header class="top"><a class="brand" href="{ui}">oculus_lite \u00b7 emulator</a>{who}</header>'
        "<main{attrs}>{body}</main>"
        "</body></html>\n"
    ).format(title=esc(title), ui=UI, who=who, attrs=main_attrs, body=body)


def _signin_form(next_path: str, error: Optional[str] = None) -> str:
    notice = '<p class="notice error" id="signin-error">{}</p>'.format(esc(error)) if error else ""
    return (
        '<form class="decide" method="post" action="{ui}/login" id="signin">'
        "<h2>Sign in to decide</h2>{notice}"
        '<p class="hint">Use the approver token that <code>python -m oculus_lite serve</code> printed '
        "(or the <code>--admin-token</code> it was started with). The link alone does not let "
        "anyone decide: the agent received it too.</p>"
        '<input type="hidden" name="next" value="{next}">'
        '<label for="signin-token">Approver token</label>'
        '<input type="password" id="signin-token" name="token" autocomplete="current-password" required>'
        '<div class="buttons"><button type="submit" class="primary" id="signin-submit">Sign in</button></div>'
        "</form>"
    ).format(ui=UI, notice=notice, next=esc(next_path))


def _status_block(view: PermissionView) -> str:
    status = view.status
    detail = ""
    if status == "pending":
        detail = 'expires in <span id="countdown" data-remaining="{:.3f}">{}</span>'.format(
            view.remaining, esc(duration(view.remaining))
        )
    elif status in ("approved", "used"):
        detail = "by {} at {}".format(
            esc(view.decided_by or "?"), esc(when(view.decided_at) if view.decided_at else "?")
        )
        if status == "used":
            detail = "the agent has used its one-time token"
    elif status == "denied":
        detail = '<span id="decision-reason">{}</span>'.format(esc(view.decision_reason or ""))
    elif status == "expired":
        detail = "no decision before {}".format(esc(when(view.expires_at)))
    return '<div class="status status-{s}" id="status"><span id="status-title">{t}</span>{d}</div>'.format(
        s=esc(status),
        t=esc(_STATUS_TITLE.get(status, status)),
        d='<span class="detail">{}</span>'.format(detail) if detail else "",
    )


def _decision_form(view: PermissionView, form_token: str, scope_text: Optional[str]) -> str:
    text = scope_text if scope_text is not None else _json(view.scope)
    return (
        '<form class="decide" method="post" id="decision">'
        '<input type="hidden" name="csrf" value="{tok}">'
        '<label for="reason">Reason</label>'
        '<p class="hint">Optional. The agent sees it with your decision.</p>'
        '<input type="text" id="reason" name="reason" maxlength="1000" autocomplete="off">'
        '<label for="scope-mods">Scope modifications</label>'
        '<p class="hint">A JSON object merged into the requested scope when you approve '
        "(edit a value to narrow it).</p>"
        '<textarea id="scope-mods" name="scope" spellcheck="false">{scope}</textarea>'
        '<div class="buttons">'
        '<button type="submit" name="decision" value="approve" class="approve" id="approve">Approve</button>'
        '<button type="submit" name="decision" value="deny" class="deny" id="deny">Deny</button>'
        "</div></form>"
    ).format(tok=esc(form_token), scope=esc(text))


def approval_page(
    view: PermissionView,
    *,
    form_token: Optional[str],
    signout_token: Optional[str],
    error: Optional[str] = None,
    scope_text: Optional[str] = None,
) -> str:
    """The request, its state, and either the decision form, a sign-in form or nothing."""
    facts = [
        ("Action", '<code id="action-value">{}</code>'.format(esc(view.action))),
        ("Resource", '<span id="resource">{}</span>'.format(esc(view.resource or "\u2014"))),
        ("Agent", '<span id="agent">{}</span>'.format(esc(view.agent_name))),
        ("Agent's reason", '<span id="agent-reason">{}</span>'.format(esc(view.reason or "\u2014"))),
        ("Requested at", esc(when(view.created_at))),
        ("Expires at", esc(when(view.expires_at))),
        ("Request id", '<code id="permission-id">{}</code>'.format(esc(view.id))),
    ]
    parts = [
        '<div class="card">',
        '<p class="eyebrow">Agent OTP \u00b7 one-time permission</p>',
        '<h1><span class="agent-name">{}</span> asks to <code id="action">{}</code></h1>'.format(
            esc(view.agent_name), esc(view.action)
        ),
        _status_block(view),
        '<p class="notice error" id="error">{}</p>'.format(esc(error)) if error else "",
        '<dl class="facts">{}</dl>'.format("".join("<dt>{}</dt><dd>{}</dd>".format(k, v) for k, v in facts)),
        '<div class="pair"><section><h2>Scope</h2><pre id="scope">{}</pre></section>'.format(
            esc(_json(view.scope))
        ),
        '<section><h2>Context</h2><pre id="context">{}</pre></section></div>'.format(
            esc(_json(view.context))
        ),
    ]
    if view.status == "pending":
        if form_token is not None:
            parts.append(_decision_form(view, form_token, scope_text))
        else:
            parts.append(_signin_form(UI + "/permissions/" + view.id))
    parts.append("</div>")
    attrs = ' id="permission" data-status="{}" data-poll="{}"'.format(
        esc(view.status), esc(UI + "/api/permissions/" + view.id)
    )
    return _layout("Request: " + view.action, "".join(parts), signout_token, attrs)


def signin_page(next_path: str, error: Optional[str] = None) -> str:
    body = (
        '<div class="card"><p class="eyebrow">Agent OTP \u00b7 approver</p><h1>Sign in</h1>{}</div>'.format(
            _signin_form(next_path, error)
        )
    )
    return _layout("Sign in", body)


def message_page(title: str, message: str, signout_token: Optional[str] = None) -> str:
    body = '<div class="card"><h1 id="message-title">{}</h1><p id="message">{}</p><p><a href="{}">Dashboard</a></p></div>'
    return _layout(title, body.format(esc(title), esc(message), UI), signout_token)


def _panel_html(panel: Panel) -> str:
    head = "".join("<th>{}</th>".format(esc(c)) for c in panel.columns)
    rows: List[str] = []
    for row in panel.rows:
        cells = []
        for c in row:
            text = esc(c.get("text", ""))
            if c.get("href"):
                text = '<a href="{}">{}</a>'.format(esc(c["href"]), text)
            cls = ' class="{}"'.format(esc(c["cls"])) if c.get("cls") else ""
            cells.append("<td{}>{}</td>".format(cls, text))
        rows.append("<tr>{}</tr>".format("".join(cells)))
    if not rows:
        rows.append(
            '<tr><td class="empty" colspan="{}">{}</td></tr>'.format(len(panel.columns), esc(panel.empty))
        )
    return (
        '<section class="panel" id="panel-{id}"><h2>{title} <span class="count">({n})</span></h2>'
        "<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></section>"
    ).format(id=esc(panel.id), title=esc(panel.title), n=len(panel.rows), head=head, rows="".join(rows))


def dashboard_page(panels: Sequence[Panel], signout_token: str) -> str:
    body = (
        "<h1>Emulator dashboard</h1>"
        '<p class="muted">Permission requests waiting for a person, and what was decided. '
        'Refreshes by itself; last update <span id="updated">on load</span>.</p>'
        + "".join(_panel_html(p) for p in panels)
    )
    attrs = ' class="wide" id="dashboard" data-state="{}"'.format(esc(UI + "/api/state"))
    return _layout("Dashboard", body, signout_token, attrs)
