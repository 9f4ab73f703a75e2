"""Cross-calls: asyncio seen from Trio (``aio_as_trio``) and Trio seen from asyncio."""

from __future__ import annotations

import asyncio
import contextvars
import sys
import threading
from contextlib import asynccontextmanager

import pytest
import sniffio
import trio
import trio.testing

import trio_asyncio
from trio_asyncio import aio_as_trio, trio_as_aio

if sys.version_info < (3, 11):
    from exceptiongroup import ExceptionGroup

var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")


async def aio_add(a, b=0):
    assert sniffio.current_async_library() == "asyncio"
    await asyncio.sleep(0)
    return a + b


async def trio_mul(a, b=1):
    assert sniffio.current_async_library() == "trio"
    await trio.sleep(0)
    return a * b


# ---- aio_as_trio ---------------------------------------------------------------


@pytest.mark.trio
async def test_aio_as_trio_on_a_coroutine_function_with_args_and_kwargs():
    async with trio_asyncio.open_loop():
        assert await aio_as_trio(aio_add)(1, b=2) == 3
        wrapped = aio_as_trio(aio_add)
        assert aio_as_trio(wrapped) is wrapped
        assert trio_asyncio.asyncio_as_trio is aio_as_trio


@pytest.mark.trio
async def test_aio_as_trio_on_a_coroutine_a_future_and_an_awaitable():
    class Awaitable:
        def __await__(self):
            return aio_add(40, 2).__await__()

    async with trio_asyncio.open_loop() as loop:
        assert await aio_as_trio(aio_add(5)) == 5

        fut = loop.create_future()
        loop.call_soon(fut.set_result, "from a future")
        assert await aio_as_trio(fut) == "from a future"

        assert await aio_as_trio(Awaitable()) == 42


@pytest.mark.trio
async def test_aio_as_trio_on_a_plain_function_returning_asyncio_work():
    async with trio_asyncio.open_loop() as loop:
        # Called in asyncio context; the coroutine or future it returns is awaited.
        assert await aio_as_trio(lambda: aio_add(2, 3))() == 5

        def start_job():
            assert sniffio.current_async_library() == "asyncio"
            return asyncio.get_running_loop().run_in_executor(None, int, "17")

        assert await aio_as_trio(start_job)() == 17
        assert await aio_as_trio(asyncio.ensure_future)(aio_add(1, 1)) == 2
        assert loop.is_running()


@pytest.mark.trio
async def test_aio_as_trio_as_a_decorator_on_functions_and_methods():
    @aio_as_trio
    async def double(x):
        await asyncio.sleep(0)
        return 2 * x

    class Counter:
        def __init__(self):
            self.total = 0

        @aio_as_trio
        async def add(self, amount):
            await asyncio.sleep(0)
            self.total += amount
            return self.total

    async with trio_asyncio.open_loop():
        assert await double(21) == 42
        counter = Counter()
        assert await counter.add(3) == 3
        assert await counter.add(4) == 7
        assert Counter.add is Counter.__dict__["add"]  # unbound: the wrapper itself


@pytest.mark.trio
async def test_aio_as_trio_iterates_async_generators_and_iterators():
    async def agen(n):
        for i in range(n):
            await asyncio.sleep(0)
            yield sniffio.current_async_library(), i

    class Countdown:
        def __init__(self, n):
            self.n = n

        def __aiter__(self):
            return self

        async def __anext__(self):
            await asyncio.sleep(0)
            if self.n == 0:
                raise StopAsyncIteration
            self.n -= 1
            return self.n

    async with trio_asyncio.open_loop() as loop:
        assert [x async for x in aio_as_trio(agen(3))] == [("asyncio", i) for i in range(3)]
        assert [x async for x in aio_as_trio(Countdown(3))] == [2, 1, 0]
        got = [x async for x in trio_asyncio.run_aio_generator(loop, agen(2))]
        assert got == [("asyncio", 0), ("asyncio", 1)]


