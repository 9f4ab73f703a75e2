"""``run_in_executor``: the default executor, user executors and ``TrioExecutor``."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import sys
import threading

import pytest
import trio
import trio.testing

import trio_asyncio
from trio_asyncio import TrioExecutor

var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")


def _thread_name(*args):
    return threading.current_thread().name, args


# ---- default and user executors (differential) -------------------------------


def test_default_executor_runs_jobs_in_a_reused_worker_thread(aio_run):
    async def scenario():
        loop = asyncio.get_running_loop()
        first = await loop.run_in_executor(None, _thread_name, 1, 2)
        second = await loop.run_in_executor(None, _thread_name)
        return first, second

    (name1, args), (name2, _) = aio_run(scenario)
    assert args == (1, 2)
    assert name1 != threading.current_thread().name
    assert name1.startswith("asyncio") and name2.startswith("asyncio")


def test_a_user_thread_pool_runs_the_job(aio_run):
    async def scenario():
        loop = asyncio.get_running_loop()
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="mine") as pool:
            fut = loop.run_in_executor(pool, _thread_name, "x")
            assert isinstance(fut, asyncio.Future)
            return await fut

    name, args = aio_run(scenario)
    assert name.startswith("mine") and args == ("x",)


def test_a_job_exception_arrives_unchanged(aio_run):
    error = LookupError("from the worker")

    def fail():
        raise error

    async def scenario():
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, fail)
        except LookupError as exc:
            return exc

    assert aio_run(scenario) is error


def test_bad_callables_are_type_errors(trio_aio_run):
    # Stricter than the stdlib loop, which checks only in debug mode.
    async def scenario():
        loop = asyncio.get_running_loop()

        async def coro_fn():
            pass

        with pytest.raises(TypeError):
            loop.run_in_executor(None, coro_fn)
        with pytest.raises(TypeError):
            loop.set_default_executor("not an executor")
        return "ok"

    assert trio_aio_run(scenario) == "ok"


@pytest.mark.skipif(sys.version_info >= (3, 11), reason="3.10 only: refused from 3.11")
def test_set_default_executor_accepts_other_executors_with_a_warning_on_310(trio_aio_run):
    # As 3.10's stdlib loop: deprecated, but accepted.
    async def scenario():
        loop = asyncio.get_running_loop()
        with concurrent.futures.ProcessPoolExecutor(1) as pool:
            with pytest.warns(DeprecationWarning, match="ThreadPoolExecutor"):
                loop.set_default_executor(pool)
            loop._default_executor = None  # shut down here, not by the loop
        return "ok"

    assert trio_aio_run(scenario) == "ok"


def test_set_default_executor_is_used_and_shut_down_with_the_loop(aio_run):
    pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="chosen")

    async def scenario():
        loop = asyncio.get_running_loop()
        loop.set_default_executor(pool)
        name, _ = await loop.run_in_executor(None, _thread_name)
        await loop.shutdown_default_executor()
        return name

    try:
        assert aio_run(scenario).startswith("chosen")
        with pytest.raises(RuntimeError):
            pool.submit(print)
    finally:
        pool.shutdown()


def test_asyncio_to_thread_carries_contextvars(aio_run):
    async def scenario():
        var.set("outer value")
        return await asyncio.to_thread(var.get)

    assert aio_run(scenario) == "outer value"


def test_trio_executor_is_a_plain_thread_pool_on_other_loops(aio_run):
    async def scenario():
        loop = asyncio.get_running_loop()
        with TrioExecutor(2) as executor:
            return await loop.run_in_executor(executor, sum, (1, 2, 3))

    assert aio_run(scenario) == 6


# ---- shutdown_default_executor -----------------------------------------------


def test_shutdown_default_executor_waits_for_running_jobs(aio_run):
    async def scenario():
        loop = asyncio.get_running_loop()
        go = threading.Event()
        finished = []

        def job():
            go.wait()
            finished.append(True)

        fut = loop.run_in_executor(None, job)
        go.set()
        await loop.shutdown_default_executor()
        # The job finished before shutdown returned; its future may be
        # completed a callback later.
        done_at_shutdown = list(finished)
        await fut
        return done_at_shutdown

    assert aio_run(scenario) == [True]


def test_shutdown_default_executor_without_one_is_a_no_op(aio_run):
    async def scenario():
        loop = asyncio.get_running_loop()
        await loop.shutdown_default_executor()
        await loop.shutdown_default_executor()
        with pytest.raises(RuntimeError):
            loop.run_in_executor(None, print)
        return "ok"

    assert aio_run(scenario) == "ok"


def test_the_default_executor_refuses_jobs_after_shutdown(aio_run):
    async def scenario():
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, int)  # create the default executor
        await loop.shutdown_default_executor()
        with pytest.raises(RuntimeError) as info:
            loop.run_in_executor(None, print)
        return str(info.value)

    assert aio_run(scenario)  # some RuntimeError on both loops


def test_the_default_executor_refusal_says_shutdown_was_called(trio_aio_run):
    async def scenario():
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, int)
        await loop.shutdown_default_executor()
        with pytest.raises(RuntimeError) as info:
            loop.run_in_executor(None, int)
        return str(info.value)

    # The stdlib loop's message, whether or not the executor existed.
    assert trio_aio_run(scenario) == "Executor shutdown has been called"


@pytest.mark.skipif(sys.version_info < (3, 12), reason="timeout= is new in 3.12")
def test_shutdown_default_executor_timeout_warns_and_stops_waiting(trio_aio_run):
    async def scenario():
        loop = asyncio.get_running_loop()
        release = threading.Event()
        fut = loop.run_in_executor(None, release.wait)
        with pytest.warns(RuntimeWarning, match="did not finish joining"):
            await loop.shutdown_default_executor(timeout=0)
        release.set()
        await fut

    trio_aio_run(scenario)


@pytest.mark.trio
async def test_leaving_open_loop_shuts_the_default_executor_down():
    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:
        async with trio_asyncio.open_loop() as loop:
            loop.set_default_executor(pool)
            await trio_asyncio.aio_as_trio(loop.run_in_executor(None, int))
        with pytest.raises(RuntimeError):
            pool.submit(int)
    finally:
        pool.shutdown()


@pytest.mark.trio
async def test_leaving_open_loop_waits_for_default_executor_jobs():
    finished = []
    go = threading.Event()

    def job():
        go.wait()
        finished.append(True)

    async with trio_asyncio.open_loop():

        async def start():
            asyncio.get_running_loop().run_in_executor(None, job)

        await trio_asyncio.aio_as_trio(start)()
        go.set()
    assert finished == [True]


# ---- TrioExecutor --------------------------------------------------------------------


@pytest.mark.trio
async def test_trio_executor_jobs_run_in_trio_worker_threads():
    async with trio_asyncio.open_loop() as loop:

        def job(x):
            # Only a thread started by trio.to_thread can call back into Trio.
            now = trio.from_thread.run_sync(trio.current_time)
            return x * 2, now, threading.current_thread() is not main

        async def scenario():
            with TrioExecutor(2) as executor:
                fut = loop.run_in_executor(executor, job, 21)
                assert isinstance(fut, asyncio.Future)
                return await fut

        main = threading.current_thread()
        result, now, other_thread = await trio_asyncio.aio_as_trio(scenario)()
        assert result == 42 and other_thread
        assert isinstance(now, float)


@pytest.mark.trio
async def test_trio_executor_errors_arrive_unchanged():
    error = ArithmeticError("in a Trio thread")

    def fail():
        raise error

    async with trio_asyncio.open_loop() as loop:

        async def scenario():
            with TrioExecutor() as executor:
                return await loop.run_in_executor(executor, fail)

        with pytest.raises(ArithmeticError) as info:
            await trio_asyncio.aio_as_trio(scenario)()
        assert info.value is error


@pytest.mark.trio
async def test_trio_executor_limits_concurrency():
    log = []
    release_first = threading.Event()

    def first():
        log.append("first start")
        trio.from_thread.run_sync(first_started.set)
        release_first.wait()
        log.append("first end")

    def second():
        log.append("second start")

    first_started = trio.Event()
    async with trio_asyncio.open_loop() as loop:

        async def scenario():
            with TrioExecutor(1) as executor:
                a = loop.run_in_executor(executor, first)
                await trio_asyncio.trio_as_aio(first_started.wait)()
                b = loop.run_in_executor(executor, second)
                # Let every Trio task (the second job's too) get as far as it can.
                await trio_asyncio.trio_as_aio(trio.testing.wait_all_tasks_blocked)()
                log.append("all blocked")
                release_first.set()
                await asyncio.gather(a, b)

        await trio_asyncio.aio_as_trio(scenario)()
    assert log == ["first start", "all blocked", "first end", "second start"]


@pytest.mark.trio
async def test_trio_executor_jobs_are_cancelled_and_awaited_when_the_loop_closes():
    log = []

    def job():
        log.append("started")
        trio.from_thread.run_sync(started.set)
        try:
            trio.from_thread.run(trio.sleep_forever)
        except trio.Cancelled:
            log.append("cancelled")
            raise

    started = trio.Event()
    async with trio_asyncio.open_loop() as loop:

        async def scenario():
            executor = TrioExecutor(1)
            fut = loop.run_in_executor(executor, job)
            await trio_asyncio.trio_as_aio(started.wait)()
            return fut

        fut = await trio_asyncio.aio_as_trio(scenario)()
    # By the time open_loop() has returned, the job has seen the cancellation.
    assert log == ["started", "cancelled"]
    assert fut.cancelled()
