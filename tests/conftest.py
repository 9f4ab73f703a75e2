"""Shared fixtures: run the same asyncio scenario on several loops."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from _drivers import EVERY_DRIVER, LOOP_RUNNERS, run_on_trio_asyncio

# Every test fails if it leaks fds, threads, loops, tasks or process state
# (tests/_leak_guard.py; opt out with @pytest.mark.allow_leaks).
pytest_plugins = ["_leak_guard"]


@pytest.fixture(params=sorted(LOOP_RUNNERS))
def aio_run(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """``aio_run(coro_fn, *args)`` runs on each loop kind in turn (differential tests)."""
    return LOOP_RUNNERS[request.param]


@pytest.fixture(params=sorted(EVERY_DRIVER))
def aio_run_every_driver(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """Like ``aio_run``, but also on our sync-mode loop."""
    return EVERY_DRIVER[request.param]


@pytest.fixture
def trio_aio_run() -> Callable[..., Any]:
    """``trio_aio_run(coro_fn, *args)`` runs on our loop only."""
    return run_on_trio_asyncio
