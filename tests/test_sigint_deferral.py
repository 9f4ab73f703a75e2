"""Ctrl-C landing in the loop's own code (trio_asyncio/_sigint_deferral.py).

Real signals: ``loop.call_soon(signal.raise_signal, SIGINT)`` makes the
signal arrive while a C function runs as a callback, so Python runs the
handler as soon as control is back in Python code: in ``Handle._run``, the
loop's (asyncio's) code. ``raise_signal`` from a Python callback makes it
land in user code instead.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import trio

import trio_asyncio
from trio_asyncio import SyncTrioEventLoop, _compat
from trio_asyncio._sigint_deferral import SigintDeferral, TrioHostedSigintDeferral, in_loop_code

pytestmark = [
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals"),
    pytest.mark.skipif(
        threading.current_thread() is not threading.main_thread(), reason="signals: main thread"
    ),
]


@pytest.fixture(autouse=True)
def default_sigint_handler() -> Iterator[None]:
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.fixture
def loop() -> Iterator[SyncTrioEventLoop]:
    loop = trio_asyncio.new_event_loop()
    try:
        yield loop
    finally:
        if not loop.is_running():
            _end_all_tasks(loop)
            loop.close()


def _end_all_tasks(loop: asyncio.AbstractEventLoop) -> None:
    """What asyncio.run does after an interrupt: cancel what is left and wait for it."""
    if loop.is_closed():
        return
    tasks = asyncio.all_tasks(loop)
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.wait(tasks))


def raise_sigint_in_user_code() -> None:
    signal.raise_signal(signal.SIGINT)


def test_sigint_in_loop_code_is_raised_at_the_next_callback_boundary(
    loop: SyncTrioEventLoop,
) -> None:
    ran: list[str] = []

    async def main() -> None:
        loop.call_soon(signal.raise_signal, signal.SIGINT)  # lands in Handle._run
        loop.call_soon(ran.append, "rest of the batch")
        await asyncio.sleep(3600)

    with pytest.raises(KeyboardInterrupt):
        loop.run_until_complete(main())
    assert ran == ["rest of the batch"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    # Nothing was lost: the interrupted task is still there, and cancels cleanly.
    (task,) = asyncio.all_tasks(loop)
    task.cancel()
    loop.run_until_complete(asyncio.gather(task, return_exceptions=True))
    assert task.cancelled()


def test_sigint_in_user_code_is_raised_at_once(loop: SyncTrioEventLoop) -> None:
    ran: list[str] = []

    async def main() -> None:
        loop.call_soon(raise_sigint_in_user_code)
        loop.call_soon(ran.append, "rest of the batch")
        await asyncio.sleep(3600)

    with pytest.raises(KeyboardInterrupt) as info:
        loop.run_until_complete(main())
    assert "raise_sigint_in_user_code" in [entry.name for entry in info.traceback]
    assert ran == []  # as with Python's handler alone
    loop.run_until_complete(asyncio.sleep(0))
    assert ran == ["rest of the batch"]  # the batch goes on with the next run


def test_a_wakeup_is_not_lost_to_sigint(loop: SyncTrioEventLoop) -> None:
    """The hang this guards against: SIGINT between a future's completion and its callbacks."""

    async def waiter(fut: asyncio.Future[str]) -> str:
        return await fut

    fut = loop.create_future()
    task = loop.create_task(waiter(fut))
    loop.run_until_complete(asyncio.sleep(0))

    def complete() -> None:
        # As if SIGINT arrived while Future.set_result called loop.call_soon.
        frame = sys._getframe(1)
        assert in_loop_code(frame)  # Handle._run
        handler = signal.getsignal(signal.SIGINT)
        assert isinstance(handler, SigintDeferral)
        handler(signal.SIGINT, frame)  # deferred: returns
        fut.set_result("woken")

    loop.call_soon(complete)
    with pytest.raises(KeyboardInterrupt):
        loop.run_forever()
    assert loop.run_until_complete(task) == "woken"


def test_a_second_sigint_is_raised_at_once(loop: SyncTrioEventLoop) -> None:
    ran: list[str] = []
    loop.call_soon(signal.raise_signal, signal.SIGINT)  # deferred
    loop.call_soon(signal.raise_signal, signal.SIGINT)  # at once, in Handle._run
    loop.call_soon(ran.append, "after")
    with pytest.raises(KeyboardInterrupt) as info:
        loop.run_forever()
    assert info.value.__context__ is None  # one KeyboardInterrupt, not two
    assert ran == []
    # The deferred one was dropped with it: the next run is not interrupted.
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert ran == ["after"]


