"""A store named by a string (``OCULUS_TOKEN_STORE``) or by the official SDK's switch
(``OCULUS_LAMBDA_CACHE``): the accepted forms and the errors that say what to fix."""

import sys
from pathlib import Path

import pytest

from oculus_lite.exceptions import ConfigurationError
from oculus_lite.tokens._file_store import FileTokenStore
from oculus_lite.tokens._store import TokenStore
from oculus_lite.tokens._store_spec import open_store, store_from_environment

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="the file store is POSIX only")

PASSWORD = "pa55-canary-in-url"


@pytest.fixture(autouse=True)
def _runtime_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    return runtime


def test_file_names_the_default_directory(_runtime_dir: Path) -> None:
    store = open_store("file:")
    assert isinstance(store, FileTokenStore) and isinstance(store, TokenStore)
    assert store.path == str(_runtime_dir / "oculus_lite")


@pytest.mark.parametrize("form", ["file:{}", "file://{}", " FILE:{} "])
def test_file_with_an_absolute_path(tmp_path: Path, form: str) -> None:
    store = open_store(form.format(tmp_path / "tokens"))
    assert isinstance(store, FileTokenStore) and store.path == str(tmp_path / "tokens")


@pytest.mark.parametrize("spec", ["file:relative/dir", "file:./tokens", "file:~/tokens"])
def test_a_relative_file_path_is_refused(spec: str) -> None:
    with pytest.raises(ConfigurationError, match="absolute path"):
        open_store(spec)


def test_a_file_url_with_a_host_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="no host"):
        open_store("file://server/share/tokens")


@pytest.mark.parametrize(
    "spec",
    [
        "memcached://user:{}@cache:11211".format(PASSWORD),
        "/tmp/tokens",
        "",
        "redis",
        "valkey://:{}@cache:6379".format(PASSWORD),
        "{}:{}@host".format(PASSWORD, PASSWORD),
    ],
)
def test_anything_else_lists_the_accepted_forms_without_repeating_it(spec: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        open_store(spec)
    message = str(caught.value)
    assert "file:, file:/absolute/path, redis://..., rediss://..." in message
    assert PASSWORD not in message


def test_an_unsafe_file_directory_is_refused(tmp_path: Path) -> None:
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o700)
    loose.chmod(0o777)
    with pytest.raises(ConfigurationError, match="chmod 700"):
        open_store("file:{}".format(loose))


@pytest.mark.parametrize("scheme", ["redis", "rediss"])
def test_redis_without_the_plugin_names_the_package_to_install(
    monkeypatch: pytest.MonkeyPatch, scheme: str
) -> None:
    monkeypatch.setitem(sys.modules, "oculus_lite_redis", None)  # as if not installed
    with pytest.raises(ConfigurationError, match="pip install oculus-lite-redis") as caught:
        open_store("{}://fleet:{}@127.0.0.1:6379/0".format(scheme, PASSWORD))
    assert PASSWORD not in str(caught.value)


def test_the_environment_without_a_store_gives_none() -> None:
    assert store_from_environment({}) is None
    assert store_from_environment({"OCULUS_TOKEN_STORE": "  ", "OCULUS_LAMBDA_CACHE": "false"}) is None
    assert store_from_environment({"OCULUS_LAMBDA_CACHE": "1"}) is None  # the official switch is "true"


@pytest.mark.parametrize("value", ["true", "TRUE", "True", " true "])
def test_the_lambda_cache_switch_selects_the_file_store(_runtime_dir: Path, value: str) -> None:
    store = store_from_environment({"OCULUS_LAMBDA_CACHE": value})
    assert isinstance(store, FileTokenStore) and store.path == str(_runtime_dir / "oculus_lite")


def test_oculus_token_store_wins_over_the_lambda_switch(tmp_path: Path) -> None:
    store = store_from_environment(
        {"OCULUS_TOKEN_STORE": "file:{}".format(tmp_path / "x"), "OCULUS_LAMBDA_CACHE": "true"}
    )
    assert isinstance(store, FileTokenStore) and store.path == str(tmp_path / "x")


def test_the_environment_error_names_the_variable() -> None:
    with pytest.raises(ConfigurationError, match="^OCULUS_TOKEN_STORE"):
        store_from_environment({"OCULUS_TOKEN_STORE": "file:relative"})


def test_os_environ_is_the_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OCULUS_TOKEN_STORE", "file:{}".format(tmp_path / "env"))
    store = store_from_environment()
    assert isinstance(store, FileTokenStore) and store.path == str(tmp_path / "env")
    monkeypatch.delenv("OCULUS_TOKEN_STORE")
    monkeypatch.delenv("OCULUS_LAMBDA_CACHE", raising=False)
    assert store_from_environment() is None
