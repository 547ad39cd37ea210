"""``python -m oculus_lite doctor``: the troubleshooting guide as an automated check list.

Most support questions ("401 when requesting a token", "403 - token request
denied", "token expired too quickly") have a handful of known causes. Each
check here looks for one of them against the configured service and prints
``ok``/``warn``/``fail`` with the fix, so a person reads the answer instead of
the guide. It talks to the server through the public ``Client`` and the same
transport/retry layer as everything else, and never prints a secret: it says
*whether* the secret is set and which variable supplied it, never its value.

Exit code: 0 when nothing fails (warnings only fail with ``--strict``);
otherwise the code of the first failing check: 3 credentials/authorisation,
4 network, 1 anything else.
"""

import argparse
import re
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, List, Mapping, Optional, Sequence, TextIO, Tuple

from .._config import (
    BASE_URL_VARS,
    CLIENT_ID_VARS,
    CLIENT_SECRET_VARS,
    CONTROL_CHARACTERS,
    DEFAULT_BASE_URL,
    check_seconds,
    from_env,
    validate_base_url,
)
from .._engine._clock import SYSTEM_CLOCK
from .._engine._plan import run
from .._http._hosts import is_loopback_host
from .._http._models import Request, Response
from .._http._send import RetryPolicy, parse_json, scrub, send_plan
from ..exceptions import (
    AuthenticationError,
    ConfigurationError,
    ForbiddenError,
    NetworkError,
    NotFoundError,
    OculusAPIError,
    OculusError,
    TLSError,
    ValidationError,
)
from ._exit import EXIT_AUTH, EXIT_NETWORK, EXIT_OK, EXIT_OTHER, exit_code_for

__all__ = ["register", "run_doctor"]


#: Largest difference between our clock and the server's before we warn (seconds).
MAX_SKEW = 30.0
#: Shortest token lifetime that leaves room for the default refresh margin and refresh ahead.
MIN_LIFETIME = 40.0
#: Scope sent when no --scope is given: its answer (200 or 403) still proves the credentials.
PROBE_SCOPE = "doctor:probe"

_SEGMENT = re.compile(r"[a-z0-9*][a-z0-9_.*-]*\Z")

_401_CAUSES = {
    "agent_suspended": (
        "the agent is Suspended: only Active agents can authenticate",
        "set the agent Active again (Agents -> your agent -> Status)",
    ),
    "agent_revoked": (
        "the agent is Revoked: only Active agents can authenticate, and revocation is final",
        "create a new agent (or ask an admin why it was revoked) and use its credentials",
    ),
    "invalid_client": (
        "the server does not accept this client id and secret: the secret is wrong or was rotated "
        "(rotation invalidates the old secret at once), or the client id belongs to another server",
        "rotate the secret from the agent's Settings tab and update {secret_var}; check that the "
        "base URL ({url}) is the server where this agent exists",
    ),
}
_401_DEFAULT = (
    "credentials not accepted",
    "check the agent is Active, the secret is current and the base URL ({url}) is right",
)
_403_DEFAULT = (
    "the server refused {scope!r}",
    "check the agent's policies (active, not in Shadow Mode) and the scope format",
)
_403_CAUSES = {
    "insufficient_scope": (
        "no active policy assigned to this agent grants {scope!r}",
        "assign a policy granting it (Agents -> your agent -> Settings -> Policies; no policies = "
        "no access) and try the exact request in the Policy Simulator",
    ),
    "policy_shadow_mode": (
        "the only policy matching {scope!r} is in Shadow Mode, which evaluates but never grants",
        "turn Shadow Mode off on that policy (Policies -> the policy); changes take up to 60 s",
    ),
    "policy_inactive": (
        "the only policy matching {scope!r} is not Active",
        "switch the policy to Active (Policies -> the policy); changes take up to 60 s",
    ),
    "invalid_scope": (
        "the server refused the scope format of {scope!r}",
        "scopes are case-sensitive, lowercase, colon-separated, e.g. 'stripe:customer:read'",
    ),
}


