"""The ``Emulator``: a local Oculus token service (plus the approval service when present).

It exists so clients, tests and demos run end to end with no network and no
account: it issues real RS256 JWTs, serves the JWKS and the revocation list,
reproduces the documented 401/403 causes, and can be told to misbehave
(``set_faults``). Everything runs in one daemon thread per emulator on
loopback; an admin API under ``/_emulator/`` mirrors the Python methods.
"""

import hmac
import json
import os
import secrets
import sys
import threading
from typing import IO, Any, Dict, Mapping, Optional, Sequence, Union
from urllib.parse import parse_qs

from ._faults import FaultSet
from ._keys import KeyRing
from ._server import EmulatorHTTPServer, Request, Response, json_response
from ._tokens import Agent, TokenService, error_body, make_agent

__all__ = ["Emulator", "DEMO_SCOPES"]

DEMO_SCOPES = ["db:*", "stripe:*", "files:*", "email:*", "crm:*"]
_AGENT_FIELDS = (
    "client_id",
    "client_secret",
    "scopes",
    "status",
    "token_ttl",
    "refresh_tokens",
    "rotate_refresh_tokens",
    "policies",
    "error_style",
    "tenant_id",
    "framework",
)
_CONFIG_KEYS = (
    "agents",
    "otp",
    "tenant_id",
    "jwks_max_age",
    "key_grace_seconds",
    "error_style",
    "demo_client_id",
    "demo_refresh_tokens",
)
_COUNTERS = (
    "requests",
    "token_requests",
    "tokens_issued",
    "revocation_requests",
    "revocation_not_modified",
    "jwks_requests",
    "faults_fired",
    "admin_requests",
)


def _load_config(config: Union[None, str, "os.PathLike[str]", Mapping[str, Any]]) -> Dict[str, Any]:
    if config is None:
        return {}
    if isinstance(config, Mapping):
        return dict(config)
    with open(os.fspath(config), "r", encoding="utf-8") as fh:
        loaded = json.load(fh)
    if not isinstance(loaded, dict):
        raise ValueError("emulator config must be a JSON object")
    return loaded


def _check_config(cfg: Mapping[str, Any]) -> None:
    unknown = sorted(set(cfg) - set(_CONFIG_KEYS))
    if unknown:
        raise ValueError(
            "emulator config: unknown key(s) {}; known: {}".format(
                ", ".join(map(str, unknown)), ", ".join(_CONFIG_KEYS)
            )
        )
    agents = cfg.get("agents", [])
    if not isinstance(agents, list):
        raise ValueError("emulator config: agents must be a list of agent objects")


