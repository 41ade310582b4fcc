"""Test-only kill points, so fault-injection tests can SIGKILL a run at an exact place.

SALORA_FAULT="<point>[:<n>][@<rank>]" kills this process with SIGKILL the n-th time (default 1st)
the code reaches <point>, or, for points that pass a number (after_step passes the step), when
that number is n. "@<rank>" limits it to one process of a multi-process launch ($RANK).

Points: after_step (a step done and logged), removal (components just removed, not yet saved),
checkpoint_write (half of checkpoints/last written), <folder>_swap (run_dir.replace_folder between
moving the old folder aside and putting the new one in place, e.g. last_swap, best_swap), eval.

The variable is read once at import; unset, `reached` is one comparison with None.
"""
from __future__ import annotations

import os
import signal


def _parse(spec: str) -> tuple[str | None, int, int | None]:
    if not spec:
        return None, 1, None
    spec, _, rank = spec.partition("@")
    point, _, n = spec.partition(":")
    return point, int(n or 1), int(rank) if rank else None


_POINT, _N, _RANK = _parse(os.environ.get("SALORA_FAULT", ""))
_seen: dict[str, int] = {}


def reached(point: str, number: int | None = None) -> None:
    """Kill this process if SALORA_FAULT names this point (and count or number) and this rank."""
    if point != _POINT:
        return
    if _RANK is not None and int(os.environ.get("RANK", "0")) != _RANK:
        return
    if number is None:
        _seen[point] = number = _seen.get(point, 0) + 1
    if number == _N:
        os.kill(os.getpid(), signal.SIGKILL)
