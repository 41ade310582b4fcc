"""Task modules. A task is a `tasks.base.Task` subclass registered by name; `get(name)` finds it."""
from __future__ import annotations

import importlib

from tasks.base import Task, degenerate_flag, register, registered, registered_names

BUILTIN = ("tasks.glue", "tasks.style", "tasks.style_classifier", "tasks.instruct", "tasks.own_data")  # importing one registers its tasks

__all__ = ["Task", "degenerate_flag", "get", "register", "task_names"]


def _load_builtin() -> None:
    for module in BUILTIN:
        importlib.import_module(module)


def task_names() -> list[str]:
    _load_builtin()
    return registered_names()


def get(name: str) -> Task:
    """A new instance of the task called `name` (e.g. "glue/sst2")."""
    _load_builtin()
    return registered(name)