class Emulator:
    """A local token service on ``127.0.0.1``; use ``with Emulator() as emu:`` or ``start()``/``stop()``."""

    def __init__(
        self,
        port: int = 0,
        host: str = "127.0.0.1",
        config: Union[None, str, "os.PathLike[str]", Mapping[str, Any]] = None,
        admin_token: Optional[str] = None,
        log: Optional[IO[str]] = None,
        *,
        allow_remote: bool = False,
        jwks_max_age: Optional[int] = None,
        key_grace: Optional[float] = None,
        error_style: Optional[str] = None,
    ) -> None:
        from .._http._hosts import is_loopback_host

        if not allow_remote and not is_loopback_host(host):
            raise ValueError(
                "refusing to bind the emulator to non-loopback host {!r}: it hands out demo "
                "credentials; pass allow_remote=True to do it anyway".format(host)
            )
        self._config = _load_config(config)
        cfg = self._config
        _check_config(cfg)
        self.host = host
        self._port = port
        self._admin_token = admin_token
        self._logstream = log
        self._log_lock = threading.Lock()
        self.jwks_max_age = int(cfg.get("jwks_max_age", 300) if jwks_max_age is None else jwks_max_age)
        self.key_grace = float(cfg.get("key_grace_seconds", 600.0) if key_grace is None else key_grace)
        style = error_style if error_style is not None else cfg.get("error_style")
        if style not in (None, "oculus", "rfc6749"):
            raise ValueError("error_style must be 'oculus' or 'rfc6749'")
        self.keys = KeyRing()
        self.tokens = TokenService(
            self.keys, tenant_id=str(cfg.get("tenant_id", "tenant_emulator")), error_style=style
        )
        self.faults = FaultSet()
        self.demo_client_id = str(cfg.get("demo_client_id", "emulator-demo-agent"))
        self.demo_client_secret = "sk_demo_" + secrets.token_urlsafe(24)
        self._stats_lock = threading.Lock()
        self._counts: Dict[str, int] = {}
        self._by_grant: Dict[str, int] = {}
        self._server: Optional[EmulatorHTTPServer] = None
        self._thread: Optional[threading.Thread] = None
        self._state_lock = threading.Lock()
        self.url = ""
        self.otp: Any = None
        try:
            from ._otp import OtpService  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            pass
        else:
            self.otp = OtpService(admin_token=admin_token, config=cfg.get("otp"))
        self._initial_state()

    # ------------------------------------------------------------------ lifecycle
    def _initial_state(self) -> None:
        self.tokens.reset()
        self.keys.reset()
        self.faults.reset()
        with self._stats_lock:
            self._counts = {name: 0 for name in _COUNTERS}
            self._by_grant = {}
        self.tokens.put_agent(
            make_agent(
                self.demo_client_id,
                self.demo_client_secret,
                scopes=DEMO_SCOPES,
                policies=[{"name": "demo-admin", "scopes": ["admin:*"], "mode": "shadow"}],
                refresh_tokens=bool(self._config.get("demo_refresh_tokens", False)),
            )
        )
        for i, spec in enumerate(self._config.get("agents") or ()):
            self.tokens.put_agent(self._agent_from_json(spec, "config agents[{}]".format(i)))

    @staticmethod
    def _agent_from_json(spec: Any, where: str) -> Agent:
        if not isinstance(spec, Mapping):
            raise ValueError(where + " must be an object")
        unknown = sorted(set(spec) - set(_AGENT_FIELDS))
        if unknown:
            raise ValueError("{}: unknown field(s) {}".format(where, ", ".join(unknown)))
        if "client_id" not in spec:
            raise ValueError(where + ": client_id is required")
        return make_agent(**dict(spec))

    @property
    def port(self) -> int:
        return self._server.server_address[1] if self._server is not None else self._port

    def start(self) -> "Emulator":
        with self._state_lock:
            if self._server is not None:
                return self
            self.keys.current()  # the per-process key, generated once (about a second)
            server = EmulatorHTTPServer((self.host, self._port), self)
            host = self.host if ":" not in self.host else "[" + self.host + "]"
            self.url = "http://{}:{}".format(host, server.server_address[1])
            self.tokens.issuer = self.url
            if self.otp is not None:
                self.otp.public_url = self.url  # approval pages link here
            thread = threading.Thread(
                target=server.serve_until_stopped,
                daemon=True,
                name="oculus-emulator:{}".format(server.server_address[1]),
            )
            thread.start()
            self._server, self._thread = server, thread
        return self

    def stop(self) -> None:
        with self._state_lock:
            server, thread = self._server, self._thread
            self._server, self._thread = None, None
        if server is None:
            return
        server.wake()
        if thread is not None:
            thread.join()
        server.server_close()
        server.drop_connections()
        server.wait_idle(2.0)

    close = stop

    def __enter__(self) -> "Emulator":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        return "Emulator(url={!r})".format(self.url or None)

    # ------------------------------------------------------------------ python API
    def add_agent(
        self,
        client_id: str,
        client_secret: Optional[str] = None,
        *,
        scopes: Optional[Sequence[str]] = None,
        status: str = "active",
        token_ttl: int = 600,
        refresh_tokens: bool = False,
        rotate_refresh_tokens: bool = True,
        policies: Optional[Sequence[Mapping[str, Any]]] = None,
        error_style: Optional[str] = None,
        tenant_id: Optional[str] = None,
        framework: Optional[str] = None,
    ) -> str:
        """Create or replace an agent; returns its secret (generated when not given)."""
        agent = make_agent(
            client_id,
            client_secret,
            scopes=scopes,
            status=status,
            token_ttl=token_ttl,
            refresh_tokens=refresh_tokens,
            rotate_refresh_tokens=rotate_refresh_tokens,
            policies=policies,
            error_style=error_style,
            tenant_id=tenant_id,
            framework=framework,
        )
        self.tokens.put_agent(agent)
        return agent.client_secret

    def rotate_secret(self, client_id: str) -> str:
        return self.tokens.rotate_secret(client_id)

    def set_status(self, client_id: str, status: str) -> None:
        self.tokens.set_status(client_id, status)

    def revoke(self, jti: str) -> None:
        self.tokens.revoke(jti)

    def rotate_keys(self, grace: Optional[float] = None) -> str:
        """New signing key; the old one stays in the JWKS for ``grace`` seconds. Returns the new kid."""
        return self.keys.rotate(self.key_grace if grace is None else float(grace))

    def expire_retired_keys(self) -> int:
        """End the grace period of retired keys now (they leave the JWKS); returns how many."""
        return self.keys.expire_retired()

    def issue_token(
        self,
        client_id: Optional[str] = None,
        scope: str = "db:read",
        *,
        audience: Optional[str] = None,
        ttl: Optional[int] = None,
        claims: Optional[Mapping[str, Any]] = None,
        header: Optional[Mapping[str, Any]] = None,
    ) -> str:
        """A signed token without the grant checks, for verification tests (default: the demo agent).

        ``ttl`` may be negative (an expired token); ``claims``/``header`` entries
        override the defaults, and a value of None removes that entry.
        """
        return self.tokens.issue_token(
            client_id or self.demo_client_id, scope, audience=audience, ttl=ttl, claims=claims, header=header
        )

    def jwks(self) -> Dict[str, Any]:
        return self.keys.jwks()

    def reset(self) -> None:
        """Back to the start state: demo (and config) agents, no revocations, counters zero, faults cleared."""
        self._initial_state()
        if self.otp is not None:
            self.otp.reset()

    def set_faults(self, rules: Sequence[Mapping[str, Any]]) -> None:
        self.faults.set(rules)

    def clear_faults(self) -> None:
        self.faults.clear()

    def stats(self) -> Dict[str, Any]:
        with self._stats_lock:
            out: Dict[str, Any] = dict(self._counts)
            out["token_requests_by_grant"] = dict(self._by_grant)
        out["faults_fired"] = self.faults.fired
        out["tokens_issued"] = self.tokens.tokens_issued
        if self.otp is not None:
            out.update(self.otp.stats())
        return out

    # ------------------------------------------------------------------ internals
    def _bump(self, name: str, by: int = 1) -> None:
        with self._stats_lock:
            self._counts[name] = self._counts.get(name, 0) + by

    def _count_request(self, req: Request) -> None:
        path = req.path
        grant = (_form(req).get("grant_type", "") or "none") if path == "/oauth/token" else ""
        with self._stats_lock:
            c = self._counts
            c["requests"] += 1
            if path == "/oauth/token":
                c["token_requests"] += 1
                self._by_grant[grant] = self._by_grant.get(grant, 0) + 1
            elif path == "/oauth/revoked-tokens":
                c["revocation_requests"] += 1
            elif path == "/.well-known/jwks.json":
                c["jwks_requests"] += 1
            elif path.startswith("/_emulator/"):
                c["admin_requests"] += 1

    def _log(self, method: str, path: str, status: Optional[int], ms: float, fault: Optional[str]) -> None:
        stream = self._logstream
        if stream is None:
            return
        line = "{} {} {} {:.1f}ms{}\n".format(
            method, path[:200], status if status else "-", ms, " fault=" + fault if fault else ""
        )
        with self._log_lock:
            try:
                stream.write(line)
                stream.flush()
            except (OSError, ValueError):  # pragma: no cover - closed stream
                pass

    def _report_bug(self, method: str, path: str, exc: BaseException) -> None:
        import traceback

        stream = self._logstream if self._logstream is not None else sys.stderr
        text = "emulator error on {} {}:\n{}".format(
            method, path[:200], "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        )
        with self._log_lock:
            try:
                stream.write(text)
                stream.flush()
            except (OSError, ValueError):  # pragma: no cover
                pass

    def _admin_ok(self, req: Request) -> bool:
        if self._admin_token is None:
            return True
        auth = req.headers.get("authorization", "")
        expected = "Bearer " + self._admin_token
        return hmac.compare_digest(auth.encode("utf-8", "replace"), expected.encode("utf-8"))

    def route(self, req: Request) -> Response:
        from ._routes import route

        return route(self, req)


def _form(req: Request) -> Dict[str, str]:
    """The token request's fields: form-encoded (the protocol) or, leniently, JSON."""
    ctype = req.headers.get("content-type", "")
    if "json" in ctype:
        try:
            data = json.loads(req.body.decode("utf-8") or "{}")
        except ValueError:
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}
    try:
        parsed = parse_qs(req.body.decode("utf-8"), keep_blank_values=True)
    except (UnicodeDecodeError, ValueError):
        return {}
    return {k: v[0] for k, v in parsed.items()}


def admin_denied() -> Response:
    return json_response(
        401,
        error_body("unauthorized", "admin token required: send Authorization: Bearer <admin_token>", None),
        [("WWW-Authenticate", 'Bearer realm="emulator-admin"')],
    )
