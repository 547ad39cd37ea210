"""One real invocation per command, printed as the last line of its ``--help``."""

import argparse
from typing import Dict, Iterator, Tuple

__all__ = ["EXAMPLES", "add_examples", "walk"]

PROG = "python -m oculus_lite"

EXAMPLES: Dict[str, str] = {
    "": "demo",
    "serve": "serve --port 8400 --admin-token change-me",
    "token": "token --scope 'db:read'",
    "demo": "demo",
    "decode": "decode eyJhbGciOi...",
    "verify": "verify eyJhbGciOi... --audience https://api.example.com",
    "permission": "permission request email.send --scope '{\"max_emails\": 1}' --wait",
    "permission request": "permission request email.send --scope '{\"max_emails\": 1}' --wait",
    "permission status": "permission status perm_8f2c01",
    "permission list": "permission list --status pending",
    "permission approve": "permission approve perm_8f2c01 --reason 'looks right'",
    "permission deny": "permission deny perm_8f2c01 --reason 'not this week'",
    "doctor": "doctor --scope 'db:read'",
    "delegate": "delegate child-agent --capability stripe.customers.read --task task-42 --ttl 300",
    "enroll": "enroll enr_3f9a... --base-url http://127.0.0.1:8400 --save agent-credentials.json",
}


def walk(parser: argparse.ArgumentParser, path: str = "") -> Iterator[Tuple[str, argparse.ArgumentParser]]:
    """Every parser of the tree with its command path ("" for the top, "permission request"...)."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from walk(child, (path + " " + name).strip())


def add_examples(parser: argparse.ArgumentParser) -> None:
    """End every command's help with its ``Example:`` line (a command without one is a bug)."""
    for path, each in walk(parser):
        each.epilog = "Example: {} {}".format(PROG, EXAMPLES[path])
        each.formatter_class = argparse.RawDescriptionHelpFormatter
