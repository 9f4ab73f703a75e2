"""Scheduling on the loop core: handles, batches, timers, time, futures and tasks.

Tests taking ``aio_run`` run the same asyncio scenario on the stdlib loop and
on ours and check both against one expected result: the stdlib run proves
the expectation, the trio-asyncio run checks that we match it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import subprocess
import sys
import textwrap
import threading
import time
import weakref
from asyncio import Handle, TimerHandle
from unittest import mock

import pytest
import sniffio
import trio
import trio.testing
from hypothesis import given, settings, strategies as st

import trio_asyncio

var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")


# ---- handles ---------------------------------------------------------------


def test_call_soon_returns_a_handle_and_runs_fifo(aio_run):
    async def scenario():
        loop = asyncio.get_running_loop()
        log = []
        handles = [loop.call_soon(log.append, i) for i in range(20)]
        assert all(type(h) is Handle for h in handles)
        await asyncio.sleep(0)
        return log

    assert aio_run(scenario) == list(range(20))


def test_call_later_and_call_at_return_timer_handles(aio_run):
    async def scenario():
        loop = asyncio.get_running_loop()
        log = []
        now = loop.time()
        later = loop.call_later(0, log.append, "later")
        at = loop.call_at(now - 1, log.append, "at")
        assert isinstance(later, TimerHandle) and isinstance(at, TimerHandle)
        assert at.when() == now - 1
        assert later.when() >= now
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return log

    # Both due: the earlier deadline runs first.
    assert aio_run(scenario) == ["at", "later"]


def test_none_delay_or_deadline_is_a_type_error(trio_aio_run):
    async def scenario():
        loop = asyncio.get_running_loop()
        with pytest.raises(TypeError):
            loop.call_later(None, print)
        with pytest.raises(TypeError):
            loop.call_at(None, print)
        return "ok"

    assert trio_aio_run(scenario) == "ok"


def test_context_argument_is_honoured_by_every_scheduling_call(aio_run):
    async def scenario():
        loop = asyncio.get_running_loop()
        ctx = contextvars.copy_context()
        ctx.run(var.set, "in ctx")
        seen = []

        def record(name):
            seen.append((name, var.get()))

        loop.call_soon(record, "soon", context=ctx)
        loop.call_later(0, record, "later", context=ctx)
        loop.call_at(loop.time() - 1, record, "at", context=ctx)
        loop.call_soon_threadsafe(record, "threadsafe", context=ctx)
        loop.call_soon(record, "no context")
        for _ in range(3):
            await asyncio.sleep(0)
        return sorted(seen)

    assert aio_run(scenario) == [
        ("at", "in ctx"),
        ("later", "in ctx"),
        ("no context", "unset"),
        ("soon", "in ctx"),
        ("threadsafe", "in ctx"),
    ]


def test_callback_context_changes_stay_in_that_context(aio_run):
    async def scenario():
        loop = asyncio.get_running_loop()
        ctx = contextvars.copy_context()
        done = loop.create_future()
        loop.call_soon(var.set, "changed", context=ctx)
        loop.call_soon(done.set_result, None)
        await done
        return var.get(), ctx[var]

    assert aio_run(scenario) == ("unset", "changed")


# ---- batches -----------------------------------------------------------------


def test_callbacks_scheduled_by_callbacks_run_in_the_next_batch(aio_run):
    async def scenario():
        loop = asyncio.get_running_loop()
        log = []

        def chain(name, depth):
            log.append(f"{name}{depth}")
            if depth:
                loop.call_soon(chain, name, depth - 1)

        async def task(name):
            for i in range(3):
                log.append(f"{name}.{i}")
                await asyncio.sleep(0)

        loop.call_soon(chain, "a", 3)
        worker = loop.create_task(task("T"))
        loop.call_soon(chain, "b", 1)
        await worker
        for _ in range(3):
            await asyncio.sleep(0)
        return log

    assert aio_run(scenario) == [
        "a3",
        "T.0",
        "b1",
        "a2",
        "T.1",
        "b0",
        "a1",
        "T.2",
        "a0",
    ]


def test_a_batch_does_not_keep_its_last_callback_alive(aio_run_every_driver):
    # A callback's error keeps, through its traceback, the frame that ran
    # the batch. That frame must not hold the batch's last callback: here a
    # task step, and through it the task and its result (anyio's test suite
    # checks this for task-group errors).
    class Result:
        pass

    async def main():
        loop = asyncio.get_running_loop()
        errors = []
        loop.set_exception_handler(lambda loop, context: errors.append(context["exception"]))

        async def child():
            return Result()

        def fails():
            raise ValueError("kept with its traceback")

        loop.call_soon(fails)
        task = loop.create_task(child())  # its first step ends the same batch
        result = weakref.ref(await task)
        del task
        await asyncio.sleep(0)  # out of the callback that woke us with the task
        assert len(errors) == 1
        return result() is None

    assert aio_run_every_driver(main) is True


def test_timers_follow_a_patched_loop_time(aio_run_every_driver):
    # Test suites (aiohttp's, for one) patch loop.time() to make timers due.
    async def main():
        loop = asyncio.get_running_loop()
        now = loop.time()
        fired = []
        with mock.patch.object(loop, "time", return_value=now):
            loop.call_later(3600, fired.append, "an hour later")
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            assert fired == []
            loop.time.return_value = now + 3600
            await asyncio.sleep(0)
            await asyncio.sleep(0)
        return fired

    assert aio_run_every_driver(main) == ["an hour later"]


def test_a_due_timer_runs_after_callbacks_queued_before_it_was_due(aio_run):
    async def scenario():
        loop = asyncio.get_running_loop()
        log = []
        done = loop.create_future()
        loop.call_soon(log.append, "soon1")
        loop.call_later(0, log.append, "timer")
        loop.call_at(loop.time() - 5, log.append, "past timer")
        loop.call_soon(log.append, "soon2")

        def next_batch():
            log.append("next batch")
            loop.call_soon(done.set_result, None)

        loop.call_soon(loop.call_soon, next_batch)
        await done
        return log

    # The timers became due after soon1/soon2 were queued, so they run after
    # them but in the same iteration, before anything the batch scheduled.
    assert aio_run(scenario) == ["soon1", "soon2", "past timer", "timer", "next batch"]


def test_a_callback_cancelled_by_an_earlier_one_in_its_batch_does_not_run(aio_run):
    async def scenario():
        loop = asyncio.get_running_loop()
        log = []
        victims = []

        def killer():
            log.append("killer")
            for handle in victims:
                handle.cancel()

        loop.call_soon(killer)
        victims.append(loop.call_soon(log.append, "victim"))
        victims.append(loop.call_at(loop.time() - 1, log.append, "due victim"))
        loop.call_soon(log.append, "survivor")
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return log, [h.cancelled() for h in victims]

    assert aio_run(scenario) == (["killer", "survivor"], [True, True])


@st.composite
def _programs(draw):
    """A random schedule: call_soon / call_at in the past / cancel, some nested."""
    ops = []
    past = iter(range(1, 1000))
    for i in range(draw(st.integers(1, 25))):
        kind = draw(st.sampled_from(["soon", "at", "soon_ts"]))
        children = draw(st.integers(0, 2))
        cancel = draw(st.booleans()) and draw(st.booleans())
        ops.append((i, kind, next(past), children, cancel))
    return ops


def _run_program(ops, runner):
    async def scenario():
        loop = asyncio.get_running_loop()
        base = loop.time()
        log = []
        handles = {}

        def callback(name, children):
            log.append(name)
            for c in range(children):
                loop.call_soon(log.append, f"{name}/{c}")

        for i, kind, past, children, _cancel in ops:
            if kind == "soon":
                handles[i] = loop.call_soon(callback, i, children)
            elif kind == "soon_ts":
                handles[i] = loop.call_soon_threadsafe(callback, i, children)
            else:
                handles[i] = loop.call_at(base - past, callback, i, children)
        for i, *_, cancel in ops:
            if cancel:
                handles[i].cancel()
        for _ in range(4):
            await asyncio.sleep(0)
        return log

    return runner(scenario)


@settings(max_examples=25, deadline=None)
@given(_programs())
def test_random_schedules_run_in_the_same_order_as_on_the_stdlib_loop(ops):
    def stdlib(fn):
        loop = asyncio.SelectorEventLoop()
        try:
            return loop.run_until_complete(fn())
        finally:
            loop.close()

    def ours(fn):
        return trio_asyncio.run(trio_asyncio.aio_as_trio(fn))

    assert _run_program(ops, ours) == _run_program(ops, stdlib)


# ---- timers and time --------------------------------------------------------


@pytest.mark.trio
async def test_timers_fire_at_their_deadline_in_deadline_order(autojump_clock):
    async with trio_asyncio.open_loop() as loop:
        fired = []

        async def scenario():
            start = loop.time()
            for delay in (3, 1, 2, 1.5):
                loop.call_later(delay, lambda d=delay: fired.append((d, loop.time() - start)))
            await asyncio.sleep(10)

        await trio_asyncio.aio_as_trio(scenario)()
        assert fired == [(1, 1), (1.5, 1.5), (2, 2), (3, 3)]


@pytest.mark.trio
async def test_many_cancelled_timers_delay_nothing_and_never_run(autojump_clock):
    async with trio_asyncio.open_loop() as loop:
        fired = []

        async def scenario():
            start = loop.time()
            doomed = [loop.call_later(0.001 * (i + 1), fired.append, i) for i in range(1000)]
            live = [
                loop.call_later(delay, lambda d=delay: fired.append((d, loop.time() - start)))
                for delay in (0.5, 5)
            ]
            for handle in doomed:
                handle.cancel()
            # Cancel again: must not count twice.
            doomed[0].cancel()
            await asyncio.sleep(6)
            return [h.cancelled() for h in doomed], [h.cancelled() for h in live]

        doomed_state, live_state = await trio_asyncio.aio_as_trio(scenario)()
        assert all(doomed_state) and not any(live_state)
        assert fired == [(0.5, 0.5), (5, 5)]

        # After the clean-up the heap still works for new timers.
        async def after():
            start = loop.time()
            handle = loop.call_later(1, lambda: fired.append(("again", loop.time() - start)))
            await asyncio.sleep(2)
            return handle

        await trio_asyncio.aio_as_trio(after)()
        assert fired[-1] == ("again", 1)


@pytest.mark.trio
async def test_cancelling_most_timers_keeps_the_live_ones_in_order(autojump_clock):
    async with trio_asyncio.open_loop() as loop:
        fired = []

        async def scenario():
            handles = [loop.call_later(1 + i / 100, fired.append, i) for i in range(1000)]
            for i, handle in enumerate(handles):
                if i % 7:
                    handle.cancel()
            await asyncio.sleep(20)

        await trio_asyncio.aio_as_trio(scenario)()
        assert fired == list(range(0, 1000, 7))


@pytest.mark.trio
async def test_a_timer_added_from_trio_wakes_a_sleeping_loop_in_time(autojump_clock):
    async with trio_asyncio.open_loop() as loop:
        # The scheduler is parked with no timers at all.
        await trio.sleep(1)
        fired = trio.Event()
        start = trio.current_time()
        loop.call_later(3, fired.set)
        await fired.wait()
        assert trio.current_time() - start == 3


@pytest.mark.trio
async def test_an_earlier_timer_added_from_trio_wakes_the_loop_earlier(autojump_clock):
    async with trio_asyncio.open_loop() as loop:
        late = loop.call_later(100, print)
        await trio.sleep(1)
        fired = trio.Event()
        start = trio.current_time()
        loop.call_later(2, fired.set)
        await fired.wait()
        assert trio.current_time() - start == 2
        late.cancel()


def test_time_follows_monotonic_under_the_default_clock():
    async def main():
        async with trio_asyncio.open_loop() as loop:
            before = time.monotonic()
            now = loop.time()
            after = time.monotonic()
            return before, now, after

    before, now, after = trio.run(main)
    assert before <= now <= after


@pytest.mark.trio
async def test_time_follows_trios_mock_clock(autojump_clock):
    async with trio_asyncio.open_loop() as loop:
        assert loop.time() == trio.current_time()
        autojump_clock.jump(1000)
        assert loop.time() == trio.current_time()

        async def sleep_an_hour():
            start = loop.time()
            await asyncio.sleep(3600)
            return loop.time() - start

        assert await trio_asyncio.aio_as_trio(sleep_an_hour)() == 3600


# ---- futures and tasks -----------------------------------------------------------


def test_create_future_makes_an_asyncio_future_of_this_loop(aio_run):
    async def scenario():
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        assert type(fut) is asyncio.Future
        assert fut.get_loop() is loop
        loop.call_soon(fut.set_result, 7)
        return await fut

    assert aio_run(scenario) == 7


async def _read_var():
    await asyncio.sleep(0)
    return var.get()


def test_create_task_with_a_name(aio_run):
    async def scenario():
        loop = asyncio.get_running_loop()
        task = loop.create_task(_read_var(), name="reader")
        other = asyncio.create_task(_read_var(), name="other")
        await asyncio.gather(task, other)
        return isinstance(task, asyncio.Task), task.get_name(), other.get_name()

    assert aio_run(scenario) == (True, "reader", "other")


@pytest.mark.skipif(sys.version_info < (3, 11), reason="context= is new in 3.11")
def test_create_task_runs_in_the_given_context(aio_run):
    async def scenario():
        loop = asyncio.get_running_loop()
        ctx = contextvars.copy_context()
        ctx.run(var.set, "given")

        async def read_and_set():
            value = var.get()
            var.set("set by task")
            return value

        value = await loop.create_task(read_and_set(), context=ctx)
        return value, ctx[var], var.get()

    assert aio_run(scenario) == ("given", "set by task", "unset")


def test_create_task_accepts_a_context_on_every_python(trio_aio_run):
    async def scenario():
        loop = asyncio.get_running_loop()
        ctx = contextvars.copy_context()
        ctx.run(var.set, "given")
        return await loop.create_task(_read_var(), context=ctx)

    assert trio_aio_run(scenario) == "given"


class _MarkedTask(asyncio.Task):
    pass


def test_task_factory_is_used_and_names_still_apply(aio_run):
    async def scenario():
        loop = asyncio.get_running_loop()
        calls = []

        def factory(loop, coro, **kwargs):
            calls.append(sorted(kwargs))
            return _MarkedTask(coro, loop=loop, **kwargs)

        assert loop.get_task_factory() is None
        loop.set_task_factory(factory)
        assert loop.get_task_factory() is factory
        try:
            named = loop.create_task(_read_var(), name="named")
            implicit = asyncio.ensure_future(_read_var())
            await asyncio.gather(named, implicit)
        finally:
            loop.set_task_factory(None)
        assert loop.get_task_factory() is None
        plain = loop.create_task(_read_var())
        await plain
        return (
            type(named).__name__,
            named.get_name(),
            type(implicit).__name__,
            type(plain).__name__,
            calls,
        )

    assert aio_run(scenario) == ("_MarkedTask", "named", "_MarkedTask", "Task", [[], []])


@pytest.mark.skipif(sys.version_info < (3, 11), reason="context= is new in 3.11")
def test_task_factory_receives_the_context(aio_run):
    async def scenario():
        loop = asyncio.get_running_loop()
        seen = []

        def factory(loop, coro, **kwargs):
            seen.append(kwargs.get("context"))
            return asyncio.Task(coro, loop=loop, **kwargs)

        ctx = contextvars.copy_context()
        ctx.run(var.set, "factory ctx")
        loop.set_task_factory(factory)
        try:
            value = await loop.create_task(_read_var(), context=ctx)
        finally:
            loop.set_task_factory(None)
        return value, seen == [ctx]

    assert aio_run(scenario) == ("factory ctx", True)


def test_a_non_callable_task_factory_is_a_type_error(aio_run):
    async def scenario():
        loop = asyncio.get_running_loop()
        with pytest.raises(TypeError):
            loop.set_task_factory(42)
        return loop.get_task_factory()

    assert aio_run(scenario) is None


@pytest.mark.skipif(sys.version_info < (3, 12), reason="eager tasks are new in 3.12")
def test_eager_task_factory_runs_the_first_step_at_once(aio_run):
    async def scenario():
        loop = asyncio.get_running_loop()
        log = []

        async def step(name):
            log.append(f"{name} start")
            await asyncio.sleep(0)
            log.append(f"{name} end")
            return name

        async def instant():
            return "instant"

        loop.set_task_factory(asyncio.eager_task_factory)
        try:
            first = asyncio.create_task(step("a"))
            log.append("created")
            quick = loop.create_task(instant())
            log.append(("quick done", quick.done()))
            await first
        finally:
            loop.set_task_factory(None)
        return log, quick.result()

    assert aio_run(scenario) == (
        ["a start", "created", ("quick done", True), "a end"],
        "instant",
    )


@pytest.mark.skipif(sys.version_info < (3, 12), reason="eager tasks are new in 3.12")
@pytest.mark.trio
async def test_an_eager_task_started_from_trio_sees_asyncio():
    async with trio_asyncio.open_loop() as loop:

        async def first_step():
            # Before the first await: this part runs eagerly.
            return sniffio.current_async_library(), asyncio.get_running_loop() is loop

        loop.set_task_factory(asyncio.eager_task_factory)
        assert await trio_asyncio.aio_as_trio(first_step)() == ("asyncio", True)
        assert sniffio.current_async_library() == "trio"


# ---- debug mode ------------------------------------------------------------------


def test_debug_mode_can_be_switched(aio_run):
    async def scenario():
        loop = asyncio.get_running_loop()
        loop.set_debug(True)
        on = loop.get_debug()

        async def coro_fn():
            pass

        # Debug mode checks the callbacks it is given.
        with pytest.raises(TypeError):
            loop.call_soon(coro_fn)
        with pytest.raises(TypeError):
            loop.call_later(1, coro_fn)
        loop.set_debug(False)
        return on, loop.get_debug()

    assert aio_run(scenario) == (True, False)


def test_debug_mode_follows_pythonasynciodebug(aio_run, monkeypatch):
    monkeypatch.setenv("PYTHONASYNCIODEBUG", "1")

    async def scenario():
        return asyncio.get_running_loop().get_debug()

    assert aio_run(scenario) is True


def test_a_non_callable_callback_is_a_type_error(trio_aio_run):
    # Stricter than the stdlib, which only checks in debug mode.
    async def scenario():
        loop = asyncio.get_running_loop()
        with pytest.raises(TypeError):
            loop.call_soon(42)
        with pytest.raises(TypeError):
            loop.call_soon_threadsafe(42)
        return "ok"

    assert trio_aio_run(scenario) == "ok"


def test_debug_mode_logs_slow_callbacks(trio_aio_run, caplog):
    async def scenario():
        loop = asyncio.get_running_loop()
        loop.set_debug(True)
        loop.slow_callback_duration = 0.02

        def slow():
            # Slow-callback timing uses the real perf_counter: busy-wait.
            end = time.perf_counter() + 0.04
            while time.perf_counter() < end:
                pass

        loop.call_soon(slow)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        loop.set_debug(False)

    with caplog.at_level("WARNING", logger="asyncio"):
        trio_aio_run(scenario)
    slow_records = [r for r in caplog.records if "took" in r.getMessage()]
    assert slow_records
    assert slow_records[0].name == "asyncio"
    assert slow_records[0].getMessage().startswith("Executing <Handle")
    assert "took" in slow_records[0].getMessage()


# ---- lifecycle -----------------------------------------------------------------


@pytest.mark.trio
async def test_running_and_closed_state():
    async with trio_asyncio.open_loop() as loop:
        assert loop.is_running()
        assert not loop.is_closed()
        with pytest.raises(RuntimeError, match="running"):
            loop.close()

        async def check():
            return asyncio.get_running_loop().is_running()

        assert await trio_asyncio.aio_as_trio(check)()
    assert not loop.is_running()
    assert loop.is_closed()
    loop.close()  # closing again is harmless


@pytest.mark.trio
async def test_run_until_complete_and_run_forever_say_what_to_use_instead():
    async with trio_asyncio.open_loop() as loop:

        async def never_run():
            raise AssertionError("must not run")

        coro = never_run()
        with pytest.raises(RuntimeError, match="aio_as_trio"):
            loop.run_until_complete(coro)
        # The coroutine was closed, so it cannot warn "never awaited".
        assert coro.cr_frame is None
        with pytest.raises(RuntimeError, match="aio_as_trio"):
            loop.run_forever()

        async def from_asyncio():
            with pytest.raises(RuntimeError, match="aio_as_trio"):
                asyncio.get_running_loop().run_forever()
            return "ok"

        assert await trio_asyncio.aio_as_trio(from_asyncio)() == "ok"


def test_the_closed_loop_refuses_new_work():
    async def main():
        async with trio_asyncio.open_loop() as loop:
            pass
        return loop

    loop = trio.run(main)
    for call in (
        lambda: loop.call_soon(print),
        lambda: loop.call_later(1, print),
        lambda: loop.call_at(1, print),
        lambda: loop.call_soon_threadsafe(print),
        lambda: loop.run_in_executor(None, print),
    ):
        with pytest.raises(RuntimeError, match="Event loop is closed"):
            call()

    async def coro():
        pass

    c = coro()
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        loop.create_task(c)
    c.close()


@pytest.mark.trio
async def test_stop_from_trio_runs_what_was_queued_then_wait_stopped():
    async with trio_asyncio.open_loop() as loop:
        ran = []
        loop.call_soon(ran.append, "before stop")
        loop.stop()
        await loop.wait_stopped()
        assert not loop.is_running()
        assert ran == ["before stop"]
    assert loop.is_closed()


_STOP_THEN_LEAVE = """
import trio, trio_asyncio
async def main():
    async with trio_asyncio.open_loop() as loop:
        loop.stop()
    print("closed", loop.is_closed())
