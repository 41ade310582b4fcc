"""Tasks: data, models and metrics, nothing about the method. The pieces every family shares live at this
level (base.py: the Task class and the registry; models.py, metrics.py, prompts.py, generation.py,
tables.py, utf8.py); the tasks themselves by family below it: classification/ (GLUE, your own files),
style/ (Yelp, GYAFC, the style classifier), instruct/ (Alpaca instruction tuning, zero-shot transfer).
A task is a `tasks.base.Task` subclass registered by name; `get(name)` finds it, importing the built-in
task modules named in BUILTIN (by name, so this level imports no family)."""
from __future__ import annotations

import importlib

from tasks.base import Task, degenerate_flag, register, registered, registered_names

# importing one registers its tasks
BUILTIN = ("tasks.classification.glue", "tasks.style.style", "tasks.style.style_classifier", "tasks.instruct.instruct",
           "tasks.classification.own_data")

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
