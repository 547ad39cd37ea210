"""The human's side of Agent OTP in a real headless Chromium: sign in, read the request,
click Approve or Deny; an expired request; hostile strings; forged decisions.

Every wait is an explicit wait for a page element; nothing asserts on time.
"""

import http.server
import json
import os
import threading
from typing import Any, Iterator

import pytest

from oculus_lite import PermissionClient
from oculus_lite.emulator import Emulator

HOSTILE = '<script>window.__xss=1</script>"\'&amp; </textarea><img src=x onerror="window.__xss=2">'


def _view(emu: Any, permission_id: str) -> Any:
    """The emulator's view of a permission (never None for one the test created)."""
    view = emu.otp.view(permission_id)
    assert view is not None
    return view


def _no_buttons(driver: Any, by: Any) -> bool:
    return not any(driver.find_elements(by.ID, i) for i in ("approve", "deny", "decision", "signin"))


def test_approve_in_the_browser(
    browser: Any, ui: Any, emulator: Emulator, agent_call: Any, artefacts: str, save_artefact: Any
) -> None:
    by = ui.by
    call = agent_call(
        "email.send",
        scope={"max_emails": 1, "to": "ops@example.com"},
        resource="mailbox:ops",
        context={"reason": "Send the weekly report to the ops team", "ticket": "OPS-42"},
    )
    pending = call.wait_pending()
    assert pending.approval_url == emulator.url + "/_emulator/ui/permissions/" + pending.id

    browser.get(pending.approval_url)  # before signing in: read-only, with a sign-in form
    ui.element(browser, "signin")
    assert not browser.find_elements(by.ID, "approve")

    ui.sign_in(browser, emulator)
    browser.get(pending.approval_url)
    ui.element(browser, "approve")
    assert browser.find_element(by.ID, "action").text == "email.send"
    assert browser.find_element(by.ID, "resource").text == "mailbox:ops"
    assert browser.find_element(by.ID, "agent-reason").text == "Send the weekly report to the ops team"
    assert json.loads(browser.find_element(by.ID, "scope").text) == {"max_emails": 1, "to": "ops@example.com"}
    assert json.loads(browser.find_element(by.ID, "context").text)["ticket"] == "OPS-42"
    assert browser.find_element(by.ID, "status-title").text == "Waiting for your decision"
    assert browser.find_element(by.ID, "approve").text == "Approve"
    assert browser.find_element(by.ID, "deny").text == "Deny"
    labels = [e.text for e in browser.find_elements(by.TAG_NAME, "label")]
    assert "Reason" in labels and "Scope modifications" in labels
    assert ui.console_errors(browser) == []  # the CSP let our own script and style load

    shot = os.path.join(artefacts, "approval-page.png")
    size = browser.get_window_size()
    browser.set_window_size(size["width"], browser.execute_script("return document.body.scrollHeight") + 160)
    assert browser.save_screenshot(shot)  # the whole page, before deciding
    browser.set_window_size(size["width"], size["height"])
    save_artefact(shot)

    browser.find_element(by.ID, "approve").click()
    ui.text_is(browser, "status-title", "Approved")
    assert _no_buttons(browser, by)

    result = call.join()
    assert result.status.value == "approved" and result.token
    assert result.scope == {"max_emails": 1, "to": "ops@example.com"}
    assert result.token not in browser.page_source
    browser.get(emulator.url + "/_emulator/ui")
    ui.element(browser, "panel-decided")
    assert browser.find_element(by.CSS_SELECTOR, "#panel-decided td a").text == "email.send"
    assert result.token not in browser.page_source
    board = os.path.join(artefacts, "dashboard.png")
    assert browser.save_screenshot(board)
    save_artefact(board)
    with PermissionClient(api_key=call.api_key, base_url=emulator.url) as client:
        assert client.use_token(result.id, result.token).success is True
    browser.get(pending.approval_url)
    ui.text_is(browser, "status-title", "Used")


def test_deny_with_a_reason_in_the_browser(
    browser: Any, ui: Any, emulator: Emulator, agent_call: Any
) -> None:
    by = ui.by
    call = agent_call("db.drop_table", scope={"table": "customers"}, resource="db:prod")
    pending = call.wait_pending()
    ui.sign_in(browser, emulator)
    browser.get(pending.approval_url)
    ui.element(browser, "deny")
    assert browser.find_element(by.ID, "action").text == "db.drop_table"
    browser.find_element(by.ID, "reason").send_keys("Not on production, & not today")
    browser.find_element(by.ID, "deny").click()
    ui.text_is(browser, "status-title", "Denied")
    assert browser.find_element(by.ID, "decision-reason").text == "Not on production, & not today"
    assert _no_buttons(browser, by)

    result = call.join()
    assert result.status.value == "denied" and result.token is None
    assert result.reason == "Not on production, & not today"


def test_scope_modifications_in_the_browser(
    browser: Any, ui: Any, emulator: Emulator, agent_call: Any
) -> None:
    by = ui.by
    call = agent_call("email.send", scope={"max_emails": 50})
    pending = call.wait_pending()
    ui.sign_in(browser, emulator)
    browser.get(pending.approval_url)
    box = ui.element(browser, "scope-mods")
    assert json.loads(box.get_attribute("value")) == {"max_emails": 50}
    box.clear()
    box.send_keys("[1, 2]")  # not an object: refused, nothing decided, the text kept
    browser.find_element(by.ID, "approve").click()
    ui.element(browser, "error")
    assert "must be a JSON object" in browser.find_element(by.ID, "error").text
    assert browser.find_element(by.ID, "scope-mods").get_attribute("value") == "[1, 2]"
    assert _view(emulator, pending.id).status == "pending"
    box = browser.find_element(by.ID, "scope-mods")
    box.clear()
    box.send_keys('{"max_emails": 5}')
    browser.find_element(by.ID, "approve").click()
    ui.text_is(browser, "status-title", "Approved")
    assert call.join().scope == {"max_emails": 5}