@pytest.mark.trio
async def test_aio_as_trio_enters_async_context_managers():
    log = []

    @asynccontextmanager
    async def resource(name):
        await asyncio.sleep(0)
        log.append(("enter", sniffio.current_async_library()))
        try:
            yield name
        except KeyError as exc:
            log.append(("saw", exc.args[0]))
            raise
        finally:
            await asyncio.sleep(0)
            log.append("exit")

    class Suppressing:
        async def __aenter__(self):
            return self

        async def __aexit__(self, *exc_info):
            log.append(("suppress", exc_info[0].__name__))
            return True

    async with trio_asyncio.open_loop():
        async with aio_as_trio(resource("r")) as value:
            assert value == "r"
        with pytest.raises(KeyError):
            async with aio_as_trio(resource("r")):
                raise KeyError("inner")
        async with aio_as_trio(Suppressing()):
            raise ValueError("swallowed")

        lock = asyncio.Lock()
        async with aio_as_trio(lock):
            assert lock.locked()
        assert not lock.locked()
    assert log == [
        ("enter", "asyncio"),
        "exit",
        ("enter", "asyncio"),
        ("saw", "inner"),
        "exit",
        ("suppress", "ValueError"),
    ]


@pytest.mark.trio
async def test_aio_as_trio_with_an_explicit_loop():
    async with trio_asyncio.open_loop() as outer:
        async with trio_asyncio.open_loop():

            async def which():
                return asyncio.get_running_loop()

            assert await aio_as_trio(which, loop=outer)() is outer
            assert await trio_asyncio.run_aio_coroutine(which(), loop=outer) is outer


@pytest.mark.trio
async def test_aio_as_trio_outside_open_loop_says_what_to_do():
    with pytest.raises(RuntimeError, match="open_loop"):
        await aio_as_trio(aio_add)(1)


# ---- trio_as_aio -----------------------------------------------------------------


def test_trio_as_aio_on_a_function_with_args_and_kwargs(trio_aio_run):
    async def scenario():
        fut = trio_as_aio(trio_mul)(6, b=7)
        assert isinstance(fut, asyncio.Future)
        wrapped = trio_as_aio(trio_mul)
        assert trio_as_aio(wrapped) is wrapped
        assert trio_asyncio.trio_as_asyncio is trio_as_aio
        return await fut, await wrapped(3)

    assert trio_aio_run(scenario) == (42, 3)


def test_trio_as_aio_on_a_trio_awaitable(trio_aio_run):
    async def scenario():
        return await trio_as_aio(trio_mul(5, 5))

    assert trio_aio_run(scenario) == 25


def test_trio_as_aio_as_a_decorator_on_functions_and_methods(trio_aio_run):
    @trio_as_aio
    async def triple(x):
        await trio.sleep(0)
        return 3 * x

    class Store:
        def __init__(self):
            self.items = []

        @trio_as_aio
        async def put(self, item):
            await trio.sleep(0)
            self.items.append(item)
            return len(self.items)

    async def scenario():
        store = Store()
        return await triple(5), await store.put("a"), await store.put("b"), store.items

    assert trio_aio_run(scenario) == (15, 1, 2, ["a", "b"])


def test_trio_as_aio_iterates_trio_async_generators(trio_aio_run):
    async def numbers(n):
        for i in range(n):
            await trio.sleep(0)
            yield sniffio.current_async_library(), i

    async def scenario():
        return [x async for x in trio_as_aio(numbers(3))]

    assert trio_aio_run(scenario) == [("trio", 0), ("trio", 1), ("trio", 2)]


def test_trio_as_aio_enters_async_context_managers(trio_aio_run):
    log = []

    @asynccontextmanager
    async def resource():
        await trio.sleep(0)
        log.append(("enter", sniffio.current_async_library()))
        try:
            yield "value"
        finally:
            log.append("exit")

    async def scenario():
        async with trio_as_aio(resource()) as value:
            log.append(("body", value, sniffio.current_async_library()))
        with pytest.raises(IndexError):
            async with trio_as_aio(resource()):
                raise IndexError("body failed")
        return log

    assert trio_aio_run(scenario) == [
        ("enter", "trio"),
        ("body", "value", "asyncio"),
        "exit",
        ("enter", "trio"),
        "exit",
    ]


def test_trio_as_aio_on_a_trio_lock(trio_aio_run):
    lock = trio.Lock()

    async def scenario():
        async with trio_as_aio(lock):
            held = lock.locked()
        return held, lock.locked()

    assert trio_aio_run(scenario) == (True, False)


