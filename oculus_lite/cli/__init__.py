"""``python -m oculus_lite``: serve, token, decode, verify, demo, permission, doctor.

Exit codes: 0 ok, 1 other error, 2 usage, 3 authentication/authorisation,
4 network, 5 verification failed. Secrets are never printed, except the token
that ``token`` was asked for.
"""

import argparse
import sys
from typing import Callable, List, Optional, Sequence, TextIO

from ..exceptions import OculusError
from ._examples import add_examples
from ._exit import EXIT_OK, EXIT_USAGE, exit_code_for

__all__ = ["exit_code_for", "main"]


def _cmd_token(args: argparse.Namespace) -> int:
    from ..tokens._client import Client

    with Client(revocation_interval=None) as client:
        print(client.get_token(args.scope, args.audience))
    return EXIT_OK


def _cmd_serve(args: argparse.Namespace) -> int:
    from ..emulator import run_server

    return run_server(
        host=args.host, port=args.port, config=args.config, admin_token=args.admin_token, out=sys.stdout
    )


def _cmd_demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo

    return run_demo(sys.stdout)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m oculus_lite",
        description="Agent identity from the command line: tokens, verification, approvals, "
        "and a local emulator of the services.",
    )
    from .._version import __version__

    parser.add_argument("--version", action="version", version="oculus_lite " + __version__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the emulator in the foreground")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8400)
    serve.add_argument(
        "--config",
        metavar="FILE",
        help="JSON file: agents (scopes, policies, constraints), capability_maps, credentials, otp "
        "(docs/emulator.md)",
    )
    serve.add_argument(
        "--admin-token",
        metavar="T",
        help="require 'Authorization: Bearer T' on admin and /decide routes; also the approval page's sign-in",
    )
    serve.set_defaults(func=_cmd_serve)

    token = sub.add_parser(
        "token",
        help="print an access token (configured from AGENT_*/ANTI_AI_URL or OCULUS_* variables)",
    )
    token.add_argument("--scope", required=True, help="space-separated scopes, e.g. 'db:read'")
    token.add_argument("--audience", default=None)
    token.set_defaults(func=_cmd_token)

    demo = sub.add_parser("demo", help="walk through the main job against an embedded emulator")
    demo.set_defaults(func=_cmd_demo)

    for register in _extensions():
        register(sub)
    add_examples(parser)
    return parser


def _extensions() -> List[Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]]:
    from . import _delegation, _doctor, _permission, _verify

    return [
        _verify.register_decode,
        _verify.register,
        _permission.register,
        _delegation.register,
        _doctor.register,
    ]


def main(argv: Optional[Sequence[str]] = None, *, stderr: Optional[TextIO] = None) -> int:
    err = stderr if stderr is not None else sys.stderr
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(err)
        return EXIT_USAGE
    try:
        code: int = func(args)
        return code
    except OculusError as exc:
        print("error: {}".format(exc), file=err)
        return exit_code_for(exc)
    except KeyboardInterrupt:
        print("interrupted", file=err)
        return 130
