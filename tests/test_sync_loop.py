"""The sync loop (``SyncTrioEventLoop``) as asyncio-first programs use it.

Tests taking ``loop`` get a fresh loop, closed afterwards. Those parametrized
with :func:`on_both_loops` run the same scenario on the stdlib selector loop
and on ours: the stdlib run proves the expectation, ours checks that we match
it. Ctrl+C tests run the programs of ``tests/sync_programs`` in subprocesses.

Known bugs are kept as strict xfails; their reasons start with "BUG:".
"""

from __future__ import annotations

import asyncio
import gc
import os
import queue
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sniffio
import trio

import trio_asyncio
from trio_asyncio import SyncTrioEventLoop, _trio_tasks, aio_as_trio, trio_as_aio

PROGRAMS = Path(__file__).parent / "sync_programs"
SUBPROCESS_TIMEOUT = 60

# ---- helpers ----------------------------------------------------------------------------


def make_loop(kind: str) -> asyncio.AbstractEventLoop:
    if kind == "stdlib":
        return asyncio.SelectorEventLoop()
    return trio_asyncio.new_event_loop()


def on_both_loops(ours_bug: str | None = None) -> Any:
    """Parametrize ``loop_kind`` over the stdlib loop and ours (ours maybe a known bug)."""
    ours: Any = "trio_asyncio"
    if ours_bug is not None:
        ours = pytest.param(ours, marks=pytest.mark.xfail(reason=ours_bug, strict=True))
    return pytest.mark.parametrize("loop_kind", ["stdlib", ours])


@pytest.fixture
def loop_kind() -> str:
    return "trio_asyncio"


@pytest.fixture
def loop(loop_kind: str) -> Iterator[Any]:
    loop = make_loop(loop_kind)
    try:
        yield loop
    finally:
        if not loop.is_closed() and not loop.is_running():
            loop.close()


def no_context_leaks() -> None:
    """Nothing of asyncio or Trio is left in plain synchronous code."""
    assert sniffio.thread_local.name is None
    assert asyncio._get_running_loop() is None
    with pytest.raises(sniffio.AsyncLibraryNotFoundError):
        sniffio.current_async_library()


def run_python(source: str, timeout: float = SUBPROCESS_TIMEOUT) -> list[str]:
    """Run *source* in a fresh interpreter; return its stdout lines (it must exit, status 0)."""
    try:
        result = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(source)],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the program hung; its output: {exc.stdout!r} {exc.stderr!r}")
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def stream_servers_supported() -> bool:
    return SyncTrioEventLoop.create_server is not asyncio.AbstractEventLoop.create_server


async def trio_double(x: int) -> int:
    assert sniffio.current_async_library() == "trio"
    await trio.sleep(0)
    return 2 * x


async def aio_double_through_trio(x: int) -> int:
    return await trio_as_aio(trio_double)(x)


# ---- running, stopping, closing ------------------------------------------------------------


def test_new_event_loop_makes_a_sync_loop() -> None:
    loop = trio_asyncio.new_event_loop()
    try:
        assert type(loop) is SyncTrioEventLoop
        assert isinstance(loop, asyncio.AbstractEventLoop)
        assert not loop.is_running()
        assert not loop.is_closed()
    finally:
        loop.close()


@on_both_loops()
@pytest.mark.parametrize("what", ["coroutine", "future", "task", "done future"])
def test_run_until_complete_accepts_coroutines_futures_and_tasks(loop: Any, what: str) -> None:
    async def answer() -> int:
        await asyncio.sleep(0)
        return 42

    if what == "coroutine":
        awaitable: Any = answer()
    elif what == "task":
        awaitable = loop.create_task(answer())
    else:
        awaitable = loop.create_future()
        if what == "done future":
            awaitable.set_result(42)
        else:
            loop.call_soon(awaitable.set_result, 42)
    assert loop.run_until_complete(awaitable) == 42
    assert not loop.is_running()


@on_both_loops()
def test_run_until_complete_raises_the_exception(loop: Any) -> None:
    async def fail() -> None:
        await asyncio.sleep(0)
        raise ValueError("from the task")

    with pytest.raises(ValueError, match="from the task"):
        loop.run_until_complete(fail())
    assert loop.run_until_complete(asyncio.sleep(0, "still usable")) == "still usable"


@on_both_loops()
def test_run_until_complete_rejects_other_things(loop: Any) -> None:
    with pytest.raises(TypeError):
        loop.run_until_complete(42)
    other = make_loop("stdlib")
    try:
        with pytest.raises(ValueError):
            loop.run_until_complete(other.create_future())
    finally:
        other.close()


