"""The loop drivers tests run scenarios on: the stdlib's and both of ours.

A module of its own (not conftest.py) so that test modules can import it:
several conftest modules share that name.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import trio

import trio_asyncio


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