def test_sigint_in_the_last_batch_of_a_run_is_raised_by_that_run(
    loop: SyncTrioEventLoop,
) -> None:
    loop.call_soon(signal.raise_signal, signal.SIGINT)
    loop.call_soon(loop.stop)  # the run ends with this batch
    with pytest.raises(KeyboardInterrupt):
        loop.run_forever()
    # Raised once: the next run is not interrupted.
    assert loop.run_until_complete(asyncio.sleep(0, "next")) == "next"


def test_sigint_wakes_a_waiting_loop(loop: SyncTrioEventLoop) -> None:
    """Deferred while the loop waits in its own code (the selector), the interrupt still comes."""

    def deliver_in_loop_code() -> None:
        # SIGINT interrupting our _run_once (where the selector is called).
        handler = signal.getsignal(signal.SIGINT)
        frame = sys._getframe(1)
        while frame is not None and frame.f_code.co_name != "_run_once":
            frame = frame.f_back  # type: ignore[assignment]
        assert frame is not None and in_loop_code(frame)
        handler(signal.SIGINT, frame)

    loop.call_soon(deliver_in_loop_code)
    with pytest.raises(KeyboardInterrupt):
        loop.run_until_complete(asyncio.sleep(3600))


def test_with_trio_alive_it_stands_in_front_of_trio(loop: SyncTrioEventLoop) -> None:
    async def trio_sleep() -> str:
        await trio.sleep(0)
        return "trio"

    async def main() -> None:
        assert await trio_asyncio.trio_as_aio(trio_sleep)() == "trio"
        handler = signal.getsignal(signal.SIGINT)
        assert isinstance(handler, SigintDeferral)
        assert getattr(handler.inner, "_trio_asyncio_wraps_trio", False)
        loop.call_soon(signal.raise_signal, signal.SIGINT)
        await asyncio.sleep(3600)

    with pytest.raises(KeyboardInterrupt):
        loop.run_until_complete(main())
    # Between runs: Trio's handler (wrapped), which acts like Python's there.
    assert getattr(signal.getsignal(signal.SIGINT), "_trio_asyncio_wraps_trio", False)
    _end_all_tasks(loop)
    loop.close()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_sigint_in_asyncio_code_run_by_a_trio_task_is_keyboard_interrupt(
    loop: SyncTrioEventLoop,
) -> None:
    """A Trio task may run an asyncio step itself, its Trio task hidden: Trio's handler can't judge."""

    async def aio_part() -> str:
        raise_sigint_in_user_code()
        return "not reached"

    async def trio_part() -> str:
        return await trio_asyncio.aio_as_trio(aio_part)()

    async def main() -> str:
        return await trio_asyncio.trio_as_aio(trio_part)()

    with pytest.raises(KeyboardInterrupt):
        loop.run_until_complete(main())
    # Raised once, though each hop of the chain reported it on its way up.
    _end_all_tasks(loop)
    assert loop.run_until_complete(asyncio.sleep(0, "calm")) == "calm"


def test_a_handler_of_somebody_else_is_left_alone(loop: SyncTrioEventLoop) -> None:
    calls: list[Any] = []

    def mine(signum: int, frame: Any) -> None:
        calls.append(signum)

    signal.signal(signal.SIGINT, mine)

    async def main() -> Any:
        return signal.getsignal(signal.SIGINT)

    assert loop.run_until_complete(main()) is mine
    assert signal.getsignal(signal.SIGINT) is mine


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.Runner is new in 3.11")
def test_asyncio_runner_keeps_its_own_handler() -> None:
    async def main() -> Any:
        return signal.getsignal(signal.SIGINT)

    with asyncio.Runner(loop_factory=trio_asyncio.new_event_loop) as runner:
        handler = runner.run(main())
    assert not isinstance(handler, SigintDeferral)
    assert handler is not signal.default_int_handler  # the Runner's
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_other_threads_install_nothing() -> None:
    seen: list[Any] = []

    def run() -> None:
        loop = trio_asyncio.new_event_loop()
        try:

            async def main() -> Any:
                return signal.getsignal(signal.SIGINT)

            seen.append(loop.run_until_complete(main()))
        finally:
            loop.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert seen == [signal.default_int_handler]


