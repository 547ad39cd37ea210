"""The project file: found at an explicit path or $OCULUS_CONFIG, never silently in the working
directory; JSON always, TOML where tomllib exists, YAML only with PyYAML; malformed files raise
ProjectFileError (official flaw C11: oculus.yaml was CWD-relative and skipped silently)."""

import json
import sys

import pytest

from oculus_lite.exceptions import ProjectFileError
from oculus_lite.governance._project import find_project_file, load_project_file

GOOD = {"custom_capabilities": {"reports.generate": {"description": "monthly"}, "notes.write": None}}


def write(path, data):
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def test_explicit_file_and_directory(tmp_path):
    file = write(tmp_path / "oculus.json", GOOD)
    loaded = load_project_file(file)
    assert loaded.path == str(file)
    assert set(loaded.custom_capabilities) == {"reports.generate", "notes.write"}
    assert loaded.custom_capabilities["reports.generate"]["description"] == "monthly"
    assert load_project_file(tmp_path).path == str(file)
    assert load_project_file(str(tmp_path)).path == str(file)


def test_environment_variable(tmp_path, monkeypatch):
    file = write(tmp_path / "oculus.json", GOOD)
    monkeypatch.setenv("OCULUS_CONFIG", str(file))
    assert load_project_file().path == str(file)
    assert load_project_file(environ={"OCULUS_CONFIG": str(tmp_path)}).path == str(file)


def test_never_read_from_the_working_directory(tmp_path, monkeypatch):
    """Official flaw C11: ./oculus.yaml was read from the current directory."""
    write(tmp_path / "oculus.json", GOOD)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OCULUS_CONFIG", raising=False)
    assert find_project_file() is None
    assert load_project_file().custom_capabilities == {}


def test_list_form(tmp_path):
    file = write(tmp_path / "oculus.json", {"custom_capabilities": ["a.b", "c:d"], "other_tool": {"x": 1}})
    assert set(load_project_file(file).custom_capabilities) == {"a.b", "c:d"}


@pytest.mark.parametrize(
    "content, fragment",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "top level"),
        ({"custom_capabilities": "a.b"}, "custom_capabilities must be"),
        ({"custom_capabilities": ["a.b", 3]}, "not a capability name"),
        ({"custom_capabilities": {"has space": {}}}, "not a capability name"),
        ({"custom_capabilities": {"a.b": "desc"}}, "must map to an object"),
    ],
)
def test_malformed_files_raise(tmp_path, content, fragment):
    file = write(tmp_path / "oculus.json", content)
    with pytest.raises(ProjectFileError) as raised:
        load_project_file(file)
    assert fragment in str(raised.value) and raised.value.path == str(file)


def test_missing_and_ambiguous_locations(tmp_path):
    with pytest.raises(ProjectFileError, match="does not exist"):
        load_project_file(tmp_path / "nope.json")
    with pytest.raises(ProjectFileError, match="holds none of"):
        load_project_file(tmp_path)
    write(tmp_path / "oculus.json", GOOD)
    write(tmp_path / "oculus.yaml", "custom_capabilities: {}")
    with pytest.raises(ProjectFileError, match="several project files"):
        load_project_file(tmp_path)
    with pytest.raises(ProjectFileError, match="does not exist"):
        load_project_file(environ={"OCULUS_CONFIG": str(tmp_path / "missing.json")})


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib arrived in 3.11")
def test_toml(tmp_path):
    file = write(
        tmp_path / "oculus.toml", '[custom_capabilities."reports.generate"]\ndescription = "monthly"\n'
    )
    assert load_project_file(file).custom_capabilities["reports.generate"]["description"] == "monthly"
    write(file, "[custom_capabilities\n")
    with pytest.raises(ProjectFileError, match="not valid TOML"):
        load_project_file(file)


@pytest.mark.skipif(sys.version_info >= (3, 11), reason="only interpreters without tomllib")
def test_toml_without_tomllib_is_an_error(tmp_path):  # pragma: no cover - runs on 3.8-3.10
    file = write(tmp_path / "oculus.toml", "x = 1\n")
    with pytest.raises(ProjectFileError, match="tomllib"):
        load_project_file(file)


def test_yaml_with_pyyaml(tmp_path):
    pytest.importorskip("yaml")
    file = write(
        tmp_path / "oculus.yaml", "custom_capabilities:\n  reports.generate:\n    description: monthly\n"
    )
    assert set(load_project_file(file).custom_capabilities) == {"reports.generate"}
    write(file, "custom_capabilities: [unclosed\n")
    with pytest.raises(ProjectFileError, match="not valid YAML"):
        load_project_file(file)


def test_yaml_without_pyyaml_is_an_error_not_a_silent_skip(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "yaml", None)  # makes `import yaml` raise ImportError
    file = write(tmp_path / "oculus.yml", "custom_capabilities: {}\n")
    with pytest.raises(ProjectFileError, match="PyYAML"):
        load_project_file(file)