def test_trio_as_aio_needs_a_trio_asyncio_loop():
    async def scenario():
        with pytest.raises(RuntimeError, match="trio-asyncio loop"):
            trio_as_aio(trio_mul)(1)
        return "ok"

    loop = asyncio.SelectorEventLoop()
    try:
        assert loop.run_until_complete(scenario()) == "ok"
    finally:
        loop.close()


# ---- function-style entry points ---------------------------------------------------


@pytest.mark.trio
async def test_run_aio_coroutine_and_run_aio_future():
    async with trio_asyncio.open_loop() as loop:
        assert await trio_asyncio.run_aio_coroutine(aio_add(1, 2)) == 3
        assert await loop.run_aio_coroutine(aio_add(2, 2)) == 4
        fut = loop.create_future()
        loop.call_later(0, fut.set_result, "done")
        assert await trio_asyncio.run_aio_future(fut) == "done"
        # An already finished future.
        assert await loop.run_aio_future(fut) == "done"


@pytest.mark.trio
async def test_loop_run_aio_future_refuses_a_future_it_could_never_wake_up_for():
    """The method checks what the adapters check (it used to wait for ever)."""
    stdlib_loop = asyncio.SelectorEventLoop()
    other = trio_asyncio.new_event_loop()
    ready = threading.Event()
    other.call_soon(ready.set)
    thread = threading.Thread(target=other.run_forever)
    thread.start()
    try:
        ready.wait()
        async with trio_asyncio.open_loop() as loop:
            with pytest.raises(ValueError, match="not to a trio-asyncio loop"):
                await loop.run_aio_future(stdlib_loop.create_future())
            with pytest.raises(RuntimeError, match="runs in another thread"):
                await loop.run_aio_future(other.create_future())
            # Its own futures are fine.
            fut = loop.create_future()
            loop.call_soon(fut.set_result, "mine")
            assert await loop.run_aio_future(fut) == "mine"
    finally:
        other.call_soon_threadsafe(other.stop)
        thread.join()
        other.close()
        stdlib_loop.close()


@pytest.mark.trio
async def test_loop_run_asyncio_calls_the_function_in_asyncio_context():
    async with trio_asyncio.open_loop() as loop:

        def not_a_coroutine_function(x):
            assert asyncio.get_running_loop() is loop
            return aio_add(x, 1)

        assert await loop.run_asyncio(aio_add, 1, 2) == 3
        assert await loop.run_asyncio(not_a_coroutine_function, 9) == 10


@pytest.mark.trio
async def test_loop_run_trio_is_awaitable_from_both_sides():
    async with trio_asyncio.open_loop() as loop:
        fut = loop.run_trio(trio_mul, 6, 7)
        assert isinstance(fut, asyncio.Future)
        assert await fut == 42  # from Trio

        async def from_asyncio():
            inner = loop.run_trio(trio_mul, 2, 3)
            return await inner, await trio_asyncio.run_trio(trio_mul, 4, 5)

        assert await aio_as_trio(from_asyncio)() == (6, 20)
        assert loop.trio_as_future is not None
        assert await loop.trio_as_future(trio_mul, 3, 3) == 9


@pytest.mark.trio
async def test_run_trio_from_a_plain_callback():
    async with trio_asyncio.open_loop() as loop:
        futures = []
        loop.call_soon(lambda: futures.append(trio_asyncio.run_trio(trio_mul, 5, 5)))
        await loop.synchronize()
        assert await futures[0] == 25


@pytest.mark.trio
async def test_synchronize_waits_for_callbacks_queued_before_it():
    async with trio_asyncio.open_loop() as loop:
        log = []
        for i in range(5):
            loop.call_soon(log.append, i)
        await loop.synchronize()
        assert log == list(range(5))


@pytest.mark.trio
async def test_run_trio_task_runs_in_trio_and_its_errors_end_the_loop():
    ran = trio.Event()
    error = OSError("trio task failed")

    async def ok_task():
        assert sniffio.current_async_library() == "trio"
        ran.set()

    async def failing_task():
        await trio.sleep(0)
        raise error

    async with trio_asyncio.open_loop() as loop:
        loop.call_soon(trio_asyncio.run_trio_task, ok_task)
        await ran.wait()

    with pytest.raises(OSError) as info:
        async with trio_asyncio.open_loop() as loop:
            loop.run_trio_task(failing_task)
            await trio.sleep_forever()
    assert info.value is error


