"""The file token store: the TokenStore contract, then what only files can get wrong —
permissions, ownership, symlinks, half-written files, crashed lease holders, fork — with real
processes (subprocesses killed with SIGKILL) and no mocks."""

import os
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Dict, Iterator, List

import pytest

from oculus_lite.exceptions import ConfigurationError
from oculus_lite.tokens import _file_store
from oculus_lite.tokens._file_store import FileTokenStore, UnsafeDirectoryError, default_directory
from oculus_lite.tokens._store import SharedToken

from ._contract import CLIENT_ID, SCOPE, SECRET, StoreContract, make_key, token

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="the file store is POSIX only")

ROOT = Path(__file__).resolve().parents[2]
_IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    return tmp_path / "tokens"


@pytest.fixture
def store(store_dir: Path) -> Iterator[FileTokenStore]:
    made = FileTokenStore(store_dir)
    yield made
    made.close()


@pytest.fixture
def other_store(store_dir: Path, store: FileTokenStore) -> Iterator[FileTokenStore]:
    made = FileTokenStore(store_dir)
    yield made
    made.close()


class TestFileStoreContract(StoreContract):
    pass


def _entries(directory: Path) -> Dict[str, Path]:
    """Entries by suffix (tok, cool, lease, lock) for a store holding one slot."""
    found: Dict[str, Path] = {}
    for path in directory.iterdir():
        if not path.name.startswith("."):
            found[path.name.rsplit(".", 1)[1]] = path
    return found


def _python(script: str, *args: str) -> "subprocess.Popen[str]":
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
    )


_CHILD_PRELUDE = """
import os, sys, time
from oculus_lite.tokens import _file_store
from oculus_lite.tokens._file_store import FileTokenStore
from oculus_lite.tokens._store import SharedToken, StoreKey, key_material_for
key = StoreKey.build("https://issuer.example/oauth/token", "agent-canary-client", "canary:scope",
                     "https://canary-audience.example", key_material_for("canary-S3CRET-7f3a9c"))
store = FileTokenStore(sys.argv[1])
"""


# -- where, and with which permissions --------------------------------------------------------


def test_directory_is_0700_and_every_file_0600_even_with_an_open_umask(store_dir: Path) -> None:
    old = os.umask(0)
    try:
        store = FileTokenStore(store_dir)
        key = make_key()
        store.put(key, token("a"))
        store.cool_down(key, 30)
        assert store.acquire(key, "me", 10)
        store.release(key, "me")
        store.close()
    finally:
        os.umask(old)
    assert stat.S_IMODE(store_dir.stat().st_mode) == 0o700
    entries = _entries(store_dir)
    assert set(entries) == {"tok", "cool", "lease", "lock"}
    for path in entries.values():
        info = path.lstat()
        assert stat.S_ISREG(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600, path.name


def test_file_names_reveal_no_client_id_scope_or_audience(store: FileTokenStore, store_dir: Path) -> None:
    store.put(make_key(), token("a"))
    store.cool_down(make_key(), 30)
    names = " ".join(path.name for path in store_dir.iterdir())
    for clear in (CLIENT_ID, SCOPE, "canary", "audience", "issuer"):
        assert clear not in names
    content = b"".join(path.read_bytes() for path in store_dir.iterdir())
    # the token itself is in its 0600 file in clear (documented); what named it is not
    for clear in (CLIENT_ID, SECRET, "canary-audience", "issuer.example"):
        assert clear.encode() not in content


def test_default_directory_is_under_xdg_runtime_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    store = FileTokenStore()
    assert store.path == str(runtime / "oculus_lite") == default_directory()
    assert stat.S_IMODE((runtime / "oculus_lite").stat().st_mode) == 0o700


def test_default_directory_without_xdg_is_private_per_user_under_temp(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    store = FileTokenStore()
    assert store.path == str(tmp_path / "oculus_lite-{}".format(os.geteuid()))
    monkeypatch.setenv("XDG_RUNTIME_DIR", "relative/run")  # not absolute: ignored
    assert default_directory() == store.path
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "gone"))  # left over from a closed session
    assert default_directory() == store.path


def test_a_loose_directory_is_refused(store_dir: Path) -> None:
    store_dir.mkdir(mode=0o700)
    store_dir.chmod(0o755)
    with pytest.raises(ConfigurationError, match="mode 755.*chmod 700"):
        FileTokenStore(store_dir)


