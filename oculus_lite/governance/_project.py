"""The project file: custom capabilities declared beside the agent's code.

Found only where the user points: an explicit ``path`` (a file, or a directory holding one of
``oculus.json``, ``oculus.toml``, ``oculus.yaml``/``oculus.yml``), else the ``OCULUS_CONFIG``
environment variable (same rules). Never looked up silently in the working directory (the
official SDK reads ``./oculus.yaml``, so what an agent may do changed with ``cd``).

Formats: JSON always; TOML where ``tomllib`` exists (3.11+); YAML only when PyYAML is
importable (a ``.yaml`` file without it is an error, never skipped). Content::

    {"custom_capabilities": {"reports.generate": {"description": "..."}}}

(a list of names is accepted too). A missing or malformed file raises ``ProjectFileError``
saying which file and what is wrong.
"""

import json
import os
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Dict, List, Mapping, Optional, Union

from ..exceptions import CapabilityMapError, ProjectFileError
from ._capability_map import freeze_metadata

__all__ = ["CONFIG_ENV", "FILE_NAMES", "ProjectFile", "find_project_file", "load_project_file"]

CONFIG_ENV = "OCULUS_CONFIG"
FILE_NAMES = ("oculus.json", "oculus.toml", "oculus.yaml", "oculus.yml")
_MAX_BYTES = 1 << 20

PathLike = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class ProjectFile:
    """What a project file declares."""

    path: Optional[str] = None
    custom_capabilities: Mapping[str, Mapping[str, object]] = field(
        default_factory=lambda: MappingProxyType({})
    )


def find_project_file(
    path: Optional[PathLike] = None, *, environ: Optional[Mapping[str, str]] = None
) -> Optional[str]:
    """The project file to read: ``path``, else ``$OCULUS_CONFIG``; None when neither is set.

    A directory is searched for exactly one of ``FILE_NAMES``.
    """
    env = os.environ if environ is None else environ
    if path is not None:
        where, origin = os.fspath(path), "path"
    elif env.get(CONFIG_ENV):
        where, origin = env[CONFIG_ENV], CONFIG_ENV
    else:
        return None
    where = os.path.abspath(os.path.expanduser(where))
    if os.path.isdir(where):
        found = [
            os.path.join(where, name) for name in FILE_NAMES if os.path.isfile(os.path.join(where, name))
        ]
        if not found:
            raise ProjectFileError(
                "{} points at the directory {} but it holds none of {}".format(
                    origin, where, ", ".join(FILE_NAMES)
                ),
                path=where,
            )
        if len(found) > 1:
            raise ProjectFileError(
                "{} holds several project files ({}); keep one".format(
                    where, ", ".join(os.path.basename(f) for f in found)
                ),
                path=where,
            )
        return found[0]
    if not os.path.isfile(where):
        raise ProjectFileError("{} names {}, which does not exist".format(origin, where), path=where)
    return where


def load_project_file(
    path: Optional[PathLike] = None, *, environ: Optional[Mapping[str, str]] = None
) -> ProjectFile:
    """Read the project file ``find_project_file`` picks; an empty ``ProjectFile`` when none is set."""
    where = find_project_file(path, environ=environ)
    if where is None:
        return ProjectFile()
    try:
        with open(where, "rb") as handle:
            raw = handle.read(_MAX_BYTES + 1)
    except OSError as exc:
        raise ProjectFileError("cannot read {}: {}".format(where, exc.strerror or exc), path=where) from exc
    if len(raw) > _MAX_BYTES:
        raise ProjectFileError("{} is larger than {} bytes".format(where, _MAX_BYTES), path=where)
    data = _parse(where, raw)
    return ProjectFile(where, _custom_capabilities(where, data))


def _parse(where: str, raw: bytes) -> object:
    suffix = os.path.splitext(where)[1].lower()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProjectFileError("{} is not UTF-8 text".format(where), path=where) from exc
    if suffix == ".toml":
        try:
            import tomllib
        except ImportError:  # < 3.11
            raise ProjectFileError(
                "{}: TOML needs Python 3.11+ (tomllib); use oculus.json instead".format(where), path=where
            ) from None
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ProjectFileError("{} is not valid TOML: {}".format(where, exc), path=where) from exc
    if suffix in (".yaml", ".yml"):
        try:
            import yaml  # type: ignore[import-untyped,import-not-found,unused-ignore]  # optional
        except ImportError:
            raise ProjectFileError(
                "{}: reading YAML needs PyYAML (pip install pyyaml); or use oculus.json".format(where),
                path=where,
            ) from None
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ProjectFileError(
                "{} is not valid YAML: {}".format(where, type(exc).__name__), path=where
            ) from exc
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ProjectFileError("{} is not valid JSON: {}".format(where, exc), path=where) from exc


def _custom_capabilities(where: str, data: object) -> Mapping[str, Mapping[str, object]]:
    if data is None:
        return MappingProxyType({})
    if not isinstance(data, Mapping):
        raise ProjectFileError("{} must hold an object at the top level".format(where), path=where)
    declared = data.get("custom_capabilities", {})
    entries: Dict[str, object]
    if isinstance(declared, Mapping):
        entries = dict(declared)
    elif isinstance(declared, list):
        bad = [name for name in declared if not isinstance(name, str)]
        if bad:
            raise ProjectFileError(
                "{}: custom_capabilities lists {!r}, which is not a capability name".format(where, bad[0]),
                path=where,
            )
        entries = {name: {} for name in declared}
    else:
        raise ProjectFileError(
            "{}: custom_capabilities must be an object of name -> metadata or a list of names".format(where),
            path=where,
        )
    parsed: Dict[str, Mapping[str, object]] = {}
    problems: List[str] = []
    for name, meta in entries.items():
        if not isinstance(name, str) or not name or name != name.strip() or any(c.isspace() for c in name):
            problems.append("{!r} is not a capability name".format(name))
            continue
        if meta is None:
            meta = {}
        if not isinstance(meta, Mapping):
            problems.append("{} must map to an object of metadata".format(name))
            continue
        try:
            frozen = freeze_metadata(meta, "custom_capabilities." + name)
        except CapabilityMapError as exc:
            problems.append(exc.path + ": " + exc.message.split(": ", 1)[-1])
            continue
        assert isinstance(frozen, Mapping)
        parsed[name] = frozen
    if problems:
        raise ProjectFileError("{}: {}".format(where, "; ".join(problems)), path=where)
    return MappingProxyType(parsed)