@on_both_loops()
def test_run_forever_until_stop(loop: Any) -> None:
    seen = []

    def step(n: int) -> None:
        seen.append((n, loop.is_running()))
        if n < 3:
            loop.call_soon(step, n + 1)
        else:
            loop.stop()

    loop.call_soon(step, 1)
    loop.run_forever()
    assert seen == [(1, True), (2, True), (3, True)]
    assert not loop.is_running()


@on_both_loops()
def test_stop_ends_the_run_after_the_current_batch(loop: Any) -> None:
    seen = []

    def first() -> None:
        loop.stop()
        loop.call_soon(seen.append, "next batch")  # runs in the next run only
        seen.append("first")

    loop.call_soon(first)
    loop.call_soon(seen.append, "same batch")
    loop.run_forever()
    assert seen == ["first", "same batch"]
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert seen == ["first", "same batch", "next batch"]


@on_both_loops()
def test_stop_before_run_forever_runs_one_iteration(loop: Any) -> None:
    seen = []

    def chain(n: int) -> None:
        seen.append(n)
        loop.call_soon(chain, n + 1)

    loop.call_soon(chain, 1)
    loop.stop()
    loop.run_forever()
    assert seen == [1]
    loop.stop()
    loop.run_forever()
    assert seen == [1, 2]


@on_both_loops()
def test_later_runs_carry_on(loop: Any) -> None:
    """Tasks and callbacks left pending by one run go on in the next."""
    ticks = []

    async def ticker() -> str:
        for n in range(6):
            ticks.append(n)
            if n in (1, 3):
                asyncio.get_running_loop().stop()
            await asyncio.sleep(0)
        return "ticked"

    task = loop.create_task(ticker())
    loop.run_forever()
    assert ticks == [0, 1]
    assert not task.done()
    loop.run_forever()
    assert ticks == [0, 1, 2, 3]
    assert loop.run_until_complete(task) == "ticked"
    assert ticks == [0, 1, 2, 3, 4, 5]


@on_both_loops()
def test_tasks_wait_across_runs(loop: Any) -> None:
    event = asyncio.Event()
    results = []

    async def waiter() -> None:
        await event.wait()
        results.append("woken")

    task = loop.create_task(waiter())
    loop.run_until_complete(asyncio.sleep(0))
    loop.run_until_complete(asyncio.sleep(0))
    assert not task.done()
    loop.call_soon(event.set)
    loop.run_until_complete(task)
    assert results == ["woken"]


def refused(run: Any, *args: Any) -> str:
    """The RuntimeError's message from ``run(*args)``; closes coroutine arguments."""
    try:
        with pytest.raises(RuntimeError) as info:
            run(*args)
    finally:
        for arg in args:
            arg.close()  # never started
    return str(info.value)


STDLIB_3130_NESTED_RUN = pytest.mark.skipif(
    sys.version_info[:3] == (3, 13, 0),
    reason="3.13.0's stdlib loop counts as stopped after refusing a nested run "
    "(run_forever's cleanup runs although its setup raised)",
)


@pytest.mark.parametrize(
    "loop_kind", [pytest.param("stdlib", marks=STDLIB_3130_NESTED_RUN), "trio_asyncio"]
)
def test_nested_runs_are_refused(loop: Any) -> None:
    errors = []

    async def nested() -> None:
        errors.append(refused(loop.run_until_complete, asyncio.sleep(0)))
        errors.append(refused(loop.run_forever))
        errors.append(refused(loop.close))

    loop.run_until_complete(nested())
    assert errors == [
        "This event loop is already running",
        "This event loop is already running",
        "Cannot close a running event loop",
    ]
    assert loop.run_until_complete(asyncio.sleep(0, "fine")) == "fine"


def test_running_another_loop_inside_is_refused(loop: SyncTrioEventLoop) -> None:
    """With the stdlib's message (not compared with the stdlib loop: see STDLIB_3130_NESTED_RUN)."""
    errors = []

    async def nested() -> None:
        for kind in ("trio_asyncio", "stdlib"):
            other = make_loop(kind)
            try:
                errors.append(refused(other.run_until_complete, asyncio.sleep(0)))
                errors.append(refused(other.run_forever))
            finally:
                other.close()
        assert loop.is_running()

    loop.run_until_complete(nested())
    assert errors == ["Cannot run the event loop while another loop is running"] * 4