@dataclass(frozen=True)
class Check:
    """One line of the report."""

    name: str
    status: str  # "ok", "warn", "fail" or "skip"
    detail: str
    fix: str = ""
    exit_code: int = EXIT_OTHER  # used when this check fails (or warns under --strict)


def scope_format_problems(scope: str) -> List[str]:
    """What is wrong with the format of each scope in a space-separated list (empty: nothing)."""
    problems = []
    if CONTROL_CHARACTERS.search(scope):
        problems.append("it contains control characters (CR, LF, tab, NUL...): remove them")
    for part in scope.split():
        segments = part.split(":")
        if len(segments) < 2:
            problems.append(
                "{!r} is a single segment, too vague: use resource:action such as "
                "'stripe:customer:read'".format(part)
            )
        elif part != part.lower():
            problems.append(
                "{!r} has upper-case letters: scopes are case-sensitive and lower-case "
                "(did you mean {!r}?)".format(part, part.lower())
            )
        elif not all(_SEGMENT.match(s) for s in segments):
            problems.append("{!r} has an empty segment or characters outside a-z 0-9 _ . - *".format(part))
    return problems


class _Doctor:
    def __init__(
        self,
        environ: Optional[Mapping[str, str]],
        clock: Callable[[], float],
        timeout: float,
    ) -> None:
        self.environ = environ
        self.clock = clock
        self.timeout = timeout
        self.checks: List[Check] = []
        self.client_id, self.id_source = from_env(None, CLIENT_ID_VARS, environ)
        self.secret, self.secret_source = from_env(None, CLIENT_SECRET_VARS, environ)
        raw_url, self.url_source = from_env(None, BASE_URL_VARS, environ)
        self.raw_url = raw_url or DEFAULT_BASE_URL
        self.base_url: Optional[str] = None
        self.insecure = False

    def add(self, name: str, status: str, detail: str, fix: str = "", code: int = EXIT_OTHER) -> Check:
        check = Check(name, status, detail, fix, code)
        self.checks.append(check)
        return check

    # ------------------------------------------------------------------ local checks

    def credentials(self) -> bool:
        id_text = (
            "client id {!r} from {}".format(self.client_id, self.id_source)
            if self.client_id
            else "client id NOT SET"
        )
        secret_text = "secret set (from {})".format(self.secret_source) if self.secret else "secret NOT SET"
        missing = [
            v for v, ok in ((CLIENT_ID_VARS, self.client_id), (CLIENT_SECRET_VARS, self.secret)) if not ok
        ]
        if missing:
            self.add(
                "credentials",
                "fail",
                "{}; {}".format(id_text, secret_text),
                "export " + " and ".join("{} (or {})".format(*names) for names in missing),
                EXIT_AUTH,
            )
            return False
        self.add("credentials", "ok", "{}; {}".format(id_text, secret_text))
        return True

    def base_url_check(self) -> bool:
        source = self.url_source or "the default"
        try:
            url = validate_base_url(self.raw_url, allow_insecure_http=True)
        except ConfigurationError as exc:
            self.add(
                "base URL",
                "fail",
                "the value from {} is refused: {}".format(source, exc.message),
                "set {} to the service's https:// origin, e.g. {}".format(BASE_URL_VARS[0], DEFAULT_BASE_URL),
            )
            return False
        self.base_url = url
        scheme = url.split(":", 1)[0]
        host = url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)[0]
        loopback = is_loopback_host(host)
        if scheme == "http" and not loopback:
            self.insecure = True
            self.add(
                "base URL",
                "warn",
                "{} (from {}) is plain http to a non-loopback host: credentials travel "
                "unencrypted, and Client refuses it unless allow_insecure_http=True".format(url, source),
                "use https://",
            )
        elif loopback:
            self.add(
                "base URL",
                "warn",
                "{} (from {}) is a loopback host: fine for the local emulator, wrong in production".format(
                    url, source
                ),
                "make sure you're not pointing at localhost in production: set {} to {}".format(
                    BASE_URL_VARS[0], DEFAULT_BASE_URL
                ),
            )
        else:
            self.add("base URL", "ok", "{} (from {})".format(url, source))
        return True

    def scope_format(self, scope: str) -> None:
        problems = scope_format_problems(scope)
        if problems:
            self.add(
                "scope format",
                "warn",
                "; ".join(problems),
                "scopes are case-sensitive and colon-separated, e.g. 'stripe:customer:read'",
            )
        else:
            self.add("scope format", "ok", "{!r} looks well formed".format(scope))

    # ------------------------------------------------------------------ server checks

    def _get(self, transport: Any, path: str, what: str) -> Tuple[Response, float]:
        """(2xx response, our clock when it was answered), through the one send-with-retries."""
        assert self.base_url is not None
        request = Request("GET", self.base_url + path, (("Accept", "application/json"),), b"", self.timeout)
        before = self.clock()
        plan = send_plan(
            request,
            policy=RetryPolicy(retries=1),
            deadline=SYSTEM_CLOCK.monotonic() + self.timeout * 2,
            clock=SYSTEM_CLOCK,
            what=what,
        )
        response = run(plan, transport, SYSTEM_CLOCK.sleep)
        return response, (before + self.clock()) / 2.0

    def reachable(self, transport: Any) -> bool:
        try:
            response, ours = self._get(transport, "/.well-known/jwks.json", "fetching the JWKS")
        except NetworkError as exc:
            fix = (
                "the certificate is not trusted: fix the server's certificate or pass "
                "verify=<CA bundle> to Client"
                if isinstance(exc, TLSError)
                else "check the base URL ({}), DNS, proxy settings (HTTPS_PROXY/NO_PROXY), "
                "firewalls, and that the server is up".format(self.base_url)
            )
            self.add("server reachable", "fail", exc.message, fix, EXIT_NETWORK)
            return False
        except OculusAPIError as exc:
            detail = "HTTP {} from /.well-known/jwks.json".format(exc.status_code)
            if exc.status_code is not None and 300 <= exc.status_code < 400:
                self.add(
                    "server reachable",
                    "warn",
                    detail
                    + " (a redirect to {!r}); the client never follows redirects".format(
                        exc.details.get("location") or "?"
                    ),
                    "set the base URL to the final address",
                )
            else:
                self.add(
                    "server reachable",
                    "warn",
                    detail + "; token verification elsewhere needs this key set",
                    "check that the base URL is the token service (not a proxy or another API)",
                )
            self.add("clock skew", "skip", "no usable answer from the server to compare clocks with")
            return True
        self.add("server reachable", "ok", "HTTP {} from /.well-known/jwks.json".format(response.status))
        self.skew(response, ours)
        return True

    def skew(self, response: Response, ours: float) -> None:
        import email.utils

        date = response.header("date")
        theirs: Optional[float] = None
        if date:
            try:
                theirs = email.utils.parsedate_to_datetime(date).timestamp()
            except (TypeError, ValueError, IndexError):
                theirs = None
        if theirs is None:
            self.add("clock skew", "warn", "the server sent no usable Date header; skew not checked")
            return
        skew = ours - theirs
        if abs(skew) > MAX_SKEW:
            self.add(
                "clock skew",
                "warn",
                "our clock is {:.0f} s {} the server's: tokens may look expired or not yet valid".format(
                    abs(skew), "ahead of" if skew > 0 else "behind"
                ),
                "synchronise this machine's clock (NTP, e.g. timedatectl set-ntp true)",
            )
        else:
            self.add("clock skew", "ok", "within {:.0f} s of the server's clock".format(MAX_SKEW))

    def token(self, scope: Optional[str], audience: Optional[str]) -> None:
        from ..tokens._client import Client

        assert self.client_id and self.secret and self.base_url
        probe = scope is None
        asked = PROBE_SCOPE if scope is None else scope
        try:
            client = Client(
                self.client_id,
                self.secret,
                self.base_url,
                timeout=self.timeout,
                retries=1,
                revocation_interval=None,
                allow_insecure_http=self.insecure,
            )
        except ConfigurationError as exc:
            self.add("credentials accepted", "fail", exc.message, "fix the credential values", EXIT_AUTH)
            return
        try:
            info = client.get_token_info(asked, audience)
        except OculusError as exc:
            self._token_failed(exc, asked, probe)
            self.add("token lifetime", "skip", "no token was granted")
            return
        finally:
            client.stop()
        self.add("credentials accepted", "ok", "the server authenticated {!r}".format(self.client_id))
        self.add("scope granted", "ok", "granted {!r}".format(info.granted_scope or info.scope))
        self.lifetime(info)

    def _token_failed(self, exc: OculusError, scope: str, probe: bool) -> None:
        """Explain why no token came back, by error class and the server's error code."""
        code = exc.code or ""
        if isinstance(exc, AuthenticationError):
            cause, fix = _401_CAUSES.get(code, _401_DEFAULT)
            fix = fix.format(secret_var=self.secret_source or CLIENT_SECRET_VARS[0], url=self.base_url)
            self.add("credentials accepted", "fail", "HTTP 401 {}: {}".format(code, cause), fix, EXIT_AUTH)
            return
        if isinstance(exc, ForbiddenError):
            self.add("credentials accepted", "ok", "the server authenticated {!r}".format(self.client_id))
            if probe:
                self.add("scope granted", "skip", "no --scope given", "pass --scope to check a scope")
            else:
                cause, fix = _403_CAUSES.get(code, _403_DEFAULT)
                detail = "HTTP 403 {}: {}".format(code, cause.format(scope=scope))
                self.add("scope granted", "fail", detail, fix, EXIT_AUTH)
            return
        if isinstance(exc, ValidationError) and exc.status_code is None:  # refused locally: nothing sent
            self.add("credentials accepted", "skip", "nothing was sent")
            self.add("scope granted", "fail", exc.message, "fix --scope / --audience", EXIT_OTHER)
            return
        if isinstance(exc, NotFoundError):
            detail = "HTTP 404: there is no token endpoint at {}/oauth/token".format(self.base_url)
            fix = "the base URL is wrong: set {} to the token service's origin, e.g. {}".format(
                BASE_URL_VARS[0], DEFAULT_BASE_URL
            )
            self.add("credentials accepted", "fail", detail, fix, EXIT_OTHER)
            return
        fix = "check the arguments and the server's status, then run doctor again"
        self.add("credentials accepted", "fail", exc.message, fix, exit_code_for(exc))

    def lifetime(self, info: Any) -> None:
        claims: Any = {}
        try:
            claims = info.claims
        except OculusError:
            pass
        exp, iat = claims.get("exp"), claims.get("iat")
        if isinstance(exp, (int, float)) and isinstance(iat, (int, float)) and exp > iat:
            seconds = float(exp - iat)
        else:
            seconds = max(0.0, round(info.seconds_left()))
        if seconds < MIN_LIFETIME:
            self.add(
                "token lifetime",
                "warn",
                "tokens live {:.0f} s: too short for the 10 s refresh margin and refresh ahead "
                "(the client would renew almost every call)".format(seconds),
                "raise the Token Lifetime (Agents -> your agent -> Settings -> Token Lifetime; "
                "default 10 minutes) to at least {:.0f} s".format(MIN_LIFETIME),
            )
        else:
            self.add("token lifetime", "ok", "tokens live {:.0f} s".format(seconds))

    def revocation(self, transport: Any) -> None:
        try:
            response, _ = self._get(transport, "/oauth/revoked-tokens", "revocation list")
            data = parse_json(response, "revocation list")
            jtis = data.get("revoked_jtis")
            if not isinstance(jtis, list):
                raise OculusError('revocation list: expected {"revoked_jtis": [...]}')
        except OculusError as exc:
            self.add(
                "revocation list",
                "fail",
                exc.message,
                "revoked tokens are not noticed while GET /oauth/revoked-tokens fails: allow it "
                "through proxies and firewalls, or check the server's status",
                exit_code_for(exc),
            )
            return
        self.add("revocation list", "ok", "reachable ({} revoked token id(s))".format(len(jtis)))

    # ------------------------------------------------------------------ all of it

    def run(self, scope: Optional[str], audience: Optional[str]) -> None:
        from ..transport import UrllibTransport

        have_credentials = self.credentials()
        if not self.base_url_check():
            return
        if scope is not None:
            self.scope_format(scope)
        transport = UrllibTransport()
        try:
            if not self.reachable(transport):
                for name in ("credentials accepted", "token lifetime", "revocation list"):
                    self.add(name, "skip", "the server is not reachable")
                return
            if have_credentials:
                self.token(scope, audience)
            else:
                self.add("credentials accepted", "skip", "no credentials")
            self.revocation(transport)
        finally:
            transport.close()


