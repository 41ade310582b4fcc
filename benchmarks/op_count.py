"""Count the ATen ops one call makes, with torch.profiler: a deterministic measure of per-step
overhead, unaffected by machine load (wall-clock timings on a shared CPU are not) and, counted on
one thread, by the machine's core count.

Two counts per call:
- `ops`: every `aten::` event, nested ones included (what the dispatcher handles on the CPU);
- `kernels`: the innermost ops that compute something: an op that is neither a view (as_strided,
  view, transpose, ...) nor a bare allocation (empty, ...) and has no such op inside it. On a GPU each of these is
  about one kernel launch, so this count predicts the launch-bound cost of a small-batch step.
"""
from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass

import torch
from torch.profiler import ProfilerActivity, profile

# metadata-only ops: no kernel on a GPU
NO_KERNEL = frozenset(f"aten::{n}" for n in (
    "as_strided", "view", "_unsafe_view", "_reshape_alias", "reshape", "transpose", "t", "numpy_T",
    "permute", "expand", "select", "slice", "narrow", "unsqueeze", "squeeze", "split", "split_with_sizes",
    "unbind", "detach", "detach_", "alias", "resolve_conj", "resolve_neg", "lift_fresh", "result_type",
    "empty", "empty_strided", "empty_like", "new_empty_strided", "new_empty", "resize_", "to",
    "contiguous", "chunk", "expand_as", "view_as", "unflatten", "flatten"))


@dataclass(frozen=True)
class OpCount:
    ops: int
    kernels: int


def count_ops(fn) -> OpCount:
    """Run `fn()` once under the profiler, on one CPU thread, and count its ATen ops.

    One thread because the count should not depend on the machine: with more than one, the CPU's
    `cat` copies each input of unequal size through a view of the output (narrow, slice,
    as_strided: 3 ops, no kernel), so SaLoRA's stacks after removal counted ~450 ops more on 2
    threads (8,090 against 7,640 on the short case) with the same kernels. A GPU's cat is one kernel
    either way."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with _no_native_stderr(), profile(activities=[ProfilerActivity.CPU]) as prof:
            fn()
    finally:
        torch.set_num_threads(threads)
    aten = [e for e in prof.events() if e.name.startswith("aten::")]
    return OpCount(ops=len(aten), kernels=sum(_is_kernel(e) for e in aten))


def _computes(event) -> bool:
    """Whether `event` or an op inside it computes something."""
    return any(_is_kernel(c) or _computes(c) for c in event.cpu_children if c.name.startswith("aten::"))


def _is_kernel(event) -> bool:
    """A computing op with no computing op inside it (e.g. mm, not the linear around it)."""
    return event.name not in NO_KERNEL and not _computes(event)


@contextlib.contextmanager
def _no_native_stderr():
    """The profiler's C++ side prints a start and a stop line to stderr (fd 2) each time, which
    would bury the bench's table; Python's own stderr is kept."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
