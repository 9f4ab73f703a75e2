"""CPU-bound loop workloads, cross-call workloads and the sync-mode workload.

Every workload takes a size and returns the seconds its timed part took
(see :mod:`benchmarks._timing`); setup and teardown are not timed. They use
only the public asyncio API, so the same code runs on every loop.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ._registry import workload
from ._timing import start, stop

_CROSSCALL_LOOPS = ("trio_asyncio", "trio_asyncio_sync")


async def _noop() -> None:
    pass


def _noop_sync() -> None:
    pass


# ---- callbacks ------------------------------------------------------------------


@workload(group="core", size=200_000, quick_size=20_000, unit="call")
async def call_soon_chained(n: int) -> float:
    """call_soon chained: each callback schedules the next one."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    remaining = n
    call_soon = loop.call_soon

    def step() -> None:
        nonlocal remaining
        remaining -= 1
        if remaining:
            call_soon(step)
        else:
            done.set_result(None)

    started = start()
    call_soon(step)
    await done
    return stop(started)


@workload(group="core", size=200_000, quick_size=20_000, unit="call")
async def call_soon_batched(n: int) -> float:
    """call_soon batched: N callbacks scheduled at once, the last resolves a future."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    call_soon = loop.call_soon
    started = start()
    for _ in range(n - 1):
        call_soon(_noop_sync)
    call_soon(done.set_result, None)
    await done
    return stop(started)


@workload(group="core", size=100_000, quick_size=10_000, unit="timer")
async def timers(n: int) -> float:
    """call_later with delays of 0-4 ms, half of them cancelled; until the rest fired."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    # A fixed, well-mixed sequence of delays (0 to 3.996 ms), so that the
    # timers are not scheduled in deadline order.
    delays = [((i * 7919) % 1000) * 4e-6 for i in range(max(n, 2))]
    remaining = len(delays) - len(delays[1::2])

    def fire() -> None:
        nonlocal remaining
        remaining -= 1
        if not remaining:
            done.set_result(None)

    call_later = loop.call_later
    started = start()
    handles = [call_later(delay, fire) for delay in delays]
    for handle in handles[1::2]:
        handle.cancel()
    await done
    return stop(started)


# ---- tasks and futures ------------------------------------------------------------


@workload(group="core", size=100_000, quick_size=10_000, unit="switch")
async def sleep0(n: int) -> float:
    """asyncio.sleep(0) in a loop, in one task."""
    sleep = asyncio.sleep
    started = start()
    for _ in range(n):
        await sleep(0)
    return stop(started)


@workload(group="core", size=100_000, quick_size=10_000, unit="switch")
async def sleep0_10_tasks(n: int) -> float:
    """asyncio.sleep(0) in ten tasks at once (N switches in all)."""
    sleep = asyncio.sleep

    async def switcher(count: int) -> None:
        for _ in range(count):
            await sleep(0)

    shares = _split(n, 10)
    started = start()
    await asyncio.gather(*[switcher(count) for count in shares])
    return stop(started)


@workload(group="core", size=50_000, quick_size=5_000, unit="round trip")
async def future_pingpong(n: int) -> float:
    """Two tasks hand a future back and forth (one round trip = two wake-ups)."""
    loop = asyncio.get_running_loop()
    # court[0] wakes the main task, court[1] the other one; each side
    # replaces its own future before waking the other side.
    court = [loop.create_future(), loop.create_future()]

    async def other_side() -> None:
        for _ in range(n):
            await court[1]
            court[1] = loop.create_future()
            court[0].set_result(None)

    started = start()
    task = loop.create_task(other_side())
    for _ in range(n):
        court[1].set_result(None)
        await court[0]
        court[0] = loop.create_future()
    await task
    return stop(started)


@workload(group="core", size=50_000, quick_size=5_000, unit="task")
async def gather_spawn(n: int) -> float:
    """asyncio.gather() over N new tasks of a coroutine that returns at once."""
    started = start()
    await asyncio.gather(*[_noop() for _ in range(n)])
    return stop(started)


@workload(group="core", size=5_000, quick_size=500, unit="call")
async def run_in_executor(n: int) -> float:
    """Round trips through the default executor: await loop.run_in_executor(None, noop)."""
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, _noop_sync)  # start a worker thread first
    started = start()
    for _ in range(n):
        await loop.run_in_executor(None, _noop_sync)
    return stop(started)


# ---- cross-calls ------------------------------------------------------------------


@workload(group="crosscall", size=50_000, quick_size=5_000, unit="call")
async def task_roundtrip(n: int) -> float:
    """Baseline for the cross-calls: await loop.create_task(noop()) from asyncio."""
    loop = asyncio.get_running_loop()
    create_task = loop.create_task
    started = start()
    for _ in range(n):
        await create_task(_noop())
    return stop(started)


@workload(
    group="crosscall",
    kind="trio",
    size=20_000,
    quick_size=2_000,
    unit="call",
    loops=_CROSSCALL_LOOPS,
    baseline="task_roundtrip",
)
async def aio_as_trio_call(n: int) -> float:
    """From Trio: await aio_as_trio(noop_aio)()."""
    import trio_asyncio

    call = trio_asyncio.aio_as_trio(_noop)
    started = start()
    for _ in range(n):
        await call()
    return stop(started)


@workload(
    group="crosscall",
    size=20_000,
    quick_size=2_000,
    unit="call",
    loops=_CROSSCALL_LOOPS,
    baseline="task_roundtrip",
)
async def trio_as_aio_call(n: int) -> float:
    """From asyncio: await trio_as_aio(noop_trio)()."""
    import trio_asyncio

    call = trio_asyncio.trio_as_aio(_noop)
    started = start()
    for _ in range(n):
        await call()
    return stop(started)


# ---- driving a loop from synchronous code -------------------------------------------


@workload(group="sync", kind="sync", size=20_000, quick_size=2_000, unit="call")
def run_until_complete_noop(loop: Any, n: int) -> float:
    """loop.run_until_complete(noop()) called over and over (sync mode)."""
    run_until_complete = loop.run_until_complete
    run_until_complete(_noop())
    started = start()
    for _ in range(n):
        run_until_complete(_noop())
    return stop(started)


def _split(total: int, parts: int) -> list[int]:
    """*total* split into *parts* near-equal positive counts (fewer parts if total is small)."""
    parts = max(1, min(parts, total))
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]
