"""``python -m oculus_lite permission ...``: an agent's side (request, status) and the
human operator's side (list, approve, deny) of the approval flow, so a person can
play the approver in a second terminal while an agent waits.

The agent side reads AGENT_OTP_API_KEY / AGENT_OTP_URL; the operator side talks to
the emulator's admin routes with AGENT_OTP_ADMIN_TOKEN when set. The api key and
admin token are never printed; the OTP token only by ``request`` once approved.
"""

import argparse
import json
import sys
from typing import Any, Dict, Optional, TextIO

from .._config import from_env, validate_base_url
from .._engine._clock import SYSTEM_CLOCK
from .._engine._plan import run
from .._http import _send as _http
from ..exceptions import ApprovalTimeoutError, OculusError
from ..permissions._models import Permission, check_id
from ..transport import Request, UrllibTransport

__all__ = ["register"]

EMULATOR_URL = "http://127.0.0.1:8400"


def register(subparsers: Any) -> None:
    """Add ``permission`` and its sub-commands to the CLI."""
    parser = subparsers.add_parser(
        "permission",
        help="one-time permissions approved by a human (Agent OTP)",
        description="Agent side: request, status (AGENT_OTP_API_KEY, AGENT_OTP_URL). Operator side "
        "against the emulator: list, approve, deny (AGENT_OTP_URL, AGENT_OTP_ADMIN_TOKEN).",
    )
    sub = parser.add_subparsers(dest="permission_command", metavar="COMMAND")
    parser.set_defaults(func=lambda args: _usage(parser))

    req = sub.add_parser("request", help="ask for permission to do ACTION")
    req.add_argument("action", metavar="ACTION")
    req.add_argument("--resource")
    req.add_argument(
        "--scope",
        type=_json_object,
        default={},
        help="JSON object, e.g. '{\"max_emails\": 1}'",
    )
    req.add_argument("--context", type=_json_object, default=None, help="JSON object")
    req.add_argument("--ttl", type=int, default=300, help="seconds, 30-3600 (default 300)")
    req.add_argument("--wait", action="store_true", help="wait for the human's decision")
    req.add_argument("--timeout", type=float, default=60.0, help="seconds to wait (default 60)")
    req.add_argument("--poll-interval", type=float, default=2.0, help=argparse.SUPPRESS)
    req.set_defaults(func=_cmd_request)

    status = sub.add_parser("status", help="show a permission request (never its token)")
    status.add_argument("id", metavar="ID")
    status.set_defaults(func=_cmd_status)

    lst = sub.add_parser("list", help="operator: list permission requests on the emulator")
    lst.add_argument("--status", choices=["pending", "approved", "denied", "expired", "used"])
    lst.set_defaults(func=_cmd_list)

    for name, approved in (("approve", True), ("deny", False)):
        cmd = sub.add_parser(name, help="operator: {} a pending request".format(name))
        cmd.add_argument("id", metavar="ID")
        cmd.add_argument("--reason")
        cmd.set_defaults(func=_cmd_decide, approved=approved)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _json_object(text: str) -> Dict[str, Any]:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        raise argparse.ArgumentTypeError("not valid JSON: {!r}".format(text[:80])) from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object like '{\"key\": 1}'")
    return value


def _fail(exc: OculusError) -> int:
    from ._exit import exit_code_for

    print("error: {}".format(exc), file=sys.stderr)
    return exit_code_for(exc)


def _show(permission: Permission, out: TextIO, *, with_token: bool) -> None:
    rows = [
        ("id", permission.id),
        ("status", permission.status.value),
        ("action", permission.action),
        ("resource", permission.resource),
        ("scope", json.dumps(permission.scope, sort_keys=True)),
        ("reason", permission.reason),
        ("decided_by", permission.decided_by),
        ("approval_url", permission.approval_url),
        (
            "expires_at",
            permission.expires_at.isoformat() if permission.expires_at else None,
        ),
    ]
    if with_token and permission.token:
        rows.append(("token", permission.token))  # the user asked for it
    for name, value in rows:
        if value is not None:
            print("{:<14}{}".format(name + ":", value), file=out)