@pytest.mark.trio
async def test_allow_asyncio_awaits_both_trio_and_asyncio_objects(autojump_clock):
    async with trio_asyncio.open_loop() as loop:

        async def mixed():
            await trio.sleep(1)
            fut = loop.create_future()
            loop.call_soon(fut.set_result, "future value")
            value = await fut
            await asyncio.sleep(2)  # an asyncio timer
            failing = loop.create_future()
            loop.call_soon(failing.set_exception, KeyError("k"))
            try:
                await failing
            except KeyError:
                value += " + error seen"
            return value

        start = trio.current_time()
        assert await trio_asyncio.allow_asyncio(mixed) == "future value + error seen"
        assert trio.current_time() - start == 3


@pytest.mark.trio
async def test_allow_asyncio_handles_asyncio_sleep_zero():
    async with trio_asyncio.open_loop():

        async def yields_to_asyncio():
            await asyncio.sleep(0)
            return "ok"

        assert await trio_asyncio.allow_asyncio(yields_to_asyncio) == "ok"


# ---- exceptions -------------------------------------------------------------------


@pytest.mark.trio
async def test_exceptions_cross_both_ways_unchanged():
    async with trio_asyncio.open_loop():
        from_trio = ZeroDivisionError("raised in Trio")
        from_aio = LookupError("raised in asyncio")

        async def trio_fails():
            await trio.sleep(0)
            raise from_trio

        async def aio_fails():
            await asyncio.sleep(0)
            raise from_aio

        async def aio_calls_trio():
            try:
                await trio_as_aio(trio_fails)()
            except ZeroDivisionError as exc:
                return exc

        with pytest.raises(LookupError) as info:
            await aio_as_trio(aio_fails)()
        assert info.value is from_aio
        assert await aio_as_trio(aio_calls_trio)() is from_trio

        # Through two levels: Trio -> asyncio -> Trio -> asyncio.
        async def trio_calls_aio():
            await aio_as_trio(aio_fails)()

        async def aio_calls_trio_calls_aio():
            await trio_as_aio(trio_calls_aio)()

        with pytest.raises(LookupError) as info:
            await aio_as_trio(aio_calls_trio_calls_aio)()
        assert info.value is from_aio


@pytest.mark.trio
async def test_an_asyncio_task_cancelled_from_asyncio_raises_cancelled_error_in_trio():
    async with trio_asyncio.open_loop():

        async def self_cancel():
            asyncio.current_task().cancel()
            await asyncio.sleep(0)

        with pytest.raises(asyncio.CancelledError):
            await aio_as_trio(self_cancel)()


# ---- cancellation: Trio cancels asyncio ----------------------------------------------


@pytest.mark.trio
async def test_a_cancelled_trio_caller_cancels_the_asyncio_task_and_waits_for_it(
    autojump_clock,
):
    log = []
    async with trio_asyncio.open_loop():

        async def slow():
            try:
                await asyncio.sleep(100)
            except asyncio.CancelledError:
                log.append("cancelled")
                raise
            finally:
                await asyncio.sleep(1)  # clean-up that takes time
                log.append("finally done")

        with trio.move_on_after(5) as scope:
            await aio_as_trio(slow)()
        log.append("trio resumed")
        assert scope.cancelled_caught
        assert trio.current_time() == 6
    assert log == ["cancelled", "finally done", "trio resumed"]


@pytest.mark.trio
async def test_cancellation_crosses_a_chain_of_calls_innermost_first(autojump_clock):
    log = []
    async with trio_asyncio.open_loop():

        async def trio_leaf():
            try:
                await trio.sleep_forever()
            finally:
                log.append("trio leaf")

        async def aio_middle():
            try:
                await trio_as_aio(trio_leaf)()
            finally:
                log.append(("aio middle", sniffio.current_async_library()))

        with trio.move_on_after(1):
            await aio_as_trio(aio_middle)()
        log.append("trio caller")
    assert log == ["trio leaf", ("aio middle", "asyncio"), "trio caller"]


def test_no_current_task_in_a_plain_callback(aio_run):
    async def scenario():
        loop = asyncio.get_running_loop()
        seen = loop.create_future()
        loop.call_soon(lambda: seen.set_result(asyncio.current_task()))
        return await seen, asyncio.current_task() is not None

    assert aio_run(scenario) == (None, True)


