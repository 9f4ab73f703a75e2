"""Shared fixtures: run the same asyncio scenario on several loops."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio

import trio_asyncio

# Every test fails if it leaks fds, threads, loops, tasks or process state
# (tests/_leak_guard.py; opt out with @pytest.mark.allow_leaks).
pytest_plugins = ["_leak_guard"]


def run_on_trio_asyncio(fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    """Run asyncio coroutine function *fn* on our loop, inside trio.run + open_loop."""

    async def main() -> Any:
        async with trio_asyncio.open_loop():
            return await trio_asyncio.aio_as_trio(fn)(*args)

    return trio.run(main)


def run_on_stdlib(fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    """Run *fn* on a plain stdlib selector loop (the reference behaviour)."""
    loop = asyncio.SelectorEventLoop()
    try:
        return loop.run_until_complete(fn(*args))
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def run_on_sync_loop(fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    """Run *fn* on our sync-mode loop (``run_until_complete``, no Trio around)."""
    loop = trio_asyncio.new_event_loop()
    try:
        return loop.run_until_complete(fn(*args))
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


#: Every loop kind: the stdlib reference and both of our drivers.
EVERY_DRIVER = {
    "stdlib": run_on_stdlib,
    "trio_asyncio": run_on_trio_asyncio,
    "sync": run_on_sync_loop,
}

LOOP_RUNNERS = {
    "trio_asyncio": run_on_trio_asyncio,
    "stdlib": run_on_stdlib,
}


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
