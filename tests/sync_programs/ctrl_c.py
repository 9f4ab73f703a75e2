"""A legacy asyncio program interrupted by Ctrl+C (SIGINT) during run_until_complete.

Usage: python ctrl_c.py WAIT AFTER

WAIT, what run_until_complete waits for when the signal arrives:
  asyncio             asyncio.sleep(), Trio never started;
  trio                a Trio task (trio.sleep) started through trio_as_aio;
  asyncio-after-trio  asyncio.sleep(), after Trio work in an earlier step.

AFTER, what the program does once the interrupted run is over:
  reuse  run the loop again (asyncio, then Trio work), then close it;
  close  close it at once;
  leave  exit leaving the loop unclosed, with a Trio task still running.

The program prints "ready" when it is blocked waiting, and then one line
per step, so the test can tell exactly what happened. The wait is bounded:
if the signal is lost, it prints "not interrupted" after WAIT_SECONDS.
"""

import asyncio
import signal
import sys
import traceback

import trio

import trio_asyncio

WAIT_SECONDS = 5


def say(*words: object) -> None:
    print(*words, flush=True)


async def trio_wait() -> None:
    asyncio_loop = trio_asyncio.current_loop.get()
    # Runs in the host loop once this Trio task is blocked in trio.sleep().
    asyncio_loop.call_soon_threadsafe(say, "ready")
    await trio.sleep(WAIT_SECONDS)


async def wait(kind: str) -> None:
    loop = asyncio.get_running_loop()
    if kind == "trio":
        await trio_asyncio.trio_as_aio(trio_wait)()
    else:
        if kind == "asyncio-after-trio":
            await trio_asyncio.trio_as_aio(trio.sleep)(0)
        # Printed by a callback, once this task is suspended in sleep().
        loop.call_soon(say, "ready")
        await asyncio.sleep(WAIT_SECONDS)
    say("not interrupted")


async def trio_double(x: int) -> int:
    await trio.sleep(0)
    return 2 * x


async def trio_again() -> object:
    future = asyncio.get_running_loop().run_trio(trio_double, 21)
    # Bounded, and without cancelling: a broken Trio side might never answer.
    await asyncio.wait({future}, timeout=WAIT_SECONDS)
    return future.result() if future.done() else "no answer"


def main() -> None:
    # As in an interactive terminal, even if our parent ignores SIGINT.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    kind, after = sys.argv[1], sys.argv[2]
    loop = trio_asyncio.new_event_loop()
    try:
        loop.run_until_complete(wait(kind))
    except KeyboardInterrupt:
        say("interrupted: KeyboardInterrupt")
    except BaseException as exc:
        say(f"interrupted: {type(exc).__name__}")
        traceback.print_exc()
    say("running:", loop.is_running())
    if after == "reuse":
        say("again:", loop.run_until_complete(asyncio.sleep(0, "asyncio ok")))
        say("trio again:", loop.run_until_complete(trio_again()))
        loop.close()
        say("closed")
    elif after == "close":
        loop.close()
        say("closed")
    else:
        loop.run_trio(trio.sleep_forever)
        say("left unclosed")
    say("end")


if __name__ == "__main__":
    main()