def test_expired_request_in_the_browser(browser: Any, ui: Any, emulator: Emulator) -> None:
    by = ui.by
    with PermissionClient(api_key=emulator.otp.demo_api_key, base_url=emulator.url) as client:
        pending = client.request_permission("files.delete", {"path": "/tmp/x"}, ttl=30)
    ui.sign_in(browser, emulator)
    browser.get(pending.approval_url)
    ui.element(browser, "approve")
    emulator.otp.advance_clock(31)  # past the ttl on the emulator's clock; the open page notices
    ui.text_is(browser, "status-title", "Expired")
    assert _no_buttons(browser, by)
    browser.get(pending.approval_url)
    ui.text_is(browser, "status-title", "Expired")
    assert _no_buttons(browser, by)
    assert browser.find_element(by.ID, "action").text == "files.delete"


def test_hostile_strings_render_as_text(browser: Any, ui: Any, emulator: Emulator) -> None:
    by = ui.by
    scope = {HOSTILE: HOSTILE, "n": 1}
    context = {"reason": HOSTILE, HOSTILE: [HOSTILE]}
    with PermissionClient(api_key=emulator.otp.demo_api_key, base_url=emulator.url) as client:
        pending = client.request_permission(HOSTILE, scope, resource=HOSTILE, context=context)
    ui.sign_in(browser, emulator)
    browser.get(pending.approval_url)
    ui.element(browser, "approve")
    assert browser.find_element(by.ID, "action").text == HOSTILE
    assert browser.find_element(by.ID, "action-value").text == HOSTILE
    assert browser.find_element(by.ID, "resource").text == HOSTILE
    assert browser.find_element(by.ID, "agent-reason").text == HOSTILE
    assert json.loads(browser.find_element(by.ID, "scope").text) == scope
    assert json.loads(browser.find_element(by.ID, "context").text) == context
    assert json.loads(browser.find_element(by.ID, "scope-mods").get_attribute("value")) == scope
    assert browser.title.startswith("Request: " + HOSTILE)
    _assert_nothing_injected(browser, by)

    browser.get(emulator.url + "/_emulator/ui")
    ui.element(browser, "panel-pending")
    link = browser.find_element(by.CSS_SELECTOR, "#panel-pending td a")
    assert link.text == HOSTILE
    # the dashboard's own refresh (built with textContent) keeps it text
    browser.execute_script("document.getElementById('updated').textContent = ''")
    ui.wait(browser, lambda d: d.find_element(by.ID, "updated").text != "")
    ui.element(browser, "panel-pending")
    assert browser.find_element(by.CSS_SELECTOR, "#panel-pending td a").text == HOSTILE
    _assert_nothing_injected(browser, by)


def _assert_nothing_injected(browser: Any, by: Any) -> None:
    assert browser.execute_script("return typeof window.__xss") == "undefined"
    assert browser.find_elements(by.TAG_NAME, "img") == []
    scripts = [s.get_attribute("src") for s in browser.find_elements(by.TAG_NAME, "script")]
    assert len(scripts) == 1 and scripts[0].endswith("/_emulator/ui/static/ui.js")
    assert len(browser.find_elements(by.TAG_NAME, "textarea")) <= 1


class _Attacker(http.server.BaseHTTPRequestHandler):
    """Another origin (another port on 127.0.0.1: same site, other origin) that posts a decision."""

    target = ""
    timeout = 10

    def do_GET(self) -> None:
        page = (
            '<!doctype html><form id="f" method="post" action="{}">'
            '<input name="decision" value="approve"><input name="csrf" value="guess">'
            "</form><script>document.getElementById('f').submit()</script>"
        ).format(self.target)
        body = page.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def attacker() -> Iterator[Any]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Attacker)
    server.daemon_threads = True  # Chromium may hold an idle preconnected socket open
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_forged_decisions_are_refused(browser: Any, ui: Any, emulator: Emulator, attacker: Any) -> None:
    by = ui.by
    with PermissionClient(api_key=emulator.otp.demo_api_key, base_url=emulator.url) as client:
        pending = client.request_permission("payments.refund", {"amount": 500})
    ui.sign_in(browser, emulator)  # the victim is signed in: the session cookie exists

    # 1. a page of another origin posts the form (the browser sends the cookie: same site)
    _Attacker.target = pending.approval_url or ""
    browser.get("http://127.0.0.1:{}/".format(attacker.server_address[1]))
    ui.text_is(browser, "message-title", "Forbidden")
    assert _view(emulator, pending.id).status == "pending"

    # 2. the real page, with its form token removed or altered before clicking
    for tamper in ("el.value = ''", "el.value = el.value.slice(0, -1) + 'x'", "el.remove()"):
        browser.get(pending.approval_url)
        ui.element(browser, "approve")
        browser.execute_script("var el = document.querySelector('#decision input[name=csrf]');" + tamper)
        browser.find_element(by.ID, "approve").click()
        ui.text_is(browser, "message-title", "Forbidden")
        assert _view(emulator, pending.id).status == "pending"

    # 3. untouched, the same page decides
    browser.get(pending.approval_url)
    ui.element(browser, "approve").click()
    ui.text_is(browser, "status-title", "Approved")
