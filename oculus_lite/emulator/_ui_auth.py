"""Who may decide on the approval page: approver sign-in, sessions and cross-site checks.

The agent receives the ``approvalUrl`` itself, so the URL must not be enough to
decide. A person signs in with the approver token (``serve --admin-token`` when
set, else a random one printed by ``serve``) and gets an HttpOnly,
``SameSite=Strict`` session cookie. Each decision form carries a token derived
from the session and the page (HMAC, nothing stored), checked in constant time;
``Origin`` and ``Sec-Fetch-Site`` are checked too when the browser sends them.
"""

import collections
import hashlib
import hmac
import secrets
import threading
from typing import Callable, Mapping, Optional

from .._http._hosts import is_loopback_host

__all__ = ["COOKIE_PATH", "ApproverAuth", "cross_site_reason", "host_reason"]

COOKIE_PATH = "/_emulator/ui"
_SESSION_TTL = 8 * 3600.0
_MAX_SESSIONS = 1000


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "replace")).hexdigest()


class ApproverAuth:
    """The approver token, the signed-in sessions (kept hashed) and the per-page form tokens."""

    def __init__(self, admin_token: Optional[str], now: Callable[[], float]) -> None:
        self.token = admin_token if admin_token else "apv_" + secrets.token_urlsafe(24)
        #: True when the token was made here (so ``serve`` must print it for the human).
        self.generated = not admin_token
        # Cookies ignore ports: two emulators on 127.0.0.1 must not overwrite each other's session.
        self.cookie_name = "oculus_approver_" + secrets.token_hex(4)
        self._now = now
        self._key = secrets.token_bytes(32)
        self._sessions: "collections.OrderedDict[str, float]" = collections.OrderedDict()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return "ApproverAuth(sessions={})".format(len(self._sessions))

    def token_matches(self, candidate: str) -> bool:
        return hmac.compare_digest(candidate.encode("utf-8", "replace"), self.token.encode("utf-8"))

    def sign_in(self, candidate: str) -> Optional[str]:
        """A new session id when ``candidate`` is the approver token, else None."""
        if not self.token_matches(candidate):
            return None
        sid = secrets.token_urlsafe(32)
        with self._lock:
            self._sessions[_digest(sid)] = self._now() + _SESSION_TTL
            while len(self._sessions) > _MAX_SESSIONS:
                self._sessions.popitem(last=False)
        return sid

    def sign_out(self, sid: str) -> None:
        with self._lock:
            self._sessions.pop(_digest(sid), None)

    def session(self, headers: Mapping[str, str]) -> Optional[str]:
        """The request's valid session id (from its cookie), or None."""
        sid = _cookie(headers.get("cookie", ""), self.cookie_name)
        if not sid:
            return None
        key = _digest(sid)
        with self._lock:
            expires = self._sessions.get(key)
            if expires is None:
                return None
            if self._now() >= expires:
                del self._sessions[key]
                return None
        return sid

    def form_token(self, sid: str, page: str) -> str:
        """The anti-forgery token of one page for one session."""
        message = "form|{}|{}".format(sid, page).encode("utf-8")
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def form_token_ok(self, sid: str, page: str, candidate: str) -> bool:
        return hmac.compare_digest(self.form_token(sid, page).encode(), candidate.encode("utf-8", "replace"))

    def set_cookie(self, sid: str) -> str:
        return "{}={}; Path={}; HttpOnly; SameSite=Strict".format(self.cookie_name, sid, COOKIE_PATH)

    def clear_cookie(self) -> str:
        return "{}=; Path={}; HttpOnly; SameSite=Strict; Max-Age=0".format(self.cookie_name, COOKIE_PATH)


def _cookie(header: str, name: str) -> Optional[str]:
    for part in header.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            return value.strip().strip('"') or None
    return None


def host_reason(headers: Mapping[str, str], bound_host: str) -> Optional[str]:
    """Why the ``Host`` header is refused (DNS rebinding), or None.

    An emulator bound to loopback answers only to loopback names; one bound elsewhere
    (``allow_remote``) accepts any host, as its operator chose.
    """
    host = headers.get("host", "")
    if not host:
        return "the request has no Host header"
    if not is_loopback_host(bound_host):
        return None
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    if is_loopback_host(name):
        return None
    return "this emulator answers only to loopback host names"


def cross_site_reason(headers: Mapping[str, str]) -> Optional[str]:
    """Why a state-changing POST looks cross-site, or None when it comes from this origin.

    Browsers send ``Origin`` on form posts and ``Sec-Fetch-Site`` on every request;
    a tool without them (curl) is judged by the session and form token alone. Under
    ``Referrer-Policy: no-referrer`` a browser sends ``Origin: null`` even from this
    origin; then only ``Sec-Fetch-Site: same-origin`` vouches for the request.
    """
    fetch_site = headers.get("sec-fetch-site")
    site = fetch_site.strip().lower() if fetch_site is not None else None
    if site is not None and site not in ("same-origin", "none"):
        return "cross-site request (Sec-Fetch-Site: {})".format(site[:40])
    origin = headers.get("origin")
    if origin is not None and origin.strip() == "null":
        return None if site == "same-origin" else "the request comes from an opaque origin"
    if origin is not None:
        expected = "http://" + headers.get("host", "")
        if not hmac.compare_digest(origin.strip().lower().encode(), expected.lower().encode()):
            return "the request comes from another origin"
    return None
