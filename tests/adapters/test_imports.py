"""The adapter modules without their frameworks: they import with the standard library only,
keep the official names and positional orders, and building an adapter object says which
package to install. Runs everywhere (no framework needed); the subprocesses run with ``-S``, so
the frameworks are out of reach even where a tox env installed them."""

import ast
import inspect
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import oculus_lite
from oculus_lite import Client
from oculus_lite.crewai import OculusCrew
from oculus_lite.langchain import OculusLangChain
from oculus_lite.openai import OculusOpenAI

PACKAGE_DIR = Path(oculus_lite.__file__).resolve().parent
FRAMEWORKS = ("langchain", "langchain_core", "crewai", "openai")

_PROBE = """
import sys
sys.path.insert(0, sys.argv[1])
import oculus_lite.{module} as adapter
from oculus_lite.{module} import {cls}
client = {cls}("agent-x", "secret-x", "http://127.0.0.1:9", revocation_interval=None)
for build in ({builds}):
    try:
        build()
    except ImportError as exc:
        print("ImportError:", exc)
    else:
        print("built without the framework")
client.stop()
loaded = sorted(m.split(".")[0] for m in sys.modules)
print("loaded:", ",".join(sorted(set(loaded))))
"""

CASES = {
    "langchain": (
        "OculusLangChain",
        "lambda: client.callback_handler, lambda: client.wrap_tools([]), "
        "lambda: getattr(adapter, 'OculusCallbackHandler')",
        "pip install langchain-core",
    ),
    "crewai": (
        "OculusCrew",
        "lambda: client.wrap_tool(len, 'a.b'), lambda: client.wrap_crew(object())",
        "pip install crewai",
    ),
    "openai": ("OculusOpenAI", "lambda: client.openai,", "pip install openai"),
}


@pytest.fixture(scope="module")
def alone(tmp_path_factory):
    """A copy of the package in a folder of its own (its installed folder, site-packages in a
    tox env, would put the frameworks back in reach)."""
    folder = tmp_path_factory.mktemp("alone")
    shutil.copytree(PACKAGE_DIR, folder / "oculus_lite", ignore=shutil.ignore_patterns("__pycache__"))
    return folder


@pytest.mark.parametrize("module", sorted(CASES))
def test_importing_an_adapter_needs_no_framework_and_building_one_names_the_package(alone, module):
    cls, builds, hint = CASES[module]
    code = _PROBE.format(module=module, cls=cls, builds=builds)
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code, str(alone)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    errors = [line for line in lines if line.startswith(("ImportError", "built"))]
    assert errors and all(line.startswith("ImportError:") and hint in line for line in errors), lines
    loaded = set(lines[-1][len("loaded: ") :].split(","))
    assert not loaded & set(FRAMEWORKS)
    if sys.version_info >= (3, 10):
        third_party = loaded - set(sys.stdlib_module_names) - {"oculus_lite", "__main__"}
        assert not third_party


def test_framework_imports_sit_inside_functions_only():
    """What the repository's hook checks: no framework import at module level in oculus_lite/."""
    offenders = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        inside = {id(n) for f in functions for n in ast.walk(f)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            if any(name.split(".")[0] in FRAMEWORKS for name in names) and id(node) not in inside:
                offenders.append("{}:{}".format(path.relative_to(PACKAGE_DIR), node.lineno))
    assert offenders == []


def parameters(fn):
    return list(inspect.signature(fn).parameters)


def test_official_names_and_positional_orders():
    for cls in (OculusLangChain, OculusCrew, OculusOpenAI):
        assert issubclass(cls, Client)
    assert parameters(OculusLangChain.wrap_tools)[:3] == ["self", "tool_functions", "callbacks"]
    assert inspect.signature(OculusLangChain.wrap_tools).parameters["callbacks"].default is None
    assert isinstance(inspect.getattr_static(OculusLangChain, "callback_handler"), property)
    assert parameters(OculusCrew.wrap_tool)[:3] == ["self", "tool_fn", "capability"]
    assert parameters(OculusCrew.wrap_crew)[:2] == ["self", "crew"]
    assert isinstance(inspect.getattr_static(OculusOpenAI, "openai"), property)
    assert parameters(OculusOpenAI.register_function)[:3] == ["self", "name", "capability"]
    assert parameters(OculusOpenAI.set_last_assistant_message)[:2] == ["self", "message"]
    assert parameters(OculusOpenAI.execute_tool_call) == ["self", "tool_call", "registry"]
    assert parameters(OculusOpenAI.execute_tool_calls) == ["self", "tool_calls", "registry"]
    import oculus_lite.langchain as langchain_module

    assert "OculusCallbackHandler" in langchain_module.__all__
