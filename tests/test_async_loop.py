"""The Trio-hosted driver: ``open_loop()``, ``run()``, several loops, shutdown."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys

import pytest
import sniffio
import trio
import trio.testing

import trio_asyncio
from trio_asyncio import aio_as_trio, trio_as_aio


async def _where():
    """What asyncio sees from inside a task."""
    await asyncio.sleep(0)
    task = asyncio.current_task()
    return asyncio.get_running_loop(), task, asyncio.all_tasks()


# ---- open_loop and run -----------------------------------------------------------


@pytest.mark.trio
async def test_open_loop_yields_a_running_asyncio_loop():
    assert trio_asyncio.current_loop.get() is None
    async with trio_asyncio.open_loop() as loop:
        assert isinstance(loop, trio_asyncio.TrioEventLoop)
        assert isinstance(loop, trio_asyncio.BaseTrioEventLoop)
        assert isinstance(loop, asyncio.AbstractEventLoop)
        assert trio_asyncio.current_loop.get() is loop
        running, task, tasks = await aio_as_trio(_where)()
        assert running is loop
        assert tasks == {task}
        assert "TrioEventLoop" in repr(loop)
    assert trio_asyncio.current_loop.get() is None


def test_run_passes_arguments_and_returns_the_result():
    async def main(a, b):
        assert sniffio.current_async_library() == "trio"
        return await aio_as_trio(asyncio.sleep)(0, a + b)

    assert trio_asyncio.run(main, 2, 3) == 5


def test_run_propagates_errors():
    async def main():
        raise KeyError("out of run")

    with pytest.raises(KeyError, match="out of run"):
        trio_asyncio.run(main)


@pytest.mark.trio
async def test_loops_side_by_side_each_see_their_own_tasks():
    seen = {}

    async def one(name, task_status=trio.TASK_STATUS_IGNORED):
        async with trio_asyncio.open_loop() as loop:
            task_status.started()
            for _ in range(3):
                running, task, tasks = await aio_as_trio(_where)()
                assert running is loop
                assert tasks == {task}
                assert trio_asyncio.current_loop.get() is loop
                await trio.sleep(0)
            seen[name] = loop

    async with trio.open_nursery() as nursery:
        nursery.start_soon(one, "a")
        nursery.start_soon(one, "b")
    assert seen["a"] is not seen["b"]
    assert seen["a"].is_closed() and seen["b"].is_closed()


@pytest.mark.trio
async def test_nested_loops_innermost_is_current():
    async with trio_asyncio.open_loop() as outer:

        async def outer_task():
            await asyncio.sleep(3600)

        async def start_background():
            return asyncio.ensure_future(outer_task())

        outer_background = await aio_as_trio(start_background)()
        async with trio_asyncio.open_loop() as inner:
            assert trio_asyncio.current_loop.get() is inner
            running, task, tasks = await aio_as_trio(_where)()
            assert running is inner and tasks == {task}
            running, task, tasks = await aio_as_trio(_where, loop=outer)()
            assert running is outer and tasks == {task, outer_background}

            # asyncio in inner -> Trio -> asyncio: lands on the innermost loop again.
            async def trio_then_aio():
                assert trio_asyncio.current_loop.get() is inner
                return await aio_as_trio(_where)()

            async def aio_then_trio():
                return await trio_as_aio(trio_then_aio)()

            running, _, _ = await aio_as_trio(aio_then_trio)()
            assert running is inner
        assert trio_asyncio.current_loop.get() is outer
        assert inner.is_closed() and not outer.is_closed()
        assert not outer_background.done()
    assert outer_background.cancelled()


@pytest.mark.trio
async def test_a_loop_opened_inside_trio_code_called_from_asyncio():
    async with trio_asyncio.open_loop() as outer:

        async def trio_side():
            async with trio_asyncio.open_loop() as inner:
                running, _, _ = await aio_as_trio(_where)()
                return running is inner and running is not outer

        async def aio_side():
            return await trio_as_aio(trio_side)()

        assert await aio_as_trio(aio_side)()


# ---- asyncio objects just work (differential) ----------------------------------------


def test_lock_event_semaphore_and_condition(aio_run):
    async def scenario():
        log = []
        lock = asyncio.Lock()
        event = asyncio.Event()
        sem = asyncio.Semaphore(2)
        cond = asyncio.Condition()
        ready = []

        async def worker(i):
            async with sem:
                log.append(("sem", i, sem.locked()))
                await event.wait()
            async with lock:
                log.append(("lock", i))
                await asyncio.sleep(0)
            async with cond:
                ready.append(i)
                cond.notify_all()

        tasks = [asyncio.ensure_future(worker(i)) for i in range(3)]
        await asyncio.sleep(0)
        event.set()
        async with cond:
            await cond.wait_for(lambda: len(ready) == 3)
        await asyncio.gather(*tasks)
        return log, ready

    assert aio_run(scenario) == (
        [
            ("sem", 0, False),
            ("sem", 1, True),
            ("lock", 0),
            ("sem", 2, False),
            ("lock", 1),
            ("lock", 2),
        ],
        [0, 1, 2],
    )


def test_queue_producer_consumer(aio_run):
    async def scenario():
        queue = asyncio.Queue(maxsize=2)
        got = []

        async def producer():
            for i in range(6):
                await queue.put(i)
            await queue.put(None)

        async def consumer():
            while (item := await queue.get()) is not None:
                got.append(item)
                queue.task_done()
            queue.task_done()

        await asyncio.gather(producer(), consumer())
        await queue.join()
        return got

    assert aio_run(scenario) == list(range(6))


def test_gather_shield_wait_for_and_as_completed(aio_run):
    async def value(v, delay=0):
        await asyncio.sleep(delay)
        return v

    async def fail():
        await asyncio.sleep(0)
        raise ValueError("gathered")

    async def scenario():
        gathered = await asyncio.gather(value(1), value(2), fail(), return_exceptions=True)
        shielded = asyncio.ensure_future(value("shielded", 0.01))
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(shielded), 0.001)
        in_time = await asyncio.wait_for(value("in time"), 10)
        order = [await f for f in asyncio.as_completed([value("slow", 0.02), value("fast")])]
        return (
            [repr(g) if isinstance(g, Exception) else g for g in gathered],
            await shielded,
            in_time,
            order,
        )

    assert aio_run(scenario) == (
        [1, 2, "ValueError('gathered')"],
        "shielded",
        "in time",
        ["fast", "slow"],
    )


@pytest.mark.skipif(sys.version_info < (3, 11), reason="TaskGroup and timeout are new in 3.11")
def test_task_group_and_timeout(aio_run):
    async def scenario():
        results = []

        async def child(i):
            await asyncio.sleep(0)
            results.append(i)

        async with asyncio.TaskGroup() as group:
            for i in range(3):
                group.create_task(child(i))
        try:
            async with asyncio.timeout(0.001):
                await asyncio.sleep(10)
        except TimeoutError:
            results.append("timeout")
        return results, asyncio.current_task().cancelling()

    assert aio_run(scenario) == ([0, 1, 2, "timeout"], 0)


def test_run_coroutine_threadsafe_from_another_thread(aio_run):
    async def scenario():
        loop = asyncio.get_running_loop()

        async def compute():
            await asyncio.sleep(0)
            return "computed"

        def in_thread():
            return asyncio.run_coroutine_threadsafe(compute(), loop).result(10)

        return await loop.run_in_executor(None, in_thread)

    assert aio_run(scenario) == "computed"


# ---- shutdown --------------------------------------------------------------------------


async def _pending_with_finally(log, name):
    try:
        await asyncio.sleep(3600)
    finally:
        log.append((name, sniffio.current_async_library()))
        await asyncio.sleep(0)  # asyncio work is still possible here
        log.append(name + " done")


async def _start_background(log):
    loop = asyncio.get_running_loop()
    loop.create_task(_pending_with_finally(log, "task"))

    async def trio_side():
        try:
            await trio.sleep_forever()
        finally:
            log.append(("trio task", sniffio.current_async_library()))

    loop.run_trio(trio_side)
    await asyncio.sleep(0)


@pytest.mark.trio
async def test_leaving_normally_cancels_and_awaits_asyncio_and_trio_tasks():
    log = []
    async with trio_asyncio.open_loop() as loop:
        await aio_as_trio(_start_background)(log)
        assert log == []
    assert sorted(map(str, log)) == sorted(
        map(str, [("task", "asyncio"), "task done", ("trio task", "trio")])
    )
    assert loop.is_closed() and not loop.is_running()


@pytest.mark.trio
async def test_leaving_by_an_error_cleans_up_and_raises_the_error_unwrapped():
    log = []
    error = ValueError("body failed")
    with pytest.raises(ValueError) as info:
        async with trio_asyncio.open_loop() as loop:
            await aio_as_trio(_start_background)(log)
            raise error
    assert info.value is error
    assert ("task", "asyncio") in log and "task done" in log
    assert ("trio task", "trio") in log
    assert loop.is_closed()


_OUTER_CANCEL_SCRIPT = """
import asyncio, sniffio, trio, trio.testing, trio_asyncio

