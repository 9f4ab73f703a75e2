"""A busy sync-mode asyncio program, for SIGINT at random moments (test_sigint_fuzz.py).

Usage: python sigint_target.py stdlib|trio_asyncio [runner|raw|trio_hosted]

Runs, all at once and until interrupted:

- timers: ``call_later`` chains and ``asyncio.sleep`` with short delays;
- a ``call_soon`` chain (callbacks that schedule the next one);
- a TCP echo over loopback (``start_server`` / ``open_connection``, drain);
- ``run_in_executor`` calls into the default executor;
- calls into Trio with ``trio_as_aio`` (with ``stdlib``: plain asyncio
  sleeps instead, as the stdlib loop has no Trio);
- a long-lived child echoing over its stdin/stdout pipes, and short-lived
  children started one after another.

Prints "ready" once every activity has completed a round, then runs until
SIGINT. Each activity cleans up in ``finally`` when cancelled, as a tidy
program does; nothing catches KeyboardInterrupt, so it ends the program
the way the loop's runner makes it: asyncio.run() (3.11+: asyncio.Runner)
cancels the main task, cleans up and re-raises KeyboardInterrupt.

How the loop is run (the same way for both loops, so the outcomes compare):

- ``runner`` (the default): ``asyncio.run(main(), loop_factory=...)`` on
  3.12+, ``asyncio.Runner(loop_factory=...)`` on 3.11 (what asyncio.run uses
  there); their SIGINT handler cancels the main task, and KeyboardInterrupt
  is raised once it has ended. 3.10's asyncio.run has no such handler, so
  :func:`run_like_runner` does the same by hand.
- ``trio_hosted`` (``trio_asyncio`` only): the same ``main()`` in a
  Trio-hosted loop, ``trio_asyncio.run()`` calling it through ``aio_as_trio``;
  Trio's SIGINT handling applies, and KeyboardInterrupt comes out of
  ``trio_asyncio.run()``.
- ``raw``: ``loop.run_until_complete(main())`` with Python's default SIGINT
  handler, then asyncio.run's clean-up (:func:`finish`): KeyboardInterrupt
  is raised wherever the signal lands, which no asyncio program can fully
  clean up after (a child may be started but not yet wrapped, say).

The loop is ``trio_asyncio.new_event_loop()`` for ``trio_asyncio`` and a
``SelectorEventLoop`` for ``stdlib``; ``stdlib`` never imports trio_asyncio.
"""

from __future__ import annotations

import asyncio
import faulthandler
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

KIND = sys.argv[1] if len(sys.argv) > 1 else "trio_asyncio"
if KIND == "trio_asyncio":
    import trio

    import trio_asyncio

ECHO_CHILD = (
    "import os\n"
    "while True:\n"
    "    data = os.read(0, 4096)\n"
    "    if not data:\n"
    "        break\n"
    "    os.write(1, data)\n"
)


async def forever(first_round: asyncio.Future[None], step: Callable[[], Awaitable[Any]]) -> None:
    """Run *step* again and again; mark the first round done."""
    while True:
        await step()
        if not first_round.done():
            first_round.set_result(None)


async def timers() -> None:
    loop = asyncio.get_running_loop()
    fired = loop.create_future()
    loop.call_later(0.001, lambda: fired.done() or fired.set_result(None))
    loop.call_later(0.5, lambda: None)  # usually cancelled by interruption
    await fired
    await asyncio.sleep(0.002)


async def call_soon_chain() -> None:
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def step(n: int) -> None:
        if n:
            loop.call_soon(step, n - 1)
        elif not done.done():
            done.set_result(None)

    loop.call_soon(step, 100)
    await done
    await asyncio.sleep(0)


async def executor() -> None:
    await asyncio.get_running_loop().run_in_executor(None, time.sleep, 0.001)


async def trio_call() -> None:
    if KIND == "trio_asyncio":
        await trio_asyncio.trio_as_aio(trio.sleep)(0.001)
    else:
        await asyncio.sleep(0.001)


