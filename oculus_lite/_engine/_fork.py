"""What a forked child must redo: locks another thread held at fork time stay locked there,
threads do not exist, flights led by parent threads never finish. Objects register a method
to run in the child; they are held weakly, so registering keeps nothing alive."""

import itertools
import logging
import os
import weakref
from typing import Any, Callable, Dict, Tuple, TypeVar

__all__ = ["after_fork_in_child"]

log = logging.getLogger("oculus_lite")

_O = TypeVar("_O")

# Keyed by a counter; each entry removes itself when its object is collected, so registering
# costs the same however many objects are alive (clients register a few each).
_hooks: Dict[int, Tuple["weakref.ref[Any]", Callable[[Any], None]]] = {}
_next_key = itertools.count()


def after_fork_in_child(obj: _O, method: Callable[[_O], None]) -> None:
    """Call ``method(obj)`` in every child forked from now on, while ``obj`` is alive."""
    key = next(_next_key)  # atomic under the GIL

    def forget(_: "weakref.ref[Any]", key: int = key) -> None:
        _hooks.pop(key, None)  # a single dict operation: safe from a GC callback, no lock

    _hooks[key] = (weakref.ref(obj, forget), method)


def _in_child() -> None:
    for ref, method in list(_hooks.values()):
        obj = ref()
        if obj is None:
            continue
        try:
            method(obj)
        except Exception:  # one broken object must not break the others
            log.exception("resetting %s after fork failed", type(obj).__name__)


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_in_child)