def run_doctor(
    scope: Optional[str] = None,
    audience: Optional[str] = None,
    *,
    strict: bool = False,
    out: Optional[TextIO] = None,
    environ: Optional[Mapping[str, str]] = None,
    clock: Callable[[], float] = time.time,
    timeout: float = 10.0,
) -> int:
    """Run every check, print the report to ``out`` and return the exit code."""
    stream = out if out is not None else sys.stdout
    doctor = _Doctor(environ, clock, timeout)
    doctor.run(scope, audience)
    secrets: Sequence[str] = [doctor.secret] if doctor.secret else []
    failing: List[Check] = []
    counts = {"ok": 0, "warn": 0, "fail": 0, "skip": 0}
    print("oculus_lite doctor", file=stream)
    for check in doctor.checks:
        counts[check.status] += 1
        if check.status == "fail" or (strict and check.status == "warn"):
            failing.append(check)
        line = "{:<4}  {}: {}".format(check.status, check.name, check.detail)
        print(scrub(line, secrets), file=stream)
        if check.fix and check.status in ("warn", "fail", "skip"):
            print(scrub("      fix: " + check.fix, secrets), file=stream)
    code = failing[0].exit_code if failing else EXIT_OK
    print(
        "{ok} ok, {warn} warn, {fail} fail, {skip} skipped{strict} -> exit {code}".format(
            strict=" (--strict: warnings fail)" if strict else "", code=code, **counts
        ),
        file=stream,
    )
    return code


