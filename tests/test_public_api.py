"""The public surface, the zero-dependency rule, and vendoring."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import oculus_lite

PACKAGE_DIR = Path(oculus_lite.__file__).resolve().parent


def test_all_is_sorted_and_every_name_resolves():
    assert oculus_lite.__all__ == sorted(oculus_lite.__all__)
    for name in oculus_lite.__all__:
        assert getattr(oculus_lite, name) is not None, name
    assert "Client" in dir(oculus_lite)


def test_type_checkers_see_every_public_name():
    """The TYPE_CHECKING re-exports and the lazy table list the same names, from the same modules."""
    import ast

    tree = ast.parse((PACKAGE_DIR / "__init__.py").read_text(encoding="utf-8"))
    typed = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            for alias in node.names:
                if alias.asname == alias.name and alias.name != "__version__":
                    typed[alias.name] = node.module
    lazy = dict(oculus_lite._WHERE)
    assert typed == lazy


def test_seed_names_are_exported():
    names = set(oculus_lite.__all__)
    for name in (
        "OculusClient",
        "Client",
        "OculusAuthError",
        "OculusAPIError",
        "TokenRevokedException",
        "AgentOTPClient",
        "AsyncAgentOTPClient",
        "AgentOTPError",
        "AuthenticationError",
        "ValidationError",
        "RateLimitError",
        "NetworkError",
        "PermissionRequest",
        "PermissionResponse",
        "PermissionStatus",
    ):
        assert name in names, name
    from oculus_lite import exceptions

    for name in ("OculusAuthError", "OculusAPIError", "TokenRevokedException", "ConfigurationError"):
        assert getattr(exceptions, name) is getattr(oculus_lite, name)


def test_importing_everything_loads_only_the_standard_library():
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import oculus_lite\n"
        "for name in oculus_lite.__all__: getattr(oculus_lite, name)\n"
        "import oculus_lite.emulator, oculus_lite.jwt, oculus_lite.verify._revocation, oculus_lite.cli\n"
        "std = set(sys.stdlib_module_names) | {'__main__', '__mp_main__'}\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] not in std and m.split('.')[0] != 'oculus_lite')\n"
        "print(','.join(bad))\n"
    )
    if sys.version_info < (3, 10):
        pytest.skip("sys.stdlib_module_names arrived in 3.10; the 3.10+ runs cover this")
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code, str(PACKAGE_DIR.parent)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def test_import_is_lazy():
    code = "import sys, oculus_lite; print(sorted(m for m in sys.modules if m.startswith('oculus_lite')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['oculus_lite', 'oculus_lite._version']"


def test_vendored_zip_works_under_isolated_mode(tmp_path, emulator):
    vendored = tmp_path / "vendor" / "oculus_lite"
    shutil.copytree(str(PACKAGE_DIR), str(vendored), ignore=shutil.ignore_patterns("__pycache__"))
    archive = tmp_path / "vendored.zip"
    with zipfile.ZipFile(str(archive), "w") as zf:
        for path in sorted(vendored.rglob("*")):
            zf.write(str(path), str(path.relative_to(vendored.parent)))
    code = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "from oculus_lite import Client\n"
        "import oculus_lite\n"
        "assert oculus_lite.__file__.startswith(sys.argv[1]), oculus_lite.__file__\n"
        "with Client(sys.argv[2], sys.argv[3], sys.argv[4], revocation_interval=None) as c:\n"
        "    print(c.get_token('db:read').count('.'))\n"
    )
    env = {"PATH": os.environ.get("PATH", "")}
    out = subprocess.run(
        [
            sys.executable,
            "-I",
            "-S",
            "-c",
            code,
            str(archive),
            emulator.demo_client_id,
            emulator.demo_client_secret,
            emulator.url,
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(tmp_path),
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "2"
    assert emulator.stats()["token_requests"] == 1


def test_installed_distribution_has_no_runtime_dependencies():
    try:
        from importlib import metadata
    except ImportError:  # pragma: no cover
        pytest.skip("importlib.metadata unavailable")
    try:
        requires = metadata.requires("oculus-lite")
    except metadata.PackageNotFoundError:
        pytest.skip("running from a source tree, not an installed distribution")
    assert not [r for r in (requires or []) if "extra ==" not in r]
    assert (PACKAGE_DIR / "py.typed").is_file()