@on_both_loops()
def test_stopped_before_the_future_completed(loop: Any) -> None:
    future = loop.create_future()
    loop.call_soon(loop.stop)
    with pytest.raises(RuntimeError, match=r"^Event loop stopped before Future completed\.$"):
        loop.run_until_complete(future)
    loop.call_soon(future.set_result, "later")
    assert loop.run_until_complete(future) == "later"


@on_both_loops()
def test_closed_loop(loop: Any) -> None:
    loop.run_until_complete(asyncio.sleep(0))
    loop.close()
    loop.close()  # idempotent
    assert loop.is_closed()
    coro = asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        loop.run_until_complete(coro)
    coro.close()
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        loop.run_forever()
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        loop.call_soon(print)


@on_both_loops()
def test_keyboard_interrupt_in_a_task_leaves_the_loop_usable(loop: Any) -> None:
    async def interrupted() -> None:
        await asyncio.sleep(0)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        loop.run_until_complete(interrupted())
    assert not loop.is_running()
    assert loop.run_until_complete(asyncio.sleep(0, "again")) == "again"


def test_an_interrupted_run_does_not_stop_the_next_one(loop: SyncTrioEventLoop) -> None:
    # The future completes in the batch that raises KeyboardInterrupt: its
    # "stop the loop" callback is already queued when the run ends, and runs
    # in the next run. (The stdlib loop stops that next run at once, and
    # says "Event loop stopped before Future completed.")
    fut = loop.create_future()

    def complete_then_interrupt() -> None:
        fut.set_result("first")
        raise KeyboardInterrupt

    loop.call_soon(complete_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        loop.run_until_complete(fut)
    assert loop.run_until_complete(asyncio.sleep(0.001, "second")) == "second"
    # The same future, awaited again once done, still ends its run.
    assert loop.run_until_complete(fut) == "first"


@on_both_loops()
def test_system_exit_in_a_task_is_not_reported_as_never_retrieved(
    loop: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """As asyncio.run(main()) does when main() calls sys.exit()."""

    async def leave() -> None:
        await asyncio.sleep(0)
        raise SystemExit(3)

    task = loop.create_task(leave())
    with pytest.raises(SystemExit):
        loop.run_until_complete(task)
    loop.run_until_complete(loop.shutdown_asyncgens())  # as asyncio.Runner.close() does
    del task
    gc.collect()
    assert "never retrieved" not in caplog.text


# ---- threads and several loops ------------------------------------------------------------


@pytest.mark.parametrize("start", ["new_event_loop", "asyncio.run"])
def test_one_loop_per_thread_several_threads_at_once(start: str) -> None:
    count = 4
    barrier = threading.Barrier(count, timeout=SUBPROCESS_TIMEOUT)
    results: dict[int, Any] = {}
    errors: list[BaseException] = []

    async def trio_part(i: int) -> int:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.sleep, 0)
        return await trio.to_thread.run_sync(lambda: i * 10)

    async def work(i: int) -> Any:
        loop = asyncio.get_running_loop()
        # Every thread's loop is running at this point.
        await loop.run_in_executor(None, barrier.wait)
        value = await trio_as_aio(trio_part)(i)
        return loop, threading.get_ident(), value, sniffio.current_async_library()

    def thread_main(i: int) -> None:
        try:
            if start == "asyncio.run":
                results[i] = asyncio.run(work(i))
            else:
                loop = trio_asyncio.new_event_loop()
                try:
                    results[i] = loop.run_until_complete(work(i))
                    loop.run_until_complete(loop.shutdown_default_executor())
                finally:
                    loop.close()
            no_context_leaks()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=thread_main, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(SUBPROCESS_TIMEOUT)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    loops = {id(result[0]) for result in results.values()}
    assert len(loops) == count
    for i, (loop, ident, value, library) in results.items():
        assert type(loop) is SyncTrioEventLoop
        assert loop.is_closed()
        assert ident == threads[i].ident
        assert value == i * 10
        assert library == "asyncio"


@pytest.mark.parametrize("where", ["main thread", "other thread"])
def test_several_loops_one_after_another(where: str) -> None:
    results = []

    def run_loops() -> None:
        for n in range(3):
            loop = trio_asyncio.new_event_loop()
            try:
                results.append(loop.run_until_complete(aio_double_through_trio(n)))
                results.append(loop.run_until_complete(loop.run_trio(trio_double, n + 10)))
            finally:
                loop.close()
            no_context_leaks()

    if where == "main thread":
        assert threading.current_thread() is threading.main_thread()
        run_loops()
    else:
        thread = threading.Thread(target=run_loops)
        thread.start()
        thread.join(SUBPROCESS_TIMEOUT)
    assert results == [0, 20, 2, 22, 4, 24]


def test_two_open_loops_in_one_thread_can_both_use_trio() -> None:
    # In a subprocess: closing must not hang after Trio failed to start.
    output = run_python(
        """
        import trio, trio_asyncio

        async def double(x):
            await trio.sleep(0)
            return 2 * x

        first = trio_asyncio.new_event_loop()
        second = trio_asyncio.new_event_loop()
        print(first.run_until_complete(first.run_trio(double, 1)), flush=True)
        print(second.run_until_complete(second.run_trio(double, 2)), flush=True)
        print(first.run_until_complete(first.run_trio(double, 3)), flush=True)
        second.close()
        first.close()
        print("closed")
        """
    )
    assert output == ["2", "4", "6", "closed"]


@pytest.mark.slow  # with the bug, until the 10 s timeout
def test_close_after_trio_failed_to_start() -> None:
    # Trio cannot start a guest run in a thread that is inside trio.run().
    output = run_python(
        """
        import trio, trio_asyncio

        async def trio_main():
            loop = trio_asyncio.new_event_loop()
            try:
                loop.run_until_complete(loop.run_trio(trio.sleep, 0))
            except RuntimeError as exc:
                print("refused:", exc, flush=True)
            loop.close()
            print("closed")

        trio.run(trio_main)
        """,
        timeout=10,
    )
    assert output == ["refused: Attempted to call run() from inside a run()", "closed"]


# ---- Trio inside the sync loop ------------------------------------------------------------


def test_trio_code_runs_in_a_real_trio_run(loop: SyncTrioEventLoop) -> None:
    async def trio_part(x: int) -> dict[str, Any]:
        report: dict[str, Any] = {"library": sniffio.current_async_library()}
        report["asyncio loop"] = asyncio._get_running_loop()
        await trio.sleep(0.001)
        async with trio.open_nursery() as nursery:
            for n in range(3):
                nursery.start_soon(trio.sleep, 0.001 * n)
        report["thread"] = await trio.to_thread.run_sync(lambda: x + 1)
        report["task"] = trio.lowlevel.current_task().name
        return report

    @trio_as_aio
    async def decorated(x: int) -> int:
        await trio.sleep(0)
        return x * 3

    async def main() -> list[Any]:
        return [
            sniffio.current_async_library(),
            await trio_as_aio(trio_part)(1),
            await trio_asyncio.run_trio(trio_part, 2),
            await asyncio.get_running_loop().run_trio(trio_part, 3),
            await decorated(5),
            sniffio.current_async_library(),
        ]

    first, *reports, decorated_result, last = loop.run_until_complete(main())
    assert (first, decorated_result, last) == ("asyncio", 15, "asyncio")
    for x, report in enumerate(reports, start=2):
        assert report["library"] == "trio"
        assert report["asyncio loop"] is None
        assert report["thread"] == x
    no_context_leaks()


def test_asyncio_called_from_trio_in_a_sync_loop_sees_asyncio(loop: SyncTrioEventLoop) -> None:
    """asyncio code that Trio code calls back runs as asyncio, blocking or not.

    Its first step runs right away, inside the Trio task (no Trio tick), so
    it must see its task, its loop and sniffio's "asyncio", and Trio must
    refuse to run there without an adapter.
    """

    async def asyncio_part(block: bool) -> tuple[Any, ...]:
        if block:
            await asyncio.sleep(0.001)
        try:
            await trio.sleep(0)  # Trio without an adapter: refused
        except RuntimeError:
            trio_refused = True
        else:  # pragma: no cover - the bug this checks for
            trio_refused = False
        return (
            sniffio.current_async_library(),
            asyncio.get_running_loop() is loop,
            asyncio.current_task() is not None,
            trio_refused,
        )

    async def trio_part() -> list[Any]:
        results = []
        for block in (False, True, False):
            results.append(await aio_as_trio(asyncio_part)(block))
            results.append(sniffio.current_async_library())
        return results

    async def main() -> list[Any]:
        return await trio_as_aio(trio_part)()  # type: ignore[no-any-return]

    expected = ("asyncio", True, True, True)
    assert loop.run_until_complete(main()) == [expected, "trio"] * 3
    no_context_leaks()


def test_run_trio_from_synchronous_code(loop: SyncTrioEventLoop) -> None:
    """loop.run_trio() works while the loop is stopped; the next run drives it."""
    future = loop.run_trio(trio_double, 21)
    assert not future.done()
    assert loop.run_until_complete(future) == 42
    future = loop.run_trio(trio_double, 1)
    assert loop.run_until_complete(future) == 2


def test_trio_tasks_keep_running_between_runs(loop: SyncTrioEventLoop) -> None:
    started = trio.Event()
    go_on = trio.Event()
    progress = []

    async def trio_job() -> str:
        progress.append("started")
        started.set()
        await go_on.wait()
        progress.append("resumed")
        return "finished"

    async def start() -> asyncio.Future[str]:
        future = loop.run_trio(trio_job)
        await trio_as_aio(started.wait)()
        return future

    future = loop.run_until_complete(start())
    assert progress == ["started"]
    loop.run_until_complete(asyncio.sleep(0.001))
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert not future.done()
    no_context_leaks()

    async def release() -> None:
        go_on.set()

    loop.run_until_complete(loop.run_trio(release))
    assert loop.run_until_complete(future) == "finished"
    assert progress == ["started", "resumed"]


@pytest.mark.parametrize("how", ["run_until_complete", "asyncio.run"])
def test_cancelling_trio_work_from_synchronous_code(how: str) -> None:
    """task.cancel() between runs, as asyncio.run()'s cleanup does with leftover tasks."""
    started = trio.Event()
    cancelled = []

    async def trio_forever() -> None:
        started.set()
        try:
            await trio.sleep_forever()
        finally:
            cancelled.append("trio")

    async def waiter() -> None:
        try:
            await trio_as_aio(trio_forever)()
        except asyncio.CancelledError:
            cancelled.append("asyncio")
            raise

    async def main() -> asyncio.Task[None]:
        task = asyncio.ensure_future(waiter())
        await trio_as_aio(started.wait)()
        return task

    if how == "asyncio.run":
        task = asyncio.run(main())  # cancels the leftover task, then closes
    else:
        loop = trio_asyncio.new_event_loop()
        try:
            task = loop.run_until_complete(main())
            assert cancelled == []
            task.cancel()  # from plain synchronous code
            loop.run_until_complete(asyncio.gather(task, return_exceptions=True))
        finally:
            loop.close()
    assert task.cancelled()
    assert cancelled == ["trio", "asyncio"]


def test_close_cancels_trio_tasks_and_ends_the_guest_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """After close() no thread works for the loop: only idle threads of Trio's cache remain.

    Trio's thread cache keeps each worker thread for IDLE_TIMEOUT (10 s) after
    its last job: here one waited for I/O for the guest run and one ran
    trio.to_thread (unless idle ones were reused). They are daemon threads
    named "Trio thread N", hold no reference to the loop (it is collected),
    and end by themselves.
    """
    from trio._core._thread_cache import THREAD_CACHE  # private: which workers are idle

    def busy_trio_threads() -> set[threading.Thread]:
        idle = {worker._thread for worker in THREAD_CACHE._idle_workers}
        return {
            thread
            for thread in threading.enumerate()
            if thread.name.startswith("Trio thread ") and thread not in idle
        }

    # The guest run goes back to waiting in its thread as soon as it is idle
    # (not after staying awake for a moment, as it does for speed).
    monkeypatch.setattr(_trio_tasks.Warmth, "GRACE", 0.0)
    before = set(threading.enumerate())
    busy_before = busy_trio_threads()
    loop = trio_asyncio.new_event_loop()
    cancelled = []

    async def forever() -> None:
        try:
            await trio.sleep_forever()
        finally:
            cancelled.append(True)

    async def main() -> int:
        asyncio.get_running_loop().run_trio(forever)  # type: ignore[attr-defined]
        return await trio_as_aio(trio.to_thread.run_sync)(lambda: 5)

    assert loop.run_until_complete(main()) == 5
    assert cancelled == []
    assert busy_trio_threads() - busy_before, "the guest run waits for I/O in a thread"
    loop.close()
    assert cancelled == [True]
    assert busy_trio_threads() <= busy_before
    for thread in set(threading.enumerate()) - before:
        assert thread.daemon
        assert thread.name.startswith("Trio thread ")
    ref = weakref.ref(loop)
    del loop
    gc.collect()
    assert ref() is None


def test_unclosed_loop_warns_when_collected() -> None:
    loop = trio_asyncio.new_event_loop()
    loop.run_until_complete(asyncio.sleep(0))
    ref = weakref.ref(loop)
    with pytest.warns(ResourceWarning, match="unclosed event loop"):
        del loop
        gc.collect()
    assert ref() is None


@pytest.mark.parametrize("freed_by", ["refcount", "cyclic gc"])
def test_unclosed_loop_that_used_trio_warns_when_collected(freed_by: str) -> None:
    def leave_unclosed() -> weakref.ref[SyncTrioEventLoop]:
        loop = trio_asyncio.new_event_loop()
        loop.run_until_complete(loop.run_trio(trio_double, 1))
        # (A Trio job still running would keep it alive, as a thread would.)
        if freed_by == "cyclic gc":
            loop.cycle = loop  # type: ignore[attr-defined]
        return weakref.ref(loop)

    ref = None
    try:
        with pytest.warns(ResourceWarning, match="unclosed event loop"):
            ref = leave_unclosed()
            if freed_by == "cyclic gc":
                assert ref() is not None
            gc.collect()
        assert ref() is None
    finally:
        leaked = ref and ref()
        if leaked is not None:
            leaked.close()
    # __del__ closed it: its Trio guest run ended, so Trio's I/O thread and
    # fds are released (the leak guard checks).


# ---- what asyncio, sniffio and Trio see ----------------------------------------------------


def test_running_loop_in_protocol_callbacks(loop: SyncTrioEventLoop) -> None:
    seen: list[tuple[str, Any]] = []

    def note(what: str) -> None:
        seen.append((what, asyncio.get_running_loop()))
        assert sniffio.current_async_library() == "asyncio"

    class PipeReader(asyncio.Protocol):
        def __init__(self) -> None:
            self.closed = loop.create_future()

        def connection_made(self, transport: Any) -> None:
            note("pipe made")

        def data_received(self, data: bytes) -> None:
            note("pipe data")

        def connection_lost(self, exc: Exception | None) -> None:
            note("pipe lost")
            self.closed.set_result(None)

    class Datagrams(asyncio.DatagramProtocol):
        def __init__(self) -> None:
            self.received = loop.create_future()

        def connection_made(self, transport: Any) -> None:
            note("udp made")

        def datagram_received(self, data: bytes, addr: Any) -> None:
            note("udp data")
            self.received.set_result(data)

    async def main() -> None:
        read_fd, write_fd = os.pipe()
        reader = PipeReader()
        transport, _ = await loop.connect_read_pipe(lambda: reader, os.fdopen(read_fd, "rb", 0))
        os.write(write_fd, b"x")
        os.close(write_fd)
        await reader.closed
        datagrams = Datagrams()
        udp, _ = await loop.create_datagram_endpoint(lambda: datagrams, local_addr=("127.0.0.1", 0))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            sender.sendto(b"dgram", udp.get_extra_info("sockname"))
        assert await datagrams.received == b"dgram"
        udp.close()
        transport.close()

    loop.run_until_complete(main())
    assert [what for what, _ in seen] == [
        "pipe made",
        "pipe data",
        "pipe lost",
        "udp made",
        "udp data",
    ]
    assert all(running is loop for _, running in seen)


@pytest.mark.skipif(not stream_servers_supported(), reason="create_server is not implemented yet")
def test_running_loop_in_stream_protocol_callbacks(loop: SyncTrioEventLoop) -> None:
    seen = []

    class Upper(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            seen.append(asyncio.get_running_loop())
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            seen.append(asyncio.get_running_loop())
            self.transport.write(data.upper())
            self.transport.close()

    async def main() -> bytes:
        server = await loop.create_server(Upper, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"hi")
        answer = await reader.read()
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
        return answer

    assert loop.run_until_complete(main()) == b"HI"
    assert seen == [loop, loop]


def test_running_loop_in_tasks_and_callbacks_of_asyncio_run() -> None:
    seen: list[tuple[str, Any]] = []

    def note(what: str) -> None:
        seen.append((what, asyncio.get_running_loop()))

    async def child(n: int) -> int:
        note(f"child {n}")
        await asyncio.sleep(0)
        note(f"child {n} resumed")
        return n

    async def main() -> Any:
        loop = asyncio.get_running_loop()
        note("main")
        loop.call_soon(note, "call_soon")
        loop.call_later(0.001, note, "call_later")
        task = asyncio.ensure_future(child(1))
        task.add_done_callback(lambda _: note("done callback"))
        results = await asyncio.gather(task, child(2), asyncio.create_task(child(3)))
        await asyncio.sleep(0.002)
        await asyncio.to_thread(lambda: None)
        note("main end")
        return loop, results

    loop, results = asyncio.run(main())
    assert type(loop) is SyncTrioEventLoop
    assert loop.is_closed()
    assert results == [1, 2, 3]
    assert {what for what, _ in seen} >= {
        "main",
        "call_soon",
        "call_later",
        "child 1",
        "child 2 resumed",
        "done callback",
        "main end",
    }
    assert all(running is loop for _, running in seen)
    no_context_leaks()


def test_nothing_leaks_into_synchronous_code_between_runs(loop: SyncTrioEventLoop) -> None:
    inside = []

    async def main() -> None:
        inside.append(sniffio.current_async_library())
        loop.call_soon(lambda: inside.append(sniffio.current_async_library()))
        await asyncio.sleep(0)
        inside.append(await trio_as_aio(_current_library)())
        inside.append(sniffio.current_async_library())

    async def fail() -> None:
        await trio_as_aio(trio.sleep)(0)
        raise ValueError

    no_context_leaks()
    loop.run_until_complete(main())
    assert inside == ["asyncio", "asyncio", "trio", "asyncio"]
    no_context_leaks()
    with pytest.raises(ValueError):
        loop.run_until_complete(fail())
    no_context_leaks()
    loop.call_soon(loop.stop)
    loop.run_forever()
    no_context_leaks()
    loop.close()
    no_context_leaks()


async def _current_library() -> str:
    await trio.sleep(0)
    return sniffio.current_async_library()


def test_outer_context_is_restored_after_a_run(loop: SyncTrioEventLoop) -> None:
    """A run puts back the sniffio thread-local it found (here set by an outer library)."""
    sniffio.thread_local.name = "outer"
    try:
        assert loop.run_until_complete(_library_now()) == "asyncio"
        assert sniffio.thread_local.name == "outer"
    finally:
        sniffio.thread_local.name = None


async def _library_now() -> str:
    return sniffio.current_async_library()


def test_synchronous_code_between_runs_is_outside_trio(loop: SyncTrioEventLoop) -> None:
    assert loop.run_until_complete(loop.run_trio(trio_double, 2)) == 4

    async def plain_trio() -> str:
        await trio.sleep(0)
        return "trio.run works"

    assert trio.run(plain_trio) == "trio.run works"


# ---- a legacy program ---------------------------------------------------------------------

LEGACY_TRANSCRIPT = [
    "run 1: [1, 2, 3] consumer done: False",
    "run 2: [1, 2, 3, 4, 5]",
    "lock held between runs: True [1, 2, 3, 4, 5]",
    "after join: [1, 2, 3, 4, 5, 6] consumed",
    "run_forever stopped: ['PING', 'HELLO'] event set: True",
    "waiter pending: True",
    "waiter woken: True",
    "later udp: STILL THERE",
    "later tcp: STILL THERE",
]


def legacy_transcript(use_tcp: bool) -> list[str]:
    if use_tcp:
        return LEGACY_TRANSCRIPT
    return [line.replace(", 'HELLO'", "") for line in LEGACY_TRANSCRIPT if "tcp" not in line]


def test_legacy_program_reusing_objects_across_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """tests/sync_programs/legacy_reuse.py, in this process: asyncio.new_event_loop() is ours."""
    import runpy

    use_tcp = stream_servers_supported()
    argv = sys.argv
    sys.argv = ["legacy_reuse.py"] if use_tcp else ["legacy_reuse.py", "--no-tcp"]
    try:
        runpy.run_path(str(PROGRAMS / "legacy_reuse.py"), run_name="__main__")
    finally:
        sys.argv = argv
    lines = capsys.readouterr().out.splitlines()
    assert lines == [*legacy_transcript(use_tcp), "loop: SyncTrioEventLoop"]
    no_context_leaks()


# ---- Ctrl+C -------------------------------------------------------------------------------


class Child:
    """A Python subprocess whose output is read as it comes."""

    def __init__(self, *args: str, cwd: Path = PROGRAMS) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, *args],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.out: list[str] = []
        self.err: list[str] = []
        self.readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.out, True)),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.err, False)),
        ]
        for reader in self.readers:
            reader.start()

    def _read(self, stream: Any, into: list[str], announce: bool) -> None:
        for line in stream:
            into.append(line)
            if announce:
                self.lines.put(line)
        stream.close()

    def wait_for(self, marker: str) -> None:
        deadline = time.monotonic() + SUBPROCESS_TIMEOUT
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.kill()
                pytest.fail(f"no {marker!r} from the child: {self.output()}")
            if marker in line:
                return

    def interrupt(self) -> None:
        self.proc.send_signal(signal.SIGINT)

    def finish(self) -> tuple[int, list[str], str]:
        try:
            returncode = self.proc.wait(SUBPROCESS_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"the child did not exit: {self.output()}")
        for reader in self.readers:
            reader.join(SUBPROCESS_TIMEOUT)
        return returncode, "".join(self.out).splitlines(), "".join(self.err)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(SUBPROCESS_TIMEOUT)
        for reader in self.readers:
            reader.join(SUBPROCESS_TIMEOUT)

    def output(self) -> str:
        return f"stdout:\n{''.join(self.out)}\nstderr:\n{''.join(self.err)}"


