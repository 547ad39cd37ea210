"""The ``Emulator``: a local Oculus token service (plus the approval service when present).

It exists so clients, tests and demos run end to end with no network and no
account: it issues real RS256 JWTs with SDK service tokens, serves the JWKS and the
revocation list, the capability maps, credentials and audit sink of the official SDK's
``startup()``, delegation and enrollment, reproduces the documented 401/403 causes, and
can be told to misbehave (``set_faults``). Everything runs in one daemon thread per
emulator on loopback; an admin API under ``/_emulator/`` mirrors the Python methods.
Time comes from an injectable clock, so tests expire tokens without sleeping.
"""

from __future__ import annotations

import hmac
import inspect
import json
import os
import secrets
import sys
import threading
from typing import IO, TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

from .._engine import SYSTEM_CLOCK, Clock
from ._agents import AGENT_FIELDS, Agent, make_agent
from ._delegation import DEFAULT_ENROLL_TTL, DelegationService
from ._faults import FaultSet
from ._governance import GovernanceService
from ._keys import KeyRing
from ._otp import OtpService
from ._server import EmulatorHTTPServer, Request, Response
from ._tokens import DEFAULT_DELEGATION_DEPTH_LIMIT, TokenService

if TYPE_CHECKING:  # pragma: no cover
    from typing import Concatenate, ParamSpec

    _P = ParamSpec("_P")

__all__ = ["Emulator", "DEMO_SCOPES"]

DEMO_SCOPES = ["db:*", "stripe:*", "files:*", "email:*", "crm:*"]
_CONFIG_KEYS = (
    "agents",
    "otp",
    "tenant_id",
    "jwks_max_age",
    "key_grace_seconds",
    "error_style",
    "demo_client_id",
    "demo_refresh_tokens",
    "capability_maps",
    "credentials",
    "delegation_depth_limit",
)
_MAP_FIELDS = ("integrations", "client_id")
_CREDENTIAL_FIELDS = ("integration", "credential_type", "value", "client_id")
_COUNTERS = (
    "requests",
    "token_requests",
    "tokens_issued",
    "revocation_requests",
    "revocation_not_modified",
    "jwks_requests",
    "capability_map_requests",
    "capability_map_not_modified",
    "credential_requests",
    "audit_requests",
    "delegate_requests",
    "enroll_requests",
    "faults_fired",
    "admin_requests",
)
_COUNTED_PATHS = {
    "/oauth/token": "token_requests",
    "/oauth/revoked-tokens": "revocation_requests",
    "/.well-known/jwks.json": "jwks_requests",
    "/v1/sync/capability-maps": "capability_map_requests",
    "/v1/credentials/fetch": "credential_requests",
    "/v1/audit/events/batch": "audit_requests",
    "/oauth/delegate": "delegate_requests",
    "/oauth/enroll": "enroll_requests",
}


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


def _check_entries(cfg: Mapping[str, Any], key: str, fields: Sequence[str]) -> None:
    entries = cfg.get(key, [])
    if not isinstance(entries, list):
        raise ValueError("emulator config: {} must be a list of objects".format(key))
    for i, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            raise ValueError("emulator config: {}[{}] must be an object".format(key, i))
        unknown = sorted(set(entry) - set(fields))
        if unknown:
            raise ValueError(
                "emulator config: {}[{}]: unknown field(s) {}; known: {}".format(
                    key, i, ", ".join(map(str, unknown)), ", ".join(fields)
                )
            )


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
    _check_entries(cfg, "capability_maps", _MAP_FIELDS)
    _check_entries(cfg, "credentials", _CREDENTIAL_FIELDS)
    limit = cfg.get("delegation_depth_limit", DEFAULT_DELEGATION_DEPTH_LIMIT)
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
        raise ValueError("emulator config: delegation_depth_limit must be an integer >= 0")