@pytest.mark.trio
async def test_a_task_swallowing_the_cancel_returns_its_value(autojump_clock):
    # Documented behaviour: the caller gets the value the task returned; the
    # cancellation is delivered at the caller's next checkpoint.
    async with trio_asyncio.open_loop():

        async def stubborn():
            try:
                await asyncio.sleep(100)
            except asyncio.CancelledError:
                return "kept going"

        got = []
        with trio.move_on_after(1) as scope:
            got.append(await aio_as_trio(stubborn)())
            await trio.lowlevel.checkpoint()
            got.append("not reached")
        assert got == ["kept going"]
        assert scope.cancelled_caught


@pytest.mark.trio
async def test_an_already_cancelled_trio_caller_does_not_lose_a_finished_result():
    async with trio_asyncio.open_loop():
        ran = []

        async def side_effect():
            ran.append("ran")
            return "result"

        await trio.testing.wait_all_tasks_blocked()  # the loop is parked
        outcome = []
        with trio.CancelScope() as scope:
            scope.cancel()
            try:
                outcome.append(await aio_as_trio(side_effect)())
            except trio.Cancelled:
                outcome.append("Cancelled")
                raise
        # Either the work did not happen, or its result was delivered.
        assert (ran, outcome) in [([], ["Cancelled"]), (["ran"], ["result"])]


# ---- cancellation: asyncio cancels Trio ----------------------------------------------


@pytest.mark.trio
async def test_cancelling_a_run_trio_future_cancels_the_trio_task_first(autojump_clock):
    log = []
    async with trio_asyncio.open_loop() as loop:

        async def trio_side():
            try:
                await trio.sleep(100)
            finally:
                with trio.CancelScope(shield=True):
                    await trio.sleep(1)
                log.append("trio finally")

        async def scenario():
            fut = loop.run_trio(trio_side)
            await asyncio.sleep(0)
            assert fut.cancel()
            # Cancellation is only requested: the Trio task is still cleaning up.
            log.append(("done right after cancel", fut.done()))
            try:
                await fut
            except asyncio.CancelledError:
                log.append("asyncio saw CancelledError")
            return fut.cancelled(), fut.cancel()

        assert await aio_as_trio(scenario)() == (True, False)
    assert log == [
        ("done right after cancel", False),
        "trio finally",
        "asyncio saw CancelledError",
    ]


@pytest.mark.trio
async def test_cancelling_a_run_trio_future_before_the_trio_task_started():
    log = []
    async with trio_asyncio.open_loop() as loop:

        async def trio_side():
            log.append("started")
            await trio.sleep(0)
            log.append("not reached")

        async def scenario():
            fut = loop.run_trio(trio_side)
            fut.cancel("early")
            with pytest.raises(asyncio.CancelledError):
                await fut
            return fut.cancelled()

        assert await aio_as_trio(scenario)() is True
    assert "not reached" not in log


@pytest.mark.trio
async def test_cancelling_the_asyncio_task_awaiting_trio_code(autojump_clock):
    log = []
    async with trio_asyncio.open_loop():

        async def trio_side():
            try:
                await trio.sleep(100)
            finally:
                log.append("trio finally")

        async def awaiting():
            try:
                await trio_as_aio(trio_side)()
            except asyncio.CancelledError:
                log.append("task cancelled")
                raise

        async def scenario():
            task = asyncio.ensure_future(awaiting())
            await asyncio.sleep(1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return task.cancelled()

        assert await aio_as_trio(scenario)()
    assert log == ["trio finally", "task cancelled"]


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.timeout is new in 3.11")
@pytest.mark.trio
async def test_asyncio_timeout_around_trio_code(autojump_clock):
    log = []
    async with trio_asyncio.open_loop():

        async def trio_side():
            try:
                await trio.sleep(100)
            finally:
                log.append("trio finally")

        async def scenario():
            task = asyncio.current_task()
            start = asyncio.get_running_loop().time()
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(2):
                    await trio_as_aio(trio_side)()
            took = asyncio.get_running_loop().time() - start
            # uncancel() bookkeeping: the timeout took its cancellation back.
            return took, task.cancelling()

        assert await aio_as_trio(scenario)() == (2, 0)
    assert log == ["trio finally"]


@pytest.mark.trio
async def test_wait_for_around_trio_code(autojump_clock):
    log = []
    async with trio_asyncio.open_loop():

        async def trio_side(delay):
            try:
                await trio.sleep(delay)
                return "in time"
            finally:
                log.append("trio finally")

        async def scenario():
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(trio_as_aio(trio_side)(100), 1)
            log.append("timed out")
            value = await asyncio.wait_for(trio_as_aio(trio_side)(1), 5)
            task = asyncio.current_task()
            return value, task.cancelling() if sys.version_info >= (3, 11) else 0

        assert await aio_as_trio(scenario)() == ("in time", 0)
    assert log == ["trio finally", "timed out", "trio finally"]


@pytest.mark.trio
async def test_asyncio_shield_keeps_the_trio_task_running(autojump_clock):
    log = []
    async with trio_asyncio.open_loop():

        async def trio_side():
            await trio.sleep(3)
            log.append("trio finished")
            return "shielded value"

        async def scenario():
            inner = trio_as_aio(trio_side)()
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(inner), 1)
            log.append("outer timed out")
            return await inner

        assert await aio_as_trio(scenario)() == "shielded value"
    assert log == ["outer timed out", "trio finished"]


