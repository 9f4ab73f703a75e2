"""A legacy asyncio program that uses a Trio library through ``trio_as_aio``.

The program is asyncio from top to bottom and starts the usual way, with
``loop.run_until_complete()`` or ``asyncio.run()``; the only change is that
its loop comes from trio-asyncio. Its coroutines call a small Trio library
(nurseries, a capacity limiter, worker threads, an async generator) as if it
were asyncio code.

Run it with ``python examples/legacy_asyncio_calls_trio.py`` (the
``run_until_complete`` style) or add ``--asyncio-run``.
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
from collections.abc import AsyncIterator

import trio

import trio_asyncio
from trio_asyncio import trio_as_aio

# ---- a Trio library -----------------------------------------------------------------


async def trio_checksums(blobs: dict[str, bytes], max_parallel: int = 2) -> dict[str, str]:
    """Hash every blob in a worker thread, at most *max_parallel* at a time."""
    limiter = trio.CapacityLimiter(max_parallel)
    digests: dict[str, str] = {}

    async def one(name: str, data: bytes) -> None:
        digest = await trio.to_thread.run_sync(hashlib.sha256, data, limiter=limiter)
        digests[name] = digest.hexdigest()[:12]

    async with trio.open_nursery() as nursery:
        for name, data in blobs.items():
            nursery.start_soon(one, name, data)
    return digests


async def trio_countdown(start: int) -> AsyncIterator[int]:
    """A Trio async generator."""
    for n in range(start, 0, -1):
        await trio.sleep(0.01)
        yield n


# Used as a decorator, trio_as_aio makes a Trio function directly awaitable
# from asyncio code.
@trio_as_aio
async def trio_wait_forever() -> None:
    await trio.sleep_forever()


# ---- the legacy asyncio program ----------------------------------------------------


async def main() -> None:
    blobs = {f"blob-{i}": bytes([i]) * 100_000 for i in range(4)}
    digests = await trio_as_aio(trio_checksums)(blobs)
    for name in sorted(digests):
        print(f"checksum {name}: {digests[name]}")

    async for n in trio_as_aio(trio_countdown(3)):
        print(f"countdown {n}")

    # asyncio cancellation reaches the Trio task: wait_for cancels it.
    try:
        await asyncio.wait_for(trio_wait_forever(), timeout=0.1)
    except asyncio.TimeoutError:
        print("timeout: asyncio.wait_for cancelled the Trio task")

    # Plain asyncio keeps working as before, of course.
    results = await asyncio.gather(*(asyncio.sleep(0.01, result=i) for i in range(3)))
    print(f"asyncio.gather: {results}")
    print(f"loop: {type(asyncio.get_running_loop()).__name__}")


if __name__ == "__main__":
    if "--asyncio-run" in sys.argv:
        if sys.version_info >= (3, 12):
            asyncio.run(main(), loop_factory=trio_asyncio.new_event_loop)
        else:
            # Python 3.10 and 3.11: importing trio_asyncio installed an event
            # loop policy, so asyncio.run() creates a trio-asyncio loop.
            asyncio.run(main())
    else:
        loop = trio_asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(main())
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            asyncio.set_event_loop(None)
            loop.close()
    print("done")
