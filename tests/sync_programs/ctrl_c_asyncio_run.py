"""asyncio.run() interrupted by Ctrl+C (SIGINT), with or without Trio work inside.

Usage: python ctrl_c_asyncio_run.py asyncio|trio

Like the stdlib, asyncio.run() should cancel the main task and then raise
KeyboardInterrupt (3.11+: asyncio.Runner's SIGINT handler does this; on 3.10
KeyboardInterrupt simply propagates out of the loop). Prints "ready" when it
is blocked, then one line per step.
"""

import asyncio
import signal
import sys

import trio

import trio_asyncio

WAIT_SECONDS = 5


def say(*words: object) -> None:
    print(*words, flush=True)


async def trio_wait() -> None:
    trio_asyncio.current_loop.get().call_soon_threadsafe(say, "ready")
    await trio.sleep(WAIT_SECONDS)


async def main(kind: str) -> None:
    say("loop:", type(asyncio.get_running_loop()).__name__)
    try:
        if kind == "trio":
            await trio_asyncio.trio_as_aio(trio_wait)()
        else:
            asyncio.get_running_loop().call_soon(say, "ready")
            await asyncio.sleep(WAIT_SECONDS)
    except asyncio.CancelledError:
        say("main cancelled")
        raise
    say("not interrupted")


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        asyncio.run(main(sys.argv[1]))
    except KeyboardInterrupt:
        say("asyncio.run raised KeyboardInterrupt")
    say("end")
