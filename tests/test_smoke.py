"""The example from the README, end to end."""

import asyncio

import sniffio
import trio

import trio_asyncio


async def aio_double(x: int) -> int:
    assert sniffio.current_async_library() == "asyncio"
    await asyncio.sleep(0.1)
    return x * 2


async def trio_triple(x: int) -> int:
    assert sniffio.current_async_library() == "trio"
    await trio.sleep(0.1)
    return x * 3


def test_readme_example() -> None:
    async def main() -> None:
        async with trio_asyncio.open_loop() as loop:
            assert await trio_asyncio.aio_as_trio(aio_double)(21) == 42
            assert await loop.run_trio(trio_triple, 2) == 6

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