@pytest.mark.skipif(not _IS_ROOT, reason="giving a directory to another user needs root")
def test_a_directory_of_another_user_is_refused(store_dir: Path) -> None:
    store_dir.mkdir(mode=0o700)
    os.chown(store_dir, 54321, -1)
    with pytest.raises(ConfigurationError, match="owned by uid 54321"):
        FileTokenStore(store_dir)


def test_a_symlinked_directory_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(ConfigurationError, match="symlink"):
        FileTokenStore(link)


def test_a_directory_that_changes_later_reads_as_a_miss_and_refuses_writes(
    store: FileTokenStore, store_dir: Path, tmp_path: Path
) -> None:
    key = make_key()
    store.put(key, token("a"))
    store_dir.chmod(0o755)
    assert store.get(key) is None
    assert store.cooling(key) == 0.0
    with pytest.raises(UnsafeDirectoryError):
        store.put(key, token("b"))
    with pytest.raises(UnsafeDirectoryError):
        store.acquire(key, "me", 10)
    store_dir.chmod(0o700)
    got = store.get(key)
    assert got is not None and got.access_token == "canary.token.a"

    # swapped for a symlink to a directory that would pass every other check
    moved = tmp_path / "moved"
    store_dir.rename(moved)
    store_dir.symlink_to(moved)
    assert store.get(key) is None
    with pytest.raises(UnsafeDirectoryError):
        store.put(key, token("c"))


@pytest.mark.skipif(not _IS_ROOT, reason="giving files to another user needs root")
def test_entries_of_another_user_are_misses(store: FileTokenStore, store_dir: Path) -> None:
    key = make_key()
    store.put(key, token("a"))
    os.chown(_entries(store_dir)["tok"], 54321, -1)
    assert store.get(key) is None


def test_a_deleted_directory_is_a_miss_then_made_again(store: FileTokenStore, store_dir: Path) -> None:
    key = make_key()
    store.put(key, token("a"))
    for path in store_dir.iterdir():
        path.unlink()
    store_dir.rmdir()
    assert store.get(key) is None
    store.put(key, token("b"))
    assert stat.S_IMODE(store_dir.stat().st_mode) == 0o700
    got = store.get(key)
    assert got is not None and got.access_token == "canary.token.b"


def test_windows_is_refused_with_a_clear_error(monkeypatch: pytest.MonkeyPatch, store_dir: Path) -> None:
    monkeypatch.setattr(sys, "platform", "win32")
    with pytest.raises(ConfigurationError, match="POSIX.*Redis store"):
        FileTokenStore(store_dir)


# -- symlinks planted at entries ---------------------------------------------------------------


def test_a_symlink_at_the_token_path_is_never_read_through(
    store: FileTokenStore, store_dir: Path, tmp_path: Path
) -> None:
    key = make_key()
    store.put(key, token("real"))
    tok = _entries(store_dir)["tok"]
    target = tmp_path / "target"
    target.write_bytes(tok.read_bytes())  # a valid value: following the link would accept it
    tok.unlink()
    tok.symlink_to(target)
    before = target.read_bytes()
    assert store.get(key) is None
    assert not tok.is_symlink()  # the planted link was removed, its target kept
    tok.symlink_to(target)
    store.put(key, token("new"))  # renamed over the link: never written through it
    assert target.read_bytes() == before
    assert not tok.is_symlink()
    got = store.get(key)
    assert got is not None and got.access_token == "canary.token.new"


@pytest.mark.parametrize("entry", ["lease", "lock", "cool"])
def test_a_symlink_at_a_lock_or_cool_path_is_never_written_through(
    store: FileTokenStore, store_dir: Path, tmp_path: Path, entry: str
) -> None:
    key = make_key()
    store.put(key, token("a"))
    store.cool_down(key, 10)
    assert store.acquire(key, "me", 10)
    store.release(key, "me")
    path = _entries(store_dir)[entry]
    target = tmp_path / "target"
    target.write_bytes(b"precious")
    target.chmod(0o644)
    path.unlink()
    path.symlink_to(target)

    assert store.acquire(key, "me", 10)
    store.release(key, "me")
    store.put(key, token("b", life=120))
    store.cool_down(key, 20)
    assert 0 < store.cooling(key) <= 20
    assert target.read_bytes() == b"precious" and stat.S_IMODE(target.stat().st_mode) == 0o644
    assert not path.is_symlink()


