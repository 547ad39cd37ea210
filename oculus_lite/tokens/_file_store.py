"""A token store for the processes of one host: one file per entry in a private directory.

Where: ``$XDG_RUNTIME_DIR/oculus_lite`` when that variable is set (a per-user tmpfs removed at
logout), else ``<tempdir>/oculus_lite-<uid>``, or the directory you give. The directory must be
a real directory (not a symlink), owned by this user, with no group or other permission bits;
it is created 0700 when missing and checked again on every call (each call opens it with
``O_NOFOLLOW`` and works relative to that descriptor, so swapping the path for a symlink later
does not redirect anything). Entries are opened with ``O_NOFOLLOW`` too: a symlink planted at an
entry's name is never read through nor written through (it is removed and the call goes on).

Entries, per slot (the 32 hex digits of an HMAC of the token's name, so file names reveal no
client id, scope or audience): ``<slot>.tok`` (the token), ``<slot>.cool`` (a fleet-wide
cool-down's end), ``<slot>.lease`` (the fetch lease's lock file) and ``<slot>.lock`` (the
writers' lock file). Values are written to a temporary file in the same directory, fsynced and
renamed over the entry, so readers take no lock and never see half a file. A value carries an
HMAC-SHA256 tag keyed from the client's key material with the entry's file name as associated
data: an edited, truncated or foreign value (copied from another slot or written under another
secret) is a miss and is removed, never an error.

**The token is stored in clear inside its 0600 file**: the standard library has no AES, so
here the file's permissions protect the token's secrecy and the HMAC only its integrity. Anyone
who can read this user's files (root, this user's other processes) can read the tokens. For
encryption at rest use the Redis store (``pip install oculus-lite-redis``), which seals values
with AES-GCM.

The lease is ``flock(LOCK_EX | LOCK_NB)`` on the slot's lock file, opened per attempt with
``O_CLOEXEC`` and never unlinked. The kernel drops it when its holder dies, so a crashed leader
frees the key at once; a live leader keeps it until it releases (``extend`` only reports
whether we still hold it). A forked child closes its copies of held lock descriptors, so a
lease never outlives its holder through a ``fork()``.

The remaining life of an entry is measured on the wall clock (same host, same clock). An entry
never reports more life than it was written with, and one written "in the future" (the clock
stepped back since) is a miss.

Unsupported: Windows (refused with ``ConfigurationError``) and network filesystems (NFS, CIFS,
SMB): ``flock`` there may not exclude processes on other hosts, or may always fail. Use a local
filesystem (tmpfs is best); to share tokens between hosts use the Redis store.
"""

import errno
import functools
import hashlib
import hmac
import json
import logging
import math
import os
import secrets
import stat
import sys
import tempfile
import threading
import time
import weakref
from contextlib import contextmanager
from typing import Dict, Iterator, List, Optional, Set, Tuple, Union

from ..exceptions import ConfigurationError
from ._store import SharedToken, StoreKey, ThrottledWarnings, hkdf_sha256

if sys.platform != "win32":
    import fcntl

__all__ = ["FileTokenStore", "UnsafeDirectoryError", "default_directory"]

log = logging.getLogger("oculus_lite.store")

_SALT = b"oculus-lite/file-store/v1"
_MAGIC = b"OLF1"
_TAG_LEN = 32
_MAX_FILE = 256 * 1024  # a token file is a few KiB; anything larger is not ours
_MAX_COOL_DOWN = 86400.0
_WRITE_LOCK_WAIT = 0.5  # seconds a writer waits for another writer of the same slot
_STALE_TEMP = 60.0  # temp files older than this were left by a killed writer
_WARN_EVERY = 60.0

_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)


class UnsafeDirectoryError(OSError):
    """The store's directory is a symlink, not a directory, not ours, or open to others."""


def default_directory() -> str:
    """``$XDG_RUNTIME_DIR/oculus_lite`` when that variable names an existing absolute directory
    (a session's variable can outlive its directory), else a per-user directory under the temp
    directory."""
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if runtime and os.path.isabs(runtime) and os.path.isdir(runtime):
        return os.path.join(runtime, "oculus_lite")
    return os.path.join(tempfile.gettempdir(), "oculus_lite-{}".format(os.geteuid()))


@functools.lru_cache(maxsize=64)
def _derive(material: bytes) -> Tuple[bytes, bytes]:
    """(naming key, tagging key) for one client's key material."""
    return (
        hkdf_sha256(material, salt=_SALT, info=b"name"),
        hkdf_sha256(material, salt=_SALT, info=b"tag"),
    )


