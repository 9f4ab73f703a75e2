"""Unix signal handlers: add_signal_handler / remove_signal_handler.

Scenarios run on both the stdlib selector loop and ours (``aio_run``) with the
same assertions; ``trio_aio_run`` covers our Trio-specific behaviour. These
tests must run in the main thread (pytest does). Synchronisation is by futures.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import trio
from _drivers import EVERY_DRIVER

import trio_asyncio
from trio_asyncio._compat import is_trio_signal_handler as _installed_by_trio
from trio_asyncio._sigint_deferral import SigintDeferral


@pytest.fixture
def aio_run(aio_run_every_driver: Callable[..., Any]) -> Callable[..., Any]:
    """Overrides the conftest's: the stdlib loop and *both* our drivers."""
    return aio_run_every_driver


@pytest.fixture(autouse=True)
def default_handlers_before_and_after() -> Iterator[None]:
    """Each test starts and ends with the default dispositions."""
    for sig in (signal.SIGUSR1, signal.SIGUSR2):
        assert signal.getsignal(sig) == signal.SIG_DFL
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    try:
        yield
    finally:
        for sig in (signal.SIGUSR1, signal.SIGUSR2):
            assert signal.getsignal(sig) == signal.SIG_DFL
            signal.signal(sig, signal.SIG_DFL)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        signal.signal(signal.SIGINT, signal.default_int_handler)


def test_handler_runs_through_the_loop(aio_run: Callable[..., Any]) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        called: asyncio.Future[tuple[Any, ...]] = loop.create_future()

        def callback(*args: Any) -> None:
            assert asyncio.get_running_loop() is loop
            assert threading.current_thread() is threading.main_thread()
            called.set_result(args)

        loop.add_signal_handler(signal.SIGUSR1, callback, "a", 2)
        assert signal.getsignal(signal.SIGUSR1) not in (signal.SIG_DFL, signal.SIG_IGN)
        os.kill(os.getpid(), signal.SIGUSR1)
        assert await called == ("a", 2)
        # Again: the handler stays installed.
        called = loop.create_future()
        os.kill(os.getpid(), signal.SIGUSR1)
        assert await called == ("a", 2)
        assert loop.remove_signal_handler(signal.SIGUSR1) is True
        assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL
        assert loop.remove_signal_handler(signal.SIGUSR1) is False

    aio_run(main)


def test_two_signals_and_replacing_a_handler(aio_run: Callable[..., Any]) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        seen: list[str] = []
        both = loop.create_future()

        def record(name: str) -> None:
            seen.append(name)
            if len(seen) == 2:
                both.set_result(None)

        loop.add_signal_handler(signal.SIGUSR1, record, "replaced")
        loop.add_signal_handler(signal.SIGUSR1, record, "usr1")
        loop.add_signal_handler(signal.SIGUSR2, record, "usr2")
        os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGUSR2)
        await both
        assert sorted(seen) == ["usr1", "usr2"]
        assert loop.remove_signal_handler(signal.SIGUSR1)
        assert loop.remove_signal_handler(signal.SIGUSR2)

    aio_run(main)