def _stores_agent(build: Callable[_P, Agent]) -> Callable[Concatenate[Emulator, _P], str]:
    """``Emulator.add_agent`` from ``make_agent``: the same parameters, defined once (typed for
    mypy through ParamSpec, and shown by ``help()``/``inspect`` through ``__signature__``)."""

    def add_agent(self: Emulator, /, *args: Any, **kwargs: Any) -> str:
        agent = build(*args, **kwargs)
        self.tokens.put_agent(agent)
        return agent.client_secret

    sig = inspect.signature(build)
    params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    add_agent.__signature__ = sig.replace(  # type: ignore[attr-defined]
        parameters=params + list(sig.parameters.values()), return_annotation="str"
    )
    add_agent.__doc__ = "Create or replace an agent; returns its secret (generated when not given).\n\n" + (
        build.__doc__ or ""
    )
    return add_agent


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
        clock: Optional[Clock] = None,
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
        #: Every instant the emulator uses (token claims, expiries, key grace periods).
        self.clock: Clock = clock if clock is not None else SYSTEM_CLOCK
        self.keys = KeyRing(self.clock)
        self.tokens = TokenService(
            self.keys,
            self.clock,
            tenant_id=str(cfg.get("tenant_id", "tenant_emulator")),
            error_style=style,
            delegation_depth_limit=cfg.get("delegation_depth_limit", DEFAULT_DELEGATION_DEPTH_LIMIT),
        )
        self.governance = GovernanceService(self.tokens)
        self.delegation = DelegationService(self.tokens)
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
        self.otp = OtpService(admin_token=admin_token, config=cfg.get("otp"), clock=self.clock)
        self._initial_state()

    # ------------------------------------------------------------------ lifecycle
    def _initial_state(self) -> None:
        self.tokens.reset()
        self.keys.reset()
        self.faults.reset()
        self.governance.reset()
        self.delegation.reset()
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
        cfg = self._config
        for i, spec in enumerate(cfg.get("agents") or ()):
            self.tokens.put_agent(self._agent_from_json(spec, "config agents[{}]".format(i)))
        for i, entry in enumerate(cfg.get("capability_maps") or ()):
            try:
                self.governance.set_capability_map(entry.get("integrations"), entry.get("client_id"))
            except ValueError as exc:
                raise ValueError("emulator config: capability_maps[{}]: {}".format(i, exc)) from None
        for i, entry in enumerate(cfg.get("credentials") or ()):
            try:
                self.governance.set_credential(
                    entry.get("integration"),
                    entry.get("credential_type"),
                    entry.get("value"),
                    entry.get("client_id"),
                )
            except ValueError as exc:
                raise ValueError("emulator config: credentials[{}]: {}".format(i, exc)) from None

    @staticmethod
    def _agent_from_json(spec: Any, where: str) -> Agent:
        if not isinstance(spec, Mapping):
            raise ValueError(where + " must be an object")
        unknown = sorted(set(spec) - set(AGENT_FIELDS))
        if unknown:
            raise ValueError("{}: unknown field(s) {}".format(where, ", ".join(unknown)))
        if "client_id" not in spec:
            raise ValueError(where + ": client_id is required")
        try:
            return make_agent(**dict(spec))
        except (TypeError, ValueError) as exc:
            raise ValueError("{}: {}".format(where, exc)) from None

    @property
    def port(self) -> int:
        return self._server.server_address[1] if self._server is not None else self._port

    def start(self) -> Emulator:
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
        """Stop serving: returns at once, even with a handler inside a ``delay`` fault."""
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

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        return "Emulator(url={!r})".format(self.url or None)

    # ------------------------------------------------------------------ python API: agents and tokens
    add_agent = _stores_agent(make_agent)

    def list_agents(self) -> List[Dict[str, Any]]:
        """Every agent with its grants and settings, never its secret."""
        out = []
        for cid in self.tokens.agent_ids():
            agent = self.tokens.get_agent(cid)
            if agent is not None:
                out.append(agent.describe())
        return out

    def rotate_secret(self, client_id: str) -> str:
        return self.tokens.rotate_secret(client_id)

    def set_status(self, client_id: str, status: str) -> None:
        self.tokens.set_status(client_id, status)

    def revoke(self, jti: str) -> None:
        """Revoke a token and, transitively, every token delegated from it."""
        self.tokens.revoke(jti)

    def issued_tokens(self) -> List[Dict[str, Any]]:
        """The tokens issued (the most recent 10,000): jti, sub, scope, iat, exp, revoked,
        delegation_depth, parent_jti. Never the token strings."""
        return self.tokens.issued_tokens()

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

    # ------------------------------------------------------------------ python API: governance
    def set_capability_map(
        self, integrations: Mapping[str, Mapping[str, Any]], client_id: Optional[str] = None
    ) -> None:
        """The capability map every agent sees, or only ``client_id`` (overriding the global one),
        in the wire shape ``{name: {"capabilities": {cap: meta}, "deny_always": [cap]}}``."""
        self.governance.set_capability_map(integrations, client_id)

    def set_credential(
        self, integration: str, credential_type: str, value: str, client_id: Optional[str] = None
    ) -> None:
        """Register or rotate an integration's credential (for every agent, or only ``client_id``)."""
        self.governance.set_credential(integration, credential_type, value, client_id)

    def audit_events(self) -> List[Dict[str, Any]]:
        """Every audit event received, in order (resent duplicates counted once)."""
        return self.governance.audit_events()

    def mint_enroll_token(
        self,
        scopes: Sequence[str],
        *,
        client_id: Optional[str] = None,
        policies: Optional[Sequence[Mapping[str, Any]]] = None,
        constraints: Optional[Mapping[str, Any]] = None,
        ttl: float = DEFAULT_ENROLL_TTL,
    ) -> str:
        """A one-time enroll token (valid ``ttl`` seconds) that creates an agent with these grants
        (``client_id`` generated when not given) at ``POST /oauth/enroll``."""
        token, _ = self.delegation.mint_enroll_token(
            scopes, client_id=client_id, policies=policies, constraints=constraints, ttl=ttl
        )
        return token

    # ------------------------------------------------------------------ python API: control
    def reset(self) -> None:
        """Back to the start state: demo (and config) agents, maps and credentials; no revocations,
        audit events or enroll tokens; counters zero, faults cleared."""
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
        out["audit_events"] = self.governance.events_accepted
        out["audit_duplicates"] = self.governance.events_duplicated
        if self.otp is not None:
            out.update(self.otp.stats())
        return out

    # ------------------------------------------------------------------ internals
    def _bump(self, name: str, by: int = 1) -> None:
        with self._stats_lock:
            self._counts[name] = self._counts.get(name, 0) + by

    def _count_request(self, req: Request) -> None:
        path = req.path
        counter = _COUNTED_PATHS.get(path)
        if counter is None and path.startswith("/_emulator/"):
            counter = "admin_requests"
        grant = (req.form().get("grant_type", "") or "none") if path == "/oauth/token" else ""
        with self._stats_lock:
            c = self._counts
            c["requests"] += 1
            if counter is not None:
                c[counter] += 1
            if grant:
                self._by_grant[grant] = self._by_grant.get(grant, 0) + 1

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
