"""Fixtures for the approval page: raw HTTP as an approver (cookies by hand), and a real
headless Chromium driven by Selenium.

The browser tests skip (with the reason) when Selenium or Chromium is missing, except
under ``OCULUS_BROWSER_REQUIRED=1`` (the ``browser`` tox env), where that is a failure.
Screenshots go to ``$OCULUS_ARTEFACTS`` (default: a new temporary directory); their
paths are printed at the end of the run.
"""

import http.client
import os
import re
import secrets
import shutil
import tempfile
import threading
from typing import Any, Dict, Iterator, List, Optional, Tuple
from urllib.parse import urlencode, urlsplit

import pytest

from oculus_lite import PermissionClient
from oculus_lite.emulator import Emulator

CHROMIUM = os.environ.get("OCULUS_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("OCULUS_CHROMEDRIVER", "/usr/bin/chromedriver")
_CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-proxy-server",
    "--window-size=1200,1100",
)
_ARTEFACTS: List[str] = []


class Page:
    """One HTTP answer: status, headers (lower-case names) and text."""

    def __init__(self, status: int, headers: Dict[str, str], text: str, cookies: List[str]) -> None:
        self.status, self.headers, self.text, self.cookies = status, headers, text, cookies

    def field(self, name: str, form: str = "decision") -> Optional[str]:
        """The value of the hidden input ``name`` in the form with id ``form`` (else the first one)."""
        start = self.text.find('id="{}"'.format(form))
        pattern = r'name="{}" value="([^"]*)"'.format(re.escape(name))
        found = re.search(pattern, self.text[start:] if start >= 0 else self.text)
        return found.group(1) if found else None


class Approver:
    """A person's browser reduced to http.client: keeps the session cookie, sends forms."""

    def __init__(self, emu: Emulator) -> None:
        self.emu = emu
        parts = urlsplit(emu.url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.cookie: Optional[str] = None

    def request(
        self,
        method: str,
        path: str,
        form: Optional[Dict[str, str]] = None,
        headers: Optional[Dict[str, str]] = None,
        cookie: bool = True,
    ) -> Page:
        hdrs = dict(headers or {})
        body = None
        if form is not None:
            body = urlencode(form).encode()
            hdrs.setdefault("Content-Type", "application/x-www-form-urlencoded")
        if cookie and self.cookie:
            hdrs["Cookie"] = self.cookie
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            text = resp.read().decode("utf-8")
            cookies = resp.msg.get_all("Set-Cookie") or []
            return Page(resp.status, {k.lower(): v for k, v in resp.getheaders()}, text, cookies)
        finally:
            conn.close()

    def get(self, path: str, **kw: Any) -> Page:
        return self.request("GET", path, **kw)

    def post(self, path: str, form: Dict[str, str], **kw: Any) -> Page:
        return self.request("POST", path, form=form, **kw)

    def sign_in(self, token: Optional[str] = None) -> Page:
        page = self.post(
            "/_emulator/ui/login", {"token": token or self.emu.otp.approver_token, "next": "/_emulator/ui"}
        )
        for header in page.cookies:
            if header.startswith(self.emu.otp.approvers.cookie_name + "="):
                self.cookie = header.split(";")[0]
        return page


@pytest.fixture
def approver(emulator: Emulator) -> Approver:
    return Approver(emulator)


@pytest.fixture
def make_approver() -> Any:
    return Approver


class AgentCall:
    """An agent asking for permission in a thread, waiting for the human (``wait_for_approval``)."""

    def __init__(self, emu: Emulator, action: str, **request: Any) -> None:
        self.api_key = "ak_browser_" + secrets.token_hex(6)
        emu.otp.add_agent(self.api_key, "report-bot", rate_limit=100000)  # it polls fast
        self.url = emu.url
        self.pending = threading.Event()
        self.permission: Any = None
        self.result: Any = None
        self.error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._run, args=(action, request), daemon=True)
        self._thread.start()

    def _run(self, action: str, request: Dict[str, Any]) -> None:
        def on_pending(p: Any) -> None:
            self.permission = p
            self.pending.set()

        try:
            with PermissionClient(api_key=self.api_key, base_url=self.url) as client:
                self.result = client.request_permission(
                    action,
                    wait_for_approval=True,
                    timeout=120,
                    poll_interval=0.1,
                    on_pending=on_pending,
                    **request,
                )
        except BaseException as exc:  # reported by join()
            self.error = exc
            self.pending.set()

    def wait_pending(self) -> Any:
        assert self.pending.wait(60), "the request never went pending"
        assert self.error is None, self.error
        return self.permission

    def join(self) -> Any:
        self._thread.join(120)
        assert not self._thread.is_alive(), "the agent is still waiting"
        if self.error is not None:
            raise self.error
        return self.result