def test_a_fifo_at_the_token_path_is_a_miss_not_a_hang(store: FileTokenStore, store_dir: Path) -> None:
    key = make_key()
    store.put(key, token("a"))
    tok = _entries(store_dir)["tok"]
    tok.unlink()
    os.mkfifo(tok, 0o600)
    assert store.get(key) is None
    assert not tok.exists()


# -- values that do not authenticate ----------------------------------------------------------


def _put_two(store: FileTokenStore, store_dir: Path) -> Dict[str, bytes]:
    """Put tokens under two keys; the value bytes of each, by scope."""
    values: Dict[str, bytes] = {}
    for scope in ("db:read", "db:write"):
        before = {p.name for p in store_dir.iterdir()} if store_dir.exists() else set()
        store.put(make_key(scope), token(scope))
        (name,) = [n for n in (p.name for p in store_dir.iterdir()) if n not in before and n.endswith(".tok")]
        values[scope] = (store_dir / name).read_bytes()
        values[scope + "/name"] = name.encode()
    return values


@pytest.mark.parametrize(
    "damage", ["garbage", "truncated", "edited", "empty", "swapped", "other-secret", "cool"]
)
def test_a_value_that_does_not_authenticate_is_a_miss_and_is_removed(
    store: FileTokenStore, store_dir: Path, damage: str
) -> None:
    values = _put_two(store, store_dir)
    path = store_dir / values["db:read/name"].decode()
    good = values["db:read"]
    if damage == "garbage":
        path.write_bytes(b"not a token file at all")
    elif damage == "truncated":
        path.write_bytes(good[:-1])
    elif damage == "edited":  # a later expiry written into the JSON
        path.write_bytes(good.replace(b'"expires_at":', b'"expires_at":9'))
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "swapped":  # a valid value of another slot
        path.write_bytes(values["db:write"])
    elif damage == "other-secret":  # a valid value written under another client secret
        store.put(make_key("db:read", secret="another-secret"), token("foreign"))
        foreign = [
            p
            for p in store_dir.iterdir()
            if p.name.endswith(".tok") and p.read_bytes() not in values.values()
        ]
        path.write_bytes(foreign[0].read_bytes())
    else:  # the slot's own cool-down file copied over its token
        store.cool_down(make_key("db:read"), 30)
        path.write_bytes(_entries_named(store_dir, path.name.replace(".tok", ".cool")))
    path.chmod(0o600)
    assert store.get(make_key("db:read")) is None
    assert not path.exists()
    got = store.get(make_key("db:write"))  # the neighbour is untouched
    assert got is not None and got.access_token == "canary.token.db:write"
    store.put(make_key("db:read"), token("healed"))
    got = store.get(make_key("db:read"))
    assert got is not None and got.access_token == "canary.token.healed"


def _entries_named(directory: Path, name: str) -> bytes:
    return (directory / name).read_bytes()


class _WallClock:
    """The file store's view of ``time``, with a wall clock the test sets."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.monotonic = time.monotonic
        self.sleep = time.sleep

    def time(self) -> float:
        return self.now


def test_remaining_life_follows_the_wall_clock_and_distrusts_a_step_back(
    monkeypatch: pytest.MonkeyPatch, store: FileTokenStore
) -> None:
    clock = _WallClock(1_000_000.0)
    monkeypatch.setattr(_file_store, "time", clock)
    store.put(make_key(), token("a", life=60))
    clock.now += 10
    got = store.get(make_key())
    assert got is not None and got.expires_in == 50
    clock.now += 50
    assert store.get(make_key()) is None  # expired
    clock.now -= 70  # stepped back to before the write: the entry's age is unknown
    assert store.get(make_key()) is None
    store.cool_down(make_key(), 30)
    clock.now += 12
    assert store.cooling(make_key()) == 18
    clock.now += 18
    assert store.cooling(make_key()) == 0.0


def test_a_lease_file_removed_under_its_holder_is_a_lost_lease(
    store: FileTokenStore, other_store: FileTokenStore, store_dir: Path
) -> None:
    key = make_key()
    assert store.acquire(key, "first", 10)
    assert store.extend(key, "first", 10)
    _entries(store_dir)["lease"].unlink()  # e.g. a temp cleaner
    assert not store.extend(key, "first", 10)  # it says so: our lock excludes nobody now
    assert other_store.acquire(key, "second", 10)
    store.release(key, "first")
    assert other_store.extend(key, "second", 10)
    other_store.release(key, "second")


# -- processes: half-written files, crashed holders, exclusion, fork --------------------------


def test_a_writer_killed_between_write_and_rename_leaves_the_old_value(
    store: FileTokenStore, store_dir: Path
) -> None:
    key = make_key()
    store.put(key, token("old", life=60))
    child = _python(
        _CHILD_PRELUDE
        + """
