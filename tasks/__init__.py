"""Task modules. A task is one object implementing `tasks.base.Task`; `get(name)` finds it."""
from __future__ import annotations

from tasks.base import Task, degenerate_flag, get, register, task_names

__all__ = ["Task", "degenerate_flag", "get", "register", "task_names"]
