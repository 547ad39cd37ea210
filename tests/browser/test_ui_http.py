"""The approval page and dashboard over raw HTTP (no browser needed): who may decide,
forged posts, escaping, headers, and that the one-time token never reaches a page."""

import json
import re
from typing import Any, Dict

import pytest

from oculus_lite import PermissionClient
from oculus_lite.emulator import Emulator

UI = "/_emulator/ui"
SECURITY_HEADERS = {
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
}
HOSTILE = '<script>alert("x")</script>\'&amp;</textarea><b onmouseover=alert(1)>'


def _view(emu: Any, permission_id: str) -> Any:
    """The emulator's view of a permission (never None for one the test created)."""
    view = emu.otp.view(permission_id)
    assert view is not None
    return view


def _pending(emu: Emulator, action: str = "email.send", **kw: Any) -> Any:
    with PermissionClient(api_key=emu.otp.demo_api_key, base_url=emu.url) as client:
        return client.request_permission(action, kw.pop("scope", {"max_emails": 1}), **kw)


def _page_path(p: Any) -> str:
    return UI + "/permissions/" + str(p.id)


def _same_origin(emu: Emulator) -> Dict[str, str]:
    return {"Origin": emu.url, "Sec-Fetch-Site": "same-origin"}


def test_approval_url_is_the_page_on_this_emulator(emulator: Emulator, approver: Any) -> None:
    p = _pending(emulator)
    assert p.approval_url == emulator.url + _page_path(p)
    page = approver.get(_page_path(p))
    assert page.status == 200 and page.headers["content-type"].startswith("text/html")
    assert 'id="signin"' in page.text and 'id="approve"' not in page.text  # read-only without a session
    assert "email.send" in page.text


@pytest.mark.parametrize(
    "path", [UI, UI + "/login", UI + "/static/ui.css", UI + "/static/ui.js", UI + "/nope", "PAGE"]
)
def test_every_ui_answer_carries_the_security_headers(emulator: Emulator, approver: Any, path: str) -> None:
    if path == "PAGE":
        path = _page_path(_pending(emulator))
    page = approver.get(path)
    for name, value in SECURITY_HEADERS.items():
        assert page.headers[name] == value
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp


def test_sign_in(emulator: Emulator, approver: Any) -> None:
    assert approver.sign_in("apv_wrong").status == 403 and approver.cookie is None
    assert approver.sign_in(emulator.otp.demo_api_key).status == 403  # an agent key is never an approver
    assert approver.get(UI + "/api/state").status == 401
    page = approver.sign_in()
    assert page.status == 303 and page.headers["location"] == UI
    (cookie,) = page.cookies
    assert cookie.startswith(emulator.otp.approvers.cookie_name + "=")
    attrs = [a.strip() for a in cookie.split(";")[1:]]
    assert {"HttpOnly", "SameSite=Strict", "Path=" + UI} <= set(attrs)
    assert emulator.otp.approver_token not in cookie
    assert approver.get(UI).status == 200 and 'id="dashboard"' in approver.get(UI).text
    # sign out: the session ends on the server, not only in the browser
    signout = approver.get(UI).field("csrf")
    old = approver.cookie
    assert approver.post(UI + "/logout", {"csrf": "nope"}, headers=_same_origin(emulator)).status == 403
    assert (
        approver.post(UI + "/logout", {"csrf": signout or ""}, headers=_same_origin(emulator)).status == 303
    )
    approver.cookie = old
    assert approver.get(UI + "/api/state").status == 401


def test_sign_in_never_redirects_elsewhere(approver: Any, emulator: Emulator) -> None:
    for target in ("//evil.example/", "http://evil.example/", UI + "/../../x", "/elsewhere"):
        page = approver.post(UI + "/login", {"token": emulator.otp.approver_token, "next": target})
        assert page.status == 303 and page.headers["location"] == UI


def test_admin_token_is_the_approver_token(make_approver: Any) -> None:
    with Emulator(admin_token="adm-T0KEN") as emu:
        assert emu.otp.approver_token == "adm-T0KEN" and not emu.otp.approvers.generated
        p = _pending(emu)
        person = make_approver(emu)
        decide = "/api/v1/permissions/{}/decide".format(p.id)
        assert person.request("POST", decide, headers={"Content-Type": "application/json"}).status == 401
        assert person.sign_in("adm-T0KEN").status == 303
        token = person.get(_page_path(p)).field("csrf") or ""
        page = person.post(_page_path(p), {"csrf": token, "decision": "approve"}, headers=_same_origin(emu))
        assert page.status == 303 and _view(emu, p.id).status == "approved"