def stuck(*args, **kwargs):
    print("written", flush=True)
    time.sleep(600)
os.replace = stuck
store.put(key, SharedToken("canary.token.new" + "x" * 20000, 600))
""",
        str(store_dir),
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "written"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
        if child.stdout:
            child.stdout.close()
    left = [p for p in store_dir.iterdir() if p.name.endswith(".tmp")]
    assert len(left) == 1 and left[0].stat().st_size > 20000  # killed after writing, before renaming
    got = store.get(key)
    assert got is not None and got.access_token == "canary.token.old"

    os.utime(left[0], (1, 1))  # an old leftover is swept by the next store opened on the directory
    FileTokenStore(store_dir).close()
    assert not left[0].exists()


def test_a_reader_never_sees_a_partial_file(store: FileTokenStore, store_dir: Path) -> None:
    """A writer process replaces the value 300 times with sizes from 1 to 40 KB while this
    process reads without locking: every read is a whole, authentic token."""
    key = make_key()
    child = _python(
        _CHILD_PRELUDE
        + """
for i in range(300):
    store.put(key, SharedToken("%d:" % i + "x" * (1 + (i * 7919) % 40000), 100 + i))
    if i == 0:
        print("first", flush=True)
print("done", flush=True)
""",
        str(store_dir),
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "first"
    seen: List[int] = []
    done = threading.Event()

    def wait_for_writer() -> None:
        assert child.stdout is not None
        child.stdout.readline()
        done.set()

    waiter = threading.Thread(target=wait_for_writer)
    waiter.start()
    try:
        while not done.is_set() or len(seen) < 5:
            got = store.get(key)
            assert got is not None  # the file is always there, whole
            index, _, filler = got.access_token.partition(":")
            assert len(filler) == 1 + (int(index) * 7919) % 40000
            seen.append(int(index))
    finally:
        waiter.join(60)
        child.wait(60)
        child.stdout.close()
    assert child.returncode == 0
    assert seen == sorted(seen)  # put keeps the longer-lived: a reader never goes back
    got = store.get(key)
    assert got is not None and got.access_token.startswith("299:")


def test_the_lease_is_freed_when_its_holder_crashes(store: FileTokenStore, store_dir: Path) -> None:
    key = make_key()
    child = _python(
        _CHILD_PRELUDE
        + """
print("held" if store.acquire(key, "child", 5) else "busy", flush=True)
time.sleep(600)
""",
        str(store_dir),
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        assert not store.acquire(key, "parent", 5)  # two processes cannot both hold it
        assert not store.extend(key, "parent", 5)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
        if child.stdout:
            child.stdout.close()
    assert store.acquire(key, "parent", 5)  # the kernel dropped the dead holder's lock
    store.release(key, "parent")


def test_processes_holding_the_lease_never_overlap(store_dir: Path) -> None:
    """msal-extensions' oracle: each holder appends '<pid' then '>pid' to a log under the lease;
    brackets from four processes never interleave."""
    FileTokenStore(store_dir).close()
    log = store_dir.parent / "brackets.log"
    script = (
        _CHILD_PRELUDE
        + """
log = sys.argv[2]
held = attempts = 0
while held < 25 and attempts < 2000000:
    attempts += 1
    if store.acquire(key, "p%d" % os.getpid(), 5):
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.write(fd, b"<%d\\n" % os.getpid())
        os.write(fd, b">%d\\n" % os.getpid())
        os.close(fd)
        store.release(key, "p%d" % os.getpid())
        held += 1