async def short_child() -> None:
    # Cancelled right after the child started, ``await create_subprocess_exec()``
    # would drop the Process (on any loop): the child would outlive its
    # transport. Shielded, the creation finishes and the child is ended here.
    creation = asyncio.ensure_future(asyncio.create_subprocess_exec(sys.executable, "-c", "pass"))
    try:
        proc = await asyncio.shield(creation)
    except asyncio.CancelledError:
        proc = await creation
        proc.kill()
        await proc.wait()
        raise
    try:
        await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def echo_handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(4096):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except ConnectionError:
            pass


async def main() -> None:
    loop = asyncio.get_running_loop()
    server = await asyncio.start_server(echo_handler, "127.0.0.1", 0)
    reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname()[:2])
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        ECHO_CHILD,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert child.stdin is not None and child.stdout is not None
    child_in, child_out = child.stdin, child.stdout

    async def tcp_echo() -> None:
        writer.write(b"x" * 1024)
        await writer.drain()
        await reader.readexactly(1024)

    async def pipe_echo() -> None:
        child_in.write(b"y" * 1024)
        await child_in.drain()
        await child_out.readexactly(1024)

    steps = [timers, call_soon_chain, executor, trio_call, short_child, tcp_echo, pipe_echo]
    rounds = [loop.create_future() for _ in steps]
    tasks = [asyncio.ensure_future(forever(r, step)) for r, step in zip(rounds, steps)]
    group = asyncio.gather(*tasks)
    passed_on = False  # a cancellation of main reached every task through gather
    try:
        await asyncio.gather(*rounds)
        print("ready", type(loop).__name__, flush=True)
        try:
            await group
        except asyncio.CancelledError:
            passed_on = True
            raise
    finally:
        # gather ends at the first cancelled task, while the others are
        # still cleaning up: cancelling them again would cut that short.
        if not passed_on:
            for task in tasks:
                task.cancel()
        await asyncio.wait(tasks)
        writer.close()
        try:
            await writer.wait_closed()
        except ConnectionError:
            pass
        server.close()
        await server.wait_closed()
        child_in.close()
        if child.returncode is None:
            child.kill()
        await child.wait()


def new_loop() -> asyncio.AbstractEventLoop:
    """The loop under test: the stdlib's (what asyncio.run makes) or our sync loop."""
    if KIND == "stdlib":
        return asyncio.SelectorEventLoop()
    return trio_asyncio.new_event_loop()


def finish(loop: asyncio.AbstractEventLoop) -> None:
    """What asyncio.run does after the main task: cancel the rest, shut down, close."""
    try:
        tasks = asyncio.all_tasks(loop)
        for task in tasks:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def run_like_runner() -> None:
    """3.10 only: asyncio.run there has no SIGINT handling; do what 3.11's Runner does.

    The first SIGINT cancels the main task (and wakes the loop); once the
    task has ended cancelled, KeyboardInterrupt is raised. A second SIGINT
    raises KeyboardInterrupt at once.
    """
    loop = new_loop()
    asyncio.set_event_loop(loop)
    task = loop.create_task(main())
    interrupted = False

    def on_sigint(signum: int, frame: Any) -> None:
        nonlocal interrupted
        if not interrupted and not task.done():
            interrupted = True
            task.cancel()
            loop.call_soon_threadsafe(lambda: None)
            return
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)
    try:
        try:
            loop.run_until_complete(task)
        except asyncio.CancelledError:
            if interrupted:
                raise KeyboardInterrupt from None
            raise
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        finish(loop)


def run(mode: str) -> None:
    """``runner``: asyncio.run / asyncio.Runner; ``raw``: run_until_complete, no handler."""
    if mode == "trio_hosted":
        trio_asyncio.run(trio_asyncio.aio_as_trio(main))
    elif mode == "raw":
        # KeyboardInterrupt is raised wherever the signal lands: in a
        # callback, in the loop's own code, in Trio's.
        loop = new_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(main())
        finally:
            finish(loop)
    elif sys.version_info >= (3, 12):
        asyncio.run(main(), loop_factory=new_loop)
    elif sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=new_loop) as runner:
            runner.run(main())
    else:
        run_like_runner()


if __name__ == "__main__":
    # Started from a background job, SIGINT would be ignored: take it back.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    # If it hangs, the test asks for every thread's traceback with SIGUSR1.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    run(sys.argv[2] if len(sys.argv) > 2 else "runner")