def test_removing_an_asyncio_sigint_handler_puts_ours_back(loop: SyncTrioEventLoop) -> None:
    async def main() -> None:
        ours = signal.getsignal(signal.SIGINT)
        assert isinstance(ours, SigintDeferral)
        loop.add_signal_handler(signal.SIGINT, lambda: None)
        assert signal.getsignal(signal.SIGINT) is not ours
        assert loop.remove_signal_handler(signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) is ours

    loop.run_until_complete(main())
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_put_back_after_its_run_it_only_passes_sigint_on(loop: SyncTrioEventLoop) -> None:
    async def main() -> Any:
        return signal.getsignal(signal.SIGINT)

    saved = loop.run_until_complete(main())  # as a library that saved it might
    assert isinstance(saved, SigintDeferral)
    signal.signal(signal.SIGINT, saved)
    with pytest.raises(KeyboardInterrupt):
        saved(signal.SIGINT, sys._getframe())  # not deferred: no run to raise it
    # Even for a frame of the loop's code: nothing would raise it.
    frame = _a_frame_of(loop.call_soon)
    queued = len(loop._ready)
    with pytest.raises(KeyboardInterrupt):
        saved(signal.SIGINT, frame)
    assert len(loop._ready) == queued


def _a_frame_of(function: Any) -> Any:
    """A frame running *function*'s code (caught with a profile hook)."""
    frames: list[Any] = []

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code is function.__code__ and not frames:
            frames.append(frame)

    sys.setprofile(profile)
    try:
        function(lambda: None)
    finally:
        sys.setprofile(None)
    assert in_loop_code(frames[0])
    return frames[0]


# ---- Trio-hosted loops (open_loop) ------------------------------------------------------


def test_trio_hosted_sigint_in_an_asyncio_callback_is_keyboard_interrupt() -> None:
    """Trio's handler alone would fail there: Trio's task is hidden during our batches."""

    async def amain() -> None:
        asyncio.get_running_loop().call_soon(raise_sigint_in_user_code)
        await asyncio.sleep(3600)

    async def main() -> None:
        await trio_asyncio.aio_as_trio(amain)()

    with pytest.raises(KeyboardInterrupt):
        trio_asyncio.run(main)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_trio_hosted_sigint_in_loop_code_loses_no_wakeup() -> None:
    seen: dict[str, Any] = {}

    async def waiter(fut: asyncio.Future[str]) -> str:
        return await fut

    async def amain() -> None:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        seen["task"] = loop.create_task(waiter(fut))
        await asyncio.sleep(0)

        def complete() -> None:
            # As if SIGINT arrived while Future.set_result called loop.call_soon.
            handler = signal.getsignal(signal.SIGINT)
            assert isinstance(handler, TrioHostedSigintDeferral)
            frame = sys._getframe(1)
            assert in_loop_code(frame)  # Handle._run
            handler(signal.SIGINT, frame)  # deferred: returns
            fut.set_result("woken")
            seen["completed"] = True

        loop.call_soon(complete)
        await asyncio.sleep(3600)

    async def main() -> None:
        await trio_asyncio.aio_as_trio(amain)()

    with pytest.raises(KeyboardInterrupt):
        trio_asyncio.run(main)
    assert seen["completed"]
    assert seen["task"].done()  # woken, then cancelled by the loop's clean-up


def test_trio_hosted_loops_share_one_handler_in_front_of_trio() -> None:
    async def main() -> None:
        trio_handler = signal.getsignal(signal.SIGINT)
        assert _compat.is_trio_signal_handler(trio_handler)
        async with trio_asyncio.open_loop():
            outer = signal.getsignal(signal.SIGINT)
            assert isinstance(outer, TrioHostedSigintDeferral)
            assert outer.inner is trio_handler
            async with trio_asyncio.open_loop():
                assert signal.getsignal(signal.SIGINT) is outer
            assert signal.getsignal(signal.SIGINT) is outer
        assert signal.getsignal(signal.SIGINT) is trio_handler

    trio.run(main)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_trio_hosted_sigint_outside_batches_goes_to_trio() -> None:
    """Between batches, Trio's handler decides: in unprotected Trio code, it raises at once."""

    async def main() -> None:
        async with trio_asyncio.open_loop():
            handler = signal.getsignal(signal.SIGINT)
            assert isinstance(handler, TrioHostedSigintDeferral)
            with pytest.raises(KeyboardInterrupt):
                signal.raise_signal(signal.SIGINT)  # unprotected Trio code: at once

    trio.run(main)