print(held, flush=True)
"""
    )
    children = [_python(script, str(store_dir), str(log)) for _ in range(4)]
    for child in children:
        out, _ = child.communicate(timeout=300)
        assert child.returncode == 0 and out.strip() == "25"
    lines = log.read_text().split()
    assert len(lines) == 4 * 25 * 2
    for opening, closing in zip(lines[::2], lines[1::2]):
        assert opening[0] == "<" and closing == ">" + opening[1:]


def test_a_forked_child_neither_holds_nor_frees_the_parents_lease(
    store: FileTokenStore, store_dir: Path
) -> None:
    key = make_key()
    assert store.acquire(key, "parent", 10)
    report_read, report_write = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with other threads alive
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(report_read)
            held = store.extend(key, "parent", 10)
            store.release(key, "parent")
            store.close()
            os.write(report_write, b"held" if held else b"free")
        finally:
            os._exit(0)
    os.close(report_write)
    try:
        assert os.read(report_read, 16) == b"free"  # the child did not think it held the lease
    finally:
        os.close(report_read)
        os.waitpid(pid, 0)
    other = FileTokenStore(store_dir)
    try:
        assert not other.acquire(key, "other", 10)  # the child's release/close did not free ours
        store.release(key, "parent")
        assert other.acquire(key, "other", 10)
    finally:
        other.close()


def test_a_crashed_holders_forked_child_does_not_keep_the_lease(
    store: FileTokenStore, store_dir: Path
) -> None:
    """gunicorn's shape: the holder forks a worker, then dies; the living worker must not pin
    the lease through its inherited descriptor."""
    key = make_key()
    holder = _python(
        _CHILD_PRELUDE
        + """
assert store.acquire(key, "holder", 5)
pid = os.fork()
if pid == 0:
    os.write(1, b"worker %d\\n" % os.getpid())  # one write: the two processes share the pipe
    time.sleep(600)
    os._exit(0)
os.write(1, b"held\\n")
time.sleep(600)
""",
        str(store_dir),
    )
    worker = 0
    try:
        assert holder.stdout is not None
        lines = {holder.stdout.readline().strip() for _ in range(2)}
        (worker_line,) = [line for line in lines if line.startswith("worker ")]
        worker = int(worker_line.split()[1])
        assert "held" in lines
        assert not store.acquire(key, "parent", 5)
        holder.send_signal(signal.SIGKILL)
        holder.wait(30)
        assert store.acquire(key, "parent", 5)  # the worker is alive, the lease is free
        store.release(key, "parent")
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(30)
        if worker:
            os.kill(worker, signal.SIGKILL)
        if holder.stdout:
            holder.stdout.close()


def test_close_releases_every_lease(store: FileTokenStore, other_store: FileTokenStore) -> None:
    assert store.acquire(make_key("a"), "me", 10)
    assert store.acquire(make_key("b"), "me", 10)
    store.close()
    assert other_store.acquire(make_key("a"), "you", 10)
    assert other_store.acquire(make_key("b"), "you", 10)


def test_a_stored_token_keeps_its_scope_and_service_token(store: FileTokenStore) -> None:
    store.put(make_key(), SharedToken("t", 30, token_type="DPoP", scope=None, service_token=None))
    got = store.get(make_key())
    assert got is not None and (got.token_type, got.scope, got.service_token) == ("DPoP", None, None)


def test_store_warnings_are_throttled_and_counted(caplog):
    """A store failing on every call logs one warning a minute, then says how many it held back."""
    import logging

    from oculus_lite.store import ThrottledWarnings

    now = [1000.0]
    warnings = ThrottledWarnings(logging.getLogger("oculus_lite.store"), 60.0, clock=lambda: now[0])
    caplog.set_level(logging.DEBUG, logger="oculus_lite.store")
    for n in range(3):
        warnings.warn("store refused: %s", n)
    now[0] += 60.0
    warnings.warn("store refused: %s", 3)
    seen = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert seen == [
        (logging.WARNING, "store refused: 0"),
        (logging.DEBUG, "store refused: 1"),
        (logging.DEBUG, "store refused: 2"),
        (logging.WARNING, "store refused: 3 (2 similar messages suppressed)"),
    ]