log = []

async def pending():
    try:
        await asyncio.sleep(3600)
    finally:
        log.append(("task", sniffio.current_async_library()))
        await asyncio.sleep(0)
        log.append("task done")

async def trio_side():
    try:
        await trio.sleep_forever()
    finally:
        log.append(("trio task", sniffio.current_async_library()))

async def start():
    loop = asyncio.get_running_loop()
    loop.create_task(pending())
    loop.run_trio(trio_side)
    await asyncio.sleep(0)

async def body():
    async with trio_asyncio.open_loop() as loop:
        await trio_asyncio.aio_as_trio(start)()
        await trio.sleep_forever()

async def failing_sibling():
    await trio.sleep(5)
    raise KeyError("sibling failed")

async def main():
    if MODE == "move_on_after":
        with trio.move_on_after(5):
            await body()
    else:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(failing_sibling)
                await body()
        except BaseException as exc:
            log.append(f"{type(exc).__name__}({list(exc.exceptions)!r})")
    print(sorted(map(str, log)))

trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
"""


def _run_script(code, timeout=5):
    try:
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        pytest.fail("deadlock: the script did not finish")
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.parametrize("mode", ["move_on_after", "failing sibling"])
def test_leaving_by_outer_cancellation_cleans_up(mode):
    out = _run_script(f"MODE = {mode!r}" + _OUTER_CANCEL_SCRIPT)
    expected = ["('task', 'asyncio')", "('trio task', 'trio')", "task done"]
    if mode != "move_on_after":
        expected.insert(0, "ExceptionGroup([KeyError('sibling failed')])")
    assert out == str(sorted(expected))


_FAILING_SHUTDOWN_SCRIPT = """
import socket, trio, trio_asyncio