@pytest.fixture
def agent_call(emulator: Emulator) -> Any:
    def start(action: str, **request: Any) -> AgentCall:
        return AgentCall(emulator, action, **request)

    return start


# ---------------------------------------------------------------------- the real browser
def _browser_missing() -> Optional[str]:
    try:
        import selenium  # type: ignore[import-not-found,unused-ignore]  # noqa: F401
    except ImportError:
        return "selenium is not installed (python3 -m tox run -e browser installs it)"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            return "{} not found (apt-get install -y chromium chromium-driver)".format(path)
    return None


@pytest.fixture(scope="session")
def _chromium() -> Iterator[Any]:
    missing = _browser_missing()
    if missing is not None:
        if os.environ.get("OCULUS_BROWSER_REQUIRED") == "1":
            pytest.fail("browser tests required but " + missing, pytrace=False)
        pytest.skip(missing)
    from selenium import webdriver  # type: ignore[import-not-found,unused-ignore]
    from selenium.webdriver.chrome.service import Service  # type: ignore[import-not-found,unused-ignore]

    profile = tempfile.mkdtemp(prefix="oculus-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in _CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument("--user-data-dir=" + profile)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        driver.set_page_load_timeout(60)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def browser(_chromium: Any) -> Iterator[Any]:
    """The shared headless Chromium; each test's emulator has its own session cookie name."""
    yield _chromium
    _chromium.get("about:blank")
    _chromium.get_log("browser")  # drop this test's console lines


@pytest.fixture(scope="session")
def artefacts() -> str:
    path = os.environ.get("OCULUS_ARTEFACTS") or tempfile.mkdtemp(prefix="oculus-artefacts-")
    os.makedirs(path, exist_ok=True)
    return path


def record_artefact(path: str) -> None:
    _ARTEFACTS.append(path)
    print("artefact: " + path)


@pytest.fixture
def save_artefact() -> Any:
    return record_artefact


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for path in _ARTEFACTS:
        terminalreporter.write_line("browser artefact: " + path)


def wait_for(driver: Any, condition: Any, timeout: float = 30) -> Any:
    from selenium.common.exceptions import WebDriverException  # type: ignore[import-not-found,unused-ignore]
    from selenium.webdriver.support.ui import WebDriverWait  # type: ignore[import-not-found,unused-ignore]

    def met(current: Any) -> Any:
        try:
            return condition(current)
        except WebDriverException as exc:
            # The page re-rendered between finding an element and reading it. Chrome reports that
            # as an inspector error ("Node with given id does not belong to the document"), not
            # as a stale element, and WebDriverWait would give up on it: look again instead.
            if "does not belong to the document" in str(exc):
                return False
            raise

    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(met)


@pytest.fixture
def ui() -> Any:
    """Small helpers over Selenium used by every browser test."""
    from selenium.webdriver.common.by import By  # type: ignore[import-not-found,unused-ignore]
    from selenium.webdriver.support import expected_conditions as EC  # type: ignore[import-not-found,unused-ignore]

    class Ui:
        by = By
        ec = EC
        wait = staticmethod(wait_for)

        @staticmethod
        def sign_in(driver: Any, emu: Emulator) -> None:
            driver.get(emu.url + "/_emulator/ui/login")
            wait_for(driver, EC.presence_of_element_located((By.ID, "signin-token")))
            driver.find_element(By.ID, "signin-token").send_keys(emu.otp.approver_token)
            driver.find_element(By.ID, "signin-submit").click()
            wait_for(driver, EC.presence_of_element_located((By.ID, "dashboard")))

        @staticmethod
        def element(driver: Any, element_id: str) -> Any:
            return wait_for(driver, EC.presence_of_element_located((By.ID, element_id)))

        @staticmethod
        def text_is(driver: Any, element_id: str, text: str) -> None:
            wait_for(driver, EC.text_to_be_present_in_element((By.ID, element_id), text))

        @staticmethod
        def console_errors(driver: Any) -> List[Tuple[str, str]]:
            return [(e["level"], e["message"]) for e in driver.get_log("browser") if e["level"] == "SEVERE"]

    return Ui
