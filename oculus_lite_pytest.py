"""pytest plugin (entry point ``pytest11``): the ``oculus_emulator`` fixture.

Lets users' own test suites run their agents against a local token service.
It lives beside the package, not in it, because it imports pytest and
``oculus_lite/`` imports only the standard library. Nothing heavy is imported
when pytest loads the plugin; the emulator loads inside the fixture.
"""

from typing import Any, Iterator

import pytest

__all__ = ["oculus_emulator"]


@pytest.fixture
def oculus_emulator() -> Iterator[Any]:
    """A started ``oculus_lite.emulator.Emulator`` on 127.0.0.1, stopped after the test."""
    from oculus_lite.emulator._emulator import Emulator

    with Emulator() as emu:
        yield emu
