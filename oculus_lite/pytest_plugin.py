"""pytest plugin (entry point ``pytest11``): the ``oculus_emulator`` fixture.

Lets users' own test suites run their agents against a local token service.
pytest is imported only when pytest itself loads this module through its entry
point, and only inside ``pytest_configure``: the package stays standard-library
only, and nothing heavy loads until a test asks for the fixture.
"""

from typing import Any, Iterator

__all__ = ["pytest_configure"]


def pytest_configure(config: Any) -> None:
    import pytest

    class _Fixtures:
        @pytest.fixture
        def oculus_emulator(self) -> Iterator[Any]:
            """A started ``oculus_lite.emulator.Emulator`` on 127.0.0.1, stopped after the test."""
            from .emulator import Emulator

            with Emulator() as emu:
                yield emu

    if not config.pluginmanager.has_plugin("oculus_lite.fixtures"):
        config.pluginmanager.register(_Fixtures(), "oculus_lite.fixtures")