@pytest.mark.skipif(sys.version_info < (3, 11), reason="TaskGroup is new in 3.11")
@pytest.mark.trio
async def test_task_group_with_a_failing_trio_child(autojump_clock):
    error = KeyError("trio child failed")
    log = []
    async with trio_asyncio.open_loop():

        async def failing():
            await trio.sleep(1)
            raise error

        async def long_running():
            try:
                await trio.sleep(100)
            finally:
                log.append("sibling trio finally")

        async def scenario():
            try:
                async with asyncio.TaskGroup() as group:
                    group.create_task(_awaiting(trio_as_aio(failing)()))
                    group.create_task(_awaiting(trio_as_aio(long_running)()))
            except ExceptionGroup as eg:
                return eg.exceptions, asyncio.current_task().cancelling()

        # (task.cancelling() afterwards is 1 on stdlib 3.11/3.12 too: not checked.)
        exceptions, _ = await aio_as_trio(scenario)()
        assert exceptions == (error,) and exceptions[0] is error
    assert log == ["sibling trio finally"]


async def _awaiting(awaitable):
    return await awaitable


@pytest.mark.trio
async def test_trio_code_that_ignores_the_cancel_still_ends_cancelled(autojump_clock):
    # Trio's cancellation is level-triggered: the caller of a cancelled scope
    # meets Cancelled at its next checkpoint, whatever the callee returned.
    # The asyncio caller gets its CancelledError the same way; a result would
    # swallow its only cancellation.
    steps = []
    async with trio_asyncio.open_loop() as loop:

        async def shielded():
            with trio.CancelScope(shield=True):
                await trio.sleep(1)
            steps.append("finished anyway")
            return "finished anyway"

        async def scenario():
            fut = loop.run_trio(shielded)
            await asyncio.sleep(0)
            fut.cancel()
            with pytest.raises(asyncio.CancelledError):
                await fut
            return fut.cancelled()

        assert await aio_as_trio(scenario)() is True
    assert steps == ["finished anyway"]


# ---- contextvars and sniffio -------------------------------------------------------


@pytest.mark.trio
async def test_contextvars_flow_from_trio_to_asyncio_and_back():
    async with trio_asyncio.open_loop():
        var.set("set in Trio")

        async def aio_side():
            seen = var.get()
            var.set("changed in asyncio")
            return seen, await trio_as_aio(trio_side)()

        async def trio_side():
            seen = var.get()
            var.set("changed in Trio callee")
            return seen

        async def aio_side_then_check():
            result = await aio_side()
            return result, var.get()

        assert await aio_as_trio(aio_side_then_check)() == (
            ("set in Trio", "changed in asyncio"),
            "changed in asyncio",
        )
        # Each side works on a copy: nothing leaks back.
        assert var.get() == "set in Trio"


