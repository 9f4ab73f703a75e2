"""Checks on child processes, shared by the subprocess and reliability tests."""

from __future__ import annotations

import os
import signal

import pytest


def assert_reaped(pid: int) -> None:
    """*pid* is neither running nor a zombie child of ours (kill it if running)."""
    try:
        result = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return
    if result == (0, 0):
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail(f"child {pid} still running")
    pytest.fail(f"child {pid} was a zombie")