def test_forged_decisions_decide_nothing(emulator: Emulator, approver: Any) -> None:
    p = _pending(emulator)
    path = _page_path(p)
    approve = {"decision": "approve", "reason": "", "scope": ""}
    same = _same_origin(emulator)

    # no session at all
    assert approver.post(path, dict(approve, csrf="x"), headers=same).status == 403
    approver.sign_in()
    token = approver.get(path).field("csrf")
    assert token
    other = _pending(emulator, "other.action")
    other_token = approver.get(_page_path(other)).field("csrf")
    agent = {"Authorization": "Bearer " + emulator.otp.demo_api_key}
    refused = [
        approver.post(path, approve, headers=same),  # no form token
        approver.post(path, dict(approve, csrf=""), headers=same),
        approver.post(
            path, dict(approve, csrf=token[:-1] + ("0" if token[-1] != "0" else "1")), headers=same
        ),
        approver.post(path, dict(approve, csrf=other_token or ""), headers=same),  # another page's token
        approver.post(path, dict(approve, csrf=token), headers={"Origin": "http://evil.example"}),
        approver.post(path, dict(approve, csrf=token), headers={"Origin": "null"}),
        approver.post(path, dict(approve, csrf=token), headers={"Sec-Fetch-Site": "cross-site"}),
        approver.post(path, dict(approve, csrf=token), headers={"Sec-Fetch-Site": "same-site"}),
        approver.post(path, dict(approve, csrf=token), headers=dict(same, **agent)),  # an agent's key
        approver.request(  # not a form: a JSON body (what a cross-site fetch could send)
            "POST",
            path,
            headers=dict(same, **{"Content-Type": "text/plain"}),
        ),
    ]
    assert [r.status for r in refused] == [403] * len(refused)
    assert _view(emulator, p.id).status == "pending"
    assert emulator.otp.stats()["permission_decisions"] == 0

    ok = approver.post(path, dict(approve, csrf=token), headers=same)
    assert ok.status == 303 and ok.headers["location"] == path
    assert _view(emulator, p.id).status == "approved"
    again = approver.post(path, dict(approve, csrf=token), headers=same)
    assert again.status == 409 and "already approved" in again.text


def test_a_tool_without_browser_headers_decides_with_session_and_token(
    emulator: Emulator, approver: Any
) -> None:
    p = _pending(emulator)
    approver.sign_in()
    token = approver.get(_page_path(p)).field("csrf") or ""
    page = approver.post(_page_path(p), {"csrf": token, "decision": "deny", "reason": "  no  "})
    assert page.status == 303
    view = _view(emulator, p.id)
    assert (view.status, view.decision_reason, view.decided_by) == ("denied", "no", "approver")


def test_the_json_decide_route_still_refuses_agent_keys(emulator: Emulator, approver: Any) -> None:
    p = _pending(emulator)
    agent = {"Authorization": "Bearer " + emulator.otp.demo_api_key, "Content-Type": "application/json"}
    page = approver.request("POST", "/api/v1/permissions/{}/decide".format(p.id), headers=agent)
    assert page.status == 403 and _view(emulator, p.id).status == "pending"


def test_scope_modifications_are_validated(emulator: Emulator, approver: Any) -> None:
    p = _pending(emulator, scope={"max_emails": 10, "to": "ops"})
    approver.sign_in()
    path, same = _page_path(p), _same_origin(emulator)
    token = approver.get(path).field("csrf") or ""
    for text, message in (
        ("{oops", "not valid JSON"),
        ("[1]", "must be a JSON object"),
        ('"x"', "JSON object"),
    ):
        page = approver.post(path, {"csrf": token, "decision": "approve", "scope": text}, headers=same)
        assert page.status == 400 and message in page.text
    assert _view(emulator, p.id).status == "pending"
    too_long = approver.post(path, {"csrf": token, "decision": "deny", "reason": "x" * 1001}, headers=same)
    assert too_long.status == 400 and _view(emulator, p.id).status == "pending"
    page = approver.post(
        path, {"csrf": token, "decision": "approve", "scope": '{"max_emails": 2}'}, headers=same
    )
    assert page.status == 303
    assert _view(emulator, p.id).scope == {"max_emails": 2, "to": "ops"}


def test_every_value_is_escaped(emulator: Emulator, approver: Any) -> None:
    p = _pending(
        emulator,
        HOSTILE,
        scope={HOSTILE: HOSTILE},
        resource=HOSTILE,
        context={"reason": HOSTILE, "k": HOSTILE},
    )
    approver.sign_in()
    for path in (_page_path(p), UI):
        text = approver.get(path).text
        assert "<script>alert" not in text and "</textarea><b" not in text and "<b onmouseover" not in text
        assert text.count("<textarea") == text.count("</textarea>") <= 1
        assert "&lt;script&gt;alert(" in text
    state = json.loads(approver.get(UI + "/api/state").text)
    assert state["panels"][0]["rows"][0][0] == {"text": HOSTILE, "href": _page_path(p)}