def interrupt_program(*args: str) -> tuple[int, list[str], str]:
    child = Child(*args)
    child.wait_for("ready")
    child.interrupt()
    return child.finish()


@pytest.fixture
def sigint_works() -> None:
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # pragma: no cover
        pytest.skip("SIGINT is ignored here (and would be in our children)")


CTRL_C_EXPECTED = {
    "reuse": ["again: asyncio ok", "trio again: 42", "closed", "end"],
    "close": ["closed", "end"],
    "leave": ["left unclosed", "end"],
}


@pytest.mark.usefixtures("sigint_works")
@pytest.mark.parametrize(
    ("wait", "after"),
    [
        ("asyncio", "reuse"),
        ("asyncio", "close"),
        ("asyncio", "leave"),
        ("trio", "reuse"),
        ("trio", "leave"),
        pytest.param("asyncio-after-trio", "reuse", marks=pytest.mark.slow),
    ],
)
def test_ctrl_c_during_run_until_complete(wait: str, after: str) -> None:
    """KeyboardInterrupt reaches the caller; the loop can be reused, closed or left."""
    returncode, lines, err = interrupt_program("ctrl_c.py", wait, after)
    assert lines == [
        "ready",
        "interrupted: KeyboardInterrupt",
        "running: False",
        *CTRL_C_EXPECTED[after],
    ], err
    assert returncode == 0, err
    assert "Traceback" not in err, err