def test_removed_before_dispatch(aio_run: Callable[..., Any]) -> None:
    """A signal whose handler is removed before the loop gets to it is dropped."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        seen: list[int] = []
        loop.add_signal_handler(signal.SIGUSR1, seen.append, 1)
        # Ignored, not fatal, from the moment the handler is removed on.
        os.kill(os.getpid(), signal.SIGUSR1)
        assert loop.remove_signal_handler(signal.SIGUSR1)
        for _ in range(5):
            await asyncio.sleep(0)
        assert seen == []

    aio_run(main)


def test_callback_errors_go_to_the_exception_handler(aio_run: Callable[..., Any]) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        reported: asyncio.Future[dict[str, Any]] = loop.create_future()
        loop.set_exception_handler(lambda _, context: reported.set_result(context))

        def fail() -> None:
            raise ZeroDivisionError

        loop.add_signal_handler(signal.SIGUSR1, fail)
        try:
            os.kill(os.getpid(), signal.SIGUSR1)
            context = await reported
            assert isinstance(context["exception"], ZeroDivisionError)
        finally:
            loop.remove_signal_handler(signal.SIGUSR1)

    aio_run(main)


def test_sigint_replaced_and_restored(aio_run: Callable[..., Any]) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        before = signal.getsignal(signal.SIGINT)
        called = loop.create_future()
        loop.add_signal_handler(signal.SIGINT, called.set_result, "interrupted")
        ours = signal.getsignal(signal.SIGINT)
        assert ours is not before
        os.kill(os.getpid(), signal.SIGINT)  # no KeyboardInterrupt
        assert await called == "interrupted"
        assert loop.remove_signal_handler(signal.SIGINT)
        restored = signal.getsignal(signal.SIGINT)
        # The stdlib restores default_int_handler; inside trio.run, we give
        # Trio its own KeyboardInterrupt handler back, and during a sync run
        # the sync loop's own (see trio_asyncio/_sigint_deferral.py).
        assert (
            restored is signal.default_int_handler
            or _installed_by_trio(restored)
            or isinstance(restored, SigintDeferral)
        )
        assert restored == before

    aio_run(main)


def test_sigint_handler_goes_back_to_trio(trio_aio_run: Callable[..., Any]) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        trio_handler = signal.getsignal(signal.SIGINT)
        assert _installed_by_trio(trio_handler)
        loop.add_signal_handler(signal.SIGINT, lambda: None)
        loop.add_signal_handler(signal.SIGINT, lambda: None)  # replacing keeps the original
        assert loop.remove_signal_handler(signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) is trio_handler

    trio_aio_run(main)


def test_invalid_signals(aio_run: Callable[..., Any]) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()

        async def coroutine_function() -> None:
            pass

        with pytest.raises(
            TypeError, match=r"^coroutines cannot be used with add_signal_handler\(\)$"
        ):
            loop.add_signal_handler(signal.SIGUSR1, coroutine_function)
        coro = coroutine_function()
        with pytest.raises(
            TypeError, match=r"^coroutines cannot be used with add_signal_handler\(\)$"
        ):
            loop.add_signal_handler(signal.SIGUSR1, coro)  # type: ignore[arg-type]
        coro.close()
        with pytest.raises(TypeError, match=r"^sig must be an int, not 'USR1'$"):
            loop.add_signal_handler("USR1", print)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"^sig must be an int, not 1.0$"):
            loop.remove_signal_handler(1.0)  # type: ignore[arg-type]
        for bad in (0, -1, 1000):
            with pytest.raises(ValueError, match=rf"^invalid signal number {bad}$"):
                loop.add_signal_handler(bad, print)
            with pytest.raises(ValueError, match=rf"^invalid signal number {bad}$"):
                loop.remove_signal_handler(bad)
        for uncatchable in (signal.SIGKILL, signal.SIGSTOP):
            with pytest.raises(RuntimeError, match=rf"^sig {int(uncatchable)} cannot be caught$"):
                loop.add_signal_handler(uncatchable, print)
            assert loop.remove_signal_handler(uncatchable) is False

    aio_run(main)


def test_not_in_the_main_thread(aio_run: Callable[..., Any]) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()

        def from_a_thread() -> str:
            with pytest.raises(RuntimeError) as info:
                loop.add_signal_handler(signal.SIGUSR1, print)
            return str(info.value)

        message = await loop.run_in_executor(None, from_a_thread)
        assert message == "set_wakeup_fd only works in main thread of the main interpreter"
        assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL

    aio_run(main)


def test_closing_the_loop_removes_handlers(aio_run: Callable[..., Any]) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGUSR1, print)
        loop.add_signal_handler(signal.SIGUSR2, print)
        loop.add_signal_handler(signal.SIGINT, print)

    aio_run(main)
    # The fixture checks SIGUSR1/2 are SIG_DFL and SIGINT default_int_handler again.


def test_add_after_close_refused() -> None:
    kept: list[Any] = []

    async def main() -> None:
        async with trio_asyncio.open_loop() as loop:
            kept.append(loop)

    trio.run(main)
    with pytest.raises(RuntimeError, match="closed"):
        kept[0].add_signal_handler(signal.SIGUSR1, print)


def test_signal_after_close_is_ignored() -> None:
    """A signal arriving between close and the handler's removal must not crash."""
    kept: list[Any] = []

    async def main() -> None:
        async with trio_asyncio.open_loop() as loop:
            loop.add_signal_handler(signal.SIGUSR1, print)
            kept.append(loop)
            python_handler = signal.getsignal(signal.SIGUSR1)
            kept.append(python_handler)

    trio.run(main)
    kept[1](signal.SIGUSR1, None)  # what Python would run; no exception


# ---- the sync driver's wake-up fd ---------------------------------------------------


@pytest.fixture
def idle_loop() -> Iterator[trio_asyncio.TrioEventLoop]:
    """A loop object that is not running: we drive its selector by hand, as the sync driver."""
    loop = trio_asyncio.TrioEventLoop()
    try:
        yield loop
    finally:
        loop.close()


