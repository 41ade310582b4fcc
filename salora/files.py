"""Atomic writes: write to a temporary file beside the target, fsync, then rename over it.

A crash or a concurrent writer never leaves a half-written file behind. A write that fails (full
disk, unwritable folder) becomes a SaloraError naming the file; what was there before stays as it
was. The runner (salora_cli) writes every result file through these too.
"""
from __future__ import annotations

import errno
import json
import os
import tempfile
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Iterator

from salora.errors import SaloraError


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