def _cmd_doctor(args: argparse.Namespace) -> int:
    return run_doctor(args.scope, args.audience, strict=args.strict, timeout=args.timeout)


def _seconds(text: str) -> float:
    try:
        return check_seconds(float(text), "--timeout", maximum=300.0)
    except ValueError:  # not a number, or refused (ConfigurationError is a ValueError)
        raise argparse.ArgumentTypeError("must be a number of seconds between 0 and 300") from None


def register(subparsers: Any) -> None:
    """Add ``doctor [--scope S] [--audience A] [--strict] [--timeout T]``."""
    parser = subparsers.add_parser(
        "doctor",
        help="check configuration, credentials, scopes and connectivity; print the fixes",
        description="Runs the troubleshooting guide as a check list against the service "
        "configured by AGENT_CLIENT_ID / AGENT_CLIENT_SECRET / ANTI_AI_URL (or OCULUS_*). "
        "Exit 0 when nothing fails (warnings fail only with --strict); else 3 for "
        "credentials/authorisation, 4 for network, 1 for anything else.",
    )
    parser.add_argument("--scope", default=None, help="a scope to check is granted, e.g. 'db:read'")
    parser.add_argument("--audience", default=None, help="audience to request the token for")
    parser.add_argument("--strict", action="store_true", help="warnings fail too")
    parser.add_argument("--timeout", type=_seconds, default=10.0, help="seconds per check (default 10)")
    parser.set_defaults(func=_cmd_doctor)