def _cmd_request(args: argparse.Namespace) -> int:
    from ..permissions import PermissionClient

    def on_pending(p: Permission) -> None:
        if args.wait:
            print(
                "pending: waiting up to {:g} s for a human; approve with "
                "`python -m oculus_lite permission approve {}`".format(args.timeout, p.id),
                file=sys.stderr,
            )

    try:
        with PermissionClient() as client:
            permission = client.request_permission(
                args.action,
                args.scope,
                resource=args.resource,
                context=args.context,
                ttl=args.ttl,
                wait_for_approval=args.wait,
                timeout=args.timeout,
                poll_interval=args.poll_interval,
                on_pending=on_pending,
            )
    except ApprovalTimeoutError as exc:
        print("error: {}".format(exc), file=sys.stderr)
        return 1
    except OculusError as exc:
        return _fail(exc)
    _show(permission, sys.stdout, with_token=True)
    return 0 if permission.status.value in ("approved", "pending") else 1


def _cmd_status(args: argparse.Namespace) -> int:
    from ..permissions import PermissionClient

    try:
        with PermissionClient() as client:
            permission = client.get_permission(args.id)
    except OculusError as exc:
        return _fail(exc)
    _show(permission, sys.stdout, with_token=False)
    return 0


def _operator(
    method: str,
    path: str,
    payload: Optional[Dict[str, Any]],
    base_url: Optional[str] = None,
    admin_token: Optional[str] = None,
    what: str = "operator request",
) -> Dict[str, Any]:
    """One call to the operator side (the emulator's admin routes or /decide)."""
    url, source = from_env(base_url, ("AGENT_OTP_URL",))
    url = validate_base_url(url or EMULATOR_URL, what=source or "AGENT_OTP_URL")
    token, _ = from_env(admin_token, ("AGENT_OTP_ADMIN_TOKEN",))
    headers = [("Accept", "application/json")]
    if token:
        headers.append(("Authorization", "Bearer " + token))
    body = b""
    if payload is not None:
        headers.append(("Content-Type", "application/json"))
        body = json.dumps(payload).encode("utf-8")
    transport = UrllibTransport()
    try:
        plan = _http.send_plan(
            Request(method, url + path, tuple(headers), body, 10.0),
            policy=_http.RetryPolicy(retries=1),
            deadline=SYSTEM_CLOCK.monotonic() + 30.0,
            clock=SYSTEM_CLOCK,
            what=what,
            secrets=(token,) if token else (),
            hints={401: "set AGENT_OTP_ADMIN_TOKEN to the emulator's --admin-token"},
        )
        response = run(plan, transport, SYSTEM_CLOCK.sleep)
    finally:
        transport.close()
    data = _http.parse_json(response, what)
    inner = data.get("data")
    return inner if isinstance(inner, dict) and "success" in data else data


def _cmd_list(args: argparse.Namespace) -> int:
    path = "/_emulator/otp/permissions" + ("?status=" + args.status if args.status else "")
    try:
        rows = _operator("GET", path, None, what="listing permissions").get("permissions") or []
    except OculusError as exc:
        return _fail(exc)
    if not rows:
        print("no permission requests{}".format(" with status " + args.status if args.status else ""))
        return 0
    print("{:<30} {:<9} {:<24} {:<24} {}".format("ID", "STATUS", "ACTION", "RESOURCE", "EXPIRES"))
    for row in rows:
        print(
            "{:<30} {:<9} {:<24} {:<24} {}".format(
                str(row.get("id")),
                str(row.get("status")),
                str(row.get("action")),
                str(row.get("resource") or "-"),
                str(row.get("expires_at") or ""),
            )
        )
    return 0


def _cmd_decide(args: argparse.Namespace) -> int:
    try:
        pid = check_id(args.id, "ID")
        payload: Dict[str, Any] = {"approved": bool(args.approved)}
        if args.reason:
            payload["reason"] = args.reason
        data = _operator(
            "POST",
            "/api/v1/permissions/{}/decide".format(pid),
            payload,
            what="deciding permission " + pid,
        )
    except OculusError as exc:
        return _fail(exc)
    # the decision's reply carries the token; the operator did not ask for it, so it stays hidden
    print(
        "{} {}{}".format(
            data.get("status", "decided"),
            pid,
            ": " + str(data["reason"]) if data.get("reason") else "",
        )
    )
    return 0
