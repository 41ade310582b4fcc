"""Exclusive locks on a path (`try_lock`, `locked`), so two invocations never work on the same thing
at once; and the atomic writes of the library (salora.files), re-exported for the runner.
"""
from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Iterator

from salora import files
from salora.files import atomic_path, unwritable, write_json, write_text

__all__ = ["atomic_path", "files", "locked", "lock_holder", "try_lock", "unlock", "unwritable", "write_json",
           "write_text"]


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