def test_install_signal_wakeup(idle_loop: trio_asyncio.TrioEventLoop) -> None:
    loop = idle_loop
    assert signal.set_wakeup_fd(-1) == -1
    loop._install_signal_wakeup()
    fd = loop._self_writer.fileno()
    loop._install_signal_wakeup()  # idempotent
    assert signal.set_wakeup_fd(fd) == fd  # it is ours
    seen: list[str] = []
    loop.add_signal_handler(signal.SIGUSR1, seen.append, "woken")
    # Send the signal from another thread while the main thread blocks in
    # select(): the wake-up fd must make select() return.
    sender = threading.Thread(target=os.kill, args=(os.getpid(), signal.SIGUSR1))
    sender.start()
    try:
        events = loop._selector.select(timeout=30)
    finally:
        sender.join()
    assert [key.data for key, _ in events] == [None]  # the self-pipe
    loop._process_fd_events(events)
    loop._run_ready()  # the dispatch queued by the Python-level handler
    loop._run_ready()  # (in case it ran after the first batch was taken)
    assert seen == ["woken"]
    loop._uninstall_signal_wakeup()
    loop._uninstall_signal_wakeup()  # idempotent
    assert signal.set_wakeup_fd(-1) == -1
    assert loop.remove_signal_handler(signal.SIGUSR1)


def test_install_signal_wakeup_leaves_a_foreign_fd(
    idle_loop: trio_asyncio.TrioEventLoop,
) -> None:
    import socket

    a, b = socket.socketpair()
    a.setblocking(False)
    try:
        assert signal.set_wakeup_fd(a.fileno()) == -1
        idle_loop._install_signal_wakeup()
        assert signal.set_wakeup_fd(a.fileno()) == a.fileno()  # untouched
        idle_loop._uninstall_signal_wakeup()
        assert signal.set_wakeup_fd(-1) == a.fileno()
    finally:
        signal.set_wakeup_fd(-1)
        a.close()
        b.close()


def test_uninstall_keeps_a_wakeup_fd_that_replaced_ours(
    idle_loop: trio_asyncio.TrioEventLoop,
) -> None:
    import socket

    a, b = socket.socketpair()
    a.setblocking(False)
    try:
        idle_loop._install_signal_wakeup()
        signal.set_wakeup_fd(a.fileno())
        idle_loop._uninstall_signal_wakeup()
        assert signal.set_wakeup_fd(-1) == a.fileno()
    finally:
        signal.set_wakeup_fd(-1)
        a.close()
        b.close()


def test_close_uninstalls_the_wakeup_fd() -> None:
    loop = trio_asyncio.TrioEventLoop()
    loop._install_signal_wakeup()
    loop.add_signal_handler(signal.SIGUSR2, print)
    loop.close()
    assert signal.set_wakeup_fd(-1) == -1
    assert signal.getsignal(signal.SIGUSR2) == signal.SIG_DFL


def test_no_wakeup_fd_inside_trio(trio_aio_run: Callable[..., Any]) -> None:
    """Inside trio.run, Trio owns the wake-up fd: _install_signal_wakeup leaves it."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop._install_signal_wakeup()
        assert loop._signal_wakeup_fd is None

    trio_aio_run(main)


def _in_epoll_wait(native_id: int) -> bool:
    with open(f"/proc/self/task/{native_id}/wchan") as file:
        return file.read().strip() in ("do_epoll_wait", "ep_poll")


@pytest.mark.parametrize("runner", ["sync", "trio_asyncio"])
def test_a_sleeping_loop_wakes_up_for_a_signal(runner: str) -> None:
    """Both drivers sleep in epoll_wait: the wake-up fd must get them out.

    The sync driver points it at its self-pipe; inside trio.run, Trio's own
    does the job. SIGUSR1 is blocked in the main thread, so the kernel
    delivers it to the sending thread, which sends it only once the main
    thread sleeps in epoll_wait (as /proc tells).
    """
    main_id = threading.get_native_id()
    try:
        _in_epoll_wait(main_id)
    except OSError:
        pytest.skip("no /proc/<pid>/task/<tid>/wchan")

    def send() -> None:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGUSR1})
        while not _in_epoll_wait(main_id):
            pass
        os.kill(os.getpid(), signal.SIGUSR1)

    async def main() -> str:
        loop = asyncio.get_running_loop()
        called: asyncio.Future[str] = loop.create_future()
        loop.add_signal_handler(signal.SIGUSR1, called.set_result, "woken")
        sender = threading.Thread(target=send)
        loop.call_soon(sender.start)
        try:
            return await asyncio.wait_for(called, 30)  # a bound, not a synchronisation
        finally:
            sender.join()
            loop.remove_signal_handler(signal.SIGUSR1)

    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    try:
        assert EVERY_DRIVER[runner](main) == "woken"
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
