"""The ``verify`` and ``decode`` subcommands.

``verify`` checks a token against the configured service's JWKS (and its
revocation list) and prints the claims; ``decode`` only parses and says loudly
that nothing was verified. Neither prints the token. Pass ``-`` as TOKEN to read
it from standard input, which keeps it out of the process list and shell history.
"""

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from ..exceptions import InvalidTokenError, NetworkError, OculusError, ServerError

if TYPE_CHECKING:  # pragma: no cover
    _Sub = argparse._SubParsersAction[argparse.ArgumentParser]
else:
    _Sub = Any

__all__ = ["register", "register_decode"]

EXIT_OK, EXIT_NETWORK, EXIT_INVALID = 0, 4, 5
_TOKEN_HELP = "the JWT, or - to read it from standard input"


def _read_token(value: str) -> str:
    if value == "-":
        return sys.stdin.read().strip()
    return value


def _dump(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def _cmd_verify(args: argparse.Namespace) -> int:
    from .._config import DEFAULT_BASE_URL, from_env
    from ..jwt import JwksVerifier

    base_url, _ = from_env(args.base_url, ("ANTI_AI_URL", "OCULUS_BASE_URL"))
    token = _read_token(args.token)
    try:
        with JwksVerifier(
            base_url or DEFAULT_BASE_URL,
            jwks_url=args.jwks_url,
            audience=args.audience,
            issuer=args.issuer,
            leeway=args.leeway,
            check_revocation=not args.no_revocation,
            revocation_interval=None,
            memo=False,
        ) as verifier:
            claims = verifier.verify(token)
    except InvalidTokenError as exc:
        print("invalid token: {}".format(exc.reason), file=sys.stderr)
        return EXIT_INVALID
    except (NetworkError, ServerError) as exc:
        print("error: cannot check the token: {}".format(exc.message), file=sys.stderr)
        return EXIT_NETWORK
    except OculusError:
        raise  # the main CLI maps the rest (configuration -> 2, ...)
    print(_dump(claims.to_dict()))
    return EXIT_OK


def _cmd_decode(args: argparse.Namespace) -> int:
    from ..jwt import decode

    try:
        decoded = decode(_read_token(args.token))
    except InvalidTokenError as exc:
        print("malformed token: {}".format(exc.reason), file=sys.stderr)
        return EXIT_INVALID
    print(
        "WARNING: NOTHING WAS VERIFIED - signature, expiry, audience and revocation were not "
        "checked; use 'verify' before trusting these claims.",
        file=sys.stderr,
    )
    print(_dump({"verified": False, "header": decoded.header, "claims": decoded.claims}))
    return EXIT_OK


def register(subparsers: _Sub) -> None:
    """Add ``verify TOKEN [--audience A] [--issuer I] [--base-url URL]``."""
    parser = subparsers.add_parser(
        "verify",
        help="verify a token against the service's JWKS and revocation list; print its claims",
        description="Exit 0 and the claims as JSON when valid; exit 5 and the reason when not; "
        "exit 4 when the keys cannot be fetched. The base URL comes from --base-url, "
        "ANTI_AI_URL, OCULUS_BASE_URL, or defaults to https://api.antiailabs.com.",
    )
    parser.add_argument("token", metavar="TOKEN", help=_TOKEN_HELP)
    parser.add_argument("--audience", default=None, help="required audience (aud)")
    parser.add_argument("--issuer", default=None, help="required issuer (iss)")
    parser.add_argument("--base-url", default=None, help="the token service's base URL")
    parser.add_argument("--jwks-url", default=None, help="JWKS location, if not the well-known path")
    parser.add_argument("--leeway", type=float, default=30.0, help="clock skew allowance in seconds")
    parser.add_argument("--no-revocation", action="store_true", help="skip the revocation-list check")
    parser.set_defaults(func=_cmd_verify)


def register_decode(subparsers: _Sub) -> None:
    """Add ``decode TOKEN``: header and claims, explicitly unverified."""
    parser = subparsers.add_parser(
        "decode", help="print a token's header and claims WITHOUT verifying anything"
    )
    parser.add_argument("token", metavar="TOKEN", help=_TOKEN_HELP)
    parser.set_defaults(func=_cmd_decode)