async def main():
    a, b = socket.socketpair()
    try:
        async with trio_asyncio.open_loop() as loop:
            # With an fd watched, the idle scheduler waits on the selector
            # and is woken through the self-pipe, which now fails.
            loop.add_reader(a, lambda: None)
            await trio.sleep(0.01)

            def broken():
                raise RuntimeError("cannot wake the scheduler")

            loop._write_to_self = broken
    except RuntimeError as exc:
        print("raised:", exc)
    finally:
        a.close()
        b.close()

trio.run(main)
"""


def test_a_failing_shutdown_raises_instead_of_hanging():
    # Whatever breaks during shutdown, the open_loop() block must end, with
    # the error, rather than wait forever for its shielded scheduler.
    assert _run_script(_FAILING_SHUTDOWN_SCRIPT, timeout=30) == (
        "raised: cannot wake the scheduler"
    )


@pytest.mark.parametrize("kind", ["reader", "writer"])
def test_a_socket_closed_while_watched_leaves_the_loop_working(aio_run_every_driver, kind):
    # Closing a socket without remove_reader() first: the kernel drops it
    # from epoll, our selector keeps a stale entry, and the next socket may
    # get its fd number (here, the loop's own wake-up socket pair).
    async def main():
        loop = asyncio.get_running_loop()
        for _ in range(3):
            a, b = socket.socketpair()
            getattr(loop, f"add_{kind}")(a.fileno(), lambda: None)
            a.close()
            b.close()
            await asyncio.sleep(0.001)  # an idle loop: it waits on the selector
        return "still working"

    assert aio_run_every_driver(main) == "still working"


@pytest.mark.trio
async def test_tasks_created_during_shutdown_are_cancelled_too():
    log = []

    async def spawner():
        try:
            await asyncio.sleep(3600)
        finally:
            asyncio.get_running_loop().create_task(_pending_with_finally(log, "late"))

    async with trio_asyncio.open_loop() as loop:
        loop.call_soon(lambda: loop.create_task(spawner()) and None)
        await loop.synchronize()
    assert ("late", "asyncio") in log


@pytest.mark.trio
async def test_asyncio_clean_up_can_still_call_trio_code(autojump_clock):
    log = []

    async def trio_cleanup():
        await trio.sleep(1)
        log.append("trio cleanup")

    async def task():
        try:
            await asyncio.sleep(3600)
        finally:
            await trio_as_aio(trio_cleanup)()
            log.append("asyncio cleanup done")

    async def start():
        asyncio.ensure_future(task())
        await asyncio.sleep(0)

    async with trio_asyncio.open_loop():
        await aio_as_trio(start)()
    assert log == ["trio cleanup", "asyncio cleanup done"]


@pytest.mark.trio
async def test_a_task_failing_during_shutdown_is_reported():
    async def fails_on_cancel():
        try:
            await asyncio.sleep(3600)
        finally:
            raise OSError("cleanup failed")

    with pytest.raises(OSError, match="cleanup failed"):
        async with trio_asyncio.open_loop() as loop:
            loop.call_soon(lambda: loop.create_task(fails_on_cancel()) and None)
            await loop.synchronize()

    contexts = []
    async with trio_asyncio.open_loop() as loop:
        loop.set_exception_handler(lambda loop, context: contexts.append(context))
        loop.call_soon(lambda: loop.create_task(fails_on_cancel()) and None)
        await loop.synchronize()
    [context] = contexts
    assert isinstance(context["exception"], OSError)
    assert isinstance(context["task"], asyncio.Task)


@pytest.mark.trio
async def test_after_leaving_the_loop_refuses_work():
    async with trio_asyncio.open_loop() as loop:
        pass
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        loop.call_soon(print)
    with pytest.raises(RuntimeError, match="closed"):
        loop.run_trio(trio.sleep, 0)


@pytest.mark.trio
async def test_run_calls_on_a_closed_loop_say_it_is_closed_and_close_the_coroutine():
    # The stdlib's order of checks: "closed" wins over "driven by Trio".
    async with trio_asyncio.open_loop() as loop:
        pass
    coro = asyncio.sleep(0)
    with pytest.raises(RuntimeError, match=r"^Event loop is closed$"):
        loop.run_until_complete(coro)
    assert coro.cr_frame is None  # no "never awaited" warning later
    with pytest.raises(RuntimeError, match=r"^Event loop is closed$"):
        loop.run_forever()


def test_open_loop_in_asyncio_code_says_it_needs_trio():
    async def main():
        async with trio_asyncio.open_loop():
            pass  # pragma: no cover

    # Not Trio's own error from deep inside open_nursery() (an AttributeError).
    with pytest.raises(RuntimeError, match=r"must be used in Trio code, inside trio\.run\(\)"):
        asyncio.run(main())


@pytest.mark.trio
async def test_waiting_on_a_future_of_a_closed_loop_is_an_error(autojump_clock):
    async with trio_asyncio.open_loop() as loop:
        fut = loop.create_future()
    with trio.move_on_after(100):
        with pytest.raises(RuntimeError, match="closed"):
            await loop.run_aio_future(fut)
        return
    pytest.fail("run_aio_future() blocked on a closed loop")


@pytest.mark.trio
async def test_the_loop_can_be_stopped_and_waited_for():
    async with trio_asyncio.open_loop() as loop:
        log = []

        def stopper():
            log.append("stopping")
            loop.stop()

        loop.call_soon(stopper)
        loop.call_soon(log.append, "same batch")
        await loop.wait_stopped()
        # As in asyncio: the batch that called stop() runs to its end.
        assert log == ["stopping", "same batch"]
        assert not loop.is_running()
    assert loop.is_closed()