@pytest.mark.trio
async def test_sniffio_reports_the_right_library_everywhere():
    async with trio_asyncio.open_loop() as outer:
        seen = []

        def callback(where):
            seen.append((where, sniffio.current_async_library()))

        async def aio_side(where):
            seen.append((where, sniffio.current_async_library()))
            await trio_as_aio(trio_side)(where + " > trio")
            seen.append((where + " again", sniffio.current_async_library()))

        async def trio_side(where):
            seen.append((where, sniffio.current_async_library()))

        seen.append(("trio body", sniffio.current_async_library()))
        outer.call_soon(callback, "outer callback")
        await aio_as_trio(aio_side)("outer task")
        async with trio_asyncio.open_loop() as inner:
            inner.call_soon(callback, "inner callback")
            await inner.synchronize()
            await aio_as_trio(aio_side)("inner task")
            seen.append(("nested trio body", sniffio.current_async_library()))
        seen.append(("trio body after", sniffio.current_async_library()))
    assert seen == [
        ("trio body", "trio"),
        ("outer callback", "asyncio"),
        ("outer task", "asyncio"),
        ("outer task > trio", "trio"),
        ("outer task again", "asyncio"),
        ("inner callback", "asyncio"),
        ("inner task", "asyncio"),
        ("inner task > trio", "trio"),
        ("inner task again", "asyncio"),
        ("nested trio body", "trio"),
        ("trio body after", "trio"),
    ]


# ---- misuse ---------------------------------------------------------------------------


@pytest.mark.trio
async def test_awaiting_asyncio_code_from_trio_without_the_adapter_fails_clearly():
    async with trio_asyncio.open_loop() as loop:
        with pytest.raises(RuntimeError, match="no running event loop") as info:
            await asyncio.sleep(0.1)
        assert "aio_as_trio" in str(info.value)
        fut = loop.create_future()
        with pytest.raises(TypeError, match="asyncio"):
            await fut
        fut.cancel()
        # The loop is unharmed.
        assert await aio_as_trio(aio_add)(1, 1) == 2


@pytest.mark.trio
async def test_awaiting_trio_code_from_asyncio_without_the_adapter_fails_clearly():
    async with trio_asyncio.open_loop() as loop:

        async def bad_sleep():
            await trio.sleep(1)

        async def bad_lock():
            async with trio.Lock():
                pass

        async def bad_nursery():
            async with trio.open_nursery():
                pass

        for bad in (bad_sleep, bad_lock, bad_nursery):
            with pytest.raises(RuntimeError, match="trio_as_aio"):
                await aio_as_trio(bad)()

        # A plain callback that uses Trio: reported, and the loop survives.
        contexts = []
        loop.set_exception_handler(lambda loop, context: contexts.append(context))
        loop.call_soon(lambda: trio.lowlevel.current_task().name)
        await loop.synchronize()
        [context] = contexts
        assert isinstance(context["exception"], RuntimeError)
        assert "trio_as_aio" in str(context["exception"])
        assert await aio_as_trio(aio_add)(2, 2) == 4


@pytest.mark.trio
async def test_trio_sleep_zero_from_asyncio_is_an_error():
    async with trio_asyncio.open_loop():

        async def bad():
            await trio.sleep(0)

        with pytest.raises(RuntimeError):
            await aio_as_trio(bad)()
        assert await aio_as_trio(aio_add)(3) == 3


# (trio.sleep(0) yields to the asyncio task before touching Trio's current
# task, so asyncio reports it as a bad yield: see
# test_trio_sleep_zero_from_asyncio_is_an_error.)
@pytest.mark.parametrize("what", ["Event.wait", "ParkingLot.park"])
@pytest.mark.trio
async def test_more_trio_calls_from_asyncio_mention_trio_as_aio(what):
    async def bad():
        if what == "trio.sleep(0)":
            await trio.sleep(0)
        elif what == "Event.wait":
            await trio.Event().wait()
        else:
            await trio.lowlevel.ParkingLot().park()

    async with trio_asyncio.open_loop():
        with pytest.raises(RuntimeError, match="trio_as_aio"):
            await aio_as_trio(bad)()


@pytest.mark.trio
async def test_misusing_a_trio_event_from_asyncio_does_not_break_it_for_trio():
    async with trio_asyncio.open_loop():
        event = trio.Event()

        async def bad():
            await event.wait()

        with pytest.raises(RuntimeError):
            await aio_as_trio(bad)()
        event.set()  # legitimate Trio code
        assert event.statistics().tasks_waiting == 0