def test_the_one_time_token_is_never_shown(emulator: Emulator, approver: Any) -> None:
    emulator.otp.add_policy(name="reads", action="auto_approve", conditions={"action": {"equals": "db.read"}})
    auto = _pending(emulator, "db.read")
    assert auto.status.value == "approved" and auto.token
    human = _pending(emulator)
    approver.sign_in()
    token = approver.get(_page_path(human)).field("csrf") or ""
    approver.post(_page_path(human), {"csrf": token, "decision": "approve"}, headers=_same_origin(emulator))
    with PermissionClient(api_key=emulator.otp.demo_api_key, base_url=emulator.url) as client:
        human_token = client.get_permission(human.id).token
    assert human_token and human_token.startswith("otp_")
    pages = [approver.get(p).text for p in (_page_path(auto), _page_path(human), UI, UI + "/api/state")]
    pages += [approver.get(UI + "/api/permissions/" + x).text for x in (auto.id, human.id)]
    for text in pages:
        assert auto.token not in text and human_token not in text
        assert not re.search(r"otp_[A-Za-z0-9_-]{10,}", text)


def test_dashboard_panels(emulator: Emulator, approver: Any) -> None:
    p = _pending(emulator, "crm.export", context={"reason": "quarterly numbers"})
    assert approver.get(UI).status == 200 and 'id="signin"' in approver.get(UI).text  # not without a session
    approver.sign_in()
    state = json.loads(approver.get(UI + "/api/state").text)
    assert [panel["id"] for panel in state["panels"]] == ["pending", "decided", "agents", "tokens", "audit"]
    pending = state["panels"][0]
    assert (
        pending["rows"][0][0]["href"] == _page_path(p)
        and pending["rows"][0][5]["text"] == "quarterly numbers"
    )
    assert state["panels"][1]["rows"] == []
    agents = [row[0]["text"] for row in state["panels"][2]["rows"]]
    assert emulator.demo_client_id in agents
    page = approver.get(UI).text
    assert 'id="panel-pending"' in page and "crm.export" in page and 'href="{}"'.format(_page_path(p)) in page


def test_dashboard_shows_agents_tokens_and_audit_when_the_emulator_has_them(
    emulator: Emulator, approver: Any
) -> None:
    rows = [{"client_id": "mailer", "client_secret": "sk_live_abc", "status": "active", "token_ttl": 600}]
    tokens = [{"jti": "j1", "scope": "db:read", "access_token": "eyJhbGciOi.x.y"}]
    events = [{"event": "tool_call", "detail": {"api_key": "ak_x", "note": "otp_leaky_value"}}]
    emulator.list_agents = lambda: rows  # type: ignore[method-assign]
    emulator.issued_tokens = lambda: tokens  # type: ignore[method-assign]
    emulator.audit_events = lambda: events  # type: ignore[method-assign]
    approver.sign_in()
    raw = approver.get(UI + "/api/state").text
    panels = {p["id"]: p for p in json.loads(raw)["panels"]}
    assert list(panels) == ["pending", "decided", "agents", "tokens", "audit"]
    assert panels["agents"]["columns"] == ["client_id", "client_secret", "status", "token_ttl"]
    assert [c["text"] for c in panels["agents"]["rows"][0]][::2] == ["mailer", "active"]
    for secret in ("sk_live_abc", "eyJhbGciOi", "ak_x", "otp_leaky_value"):
        assert secret not in raw and secret not in approver.get(UI).text
    assert "600" in approver.get(UI).text and "tool_call" in raw


def test_wrong_host_is_refused(emulator: Emulator, approver: Any) -> None:
    page = approver.get(UI, headers={"Host": "evil.example:{}".format(emulator.port)})
    assert page.status == 421
    assert approver.get(UI, headers={"Host": "localhost:{}".format(emulator.port)}).status == 200


def test_status_poll_route(emulator: Emulator, approver: Any) -> None:
    p = _pending(emulator)
    body = json.loads(approver.get(UI + "/api/permissions/" + p.id).text)
    assert (
        body["status"] == "pending" and body["remaining"] > 0 and set(body) == {"id", "status", "remaining"}
    )
    emulator.otp.advance_clock(301)
    assert json.loads(approver.get(UI + "/api/permissions/" + p.id).text)["status"] == "expired"
    assert approver.get(UI + "/api/permissions/perm_nope").status == 404
    page = approver.get(_page_path(p))
    assert "Expired" in page.text and 'id="signin"' not in page.text and 'id="approve"' not in page.text
