"""Atomic writes: write to a temporary file beside the target, fsync, then rename over it.

A crash or a concurrent writer never leaves a half-written JSON/YAML/CSV/PNG behind. A write that
fails (full disk, unwritable folder) becomes a SaloraError naming the file; what was there before
stays as it was.

Also exclusive locks on a path (`try_lock`, `locked`), so two invocations never work on the same
thing at once.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import tempfile
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Iterator

from salora_cli.errors import SaloraError


def unwritable(path: str | os.PathLike, exc: OSError) -> SaloraError:
    """The one-line error for a failed write: the path and the reason (e.g. no space left)."""
    return SaloraError(f"cannot write {path}: {exc.strerror or exc}; files written before it are kept")


@contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto `target` on success."""
    target = Path(target)
    tmp_path = _reserve(target)
    try:
        yield tmp_path
        _commit(tmp_path, target)
    except OSError as exc:
        raise unwritable(target, exc) from exc
    except Exception as exc:
        # torch.save and safetensors report a full disk as their own errors, not OSError
        if not _disk_full(target.parent):
            raise
        raise unwritable(target, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))) from exc
    finally:
        with suppress(OSError):  # an unwritable folder may refuse this too
            tmp_path.unlink(missing_ok=True)


def _disk_full(folder: Path) -> bool:
    """No room left for this user (under 1 MiB, or no free inodes) on `folder`'s filesystem."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 2**20 or st.f_favail == 0


def _reserve(target: Path) -> Path:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise unwritable(target, exc) from exc
    os.close(fd)
    return Path(tmp)


def _commit(tmp: Path, target: Path) -> None:
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are meant to be shared
    os.replace(tmp, target)


def write_text(target: str | os.PathLike, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(target: str | os.PathLike, obj: Any) -> None:
    write_text(target, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    # numpy / torch scalars and paths show up in metrics and configs
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


# ------------------------------------------------------------------ locks
def try_lock(path: str | os.PathLike, wait: bool = False) -> int | None:
    """Hold the exclusive lock at `path`: its file descriptor, or None if another process holds it
    (with `wait`: block until it is free). The kernel drops the lock when its holder exits, however
    it dies, so a killed invocation never leaves a stale lock. The holder's pid is written inside."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        if _still_at(fd, path):
            break
        os.close(fd)  # the holder released (unlinked) it between our open and our lock: retry
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _still_at(fd: int, path: Path) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def unlock(path: str | os.PathLike, fd: int) -> None:
    """Release a lock from `try_lock`: the file goes first, while it is still held, so no one locks it."""
    with suppress(FileNotFoundError):
        os.unlink(path)
    os.close(fd)


def lock_holder(path: str | os.PathLike) -> str:
    """The pid written in a held lock, for messages ('?' if unreadable)."""
    try:
        return Path(path).read_text().strip() or "?"
    except OSError:
        return "?"


@contextmanager
def locked(path: str | os.PathLike, on_wait=None) -> Iterator[None]:
    """Hold the lock at `path` for the block, waiting for it if need be (`on_wait(pid)` is told)."""
    fd = try_lock(path)
    if fd is None:
        if on_wait is not None:
            on_wait(lock_holder(path))
        fd = try_lock(path, wait=True)
    try:
        yield
    finally:
        unlock(path, fd)
