"""What a forked child must redo: locks another thread held at fork time stay locked there,
threads do not exist, flights led by parent threads never finish. Objects register a method
to run in the child; they are held weakly, so registering keeps nothing alive."""

import logging
import os
import threading
import weakref
from typing import Any, Callable, List, Tuple, TypeVar

__all__ = ["after_fork_in_child"]

log = logging.getLogger("oculus_lite")

_O = TypeVar("_O")

_hooks: List[Tuple["weakref.ref[Any]", Callable[[Any], None]]] = []
_hooks_lock = threading.Lock()


def after_fork_in_child(obj: _O, method: Callable[[_O], None]) -> None:
    """Call ``method(obj)`` in every child forked from now on, while ``obj`` is alive."""
    with _hooks_lock:
        _hooks[:] = [(ref, fn) for ref, fn in _hooks if ref() is not None]
        _hooks.append((weakref.ref(obj), method))


def _in_child() -> None:
    global _hooks_lock
    _hooks_lock = threading.Lock()  # the parent may have held it while forking
    for ref, method in list(_hooks):
        obj = ref()
        if obj is None:
            continue
        try:
            method(obj)
        except Exception:  # one broken object must not break the others
            log.exception("resetting %s after fork failed", type(obj).__name__)


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_in_child)
