"""``delegate`` and ``enroll``: hand a child agent narrower rights; trade an enroll token for
an agent's credentials. Neither prints a token or secret unless asked with an explicit flag."""

import argparse
import json
import sys
from typing import Any, Dict, List, Optional

from ._exit import EXIT_OK

__all__ = ["register"]


def _constraints(text: str) -> Dict[str, Any]:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        raise argparse.ArgumentTypeError("not valid JSON: {!r}".format(text[:80])) from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object, e.g. '{\"max_amount_cents\": 1000}'")
    return value


def _cmd_delegate(args: argparse.Namespace) -> int:
    from ..tokens._client import Client

    capabilities: List[str] = args.capability
    with Client(revocation_interval=None) as parent:
        token = parent.delegate(args.child, capabilities, args.task, args.ttl, args.constraints)
    summary = {
        "child_agent_id": args.child,
        "jti": token.jti,
        "delegation_depth": token.depth,
        "capabilities": list(token.capabilities),
        "expires_at": token.expires_at.isoformat(),
    }
    if args.print_token:
        summary["access_token"] = str(token)
    print(json.dumps(summary, indent=2))
    return EXIT_OK


def _cmd_enroll(args: argparse.Namespace) -> int:
    from ..tokens._client import Client

    client = Client.from_enroll_token(args.enroll_token, args.base_url, store=args.save)
    try:
        out: Dict[str, Optional[str]] = {"client_id": client.client_id}
        if args.save:
            out["saved_to"] = args.save
        if args.show_secret:
            endpoint = client._endpoint
            out["client_secret"] = endpoint._secret.reveal() if endpoint is not None else None
        elif not args.save:
            print(
                "warning: the secret was not saved (pass --save FILE, or --show-secret to print it); "
                "the enroll token cannot be used again",
                file=sys.stderr,
            )
        print(json.dumps(out, indent=2))
    finally:
        client.stop()
    return EXIT_OK


def register(subparsers: Any) -> None:
    """Add ``delegate`` and ``enroll``."""
    delegate = subparsers.add_parser(
        "delegate",
        help="delegate a subset of this agent's capabilities to a child agent",
        description="The parent is configured like 'token' (AGENT_*/ANTI_AI_URL or OCULUS_*). Prints "
        "the delegated token's jti, depth, capabilities and expiry; the token itself only with "
        "--print-token. Exit 3 when the delegation is refused (the code is printed).",
    )
    delegate.add_argument("child", metavar="CHILD_AGENT_ID")
    delegate.add_argument("--capability", action="append", required=True, help="repeat for several")
    delegate.add_argument("--task", required=True, help="the task the child works on")
    delegate.add_argument("--ttl", type=int, default=300, help="seconds (default 300)")
    delegate.add_argument("--constraints", type=_constraints, default=None, help="JSON object, tighter only")
    delegate.add_argument("--print-token", action="store_true", help="also print the delegated token")
    delegate.set_defaults(func=_cmd_delegate)

    enroll = subparsers.add_parser(
        "enroll",
        help="trade a one-time enroll token for this agent's client id and secret",
        description="Prints the client id; the secret is written to --save FILE (mode 0600, atomically) "
        "and printed only with --show-secret. The enroll token works once.",
    )
    enroll.add_argument("enroll_token", metavar="ENROLL_TOKEN")
    enroll.add_argument(
        "--base-url", required=True, help="the token service, e.g. https://api.antiailabs.com"
    )
    enroll.add_argument("--save", metavar="FILE", default=None, help="write the credentials here (0600)")
    enroll.add_argument("--show-secret", action="store_true", help="print the client secret")
    enroll.set_defaults(func=_cmd_enroll)
