"""Run the whole test suite on this machine: ``python3 tests/run.py``.

Installs tox if it is missing (into ``.venv-tests`` beside the repository, else for the
user), finds the Python interpreters this machine has (on PATH and under pyenv), runs every
tox env it can, and prints a line for each env it cannot run, saying why. With ``--strict``
(what ``.ci/run`` uses) a missing interpreter or tool fails the run instead.

    python3 tests/run.py                 # everything this machine can run
    python3 tests/run.py -e py311,lint   # some envs
    python3 tests/run.py --strict        # CI: every env must run and pass
    python3 tests/run.py -- -k cache     # arguments after -- go to pytest
"""

import argparse
import configparser
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parent.parent
TOX_VENV = ROOT / ".venv-tests"

#: Tools an env needs besides its interpreter; each with the way to get it.
NEEDS: Dict[str, Sequence[Tuple[str, str]]] = {
    "browser": (
        ("chromium", "apt-get install chromium"),
        ("chromedriver", "apt-get install chromium-driver"),
    ),
    "pyodide": (("npm", "install Node.js"),),
    "store-redis": (("redis-server", "apt-get install redis-server"),),
    "bench-fleet": (("redis-server", "apt-get install redis-server"),),
    "soak-fleet": (("redis-server", "apt-get install redis-server"),),
}


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parse(argv)
    _put_interpreters_on_path()
    envs = args.envs.split(",") if args.envs else _env_list()
    runnable: List[str] = []
    skipped: List[str] = []
    for env in envs:
        why = _why_not(env)
        if why is None:
            runnable.append(env)
        else:
            skipped.append(env)
            print("skipped {}: {}".format(env, why), flush=True)
    if args.strict and skipped:
        print("--strict: {} env(s) cannot run here: {}".format(len(skipped), ", ".join(skipped)), flush=True)
        return 1
    if not runnable:
        print("nothing to run", flush=True)
        return 1
    tox = _tox()
    if tox is None:
        return 1
    command = tox + ["run" if args.parallel <= 1 else "run-parallel", "-e", ",".join(runnable)]
    if args.parallel > 1:
        command += ["-p", str(args.parallel), "--parallel-no-spinner"]
    if args.pytest_args:
        command += ["--"] + args.pytest_args
    print("$ " + " ".join(command), flush=True)
    code = subprocess.call(command, cwd=str(ROOT))
    for env in skipped:  # repeated at the end, where a reader looks
        print("skipped {}: {}".format(env, _why_not(env)), flush=True)
    return code


def _parse(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python3 tests/run.py", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--strict",
        action="store_true",
        default=os.environ.get("OCULUS_TEST_STRICT") == "1",
        help="fail when an env cannot run here (missing interpreter or tool); also OCULUS_TEST_STRICT=1",
    )
    parser.add_argument("-e", dest="envs", default=None, help="comma-separated tox envs (default: env_list)")
    parser.add_argument("-p", "--parallel", type=int, default=1, help="envs run at once (default 1)")
    parser.add_argument("pytest_args", nargs="*", help="after --: passed to pytest")
    return parser.parse_args(argv)


def _env_list() -> List[str]:
    config = configparser.ConfigParser(interpolation=None)
    config.read(ROOT / "tox.ini")
    return [e.strip() for e in config.get("tox", "env_list").replace("\n", ",").split(",") if e.strip()]


def _base_python(env: str) -> str:
    if env.startswith("py") and env[2:].isdigit():
        return "python{}.{}".format(env[2], env[3:])
    config = configparser.ConfigParser(interpolation=None)
    config.read(ROOT / "tox.ini")
    section = "testenv:" + env
    if config.has_option(section, "base_python"):
        return config.get(section, "base_python").strip()
    return "python3"


def _why_not(env: str) -> Optional[str]:
    interpreter = _base_python(env)
    if shutil.which(interpreter) is None:
        return "{} not found".format(interpreter)
    for tool, how in NEEDS.get(env, ()):
        if shutil.which(tool) is None:
            return "{} not found ({})".format(tool, how)
    return None


def _put_interpreters_on_path() -> None:
    """Add pyenv's interpreters (3.11 first, so it stays the one tox runs on) to PATH."""
    root = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    try:
        root = (
            subprocess.run(["pyenv", "root"], capture_output=True, text=True, check=True).stdout.strip()
            or root
        )
    except (OSError, subprocess.CalledProcessError):
        pass
    versions = Path(root) / "versions"
    found: List[str] = []
    for minor in (11, 8, 9, 10, 12, 13):
        for directory in sorted(versions.glob("3.{}.*/bin".format(minor))):
            if (directory / "python3.{}".format(minor)).exists():
                found.append(str(directory))
    if found:
        os.environ["PATH"] = os.pathsep.join(found + [os.environ.get("PATH", "")])


def _tox() -> Optional[List[str]]:
    """A command that runs tox >= 4.11, installing it when needed."""
    for python in (sys.executable, str(TOX_VENV / "bin" / "python")):
        if Path(python).exists() and _has_tox(python):
            return [python, "-m", "tox"]
    print("tox is not installed: installing it into {}".format(TOX_VENV), flush=True)
    try:
        venv.EnvBuilder(with_pip=True, clear=True).create(str(TOX_VENV))
        python = str(TOX_VENV / "bin" / "python")
        subprocess.check_call([python, "-m", "pip", "install", "--quiet", "tox>=4.11"])
        return [python, "-m", "tox"]
    except (OSError, subprocess.CalledProcessError) as exc:
        print("could not create a virtual environment ({}); trying pip --user".format(exc), flush=True)
    try:
        subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", "--user", "tox>=4.11"])
        return [sys.executable, "-m", "tox"]
    except (OSError, subprocess.CalledProcessError):
        print("could not install tox: install it yourself (python3 -m pip install 'tox>=4.11')", flush=True)
        return None


def _has_tox(python: str) -> bool:
    probe = (
        "import tox, sys; v = tuple(int(x) for x in tox.__version__.split('.')[:2]); sys.exit(v < (4, 11))"
    )
    return subprocess.call([python, "-c", probe], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) == 0


if __name__ == "__main__":
    sys.exit(main())
