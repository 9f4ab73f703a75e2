"""Subprocesses: subprocess_exec, subprocess_shell, with child reaping that needs no asyncio child watcher."""

from __future__ import annotations


class SubprocessMixin:
    """Mixin of BaseTrioEventLoop (to be implemented)."""