trio.run(main)
"""


def test_leaving_open_loop_right_after_stop_does_not_hang():
    # (loop.call_soon(loop.stop) just before leaving hangs the same way.)
    code = textwrap.dedent(_STOP_THEN_LEAVE)
    try:
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=5
        )
    except subprocess.TimeoutExpired:
        pytest.fail("leaving open_loop() after loop.stop() hangs")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "closed True"


# ---- threads -----------------------------------------------------------------------


def test_non_threadsafe_calls_from_another_thread_are_refused(trio_aio_run):
    async def scenario():
        loop = asyncio.get_running_loop()

        def from_thread():
            errors = []
            for call in (
                lambda: loop.call_soon(print),
                lambda: loop.call_later(1, print),
                lambda: loop.call_at(loop.time() + 1, print),
            ):
                try:
                    call()
                except RuntimeError as exc:
                    errors.append(str(exc))
            return errors

        return await loop.run_in_executor(None, from_thread)

    errors = trio_aio_run(scenario)
    assert len(errors) == 3
    assert all("call_soon_threadsafe" in message for message in errors)


def test_call_soon_threadsafe_keeps_each_threads_order(aio_run):
    async def scenario():
        loop = asyncio.get_running_loop()
        got = []
        n_threads, per_thread = 6, 300
        barrier = threading.Barrier(n_threads)

        def post(k):
            barrier.wait()
            for i in range(per_thread):
                loop.call_soon_threadsafe(got.append, (k, i))

        with concurrent.futures.ThreadPoolExecutor(n_threads) as pool:
            await asyncio.gather(*[loop.run_in_executor(pool, post, k) for k in range(n_threads)])
        # Each thread's posts were queued before its own completion callback.
        return [[i for kk, i in got if kk == k] for k in range(n_threads)]

    assert aio_run(scenario) == [list(range(300))] * 6


@pytest.mark.trio
async def test_call_soon_threadsafe_wakes_a_parked_loop():
    async with trio_asyncio.open_loop() as loop:
        woken = trio.Event()

        def from_thread():
            loop.call_soon_threadsafe(woken.set)

        await trio.to_thread.run_sync(from_thread)
        with trio.fail_after(10):
            await woken.wait()