@pytest.mark.usefixtures("sigint_works")
@pytest.mark.parametrize(
    "wait",
    ["asyncio", "trio"],
)
def test_ctrl_c_during_asyncio_run(wait: str) -> None:
    returncode, lines, err = interrupt_program("ctrl_c_asyncio_run.py", wait)
    assert lines == [
        "loop: SyncTrioEventLoop",
        "ready",
        "main cancelled",
        "asyncio.run raised KeyboardInterrupt",
        "end",
    ], err
    assert returncode == 0, err
    assert "Traceback" not in err, err


def test_exit_with_an_unclosed_loop_collected_only_at_exit() -> None:
    """A pending task keeps the loop in a cycle, and no GC runs before exit.

    Collected while the interpreter finalizes, the loop could no longer end
    its guest run (Trio's I/O thread cannot take the GIL then): the exit
    hung. Unclosed loops with a guest run are closed at exit instead, first.
    """
    program = (
        "import asyncio, gc, trio, trio_asyncio\n"
        "gc.set_threshold(1_000_000_000)\n"
        "loop = trio_asyncio.new_event_loop()\n"
        "async def pending():\n"
        "    await asyncio.sleep(3600)\n"
        "task = loop.create_task(pending())\n"
        "loop.run_until_complete(asyncio.sleep(0))\n"
        "loop.run_trio(trio.sleep_forever)\n"
        "del loop, task\n"
        "print('leaving')\n"
    )
    result = subprocess.run(
        [sys.executable, "-W", "always::ResourceWarning", "-c", program],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
    )
    assert result.stdout.splitlines() == ["leaving"]
    assert result.returncode == 0, result.stderr
    assert "unclosed event loop" in result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert "abandoned" not in result.stderr, result.stderr


def test_exit_with_an_unclosed_loop_running_trio_tasks() -> None:
    """The interpreter exits promptly although the guest run (and its thread) are alive."""
    program = (
        "import asyncio, trio, trio_asyncio\n"
        "loop = trio_asyncio.new_event_loop()\n"
        "loop.run_trio(trio.sleep_forever)\n"
        "async def main():\n"
        "    await trio_asyncio.trio_as_aio(trio.to_thread.run_sync)(print, 'trio ran')\n"
        "loop.run_until_complete(main())\n"
        "print('leaving')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
    )
    assert result.stdout.splitlines() == ["trio ran", "leaving"]
    assert result.returncode == 0, result.stderr