def _tag(k_tag: bytes, name: str, payload: bytes) -> bytes:
    return hmac.new(k_tag, _MAGIC + name.encode("ascii") + b"\0" + payload, hashlib.sha256).digest()


def _seal(k_tag: bytes, name: str, fields: Dict[str, object]) -> bytes:
    payload = json.dumps(fields, separators=(",", ":"), sort_keys=True).encode("utf-8")
    return _MAGIC + _tag(k_tag, name, payload) + payload


def _unseal(k_tag: bytes, name: str, data: bytes) -> Optional[Dict[str, object]]:
    """The fields of a value written under ``name`` with ``k_tag``, or None."""
    head = len(_MAGIC) + _TAG_LEN
    if len(data) <= head or not data.startswith(_MAGIC):
        return None
    payload = data[head:]
    if not hmac.compare_digest(data[len(_MAGIC) : head], _tag(k_tag, name, payload)):
        return None
    try:
        fields = json.loads(payload.decode("utf-8"))
    except ValueError:
        return None
    return fields if isinstance(fields, dict) else None


def _number(value: object) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _optional_text(value: object) -> Tuple[bool, Optional[str]]:
    return (value is None or isinstance(value, str)), (value if isinstance(value, str) else None)


def _open_directory(path: str) -> int:
    """A descriptor of ``path`` after checking it is a real directory, ours, mode 0700 or
    stricter. FileNotFoundError when it is missing; UnsafeDirectoryError otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | _O_DIRECTORY | _O_NOFOLLOW | _O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UnsafeDirectoryError(
                exc.errno, "token store path {!r} is a symlink or not a directory".format(path)
            ) from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISDIR(info.st_mode):
            raise UnsafeDirectoryError(errno.ENOTDIR, "token store path {!r} is not a directory".format(path))
        if info.st_uid != os.geteuid():
            raise UnsafeDirectoryError(
                errno.EPERM,
                "token store directory {!r} is owned by uid {}, not by this user (uid {})".format(
                    path, info.st_uid, os.geteuid()
                ),
            )
        if stat.S_IMODE(info.st_mode) & 0o077:
            raise UnsafeDirectoryError(
                errno.EPERM,
                "token store directory {!r} has mode {:o}; it must be private (chmod 700)".format(
                    path, stat.S_IMODE(info.st_mode)
                ),
            )
    except BaseException:
        os.close(fd)
        raise
    return fd


def _make_directory(path: str) -> None:
    parent = os.path.dirname(path)
    if parent and not os.path.isdir(parent):
        os.makedirs(parent, mode=0o700, exist_ok=True)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        return  # another process made it; the caller checks it
    fd = _open_directory_unchecked(path)
    try:
        os.fchmod(fd, 0o700)  # the umask may have taken owner bits away
    finally:
        os.close(fd)


def _open_directory_unchecked(path: str) -> int:
    return os.open(path, os.O_RDONLY | _O_DIRECTORY | _O_NOFOLLOW | _O_CLOEXEC)


def _private_directory(path: str, create: bool) -> int:
    try:
        return _open_directory(path)
    except FileNotFoundError:
        if not create:
            raise
    _make_directory(path)
    return _open_directory(path)


_live_stores: "weakref.WeakSet[FileTokenStore]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for store in list(_live_stores):
        store._forget_locks_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class FileTokenStore:
    """Shares tokens between the processes of one host through files in a private directory.

    Args:
        path: the directory (absolute or relative to the current directory at construction).
            Default: ``$XDG_RUNTIME_DIR/oculus_lite``, else ``<tempdir>/oculus_lite-<uid>``.

    Raises ``ConfigurationError`` on Windows, and when the directory cannot be created or is
    a symlink, not owned by this user, or open to group or others (the message says which).
    See the module docstring for what is stored in clear and what is not supported.
    """

    #: Ask the client to check each token read here against the issuer's current JWKS before
    #: trusting it: the standard library has no AEAD, so this store only authenticates values
    #: with an HMAC, and a token restored from disk is re-verified rather than believed.
    verify_reads = True

    def __init__(self, path: Union[str, "os.PathLike[str]", None] = None) -> None:
        if sys.platform == "win32" or not _O_NOFOLLOW:
            raise ConfigurationError(
                "The file token store needs a POSIX system (flock, O_NOFOLLOW); on Windows use the "
                "Redis store (pip install oculus-lite-redis) or no store."
            )
        self._path = os.path.abspath(os.fspath(path)) if path is not None else default_directory()
        try:
            fd = _private_directory(self._path, create=True)
        except UnsafeDirectoryError as exc:
            raise ConfigurationError(
                "{}. Fix it, or choose another directory (OCULUS_TOKEN_STORE=file:/absolute/path).".format(
                    exc.strerror
                )
            ) from None
        except OSError as exc:
            raise ConfigurationError(
                "Cannot create the token store directory {!r}: {}. Choose another directory "
                "(OCULUS_TOKEN_STORE=file:/absolute/path).".format(self._path, exc.strerror or exc)
            ) from None
        try:
            self._sweep_temp_files(fd)
        finally:
            os.close(fd)
        self._lock = threading.Lock()
        self._leases: Dict[Tuple[str, str], int] = {}  # (slot, owner) -> locked descriptor
        self._locked_fds: Set[int] = set()  # every descriptor holding a flock right now
        self._warnings = ThrottledWarnings(log, _WARN_EVERY)
        _live_stores.add(self)

    @property
    def path(self) -> str:
        """The store's directory."""
        return self._path

    def __repr__(self) -> str:
        return "FileTokenStore(path={!r})".format(self._path)

    # -- reads -------------------------------------------------------------------------------

    def get(self, key: StoreKey) -> Optional[SharedToken]:
        slot, k_tag = self._slot(key)
        try:
            dfd = _private_directory(self._path, create=False)
        except FileNotFoundError:
            return None
        except UnsafeDirectoryError as exc:
            self._warnings.warn("file token store: directory refused, reading as a miss: %s", exc.strerror)
            return None
        try:
            found = self._load_token(dfd, slot, k_tag)
        finally:
            os.close(dfd)
        if found is None:
            return None
        token, expires_at, written_at = found
        now = time.time()
        if now < written_at:
            return None  # the wall clock stepped back: the remaining life cannot be trusted
        left = min(expires_at - now, expires_at - written_at)
        if left <= 0:
            return None
        return SharedToken(
            access_token=token.access_token,
            expires_in=left,
            token_type=token.token_type,
            scope=token.scope,
            service_token=token.service_token,
        )

    def cooling(self, key: StoreKey) -> float:
        slot, k_tag = self._slot(key)
        try:
            dfd = _private_directory(self._path, create=False)
        except FileNotFoundError:
            return 0.0
        except UnsafeDirectoryError as exc:
            self._warnings.warn(
                "file token store: directory refused, reading as no cool-down: %s", exc.strerror
            )
            return 0.0
        try:
            fields = self._read_entry(dfd, slot + ".cool", k_tag)
        finally:
            os.close(dfd)
        until = _number(fields.get("until")) if fields is not None else None
        if until is None:
            return 0.0
        return max(0.0, min(until - time.time(), _MAX_COOL_DOWN))

    # -- writes ------------------------------------------------------------------------------

    def put(self, key: StoreKey, token: SharedToken) -> None:
        life = _number(token.expires_in)
        if life is None or life <= 0:
            return
        slot, k_tag = self._slot(key)
        name = slot + ".tok"
        written_at = time.time()
        expires_at = written_at + life
        with self._directory() as dfd, self._writer_lock(dfd, slot):
            current = self._load_token(dfd, slot, k_tag)
            if current is not None and current[1] >= expires_at:
                return
            fields: Dict[str, object] = {
                "access_token": token.access_token,
                "token_type": token.token_type,
                "scope": token.scope,
                "service_token": token.service_token,
                "expires_at": expires_at,
                "written_at": written_at,
            }
            data = _seal(k_tag, name, fields)
            if len(data) <= _MAX_FILE:
                self._write(dfd, name, data)

    def invalidate(self, key: StoreKey, access_token: str) -> None:
        slot, k_tag = self._slot(key)
        with self._directory() as dfd, self._writer_lock(dfd, slot):
            current = self._load_token(dfd, slot, k_tag)
            if current is None:
                return
            if hmac.compare_digest(current[0].access_token.encode("utf-8"), access_token.encode("utf-8")):
                try:
                    os.unlink(slot + ".tok", dir_fd=dfd)
                except FileNotFoundError:
                    pass

    def cool_down(self, key: StoreKey, seconds: float) -> None:
        span = _number(seconds)
        if span is None or span <= 0:
            return
        slot, k_tag = self._slot(key)
        name = slot + ".cool"
        until = time.time() + min(span, _MAX_COOL_DOWN)
        with self._directory() as dfd:
            self._write(dfd, name, _seal(k_tag, name, {"until": until}))

    # -- the lease ---------------------------------------------------------------------------

    def acquire(self, key: StoreKey, owner: str, seconds: float) -> bool:
        slot, _ = self._slot(key)
        with self._lock:
            if (slot, owner) in self._leases:
                return True
        with self._directory() as dfd:
            fd = self._open_lock_file(dfd, slot + ".lease")
        if not self._try_flock(fd):
            return False
        if not self._still_named(fd, slot + ".lease"):
            self._unlock(fd)  # the file was removed under us: a lock on it excludes nobody
            return False
        with self._lock:
            self._leases[(slot, owner)] = fd
        return True

    def extend(self, key: StoreKey, owner: str, seconds: float) -> bool:
        """Whether ``owner`` still holds the lease (a live holder keeps it; nothing to push)."""
        slot, _ = self._slot(key)
        with self._lock:
            fd = self._leases.get((slot, owner))
        return fd is not None and self._still_named(fd, slot + ".lease")

    def release(self, key: StoreKey, owner: str) -> None:
        slot, _ = self._slot(key)
        with self._lock:
            fd = self._leases.pop((slot, owner), None)
        if fd is not None:
            self._unlock(fd)

    def close(self) -> None:
        with self._lock:
            held = list(self._leases.values())
            self._leases.clear()
        for fd in held:
            self._unlock(fd)

    # -- internals ---------------------------------------------------------------------------

    def _slot(self, key: StoreKey) -> Tuple[str, bytes]:
        k_name, k_tag = _derive(key.key_material)
        return key.slot(k_name), k_tag

    @contextmanager
    def _directory(self) -> Iterator[int]:
        dfd = _private_directory(self._path, create=True)
        try:
            yield dfd
        finally:
            os.close(dfd)

    def _load_token(self, dfd: int, slot: str, k_tag: bytes) -> Optional[Tuple[SharedToken, float, float]]:
        """The stored token, its wall-clock expiry and write time, or None (absent or unusable)."""
        fields = self._read_entry(dfd, slot + ".tok", k_tag)
        if fields is None:
            return None
        access_token = fields.get("access_token")
        token_type = fields.get("token_type")
        expires_at = _number(fields.get("expires_at"))
        written_at = _number(fields.get("written_at"))
        scope_ok, scope = _optional_text(fields.get("scope"))
        service_ok, service_token = _optional_text(fields.get("service_token"))
        if (
            not isinstance(access_token, str)
            or not access_token
            or not isinstance(token_type, str)
            or expires_at is None
            or written_at is None
            or not (scope_ok and service_ok)
        ):
            return None  # authentic but not a token entry: written by a future version
        token = SharedToken(access_token, 0.0, token_type, scope, service_token)
        return token, expires_at, written_at

    def _read_entry(self, dfd: int, name: str, k_tag: bytes) -> Optional[Dict[str, object]]:
        """The authenticated fields of entry ``name``; an unusable entry is removed."""
        try:
            fd = os.open(name, os.O_RDONLY | _O_NOFOLLOW | _O_CLOEXEC | _O_NONBLOCK, dir_fd=dfd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                self._drop_symlink(dfd, name)
                return None
            raise
        try:
            info = os.fstat(fd)
            if (
                not stat.S_ISREG(info.st_mode)
                or info.st_uid != os.geteuid()
                or stat.S_IMODE(info.st_mode) & 0o077
                or info.st_size > _MAX_FILE
            ):
                data = b""
            else:
                data = self._read_all(fd)
        finally:
            os.close(fd)
        fields = _unseal(k_tag, name, data)
        if fields is None:
            self._warnings.warn("file token store: discarded an entry that failed to authenticate (%s)", name)
            self._discard(dfd, name, info)
        return fields

    @staticmethod
    def _read_all(fd: int) -> bytes:
        chunks: List[bytes] = []
        size = 0
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > _MAX_FILE:
                return b""
            chunks.append(chunk)

    def _discard(self, dfd: int, name: str, seen: os.stat_result) -> None:
        """Remove the unusable entry we read, unless a writer is busy (it will replace it) or
        the entry is already another file."""
        slot = name.split(".", 1)[0]
        fd = self._open_lock_file(dfd, slot + ".lock")
        if not self._try_flock(fd):
            return
        try:
            now = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            if (now.st_dev, now.st_ino) == (seen.st_dev, seen.st_ino):
                os.unlink(name, dir_fd=dfd)
        except FileNotFoundError:
            pass
        finally:
            self._unlock(fd)

    def _drop_symlink(self, dfd: int, name: str) -> None:
        """A symlink at an entry's name is never followed: remove the link itself."""
        self._warnings.warn("file token store: removed a symlink planted at %s", name)
        try:
            if stat.S_ISLNK(os.stat(name, dir_fd=dfd, follow_symlinks=False).st_mode):
                os.unlink(name, dir_fd=dfd)
        except FileNotFoundError:
            pass

    def _write(self, dfd: int, name: str, data: bytes) -> None:
        """Write ``data`` to a temp file, fsync it and rename it over ``name``."""
        temp = ".{}.{}.tmp".format(name, secrets.token_hex(8))
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_CLOEXEC
        fd = os.open(temp, flags, 0o600, dir_fd=dfd)
        try:
            try:
                os.fchmod(fd, 0o600)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except BaseException:
            try:
                os.unlink(temp, dir_fd=dfd)
            except OSError:
                pass
            raise

    def _open_lock_file(self, dfd: int, name: str) -> int:
        flags = os.O_RDWR | os.O_CREAT | _O_NOFOLLOW | _O_CLOEXEC | _O_NONBLOCK
        for attempt in (1, 2):
            try:
                fd = os.open(name, flags, 0o600, dir_fd=dfd)
            except OSError as exc:
                if exc.errno != errno.ELOOP or attempt == 2:
                    raise
                self._drop_symlink(dfd, name)
                continue
            info = os.fstat(fd)
            if stat.S_ISREG(info.st_mode) and info.st_uid == os.geteuid():
                return fd
            os.close(fd)
            raise UnsafeDirectoryError(
                errno.EPERM, "token store lock file {} is not a regular file of ours".format(name)
            )
        raise AssertionError("unreachable")  # pragma: no cover

    def _try_flock(self, fd: int) -> bool:
        """Lock ``fd`` (exclusive, non-blocking); on failure the descriptor is closed."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        with self._lock:
            self._locked_fds.add(fd)
        return True

    def _unlock(self, fd: int) -> None:
        with self._lock:
            self._locked_fds.discard(fd)
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    @contextmanager
    def _writer_lock(self, dfd: int, slot: str) -> Iterator[None]:
        """Serialise the read-compare-write of one slot's writers (held for microseconds)."""
        deadline = time.monotonic() + _WRITE_LOCK_WAIT
        pause = 0.0005
        while True:
            fd = self._open_lock_file(dfd, slot + ".lock")
            if self._try_flock(fd):
                break
            if time.monotonic() >= deadline:
                raise TimeoutError("file token store: another writer held the slot's lock too long")
            time.sleep(pause)
            pause = min(pause * 2, 0.02)
        try:
            yield
        finally:
            self._unlock(fd)

    def _still_named(self, fd: int, name: str) -> bool:
        """Whether the file ``fd`` locks is still the one at ``name`` (not removed or replaced)."""
        try:
            dfd = _private_directory(self._path, create=False)
        except FileNotFoundError:
            return False
        try:
            held, named = os.fstat(fd), os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        finally:
            os.close(dfd)
        return (held.st_dev, held.st_ino) == (named.st_dev, named.st_ino)

    def _sweep_temp_files(self, dfd: int) -> None:
        """Remove temp files a killed writer left behind (never one a live writer may use)."""
        cutoff = time.time() - _STALE_TEMP
        for name in os.listdir(dfd):
            if not (name.startswith(".") and name.endswith(".tmp")):
                continue
            try:
                if os.stat(name, dir_fd=dfd, follow_symlinks=False).st_mtime < cutoff:
                    os.unlink(name, dir_fd=dfd)
            except OSError:
                pass

    def _forget_locks_after_fork(self) -> None:
        """In a forked child: close inherited lock descriptors without unlocking them, so the
        parent's locks end when the parent lets go, and the child holds no lease."""
        self._lock = threading.Lock()  # a thread of the parent may have held it at fork
        inherited = set(self._locked_fds) | set(self._leases.values())
        self._leases = {}
        self._locked_fds = set()
        for fd in inherited:
            try:
                os.close(fd)
            except OSError:
                pass
